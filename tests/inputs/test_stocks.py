"""The stocks input with an injected clock against a local quote server: fallback,
market hours, de-duplication, quotas, unknown symbols, the portfolio."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from pitelemetry.config import ConfigError, Secret, parse
from pitelemetry.inputs import InputError
from pitelemetry.inputs.stocks import Instrument, ProviderOptions, StocksInput, StocksOptions
from pitelemetry.point import Point
from pitelemetry.quotes.budget import Budget
from pitelemetry.quotes.providers import PROVIDERS
from tests.golden import assert_golden
from tests.quote_server import QuoteServer
from tests.quotes.test_providers import ERRORS, PATHS

YAHOO = "/v8/finance/chart/{}"
KEY = Secret("KEY123", "test")
TUESDAY_NOON = "2026-11-24T17:00"  # 12:00 in New York: the NYSE is open
SATURDAY = "2026-11-21T15:00"


class Clock:
    """Wall and monotonic time for the input; ``sleep`` moves it on."""

    def __init__(self, start: str) -> None:
        self.now = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC).timestamp()

    def time_ns(self) -> int:
        return int(self.now * 1e9)

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


class RecordingSession(requests.Session):
    """Notes the injected clock's time of every request."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.times: list[float] = []

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        self.times.append(self.clock.now)
        return super().get(url, **kwargs)


def make(
    quotes: QuoteServer,
    clock: Clock,
    tmp_path: Path,
    *,
    interval: float = 300.0,
    **options: Any,
) -> tuple[StocksInput, RecordingSession]:
    providers: Mapping[str, ProviderOptions] = options.pop("providers", {})
    settings = {
        name: ProviderOptions(p.api_key_file, quotes.url)
        for name, p in {**{n: ProviderOptions() for n in PROVIDERS}, **providers}.items()
    }
    session = RecordingSession(clock)
    stocks = StocksInput(
        StocksOptions(base_url=quotes.url, providers=settings, **options),
        interval=interval,
        time_ns=clock.time_ns,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        session=session,
        state_dir=tmp_path,
    )
    return stocks, session


def collect(stocks: StocksInput) -> list[Point]:
    return list(stocks.collect())


def test_a_quote_point(quotes: QuoteServer, tmp_path: Path) -> None:
    quotes.serve(YAHOO.format("AAPL"), "yahoo_v8_chart_aapl_2026-07-24.json")
    stocks, _ = make(quotes, Clock(TUESDAY_NOON), tmp_path, symbols=("AAPL",))
    (point,) = collect(stocks)
    assert point.measurement == "quote"
    assert point.tags == {
        "symbol": "AAPL",
        "currency": "USD",
        "exchange": "NMS",
        "provider": "yahoo",
    }
    assert point.time_ns == 1784903522 * 10**9  # the source's time, not the poll's
    assert point.fields["price"] == 328.879
    assert set(point.fields) == {
        "price",
        "open",
        "high",
        "low",
        "prev_close",
        "volume",
        "change",
        "change_pct",
    }


def test_an_unchanged_source_time_is_not_written_again(quotes: QuoteServer, tmp_path: Path) -> None:
    quotes.serve(YAHOO.format("AAPL"), "yahoo_v8_chart_aapl_2026-07-24.json")
    clock = Clock(TUESDAY_NOON)
    stocks, session = make(quotes, clock, tmp_path, symbols=("AAPL",))
    assert len(collect(stocks)) == 1
    clock.sleep(300)
    assert collect(stocks) == []
    assert len(session.times) == 2  # asked, but nothing new to write


