"""Is the wall clock right? A Raspberry Pi has no real-time clock.

At boot its clock is restored from a file (``fake-hwclock``, systemd-timesyncd's clock
file) to roughly the last shutdown, or starts in 1970, until NTP sets it. Points stamped
in that window carry wrong times: Telegraf and Home Assistant write them and InfluxDB
drops them as outside retention. pitelemetry instead notes, for every collection made
while the clock is not trusted, the offset between the wall clock and the monotonic
clock; once the clock is set it shifts those points by how far the clock moved. The
monotonic clock does not jump, so the shifted times are right.

The clock is trusted when:

* it is not before :data:`FLOOR_NS` (no point may be stamped before this release), and
* systemd-timesyncd is not in use on this machine, or it says it synchronized
  (``/run/systemd/timesync/synchronized``), or the clock was seen to step by more than
  :data:`STEP_NS` (someone set it), or ``give_up_after`` seconds passed since start:
  an offline Pi keeps working, with its points stamped by its best guess, and
  ``pitelemetry status`` says the clock was never synchronized.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The first day of the month this release was built; never a valid reading before it.
FLOOR_NS = int(datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC).timestamp()) * 10**9
STEP_NS = 2 * 10**9
TIMESYNC_DIR = Path("/run/systemd/timesync")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class ClockMark:
    """How to correct stamps taken while the clock was not trusted: the boot they were
    taken in and the wall-minus-monotonic offset at the time."""

    boot_id: str
    offset_ns: int

    def correction(self, clock: Clock) -> int | None:
        """Nanoseconds to add to the stamps, or ``None`` when it cannot be known (the
        marks come from an earlier boot, whose monotonic clock is gone)."""
        if self.boot_id != clock.boot_id:
            return None
        return clock.offset_ns() - self.offset_ns


class Clock:
    def __init__(
        self,
        *,
        time_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
        timesync_dir: Path = TIMESYNC_DIR,
        boot_id: str | None = None,
        floor_ns: int = FLOOR_NS,
        give_up_after: float = 600.0,
    ) -> None:
        self.time_ns = time_ns
        self._monotonic_ns = monotonic_ns
        self._timesync_dir = timesync_dir
        self.boot_id = boot_id if boot_id is not None else _read_boot_id()
        self.floor_ns = floor_ns
        self._give_up_ns = int(give_up_after * 1e9)
        self._started_ns = monotonic_ns()
        self._last_offset = self.offset_ns()
        self._trusted = False
        self.reason = "not checked yet"
        self._lock = threading.Lock()

    def offset_ns(self) -> int:
        return self.time_ns() - self._monotonic_ns()

    def trusted(self) -> bool:
        """Whether stamps taken now are right; once true it stays true."""
        with self._lock:
            if not self._trusted:
                self._trusted, self.reason = self._check()
            return self._trusted

    def _check(self) -> tuple[bool, str]:
        offset = self.offset_ns()
        stepped = abs(offset - self._last_offset) > STEP_NS
        self._last_offset = offset
        if self.time_ns() < self.floor_ns:
            return False, "the clock is before this release's date; waiting for it to be set"
        if not self._timesync_dir.is_dir():
            return True, "trusted (no systemd-timesyncd on this machine)"
        if (self._timesync_dir / "synchronized").exists():
            return True, "synchronized by systemd-timesyncd"
        if stepped:
            return True, "the clock was set (a step was seen)"
        if self._monotonic_ns() - self._started_ns > self._give_up_ns:
            return True, "NEVER synchronized: writing with the clock as it is"
        return False, "waiting for systemd-timesyncd to synchronize the clock"

    def mark(self) -> ClockMark:
        return ClockMark(self.boot_id, self.offset_ns())


def _read_boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def shift_stamps(lines: list[str], correction_ns: int) -> list[str]:
    """Add ``correction_ns`` to the trailing timestamp of every line."""
    shifted = []
    for line in lines:
        head, _, stamp = line.rpartition(" ")
        shifted.append(f"{head} {int(stamp) + correction_ns}")
    return shifted
