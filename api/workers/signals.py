"""Stop signals for a long-running command, caught from the first instant.

Python's default SIGINT raises KeyboardInterrupt wherever the main thread happens
to be - inside a weakref callback or a finaliser it is printed and *ignored*, and
the process runs on as if never asked to stop. A command that must always stop
cleanly installs these handlers before anything else (manage.py does it for the
collector before Django even loads): a signal only sets `STOP`, and the command
checks it between units of work.
"""

import signal
import threading

STOP = threading.Event()
RECEIVED: list[str] = []  # signal names, in order
INSTALLED = threading.Event()  # install() ran in this process
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _record(signum, frame) -> None:
    RECEIVED.append(signal.Signals(signum).name)
    STOP.set()


def install(on_signal=None) -> None:
    """From now on SIGTERM, SIGINT and SIGHUP set STOP (and call `on_signal` with
    the signal's name, e.g. to log it once logging is set up)."""

    def handle(signum, frame) -> None:
        _record(signum, frame)
        if on_signal is not None:
            on_signal(signal.Signals(signum).name)

    for signum in SIGNALS:
        signal.signal(signum, handle)
    INSTALLED.set()


def stop_flag() -> threading.Event:
    """The process's stop flag if install() ran (a signal may already have set
    it), else a fresh one (the command was called from code, not a shell)."""
    return STOP if INSTALLED.is_set() else threading.Event()
