"""The receiver's socket, read in a process of its own.

websocket-client decodes every frame in pure Python (5.5-8 µs a frame on the
machines measured). In one process that cost shares the GIL with parsing,
aggregation and writing, so the collector could use one core at most. The pump
runs the library's receive loop in a small child process and hands the frames
over in batches through a socket pair: the reading and the rest of the pipeline
then run on two cores.

The pump only moves bytes. Everything that decides - waiting for Authorized,
subscribing, pings and pong timeouts, reconnect policy, market hours, counters,
the journal - stays in the `Receiver`, which talks to a `RemoteSocket` exactly as
it talks to a `websocket.WebSocket`.

Child protocol, one pickled tuple per message over a duplex socket pair:
  parent -> child  ("connect", url, options) ("send", text) ("ping",)
                   ("close", timeout) ("exit",)
  child -> parent  ("connected",) ("refused", status, message) ("failed", message)
                   ("frames", [bytes, ...]) ("control", opcode, data)
                   ("dropped", message) ("closed",) ("log", level, name, message)

The child imports neither Django nor the rest of the collector, ignores SIGINT and
SIGTERM (the parent decides when to stop) and exits when the parent says so or
its end of the socket pair closes, which is also what happens if the parent is
killed.
"""

import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import websocket

logger = logging.getLogger(__name__)

# The environment the helper process inherits: locale, certificates, proxies.
CHILD_ENV = frozenset(
    {
        "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME",
        "SSL_CERT_FILE", "SSL_CERT_DIR",
        "http_proxy", "https_proxy", "no_proxy",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    }
)  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent.parent
BATCH_FRAMES = 256  # frames per message to the parent at most
BATCH_AGE = 0.02  # seconds a frame may wait in the child for its batch
CHILD_POLL = 0.02  # the child's socket timeout: how often it looks at commands
PIPE_BUFFER = 4 * 1024 * 1024  # bytes the socket pair holds each way (asked for)
START_TIMEOUT = 30.0  # for the child to import and say it is ready
DATA = websocket.ABNF.OPCODE_TEXT


# The child ----------------------------------------------------------------------


