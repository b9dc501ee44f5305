"""The quote providers: one class per source, each with its endpoint, published
limits, symbol convention, and a classifier that runs before any parsing.

===============  ====  =========================================  ======================
provider         key   free limits (what the budget assumes)      failure signalling
===============  ====  =========================================  ======================
``yahoo``        no    unpublished: one request per symbol a min  429 text, 404 JSON
``finnhub``      yes   60 a minute, 30 a second                   429; unknown: all zeros
``twelvedata``   yes   8 a minute, 800 a day (UTC)                ``status: error``, 200 too
``alphavantage`` yes   25 a day, 1 a second: closes only          everything HTTP 200
``stooq``        no    unpublished: one request per symbol a min  everything HTTP 200
===============  ====  =========================================  ======================

A key is sent as a header where the provider accepts one (Finnhub, Twelve Data), so it
never appears in a URL; Alpha Vantage and Stooq take it only in the query string, and
no message of ours ever includes a URL.
"""

from __future__ import annotations

import csv
import datetime as dt
import email.utils
import io
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import requests

from pitelemetry import __version__
from pitelemetry.quotes import (
    AuthFailedError,
    Bar,
    BlockedError,
    NoHistoryError,
    Quote,
    QuoteError,
    RateLimitError,
    ServerError,
    UnknownSymbolError,
    optional_number,
    optional_price,
    optional_volume,
    price,
)
from pitelemetry.quotes.markets import Market

# Yahoo answers 429 to clients that do not look like a browser.
BROWSER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/142.0.0.0 Safari/537.36"
)
WARSAW = ZoneInfo("Europe/Warsaw")
# A US ticker, Yahoo style: a dash before a share class (BRK-B); a dot starts an
# exchange suffix (VOD.L), so it is not one.
_US_TICKER = re.compile(r"^[A-Z]{1,6}(-[A-Z])?$")


@dataclass(frozen=True)
class Limits:
    """A provider's published free-plan limits; zero means none published."""

    per_second: int = 0
    per_minute: int = 0
    per_day: int = 0  # resets at 00:00 UTC
    symbol_interval: float = 0.0  # at most one request per symbol this often (seconds)
    closes_only: bool = False  # too few calls a day for intraday prices: closes only


def seconds_to_utc_midnight(now: float) -> float:
    tomorrow = dt.datetime.fromtimestamp(now, dt.UTC).date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(0), dt.UTC).timestamp() - now


