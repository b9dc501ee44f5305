"""Stock, index, currency and crypto quotes from public HTTP sources.

Every response is classified before it is parsed, because many sources report errors
with HTTP 200: the result is a :class:`Quote` (a positive, finite price with the
source's own timestamp) or one of the :class:`QuoteError` kinds below, which the stocks
input turns into a decision: back off, fall back to the next provider, report the
symbol once, or retry later. Nothing else ever becomes a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class QuoteError(Exception):
    """A response that is not a quote; the message says what the source answered."""


class RateLimitError(QuoteError):
    """Too many requests: wait ``retry_after`` seconds before asking this source again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BlockedError(QuoteError):
    """The source answered with something other than data (an HTML page, a captcha, a
    proof-of-work challenge, an API-key notice): ask the next provider for some hours."""


class AuthFailedError(QuoteError):
    """The API key is missing, wrong or not entitled to the endpoint: this provider is
    off until the config changes."""


class UnknownSymbolError(QuoteError):
    """The source does not know the symbol (or the plan does not cover it)."""


class ServerError(QuoteError):
    """A transport error, a timeout or a 5xx: retry later with backoff."""


class NoHistoryError(QuoteError):
    """This provider offers no daily history (on its free plan)."""


@dataclass(frozen=True)
class Quote:
    """The latest price of one symbol, as its source stated it."""

    price: float
    time_s: int  # the source's timestamp of the price, seconds since the epoch
    currency: str = ""
    exchange: str = ""
    open: float | None = None
    high: float | None = None
    low: float | None = None
    prev_close: float | None = None
    volume: int | None = None
    change: float | None = None
    change_pct: float | None = None

    def fields(self) -> dict[str, float | int]:
        """The ``quote`` point's fields; change and change_pct derived when missing."""
        values: dict[str, float | int] = {"price": self.price}
        for name in ("open", "high", "low", "prev_close"):
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        if self.volume is not None:
            values["volume"] = self.volume
        change, change_pct = self.change, self.change_pct
        if self.prev_close is not None:
            if change is None:
                change = self.price - self.prev_close
            if change_pct is None:
                change_pct = change / self.prev_close * 100.0
        if change is not None:
            values["change"] = change
        if change_pct is not None:
            values["change_pct"] = change_pct
        return values


@dataclass(frozen=True)
class Bar:
    """One day of history: the session's date (in the exchange's time zone) and prices."""

    day: str  # YYYY-MM-DD
    close: float
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: int | None = None


def price(value: object, what: str) -> float:
    """A positive finite price from a number or a numeric string, else :class:`QuoteError`
    (a zero, a negative, NaN, ``N/D`` or ``null`` is never a price)."""
    number = optional_price(value)
    if number is None:
        raise QuoteError(f"{what} is not a price: {value!r}")
    return number


def optional_price(value: object) -> float | None:
    """As :func:`price`, but ``None`` for anything that is not a positive finite number."""
    number = optional_number(value)
    return number if number is not None and number > 0 else None


def optional_number(value: object) -> float | None:
    """A finite float from a number or numeric string (``"-0.79%"`` included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip().removesuffix("%")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def optional_volume(value: object) -> int | None:
    number = optional_number(value)
    return int(number) if number is not None and number >= 0 else None
