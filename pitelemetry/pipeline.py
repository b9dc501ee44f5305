"""The pipeline: a bounded queue of encoded lines, a batcher, the writer thread, and
the durable spool behind it.

Collectors call :meth:`Pipeline.submit` with one collection's lines. The writer thread
batches them by ``batch_size`` and ``flush_interval`` and hands each batch to the
:class:`~pitelemetry.writer.Writer` as a transaction:

* written — done, no disk touched;
* rejected for good (400/422) — the refused points are dropped and counted, the
  accepted ones are not sent again;
* too large (413) — split in halves and sent again;
* anything retryable (down, timeout, 5xx, 429, 401/403, 404) — appended to the spool
  (``fsync``-ed) and retried with exponential backoff and jitter, honouring
  ``Retry-After``.

While the spool holds records, the writer replays them oldest first, one record per
turn, and writes new points between them whenever a batch of them is due, so live
graphs recover at once while the backlog drains.

Lines collected while the clock is not trusted (see :mod:`pitelemetry.clock`) go to the
spool with their clock mark and are written, shifted to the right time, once it is.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import queue
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pitelemetry.clock import Clock, ClockMark, shift_stamps
from pitelemetry.logs import StateLog
from pitelemetry.spool import Spool, SpoolRecord
from pitelemetry.writer import (
    AuthError,
    DatabaseNotFoundError,
    NotInfluxDBError,
    RejectedError,
    RetryableError,
    TooLargeError,
    WriteError,
    Writer,
)

log = logging.getLogger(__name__)

QUEUE_CHUNKS = 256  # collections waiting for the writer before submit() blocks
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
RETRY_AFTER_MAX_S = 600.0
ACK_WITHIN_S = 0.05  # at the latest, lines someone waits on (an MQTT ack) are written
# Lines per spool record: a record is read whole while the backlog drains, so this bounds
# the memory a drain needs (bench/replay), at a small cost in requests.
SPOOL_RECORD_LINES = 1000


@dataclass
class PipelineStats:
    collected: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    write_failures: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    last_write: float | None = None  # wall-clock seconds of the last acknowledged write
    last_write_latency_s: float = 0.0
    last_error: str = ""
    outage_since: float | None = None  # wall-clock seconds
    problem: str = ""  # what a person must fix (credentials, missing database)
    # InfluxDB's field-type refusals: (measurement, field) -> (times, "is X, stored as Y")
    type_conflicts: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)

    def drop(self, reason: str, count: int) -> None:
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + count


Event = Callable[[str, str, str], None]  # (kind, title, text)
Durable = Callable[[], None]


def no_event(kind: str, title: str, text: str) -> None:
    """The default ``on_event``: annotations are not wanted."""
    del kind, title, text


class Pipeline:
    def __init__(
        self,
        writer: Writer,
        spool: Spool,
        clock: Clock,
        *,
        batch_size: int = 5000,
        flush_interval: float = 5.0,
        on_event: Event | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.writer = writer
        self.spool = spool
        self.clock = clock
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.stats = PipelineStats()
        self._on_event = on_event or no_event
        self._monotonic = monotonic
        self._wall = wall  # when a write or an outage happened, for status
        self._jitter = jitter
        self._queue: queue.Queue[tuple[list[str], ClockMark | None, Durable | None]] = queue.Queue(
            QUEUE_CHUNKS
        )
        self._pending: list[str] = []
        # Producers waiting to hear their lines are safe: (end in _pending, callback).
        self._waiting: collections.deque[tuple[int, Durable]] = collections.deque()
        self._ack_due = math.inf
        self._retry_at = 0.0
        self._failures_in_row = 0
        self._problems = StateLog(log)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.heartbeat = monotonic()  # the writer loop's last turn
        # Read by the main thread (status, health points); set on the writer thread.
        self.spool_points = 0
        self.spool_bytes = 0
        self.spool_head_time_ns: int | None = None
        self._refresh_spool_stats()

    # -- producer side --------------------------------------------------------------------

    def submit(
        self,
        lines: list[str],
        mark: ClockMark | None = None,
        on_durable: Durable | None = None,
        *,
        block: bool = True,
    ) -> None:
        """Queue one collection's lines; blocks while the writer is far behind, which is
        the back-pressure a flood of messages meets. ``on_durable`` is called (on the
        writer thread) once the lines are written to InfluxDB or fsync-ed to the spool,
        or refused by InfluxDB for good; never if they are lost. ``block=False`` is for
        the writer thread itself (outage annotations): it must never wait on its own
        queue, so when the queue is full those lines are dropped and counted."""
        try:
            self._queue.put((lines, mark, on_durable), block=block)
        except queue.Full:
            self.stats.drop("queue_full", len(lines))

    def alive(self, within: float) -> bool:
        """Whether the writer thread turned its loop in the last ``within`` seconds (a
        write that hangs past every timeout must not keep the watchdog fed)."""
        thread = self._thread
        running = thread is None or thread.is_alive()
        return running and self._monotonic() - self.heartbeat <= within

    # -- writer thread --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """The writer loop. It must outlive any error: if one escapes a turn (a bug),
        what is pending is spooled, the error is logged with its traceback once and
        shown in ``status``, and the loop goes on after a pause."""
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception as exc:  # the loop outlives any error (see above)
                self.stats.problem = f"the writer hit an unexpected error: {exc!r}"
                if self._problems.report("writer-bug", self.stats.problem, logging.ERROR):
                    log.exception("writer: the error's traceback")
                pending, self._pending = self._pending, []
                self._settle(len(pending), safe=self._spool(pending))
                self._stop.wait(1.0)

    def _loop(self) -> None:
        next_flush = self._monotonic() + self.flush_interval
        while not self._stop.is_set():
            self.heartbeat = self._monotonic()
            replaying = self.spool.lines > 0 and not self._backing_off()
            due = min(next_flush, self._ack_due)
            timeout = 0.0 if replaying else max(0.0, min(due - self._monotonic(), 0.5))
            with contextlib.suppress(queue.Empty):
                self._take(*self._queue.get(timeout=timeout))
            self._drain_queue()
            now = self._monotonic()
            if (
                len(self._pending) >= self.batch_size
                or now >= next_flush
                or now >= self._ack_due
                or self._burst_waits()
            ):
                self.flush()
                next_flush = self._monotonic() + self.flush_interval
            elif replaying:
                self.replay_one()

    def _take(
        self, lines: list[str], mark: ClockMark | None, on_durable: Durable | None = None
    ) -> None:
        self.stats.collected += len(lines)
        if mark is not None and not self.clock.trusted():
            if self._spool(lines, mark) and on_durable is not None:  # until the clock is set
                on_durable()
            return
        if mark is not None:
            lines = shift_stamps(lines, mark.correction(self.clock) or 0)
        self._pending.extend(lines)
        if on_durable is not None:
            self._waiting.append((len(self._pending), on_durable))
            # Someone waits for these lines: write soon rather than batch for long.
            self._ack_due = min(self._ack_due, self._monotonic() + ACK_WITHIN_S)

    def _settle(self, count: int, safe: bool) -> None:
        """The first ``count`` pending lines are done with: tell who waits on them, if
        they are safe, and shift the others' positions."""
        waiting = self._waiting
        while waiting and waiting[0][0] <= count:
            _, callback = waiting.popleft()
            if safe:
                callback()
        self._waiting = collections.deque((end - count, cb) for end, cb in waiting)
        if not self._waiting:
            self._ack_due = math.inf

    def _burst_waits(self) -> bool:
        """Lines someone waits on are pending and nothing more is queued: write them
        now (group commit: while one write is on its way, the next burst collects).
        Waiting for more would idle both ends: a broker sends no more than its
        in-flight window before our acknowledgements, and Mosquitto's default window
        is 20 messages; batching those for even 50 ms made it queue a burst past its
        default 1,000 per client and drop the rest."""
        return bool(self._waiting) and self._queue.empty()

    def _drain_queue(self) -> None:
        while len(self._pending) < self.batch_size:
            try:
                self._take(*self._queue.get_nowait())
            except queue.Empty:
                return

    def _backing_off(self) -> bool:
        return self._monotonic() < self._retry_at

    def flush(self) -> bool:
        """Write the pending lines (or spool them while InfluxDB is failing); return
        whether all of them were written."""
        while self._pending:
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            if self._backing_off() or not self._write(batch):
                rest, self._pending = self._pending, []
                safe = self._spool(batch) and self._spool(rest)
                self._settle(len(batch) + len(rest), safe)
                return False
            self._settle(len(batch), safe=True)
        return True

    def replay_one(self) -> bool:
        """Write the oldest spooled record; return whether it left the spool."""
        record = self.spool.head()
        if record is None or self._backing_off():
            return False
        batch: list[str] | SpoolRecord = record  # sent as stored: no decoding, no copies
        if record.mark is not None:
            if not self.clock.trusted():
                return False
            correction = record.mark.correction(self.clock)
            if correction is None:
                batch = self._from_an_earlier_boot(record.lines)
            else:
                batch = shift_stamps(record.lines, correction)
        if _count(batch) and not self._write(batch):
            return False
        self.spool.ack()
        self.stats.replayed += _count(batch)
        self._refresh_spool_stats()
        return True

    def _refresh_spool_stats(self) -> None:
        self.spool_points = self.spool.lines
        self.spool_bytes = self.spool.bytes
        head = self.spool.head() if self.spool_points else None
        stamp = head.lines[0].rpartition(" ")[2] if head and head.lines else ""
        self.spool_head_time_ns = int(stamp) if stamp.isdigit() else None

    def _from_an_earlier_boot(self, lines: list[str]) -> list[str]:
        """Points stamped by an unset clock in a boot that ended before it was set:
        their true time is lost. Keep those whose stamp is still plausible."""
        floor = self.clock.floor_ns
        kept = [line for line in lines if int(line.rpartition(" ")[2]) >= floor]
        self.stats.drop("clock", len(lines) - len(kept))
        if len(kept) < len(lines):
            self._problems.report(
                "clock",
                f"dropped {len(lines) - len(kept)} points stamped before the clock "
                "was set in an earlier boot",
                logging.WARNING,
            )
        return kept

    def _spool(self, lines: list[str], mark: ClockMark | None = None) -> bool:
        """Append to the spool; False when the points could not be stored."""
        if not lines:
            return True
        try:
            for start in range(0, len(lines), SPOOL_RECORD_LINES):
                self.spool.append(lines[start : start + SPOOL_RECORD_LINES], mark)
        except OSError as exc:
            self.stats.drop("spool_error", len(lines))
            self._problems.report(
                "spool", f"spool: cannot store {len(lines)} points: {exc}", logging.ERROR
            )
            return False
        self._problems.clear("spool", "spool: storing points again")
        self.stats.spooled += len(lines)
        self._refresh_spool_stats()
        return True

    def _write(self, batch: list[str] | SpoolRecord) -> bool:
        """One batch as a transaction; True when nothing of it needs resending."""
        started = self._monotonic()
        count = _count(batch)
        try:
            if isinstance(batch, SpoolRecord):
                self.writer.write_body(batch.body, batch.count)
            else:
                self.writer.write(batch)
        except TooLargeError as exc:
            if isinstance(batch, SpoolRecord):
                return self._write(batch.lines)
            if count == 1:
                self.stats.drop("too_large", 1)
                self._problems.report("too_large", f"dropped a point InfluxDB refuses: {exc}")
                return True
            middle = len(batch) // 2
            first_ok = self._write(batch[:middle])
            if not first_ok:
                return False  # resending the first half again is harmless (same points)
            return self._write(batch[middle:])
        except RejectedError as exc:
            self.stats.written += count - exc.dropped
            self.stats.drop("rejected", exc.dropped)
            self._note_type_conflict(str(exc))
            log.warning("InfluxDB refused %d of %d points for good: %s", exc.dropped, count, exc)
            self._succeeded(started)
            return True
        except WriteError as exc:
            self._failed(exc)
            return False
        except Exception as exc:  # a bug must not kill the writer thread
            log.debug("unexpected write error", exc_info=True)
            self._failed(RetryableError(f"unexpected error while writing: {exc!r}"))
            return False
        self.stats.written += count
        self._succeeded(started)
        return True

    def _note_type_conflict(self, message: str) -> None:
        """Count InfluxDB's "field type conflict" refusals per field, for ``status``."""
        found = _TYPE_CONFLICT.search(message)
        if found is None:
            return
        key = (found["measurement"], found["field"])
        conflicts = self.stats.type_conflicts
        if key not in conflicts and len(conflicts) >= 100:
            return
        times, _ = conflicts.get(key, (0, ""))
        conflicts[key] = (times + 1, f"is {found['got']}, stored as {found['had']}")

    def _succeeded(self, started: float) -> None:
        self.stats.last_write = self._wall()
        self.stats.last_write_latency_s = self._monotonic() - started
        self._failures_in_row = 0
        self.stats.problem = ""
        if self._problems.clear("write"):
            since = self.stats.outage_since
            lasted = f" after {self._wall() - since:.0f}s" if since else ""
            log.info(
                "InfluxDB accepts writes again%s; %d points wait in the spool",
                lasted,
                self.spool.lines,
            )
            self._on_event("outage_end", "InfluxDB back", f"writes succeed again{lasted}")
            self.stats.outage_since = None

    def _failed(self, exc: WriteError) -> None:
        self.stats.write_failures += 1
        self.stats.last_error = str(exc)
        self._failures_in_row += 1
        hint = ""
        if isinstance(exc, AuthError):
            hint = "; check [influxdb] username and password_file, or token_file"
            self.stats.problem = f"{exc}{hint}"
        elif isinstance(exc, DatabaseNotFoundError | NotInfluxDBError):
            self.stats.problem = str(exc)
        reported = self._problems.report("write", f"write failed, spooling the points: {exc}{hint}")
        if reported and self.stats.outage_since is None:
            self.stats.outage_since = self._wall()
            self._on_event("outage", "InfluxDB unreachable", str(exc))
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(self._failures_in_row - 1, 10))
        delay *= 0.5 + self._jitter() / 2  # spread a fleet of Pis hitting one server
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, RETRY_AFTER_MAX_S))
        self._retry_at = self._monotonic() + delay

    def stop(self, timeout: float) -> None:
        """Stop the writer thread, make one last attempt to write what is pending, and
        spool the rest. No retry loop: an InfluxDB that is down now will not be back
        within the few seconds systemd grants a stopping service."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        while True:
            try:
                self._take(*self._queue.get_nowait())
            except queue.Empty:
                break
        self.flush()
        if self.spool.lines:
            log.info("stopping; %d points wait in the spool for the next start", self.spool.lines)
        self.spool.close()
        self.writer.close()


_TYPE_CONFLICT = re.compile(
    r'input field "(?P<field>[^"]*)" on measurement "(?P<measurement>[^"]*)" '
    r"is type (?P<got>\w+), already exists as type (?P<had>\w+)"
)


def _count(batch: list[str] | SpoolRecord) -> int:
    return batch.count if isinstance(batch, SpoolRecord) else len(batch)
