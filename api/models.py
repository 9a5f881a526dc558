"""The stored market data. Names and tables are the ones users already rely on."""

from django.core.validators import RegexValidator
from django.db import models

# Prices: up to 14 integer digits and 10 decimals covers equities, FX and crypto
# (from fractions of a cent to six-figure coins). Volumes keep 10 decimals so
# fractional shares and crypto quantities are stored without loss.
PRICE = {"max_digits": 24, "decimal_places": 10}
VOLUME = {"max_digits": 30, "decimal_places": 10}
PERCENT = {"max_digits": 20, "decimal_places": 6}
# A bar's prices come from the prints the trade-condition rules let update them
# (docs/conditions.md); a price no print was eligible for is NULL, never a price
# borrowed from another bar.
BAR_PRICE = {**PRICE, "null": True, "blank": True}
ELIGIBLE_HELP = (
    "Prints that were eligible to set the high/low by the trade-condition rules "
    "(the tick count counts every print)."
)


class Source(models.TextChoices):
    EODHD_WS = "eodhd_ws", "EODHD WebSocket"
    REPLAY = "replay", "Replayed journal"
    SIMULATOR = "simulator", "Simulated feed"
    BACKFILL = "backfill", "EODHD tick history (backfill)"


class UniverseSymbol(models.Model):
    """A symbol to collect: collectors started with --universe take their
    symbols from the enabled rows, claiming them through per-symbol writer
    locks, and follow edits within seconds (api/collector/universe.py)."""

    symbol = models.CharField(
        max_length=20,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Z0-9][A-Z0-9.\-]{0,19}$",
                "Upper-case letters, digits, '.' and '-' (e.g. AAPL, BRK.B).",
            )
        ],
    )
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "api_universe"
        ordering = ["symbol"]
        verbose_name = "universe symbol"

    def __str__(self) -> str:
        return self.symbol

    def save(self, *args, **kwargs) -> None:
        self.symbol = self.symbol.strip().upper()
        super().save(*args, **kwargs)


class Ticker(models.Model):
    symbol = models.CharField(max_length=32, unique=True)
    company_name = models.CharField(max_length=200, blank=True, default="")
    exchange = models.CharField(max_length=32, blank=True, default="US")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        return self.symbol


class SecondSnapshot(models.Model):
    """One 1-second OHLCV bar, keyed by the UTC second of the trades' timestamps."""

    ticker = models.ForeignKey(
        Ticker, on_delete=models.CASCADE, related_name="second_snapshots"
    )
    timestamp = models.DateTimeField(help_text="Start of the UTC second.")
    ohlc_1sec_open = models.DecimalField(**BAR_PRICE)
    ohlc_1sec_high = models.DecimalField(**BAR_PRICE)
    ohlc_1sec_low = models.DecimalField(**BAR_PRICE)
    ohlc_1sec_close = models.DecimalField(**BAR_PRICE)
    ohlc_1sec_volume = models.DecimalField(**VOLUME)
    ohlc_1sec_tick_count = models.PositiveIntegerField()
    ohlc_1sec_eligible_count = models.PositiveIntegerField(help_text=ELIGIBLE_HELP)
    vwap = models.DecimalField(**PRICE, null=True, blank=True)
    price_momentum_5sec = models.DecimalField(**PERCENT, null=True, blank=True)
    price_change_1sec = models.DecimalField(**PERCENT, null=True, blank=True)
    # Scores are in -100..+100 and NULL when unknown: never a fake 0.
    composite_score = models.FloatField(null=True, blank=True)
    news_score_cached = models.FloatField(null=True, blank=True)
    technical_score_cached = models.FloatField(null=True, blank=True)
    flow_score_cached = models.FloatField(null=True, blank=True)
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.EODHD_WS
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "api_second_snapshot"
        ordering = ["ticker", "timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticker", "timestamp"], name="uniq_second_snapshot_ticker_ts"
            ),
        ]
        # (ticker, timestamp) range reads use the unique constraint's index;
        # retention deletes by time across tickers.
        indexes = [models.Index(fields=["timestamp"], name="second_snapshot_ts_idx")]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.timestamp:%Y-%m-%d %H:%M:%S}"


class MinuteSnapshot(models.Model):
    """One 1-minute OHLCV bar, keyed by the UTC minute of the trades' timestamps;
    built live from the same trades as the 1-second bars, with the same rules for
    late trades."""

    ticker = models.ForeignKey(
        Ticker, on_delete=models.CASCADE, related_name="minute_snapshots"
    )
    timestamp = models.DateTimeField(help_text="Start of the UTC minute.")
    open = models.DecimalField(**BAR_PRICE)
    high = models.DecimalField(**BAR_PRICE)
    low = models.DecimalField(**BAR_PRICE)
    close = models.DecimalField(**BAR_PRICE)
    volume = models.DecimalField(**VOLUME)
    tick_count = models.PositiveIntegerField()
    eligible_count = models.PositiveIntegerField(help_text=ELIGIBLE_HELP)
    vwap = models.DecimalField(**PRICE, null=True, blank=True)
    # The composite sentiment when the minute closed; NULL when unknown.
    composite_score = models.FloatField(null=True, blank=True)
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.EODHD_WS
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "api_minute_snapshot"
        ordering = ["ticker", "timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticker", "timestamp"], name="uniq_minute_snapshot_ticker_ts"
            ),
        ]
        indexes = [models.Index(fields=["timestamp"], name="minute_snapshot_ts_idx")]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.timestamp:%Y-%m-%d %H:%M}"


