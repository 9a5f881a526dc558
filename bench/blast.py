"""A minimal loopback WebSocket server that blasts pre-framed EODHD trade frames.

It runs in a child process (`start_server`) so that building and sending frames
never competes with the measured client for the GIL. Each accepted connection is
served the next `Job`: the upgrade is answered (RFC 6455), Authorized is sent, the
client's subscribe frame is read, then the job's trades go out either as fast as
the socket takes them (blast) or when due (paced). Pings are answered; the
connection stays open until the client closes it, so a collector never sees a
server close and reconnects mid-run.

A list of jobs in place of a job is a *group*: its connections are accepted
together and served at once, one thread each (a collector with several
connections, or several raw clients). Each connection gets the job whose
symbols are exactly the ones its subscribe frame asked for (whatever the order
in which the connections arrived), else the group's next unclaimed job; once
every connection of the group has subscribed and its frames are built, they all
start sending, stamped from one common start.
"""

import base64
import hashlib
import json
import multiprocessing
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA", "AMZN", "META", "GOOG", "AMD", "NFLX", "SPY"]
AUTHORIZED = b'{"status_code":200,"message":"Authorized"}'
CONDITIONS = ("[]", "[]", "[14,41]", "[37]", "[12,37,41]")
STATUSES = ('"open"', '"open"', '"extended-hours"')


@dataclass
class Job:
    """What one connection is sent.

    Trade i is stamped `event_start + i / event_rate` (minus a little jitter). In
    paced mode it is sent when the real clock reaches
    `wall_start + (stamp - event_start) / speed`; speed > 1 compresses a session.
    Without `event_start`/`wall_start` both are about "now" once the frames are
    built (a paced job whose building overran sends its first chunks at once).
    """

    n: int
    event_rate: float
    paced: bool = False
    speed: float = 1.0
    event_start: float | None = None
    wall_start: float | None = None
    lead: float = 0.3  # seconds between Authorized and the first due frame
    symbols: list[str] = field(default_factory=lambda: list(SYMBOLS))
    seed: int = 7
    chunk_frames: int = 2000
    lazy: bool = False  # build chunks while sending (long soaks: bounded memory)


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked server frame (FIN set)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


class TradeStream:
    """Realistic `us` trades: a random walk per symbol, mostly round lots, one
    in ten fractional, stamps slightly out of order (one in 2,000 up to 8 s late)."""

    def __init__(self, job: Job, event_start: float) -> None:
        self.job = job
        self.rng = random.Random(job.seed)
        self.prices = {s: self.rng.uniform(20, 900) for s in job.symbols}
        self.start_ms = event_start * 1000
        self.step_ms = 1000 / job.event_rate

    def chunks(self) -> Iterator[tuple[float, bytes]]:
        """(event time of the chunk's first trade, its frames concatenated)."""
        job, rng, prices = self.job, self.rng, self.prices
        symbols = list(job.symbols)
        k = len(symbols)
        gauss, random_, randint, choice = rng.gauss, rng.random, rng.randint, rng.choice
        for first in range(0, job.n, job.chunk_frames):
            parts = []
            for i in range(first, min(job.n, first + job.chunk_frames)):
                if i % k == 0:
                    # Round robin, reshuffled per round: every symbol gets exactly
                    # n / k trades, so the 100-trade bar count is predictable.
                    rng.shuffle(symbols)
                symbol = symbols[i % k]
                price = prices[symbol] = max(1.0, prices[symbol] * (1 + gauss(0, 2e-4)))
                if random_() < 0.1:
                    size = str(round(random_() * 5 + 0.001, 3))
                else:
                    size = choice(("1", "5", "10", "50", "100", "100", "200", "500"))
                if i % 2000 == 1999:
                    late = randint(3000, 8000)
                else:
                    late = randint(0, 1500 if i % 50 == 0 else 40)
                ts = int(self.start_ms + i * self.step_ms) - late
                parts.append(
                    frame(
                        (
                            f'{{"s":"{symbol}","p":{round(price, choice((2, 2, 4)))},'
                            f'"c":{choice(CONDITIONS)},"v":{size},"dp":false,'
                            f'"ms":{choice(STATUSES)},"t":{ts}}}'
                        ).encode()
                    )
                )
            yield (self.start_ms + first * self.step_ms) / 1000, b"".join(parts)


