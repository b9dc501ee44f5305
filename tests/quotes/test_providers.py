"""Each provider against recorded and documented bodies served over local HTTP: good
quotes parse to exact values; every error class is classified and is never a price."""

from __future__ import annotations

import datetime as dt

import pytest

from pitelemetry.quotes import (
    AuthFailedError,
    BlockedError,
    NoHistoryError,
    Quote,
    QuoteError,
    RateLimitError,
    ServerError,
    UnknownSymbolError,
)
from pitelemetry.quotes.markets import NYSE
from pitelemetry.quotes.providers import PROVIDERS, Provider
from tests.quote_server import QuoteServer

NOW = dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC).timestamp()
MIDNIGHT = dt.datetime(2026, 11, 21, tzinfo=dt.UTC).timestamp()

PATHS = {
    "yahoo": "/v8/finance/chart/AAPL",
    "finnhub": "/api/v1/quote",
    "twelvedata": "/quote",
    "alphavantage": "/query",
    "stooq": "/q/l/",
}


def provider(name: str, server: QuoteServer, key: str = "KEY123") -> Provider:
    return PROVIDERS[name](base_url=server.url, api_key=key, now=lambda: NOW, timeout=5)


def test_yahoo_chart(quotes: QuoteServer) -> None:
    quotes.serve(PATHS["yahoo"], "yahoo_v8_chart_aapl_2026-07-24.json")
    quote = provider("yahoo", quotes).quote("AAPL", NYSE)
    assert quote == Quote(
        price=328.879,
        time_s=1784903522,
        currency="USD",
        exchange="NMS",
        open=322.0400085449219,
        high=329.439,
        low=321.62,
        prev_close=321.6600036621094,  # the day before, not the 5-day chart's start
        volume=8731307,
    )
    fields = quote.fields()
    assert fields["change"] == pytest.approx(7.2189963378906)
    assert fields["change_pct"] == pytest.approx(7.2189963378906 / 321.6600036621094 * 100)
    asked = quotes.asked(PATHS["yahoo"])[0]
    assert asked.headers["User-Agent"].startswith("Mozilla/5.0")
    assert asked.query == {"range": "1d", "interval": "1d"}


def test_finnhub_quote_with_the_key_in_a_header(quotes: QuoteServer) -> None:
    quotes.serve(PATHS["finnhub"], "finnhub_quote_aapl_2026-08-06.json")
    quote = provider("finnhub", quotes).quote("AAPL", NYSE)
    assert quote == Quote(
        price=311.55,
        time_s=1786038273,
        open=313.73,
        high=316.2894,
        low=309.23,
        prev_close=311.0,
        change=0.55,
        change_pct=0.1768,
    )
    asked = quotes.asked(PATHS["finnhub"])[0]
    assert asked.headers["X-Finnhub-Token"] == "KEY123"
    assert "KEY123" not in str(asked.query)


def test_twelvedata_quote(quotes: QuoteServer) -> None:
    quotes.serve(PATHS["twelvedata"], "twelvedata_quote_aapl.json")
    quote = provider("twelvedata", quotes).quote("AAPL", NYSE)
    assert quote == Quote(
        price=213.25,
        time_s=1754487000,
        currency="USD",
        exchange="NASDAQ",
        open=205.63,
        high=215.38,
        low=205.59,
        prev_close=202.92,
        volume=106498000,
        change=10.33,
        change_pct=5.090677,
    )
    assert quotes.asked(PATHS["twelvedata"])[0].headers["Authorization"] == "apikey KEY123"


@pytest.mark.parametrize(
    "fixture", ["av_global_quote_ibm.json", "av_global_quote_delayed_ibm.json"]
)
def test_alphavantage_global_quote(quotes: QuoteServer, fixture: str) -> None:
    quotes.serve(PATHS["alphavantage"], fixture)
    quote = provider("alphavantage", quotes).quote("IBM", NYSE)
    close = dt.datetime(2026, 1, 30, 16, 0, tzinfo=NYSE.zone)  # the trading day's close
    assert quote == Quote(
        price=306.79,
        time_s=int(close.timestamp()),
        open=307.45,
        high=307.783,
        low=299.73,
        prev_close=309.24,
        volume=5939218,
        change=-2.45,
        change_pct=-0.7923,
    )