def test_a_blocked_provider_falls_back_and_rests(quotes: QuoteServer, tmp_path: Path) -> None:
    quotes.serve(YAHOO.format("AAPL"), "stooq_proof_of_work.html")
    quotes.serve("/q/l/", "stooq_q_l_aapl.csv")
    clock = Clock(TUESDAY_NOON)
    stocks, _ = make(quotes, clock, tmp_path, symbols=("AAPL",), fallback=("stooq",))
    (point,) = collect(stocks)
    assert point.tags["provider"] == "stooq"
    assert point.fields["price"] == 178.61
    assert quotes.asked("/q/l/")[0].query["s"] == "aapl.us"
    clock.sleep(300)
    collect(stocks)
    assert len(quotes.asked(YAHOO.format("AAPL"))) == 1  # resting for six hours
    assert len(quotes.asked("/q/l/")) == 2
    clock.sleep(6 * 3600)
    collect(stocks)
    assert len(quotes.asked(YAHOO.format("AAPL"))) == 2


def test_when_every_provider_fails_nothing_is_written_and_the_error_says_why(
    quotes: QuoteServer, tmp_path: Path
) -> None:
    quotes.serve(YAHOO.format("AAPL"), "yahoo_429.txt", 429, headers={"Retry-After": "120"})
    quotes.serve("/q/l/", "stooq_apikey_notice.txt")
    clock = Clock(TUESDAY_NOON)
    stocks, _ = make(quotes, clock, tmp_path, symbols=("AAPL",), fallback=("stooq",))
    with pytest.raises(InputError, match=r"AAPL \(yahoo: rate limited; stooq: blocked\)"):
        collect(stocks)
    clock.sleep(60)
    with pytest.raises(InputError):
        collect(stocks)
    assert len(quotes.asked(YAHOO.format("AAPL"))) == 1  # Retry-After: 120
    clock.sleep(61)
    quotes.serve(YAHOO.format("AAPL"), "yahoo_v8_chart_aapl_2026-07-24.json")
    assert len(collect(stocks)) == 1


def test_an_unknown_symbol_is_reported_once_and_not_asked_every_poll(
    quotes: QuoteServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    quotes.serve(YAHOO.format("AAPL"), "yahoo_v8_chart_aapl_2026-07-24.json")
    quotes.serve(YAHOO.format("ZZZZ"), "yahoo_404_not_found.json", 404)
    clock = Clock(TUESDAY_NOON)
    stocks, _ = make(quotes, clock, tmp_path, symbols=("AAPL", "ZZZZ"))
    caplog.set_level(logging.INFO, "pitelemetry")
    for _ in range(3):
        with pytest.raises(InputError, match="ZZZZ"):
            collect(stocks)
        clock.sleep(300)
    assert len(quotes.asked(YAHOO.format("ZZZZ"))) == 1
    assert len(quotes.asked(YAHOO.format("AAPL"))) == 3  # the good symbol goes on
    unknown = [r for r in caplog.records if "does not know ZZZZ" in r.getMessage()]
    assert len(unknown) == 1


def test_outside_hours_one_poll_for_the_close_then_none(
    quotes: QuoteServer, tmp_path: Path
) -> None:
    quotes.serve(YAHOO.format("AAPL"), "yahoo_v8_chart_aapl_2026-07-24.json")
    clock = Clock("2026-11-24T21:05")  # 16:05 in New York: closed 5 minutes ago
    stocks, session = make(quotes, clock, tmp_path, symbols=("AAPL",))
    assert collect(stocks) == []  # the closing snapshot waits for after_close
    clock.sleep(600)  # 16:15
    assert len(collect(stocks)) == 1
    for _ in range(20):  # the evening and night: nothing
        clock.sleep(300)
        assert collect(stocks) == []
    assert len(session.times) == 1
    clock.now = dt.datetime(2026, 11, 25, 14, 30, tzinfo=dt.UTC).timestamp()  # 09:30 NY
    collect(stocks)
    assert len(session.times) == 2


def test_a_weekend_start_polls_once(quotes: QuoteServer, tmp_path: Path) -> None:
    quotes.serve(YAHOO.format("AAPL"), "yahoo_v8_chart_aapl_2026-07-24.json")
    clock = Clock(SATURDAY)
    stocks, session = make(quotes, clock, tmp_path, symbols=("AAPL",))
    assert len(collect(stocks)) == 1
    clock.sleep(3600)
    assert collect(stocks) == []
    assert len(session.times) == 1


def test_alphavantage_is_asked_for_closes_only(quotes: QuoteServer, tmp_path: Path) -> None:
    quotes.serve("/query", "av_global_quote_ibm.json")
    clock = Clock(TUESDAY_NOON)
    stocks, session = make(
        quotes, clock, tmp_path, symbols=("IBM",), provider="alphavantage", api_key_file=KEY
    )
    assert collect(stocks) == []  # open: its 25 calls a day are kept for the close
    assert session.times == []
    clock.now = dt.datetime(2026, 11, 24, 21, 20, tzinfo=dt.UTC).timestamp()
    (point,) = collect(stocks)
    assert point.fields["price"] == 306.79
    assert quotes.asked("/query")[0].query["apikey"] == "KEY123"


def test_a_quota_is_never_exceeded(quotes: QuoteServer, tmp_path: Path) -> None:
    symbols = tuple(f"SYM{letter}" for letter in "ABCDEFGHIJKL")
    quotes.serve("/quote", "twelvedata_quote_aapl.json")
    clock = Clock(TUESDAY_NOON)
    stocks, session = make(
        quotes, clock, tmp_path, symbols=symbols, provider="twelvedata", api_key_file=KEY
    )
    assert len(collect(stocks)) == 12  # within one collection: its deadline is 240 s
    assert len(session.times) == 12
    for start in session.times:  # 8 credits a minute
        assert sum(1 for t in session.times if start <= t < start + 60) <= 8
    assert session.times[8] - session.times[0] >= 60


def test_the_day_count_survives_a_restart(tmp_path: Path) -> None:
    limits = PROVIDERS["alphavantage"].limits
    now = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC).timestamp()
    budget = Budget(limits, tmp_path / "quota-alphavantage.json")
    for call in range(25):
        assert budget.wait("IBM", now + call * 2) == 0
        budget.spend("IBM", now + call * 2)
    assert budget.wait("IBM", now + 60) == pytest.approx(12 * 3600 - 60)  # until midnight
    budget.save()
    again = Budget(limits, tmp_path / "quota-alphavantage.json")
    assert again.wait("IBM", now + 60) > 0
    assert again.wait("IBM", now + 12 * 3600) == 0  # a new UTC day


