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
        self._closing = threading.Lock()  # forwarding threads close under it
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
        if not reset:
            for sock in sockets:
                _close(sock)
            return
        # Linger on, zero seconds: the close that follows sends an RST instead
        # of a FIN. Shutting the reading side sends nothing; it only wakes the
        # forwarding threads, which then close both ends - but not before every
        # socket is shut: a socket closed while a thread is still blocked reading
        # it would never really close.
        with self._closing:
            for sock in sockets:
                try:
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass  # that connection had already ended

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
                threading.Thread(target=self._forward, args=(a, b), daemon=True).start()

    def _forward(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._closing:
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