def retry_after(response: requests.Response, now: float, default: float = 60.0) -> float:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), else ``default``."""
    value = response.headers.get("Retry-After", "")
    if value.strip().isdigit():
        return float(value)
    if value:
        try:
            return max(1.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    return default


class Provider:
    """A quote source. Subclasses set the class attributes and implement ``quote``."""

    name: ClassVar[str]
    base_url: ClassVar[str]
    limits: ClassVar[Limits]
    needs_key: ClassVar[bool] = False
    user_agent: ClassVar[str] = f"pitelemetry/{__version__}"

    def __init__(
        self,
        *,
        base_url: str = "",
        api_key: str = "",
        session: requests.Session | None = None,
        timeout: float = 15.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.url = (base_url or self.base_url).rstrip("/")
        self.api_key = api_key
        self.session = session or requests.Session()
        self.timeout = timeout
        self.now = now

    @classmethod
    def symbol_for(cls, canonical: str) -> str | None:
        """This provider's spelling of a Yahoo-style symbol, or ``None`` when there is no
        safe automatic translation (set it per instrument in the config)."""
        return canonical if _US_TICKER.match(canonical) else None

    def quote(self, symbol: str, market: Market) -> Quote:
        raise NotImplementedError

    def history(self, symbol: str, market: Market, start: dt.date, end: dt.date) -> list[Bar]:
        """Daily bars from ``start`` to ``end`` inclusive."""
        del symbol, market, start, end
        raise NoHistoryError(f"{self.name} offers no daily history on its free plan")

    # -- HTTP and the checks every response goes through -----------------------------------

    def get(
        self, path: str, params: Mapping[str, str], headers: Mapping[str, str] | None = None
    ) -> requests.Response:
        host = urllib.parse.urlsplit(self.url).netloc
        try:
            return self.session.get(
                self.url + path,
                params=params,
                headers={"User-Agent": self.user_agent, **(headers or {})},
                timeout=self.timeout,
            )
        except requests.Timeout:
            raise ServerError(f"{host} did not answer within {self.timeout:g}s") from None
        except requests.RequestException as exc:
            reason = type(exc).__name__  # the message would carry the URL, and a key
            raise ServerError(f"cannot reach {host} ({reason})") from None

    def screen(self, response: requests.Response, expected: str) -> str:
        """Raise for what is plainly not data (rate limits, server errors, HTML pages);
        return the body's text for the provider's own checks."""
        status = response.status_code
        text = response.text
        head = text.lstrip()[:200]
        if status == 429 or head.startswith(("Too Many Requests", "Edge: Too Many Requests")):
            raise RateLimitError(
                f"{self.name} says too many requests (HTTP {status})",
                retry_after(response, self.now()),
            )
        if status >= 500:
            raise ServerError(f"{self.name} answered HTTP {status}")
        if status == 401:
            raise AuthFailedError(f"{self.name} refused the API key (HTTP 401); check api_key_file")
        content_type = response.headers.get("Content-Type", "")
        if "html" in content_type or head.startswith("<") or "__verify" in text:
            raise BlockedError(
                f"{self.name} answered with an HTML page instead of {expected} (a captcha or "
                "a browser check)"
            )
        return text

    def json(self, response: requests.Response) -> Any:
        self.screen(response, "JSON")
        try:
            return response.json()
        except ValueError:
            start = response.text.strip()[:60]
            raise BlockedError(
                f"{self.name} answered with something other than JSON: {start!r}"
            ) from None


class Yahoo(Provider):
    """Yahoo Finance's v8 chart endpoint: no key, best effort, unofficial."""

    name = "yahoo"
    base_url = "https://query1.finance.yahoo.com"
    limits = Limits(symbol_interval=60.0)
    user_agent = BROWSER_AGENT

    @classmethod
    def symbol_for(cls, canonical: str) -> str | None:
        return canonical

    def _chart(self, symbol: str, params: Mapping[str, str]) -> dict[str, Any]:
        path = "/v8/finance/chart/" + urllib.parse.quote(symbol, safe="")
        response = self.get(path, params)
        data = self.json(response)
        chart = data.get("chart") if isinstance(data, dict) else None
        if not isinstance(chart, dict):
            raise QuoteError(f"yahoo: no chart in the answer (HTTP {response.status_code})")
        error = chart.get("error")
        if isinstance(error, dict):
            code, description = error.get("code", ""), error.get("description", "")
            if code == "Not Found" or response.status_code == 404:
                raise UnknownSymbolError(f"yahoo does not know {symbol}: {description}")
            if code == "Unauthorized":
                raise BlockedError(f"yahoo refused the request: {description}")
            raise QuoteError(f"yahoo: {code}: {description}")
        if response.status_code == 404:
            raise UnknownSymbolError(f"yahoo does not know {symbol}")
        if response.status_code == 403:
            raise BlockedError("yahoo refused the request (HTTP 403)")
        results = chart.get("result")
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            raise UnknownSymbolError(f"yahoo has no data for {symbol}")
        result: dict[str, Any] = results[0]
        return result

    def quote(self, symbol: str, market: Market) -> Quote:
        del market
        result = self._chart(symbol, {"range": "1d", "interval": "1d"})
        meta = result.get("meta") or {}
        value = price(meta.get("regularMarketPrice"), f"yahoo regularMarketPrice of {symbol}")
        stamp = meta.get("regularMarketTime")
        if not isinstance(stamp, int) or stamp <= 0:
            raise QuoteError(f"yahoo gave no regularMarketTime for {symbol}")
        bars = _chart_bars(result)
        regular = (meta.get("currentTradingPeriod") or {}).get("regular") or {}
        today = bars[-1] if bars and bars[-1][0] >= regular.get("start", 0) else None
        prev_close = optional_price(meta.get("previousClose"))
        if prev_close is None:
            earlier = [bar for bar in bars if bar is not today]
            if earlier:
                prev_close = earlier[-1][1].close
            elif meta.get("range") == "1d":
                prev_close = optional_price(meta.get("chartPreviousClose"))
        return Quote(
            price=value,
            time_s=stamp,
            currency=str(meta.get("currency") or ""),
            exchange=str(meta.get("exchangeName") or ""),
            open=today[1].open if today else None,
            high=optional_price(meta.get("regularMarketDayHigh")),
            low=optional_price(meta.get("regularMarketDayLow")),
            prev_close=prev_close,
            volume=optional_volume(meta.get("regularMarketVolume")),
        )

    def history(self, symbol: str, market: Market, start: dt.date, end: dt.date) -> list[Bar]:
        del market
        first = dt.datetime.combine(start, dt.time(0), dt.UTC)
        last = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), dt.UTC)
        result = self._chart(
            symbol,
            {
                "period1": str(int(first.timestamp())),
                "period2": str(int(last.timestamp())),
                "interval": "1d",
            },
        )
        zone = ZoneInfo((result.get("meta") or {}).get("exchangeTimezoneName") or "UTC")
        return [
            Bar(dt.datetime.fromtimestamp(stamp, zone).date().isoformat(), *values[1:])
            for stamp, values in (
                (s, (b.day, b.close, b.open, b.high, b.low, b.volume))
                for s, b in _chart_bars(result)
            )
        ]


