from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitelemetry.clock import FLOOR_NS, Clock, ClockMark
from pitelemetry.collector import Collector, RunningInput
from pitelemetry.config import InputConfig
from pitelemetry.inputs import Input, InputError
from pitelemetry.point import LineEncoder, Point

RELEASE = threading.Event()


class Counter(Input):
    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> Iterator[Point]:
        self.calls += 1
        yield Point("counter", {"n": self.calls}, {}, time.time_ns())


class Hangs(Input):
    def collect(self) -> Iterator[Point]:
        RELEASE.wait()  # "forever": until the test ends
        yield Point("late", {"v": 1.0})


class Raises(Input):
    def collect(self) -> Iterator[Point]:
        raise InputError("sensor unplugged")


class Crashes(Input):
    def collect(self) -> Iterator[Point]:
        yield Point("before_crash", {"v": 1.0})
        raise ZeroDivisionError("bug")


class BadPoint(Input):
    def collect(self) -> Iterator[Point]:
        yield Point("bad", {"v": float("nan")})
        yield Point("good", {"v": 1.0})


class Sink:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.marks: list[ClockMark | None] = []

    def __call__(self, lines: list[str], mark: ClockMark | None, on_durable: object = None) -> None:
        self.lines.extend(lines)
        self.marks.append(mark)


def running(
    name: str, instance: Input, interval: float = 0.1, timeout: float = 0.3
) -> RunningInput:
    config = InputConfig(name, 0, interval, timeout, {}, None)
    return RunningInput(config, instance, LineEncoder({"host": "test"}))


@pytest.fixture(autouse=True)
def _release_hung_inputs() -> Iterator[None]:
    RELEASE.clear()
    yield
    RELEASE.set()


def run_for(collector: Collector, seconds: float) -> None:
    collector.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.05, collector.run_pending()))
    collector.stop()


def test_hanging_and_raising_inputs_do_not_delay_or_stop_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = Counter()
    inputs = [
        running("counter", counter),
        running("hangs", Hangs()),
        running("raises", Raises()),
        running("crashes", Crashes()),
    ]
    received = Sink()
    collector = Collector(inputs, received)
    run_for(collector, 1.5)
    assert counter.calls >= 10  # every 0.1 s for 1.5 s, despite the others
    by_name = {r.config.name: r.stats for r in inputs}
    assert by_name["hangs"].collections == 0
    assert by_name["hangs"].errors == 1
    assert by_name["hangs"].last_error == "timed out after 0.3s"
    assert by_name["raises"].errors >= 10
    assert by_name["raises"].last_error == "sensor unplugged"
    assert by_name["crashes"].last_error == "ZeroDivisionError: bug"
    messages = [r.message for r in caplog.records]
    assert messages.count("input raises: sensor unplugged") == 1  # logged once, not per tick
    assert sum("hangs: still running after 0.3s" in m for m in messages) == 1
    # Points an input yielded before it crashed are kept: they were real readings.
    assert any(line.startswith("before_crash,") for line in received.lines)
    assert len([x for x in received.lines if x.startswith("counter,")]) == counter.calls


def test_a_bad_point_is_counted_and_the_rest_kept() -> None:
    item = running("bad", BadPoint())
    received = Sink()
    collector = Collector([item], received)
    collector.collect_once()
    collector.stop()
    assert [line.split(" ")[0] for line in received.lines] == ["good,host=test"]
    assert item.stats.bad_points == 1
    assert item.stats.errors == 0


def test_points_are_stamped_when_read_else_when_collected(tmp_path: Path) -> None:
    now = FLOOR_NS + 10**12
    clock = Clock(time_ns=lambda: now, timesync_dir=tmp_path / "none", boot_id="b")
    items = [running("counter", Counter()), running("bad", BadPoint())]
    received = Sink()
    collector = Collector(items, received, clock=clock)
    collector.collect_once()
    collector.stop()
    stamps = {line.split(",")[0]: int(line.rsplit(" ", 1)[1]) for line in received.lines}
    assert stamps["counter"] > 1_600_000_000 * 10**9  # its own stamp, from the real clock
    assert stamps["counter"] != now
    assert stamps["good"] == now  # no stamp of its own: the collection's
    assert received.marks == [None, None]  # the clock is trusted


def test_collections_while_the_clock_is_unset_carry_a_mark(tmp_path: Path) -> None:
    timesync = tmp_path / "timesync"
    timesync.mkdir()  # timesyncd is in use and has not synchronized
    clock = Clock(
        time_ns=lambda: FLOOR_NS + 5,
        monotonic_ns=lambda: 7,
        timesync_dir=timesync,
        boot_id="boot-1",
    )
    received = Sink()
    collector = Collector([running("bad", BadPoint())], received, clock=clock)
    collector.collect_once()
    collector.stop()
    assert received.marks == [ClockMark("boot-1", FLOOR_NS - 2)]


def test_an_input_stamped_by_its_source_carries_no_mark(tmp_path: Path) -> None:
    timesync = tmp_path / "timesync"
    timesync.mkdir()  # the clock is not set: a Pi's own stamps would be shifted later
    clock = Clock(time_ns=lambda: FLOOR_NS + 5, timesync_dir=timesync, boot_id="boot-1")

    class Quotes(Input):
        source_stamped = True

        def collect(self) -> Iterator[Point]:
            yield Point("quote", {"price": 1.0}, {}, 1_784_903_522 * 10**9)

    received = Sink()
    collector = Collector([running("quotes", Quotes())], received, clock=clock)
    collector.collect_once()
    collector.stop()
    assert received.marks == [None]  # its trade times stay as they are
    assert received.lines == ["quote,host=test price=1.0 1784903522000000000"]


def test_collect_once_gives_up_on_a_hung_input() -> None:
    hung = running("hangs", Hangs(), timeout=0.2)
    counter = running("counter", Counter())
    received = Sink()
    collector = Collector([hung, counter], received)
    started = time.monotonic()
    collector.collect_once()
    collector.stop()
    assert time.monotonic() - started < 2
    assert hung.stats.last_error == "timed out after 0.2s"
    assert len(received.lines) == 1
