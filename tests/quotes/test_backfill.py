"""Backfill's pieces that the end-to-end test does not see: daily bars to points, and
its progress on a terminal and off one."""

from __future__ import annotations

import datetime as dt
import io

from pitelemetry.backfill import bar_points
from pitelemetry.inputs.stocks import Instrument, Tracked
from pitelemetry.progress import Progress
from pitelemetry.quotes import Bar
from pitelemetry.quotes.markets import MARKETS, NYSE


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_become_quotes_stamped_at_the_close() -> None:
    tracked = Tracked("AAPL", NYSE, Instrument(), {"yahoo": "AAPL"})
    bars = [Bar("2026-11-27", 110.0, volume=5), Bar("2026-11-25", 100.0, 99.0, 101.0, 98.0)]
    first, second = bar_points(tracked, "yahoo", bars)
    assert first.fields == {"price": 100.0, "open": 99.0, "high": 101.0, "low": 98.0}
    assert second.fields == {
        "price": 110.0,
        "volume": 5,
        "prev_close": 100.0,
        "change": 10.0,
        "change_pct": 10.0,
    }
    # The day after Thanksgiving closes at 13:00 in New York.
    assert second.time_ns == int(dt.datetime(2026, 11, 27, 18, tzinfo=dt.UTC).timestamp()) * 10**9
    assert second.tags == {"symbol": "AAPL", "currency": "USD", "exchange": "", "provider": "yahoo"}
    crypto = Tracked("BTC-USD", MARKETS["crypto"], Instrument(), {})
    (point,) = bar_points(crypto, "yahoo", [Bar("2026-11-27", 90000.0)])
    assert point.tags["currency"] == "USD"


def test_progress_draws_a_bar_on_a_terminal_and_lines_elsewhere() -> None:
    terminal = Terminal()
    progress = Progress(2, terminal)
    progress.step("AAPL", "30 days from yahoo")
    progress.step("MSFT", "no history")
    assert terminal.getvalue() == (
        "\r[###############---------------] 1/2 AAPL: 30 days from yahoo\x1b[K"
        "\r[##############################] 2/2 MSFT: no history\x1b[K\n"
    )
    log = io.StringIO()
    plain = Progress(2, log)
    plain.step("AAPL", "30 days from yahoo")
    assert log.getvalue() == "backfill 1/2 AAPL: 30 days from yahoo\n"
