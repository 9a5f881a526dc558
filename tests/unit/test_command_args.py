import pytest

from django.core.management.base import CommandError

from api.collector.feed import with_token
from api.management.commands.run_websocket_collector_v2 import feed_url, parse_symbols


def test_it_takes_the_single_symbol_when_no_list_is_given():
    assert parse_symbols("qld", None) == ["QLD"]


def test_it_takes_qld_when_no_symbol_is_given():
    assert parse_symbols(None, None) == ["QLD"]


def test_it_refuses_both_a_symbol_and_a_list_in_one_line():
    with pytest.raises(CommandError, match="give --symbol or --symbols, not both"):
        parse_symbols("QLD", "AAPL")


def test_it_normalises_and_dedupes_a_symbol_list():
    assert parse_symbols(None, " aapl,MSFT ,aapl,,BRK.B") == ["AAPL", "MSFT", "BRK.B"]


def test_it_takes_more_symbols_than_one_connection_holds():
    # They are spread over connections (api/collector/pool.py).
    many = ",".join(f"S{i}" for i in range(500))
    assert len(parse_symbols(None, many)) == 500


def test_it_refuses_a_universe_and_a_symbol_list_together():
    from django.core.management import call_command

    with pytest.raises(CommandError, match="give --universe or --symbol/--symbols"):
        call_command("run_websocket_collector_v2", "--universe", "--symbols", "AAPL")


@pytest.mark.parametrize("option", ["--capacity", "--symbols-per-connection"])
def test_it_refuses_a_count_below_one(option, capsys):
    from django.core.management import call_command

    with pytest.raises((CommandError, SystemExit)):
        call_command("run_websocket_collector_v2", "--universe", option, "0")


def test_it_refuses_a_malformed_symbol():
    with pytest.raises(CommandError, match="'A B' is not a valid symbol"):
        parse_symbols(None, "AAPL,A B")


def test_it_derives_the_feed_url_from_the_configured_one():
    base = "wss://ws.eodhistoricaldata.com/ws/us"
    assert feed_url(base, "crypto") == "wss://ws.eodhistoricaldata.com/ws/crypto"
    assert feed_url(base + "/", "us") == base


def test_it_appends_the_token_to_the_feed_url():
    assert with_token("ws://h/ws/us", "k") == "ws://h/ws/us?api_token=k"
    assert with_token("ws://h/ws/us?x=1", "k") == "ws://h/ws/us?x=1&api_token=k"
