"""python manage.py run_websocket_collector_v2 — the real-time collector."""

import argparse
import hashlib
import logging
import re
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from api.collector.feed import FeedPolicy, feed_url
from api.collector.runtime import (
    Collector,
    CollectorConfig,
    StartupError,
    parse_streams,
)
from api.market.conditions import MODES
from api.workers import signals
from api.workers.memory import tune_gc

logger = logging.getLogger("api.collector")

SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,19}$")


def parse_symbols(single: str | None, many: str | None) -> list[str]:
    if single and many:
        raise CommandError("give --symbol or --symbols, not both")
    raw = many or single or "QLD"
    symbols: list[str] = []
    for item in raw.split(","):
        symbol = item.strip().upper()
        if not symbol:
            continue
        if not SYMBOL.match(symbol):
            raise CommandError(f"{item.strip()!r} is not a valid symbol")
        if symbol not in symbols:
            symbols.append(symbol)
    if not symbols:
        raise CommandError("no symbols given")
    return symbols


def symbol_set_key(symbols: list[str]) -> str:
    """A stable name for a set of symbols (spool folder, writer lock)."""
    joined = "-".join(sorted(symbols))
    if len(joined) <= 60:
        return joined
    return "set-" + hashlib.sha1(joined.encode()).hexdigest()[:12]


