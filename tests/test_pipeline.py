from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pitelemetry.clock import FLOOR_NS, Clock, ClockMark
from pitelemetry.pipeline import QUEUE_CHUNKS, Pipeline
from pitelemetry.spool import DiskSpool, MemorySpool, Spool
from pitelemetry.writer import RejectedError, RetryableError, TooLargeError, V1Writer
from tests.servers import InfluxDB1

NOW = time.time_ns()


def trusted_clock(tmp_path: Path) -> Clock:
    return Clock(timesync_dir=tmp_path / "no-timesyncd", boot_id="b")


def count(server: InfluxDB1, database: str, measurement: str = "m") -> int:
    rows = server.rows(f"SELECT count(v) FROM {measurement}", database)
    return int(rows[0]["count"]) if rows else 0


def wait_until(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.02)


class FakeWriter:
    """Answers from a script, for the pipeline's bookkeeping alone."""

    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.batches: list[list[str]] = []

    def write(self, lines: list[str]) -> None:
        self.batches.append(list(lines))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer

    def write_body(self, body: bytes, count: int) -> None:
        lines = body.decode().split("\n")[:-1]
        assert len(lines) == count
        self.write(lines)

    def close(self) -> None:
        pass


def pipeline_with(
    writer: FakeWriter | V1Writer, tmp_path: Path, spool: Spool | None = None, **kwargs: object
) -> Pipeline:
    return Pipeline(writer, spool or MemorySpool(10**9), trusted_clock(tmp_path), **kwargs)  # type: ignore[arg-type]


def test_batches_by_size_and_writes_to_influxdb(
    influxdb: InfluxDB1, database: str, tmp_path: Path
) -> None:
    real = V1Writer(influxdb.url, database=database)

    class Recording(FakeWriter):
        def write(self, lines: list[str]) -> None:
            self.batches.append(lines)
            real.write(lines)

        def write_body(self, body: bytes, count: int) -> None:
            raise AssertionError("nothing is spooled here")

    writer = Recording()
    pipeline = pipeline_with(writer, tmp_path, batch_size=100, flush_interval=60)
    pipeline.start()
    for i in range(25):
        pipeline.submit([f"m v={i * 10 + j} {NOW + i * 10 + j}" for j in range(10)])
    wait_until(lambda: pipeline.stats.written >= 200)
    assert [len(b) for b in writer.batches[:2]] == [100, 100]  # long before flush_interval
    pipeline.stop(5)
    assert pipeline.stats.written == 250
    assert count(influxdb, database) == 250
    real.close()


def test_flushes_by_interval(influxdb: InfluxDB1, database: str, tmp_path: Path) -> None:
    writer = V1Writer(influxdb.url, database=database)
    pipeline = pipeline_with(writer, tmp_path, batch_size=5000, flush_interval=0.3)
    pipeline.start()
    pipeline.submit([f"m v=1 {NOW}"])
    wait_until(lambda: count(influxdb, database) == 1, 5)
    pipeline.stop(5)
    writer.close()


