"""Progress of a long command (``backfill``, ``backup``): a bar that redraws in place on a
terminal, a plain line per step elsewhere (a log, a pipe, the systemd journal)."""

from __future__ import annotations

from typing import TextIO


class Progress:
    """A bar that redraws in place on a terminal, one line per symbol elsewhere."""

    def __init__(self, total: int, out: TextIO, label: str = "backfill") -> None:
        self.total = total
        self.done = 0
        self.out = out
        self.label = label
        self.tty = out.isatty()

    def step(self, symbol: str, result: str) -> None:
        self.done += 1
        if self.tty:
            filled = round(30 * self.done / max(1, self.total))
            bar = "#" * filled + "-" * (30 - filled)
            self.out.write(f"\r[{bar}] {self.done}/{self.total} {symbol}: {result}\x1b[K")
            if self.done == self.total:
                self.out.write("\n")
        else:
            self.out.write(f"{self.label} {self.done}/{self.total} {symbol}: {result}\n")
        self.out.flush()
