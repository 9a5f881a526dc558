"""The OpenAPI schema, generated from the code, against the running API:
schemathesis sends what the schema allows (and what it does not) and checks
every answer - never a 500, and always a status, media type and body the schema
describes."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from api.models import SecondSnapshot, Ticker

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)


@pytest.fixture
def api_schema(live_server, transactional_db):
    ticker = Ticker.objects.create(symbol="QLD")
    SecondSnapshot.objects.bulk_create(
        SecondSnapshot(
            ticker=ticker,
            timestamp=T0 + timedelta(seconds=i),
            ohlc_1sec_open=None if i % 7 == 0 else Decimal("100.25"),
            ohlc_1sec_high=None if i % 7 == 0 else Decimal("101"),
            ohlc_1sec_low=None if i % 7 == 0 else Decimal("99"),
            ohlc_1sec_close=None if i % 7 == 0 else Decimal("100.5"),
            ohlc_1sec_volume=Decimal("12.5"),
            ohlc_1sec_tick_count=3,
            ohlc_1sec_eligible_count=0 if i % 7 == 0 else 2,
            composite_score=None if i % 3 else 12.5,
        )
        for i in range(120)
    )
    return schemathesis.openapi.from_url(f"{live_server.url}/api/schema/")


# schemathesis's own pytest plugin does not run under pytest 9 yet: each
# operation's strategy is driven here by Hypothesis directly.
def test_every_generated_request_gets_an_answer_the_schema_describes(api_schema):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert sorted(operation.label for operation in operations) == [
        "GET /api/coverage/",
        "GET /api/health/",
        "GET /api/minute-candles/",
        "GET /api/quote-candles/",
        "GET /api/realtime-sentiment/",
        "GET /api/second-candles/",
        "GET /api/symbols/",
        "GET /api/tick-candles/",
    ]
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    for operation in operations:
        strategy = operation.as_strategy(generation_mode=modes[0]) | (
            operation.as_strategy(generation_mode=modes[1])
        )

        @given(case=strategy)
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case):
            # Every check but one: the schema cannot state every bound a valid
            # request must meet (dates within 1970-2099, real calendar days,
            # known time zones), so a schema-shaped value may be a documented
            # 400. A 400 must still carry the error body the schema describes.
            case.call_and_validate(excluded_checks=[checks.positive_data_acceptance])

        run()


def test_the_schema_and_its_docs_are_served(client, db):
    body = client.get("/api/schema/").json()
    assert body["openapi"].startswith("3.")
    assert "/api/second-candles/" in body["paths"]
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui-bundle.js" in docs.content
