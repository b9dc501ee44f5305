"""``pitelemetry backfill --days N``: daily history of the configured symbols into
InfluxDB, so the Markets dashboard has a past from the first day.

Each day's bar becomes a ``quote`` point stamped at that session's close in the
exchange's time zone, so running it again writes the same timestamps and overwrites
instead of duplicating. Providers are asked in the input's order (Yahoo, Twelve Data,
Alpha Vantage and Stooq have daily history; Finnhub's needs a paid plan), within the
same quotas as the daemon: the command waits for a minute's quota, and stops asking a
provider whose day is used up. Progress is a bar on a terminal, plain lines otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pitelemetry.config import Config
from pitelemetry.inputs.stocks import Source, StocksInput, StocksOptions, Tracked
from pitelemetry.point import LineEncoder, Point
from pitelemetry.progress import Progress
from pitelemetry.quotes import Bar, QuoteError, RateLimitError
from pitelemetry.writer import AutoWriter, WriteError, Writer

MAX_WAIT_S = 120.0  # longer than this for a quota or a rate limit: ask the next provider


def backfill(
    config: Config,
    days: int,
    *,
    out: TextIO = sys.stderr,
    writer: Writer | None = None,
    session: Any = None,
    now: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write ``days`` of daily history; return how many symbols got none."""
    state_dir = Path(config.agent.state_dir)  # the daemon's quota counts, when ours to write
    inputs = [
        StocksInput(
            item.options,
            interval=item.interval,
            timeout=item.timeout,
            session=session,
            time_ns=lambda: int(now() * 1e9),
            sleep=sleep,
            state_dir=state_dir if state_dir.is_dir() and os.access(state_dir, os.W_OK) else None,
        )
        for item in config.inputs
        if isinstance(item.options, StocksOptions)
    ]
    encoders = [
        LineEncoder({"host": config.agent.hostname, **item.tags})
        for item in config.inputs
        if isinstance(item.options, StocksOptions)
    ]
    writer = writer or AutoWriter(config.influxdb)
    end = dt.datetime.fromtimestamp(now(), dt.UTC).date()
    window = _Window(end - dt.timedelta(days=days), end, now, sleep)
    progress = Progress(sum(len(s.tracked) for s in inputs), out)
    failed = 0
    for stocks, encoder in zip(inputs, encoders, strict=True):
        for tracked in stocks.tracked:
            try:
                provider, bars = window.history(stocks, tracked)
            except QuoteError as exc:
                failed += 1
                progress.step(tracked.symbol, f"no history: {exc}")
                continue
            points = list(bar_points(tracked, provider, bars))
            stamp = int(now() * 1e9)
            try:
                writer.write([encoder.encode(point, stamp) for point in points])
            except WriteError as exc:
                out.write(f"\npitelemetry backfill: InfluxDB refused the write: {exc}\n")
                return failed + 1
            progress.step(tracked.symbol, f"{len(points)} days from {provider}")
    for stocks in inputs:
        for source in stocks.sources:
            source.budget.save()
    return failed


@dataclass(frozen=True)
class _Window:
    """The days asked for, and the clock to pace the asking with."""

    start: dt.date
    end: dt.date
    now: Callable[[], float]
    sleep: Callable[[float], None]

    def history(self, stocks: StocksInput, tracked: Tracked) -> tuple[str, list[Bar]]:
        """(provider, bars) from the first provider that has them."""
        reasons = []
        for source in stocks.sources:
            symbol = tracked.spelled.get(source.name)
            if symbol is None or source.rest_until > self.now():
                continue
            try:
                return source.name, self.ask(source, symbol, tracked)
            except RateLimitError as exc:
                source.rest(self.now(), exc.retry_after, "rate limited")
                reasons.append(str(exc))
            except QuoteError as exc:
                reasons.append(str(exc))
        raise QuoteError("; ".join(reasons) or "no provider has this symbol")

    def ask(self, source: Source, symbol: str, tracked: Tracked) -> list[Bar]:
        for _ in range(3):
            wait = source.budget.wait(symbol, self.now())
            if wait > MAX_WAIT_S:
                raise RateLimitError(f"{source.name}: its quota is used up for now", wait)
            if wait > 0:
                self.sleep(wait)
            source.budget.spend(symbol, self.now())
            try:
                return source.provider.history(symbol, tracked.market, self.start, self.end)
            except RateLimitError as exc:
                if exc.retry_after > MAX_WAIT_S:
                    raise
                self.sleep(exc.retry_after)
        raise RateLimitError(f"{source.name} kept saying too many requests", MAX_WAIT_S)


def bar_points(tracked: Tracked, provider: str, bars: list[Bar]) -> Iterator[Point]:
    """``quote`` points from daily bars, each stamped at its session's close."""
    tags = {
        "symbol": tracked.symbol,
        "currency": tracked.currency,
        "exchange": tracked.instrument.exchange,
        "provider": provider,
    }
    previous: float | None = None
    for bar in sorted(bars, key=lambda b: b.day):
        fields: dict[str, float | int] = {"price": bar.close}
        for name in ("open", "high", "low", "volume"):
            value = getattr(bar, name)
            if value is not None:
                fields[name] = value
        if previous is not None:
            fields["prev_close"] = previous
            fields["change"] = bar.close - previous
            fields["change_pct"] = (bar.close - previous) / previous * 100.0
        previous = bar.close
        closed = tracked.market.close_time(dt.date.fromisoformat(bar.day))
        yield Point("quote", fields, tags, int(closed.timestamp()) * 1_000_000_000)