class TickCandle100(models.Model):
    """One bar of 100 consecutive trades (arrival order), numbered 1, 2, 3 ..."""

    ticker = models.ForeignKey(
        Ticker, on_delete=models.CASCADE, related_name="tick_candles"
    )
    candle_number = models.BigIntegerField()
    completed_at = models.DateTimeField()
    open = models.DecimalField(**BAR_PRICE)
    high = models.DecimalField(**BAR_PRICE)
    low = models.DecimalField(**BAR_PRICE)
    close = models.DecimalField(**BAR_PRICE)
    total_volume = models.DecimalField(**VOLUME)
    tick_count = models.PositiveIntegerField(default=100)
    eligible_count = models.PositiveIntegerField(help_text=ELIGIBLE_HELP)
    first_tick_time = models.DateTimeField()
    last_tick_time = models.DateTimeField()
    duration_seconds = models.DecimalField(max_digits=14, decimal_places=3)
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.EODHD_WS
    )
    spans_gap = models.BooleanField(
        default=False,
        help_text="Its trades span time no collector observed (backfill_gaps): "
        "they are not 100 consecutive trades of the tape.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "api_tick_candle_100"
        ordering = ["ticker", "candle_number"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticker", "candle_number"],
                name="uniq_tick_candle_ticker_number",
            ),
        ]
        indexes = [
            models.Index(
                fields=["ticker", "completed_at"], name="tick_candle_ticker_done_idx"
            ),
            models.Index(fields=["completed_at"], name="tick_candle_done_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.ticker_id} #{self.candle_number}"


# A mid-price (bid + ask) / 2 has one decimal place more than its prices.
MID_PRICE = {"max_digits": 25, "decimal_places": 11, "null": True, "blank": True}


class QuoteSnapshot(models.Model):
    """One second of quotes of a symbol (EODHD's us-quote or forex stream), keyed
    by the UTC second of the quotes' timestamps. Prices are NULL when every quote
    of the second was crossed (docs/quotes.md)."""

    ticker = models.ForeignKey(
        Ticker, on_delete=models.CASCADE, related_name="quote_snapshots"
    )
    timestamp = models.DateTimeField(help_text="Start of the UTC second.")
    bid = models.DecimalField(**BAR_PRICE, help_text="Bid at the second's close.")
    ask = models.DecimalField(**BAR_PRICE, help_text="Ask at the second's close.")
    bid_size = models.DecimalField(**VOLUME, null=True, blank=True)
    ask_size = models.DecimalField(**VOLUME, null=True, blank=True)
    best_bid = models.DecimalField(**BAR_PRICE)
    worst_bid = models.DecimalField(**BAR_PRICE)
    best_ask = models.DecimalField(**BAR_PRICE)
    worst_ask = models.DecimalField(**BAR_PRICE)
    mid_open = models.DecimalField(**MID_PRICE)
    mid_high = models.DecimalField(**MID_PRICE)
    mid_low = models.DecimalField(**MID_PRICE)
    mid_close = models.DecimalField(**MID_PRICE)
    spread_mean = models.DecimalField(
        **BAR_PRICE, help_text="Mean quoted spread (ask - bid) of the second's quotes."
    )
    quote_count = models.PositiveIntegerField()
    crossed_count = models.PositiveIntegerField(help_text="Quotes with bid > ask.")
    locked_count = models.PositiveIntegerField(help_text="Quotes with bid == ask.")
    zero_size_count = models.PositiveIntegerField(
        help_text="Quotes with a zero bid or ask size."
    )
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.EODHD_WS
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "api_quote_second"
        ordering = ["ticker", "timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticker", "timestamp"], name="uniq_quote_second_ticker_ts"
            ),
        ]
        indexes = [models.Index(fields=["timestamp"], name="quote_second_ts_idx")]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.timestamp:%Y-%m-%d %H:%M:%S} quotes"