def holding_aapl_in_eur(quotes: QuoteServer, tmp_path: Path) -> StocksInput:
    """Ten AAPL bought for 3,000 USD, totals also in EUR, on a Tuesday at noon."""
    quotes.serve(YAHOO.format("AAPL"), "yahoo_v8_chart_aapl_2026-07-24.json")
    quotes.serve("/v1/latest", "frankfurter_v1_latest_2026-07-10.json")
    stocks, _ = make(
        quotes,
        Clock(TUESDAY_NOON),
        tmp_path,
        symbols=("AAPL",),
        instruments={"AAPL": Instrument(quantity=10, cost_basis=3000.0)},
        base_currency="EUR",
        fx_url=quotes.url,
    )
    return stocks


def test_portfolio_in_the_quote_and_the_base_currency(quotes: QuoteServer, tmp_path: Path) -> None:
    stocks = holding_aapl_in_eur(quotes, tmp_path)
    points = {
        (p.measurement, p.tags.get("scope", ""), p.tags.get("currency")): p for p in collect(stocks)
    }
    position = points[("portfolio", "", "USD")]
    assert position.tags == {"symbol": "AAPL", "currency": "USD"}
    assert position.time_ns == 1784903522 * 10**9  # as of the quote, not the Pi's clock
    assert position.fields["value"] == pytest.approx(3288.79)
    assert position.fields["gain"] == pytest.approx(288.79)
    assert position.fields["gain_pct"] == pytest.approx(9.626333)
    assert position.fields["value_base"] == pytest.approx(3288.79 / 1.143)
    assert points[("portfolio_total", "currency", "USD")].fields["value"] == pytest.approx(3288.79)
    total = points[("portfolio_total", "all", "EUR")]
    assert total.fields["value"] == pytest.approx(3288.79 / 1.143)
    assert total.fields["cost"] == pytest.approx(3000 / 1.143)
    assert points[("fx", "", "USD")].fields == {"rate": 1.143}
    assert quotes.asked("/v1/latest")[0].query == {"base": "EUR", "symbols": "USD"}


