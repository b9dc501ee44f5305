"""Stock, ETF, index, currency and crypto quotes, with an optional portfolio.

Config::

    [[inputs.stocks]]
    provider = "yahoo"            # yahoo | finnhub | twelvedata | alphavantage | stooq
    fallback = ["stooq"]          # asked in order when the provider fails or is blocked
    symbols = ["AAPL", "BRK-B", "^GSPC", "EURUSD=X", "BTC-USD", "VOD.L"]
    interval = "5m"               # while the market is open (the default)
    api_key_file = ""             # the provider's key: a file, or a credential name
    base_url = ""                 # the provider's endpoint (a proxy, a test server)
    base_currency = "EUR"         # optional: portfolio totals converted (ECB rates)

    [inputs.stocks.providers.twelvedata]   # settings of a fallback provider
    api_key_file = "twelvedata.key"

    [inputs.stocks.instruments."BRK-B"]    # optional, per symbol
    finnhub = "BRK.B"             # the symbol where a provider spells it differently
    stooq = "brk-b.us"
    exchange = "NYSE"             # market hours; guessed from the symbol otherwise
    quantity = 10                 # a holding: the portfolio measurement
    cost_basis = 4200.0           # what the holding cost in total, in the quote currency

Symbols are written as Yahoo writes them. Where another provider spells a symbol
differently the input translates the unambiguous cases (``BRK-B`` is ``BRK.B`` at
Finnhub and Twelve Data, ``brk-b.us`` at Stooq; ``EURUSD=X`` is ``EUR/USD`` at Twelve
Data); for anything else set the provider's spelling under ``instruments``, or that
provider is skipped for the symbol.

Measurement ``quote``: tags ``symbol``, ``currency``, ``exchange``, ``provider``; fields
``price``, ``open``, ``high``, ``low``, ``prev_close``, ``volume``, ``change``,
``change_pct``, as far as the provider gives them. A point is stamped with the source's
own time of the price, and a price whose source time did not change is not written
again, so polls outside trading hours write nothing new.

Market hours: while the symbol's market is open the input polls every ``interval``;
once it has closed it polls once, ``after_close`` (15 minutes) after the close, for the
closing price; then nothing until the next session. Crypto trades always; currency
pairs and futures from Sunday 17:00 to Friday 17:00 New York time
(:mod:`pitelemetry.quotes.markets`).

Failures, each decided from the response before parsing (many arrive as HTTP 200):
a rate limit rests the provider for ``Retry-After`` (until midnight UTC for a daily
quota) and the next provider is asked; a blocked provider (an HTML page, a captcha, a
proof-of-work challenge, an API-key notice) rests six hours; a refused key until the
config changes; an unknown symbol is logged once and asked again a day later; server
and network errors back off exponentially. The calls never exceed a provider's
published limits (:mod:`pitelemetry.quotes.budget`); ``pitelemetry check`` says whether
the interval fits them and which interval would.

Portfolio: instruments with a ``quantity`` give measurement ``portfolio`` (tags
``symbol``, ``currency``; fields ``quantity``, ``price``, ``value``, ``cost``, ``gain``,
``gain_pct``) and ``portfolio_total`` per currency (tag ``scope = "currency"``), stamped
with the newest quote's time. With
``base_currency``, every position also has ``value_base``/``gain_base`` and one more
``portfolio_total`` (``scope = "all"``) sums everything in that currency, converted with
the ECB's daily rates from Frankfurter (no key); rates are also written as ``fx``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pitelemetry.inputs import Input, InputError, Options
from pitelemetry.logs import StateLog
from pitelemetry.panels import Panel, select, sized, tag, target, timeseries
from pitelemetry.point import Point
from pitelemetry.quotes import (
    AuthFailedError,
    BlockedError,
    Quote,
    QuoteError,
    RateLimitError,
    ServerError,
    UnknownSymbolError,
)
from pitelemetry.quotes.budget import Budget, Plan, plan
from pitelemetry.quotes.markets import MARKETS, Market, currency_for, market_for
from pitelemetry.quotes.providers import PROVIDERS, Limits, Provider
from pitelemetry.values import Duration, Secret, url_problem

if TYPE_CHECKING:
    from pitelemetry.config import AgentConfig, InputConfig

log = logging.getLogger(__name__)

ProviderName = Literal["yahoo", "finnhub", "twelvedata", "alphavantage", "stooq"]
BLOCKED_REST_S = 6 * 3600.0
UNKNOWN_RETRY_S = 86400.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 30.0, 1800.0
FX_EVERY_S = 6 * 3600.0
# Prices quoted in a currency's minor unit: pence on the LSE, and the like.
MINOR_UNITS = {
    "GBp": ("GBP", 100.0),
    "GBX": ("GBP", 100.0),
    "ZAc": ("ZAR", 100.0),
    "ILA": ("ILS", 100.0),
}


@dataclass(frozen=True)
class ProviderOptions:
    api_key_file: Secret | None = None
    base_url: str = ""


@dataclass(frozen=True)
class Instrument:
    exchange: str = ""
    currency: str = ""
    yahoo: str = ""
    finnhub: str = ""
    twelvedata: str = ""
    alphavantage: str = ""
    stooq: str = ""
    quantity: float = 0.0
    cost_basis: float = 0.0


# Currencies with a Grafana unit ("currencyUSD"); others show plain numbers.
CURRENCY_UNITS = frozenset(
    {"USD", "EUR", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "ZAR", "INR"}
    | {"KRW", "BRL", "ILS", "TRY"}
)
MAX_PRICE_PANELS = 24  # beyond this, one panel of all prices


def _currency_unit(currency: str) -> str:
    return f"currency{currency}" if currency in CURRENCY_UNITS else "short"


@dataclass(frozen=True)
class StocksOptions(Options):
    default_interval: ClassVar[float] = 300.0
    dashboard = "markets"

    symbols: tuple[str, ...] = ()
    provider: ProviderName = "yahoo"
    fallback: tuple[ProviderName, ...] = ()
    api_key_file: Secret | None = None
    base_url: str = ""
    providers: Mapping[str, ProviderOptions] = field(default_factory=dict)
    instruments: Mapping[str, Instrument] = field(default_factory=dict)
    base_currency: str = ""
    fx_url: str = "https://api.frankfurter.dev"
    after_close: Duration = Duration(900.0)

    @property
    def chain(self) -> list[str]:
        return list(dict.fromkeys([self.provider, *self.fallback]))

    @property
    def all_symbols(self) -> list[str]:
        return list(dict.fromkeys([*self.symbols, *self.instruments]))

    def settings(self, name: str) -> ProviderOptions:
        """A provider's key and URL: the top-level keys belong to ``provider``."""
        own = self.providers.get(name, ProviderOptions())
        if name == self.provider:
            return ProviderOptions(
                own.api_key_file or self.api_key_file, own.base_url or self.base_url
            )
        return own

    def problems(self) -> Iterator[tuple[str, str]]:
        """(key, problem) for what the types alone do not catch."""
        for name in self.providers:
            if name not in PROVIDERS:
                yield f"providers.{name}", f"unknown provider; known: {', '.join(PROVIDERS)}"
        if not self.all_symbols:
            yield "symbols", 'no symbols; list them like symbols = ["AAPL", "MSFT"]'
        for name in self.chain:
            if PROVIDERS[name].needs_key and self.settings(name).api_key_file is None:
                key = "api_key_file" if name == self.provider else f"providers.{name}.api_key_file"
                yield key, f"{name} needs an API key: name the file that holds it"
        for symbol, instrument in self.instruments.items():
            if instrument.exchange and instrument.exchange not in MARKETS:
                yield (
                    f"instruments.{symbol}.exchange",
                    f"unknown exchange {instrument.exchange!r}; known: {', '.join(MARKETS)}",
                )
            if instrument.quantity and not instrument.cost_basis:
                yield f"instruments.{symbol}.cost_basis", "a holding needs its cost_basis"
        if self.base_currency and not re.fullmatch(r"[A-Z]{3}", self.base_currency):
            yield "base_currency", f"{self.base_currency!r} is not a currency code like EUR"
        yield from self._more_problems()

    def _more_problems(self) -> Iterator[tuple[str, str]]:
        for index, symbol in enumerate(self.symbols):
            if not symbol.strip() or not symbol.isprintable():
                yield f"symbols[{index}]", f"{symbol!r} is not a symbol like 'AAPL'"
        urls = {"base_url": self.base_url, "fx_url": self.fx_url}
        urls.update({f"providers.{n}.base_url": p.base_url for n, p in self.providers.items()})
        for key, url in urls.items():
            if url and (problem := url_problem(url, ("http", "https"))):
                yield key, problem

    def panels(self) -> Iterator[Panel]:
        """A price panel per symbol (each on its own scale), the day's change of all,
        and the portfolio when holdings are configured."""
        symbols: dict[str, str] = {}
        for symbol in self.all_symbols:
            instrument = self.instruments.get(symbol)
            currency = instrument.currency if instrument else ""
            exchange = instrument.exchange if instrument else ""
            symbols[symbol] = currency or currency_for(symbol, market_for(symbol, exchange))
        if len(symbols) <= MAX_PRICE_PANELS:
            for symbol, currency in symbols.items():
                query = select('last("price")', "quote", f'"symbol" = {tag(symbol)}')
                price = [target(query, alias="$tag_host")]
                yield sized(timeseries(symbol, price, _currency_unit(currency)), 8)
        else:
            query = select('last("price")', "quote", "", '"symbol"')
            yield sized(timeseries("Prices", [target(query, alias="$tag_symbol")], "short"), 24)
        change = select('last("change_pct")', "quote", "", '"symbol"')
        yield sized(
            timeseries("Change on the day", [target(change, alias="$tag_symbol")], "percent"), 24
        )
        if not any(instrument.quantity for instrument in self.instruments.values()):
            return
        value = select('last("value")', "portfolio_total", "\"scope\" = 'currency'", '"currency"')
        yield timeseries("Portfolio value", [target(value, alias="$tag_currency")], "short")
        gain = select('last("gain_pct")', "portfolio", "", '"symbol"')
        yield timeseries("Gain per position", [target(gain, alias="$tag_symbol")], "percent")
        if self.base_currency:
            total = select('last("value")', "portfolio_total", "\"scope\" = 'all'")
            yield sized(
                timeseries(
                    f"Portfolio value in {self.base_currency}",
                    [target(total, alias="$tag_host")],
                    _currency_unit(self.base_currency),
                ),
                24,
            )


