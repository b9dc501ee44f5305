"""API quotas: a :class:`Budget` that keeps a provider's calls within its limits at run
time, and :func:`plan`, which tells ``pitelemetry check`` whether a configured interval
fits those limits and which interval would.

The day's count is kept in ``state_dir``, so a restart does not hand out the day's
calls a second time.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pitelemetry import statefile
from pitelemetry.quotes.markets import Market, RoundTheClock
from pitelemetry.quotes.providers import Limits

log = logging.getLogger(__name__)


def _utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def _day(value: object) -> str:
    """A saved day, which must be an ISO date (``date.fromisoformat`` raises otherwise)."""
    if not isinstance(value, str):
        raise TypeError(f"day must be a date string, got {type(value).__name__}")
    return dt.date.fromisoformat(value).isoformat()


class Budget:
    """Counts one provider's calls in the windows its :class:`Limits` name."""

    def __init__(self, limits: Limits, state_file: Path | None = None) -> None:
        self.limits = limits
        self.state_file = state_file
        self._recent: collections.deque[float] = collections.deque()  # last minute's calls
        self._per_symbol: dict[str, float] = {}
        self._day = ""
        self._day_calls = 0
        self._saved = (self._day, self._day_calls)
        self._lock = threading.Lock()
        self._load()

    def wait(self, symbol: str, now: float) -> float:
        """Seconds until a call for ``symbol`` is within every limit (0: now)."""
        limits = self.limits
        with self._lock:
            self._roll(now)
            waits = [0.0]
            if limits.per_day and self._day_calls >= limits.per_day:
                tomorrow = dt.date.fromisoformat(self._day) + dt.timedelta(days=1)
                midnight = dt.datetime.combine(tomorrow, dt.time(0), dt.UTC).timestamp()
                waits.append(midnight - now)
            if limits.per_minute and len(self._recent) >= limits.per_minute:
                waits.append(self._recent[-limits.per_minute] + 60.0 - now)
            if limits.per_second and len(self._recent) >= limits.per_second:
                waits.append(self._recent[-limits.per_second] + 1.0 - now)
            last = self._per_symbol.get(symbol)
            if limits.symbol_interval and last is not None:
                waits.append(last + limits.symbol_interval - now)
            return max(waits)

    def day_used_up(self, now: float) -> bool:
        """Whether the day's calls are spent (not merely paced within the minute)."""
        with self._lock:
            self._roll(now)
            return bool(self.limits.per_day) and self._day_calls >= self.limits.per_day

    def spend(self, symbol: str, now: float) -> None:
        with self._lock:
            self._roll(now)
            self._recent.append(now)
            self._per_symbol[symbol] = now
            self._day_calls += 1

    def _roll(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
        day = _utc_day(now)
        if day != self._day:
            self._day, self._day_calls = day, 0

    def _load(self) -> None:
        if self.state_file is None:
            return
        state = statefile.read_json(
            self.state_file,
            lambda data: (_day(data["day"]), statefile.finite_int(data["calls"])),
            "counting today's calls from 0",
        )
        if state is not None:
            self._day, self._day_calls = state
        self._saved = (self._day, self._day_calls)

    def save(self) -> None:
        """Write the day's count if it changed (once per collection, not per call)."""
        if self.state_file is None or (self._day, self._day_calls) == self._saved:
            return
        with self._lock:
            day, calls = self._day, self._day_calls
        try:
            statefile.write_atomic(self.state_file, json.dumps({"day": day, "calls": calls}))
        except OSError as exc:
            log.warning("cannot keep the quota count in %s: %s", self.state_file, exc)
            return
        self._saved = (day, calls)


@dataclass(frozen=True)
class Plan:
    """Whether polling ``symbols`` every ``interval`` fits a provider's limits."""

    provider: str
    symbols: int
    interval: float
    per_minute: float  # calls a minute, spread out, while every market is open
    per_day: int  # calls on the busiest day of the coming week
    shortest: float  # the shortest interval that fits (inf: none does)

    @property
    def fits(self) -> bool:
        return self.interval >= self.shortest

    def describe(self, limits: Limits) -> str:
        parts = []
        if limits.per_minute:
            parts.append(f"{self.per_minute:.1f} calls/min of {limits.per_minute}")
        if limits.per_day:
            parts.append(f"{self.per_day} calls/day of {limits.per_day}")
        if limits.symbol_interval:
            parts.append(f"at most one call per symbol every {limits.symbol_interval:g}s")
        if limits.closes_only:
            parts.append("closing prices only")
        text = f"{self.symbols} symbols every {_duration(self.interval)}: " + ", ".join(parts)
        if self.fits:
            return text + ": fits"
        if math.isinf(self.shortest):
            return text + ": too many symbols for this provider's day"
        return text + f": does not fit; use interval = {_duration(self.shortest)!r} or more"


def plan(
    provider: str, limits: Limits, markets: Sequence[Market], interval: float, today: dt.date
) -> Plan:
    """The calls that ``markets`` (one per symbol) polled every ``interval`` need, on the
    busiest of the next seven days: every ``interval`` while a market is open, plus one
    closing snapshot per session."""
    week = [today + dt.timedelta(days=n) for n in range(7)]
    count = len(markets)

    def day_calls(day: dt.date, every: float) -> int:
        calls = 0
        for market in markets:
            seconds = market.open_seconds(day)
            closes = 0 if isinstance(market, RoundTheClock) or not seconds else 1
            if limits.closes_only:
                calls += closes
            else:
                calls += math.ceil(seconds / every) + closes
        return calls

    per_day = max((day_calls(day, interval) for day in week), default=0)
    per_minute = 0.0 if limits.closes_only else count * 60.0 / interval
    shortest = limits.symbol_interval
    if limits.per_minute and not limits.closes_only:
        shortest = max(shortest, 60.0 * count / limits.per_minute)
    if limits.per_day and limits.closes_only:
        if per_day > limits.per_day:
            shortest = math.inf
    elif limits.per_day:
        busiest = max(week, key=lambda day: day_calls(day, interval))
        room = limits.per_day - day_calls(busiest, math.inf)  # less the closing snapshots
        open_seconds = sum(m.open_seconds(busiest) for m in markets)
        shortest = max(shortest, open_seconds / room) if room > 0 else math.inf
    if not math.isinf(shortest):
        shortest = math.ceil(shortest / 60.0) * 60.0 if shortest > 60 else math.ceil(shortest)
    return Plan(provider, count, interval, per_minute, per_day, shortest)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
