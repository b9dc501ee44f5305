"""Runs every input at its own interval on a small bounded thread pool.

Intervals run on the monotonic clock, never the wall clock: the wall clock steps (NTP's
first sync on a Pi without a real-time clock, a manual ``date``) and, in local time,
repeats an hour at the autumn daylight-saving change; either would stall every input
for the size of the step. An input is due every ``interval`` seconds from its first
collection; a turn missed while the process was stopped (a suspended container) is not
made up in a burst. The collection itself runs on a worker thread, so a slow input
never delays another. An input runs at most once at a time: if
it is still busy when next due (hung on a dead bus, say), that turn is skipped, and once
it has run longer than its ``timeout`` an error is logged and counted. It keeps its one
worker until it returns (Python cannot kill a thread), and there is one worker per
input, so the others keep their schedule. An input that raises is logged once per
distinct error and run again at its next interval.

Each collection's points are encoded to line protocol on the worker thread, stamped
with the time the collection started unless the input stamped them when it read them,
and handed to ``sink`` in lists of lines, with a clock mark when the clock was not yet
trusted (:mod:`pitelemetry.clock`).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from pitelemetry.clock import Clock, ClockMark
from pitelemetry.config import InputConfig
from pitelemetry.inputs import Input, InputError
from pitelemetry.logs import StateLog
from pitelemetry.pipeline import no_event
from pitelemetry.point import LineEncoder, Point, PointError

log = logging.getLogger(__name__)

MAX_WORKERS = 16
Durable = Callable[[], None]


class Sink(Protocol):
    def __call__(
        self, lines: list[str], mark: ClockMark | None, on_durable: Durable | None = None
    ) -> None: ...


CHUNK_LINES = 1000


class DaemonPool:
    """A fixed set of daemon worker threads.

    ``concurrent.futures.ThreadPoolExecutor`` joins its workers at interpreter exit, so
    one input hung in a read would keep the daemon from ever stopping."""

    def __init__(self, workers: int) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[None], Callable[[], None]] | None] = (
            queue.SimpleQueue()
        )
        self._workers = workers
        for number in range(workers):
            threading.Thread(target=self._work, name=f"input-{number}", daemon=True).start()

    def submit(self, function: Callable[[], None]) -> Future[None]:
        future: Future[None] = Future()
        self._queue.put((future, function))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, function = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                function()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on it
                future.set_exception(exc)
            else:
                future.set_result(None)

    def shutdown(self) -> None:
        for _ in range(self._workers):
            self._queue.put(None)


@dataclass
class InputStats:
    """What ``status`` and the agent's own health points report per input."""

    collections: int = 0
    errors: int = 0
    points: int = 0
    bad_points: int = 0
    last_duration_s: float = 0.0
    last_success: float | None = None  # wall-clock seconds
    last_error: str = ""


@dataclass
class RunningInput:
    config: InputConfig
    input: Input
    encoder: LineEncoder
    stats: InputStats = field(default_factory=InputStats)
    future: Future[None] | None = None
    started: float = 0.0  # monotonic, of the collection in flight
    timed_out: bool = False
    next_due: float = 0.0  # monotonic