def test_a_healthy_influxdb_costs_no_disk_writes(
    influxdb: InfluxDB1, database: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    writer = V1Writer(influxdb.url, database=database)
    pipeline = pipeline_with(
        writer, tmp_path, DiskSpool(spool_dir, 10**8), batch_size=10, flush_interval=0.1
    )
    pipeline.start()
    for i in range(100):
        pipeline.submit([f"m v={i} {NOW + i}"])
    wait_until(lambda: pipeline.stats.written == 100)
    pipeline.stop(5)
    writer.close()
    assert list(spool_dir.iterdir()) == []
    assert pipeline.stats.spooled == 0


def test_outage_spools_to_disk_and_replays_everything(tmp_path: Path) -> None:
    server = InfluxDB1(tmp_path / "influxdb")
    server.start()
    server.create_database("db")
    server.stop()
    writer = V1Writer(server.url, database="db")
    spool = DiskSpool(tmp_path / "spool", 10**8)
    pipeline = pipeline_with(writer, tmp_path, spool, batch_size=10, flush_interval=0.1)
    pipeline.start()
    try:
        for i in range(50):
            pipeline.submit([f"m v={i} {NOW + i}"])
            time.sleep(0.01)
        wait_until(lambda: pipeline.stats.spooled == 50)
        assert list((tmp_path / "spool").glob("*.seg"))  # on disk, fsync-ed
        server.start()
        for i in range(50, 60):  # new points while the backlog drains
            pipeline.submit([f"m v={i} {NOW + i}"])
        wait_until(lambda: count(server, "db") == 60, 30)
        wait_until(lambda: pipeline.spool_points == 0)
        assert pipeline.stats.written == 60  # nothing sent twice
        assert pipeline.stats.replayed >= 50  # (new points also wait during the backoff)
    finally:
        pipeline.stop(5)
        writer.close()
        server.stop()


def test_live_points_are_interleaved_with_the_replay(tmp_path: Path) -> None:
    spool = MemorySpool(10**9)
    for i in range(5):
        spool.append([f"old{i}"])
    writer = FakeWriter()
    pipeline = pipeline_with(writer, tmp_path, spool, batch_size=2, flush_interval=60)
    pipeline.submit(["new0"])
    pipeline.submit(["new1"])
    pipeline._drain_queue()
    pipeline.replay_one()
    pipeline.flush()
    pipeline.replay_one()
    assert writer.batches == [["old0"], ["new0", "new1"], ["old1"]]


def test_rejected_points_are_counted_and_not_resent(tmp_path: Path) -> None:
    writer = FakeWriter(RejectedError("partial write: field type conflict dropped=1", 1))
    pipeline = pipeline_with(writer, tmp_path, batch_size=10, flush_interval=60)
    pipeline.submit(["a", "b", "c"])
    pipeline.stop(1)
    assert writer.batches == [["a", "b", "c"]]
    assert pipeline.stats.written == 2
    assert pipeline.stats.dropped == {"rejected": 1}
    assert pipeline.spool.lines == 0


def test_backoff_is_exponential_with_jitter_and_honours_retry_after(tmp_path: Path) -> None:
    now = [100.0]
    down = RetryableError("down")
    writer = FakeWriter(down, down, down, RetryableError("429", retry_after=120))
    pipeline = Pipeline(
        writer,
        MemorySpool(10**9),
        trusted_clock(tmp_path),
        batch_size=10,
        flush_interval=1,
        monotonic=lambda: now[0],
        jitter=lambda: 1.0,
    )
    delays = []
    pipeline.submit(["a"])
    pipeline._drain_queue()
    pipeline.flush()
    for _ in range(3):
        delays.append(pipeline._retry_at - now[0])
        now[0] = pipeline._retry_at - 0.01
        assert pipeline.replay_one() is False
        assert len(writer.batches) == len(delays)  # nothing sent before the delay passed
        now[0] += 0.02
        pipeline.replay_one()
    assert delays == [1.0, 2.0, 4.0]
    assert pipeline._retry_at - now[0] == pytest.approx(120.0, abs=0.1)  # Retry-After wins
    now[0] += 121
    assert pipeline.replay_one() is True
    assert pipeline.stats.replayed == 1


def test_too_large_splits_the_batch(tmp_path: Path) -> None:
    class LimitWriter(FakeWriter):
        def write(self, lines: list[str]) -> None:
            if len(lines) > 2:
                raise TooLargeError("413")
            self.batches.append(lines)

    writer = LimitWriter()
    pipeline = pipeline_with(writer, tmp_path, batch_size=7, flush_interval=60)
    pipeline.submit([str(i) for i in range(7)])
    pipeline.stop(1)
    assert [line for b in writer.batches for line in b] == [str(i) for i in range(7)]
    assert pipeline.stats.written == 7


def test_points_from_an_unset_clock_get_the_right_time(
    influxdb: InfluxDB1, database: str, tmp_path: Path
) -> None:
    timesync = tmp_path / "timesync"
    timesync.mkdir()
    true_now = time.time_ns()
    behind = 3 * 365 * 86400 * 10**9  # the Pi thinks it is three years ago
    wall = [true_now - behind]
    mono = [10**12]
    clock = Clock(
        time_ns=lambda: wall[0],
        monotonic_ns=lambda: mono[0],
        timesync_dir=timesync,
        boot_id="boot-a",
    )
    writer = V1Writer(influxdb.url, database=database)
    pipeline = Pipeline(writer, MemorySpool(10**9), clock, batch_size=100, flush_interval=0.1)
    assert not clock.trusted()  # before the release date: certainly wrong
    for step in range(3):
        pipeline.submit([f"m v={step} {wall[0]}"], clock.mark())
        wall[0] += 10**9
        mono[0] += 10**9
    pipeline._drain_queue()
    assert pipeline.flush()
    assert pipeline.stats.written == 0  # held, not written with wrong stamps
    wall[0] = true_now + 3 * 10**9  # NTP sets the clock
    (timesync / "synchronized").touch()
    assert clock.trusted()
    while pipeline.replay_one():
        pass
    stamps = [row["time"] for row in influxdb.rows("SELECT v FROM m", database)]
    assert stamps == [true_now, true_now + 10**9, true_now + 2 * 10**9]
    writer.close()


def test_marks_from_an_earlier_boot_keep_only_plausible_stamps(tmp_path: Path) -> None:
    spool = MemorySpool(10**9)
    spool.append([f"m v=1 {FLOOR_NS - 1}", f"m v=2 {FLOOR_NS + 1}"], ClockMark("old-boot", 0))
    writer = FakeWriter()
    pipeline = pipeline_with(writer, tmp_path, spool)
    assert pipeline.replay_one()
    assert writer.batches == [[f"m v=2 {FLOOR_NS + 1}"]]
    assert pipeline.stats.dropped == {"clock": 1}


def test_on_durable_runs_once_lines_are_written(tmp_path: Path) -> None:
    writer = FakeWriter()
    pipeline = pipeline_with(writer, tmp_path, batch_size=2, flush_interval=60)
    done: list[str] = []
    pipeline.submit(["a"], None, lambda: done.append("a"))
    pipeline.submit(["b", "c"], None, lambda: done.append("bc"))
    pipeline._drain_queue()
    assert done == []  # nothing written yet
    pipeline.flush()
    assert writer.batches == [["a", "b"], ["c"]]
    assert done == ["a", "bc"]  # "bc" only once its last line was written


def test_lines_someone_waits_on_are_written_once_nothing_more_is_queued(
    tmp_path: Path,
) -> None:
    writer = FakeWriter()
    frozen = time.monotonic()  # so neither flush_interval nor ACK_WITHIN_S ever passes
    pipeline = pipeline_with(writer, tmp_path, flush_interval=60, monotonic=lambda: frozen)
    done: list[int] = []
    pipeline.submit(["m v=1"], None, lambda: done.append(1))
    pipeline.submit(["m v=2", "m v=3"], None, lambda: done.append(2))
    pipeline.start()
    try:
        # Both waiting collections go in one write, as soon as the queue is empty: a
        # broker's in-flight window (20 messages by default) never waits on a timer.
        wait_until(lambda: done == [1, 2], seconds=5)
        assert writer.batches == [["m v=1", "m v=2", "m v=3"]]
        pipeline.submit(["m v=4"], None, lambda: done.append(3))
        wait_until(lambda: done == [1, 2, 3], seconds=5)
    finally:
        pipeline.stop(1)


def test_on_durable_runs_once_lines_are_spooled_not_when_lost(tmp_path: Path) -> None:
    writer = FakeWriter(RetryableError("down"), RetryableError("down"))
    spool = DiskSpool(tmp_path / "spool", 10**8)
    pipeline = pipeline_with(writer, tmp_path, spool, batch_size=10, flush_interval=60)
    done: list[str] = []
    pipeline.submit(["a"], None, lambda: done.append("a"))
    pipeline._drain_queue()
    pipeline.flush()
    assert done == ["a"]  # in the spool, fsync-ed

    class BrokenSpool(MemorySpool):
        def append(self, lines: list[str], mark: ClockMark | None = None) -> None:
            raise OSError(28, "No space left on device")

    spool.close()
    pipeline.spool = BrokenSpool(10**6)
    pipeline._retry_at = 0
    pipeline.submit(["b"], None, lambda: done.append("b"))
    pipeline._drain_queue()
    pipeline.flush()
    assert done == ["a"]  # lost, so never acknowledged: the sender keeps it
    assert pipeline.stats.dropped == {"spool_error": 1}


def test_on_durable_runs_for_points_influxdb_refused_for_good(tmp_path: Path) -> None:
    writer = FakeWriter(RejectedError("field type conflict dropped=1", 1))
    pipeline = pipeline_with(writer, tmp_path, batch_size=10, flush_interval=60)
    done: list[str] = []
    pipeline.submit(["a"], None, lambda: done.append("a"))
    pipeline.stop(1)
    assert done == ["a"]  # resending would fail the same way


def test_the_writer_thread_never_blocks_on_its_own_queue(tmp_path: Path) -> None:
    pipeline = pipeline_with(FakeWriter(), tmp_path)
    for _ in range(QUEUE_CHUNKS + 10):  # more than the queue holds
        pipeline.submit(["event"], None, block=False)
    assert pipeline.stats.dropped == {"queue_full": 10}


def test_a_stuck_writer_thread_is_seen(tmp_path: Path) -> None:
    now = [0.0]
    entered, release = threading.Event(), threading.Event()

    class Hangs(FakeWriter):
        def write(self, lines: list[str]) -> None:
            entered.set()
            release.wait()

    pipeline = Pipeline(
        Hangs(),
        MemorySpool(10**6),
        trusted_clock(tmp_path),
        batch_size=1,
        flush_interval=60,
        monotonic=lambda: now[0],
    )
    pipeline.start()
    assert pipeline.alive(within=30)
    pipeline.submit(["x"])
    assert entered.wait(10)  # the writer is now inside the hung write
    now[0] += 31
    assert not pipeline.alive(within=30)
    release.set()
    pipeline.stop(1)


def test_influxdbs_field_type_refusals_are_counted_per_field(
    influxdb: InfluxDB1, database: str, tmp_path: Path
) -> None:
    writer = V1Writer(influxdb.url, database=database)
    pipeline = pipeline_with(writer, tmp_path)
    assert pipeline._write(["m v=1.5 1"])
    assert pipeline._write(["m v=true 2", "m v=false 3", "m w=1.0 4"])
    writer.close()
    assert pipeline.stats.type_conflicts == {("m", "v"): (1, "is boolean, stored as float")}
    assert pipeline.stats.dropped == {"rejected": 2}
