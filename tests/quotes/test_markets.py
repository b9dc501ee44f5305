"""Market hours on fixed dates: holidays, early closes, the days clocks change."""

from __future__ import annotations

import datetime as dt

import pytest

from pitelemetry.quotes.markets import MARKETS, NYSE, Exchange, market_for

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def lse() -> Exchange:
    market = MARKETS["LSE"]
    assert isinstance(market, Exchange)
    return market


def test_the_early_closes_match_the_published_list() -> None:
    # NYSE's 13:00 closes for 2025 to 2027, as exchange_calendars lists them.
    assert NYSE.early_days is not None
    found = [day for year in (2025, 2026, 2027) for day in NYSE.early_days(year, NYSE.trades_on)]
    assert found == [
        dt.date(2025, 7, 3),
        dt.date(2025, 11, 28),
        dt.date(2025, 12, 24),
        dt.date(2026, 11, 27),
        dt.date(2026, 12, 24),
        dt.date(2027, 11, 26),
    ]


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        ("2026-11-26T16:00", False),  # Thanksgiving
        ("2026-11-27T17:59", True),  # the day after: open until 13:00 New York
        ("2026-11-27T18:00", False),
        ("2026-11-24T20:59", True),  # a Tuesday: until 16:00 (21:00 UTC in winter)
        ("2026-11-24T21:00", False),
        ("2026-04-03T15:00", False),  # Good Friday
        ("2026-11-21T15:00", False),  # a Saturday
        # The US moves its clocks on 8 March 2026, Europe on 29 March:
        ("2026-03-06T14:29", False),  # Friday before: opens 14:30 UTC
        ("2026-03-06T14:30", True),
        ("2026-03-09T13:30", True),  # Monday after: opens 13:30 UTC
        ("2026-03-09T13:29", False),
        ("2026-10-30T13:30", True),  # the week before clocks go back on 1 November
        ("2026-11-02T13:30", False),  # the Monday after: 14:30 UTC again
        ("2026-11-02T14:30", True),
    ],
)
def test_nyse_hours(moment: str, is_open: bool) -> None:
    assert NYSE.is_open(at(moment)) is is_open


def test_london_on_its_own_clock_change_and_holidays() -> None:
    london = lse()
    assert london.is_open(at("2026-03-27T08:00"))  # GMT: 08:00 is 08:00 UTC
    assert not london.is_open(at("2026-03-30T06:59"))
    assert london.is_open(at("2026-03-30T07:00"))  # BST: 08:00 is 07:00 UTC
    assert london.session(dt.date(2026, 12, 28)) is None  # Boxing Day, observed
    hours = london.session(dt.date(2026, 12, 24))
    assert hours is not None
    assert hours[1].time() == dt.time(12, 30)  # an early close


def test_last_close_skips_weekends_and_holidays() -> None:
    # Monday 30 November before the open: the last close was Friday's early one.
    closed = NYSE.last_close(at("2026-11-30T12:00"))
    assert closed == dt.datetime(2026, 11, 27, 13, 0, tzinfo=NYSE.zone)
    assert NYSE.last_close(at("2026-11-24T21:00")) == dt.datetime(
        2026, 11, 24, 16, 0, tzinfo=NYSE.zone
    )


def test_round_the_clock_and_week_long_markets() -> None:
    crypto, fx = MARKETS["crypto"], MARKETS["fx"]
    assert crypto.is_open(at("2026-11-21T03:00"))
    assert crypto.last_close(at("2026-11-21T03:00")) is None
    assert not fx.is_open(at("2026-11-21T12:00"))  # Saturday
    assert not fx.is_open(at("2026-11-22T21:59"))  # Sunday 16:59 New York
    assert fx.is_open(at("2026-11-22T22:00"))  # Sunday 17:00 New York
    assert not fx.is_open(at("2026-11-20T22:00"))  # Friday 17:00 New York
    assert fx.last_close(at("2026-11-21T12:00")) == at("2026-11-20T22:00")


@pytest.mark.parametrize(
    ("symbol", "code"),
    [
        ("AAPL", "NYSE"),
        ("BRK-B", "NYSE"),
        ("^GSPC", "NYSE"),
        ("VOD.L", "LSE"),
        ("SAP.DE", "XETRA"),
        ("7203.T", "JPX"),
        ("^N225", "JPX"),
        ("EURUSD=X", "fx"),
        ("GC=F", "fx"),
        ("BTC-USD", "crypto"),
    ],
)
def test_the_market_is_guessed_from_the_symbol(symbol: str, code: str) -> None:
    assert market_for(symbol).code == code
    assert market_for(symbol, "LSE").code == "LSE"