class _ToParent(logging.Handler):
    """Log records of the child travel to the parent, whose handlers format,
    redact and write them."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.conn.send(("log", record.levelno, record.name, message))
        except Exception:  # the parent is gone: nobody to tell
            pass


class _Child:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.ws: websocket.WebSocket | None = None
        self.frames: list[bytes] = []
        self.batch_started = 0.0

    def serve(self) -> None:
        conn = self.conn
        while True:
            if self.ws is None:
                if not self.obey(conn.recv()):
                    return
                continue
            self.pump()
            if not self.obey_pending():
                return

    def obey_pending(self) -> bool:
        while self.conn.poll():
            if not self.obey(self.conn.recv()):
                return False
        return True

    def obey(self, command: tuple) -> bool:
        """Carry out one command; False means exit."""
        kind = command[0]
        if kind == "exit":
            self.drop_socket()
            return False
        if kind == "connect":
            self.drop_socket()
            self.connect(command[1], command[2])
        elif kind == "close":
            # What was read before the command goes first; what arrives while
            # the close handshake runs came after the parent's decision.
            self.flush()
            if self.ws is not None:
                try:
                    self.ws.close(timeout=command[1])
                except Exception:  # already gone: nothing to close politely
                    pass
                self.drop_socket()
            self.conn.send(("closed",))
        elif self.ws is not None:
            try:
                if kind == "send":
                    self.ws.send(command[1])
                elif kind == "ping":
                    self.ws.ping()
            except Exception as exc:
                self.lost(exc)
        return True

    def connect(self, url: str, options: dict) -> None:
        try:
            ws = websocket.create_connection(url, **options)
        except websocket.WebSocketBadStatusException as exc:
            headers = dict(exc.resp_headers or {})
            self.conn.send(("refused", exc.status_code, str(exc), headers))
            return
        except Exception as exc:
            self.conn.send(("failed", f"{type(exc).__name__}: {exc}"))
            return
        ws.settimeout(CHILD_POLL)
        self.ws = ws
        self.frames = []
        self.conn.send(("connected",))

    def pump(self) -> None:
        """Read frames until a batch is due or the socket is idle; hand them on.
        A failing feed socket is reported; a failing socket pair (the parent is
        gone) raises and ends the process."""
        recv, frames = self.ws.recv_data, self.frames
        while True:
            try:
                opcode, data = recv(control_frame=True)
            except websocket.WebSocketTimeoutException:
                break
            except Exception as exc:  # reset, closed, TLS error...: the feed's
                self.flush()
                self.lost(exc)
                return
            if opcode == DATA or opcode == websocket.ABNF.OPCODE_BINARY:
                if not frames:
                    self.batch_started = time.monotonic()
                frames.append(data)
                if (
                    len(frames) >= BATCH_FRAMES
                    or time.monotonic() - self.batch_started >= BATCH_AGE
                ):
                    break
            else:
                # websocket-client hands control frames over as ABNF objects;
                # their payload is all the receiver could want.
                self.flush()
                frames = self.frames
                self.conn.send(("control", opcode, getattr(data, "data", data)))
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    self.drop_socket()
                    return
        self.flush()

    def flush(self) -> None:
        if self.frames:
            self.conn.send(("frames", self.frames))
            self.frames = []

    def lost(self, exc: BaseException) -> None:
        self.drop_socket()
        self.conn.send(("dropped", f"{type(exc).__name__}: {exc}"))

    def drop_socket(self) -> None:
        if self.ws is not None:
            try:
                self.ws.shutdown()
            except Exception:  # already closed
                pass
        self.ws = None


def child_main(fd: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gc.freeze()  # what is imported stays; the loop allocates little
    conn = Connection(fd)
    root = logging.getLogger()
    root.handlers[:] = [_ToParent(conn)]
    root.setLevel(logging.INFO)
    try:
        conn.send(("ready", os.getpid()))
        _Child(conn).serve()
    except (EOFError, OSError):
        pass  # the parent closed its end or died: time to go


# The parent ---------------------------------------------------------------------


class PumpGone(websocket.WebSocketConnectionClosedException):
    """The child process exited or stopped answering."""


class Pump:
    """Owns the child process (started on the first connection, restarted if it
    dies) and lends it to one `RemoteSocket` at a time."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._broken = False  # its end of the socket pair closed: replace it
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The running child's process id, if there is one."""
        if self._proc is None or self._proc.returncode is not None:
            return None
        return self._proc.pid

    def lost(self) -> None:
        """Called when the child's end of the socket pair is found closed."""
        self._broken = True

    def create_connection(self, url: str, **options) -> "RemoteSocket":
        """Like `websocket.create_connection`, and raising the same exceptions
        (WebSocketBadStatusException, OSError) for the same failures."""
        with self._lock:
            conn = self._ensure_started()
            connect_timeout = options.get("timeout") or 10.0
            try:
                conn.send(("connect", url, options))
                reply = _wait(conn, deadline=time.monotonic() + 3 * connect_timeout + 5)
            except (OSError, EOFError, PumpGone) as exc:
                self._kill()
                raise OSError(f"the receiver process failed: {exc}") from exc
            kind = reply[0]
            if kind == "connected":
                return RemoteSocket(self, conn)
            if kind == "refused":
                raise websocket.WebSocketBadStatusException(
                    reply[2],
                    reply[1],
                    resp_headers=reply[3] if len(reply) > 3 else None,
                )
            raise OSError(reply[1])

    def _ensure_started(self) -> Connection:
        if self._conn is not None and not self._broken and self._proc.poll() is None:
            return self._conn
        if self._conn is not None:
            self._kill()
            logger.warning(
                "⚠️ the receiver process exited (code %s); starting a new one",
                self._proc.returncode,
            )
        ours, theirs = socket.socketpair()
        # Room for bursts: the two processes take turns less often when a
        # scheduling hiccup on either side does not stall the other at once.
        for end in (ours, theirs):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PIPE_BUFFER)
        # Only what reading a TLS socket needs: never the API key or the
        # database URL (the URL it connects to comes over the socket pair).
        env = {k: v for k, v in os.environ.items() if k in CHILD_ENV}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        )
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "api.collector.pump", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self.starts += 1
        try:
            reply = _wait(self._conn, deadline=time.monotonic() + START_TIMEOUT)
        except (OSError, EOFError, PumpGone) as exc:
            self._kill()
            raise OSError(f"the receiver process did not start: {exc}") from exc
        if reply[0] != "ready":
            self._kill()
            raise OSError(f"the receiver process said {reply[0]!r} at start")
        logger.info("📡 the WebSocket is read by helper process %d", self._proc.pid)
        return self._conn

    def close(self, timeout: float = 3.0) -> None:
        """Tell the child to exit and wait for it; kill it if it does not."""
        # The receiver may be stuck in a connect that holds the lock: then the
        # child is killed without the courtesy.
        locked = self._lock.acquire(timeout=timeout)
        try:
            if self._conn is not None and locked:
                try:
                    self._conn.send(("exit",))
                    self._proc.wait(timeout)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._kill()
        finally:
            if locked:
                self._lock.release()

    def discard(self) -> None:
        """Kill a child that no longer answers; the next connect starts another."""
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._conn is not None:
            self._conn.close()
        self._conn, self._broken = None, False


