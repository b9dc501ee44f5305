"""The pipeline: a bounded queue of encoded lines, a batcher and the writer thread.

Collectors call :meth:`Pipeline.submit` with the lines of one collection. The writer
thread batches them by ``batch_size`` and ``flush_interval`` and hands each batch to the
:class:`~pitelemetry.writer.Writer`, treating a batch as a transaction: written,
rejected (the refused points are dropped and counted, never resent), or kept for retry.
Batches kept for retry wait in a bounded in-memory backlog, oldest first, and are
retried before new points at the next flush.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pitelemetry.logs import StateLog
from pitelemetry.writer import (
    AuthError,
    RejectedError,
    RetryableError,
    TooLargeError,
    WriteError,
    Writer,
)

log = logging.getLogger(__name__)

QUEUE_CHUNKS = 1024  # collections waiting for the writer before submit() blocks


@dataclass
class PipelineStats:
    collected: int = 0
    written: int = 0
    write_failures: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    last_write: float | None = None  # wall-clock seconds of the last acknowledged write
    last_write_latency_s: float = 0.0
    last_error: str = ""

    def drop(self, reason: str, count: int) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count


class Pipeline:
    def __init__(
        self,
        writer: Writer,
        *,
        batch_size: int = 5000,
        flush_interval: float = 5.0,
        max_backlog_lines: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backlog_lines = max_backlog_lines
        self.stats = PipelineStats()
        self._monotonic = monotonic
        self._queue: queue.Queue[list[str]] = queue.Queue(QUEUE_CHUNKS)
        self._pending: list[str] = []
        self._backlog: collections.deque[list[str]] = collections.deque()
        self._backlog_lines = 0
        self._retry_at = 0.0
        self._failures_in_row = 0
        self._problems = StateLog(log)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- producer side --------------------------------------------------------------------

    def submit(self, lines: list[str]) -> None:
        """Queue one collection's lines; blocks while the writer is far behind."""
        self._queue.put(lines)

    # -- writer thread --------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_flush = self._monotonic() + self.flush_interval
        while not self._stop.is_set():
            timeout = max(0.0, min(next_flush - self._monotonic(), 0.5))
            with contextlib.suppress(queue.Empty):
                self._take(self._queue.get(timeout=timeout))
            self._drain_queue()
            now = self._monotonic()
            if len(self._pending) >= self.batch_size or now >= next_flush:
                self.flush()
                next_flush = self._monotonic() + self.flush_interval

    def _take(self, lines: list[str]) -> None:
        self.stats.collected += len(lines)
        self._pending.extend(lines)

    def _drain_queue(self) -> None:
        while len(self._pending) < self.batch_size:
            try:
                self._take(self._queue.get_nowait())
            except queue.Empty:
                return

    def flush(self) -> bool:
        """Write the backlog, then the pending lines; return whether all was written."""
        if self._monotonic() < self._retry_at:
            self._keep_pending()
            return False
        while self._backlog:
            if not self._write(self._backlog[0]):
                self._keep_pending()
                return False
            self._backlog_lines -= len(self._backlog.popleft())
        while self._pending:
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            if not self._write(batch):
                self._keep(batch)
                self._keep_pending()
                return False
            self._drain_queue()
        return True

    def _write(self, batch: list[str]) -> bool:
        """One batch as a transaction; True when nothing of it needs resending."""
        started = self._monotonic()
        try:
            self.writer.write(batch)
        except TooLargeError as exc:
            if len(batch) == 1:
                self.stats.drop("too_large", 1)
                self._problems.report("too_large", f"dropped a point InfluxDB refuses: {exc}")
                return True
            middle = len(batch) // 2
            return self._write(batch[:middle]) and self._write(batch[middle:])
        except RejectedError as exc:
            self.stats.written += len(batch) - exc.dropped
            self.stats.drop("rejected", exc.dropped)
            log.warning("InfluxDB refused %d of %d points: %s", exc.dropped, len(batch), exc)
            self._succeeded(started)
            return True
        except WriteError as exc:
            self._failed(exc)
            return False
        self.stats.written += len(batch)
        self._succeeded(started)
        return True

    def _succeeded(self, started: float) -> None:
        self.stats.last_write = time.time()
        self.stats.last_write_latency_s = self._monotonic() - started
        self._failures_in_row = 0
        if self._problems.clear("write"):
            log.info("InfluxDB accepts writes again")

    def _failed(self, exc: WriteError) -> None:
        self.stats.write_failures += 1
        self.stats.last_error = str(exc)
        self._failures_in_row += 1
        hint = ""
        if isinstance(exc, AuthError):
            hint = "; check [influxdb] username/password_file or token_file"
        self._problems.report("write", f"write failed, keeping the points: {exc}{hint}")
        delay = min(60.0, self.flush_interval * 2 ** min(self._failures_in_row - 1, 6))
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, 600.0))
        self._retry_at = self._monotonic() + delay

    def _keep_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self.batch_size]
            del self._pending[: self.batch_size]
            self._keep(batch)

    def _keep(self, batch: list[str]) -> None:
        self._backlog.append(batch)
        self._backlog_lines += len(batch)
        while self._backlog_lines > self.max_backlog_lines and len(self._backlog) > 1:
            oldest = self._backlog.popleft()
            self._backlog_lines -= len(oldest)
            self.stats.drop("backlog_full", len(oldest))
            self._problems.report(
                "backlog", f"backlog over {self.max_backlog_lines} points: dropping the oldest"
            )

    @property
    def backlog_lines(self) -> int:
        return self._backlog_lines

    def stop(self, timeout: float) -> None:
        """Stop the writer thread and make one last attempt to write everything.

        The attempt is not repeated: an InfluxDB that is down now will not be up within
        the few seconds systemd grants a stopping service."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._drain_all()
        self._retry_at = 0.0
        self.flush()
        unsent = len(self._pending) + self._backlog_lines
        if unsent:
            log.warning("stopping with %d points not written to InfluxDB", unsent)

    def _drain_all(self) -> None:
        while True:
            try:
                self._take(self._queue.get_nowait())
            except queue.Empty:
                return
