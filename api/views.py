"""JSON read endpoints."""

from django.http import JsonResponse
from django.utils import timezone

from api.models import SecondSnapshot, Ticker


def _iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def health(request) -> JsonResponse:
    """Last stored 1-second bar per symbol and its age: a collector heartbeat."""
    now = timezone.now()
    symbols = {}
    for ticker in Ticker.objects.order_by("symbol"):
        # One index probe per ticker on (ticker, timestamp), not a scan of the table.
        last = (
            SecondSnapshot.objects.filter(ticker=ticker)
            .order_by("-timestamp")
            .values_list("timestamp", flat=True)
            .first()
        )
        if last is not None:
            symbols[ticker.symbol] = {
                "last_bar": _iso(last),
                "age_seconds": round((now - last).total_seconds(), 3),
            }
    return JsonResponse({"now": _iso(now), "symbols": symbols})