@dataclass
class Tracked:
    """One configured symbol and what the input knows about it."""

    symbol: str
    market: Market
    instrument: Instrument
    spelled: dict[str, str]  # provider -> the symbol as that provider spells it
    last_time: int = 0  # the source time of the last quote written
    last_poll: float | None = None  # when a provider last answered with a quote
    last_quote: Quote | None = None

    @property
    def currency(self) -> str:
        """The configured or presumed currency, for sources that do not say."""
        return self.instrument.currency or currency_for(self.symbol, self.market)


@dataclass
class Source:
    """A provider in the chain, its budget and whether it is resting."""

    provider: Provider
    budget: Budget
    rest_until: float = 0.0
    why: str = ""
    failures: int = 0

    @property
    def name(self) -> str:
        return self.provider.name

    def rest(self, now: float, seconds: float, why: str) -> None:
        self.rest_until = now + seconds
        self.why = why


_BUDGETS: dict[tuple[str, str, Path | None], Budget] = {}


def shared_budget(provider: Provider, state_dir: Path | None) -> Budget:
    """One budget per provider, key and state directory: two inputs share a quota."""
    key = (provider.name, provider.api_key, state_dir)
    if key not in _BUDGETS:
        state = state_dir / f"quota-{provider.name}.json" if state_dir else None
        _BUDGETS[key] = Budget(provider.limits, state)
    return _BUDGETS[key]