def _relog(message: tuple) -> None:
    _, level, name, text = message
    logging.getLogger(name).log(level, text)


def _wait(conn: Connection, deadline: float) -> tuple:
    """The next message that is not a log record, before the deadline."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not conn.poll(left):
            raise PumpGone("the receiver process did not answer in time")
        try:
            message = conn.recv()
        except (EOFError, OSError) as exc:
            raise PumpGone("the receiver process exited") from exc
        if message[0] == "log":
            _relog(message)
            continue
        return message


class RemoteSocket:
    """The parent's view of the child's connection, with the part of
    `websocket.WebSocket`'s interface the receiver uses."""

    def __init__(self, pump: Pump, conn: Connection) -> None:
        self._pump = pump
        self._conn = conn
        self._frames: deque[bytes] = deque()
        self._timeout: float | None = None
        self._open = True

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        frames = self._frames
        if frames:
            return DATA, frames.popleft()
        if not self._open:
            raise websocket.WebSocketConnectionClosedException("socket is closed")
        conn = self._conn
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            if deadline is None:
                ready = conn.poll(None)
            else:
                ready = conn.poll(max(0.0, deadline - time.monotonic()))
            if not ready:
                raise websocket.WebSocketTimeoutException("timed out")
            try:
                message = conn.recv()
            except (EOFError, OSError) as exc:
                self._open = False
                self._pump.lost()
                raise PumpGone("the receiver process exited") from exc
            kind = message[0]
            if kind == "frames":
                frames.extend(message[1])
                return DATA, frames.popleft()
            if kind == "control":
                if message[1] == websocket.ABNF.OPCODE_CLOSE:
                    self._open = False
                return message[1], message[2]
            if kind == "dropped":
                self._open = False
                raise websocket.WebSocketConnectionClosedException(message[1])
            if kind == "log":
                _relog(message)

    def send(self, payload: str) -> None:
        self._command(("send", payload))

    def ping(self, payload: str = "") -> None:
        self._command(("ping",))

    def _command(self, command: tuple) -> None:
        if not self._open:
            raise websocket.WebSocketConnectionClosedException("socket is closed")
        try:
            self._conn.send(command)
        except OSError as exc:
            self._open = False
            self._pump.lost()
            raise PumpGone("the receiver process exited") from exc

    def finish(self, timeout: float = 3.0) -> Iterator[bytes]:
        """Close the connection, yielding every data frame the child had read
        before it closed: the trades in flight when the receiver decided to stop."""
        yield from self._frames
        self._frames.clear()
        if not self._open:
            return
        self._open = False
        try:
            self._conn.send(("close", timeout))
            while True:
                message = _wait(self._conn, time.monotonic() + timeout + 5)
                if message[0] == "closed":
                    return
                if message[0] == "frames":
                    yield from message[1]
        except (OSError, EOFError, PumpGone):
            # A child that cannot close cleanly is replaced on the next connect.
            self._pump.discard()

    def close(self, timeout: float = 3.0) -> None:
        """Close the connection; frames still on their way are dropped, so the
        next connection starts clean."""
        for _ in self.finish(timeout):
            pass

    def shutdown(self) -> None:
        self.close(timeout=0.5)


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
