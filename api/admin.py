from django.contrib import admin
from django.core.paginator import Paginator
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.functional import cached_property

from api import quality
from api.collector.leader import unit, writers
from api.models import (
    Backfill,
    Coverage,
    MinuteSnapshot,
    OHLCVTick,
    QuoteSnapshot,
    SecondSnapshot,
    TickCandle100,
    Ticker,
    UniverseSymbol,
)


class CappedPaginator(Paginator):
    """Counts at most CAP rows: a bar table of hundreds of millions of rows is
    never counted whole (`SELECT count(*) FROM (... LIMIT CAP)`). Pages past
    the cap are reached by narrowing: the ticker, time and source filters."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP].count()


class CollectorWrittenAdmin(admin.ModelAdmin):
    """Bars are written by the collector only: the admin shows them, never edits.

    The bar tables grow to hundreds of millions of rows: no full count (the
    paginator counts at most 10,000 rows, and the "of N total" count is off), and
    no date hierarchy (its year/month links scan the whole table); the time
    filter ("past 7 days", "this month") narrows instead.
    """

    list_select_related = ["ticker"]
    list_per_page = 100
    paginator = CappedPaginator
    show_full_result_count = False
    search_fields = ["ticker__symbol"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UniverseSymbol)
class UniverseSymbolAdmin(admin.ModelAdmin):
    """The symbols --universe collectors collect: an edit reaches them within
    seconds (subscribed or unsubscribed live); "writer" is the collector
    holding the symbol's writer lock right now."""

    list_display = ("symbol", "enabled", "writer", "note", "updated_at")
    list_editable = ("enabled",)
    list_filter = ("enabled",)
    search_fields = ("symbol", "note")
    actions = ("enable", "disable")

    def get_changelist_instance(self, request):
        """The page's rows, each told who writes it (one look at pg_locks)."""
        changelist = super().get_changelist_instance(request)
        rows = changelist.result_list
        found = writers(unit("trades", row.symbol) for row in rows)
        for row in rows:
            row.writer_now = found.get(unit("trades", row.symbol), "—")
        return changelist

    @admin.display(description="writer")
    def writer(self, obj) -> str:
        return getattr(obj, "writer_now", "—")

    @admin.action(description="Enable the selected symbols")
    def enable(self, request, queryset):
        queryset.update(enabled=True)

    @admin.action(description="Disable the selected symbols")
    def disable(self, request, queryset):
        queryset.update(enabled=False)