class _Conn:
    """One client connection: a sender (the caller) and a reader thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()  # pongs must not land inside a chunk
        self.closed = threading.Event()
        self.subscribed = threading.Event()
        self.subscribe_text: bytes | None = None  # the first text frame
        self.buf = b""

    def handshake(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("client left during the handshake")
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        key = b""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        self.sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
            + accept_key(key)
            + b"\r\n\r\n"
        )

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("client gone")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        mask = self._read(4) if b1 & 0x80 else b"\0\0\0\0"
        data = self._read(n)
        if b1 & 0x80:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return b0 & 0x0F, data

    def read_loop(self) -> None:
        try:
            while True:
                opcode, data = self.read_frame()
                if opcode == 0x1:
                    if self.subscribe_text is None:
                        self.subscribe_text = data
                    self.subscribed.set()
                elif opcode == 0x9:
                    self.send(frame(data, 0xA))
                elif opcode == 0x8:
                    self.send(frame(data[:2] or struct.pack("!H", 1000), 0x8))
                    break
        except OSError:
            pass
        finally:
            self.subscribed.set()
            self.closed.set()


def _serve(job: Job, conn: _Conn) -> None:
    event_start = job.event_start
    if event_start is None:
        # Stamp from when sending should start: building takes ~5 us a frame.
        event_start = time.time() + job.n * 8e-6 + job.lead
    stream = TradeStream(job, event_start)
    if job.lazy:
        chunks: Iterator[tuple[float, bytes]] = stream.chunks()
    else:
        # Built before Authorized so that building never counts as receive time.
        chunks = iter(list(stream.chunks()))
    wall_start = job.wall_start if job.wall_start is not None else event_start
    conn.send(frame(AUTHORIZED))
    conn.subscribed.wait(10)
    _send_chunks(job, conn, chunks, event_start, wall_start)


def _send_chunks(job: Job, conn: _Conn, chunks, event_start: float, wall_start: float):
    for due_event, data in chunks:
        if conn.closed.is_set():
            return
        if job.paced:
            delay = wall_start + (due_event - event_start) / job.speed - time.time()
            if delay > 0:
                time.sleep(delay)
        conn.send(data)


def subscribed_symbols(conn: _Conn) -> frozenset[str]:
    """What a connection's subscribe frame asked for (empty if unreadable)."""
    try:
        asked = json.loads(conn.subscribe_text or b"")["symbols"]
    except (ValueError, KeyError, TypeError):
        return frozenset()
    return frozenset(s.strip() for s in str(asked).split(",") if s.strip())


class _Group:
    """Several connections served at once (see the module docstring)."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = list(jobs)
        self.lock = threading.Lock()
        self.conns: list[_Conn] = []
        self.assigned: dict[int, Job] = {}  # id(conn) -> job
        self.event_start = 0.0
        # Timeouts so a client that never comes does not hang the others forever.
        self.subscribed = threading.Barrier(len(jobs), action=self._assign, timeout=60)
        self.built = threading.Barrier(len(jobs), timeout=300)

    def _assign(self) -> None:
        """Runs once, when every connection has subscribed."""
        free = list(range(len(self.jobs)))
        for conn in self.conns:
            wanted = subscribed_symbols(conn)
            for index in free:
                if frozenset(self.jobs[index].symbols) == wanted:
                    self.assigned[id(conn)] = self.jobs[index]
                    free.remove(index)
                    break
        for conn in self.conns:
            if id(conn) not in self.assigned:
                self.assigned[id(conn)] = self.jobs[free.pop(0)]
        # As for one job: stamps start when sending should (~5 us a frame to build).
        total = sum(job.n for job in self.jobs)
        lead = max(job.lead for job in self.jobs)
        self.event_start = time.time() + total * 8e-6 + lead

    def serve(self, sock: socket.socket) -> None:
        conn = _Conn(sock)
        try:
            conn.handshake()
            threading.Thread(target=conn.read_loop, daemon=True).start()
            conn.send(frame(AUTHORIZED))
            conn.subscribed.wait(30)
            with self.lock:
                self.conns.append(conn)
            try:
                self.subscribed.wait()
                job = self.assigned[id(conn)]
                event_start = (
                    job.event_start if job.event_start is not None else self.event_start
                )
                chunks = list(TradeStream(job, event_start).chunks())
                self.built.wait()
            except threading.BrokenBarrierError:
                conn.closed.wait()
                return
            wall_start = job.wall_start if job.wall_start is not None else event_start
            _send_chunks(job, conn, chunks, event_start, wall_start)
            del chunks
            conn.closed.wait()
        except OSError:
            pass
        finally:
            sock.close()


def _serve_group(listener: socket.socket, jobs: list[Job]) -> None:
    """Accept one connection per job, serve them together, return once all
    of them closed."""
    group = _Group(jobs)
    threads = []
    for _ in jobs:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(target=group.serve, args=(sock,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()


def run_server(jobs: "list[Job | list[Job]]", port_out) -> None:
    """Child process body: serve each job to one connection (each group to as
    many at once), then idle ones."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # a group's connections may all arrive at once
    port_out.send(listener.getsockname()[1])
    queue = list(jobs)
    while True:
        if queue and isinstance(queue[0], list):
            _serve_group(listener, queue.pop(0))
            continue
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock)
        try:
            conn.handshake()
            threading.Thread(target=conn.read_loop, daemon=True).start()
            if queue:
                _serve(queue.pop(0), conn)
            else:
                conn.send(frame(AUTHORIZED))
            conn.closed.wait()
        except OSError:
            pass
        finally:
            sock.close()


def start_server(
    jobs: "list[Job | list[Job]]",
) -> tuple[multiprocessing.Process, int]:
    """Start the server process; returns it (terminate it when done) and its port."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_server, args=(jobs, child), daemon=True)
    proc.start()
    port = parent.recv()
    return proc, port
