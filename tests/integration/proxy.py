"""A TCP proxy the test controls: it forwards to PostgreSQL until told to cut,
then drops every connection and refuses new ones until restored."""

import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._refusing = False
        self._stopped = False
        self.refused = 0

    def start(self) -> "TcpProxy":
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()
        return self

    def cut(self, reset: bool = False) -> None:
        """Drop every connection (with an RST instead of a FIN when `reset`)."""
        with self._lock:
            self._refusing = True
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            if reset:
                # Linger on, zero seconds: the close that follows sends an RST
                # instead of a FIN. Shutting the reading side sends nothing; it
                # only wakes the forwarding thread blocked on it, which closes.
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                try:
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
            else:
                _close(sock)

    def restore(self) -> None:
        with self._lock:
            self._refusing = False

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                self.refused += 1
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    try:
        lingering = sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
        if struct.unpack("ii", lingering) != (1, 0):
            sock.shutdown(socket.SHUT_RDWR)  # a FIN, unless a reset was asked for
    except OSError:
        pass
    sock.close()