def _chart_bars(result: Mapping[str, Any]) -> list[tuple[int, Bar]]:
    """(timestamp, bar) for each bar of a v8 chart with a close (empty bars are null)."""
    stamps = result.get("timestamp") or []
    quotes = ((result.get("indicators") or {}).get("quote") or [{}])[0]

    def column(name: str) -> list[Any]:
        values = quotes.get(name) or []
        return list(values) + [None] * (len(stamps) - len(values))

    bars = []
    for stamp, close, open_, high, low, volume in zip(
        stamps,
        column("close"),
        column("open"),
        column("high"),
        column("low"),
        column("volume"),
        strict=False,
    ):
        value = optional_price(close)
        if value is not None and isinstance(stamp, int):
            bar = Bar(
                "",
                value,
                optional_price(open_),
                optional_price(high),
                optional_price(low),
                optional_volume(volume),
            )
            bars.append((stamp, bar))
    return bars


class Finnhub(Provider):
    """Finnhub's ``/quote``: real-time US stocks on the free plan, key in a header."""

    name = "finnhub"
    base_url = "https://finnhub.io"
    limits = Limits(per_second=30, per_minute=60)
    needs_key = True

    @classmethod
    def symbol_for(cls, canonical: str) -> str | None:
        return canonical.replace("-", ".") if _US_TICKER.match(canonical) else None

    def quote(self, symbol: str, market: Market) -> Quote:
        del market
        response = self.get("/api/v1/quote", {"symbol": symbol}, {"X-Finnhub-Token": self.api_key})
        if response.status_code == 429:
            reset = optional_number(response.headers.get("X-Ratelimit-Reset"))
            wait = max(1.0, reset - self.now()) if reset else 60.0
            raise RateLimitError("finnhub: API limit reached (HTTP 429)", wait)
        data = self.json(response)
        error = data.get("error") if isinstance(data, dict) else None
        if error or response.status_code != 200:
            message = str(error or f"HTTP {response.status_code}")
            if response.status_code == 403 or "access" in message:
                raise UnknownSymbolError(f"finnhub: {symbol} is not covered by the plan: {message}")
            if "limit" in message.lower():
                raise RateLimitError(f"finnhub: {message}", 60.0)
            if "key" in message.lower():
                raise AuthFailedError(f"finnhub: {message}; check api_key_file")
            raise QuoteError(f"finnhub: {message}")
        if not isinstance(data, dict) or not data.get("c") or not data.get("t"):
            raise UnknownSymbolError(f"finnhub does not know {symbol} (an all-zero quote)")
        stamp = data["t"]
        if not isinstance(stamp, int) or stamp <= 0:
            raise QuoteError(f"finnhub gave no time for {symbol}: {stamp!r}")
        return Quote(
            price=price(data.get("c"), f"finnhub c of {symbol}"),
            time_s=stamp,
            open=optional_price(data.get("o")),
            high=optional_price(data.get("h")),
            low=optional_price(data.get("l")),
            prev_close=optional_price(data.get("pc")),
            change=optional_number(data.get("d")),
            change_pct=optional_number(data.get("dp")),
        )


