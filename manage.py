#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

# Commands that must stop cleanly on any signal, however early it comes.
LONG_RUNNING = {"run_websocket_collector_v2"}


def main() -> None:
    if sys.argv[1:2] and sys.argv[1] in LONG_RUNNING:
        from api.workers import signals

        signals.install()  # before Django loads: a signal only sets a flag
        # Spool, journal, quarantine, state and log files hold market data and
        # the collector's identity: for its own user only (0600, dirs 0700).
        os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backend.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A wrong setting is the operator's to fix: one readable line, no traceback.
        sys.stderr.write(f"Configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C before a command installed its own handler (during start-up):
        # nothing has started, so nothing to save - and no traceback.
        sys.exit(130)