class OHLCVTick(models.Model):
    """Single trades. Kept for backwards compatibility; the collector never writes
    here (trades live in memory only)."""

    ticker = models.ForeignKey(Ticker, on_delete=models.CASCADE, related_name="ticks")
    timestamp = models.DateTimeField()
    price = models.DecimalField(**PRICE)
    volume = models.DecimalField(**VOLUME)
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.EODHD_WS
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "api_ohlcv_tick"
        ordering = ["ticker", "timestamp"]
        indexes = [
            models.Index(
                fields=["ticker", "timestamp"], name="ohlcv_tick_ticker_ts_idx"
            ),
            models.Index(fields=["timestamp"], name="ohlcv_tick_ts_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.timestamp:%Y-%m-%d %H:%M:%S.%f} {self.price}"


class EndReason(models.TextChoices):
    OPEN = "", "still observing"
    RECONNECT = "reconnect", "the connection dropped or was refused"
    STALE = "stale", "no data: reconnected by the health check"
    MARKET_CLOSE = "market_close", "market closed"
    SHUTDOWN = "shutdown", "the collector stopped"
    CRASH = "crash", "the collector died (found at a later start)"
    UNSUBSCRIBED = "unsubscribed", "taken off the collector (universe edit)"


class Coverage(models.Model):
    """An interval during which a collector was subscribed to a symbol's stream
    and receiving: time outside every interval was not observed (a gap), which a
    missing 1-second bar alone cannot tell from a quiet second. `start` and `end`
    are exact instants, so the seconds they fall in are partial (docs/coverage.md).
    While open, `end` is NULL and `seen_through` says how far the stored bars
    reach; a collector that died leaves it open, and the next one closes it there
    (`crash`)."""

    ticker = models.ForeignKey(
        Ticker, on_delete=models.CASCADE, related_name="coverage"
    )
    stream = models.CharField(
        max_length=16, help_text="The EODHD stream: us, crypto, us-quote, forex."
    )
    collector = models.CharField(
        max_length=80, help_text="host:pid of the collector that observed."
    )
    start = models.DateTimeField()
    end = models.DateTimeField(null=True, blank=True)
    seen_through = models.DateTimeField()
    end_reason = models.CharField(
        max_length=16, choices=EndReason.choices, blank=True, default=""
    )
    detail = models.CharField(
        max_length=80,
        blank=True,
        default="",
        help_text="The receiver's words for the end.",
    )
    source = models.CharField(
        max_length=20, choices=Source.choices, default=Source.EODHD_WS
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "api_coverage"
        verbose_name_plural = "coverage"
        ordering = ["ticker", "stream", "start"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticker", "stream", "collector", "start"],
                name="uniq_coverage_interval",
            ),
        ]
        indexes = [
            models.Index(
                fields=["ticker", "stream", "start"], name="coverage_symbol_idx"
            ),
            models.Index(
                fields=["seen_through"],
                name="coverage_open_idx",
                condition=models.Q(end__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.stream} {self.start:%Y-%m-%d %H:%M:%S}"

    @property
    def until(self):
        """Where the interval stops: its end, or while open how far it reaches."""
        return self.end if self.end is not None else self.seen_through


class BackfillStatus(models.TextChoices):
    DONE = "done", "stored"
    PARTIAL = "partial", "interrupted (API budget): fetched again by the next run"
    UNPUBLISHED = "unpublished", "tick history not published yet (404)"
    FAILED = "failed", "failed: see the error"


class Backfill(models.Model):
    """One range of EODHD's tick history fetched by backfill_gaps to rebuild the
    bars of unobserved seconds (docs/coverage.md): what it cost, what it filled,
    and how the live bars around it compare with the tape."""

    ticker = models.ForeignKey(
        Ticker, on_delete=models.CASCADE, related_name="backfills"
    )
    stream = models.CharField(max_length=16, default="us")
    start = models.DateTimeField(help_text="Whole second, inclusive.")
    end = models.DateTimeField(help_text="Whole second, exclusive.")
    status = models.CharField(max_length=12, choices=BackfillStatus.choices)
    requests = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0, help_text="API calls spent.")
    ticks = models.PositiveIntegerField(
        default=0, help_text="Trades after de-duplication."
    )
    seconds_filled = models.PositiveIntegerField(default=0)
    minutes_rebuilt = models.PositiveIntegerField(default=0)
    compared_seconds = models.PositiveIntegerField(
        default=0, help_text="Seconds observed live that the fetched tape also covers."
    )
    live_volume = models.DecimalField(**VOLUME, default=0)
    tape_volume = models.DecimalField(**VOLUME, default=0)
    close_mismatches = models.PositiveIntegerField(default=0)
    max_close_diff = models.DecimalField(**PRICE, null=True, blank=True)
    error = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "api_backfill"
        ordering = ["ticker", "start"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticker", "stream", "start", "end"], name="uniq_backfill_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.ticker_id} {self.start:%Y-%m-%d %H:%M:%S} {self.status}"


class ApiUsage(models.Model):
    """EODHD API calls spent per key and UTC day, shared by every process on the
    database (api/budget.py). The key is stored as a digest, never itself."""

    key = models.CharField(max_length=64, help_text="sha256 of the API key, in hex.")
    day = models.DateField()
    calls = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "api_usage"
        constraints = [
            models.UniqueConstraint(fields=["key", "day"], name="uniq_api_usage_day")
        ]

    def __str__(self) -> str:
        return f"{self.key[:8]} {self.day}: {self.calls}"
