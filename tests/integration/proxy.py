"""A TCP proxy the test controls, in front of PostgreSQL.

Two kinds of fault, because they are different failures:
- cut(): the link is *closed* - every connection dropped (FIN, or RST with
  reset=True) and new ones refused until restore().
- blackhole(): the link goes *silent* - nothing is forwarded and nothing is
  closed, in either direction; new connections are accepted and never answered.
  After restore(), new connections work again; the frozen ones stay frozen
  (as behind a dead NAT entry or a failed-over address) unless revive=True, which
  lets them carry on as TCP would after a short partition.
"""

import socket
import struct
import threading


class _Pair:
    """One proxied connection: its two sockets and whether bytes may flow."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self.flowing = threading.Event()
        self.flowing.set()
        self.dead = False  # frozen for good: restore() does not revive it
        self.closed = False  # cut() or stop(): the threads close and leave

    def wait_flow(self) -> bool:
        """Block while frozen; False once the pair is closed."""
        while not self.flowing.wait(0.2):
            if self.closed:
                return False
        return not self.closed


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._closing = threading.Lock()  # forwarding threads close under it
        self._pairs: set[_Pair] = set()
        self._held: list[socket.socket] = []  # accepted during a black hole
        self._refusing = False
        self._swallowing = False
        self._stopped = False
        self.refused = 0
        self.swallowed = 0  # connections accepted and never answered

    def start(self) -> "TcpProxy":
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()
        return self

    def cut(self, reset: bool = False) -> None:
        """Drop every connection (with an RST instead of a FIN when `reset`)."""
        with self._lock:
            self._refusing = True
            pairs, self._pairs = list(self._pairs), set()
        sockets = [sock for pair in pairs for sock in pair.sockets]
        for pair in pairs:
            pair.closed = True
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

    def blackhole(self) -> None:
        """Forward nothing, close nothing; accept new connections, answer none."""
        with self._lock:
            self._swallowing = True
            for pair in self._pairs:
                pair.flowing.clear()

    def restore(self, revive: bool = False) -> None:
        """New connections flow again. Connections frozen by blackhole() stay
        frozen unless `revive`."""
        with self._lock:
            self._refusing = False
            self._swallowing = False
            for pair in self._pairs:
                if pair.flowing.is_set() or pair.dead:
                    continue
                if revive:
                    pair.flowing.set()
                else:
                    pair.dead = True

    def stop(self) -> None:
        self._stopped = True
        self.cut()
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            _close(sock)
        _close(self._listener)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing, swallowing = self._refusing, self._swallowing
                if swallowing:
                    self._held.append(client)
                    self.swallowed += 1
            if swallowing:
                continue
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
            pair = _Pair(client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._forward, args=(pair, a, b), daemon=True
                ).start()

    def _forward(self, pair: _Pair, source: socket.socket, sink: socket.socket):
        try:
            while pair.wait_flow():
                data = source.recv(65536)
                # Bytes (or an end) read as the link went silent are held, not
                # passed on: a black hole delivers nothing, not even a FIN.
                if not pair.wait_flow() or not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
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