def test_stooq_csv_in_warsaw_time(quotes: QuoteServer) -> None:
    quotes.serve(PATHS["stooq"], "stooq_q_l_aapl.csv")
    quote = provider("stooq", quotes, key="").quote("aapl.us", NYSE)
    # 22:00:12 in Warsaw (CEST) is 16:00:12 in New York: the close.
    close = dt.datetime(2023, 8, 25, 16, 0, 12, tzinfo=NYSE.zone)
    assert quote == Quote(
        price=178.61,
        time_s=int(close.timestamp()),
        open=177.38,
        high=179.15,
        low=175.82,
        volume=51301703,
    )
    assert quotes.asked(PATHS["stooq"])[0].query == {
        "s": "aapl.us",
        "f": "sd2t2ohlcv",
        "h": "",
        "e": "csv",
    }


ERRORS = [
    # provider, fixture, HTTP status, the class, and how long a rate limit rests
    ("yahoo", "yahoo_429.txt", 429, RateLimitError, 60.0),
    ("yahoo", "yahoo_404_not_found.json", 404, UnknownSymbolError, None),
    ("yahoo", "stooq_proof_of_work.html", 200, BlockedError, None),
    ("yahoo", b"Bad Gateway", 502, ServerError, None),
    ("finnhub", "finnhub_429.json", 429, RateLimitError, 60.0),
    ("finnhub", "finnhub_quote_unknown.json", 200, UnknownSymbolError, None),
    ("finnhub", "finnhub_403.json", 403, UnknownSymbolError, None),
    ("finnhub", "finnhub_401.json", 401, AuthFailedError, None),
    ("twelvedata", "twelvedata_429_minute.json", 429, RateLimitError, 60.0),
    ("twelvedata", "twelvedata_429_minute.json", 200, RateLimitError, 60.0),
    ("twelvedata", "twelvedata_429_day.json", 200, RateLimitError, MIDNIGHT - NOW),
    ("twelvedata", "twelvedata_symbol_not_found.json", 200, UnknownSymbolError, None),
    ("twelvedata", "twelvedata_401.json", 200, AuthFailedError, None),
    ("alphavantage", "av_information_daily_limit.json", 200, RateLimitError, MIDNIGHT - NOW),
    ("alphavantage", "av_information_burst.json", 200, RateLimitError, 60.0),
    ("alphavantage", "av_note_minute.json", 200, RateLimitError, 60.0),
    ("alphavantage", "av_global_quote_unknown.json", 200, UnknownSymbolError, None),
    ("alphavantage", "av_error_apikey.json", 200, AuthFailedError, None),
    ("stooq", "stooq_apikey_notice.txt", 200, BlockedError, None),
    ("stooq", "stooq_proof_of_work.html", 200, BlockedError, None),
    ("stooq", "stooq_daily_limit.txt", 200, RateLimitError, MIDNIGHT - NOW),
    ("stooq", "stooq_q_l_unknown.csv", 200, UnknownSymbolError, None),
    ("stooq", "yahoo_v8_chart_aapl_2026-07-24.json", 200, BlockedError, None),
]


@pytest.mark.parametrize(
    ("name", "fixture", "status", "error", "rest"),
    ERRORS,
    ids=[f"{e[0]}-{e[1] if isinstance(e[1], str) else 'bytes'}-{e[2]}" for e in ERRORS],
)
def test_errors_are_classified_and_never_a_price(
    quotes: QuoteServer,
    name: str,
    fixture: str | bytes,
    status: int,
    error: type[QuoteError],
    rest: float | None,
) -> None:
    quotes.serve(PATHS[name], fixture, status=status)
    with pytest.raises(error) as raised:
        provider(name, quotes).quote("AAPL" if name != "stooq" else "aapl.us", NYSE)
    assert type(raised.value) is error
    if rest is not None:
        assert isinstance(raised.value, RateLimitError)
        assert raised.value.retry_after == pytest.approx(rest)
    assert "KEY123" not in str(raised.value)