@admin.register(Ticker)
class TickerAdmin(admin.ModelAdmin):
    list_display = ["symbol", "company_name", "exchange", "created_at", "updated_at"]
    list_filter = ["exchange", "created_at"]
    search_fields = ["symbol", "company_name"]
    date_hierarchy = "created_at"
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["symbol", "company_name", "exchange"]}),
        ("Bookkeeping", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(SecondSnapshot)
class SecondSnapshotAdmin(CollectorWrittenAdmin):
    list_display = [
        "ticker",
        "timestamp",
        "ohlc_1sec_open",
        "ohlc_1sec_high",
        "ohlc_1sec_low",
        "ohlc_1sec_close",
        "ohlc_1sec_volume",
        "ohlc_1sec_tick_count",
        "ohlc_1sec_eligible_count",
        "composite_score",
    ]
    list_filter = ["ticker", "timestamp", "source"]
    fieldsets = [
        (None, {"fields": ["ticker", "timestamp", "source"]}),
        (
            "1-second OHLCV",
            {
                "fields": [
                    ("ohlc_1sec_open", "ohlc_1sec_high"),
                    ("ohlc_1sec_low", "ohlc_1sec_close"),
                    ("ohlc_1sec_volume", "vwap"),
                    ("ohlc_1sec_tick_count", "ohlc_1sec_eligible_count"),
                    ("price_change_1sec", "price_momentum_5sec"),
                ]
            },
        ),
        (
            "Sentiment",
            {
                "fields": [
                    "composite_score",
                    ("news_score_cached", "technical_score_cached"),
                    "flow_score_cached",
                ]
            },
        ),
        ("Bookkeeping", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(MinuteSnapshot)
class MinuteSnapshotAdmin(CollectorWrittenAdmin):
    list_display = [
        "ticker",
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "tick_count",
        "eligible_count",
        "composite_score",
    ]
    list_filter = ["ticker", "timestamp", "source"]
    fieldsets = [
        (None, {"fields": ["ticker", "timestamp", "source"]}),
        (
            "1-minute OHLCV",
            {
                "fields": [
                    ("open", "high"),
                    ("low", "close"),
                    ("volume", "vwap"),
                    ("tick_count", "eligible_count"),
                ]
            },
        ),
        ("Sentiment at the close", {"fields": ["composite_score"]}),
        ("Bookkeeping", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(TickCandle100)
class TickCandle100Admin(CollectorWrittenAdmin):
    list_display = [
        "ticker",
        "candle_number",
        "completed_at",
        "open",
        "high",
        "low",
        "close",
        "total_volume",
        "duration_seconds",
    ]
    list_filter = ["ticker", "completed_at", "source"]
    fieldsets = [
        (None, {"fields": ["ticker", "candle_number", "completed_at", "source"]}),
        (
            "OHLCV",
            {
                "fields": [
                    ("open", "high", "low", "close"),
                    ("total_volume", "tick_count", "eligible_count"),
                ]
            },
        ),
        (
            "Timing",
            {"fields": [("first_tick_time", "last_tick_time"), "duration_seconds"]},
        ),
        ("Bookkeeping", {"fields": ["created_at"]}),
    ]


@admin.register(QuoteSnapshot)
class QuoteSnapshotAdmin(CollectorWrittenAdmin):
    list_display = [
        "ticker",
        "timestamp",
        "bid",
        "ask",
        "bid_size",
        "ask_size",
        "mid_close",
        "spread_mean",
        "quote_count",
        "crossed_count",
    ]
    list_filter = ["ticker", "timestamp", "source"]
    fieldsets = [
        (None, {"fields": ["ticker", "timestamp", "source"]}),
        ("At the close", {"fields": [("bid", "ask"), ("bid_size", "ask_size")]}),
        (
            "Over the second",
            {
                "fields": [
                    ("best_bid", "worst_bid"),
                    ("best_ask", "worst_ask"),
                    ("mid_open", "mid_high", "mid_low", "mid_close"),
                    "spread_mean",
                ]
            },
        ),
        (
            "Counts",
            {
                "fields": [
                    ("quote_count", "crossed_count"),
                    ("locked_count", "zero_size_count"),
                ]
            },
        ),
        ("Bookkeeping", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(Backfill)
class BackfillAdmin(CollectorWrittenAdmin):
    """The ranges backfill_gaps fetched from the tick history: cost, what they
    filled, and live bars against the tape (docs/coverage.md)."""

    list_display = [
        "ticker",
        "start",
        "end",
        "status",
        "requests",
        "calls",
        "ticks",
        "seconds_filled",
        "minutes_rebuilt",
        "compared_seconds",
        "close_mismatches",
        "error",
    ]
    list_filter = ["ticker", "status", "start"]
    ordering = ["-start"]


@admin.register(Coverage)
class CoverageAdmin(CollectorWrittenAdmin):
    """When each collector was subscribed and receiving: the time between
    intervals was not observed (docs/coverage.md)."""

    list_display = [
        "ticker",
        "stream",
        "start",
        "end_or_open",
        "duration",
        "end_reason",
        "detail",
        "collector",
        "source",
    ]
    list_filter = ["ticker", "stream", "end_reason", "start", "source"]
    search_fields = ["ticker__symbol", "collector"]
    ordering = ["-start"]
    change_list_template = "admin/api/coverage/change_list.html"

    @admin.display(description="end", ordering="end")
    def end_or_open(self, obj: Coverage) -> str:
        if obj.end is None:
            return f"open (stored through {obj.seen_through:%H:%M:%S})"
        return f"{obj.end:%Y-%m-%d %H:%M:%S.%f}"[:-3]

    @admin.display(description="duration")
    def duration(self, obj: Coverage) -> str:
        seconds = (obj.until - obj.start).total_seconds()
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"

    def get_urls(self):
        view = self.admin_site.admin_view(self.quality_view)
        return [
            path("quality/", view, name="api_coverage_quality"),
            *super().get_urls(),
        ]

    def quality_view(self, request):
        """One session's data-quality report (api/quality.py)."""
        session = request.GET.get("session", "regular")
        extended = session == "extended"
        error, rows, day = "", [], None
        try:
            day = quality.trading_day(request.GET.get("date"))
            start, end = quality.session_window(day, extended)
        except ValueError as exc:
            error = str(exc)
        else:
            rows = quality.report(start, end)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Data quality",
            "day": day,
            "session": "extended" if extended else "regular",
            "rows": rows,
            "error": error,
        }
        return TemplateResponse(request, "admin/api/coverage/quality.html", context)


@admin.register(OHLCVTick)
class OHLCVTickAdmin(CollectorWrittenAdmin):
    list_display = ["ticker", "timestamp", "price", "volume", "source"]
    list_filter = ["ticker", "timestamp", "source"]
    fieldsets = [
        (None, {"fields": ["ticker", "timestamp", "source"]}),
        ("Trade", {"fields": [("price", "volume")]}),
        ("Bookkeeping", {"fields": ["created_at"]}),
    ]