class StocksInput(Input):
    Options = StocksOptions
    source_stamped = True  # quotes carry their trade time; the portfolio its quotes' time

    @classmethod
    def from_config(
        cls, config: InputConfig, agent: AgentConfig, *, time_ns: Callable[[], int]
    ) -> StocksInput:
        state_dir = Path(agent.state_dir)
        return cls(
            config.options,
            interval=config.interval,
            timeout=config.timeout,
            time_ns=time_ns,
            state_dir=state_dir if state_dir.is_dir() else None,
        )

    def __init__(
        self,
        options: StocksOptions,
        *,
        interval: float = 300.0,
        timeout: float | None = None,
        time_ns: Callable[[], int] = time.time_ns,
        session: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        state_dir: Path | None = None,
    ) -> None:
        self.options = options
        self.interval = interval
        self.timeout = timeout or interval
        self._time_ns = time_ns
        self._sleep = sleep
        self._monotonic = monotonic
        self._session = session
        self._problems = StateLog(log)
        self.sources = []
        for name in options.chain:
            settings = options.settings(name)
            provider = PROVIDERS[name](
                base_url=settings.base_url,
                api_key=settings.api_key_file.reveal() if settings.api_key_file else "",
                session=session,
                timeout=min(15.0, self.timeout),
                now=self.now,
            )
            self.sources.append(Source(provider, shared_budget(provider, state_dir)))
        self.tracked = [self._track(symbol) for symbol in options.all_symbols]
        self._unknown: dict[tuple[str, str], float] = {}
        self._rates: dict[str, float] = {}
        self._rates_at = -math.inf
        self._fresh_rates = False

    def now(self) -> float:
        return self._time_ns() / 1e9

    def _track(self, symbol: str) -> Tracked:
        instrument = self.options.instruments.get(symbol, Instrument())
        spelled = {}
        for source in self.sources:
            name = source.name
            own = getattr(instrument, name) or source.provider.symbol_for(symbol)
            if not own and name == self.options.provider:
                own = symbol  # the user wrote it for this provider
            if own:
                spelled[name] = own
            else:
                log.info(
                    "stocks: %s is not asked from %s: set instruments.%s.%s to its symbol there",
                    symbol,
                    name,
                    symbol,
                    name,
                )
        return Tracked(symbol, market_for(symbol, instrument.exchange), instrument, spelled)

    # -- collecting ----------------------------------------------------------------------

    def collect(self) -> Iterator[Point]:
        now = self.now()
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        deadline = self._monotonic() + 0.8 * min(self.interval, self.timeout)
        due = [t for t in self.tracked if self._due(t, moment)]
        failed: list[str] = []
        fresh = False
        for tracked in sorted(due, key=lambda t: t.last_poll or 0.0):
            result = self._fetch(tracked, deadline)
            if result is None:
                continue  # paced: asked at a later collection
            if isinstance(result, str):
                failed.append(f"{tracked.symbol} ({result})")
                continue
            quote, provider = result
            tracked.last_poll = self.now()
            tracked.last_quote = quote
            if quote.time_s != tracked.last_time:
                tracked.last_time = quote.time_s
                fresh = True
                yield self._point(tracked, quote, provider)
        for source in self.sources:
            source.budget.save()
        if fresh and any(t.instrument.quantity for t in self.tracked):
            yield from self._portfolio(max(t.last_time for t in self.tracked))
        if failed:
            raise InputError("no quote for " + "; ".join(failed))

    def _due(self, tracked: Tracked, now: dt.datetime) -> bool:
        """Open: every interval. Closed: once, ``after_close`` after the close."""
        market = tracked.market
        if market.is_open(now):
            return True
        closed = market.last_close(now)
        if closed is None:
            return tracked.last_poll is None
        snapshot = closed + dt.timedelta(seconds=self.options.after_close)
        if now < snapshot:
            return False
        return tracked.last_poll is None or tracked.last_poll < snapshot.timestamp()

    def _fetch(self, tracked: Tracked, deadline: float) -> tuple[Quote, str] | str | None:
        """A quote from the first provider that has one, why none did, or ``None`` when
        the symbol is to be asked at a later collection: the provider to ask next may
        not be asked before ``deadline`` (its pace, not a failure, so no fallback), or the
        only provider left takes closing prices and the market is open."""
        reasons = []
        later = False  # a provider that only takes closing prices waits for the close
        for source in self.sources:
            name = source.name
            symbol = tracked.spelled.get(name)
            if symbol is None:
                continue
            now = self.now()
            if source.provider.limits.closes_only and tracked.market.is_open(
                dt.datetime.fromtimestamp(now, dt.UTC)
            ):
                later = True
                continue
            if source.rest_until > now:
                reasons.append(f"{name}: {source.why}")
                continue
            if self._unknown.get((name, symbol), -math.inf) > now:
                reasons.append(f"{name}: unknown symbol")
                continue
            wait = source.budget.wait(symbol, now)
            if wait > 0 and self._monotonic() + wait > deadline:
                if not source.budget.day_used_up(now):
                    return None
                reasons.append(f"{name}: quota used up for the day")
                continue
            if wait > 0:
                self._sleep(wait)
            source.budget.spend(symbol, self.now())
            try:
                quote = source.provider.quote(symbol, tracked.market)
            except QuoteError as exc:
                reasons.append(f"{name}: {self._failed(source, symbol, exc)}")
                continue
            if source.failures or source.why:
                self._problems.clear(name, f"stocks: {name} answers again")
            source.failures, source.why = 0, ""
            return quote, name
        if later and not reasons:
            return None
        return "; ".join(reasons) or "no provider has this symbol"

    def _failed(self, source: Source, symbol: str, exc: QuoteError) -> str:
        """Decide what a failure means for the provider; return a short reason."""
        name, now = source.name, self.now()
        if isinstance(exc, UnknownSymbolError):
            self._unknown[(name, symbol)] = now + UNKNOWN_RETRY_S
            self._problems.report(f"{name}:{symbol}", f"stocks: {exc}")
            return "unknown symbol"
        if isinstance(exc, RateLimitError):
            source.rest(now, exc.retry_after, "rate limited")
            until = dt.datetime.fromtimestamp(source.rest_until, dt.UTC)
            self._problems.report(name, f"stocks: {exc}; resting until {until:%H:%M} UTC")
        elif isinstance(exc, BlockedError):
            source.rest(now, BLOCKED_REST_S, "blocked")
            self._problems.report(name, f"stocks: {exc}; asking the next provider for 6 hours")
        elif isinstance(exc, AuthFailedError):
            source.rest(now, math.inf, "key refused")
            self._problems.report(name, f"stocks: {exc}", logging.ERROR)
        else:  # a server or network error, or an answer that is not a quote
            source.failures += 1
            backoff = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (source.failures - 1))
            kind = "unreachable" if isinstance(exc, ServerError) else "bad answer"
            source.rest(now, backoff * random.uniform(0.5, 1.0), kind)  # noqa: S311
            self._problems.report(name, f"stocks: {exc}")
        return source.why

    def _point(self, tracked: Tracked, quote: Quote, provider: str) -> Point:
        tags = {
            "symbol": tracked.symbol,
            "currency": quote.currency or tracked.currency,
            "exchange": tracked.instrument.exchange or quote.exchange,
            "provider": provider,
        }
        return Point("quote", quote.fields(), tags, quote.time_s * 1_000_000_000)

    # -- portfolio -----------------------------------------------------------------------

    def _portfolio(self, as_of_s: int) -> Iterator[Point]:
        """Positions and totals, stamped with the newest quote's time (never the Pi's
        clock, which may not be set yet)."""
        stamp = as_of_s * 1_000_000_000
        rates = self._fx() if self.options.base_currency else {}
        totals: dict[str, list[float]] = {}
        base_total = [0.0, 0.0]
        complete = bool(rates)
        for tracked in self.tracked:
            quote, instrument = tracked.last_quote, tracked.instrument
            if not instrument.quantity or quote is None:
                continue
            currency = quote.currency or tracked.currency
            value = instrument.quantity * quote.price
            cost = instrument.cost_basis
            fields: dict[str, float] = {
                "quantity": instrument.quantity,
                "price": quote.price,
                "value": value,
                "cost": cost,
                "gain": value - cost,
                "gain_pct": (value - cost) / cost * 100.0,
            }
            sums = totals.setdefault(currency, [0.0, 0.0])
            sums[0] += value
            sums[1] += cost
            rate = _rate(rates, currency)
            if rate:
                fields["value_base"] = value / rate
                fields["gain_base"] = (value - cost) / rate
                base_total[0] += value / rate
                base_total[1] += cost / rate
            elif rates:
                complete = False
                self._problems.report(f"fx:{currency}", f"stocks: no exchange rate for {currency}")
            tags = {"symbol": tracked.symbol, "currency": currency}
            yield Point("portfolio", fields, tags, stamp)
        for currency, (value, cost) in totals.items():
            yield _total(value, cost, currency, "currency", stamp)
        if complete:
            yield _total(base_total[0], base_total[1], self.options.base_currency, "all", stamp)
        if self._fresh_rates:
            self._fresh_rates = False
            base = self.options.base_currency
            for currency, rate in rates.items():
                if currency != base:
                    tags = {"base": base, "currency": currency}
                    yield Point("fx", {"rate": rate}, tags, stamp)

    def _fx(self) -> dict[str, float]:
        """Units of each currency per one ``base_currency``, refreshed every 6 hours;
        the last rates are kept while the source is unreachable."""
        now = self._monotonic()
        if now - self._rates_at < FX_EVERY_S:
            return self._rates
        base = self.options.base_currency
        wanted = set()
        for tracked in self.tracked:
            quote = tracked.last_quote
            currency = (quote.currency if quote else "") or tracked.instrument.currency
            wanted.add(MINOR_UNITS.get(currency, (currency, 1.0))[0])
        wanted.discard(base)
        wanted.discard("")
        rates = {base: 1.0}
        if wanted:
            try:
                rates.update(fetch_rates(self.options.fx_url, base, sorted(wanted), self._session))
            except QuoteError as exc:
                self._problems.report("fx", f"stocks: exchange rates: {exc}")
                return self._rates
            self._problems.clear("fx", "stocks: exchange rates available again")
        self._rates, self._rates_at = rates, now
        self._fresh_rates = True
        return rates

    # -- check ---------------------------------------------------------------------------

    def plans(self, today: dt.date) -> list[tuple[Plan, Provider]]:
        """The quota plan of each provider for the symbols it would be asked for."""
        result = []
        for source in self.sources:
            markets = [t.market for t in self.tracked if source.name in t.spelled]
            limits = source.provider.limits
            result.append(
                (plan(source.name, limits, markets, self.interval, today), source.provider)
            )
        return result

    def checks(self) -> Iterator[tuple[str, bool, str]]:
        today = dt.datetime.fromtimestamp(self.now(), dt.UTC).date()
        for budget_plan, provider in self.plans(today):
            fits = budget_plan.fits or provider.name != self.options.provider
            yield (f"quota {provider.name}", fits, budget_plan.describe(provider.limits))