def test_retry_after_and_the_finnhub_reset_header_are_honoured(quotes: QuoteServer) -> None:
    quotes.serve(PATHS["yahoo"], "yahoo_429.txt", 429, headers={"Retry-After": "120"})
    with pytest.raises(RateLimitError) as raised:
        provider("yahoo", quotes).quote("AAPL", NYSE)
    assert raised.value.retry_after == 120.0
    reset = {"X-Ratelimit-Reset": str(int(NOW) + 42)}
    quotes.serve(PATHS["finnhub"], "finnhub_429.json", 429, headers=reset)
    with pytest.raises(RateLimitError) as raised:
        provider("finnhub", quotes).quote("AAPL", NYSE)
    assert raised.value.retry_after == 42.0


@pytest.mark.parametrize(
    "body",
    [
        b'{"c":-3,"d":null,"dp":null,"h":0,"l":0,"o":0,"pc":0,"t":1786038273}',
        b'{"c":"NaN","t":1786038273}',
        b'{"c":311.55,"t":0}',
        b"[]",
    ],
)
def test_garbage_is_not_a_price(quotes: QuoteServer, body: bytes) -> None:
    quotes.serve(PATHS["finnhub"], body)
    with pytest.raises(QuoteError):
        provider("finnhub", quotes).quote("AAPL", NYSE)


def test_a_server_that_is_not_there_is_a_server_error_without_the_key() -> None:
    dead = PROVIDERS["alphavantage"](base_url="http://127.0.0.1:9", api_key="SECRET", timeout=2)
    with pytest.raises(ServerError) as raised:
        dead.quote("IBM", NYSE)
    assert "SECRET" not in str(raised.value)


def test_symbol_spellings() -> None:
    spell = {name: cls.symbol_for for name, cls in PROVIDERS.items()}
    assert spell["yahoo"]("BRK-B") == "BRK-B"
    assert spell["finnhub"]("BRK-B") == "BRK.B"
    assert spell["twelvedata"]("BRK-B") == "BRK.B"
    assert spell["stooq"]("BRK-B") == "brk-b.us"
    assert spell["alphavantage"]("BRK-B") == "BRK-B"
    assert spell["twelvedata"]("EURUSD=X") == "EUR/USD"
    assert spell["twelvedata"]("BTC-USD") == "BTC/USD"
    assert spell["stooq"]("^GSPC") == "^spx"
    assert spell["stooq"]("EURUSD=X") == "eurusd"
    assert spell["stooq"]("VOD.L") == "vod.uk"
    assert spell["alphavantage"]("TSCO.L") == "TSCO.LON"
    assert spell["finnhub"]("^GSPC") is None  # a paid CFD there: no guessing
    assert spell["twelvedata"]("^GSPC") is None


def test_daily_history(quotes: QuoteServer) -> None:
    start, end = dt.date(2026, 11, 16), dt.date(2026, 11, 18)
    quotes.serve("/time_series", "twelvedata_time_series_aapl.json")
    bars = provider("twelvedata", quotes).history("AAPL", NYSE, start, end)
    assert [(b.day, b.close, b.volume) for b in bars] == [
        ("2026-11-16", 272.41, 41234500),
        ("2026-11-17", 274.88, 39876100),
        ("2026-11-18", 270.54999, 45011200),
    ]
    quotes.serve("/q/d/l/", "stooq_q_d_l_aapl.csv")
    stooq = provider("stooq", quotes).history("aapl.us", NYSE, start, end)
    assert [(b.day, b.open, b.close) for b in stooq] == [
        ("2026-11-16", 271.05, 272.41),
        ("2026-11-17", 272.9, 274.88),
        ("2026-11-18", 274.1, 270.55),
    ]
    assert quotes.asked("/q/d/l/")[0].query["apikey"] == "KEY123"
    quotes.serve(PATHS["yahoo"], "yahoo_v8_chart_aapl_2026-07-24.json")
    yahoo = provider("yahoo", quotes).history("AAPL", NYSE, dt.date(2026, 7, 20), end)
    assert [b.day for b in yahoo] == [f"2026-07-{d}" for d in range(20, 25)]
    assert yahoo[-1].close == 328.87921142578125
    quotes.serve(PATHS["alphavantage"], "av_time_series_daily_ibm.json")
    ibm = provider("alphavantage", quotes).history(
        "IBM", NYSE, dt.date(2026, 1, 1), dt.date(2026, 1, 31)
    )
    assert [(b.day, b.close) for b in ibm] == [("2026-01-29", 309.24), ("2026-01-30", 306.79)]
    with pytest.raises(NoHistoryError):
        provider("finnhub", quotes).history("AAPL", NYSE, start, end)