def test_checks_say_whether_the_interval_fits(quotes: QuoteServer, tmp_path: Path) -> None:
    symbols = (
        "AAPL",
        "MSFT",
        "NVDA",
        "AMZN",
        "GOOG",
        "META",
        "TSLA",
        "AMD",
        "INTC",
        "IBM",
        "ORCL",
        "CSCO",
    )
    stocks, _ = make(
        quotes,
        Clock(TUESDAY_NOON),
        tmp_path,
        symbols=symbols,
        provider="twelvedata",
        api_key_file=KEY,
    )
    ((subject, ok, detail),) = list(stocks.checks())
    assert subject == "quota twelvedata"
    assert not ok
    assert detail == (
        "12 symbols every 5m: 2.4 calls/min of 8, 948 calls/day of 800: does not fit; "
        "use interval = '6m' or more"
    )
    slower, _ = make(
        quotes,
        Clock(TUESDAY_NOON),
        tmp_path,
        interval=360.0,
        symbols=symbols,
        provider="twelvedata",
        api_key_file=KEY,
    )
    assert [ok for _, ok, _ in slower.checks()] == [True]


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ({"provider": "twelvedata", "symbols": ["AAPL"]}, "api_key_file", "needs an API key"),
        (
            {"symbols": ["AAPL"], "fallback": ["finnhub"]},
            "providers.finnhub.api_key_file",
            "needs an API key",
        ),
        ({"symbols": []}, "symbols", "no symbols"),
        (
            {"symbols": ["A"], "instruments": {"A": {"exchange": "MOON"}}},
            "instruments.A.exchange",
            "unknown exchange",
        ),
        (
            {"symbols": ["A"], "instruments": {"A": {"quantity": 3}}},
            "instruments.A.cost_basis",
            "cost_basis",
        ),
        (
            {"symbols": ["A"], "providers": {"bloomberg": {}}},
            "providers.bloomberg",
            "unknown provider",
        ),
        ({"symbols": ["A"], "provider": "google"}, "provider", "not allowed"),
        ({"symbols": ["A"], "base_currency": "euro"}, "base_currency", "currency code"),
    ],
)
def test_config_errors_name_the_key(table: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse({"inputs": {"stocks": [table]}}, "t.toml", {})
    assert raised.value.key == f"inputs.stocks[0].{key}"
    assert problem in raised.value.problem


def test_quotes_default_to_every_five_minutes() -> None:
    config = parse({"inputs": {"stocks": [{"symbols": ["AAPL"]}]}}, "t.toml", {})
    assert config.inputs[0].interval == 300.0


@pytest.mark.parametrize(
    ("name", "fixture", "status"),
    [(e[0], e[1], e[2]) for e in ERRORS],
    ids=[f"{e[0]}-{e[1] if isinstance(e[1], str) else 'bytes'}-{e[2]}" for e in ERRORS],
)
def test_no_error_body_becomes_a_point(
    quotes: QuoteServer, tmp_path: Path, name: str, fixture: str | bytes, status: int
) -> None:
    quotes.serve(PATHS[name], fixture, status=status)
    clock = Clock("2026-11-24T21:20")  # after the close: every provider may be asked
    key = KEY if PROVIDERS[name].needs_key else None
    stocks, session = make(
        quotes, clock, tmp_path, symbols=("AAPL",), provider=name, api_key_file=key
    )
    points: list[Point] = []
    with pytest.raises(InputError, match="no quote for AAPL"):
        points.extend(stocks.collect())
    assert points == []
    assert len(session.times) == 1


def test_golden_line_protocol(quotes: QuoteServer, tmp_path: Path) -> None:
    stocks = holding_aapl_in_eur(quotes, tmp_path)
    assert_golden("stocks", collect(stocks))
