"""python manage.py simulate_eodhd_feed — an EODHD-like WebSocket feed on loopback.

Point the collector at the printed URL (`--ws-url`) to try it without a key or a
network. All behaviour lives in api.simulator; this only parses
options, runs the server and reports counts until Ctrl-C or SIGTERM.
"""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from api.simulator import FeedServer, SimOptions

REPORT_EVERY = 10.0  # seconds between count lines


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CommandError(
            f"{text!r} is not a comma-separated list of integers"
        ) from exc


class Command(BaseCommand):
    help = "Run an EODHD-compatible WebSocket feed simulator until interrupted."

    def add_arguments(self, parser):
        parser.add_argument(
            "--host", default="127.0.0.1", help="address (default %(default)s)"
        )
        parser.add_argument(
            "--port", type=int, default=8765, help="port (default %(default)s)"
        )
        parser.add_argument(
            "--rate",
            type=float,
            default=50.0,
            help="trades per second per socket (default %(default)s)",
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="random seed (default: none)"
        )
        parser.add_argument(
            "--jitter-ms",
            type=int,
            default=300,
            help="`t` lags the clock by up to this: out-of-order prints "
            "(default %(default)s)",
        )
        parser.add_argument(
            "--late-prob",
            type=float,
            default=0.0,
            help="chance a trade is a late print (default %(default)s)",
        )
        parser.add_argument(
            "--late-ms",
            type=int,
            default=5000,
            help="how late a late print is (default %(default)s)",
        )
        parser.add_argument(
            "--fractional-prob",
            type=float,
            default=0.0,
            help="chance of a fractional trade size (default %(default)s)",
        )
        parser.add_argument(
            "--malformed-prob",
            type=float,
            default=0.0,
            help="chance a frame is malformed (default %(default)s)",
        )
        parser.add_argument(
            "--drop-after",
            default="",
            help="N,N,...: drop connection i abruptly after N trades",
        )
        parser.add_argument(
            "--silence-after",
            type=int,
            default=None,
            help="go quiet after N trades per connection (socket stays open)",
        )
        parser.add_argument(
            "--error",
            default="",
            help="CODE,CODE,...: 403, 422 or 500 for connection i instead of data",
        )
        parser.add_argument(
            "--max-symbols",
            type=int,
            default=50,
            help="more symbols in a subscribe earn a 422 (default %(default)s)",
        )
        parser.add_argument(
            "--token",
            action="append",
            default=None,
            help="accept only this API token (repeatable; default: any non-empty)",
        )

    def handle(self, *args, **options):
        errors = _int_list(options["error"])
        if any(code not in (403, 422, 500) for code in errors):
            raise CommandError("--error takes 403, 422 or 500")
        if options["rate"] <= 0:
            raise CommandError("--rate must be positive")
        sim = SimOptions(
            rate=options["rate"],
            seed=options["seed"],
            jitter_ms=options["jitter_ms"],
            late_prob=options["late_prob"],
            late_ms=options["late_ms"],
            fractional_prob=options["fractional_prob"],
            malformed_prob=options["malformed_prob"],
            drop_after=_int_list(options["drop_after"]) or None,
            silence_after=options["silence_after"],
            error_on_connect=errors or None,
            max_symbols=options["max_symbols"],
            keep_sent=False,  # runs for hours: count, don't keep every frame
        )
        tokens = set(options["token"]) if options["token"] else None
        server = FeedServer(
            options["host"], options["port"], options=sim, valid_tokens=tokens
        )
        try:
            server.start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {options['host']}:{options['port']}: {exc}"
            ) from exc

        stop = threading.Event()
        # The handler only sets a flag; the loop below does the shutdown.
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())

        self.stdout.write(f"EODHD feed simulator listening on {server.url}")
        self.stdout.write(
            "other feeds: /ws/us-quote, /ws/forex, /ws/crypto; Ctrl-C stops"
        )
        try:
            while not stop.wait(REPORT_EVERY):
                self.stdout.write(self._counts(server))
        finally:
            server.stop()
        self.stdout.write(f"stopped: {self._counts(server)}")

    @staticmethod
    def _counts(server: FeedServer) -> str:
        log = server.connection_log
        open_now = sum(1 for record in log if record.closed_at is None)
        return (
            f"connections {server.connections} (open {open_now}), "
            f"trades sent {server.trades_sent}, "
            f"malformed {sum(record.malformed_sent for record in log)}"
        )
