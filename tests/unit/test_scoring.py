import math

import pytest

from api.sentiment.scoring import (
    Article,
    Scores,
    TechnicalSmoother,
    article_impact,
    composite,
    decayed_impact,
    news_score,
    order_flow,
    technical_momentum,
)

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("polarity", "impact"),
    [
        (0.0, 0.0),
        (0.199, 0.0),
        (0.2, 2.0),
        (0.399, 2.0),
        (0.4, 5.0),
        (0.599, 5.0),
        (0.6, 15.0),
        (0.799, 15.0),
        (0.8, 25.0),
        (1.0, 25.0),
        (-0.199, 0.0),
        (-0.2, -2.0),
        (-0.4, -5.0),
        (-0.6, -15.0),
        (-0.799, -15.0),
        (-0.8, -25.0),
        (-1.0, -25.0),
    ],
)
def test_it_tiers_impact_by_absolute_polarity(polarity, impact):
    assert article_impact(polarity) == impact


@pytest.mark.parametrize("polarity", [None, math.nan, math.inf])
def test_it_gives_unusable_polarity_no_impact(polarity):
    assert article_impact(polarity) == 0.0


# ln(1 - 0.0383) = -(0.0383 + 0.0383²/2 + 0.0383³/3 + ...) = -0.0390527
@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        (0, 25.0),
        (1, 24.0425),  # 25 * 0.9617
        (17.7, 12.524),  # 25 * exp(-17.7 * 0.0390527) = 25 * 0.500958: a half-life
        (60, 2.4006),  # 25 * exp(-2.343163) = 25 * 0.1 * exp(-0.040578)
    ],
)
def test_it_decays_impact_continuously_per_minute(minutes, expected):
    assert decayed_impact(25.0, minutes * 60) == pytest.approx(expected, abs=1e-3)


def test_it_decays_by_fractions_of_a_minute():
    # 30 s is half a minute: 25 * sqrt(0.9617) = 25 * 0.980663
    assert decayed_impact(25.0, 30) == pytest.approx(24.5166, abs=1e-3)


def test_it_treats_an_article_from_the_future_as_brand_new():
    assert decayed_impact(-15.0, -120) == -15.0


def test_it_returns_none_news_score_without_articles():
    assert news_score([], NOW) is None


def test_it_sums_decayed_impacts_of_articles():
    articles = [
        Article("https://a/1", NOW, 0.9),  # +25, fresh
        Article("https://a/2", NOW - 60, -0.5),  # -5 * 0.9617 = -4.8085
        Article("https://a/3", NOW - 600, 0.1),  # tier 0
    ]
    assert news_score(articles, NOW) == pytest.approx(20.1915, abs=1e-6)


def test_it_clips_news_score():
    positive = [Article(f"https://a/{i}", NOW, 0.95) for i in range(5)]  # 125
    negative = [Article(f"https://b/{i}", NOW, -0.95) for i in range(5)]  # -125
    assert news_score(positive, NOW) == 100.0
    assert news_score(negative, NOW) == -100.0


def test_it_keeps_an_all_neutral_news_score_known():
    assert news_score([Article("https://a/1", NOW, 0.05)], NOW) == 0.0


def test_it_gives_rising_closes_a_positive_momentum():
    # 100 -> 100.5 is +0.5 %: 0.5 * 15 = 7.5
    closes = [(NOW - 20, 100.0), (NOW - 10, 100.2), (NOW, 100.5)]
    assert technical_momentum(closes, NOW) == pytest.approx(7.5)


def test_it_gives_falling_closes_a_negative_momentum():
    # 200 -> 198 is -1 %: -15
    closes = [(NOW - 29, 200.0), (NOW - 1, 198.0)]
    assert technical_momentum(closes, NOW) == pytest.approx(-15.0)


def test_it_measures_momentum_only_over_the_window():
    # The 50.0 close is 31 s old, outside the 30 s window: 100 -> 101 is +1 % = 15.
    closes = [(NOW - 31, 50.0), (NOW - 30, 100.0), (NOW, 101.0)]
    assert technical_momentum(closes, NOW) == pytest.approx(15.0)