class TwelveData(Provider):
    """Twelve Data's ``/quote``: stocks worldwide, ETFs, indices, FX and crypto."""

    name = "twelvedata"
    base_url = "https://api.twelvedata.com"
    limits = Limits(per_minute=8, per_day=800)
    needs_key = True

    @classmethod
    def symbol_for(cls, canonical: str) -> str | None:
        if _US_TICKER.match(canonical):
            return canonical.replace("-", ".")
        if re.match(r"^[A-Z]{6}=X$", canonical):  # EURUSD=X -> EUR/USD
            return f"{canonical[:3]}/{canonical[3:6]}"
        if re.match(r"^[A-Z0-9]{2,10}-[A-Z]{3,4}$", canonical):  # BTC-USD -> BTC/USD
            return canonical.replace("-", "/")
        return None

    def _data(self, path: str, params: dict[str, str]) -> Any:
        response = self.get(path, params, {"Authorization": f"apikey {self.api_key}"})
        data = self.json(response)
        # Errors come as {"code", "message", "status": "error"}, with HTTP 200 on some plans.
        if isinstance(data, dict) and data.get("status") == "error":
            code = data.get("code")
            message = str(data.get("message", ""))
            if code == 429:
                wait = seconds_to_utc_midnight(self.now()) if "for the day" in message else 60.0
                raise RateLimitError(f"twelvedata: {message}", wait)
            if code == 401:
                raise AuthFailedError(f"twelvedata: {message}; check api_key_file")
            if code == 403:
                raise UnknownSymbolError(f"twelvedata: {message}")
            if code in (400, 404) and "not found" in message.lower():
                raise UnknownSymbolError(f"twelvedata: {message}")
            if isinstance(code, int) and code >= 500:
                raise ServerError(f"twelvedata: {message}")
            raise QuoteError(f"twelvedata: {message}")
        if response.status_code != 200 or not isinstance(data, dict):
            raise QuoteError(f"twelvedata answered HTTP {response.status_code}")
        return data

    def quote(self, symbol: str, market: Market) -> Quote:
        del market
        data = self._data("/quote", {"symbol": symbol})
        stamp = data.get("last_quote_at") or data.get("timestamp")
        if not isinstance(stamp, int) or stamp <= 0:
            raise QuoteError(f"twelvedata gave no time for {symbol}")
        return Quote(
            price=price(data.get("close"), f"twelvedata close of {symbol}"),
            time_s=stamp,
            currency=str(data.get("currency") or ""),
            exchange=str(data.get("exchange") or ""),
            open=optional_price(data.get("open")),
            high=optional_price(data.get("high")),
            low=optional_price(data.get("low")),
            prev_close=optional_price(data.get("previous_close")),
            volume=optional_volume(data.get("volume")),
            change=optional_number(data.get("change")),
            change_pct=optional_number(data.get("percent_change")),
        )

    def history(self, symbol: str, market: Market, start: dt.date, end: dt.date) -> list[Bar]:
        del market
        data = self._data(
            "/time_series",
            {
                "symbol": symbol,
                "interval": "1day",
                "start_date": start.isoformat(),
                "end_date": (end + dt.timedelta(days=1)).isoformat(),
            },
        )
        bars = []
        for row in data.get("values") or []:
            close = optional_price(row.get("close"))
            if close is not None:
                bars.append(
                    _bar(
                        str(row.get("datetime", ""))[:10],
                        close,
                        row,
                        "open",
                        "high",
                        "low",
                        "volume",
                    )
                )
        return sorted(bars, key=lambda bar: bar.day)


