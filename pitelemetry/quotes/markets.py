"""When markets trade: sessions in the exchange's own time zone, weekends, holidays and
early closes.

Holidays come from the ``holidays`` package's financial calendars (a few MB, pure
Python; ``exchange_calendars`` would pull pandas and numpy onto a Pi). It does not know
early closes, so the rules below add them: the NYSE closes at 13:00 on the day after
Thanksgiving, and on 3 July and 24 December when those are trading days; the LSE at
12:30 on 24 and 31 December.

Crypto trades around the clock. Currency pairs and futures trade from Sunday 17:00 to
Friday 17:00 New York time.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

UTC = dt.UTC
WEEKEND = (5, 6)


@dataclass(frozen=True)
class Exchange:
    """A stock exchange: its regular session, calendar and currency."""

    code: str
    timezone: str
    opens: dt.time
    closes: dt.time
    calendar: str  # a ``holidays.financial_holidays`` market code
    currency: str
    early_close: dt.time | None = None
    early_days: Callable[[int, Callable[[dt.date], bool]], list[dt.date]] | None = None

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def trades_on(self, day: dt.date) -> bool:
        return day.weekday() not in WEEKEND and day not in _holidays(self.calendar, day.year)

    def session(self, day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """The regular session on ``day`` (aware datetimes), or ``None`` if closed."""
        if not self.trades_on(day):
            return None
        closes = self.closes
        if self.early_days and day in self.early_days(day.year, self.trades_on):
            closes = self.early_close or closes
        return (
            dt.datetime.combine(day, self.opens, self.zone),
            dt.datetime.combine(day, closes, self.zone),
        )

    def is_open(self, now: dt.datetime) -> bool:
        hours = self.session(now.astimezone(self.zone).date())
        return hours is not None and hours[0] <= now < hours[1]

    def last_close(self, now: dt.datetime) -> dt.datetime | None:
        """The end of the latest session that ended at or before ``now``."""
        day = now.astimezone(self.zone).date()
        for back in range(15):  # the longest closure (holidays + weekend) is shorter
            hours = self.session(day - dt.timedelta(days=back))
            if hours is not None and hours[1] <= now:
                return hours[1]
        return None

    def open_seconds(self, day: dt.date) -> float:
        hours = self.session(day)
        return (hours[1] - hours[0]).total_seconds() if hours else 0.0

    def close_time(self, day: dt.date) -> dt.datetime:
        """When ``day``'s session closed (its regular close on a day it did not trade):
        the time a daily bar is stamped with, so a re-run overwrites it."""
        hours = self.session(day)
        return hours[1] if hours else dt.datetime.combine(day, self.closes, self.zone)


@dataclass(frozen=True)
class RoundTheClock:
    """Crypto: always open. ``code`` is ``crypto``."""

    code: str = "crypto"
    currency: str = ""

    def is_open(self, now: dt.datetime) -> bool:
        del now
        return True

    def last_close(self, now: dt.datetime) -> dt.datetime | None:
        del now
        return None

    def open_seconds(self, day: dt.date) -> float:
        del day
        return 86400.0

    def close_time(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(0), UTC) + dt.timedelta(days=1)


@dataclass(frozen=True)
class WeekLong:
    """Currency pairs and futures: Sunday 17:00 to Friday 17:00 in New York."""

    code: str = "fx"
    currency: str = ""

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo("America/New_York")

    def is_open(self, now: dt.datetime) -> bool:
        local = now.astimezone(self.zone)
        weekday, hour = local.weekday(), local.hour
        if weekday == 5:  # Saturday
            return False
        if weekday == 4:  # Friday
            return hour < 17
        if weekday == 6:  # Sunday
            return hour >= 17
        return True

    def last_close(self, now: dt.datetime) -> dt.datetime | None:
        friday = now.astimezone(self.zone).date()
        friday -= dt.timedelta(days=(friday.weekday() - 4) % 7)
        close = dt.datetime.combine(friday, dt.time(17), self.zone)
        return close if close <= now else close - dt.timedelta(days=7)

    def open_seconds(self, day: dt.date) -> float:
        return {4: 17 * 3600.0, 5: 0.0, 6: 7 * 3600.0}.get(day.weekday(), 86400.0)

    def close_time(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(17), self.zone)


Market = Exchange | RoundTheClock | WeekLong


def _nyse_early_days(year: int, trades_on: Callable[[dt.date], bool]) -> list[dt.date]:
    november = dt.date(year, 11, 1)
    thanksgiving = november + dt.timedelta(days=(3 - november.weekday()) % 7 + 21)
    candidates = [dt.date(year, 7, 3), thanksgiving + dt.timedelta(days=1), dt.date(year, 12, 24)]
    return [day for day in candidates if trades_on(day)]


def _lse_early_days(year: int, trades_on: Callable[[dt.date], bool]) -> list[dt.date]:
    return [day for day in (dt.date(year, 12, 24), dt.date(year, 12, 31)) if trades_on(day)]


@functools.cache
def _holidays(calendar: str, year: int) -> frozenset[dt.date]:
    import holidays  # noqa: PLC0415 - only quote inputs need it

    return frozenset(holidays.financial_holidays(calendar, years=year))


def _exchange(code: str, tz: str, hours: str, calendar: str, currency: str) -> Exchange:
    opens, closes = (dt.time.fromisoformat(t) for t in hours.split("-"))
    return Exchange(code, tz, opens, closes, calendar, currency)


NYSE = Exchange(
    "NYSE",
    "America/New_York",
    dt.time(9, 30),
    dt.time(16),
    "NYSE",
    "USD",
    dt.time(13),
    _nyse_early_days,
)
MARKETS: dict[str, Market] = {
    "NYSE": NYSE,
    "NASDAQ": Exchange(
        "NASDAQ",
        NYSE.timezone,
        NYSE.opens,
        NYSE.closes,
        "XNAS",
        "USD",
        dt.time(13),
        _nyse_early_days,
    ),
    "LSE": Exchange(
        "LSE",
        "Europe/London",
        dt.time(8),
        dt.time(16, 30),
        "XLON",
        "GBP",
        dt.time(12, 30),
        _lse_early_days,
    ),
    "XETRA": _exchange("XETRA", "Europe/Berlin", "09:00-17:30", "XETR", "EUR"),
    "EURONEXT": _exchange("EURONEXT", "Europe/Paris", "09:00-17:30", "XPAR", "EUR"),
    "SIX": _exchange("SIX", "Europe/Zurich", "09:00-17:30", "XSWX", "CHF"),
    "TSX": _exchange("TSX", "America/Toronto", "09:30-16:00", "XTSE", "CAD"),
    "JPX": _exchange("JPX", "Asia/Tokyo", "09:00-15:30", "XJPX", "JPY"),
    "HKEX": _exchange("HKEX", "Asia/Hong_Kong", "09:30-16:00", "XHKG", "HKD"),
    "ASX": _exchange("ASX", "Australia/Sydney", "10:00-16:00", "XASX", "AUD"),
    "crypto": RoundTheClock(),
    "fx": WeekLong(),
}

# Yahoo-style suffixes (the canonical symbols of the config) and their exchanges.
_SUFFIXES = {
    ".L": "LSE",
    ".DE": "XETRA",
    ".F": "XETRA",
    ".PA": "EURONEXT",
    ".AS": "EURONEXT",
    ".BR": "EURONEXT",
    ".SW": "SIX",
    ".TO": "TSX",
    ".T": "JPX",
    ".HK": "HKEX",
    ".AX": "ASX",
}
_INDICES = {"^FTSE": "LSE", "^GDAXI": "XETRA", "^FCHI": "EURONEXT", "^N225": "JPX", "^HSI": "HKEX"}
_CRYPTO = re.compile(r"^[A-Z0-9]{2,10}-(USD|USDT|EUR|GBP|BTC|ETH)$")


def market_for(symbol: str, exchange: str = "") -> Market:
    """The market whose hours apply to ``symbol``: ``exchange`` if given (a key of
    :data:`MARKETS`), else guessed from a Yahoo-style symbol; US stocks by default."""
    if exchange:
        return MARKETS[exchange]
    upper = symbol.upper()
    if upper.endswith(("=X", "=F")):
        return MARKETS["fx"]
    if _CRYPTO.match(upper):
        return MARKETS["crypto"]
    if upper in _INDICES:
        return MARKETS[_INDICES[upper]]
    for suffix, code in _SUFFIXES.items():
        if upper.endswith(suffix):
            return MARKETS[code]
    return MARKETS["NYSE"]


def currency_for(symbol: str, market: Market) -> str:
    """The currency a symbol is quoted in, when the provider does not say: the
    exchange's, or the quote currency of a pair (``BTC-USD``, ``EURUSD=X``)."""
    upper = symbol.upper()
    if re.match(r"^[A-Z]{6}=X$", upper):
        return upper[3:6]
    if _CRYPTO.match(upper):
        return upper.rsplit("-", 1)[1]
    return market.currency