def streams(value: str) -> str:
    """--feed: one or more EODHD streams, comma-separated."""
    try:
        return ",".join(parse_streams(value))
    except StartupError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Stream trades from EODHD's WebSocket and store 1-second bars "
        "(SecondSnapshot) and 100-trade bars (TickCandle100)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--symbol", help="one symbol (default QLD)")
        parser.add_argument(
            "--symbols",
            help="comma-separated symbols, any number: spread over connections of "
            "--symbols-per-connection each",
        )
        parser.add_argument(
            "--universe",
            action="store_true",
            help="take the symbols from the database's universe (admin: Universe "
            "symbols) instead of --symbols and follow its edits live; several "
            "collectors share it, each claiming up to --capacity symbols",
        )
        parser.add_argument(
            "--capacity",
            type=at_least_one,
            default=settings.COLLECTOR_CAPACITY,
            help="with --universe: the most symbols this collector claims "
            "(default %(default)s, from COLLECTOR_CAPACITY)",
        )
        parser.add_argument(
            "--symbols-per-connection",
            type=at_least_one,
            default=settings.EODHD_SYMBOLS_PER_CONNECTION,
            help="symbols per WebSocket connection (default %(default)s, from "
            "EODHD_SYMBOLS_PER_CONNECTION; raise it only if EODHD raised your "
            "account's limit)",
        )
        parser.add_argument(
            "--verbose", action="store_true", help="log every 50th trade"
        )
        parser.add_argument(
            "--skip-market-hours",
            action="store_true",
            help="collect at any hour (no NYSE session gating)",
        )
        parser.add_argument(
            "--extended-hours",
            action="store_true",
            help="collect 04:00-20:00 ET on trading days",
        )
        parser.add_argument(
            "--ws-url",
            help="feed URL without the token (default: EODHD_WS_URL)",
        )
        parser.add_argument(
            "--feed",
            type=streams,
            default="us",
            help="the EODHD stream(s), comma-separated, one connection each: us "
            "trades (NYSE hours; 1-second, 1-minute and 100-trade bars), us-quote "
            "(US quotes, NYSE hours; 1-second quote bars), forex (FX quotes, Sunday "
            "17:00 to Friday 17:00 New York; 1-second quote bars), crypto trades "
            "(24/7); e.g. us,us-quote; default %(default)s",
        )
        parser.add_argument(
            "--conditions",
            choices=MODES,
            default=settings.COLLECTOR_CONDITIONS,
            help="which prints move a bar: eodhd = EODHD's trade-condition table "
            "(odd lots, average-price and out-of-sequence prints do not set "
            "high/low or open/close), all = every print (default %(default)s, from "
            "COLLECTOR_CONDITIONS)",
        )
        parser.add_argument(
            "--stale-after",
            type=positive,
            default=settings.COLLECTOR_STALE_AFTER_SECONDS,
            help="reconnect after this many seconds without data (default "
            "%(default)s, from COLLECTOR_STALE_AFTER_SECONDS)",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=settings.COLLECTOR_GRACE_SECONDS,
            help="write a second this long after it ends (default %(default)s, "
            "from COLLECTOR_GRACE_SECONDS)",
        )
        parser.add_argument(
            "--revision-window",
            type=float,
            default=settings.COLLECTOR_REVISION_WINDOW_SECONDS,
            help="late trades revise a stored second within this window (default "
            "%(default)s, from COLLECTOR_REVISION_WINDOW_SECONDS)",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="serve /metrics and /healthz on this port (0: any free port)",
        )
        parser.add_argument(
            "--metrics-host",
            default=settings.COLLECTOR_METRICS_HOST,
            help="address for --metrics-port (default %(default)s, from "
            "COLLECTOR_METRICS_HOST; 0.0.0.0 for a Kubernetes probe)",
        )
        parser.add_argument(
            "--spool-dir",
            type=Path,
            help="where bars wait while the database is down, and partial 100-trade "
            "bars between runs (default: data/spool/<symbols>)",
        )
        parser.add_argument(
            "--spool-max-mb",
            type=positive,
            default=512,
            help="spool size cap; past it the oldest bars are dropped (default "
            "%(default)s)",
        )
        parser.add_argument(
            "--record-dir",
            type=Path,
            help="journal every raw frame here (gzip, hourly files) for "
            "replay_frames; give each collector its own folder",
        )
        parser.add_argument(
            "--no-news", action="store_true", help="no news polling (news score NULL)"
        )
        parser.add_argument(
            "--news-interval",
            type=positive,
            default=60.0,
            help="seconds between news polls per symbol (default %(default)s)",
        )
        parser.add_argument(
            "--receiver-thread",
            action="store_true",
            help="read the WebSocket in a thread of this process instead of a "
            "helper process (one core instead of two; slower at high trade rates)",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="run against the built-in simulated feed (no key or network needed)",
        )
        parser.add_argument(
            "--demo-rate",
            type=positive,
            default=30.0,
            help="trades per second of the simulated feed (with --demo; default "
            "%(default)s)",
        )

    def handle(self, *args, **options):
        universe = options["universe"]
        if universe and (options["symbol"] or options["symbols"]):
            raise CommandError("give --universe or --symbol/--symbols, not both")
        symbols = (
            [] if universe else parse_symbols(options["symbol"], options["symbols"])
        )
        label = "universe" if universe else symbol_set_key(symbols)
        if options["grace"] < 0 or options["revision_window"] < options["grace"]:
            raise CommandError("need 0 <= --grace <= --revision-window")
        port = options["metrics_port"]
        if port is not None and not 0 <= port <= 65535:
            raise CommandError(f"--metrics-port {port} is not a TCP port (0-65535)")
        feed = options["feed"]
        first = feed.split(",")[0]
        base_url = options["ws_url"] or settings.EODHD_WS_URL
        ws_url = options["ws_url"] or feed_url(base_url, first)
        api_key = settings.EODHD_API_KEY
        stop = signals.stop_flag()
        simulator = None
        if options["demo"]:
            if stop.is_set():
                return  # stopped before anything started
            simulator = self._start_simulator(options["demo_rate"])
            ws_url, api_key = simulator.url_for(first), "demo"
        elif not api_key:
            raise CommandError(
                "EODHD_API_KEY is not set: put it in the environment or in .env "
                "(or run with --demo)"
            )
        config = CollectorConfig(
            symbols=symbols,
            ws_url=ws_url,
            api_key=api_key,
            feed=feed,
            # The demo feed trades around the clock (crypto and forex keep
            # their own hours: api.collector.runtime).
            skip_market_hours=options["skip_market_hours"] or options["demo"],
            extended_hours=options["extended_hours"],
            stale_after=options["stale_after"],
            grace=options["grace"],
            revision_window=options["revision_window"],
            conditions=options["conditions"],
            verbose=options["verbose"],
            source="simulator" if options["demo"] else "eodhd_ws",
            metrics_port=options["metrics_port"],
            # The demo runs offline: no news API to ask.
            news_enabled=not (options["no_news"] or options["demo"]),
            news_api_base=settings.EODHD_API_BASE,
            news_poll_interval=options["news_interval"],
            spool_dir=options["spool_dir"] or Path(settings.DATA_DIR) / "spool" / label,
            spool_max_bytes=int(options["spool_max_mb"] * 1024 * 1024),
            writer_lock=label,
            universe=universe,
            capacity=options["capacity"],
            symbols_per_connection=options["symbols_per_connection"],
            # A demo shows its progress every 10 s, not every minute.
            health_log_interval=10.0 if options["demo"] else 60.0,
            record_dir=options["record_dir"],
            metrics_host=options["metrics_host"],
            receiver_process=not options["receiver_thread"],
            policy=FeedPolicy(),
            max_pending=settings.COLLECTOR_MAX_PENDING_BARS,
            db_timeout=settings.COLLECTOR_DB_TIMEOUT_SECONDS,
            startup_db_wait=settings.COLLECTOR_STARTUP_DB_WAIT_SECONDS,
        )
        try:
            code = Collector(config, stop=stop).run(on_started=tune_gc)
        except StartupError as exc:
            raise CommandError(f"cannot start: {exc}") from None
        finally:
            if simulator is not None:
                simulator.stop()
        if code:
            sys.exit(code)

    def _start_simulator(self, rate: float):
        from api.simulator import FeedServer, SimOptions

        server = FeedServer(options=SimOptions(rate=rate, late_prob=0.01)).start()
        logger.info("🎭 demo: simulated EODHD feed at %s", server.url)
        return server