def _bar(day: str, close: float, row: Mapping[str, Any], *keys: str) -> Bar:
    """A :class:`Bar` from ``row``'s open, high, low and volume keys (in that order)."""
    open_, high, low, volume = (row.get(key) for key in keys)
    return Bar(
        day,
        close,
        optional_price(open_),
        optional_price(high),
        optional_price(low),
        optional_volume(volume),
    )


class AlphaVantage(Provider):
    """Alpha Vantage's ``GLOBAL_QUOTE``: 25 calls a day, so closing prices only."""

    name = "alphavantage"
    base_url = "https://www.alphavantage.co"
    limits = Limits(per_second=1, per_day=25, closes_only=True)
    needs_key = True

    @classmethod
    def symbol_for(cls, canonical: str) -> str | None:
        for suffix, theirs in ((".L", ".LON"), (".TO", ".TRT"), (".DE", ".DEX")):
            if canonical.endswith(suffix):
                return canonical.removesuffix(suffix) + theirs
        return canonical if _US_TICKER.match(canonical) else None

    def _data(self, params: dict[str, str]) -> dict[str, Any]:
        response = self.get("/query", {**params, "apikey": self.api_key})
        data = self.json(response)
        if not isinstance(data, dict):
            raise QuoteError("alphavantage answered with something other than an object")
        # Every error is HTTP 200 with one of these keys.
        for key in ("Information", "Note"):
            if key in data:
                message = str(data[key])
                lowered = message.lower()
                if "demo" in lowered or "invalid" in lowered:
                    raise AuthFailedError(f"alphavantage: {message}")
                # "per day" alone is the daily quota; the older Note names both limits.
                daily = "per day" in lowered and "minute" not in lowered
                wait = seconds_to_utc_midnight(self.now()) if daily else 60.0
                raise RateLimitError(f"alphavantage: {message}", wait)
        if "Error Message" in data:
            message = str(data["Error Message"])
            if "apikey" in message.lower():
                raise AuthFailedError(f"alphavantage: {message}")
            raise UnknownSymbolError(f"alphavantage: {message}")
        return data

    def quote(self, symbol: str, market: Market) -> Quote:
        data = self._data({"function": "GLOBAL_QUOTE", "symbol": symbol})
        # With entitlement=delayed the key becomes "Global Quote - DATA DELAYED BY 15 MINUTES".
        body = next((v for k, v in data.items() if k.startswith("Global Quote")), None)
        if not body or not isinstance(body, dict):
            raise UnknownSymbolError(f"alphavantage does not know {symbol} (an empty Global Quote)")
        day = str(body.get("07. latest trading day", ""))
        try:
            closed = market.close_time(dt.date.fromisoformat(day))
        except ValueError:
            raise QuoteError(f"alphavantage gave no trading day for {symbol}: {day!r}") from None
        return Quote(
            price=price(body.get("05. price"), f"alphavantage price of {symbol}"),
            time_s=int(closed.timestamp()),
            open=optional_price(body.get("02. open")),
            high=optional_price(body.get("03. high")),
            low=optional_price(body.get("04. low")),
            prev_close=optional_price(body.get("08. previous close")),
            volume=optional_volume(body.get("06. volume")),
            change=optional_number(body.get("09. change")),
            change_pct=optional_number(body.get("10. change percent")),
        )

    def history(self, symbol: str, market: Market, start: dt.date, end: dt.date) -> list[Bar]:
        del market
        # The free plan has the last 100 days ("compact"); "full" is a premium feature.
        data = self._data({"function": "TIME_SERIES_DAILY", "symbol": symbol})
        series = next((v for k, v in data.items() if k.startswith("Time Series")), None)
        if not isinstance(series, dict) or not series:
            raise UnknownSymbolError(f"alphavantage has no daily series for {symbol}")
        bars = []
        for day, row in series.items():
            close = optional_price(row.get("4. close"))
            if close is not None and start.isoformat() <= day <= end.isoformat():
                bars.append(_bar(day, close, row, "1. open", "2. high", "3. low", "5. volume"))
        return sorted(bars, key=lambda bar: bar.day)