class Collector:
    def __init__(
        self,
        inputs: Sequence[RunningInput],
        sink: Sink,
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        on_event: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.inputs = list(inputs)
        self._sink = sink
        self._clock = clock or Clock()
        self._on_event = on_event or no_event
        self._monotonic = monotonic
        self._pool = DaemonPool(max(1, min(MAX_WORKERS, len(self.inputs))))
        self._scheduling = False
        self._problems = StateLog(log)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start inputs that report changes as they happen, then collect every input
        now, and then at its interval."""
        for running in self.inputs:
            running.input.start(functools.partial(self._emit, running))
        self._scheduling = True
        for running in self.inputs:
            running.next_due = self._monotonic() + running.config.interval
            self._due(running)

    def run_pending(self) -> float:
        """Start the collections that are due; return seconds until the next one."""
        if not self._scheduling or not self.inputs:
            return 1.0
        now = self._monotonic()
        for running in self.inputs:
            if now >= running.next_due:
                self._due(running)
                running.next_due += running.config.interval
                if running.next_due <= now:  # turns missed while suspended: not made up
                    running.next_due = now + running.config.interval
        self._check_timeouts()
        return max(0.0, min(r.next_due for r in self.inputs) - now)

    def _due(self, running: RunningInput) -> None:
        with self._lock:
            if running.future is not None and not running.future.done():
                return  # still busy; _check_timeouts reports a hang
            running.started = self._monotonic()
            running.timed_out = False
            running.future = self._pool.submit(lambda: self._collect(running))

    def _check_timeouts(self) -> None:
        now = self._monotonic()
        for running in self.inputs:
            future = running.future
            if future is None or future.done() or running.timed_out:
                continue
            elapsed = now - running.started
            if elapsed > running.config.timeout:
                running.timed_out = True
                running.stats.errors += 1
                running.stats.last_error = f"timed out after {running.config.timeout:g}s"
                self._problems.report(
                    running.config.name,
                    f"input {running.config.name}: still running after "
                    f"{running.config.timeout:g}s (timeout); skipping it until it returns",
                )

    def _emit(
        self,
        running: RunningInput,
        points: list[Point],
        on_durable: Durable | None = None,
        *,
        source_stamped: bool = False,
    ) -> None:
        """Points an input reports between collections (a door opening, an MQTT
        message), from any thread. ``on_durable`` runs once they are safe."""
        trusted = source_stamped or self._clock.trusted()
        mark = None if trusted else self._clock.mark()
        stamp = self._clock.time_ns()
        lines = []
        for point in points:
            try:
                lines.append(running.encoder.encode(point, stamp))
            except PointError as exc:
                running.stats.bad_points += 1
                self._problems.report(f"{running.config.name}:point", f"bad point: {exc}")
        if lines:
            running.stats.points += len(lines)
            self._sink(lines, mark, on_durable)
        elif on_durable is not None:
            on_durable()  # nothing to keep: done with it

    def _collect(self, running: RunningInput) -> None:
        name = running.config.name
        stats = running.stats
        started = self._monotonic()
        trusted = self._clock.trusted() or running.input.source_stamped
        mark = None if trusted else self._clock.mark()
        stamp = self._clock.time_ns()
        lines: list[str] = []
        try:
            encode = running.encoder.encode
            for point in running.input.collect():
                try:
                    lines.append(encode(point, stamp))
                except PointError as exc:
                    stats.bad_points += 1
                    self._problems.report(f"{name}:point", f"input {name}: bad point: {exc}")
                if len(lines) >= CHUNK_LINES:  # a big collection streams to the writer
                    stats.points += len(lines)
                    self._sink(lines, mark)
                    lines = []
        except Exception as exc:  # noqa: BLE001 - any failure of one input stays in that input
            stats.errors += 1
            reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
            stats.last_error = reason
            if self._problems.report(name, f"input {name}: {reason}"):
                self._on_event("input_lost", f"{name} failing", reason)
        else:
            stats.last_success = time.time()
            stats.last_error = ""
            if self._problems.clear(name):
                log.info("input %s: collecting again", name)
                self._on_event("input_recovered", f"{name} recovered", "collecting again")
        finally:
            stats.collections += 1
            stats.last_duration_s = self._monotonic() - started
        if lines:
            stats.points += len(lines)
            self._sink(lines, mark)

    def collect_once(self) -> None:
        """Run every input once, now, and wait (each up to its timeout)."""
        for running in self.inputs:
            self._due(running)
        for running in self.inputs:
            if running.future is not None:
                try:
                    running.future.result(timeout=running.config.timeout)
                except TimeoutError:
                    running.stats.errors += 1
                    running.stats.last_error = f"timed out after {running.config.timeout:g}s"
                    log.warning(
                        "input %s: no answer within %gs",
                        running.config.name,
                        running.config.timeout,
                    )

    def stop(self) -> None:
        """Stop scheduling; do not wait for hung inputs."""
        self._scheduling = False
        self._pool.shutdown()
        for running in self.inputs:
            try:
                running.input.close()
            except Exception:
                log.exception("input %s: error while closing", running.config.name)