def _rate(rates: Mapping[str, float], currency: str) -> float | None:
    major, divisor = MINOR_UNITS.get(currency, (currency, 1.0))
    rate = rates.get(major)
    return rate * divisor if rate else None


def _total(value: float, cost: float, currency: str, scope: str, stamp: int) -> Point:
    fields = {"value": value, "cost": cost, "gain": value - cost}
    if cost:
        fields["gain_pct"] = (value - cost) / cost * 100.0
    return Point("portfolio_total", fields, {"currency": currency, "scope": scope}, stamp)


def fetch_rates(
    url: str, base: str, currencies: list[str], session: Any = None
) -> dict[str, float]:
    """``{currency: units per one base}`` from a Frankfurter server (ECB rates)."""
    provider = _Frankfurter(base_url=url, session=session)
    response = provider.get("/v1/latest", {"base": base, "symbols": ",".join(currencies)})
    data = provider.json(response)
    rates = data.get("rates") if isinstance(data, dict) else None
    if response.status_code != 200 or not isinstance(rates, dict):
        raise QuoteError(f"frankfurter answered HTTP {response.status_code} without rates")
    return {str(k): float(v) for k, v in rates.items() if isinstance(v, int | float) and v > 0}


class _Frankfurter(Provider):
    name = "frankfurter"
    base_url = "https://api.frankfurter.dev"
    limits = Limits()