class Stooq(Provider):
    """Stooq's CSV quotes: no key, but since 2026 often a captcha or challenge page."""

    name = "stooq"
    base_url = "https://stooq.com"
    limits = Limits(symbol_interval=60.0)
    QUOTE_HEADER = "Symbol,Date,Time,Open,High,Low,Close,Volume"
    HISTORY_HEADER = "Date,Open,High,Low,Close,Volume"
    _INDICES: ClassVar[dict[str, str]] = {
        "^GSPC": "^spx",
        "^DJI": "^dji",
        "^IXIC": "^ndq",
        "^GDAXI": "^dax",
        "^N225": "^nkx",
        "^HSI": "^hsi",
    }
    _SUFFIXES: ClassVar[dict[str, str]] = {".L": ".uk", ".DE": ".de", ".T": ".jp"}

    @classmethod
    def symbol_for(cls, canonical: str) -> str | None:
        if canonical in cls._INDICES:
            return cls._INDICES[canonical]
        if _US_TICKER.match(canonical):
            return canonical.lower() + ".us"
        if re.match(r"^[A-Z]{6}=X$", canonical):
            return canonical[:6].lower()
        if re.match(r"^[A-Z]{3,5}-USD$", canonical):
            return canonical.replace("-", "").lower()
        for suffix, theirs in cls._SUFFIXES.items():
            if canonical.endswith(suffix):
                return canonical.removesuffix(suffix).lower() + theirs
        return None

    def _csv(self, path: str, params: dict[str, str], header: str) -> list[dict[str, str]]:
        if self.api_key:
            params["apikey"] = self.api_key
        response = self.get(path, params)
        text = self.screen(response, "CSV")
        head = text.lstrip()[:200]
        if head.startswith("Get your apikey"):
            raise BlockedError("stooq wants an API key obtained through a captcha (stooq apikey)")
        if "Exceeded the daily hits limit" in head:
            raise RateLimitError(
                "stooq: exceeded the daily hits limit", seconds_to_utc_midnight(self.now())
            )
        if response.status_code != 200:
            raise QuoteError(f"stooq answered HTTP {response.status_code}")
        first_line = head.splitlines()[0].strip() if head else ""
        if first_line != header:
            raise BlockedError(
                f"stooq answered something other than the CSV expected: {head[:60]!r}"
            )
        return list(csv.DictReader(io.StringIO(text.strip())))

    def quote(self, symbol: str, market: Market) -> Quote:
        del market
        rows = self._csv(
            "/q/l/", {"s": symbol, "f": "sd2t2ohlcv", "h": "", "e": "csv"}, self.QUOTE_HEADER
        )
        if not rows or rows[0].get("Close") in (None, "", "N/D"):
            raise UnknownSymbolError(f"stooq does not know {symbol} (N/D)")
        row = rows[0]
        try:
            # The time column is Warsaw time (a US close reads 22:00).
            local = dt.datetime.fromisoformat(f"{row['Date']}T{row['Time']}")
        except (KeyError, ValueError):
            raise QuoteError(f"stooq gave no time for {symbol}") from None
        return Quote(
            price=price(row.get("Close"), f"stooq close of {symbol}"),
            time_s=int(local.replace(tzinfo=WARSAW).timestamp()),
            open=optional_price(row.get("Open")),
            high=optional_price(row.get("High")),
            low=optional_price(row.get("Low")),
            volume=optional_volume(row.get("Volume")),
        )

    def history(self, symbol: str, market: Market, start: dt.date, end: dt.date) -> list[Bar]:
        del market
        params = {"s": symbol, "i": "d", "d1": f"{start:%Y%m%d}", "d2": f"{end:%Y%m%d}"}
        rows = self._csv("/q/d/l/", params, self.HISTORY_HEADER)
        bars = []
        for row in rows:
            close = optional_price(row.get("Close"))
            if close is not None:
                bars.append(_bar(row.get("Date", ""), close, row, "Open", "High", "Low", "Volume"))
        return bars


PROVIDERS: dict[str, type[Provider]] = {
    "yahoo": Yahoo,
    "finnhub": Finnhub,
    "twelvedata": TwelveData,
    "alphavantage": AlphaVantage,
    "stooq": Stooq,
}