def test_it_clips_momentum():
    # +10 % would be 150 points.
    assert technical_momentum([(NOW - 5, 100.0), (NOW, 110.0)], NOW) == 100.0
    assert technical_momentum([(NOW - 5, 100.0), (NOW, 90.0)], NOW) == -100.0


def test_it_returns_none_momentum_with_fewer_than_two_closes():
    assert technical_momentum([], NOW) is None
    assert technical_momentum([(NOW - 40, 1.0), (NOW, 2.0)], NOW) is None


def test_it_smooths_momentum_from_the_first_value():
    smoother = TechnicalSmoother()
    assert smoother.update(None) is None
    assert smoother.update(10.0) == 10.0
    assert smoother.update(20.0) == pytest.approx(12.0)  # 0.8*10 + 0.2*20
    assert smoother.update(None) == pytest.approx(12.0)
    assert smoother.update(-8.0) == pytest.approx(8.0)  # 0.8*12 + 0.2*-8


def test_it_classifies_unchanged_prices_with_the_previous_side():
    trades = [
        (NOW - 50, 10.0, 1.0),  # first trade: no side
        (NOW - 40, 10.1, 2.0),  # uptick: buy 2
        (NOW - 30, 10.1, 3.0),  # unchanged: buy 3
        (NOW - 20, 10.0, 4.0),  # downtick: sell 4
        (NOW - 10, 10.0, 1.0),  # unchanged: sell 1
    ]
    # buys 5, sells 5 -> 0; then swap the last to an uptick to check the sign.
    assert order_flow(trades, NOW) == 0.0
    trades[-1] = (NOW - 10, 10.2, 1.0)  # buys 6, sells 4 -> (6-4)/10 = 20
    assert order_flow(trades, NOW) == pytest.approx(20.0)


def test_it_classifies_the_windows_first_trade_against_the_prior_trade():
    trades = [
        (NOW - 90, 10.0, 5.0),  # before the window: sets the price only
        (NOW - 61, 10.5, 7.0),  # before the window: uptick, side = buy
        (NOW - 30, 10.5, 3.0),  # in window, unchanged: buy (side from before)
        (NOW - 10, 10.4, 1.0),  # downtick: sell
    ]
    # (3 - 1) / 4 * 100 = 50
    assert order_flow(trades, NOW) == pytest.approx(50.0)


def test_it_returns_none_flow_without_classified_volume():
    assert order_flow([], NOW) is None
    assert order_flow([(NOW - 5, 10.0, 100.0)], NOW) is None
    assert order_flow([(NOW - 5, 10.0, 1.0), (NOW - 4, 10.0, 1.0)], NOW) is None
    assert order_flow([(NOW - 90, 10.0, 1.0), (NOW - 80, 11.0, 1.0)], NOW) is None


def test_it_weighs_all_known_components():
    # 0.45*40 + 0.30*-20 + 0.25*10 = 18 - 6 + 2.5 = 14.5
    assert composite(40.0, -20.0, 10.0) == pytest.approx(14.5)


def test_it_renormalises_when_news_is_unknown():
    # (0.30*-20 + 0.25*10) / 0.55 = -3.5 / 0.55 = -6.363636...
    assert composite(None, -20.0, 10.0) == pytest.approx(-6.363636, abs=1e-6)


def test_it_uses_custom_weights():
    # flow unknown: (0.5*80 + 0.5*-40) / (0.5 + 0.5) = 20
    assert composite(80.0, -40.0, None, (0.5, 0.5, 0.0)) == pytest.approx(20.0)


def test_it_returns_none_when_nothing_is_known():
    assert composite(None, None, None) is None
    assert composite(None, None, 30.0, (1.0, 1.0, 0.0)) is None


def test_it_clips_the_composite():
    assert composite(150.0, None, None) == 100.0


@pytest.mark.parametrize("weights", [(0.0, 0.0, 0.0), (0.5, -0.1, 0.6), (1.0, 1.0)])
def test_it_rejects_bad_weights(weights):
    with pytest.raises(ValueError):
        composite(1.0, 1.0, 1.0, weights)


def test_it_keeps_scores_immutable():
    scores = Scores(
        composite=None, news=None, technical=1.0, flow=None, computed_at=NOW
    )
    with pytest.raises(AttributeError):
        scores.news = 3.0  # type: ignore[misc]
