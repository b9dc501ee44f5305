from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pitelemetry.pipeline import Pipeline
from pitelemetry.writer import RejectedError, RetryableError, V1Writer
from tests.servers import InfluxDB1

NOW = time.time_ns()


def count(server: InfluxDB1, database: str, measurement: str = "m") -> int:
    rows = server.rows(f"SELECT count(v) FROM {measurement}", database)
    return int(rows[0]["count"]) if rows else 0


def test_batches_by_size(influxdb: InfluxDB1, database: str) -> None:
    sizes: list[int] = []
    writer = V1Writer(influxdb.url, database=database)
    original = writer.write

    def recording(lines: list[str]) -> None:
        sizes.append(len(lines))
        original(lines)

    writer.write = recording  # type: ignore[method-assign]
    pipeline = Pipeline(writer, batch_size=100, flush_interval=60)
    pipeline.start()
    for i in range(25):
        pipeline.submit([f"m v={i * 10 + j} {NOW + i * 10 + j}" for j in range(10)])
    deadline = time.monotonic() + 10
    while sum(sizes) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sizes[:2] == [100, 100]  # full batches went out long before flush_interval
    pipeline.stop(5)
    assert sum(sizes) == 250
    assert count(influxdb, database) == 250
    writer.close()


def test_flushes_by_interval(influxdb: InfluxDB1, database: str) -> None:
    writer = V1Writer(influxdb.url, database=database)
    pipeline = Pipeline(writer, batch_size=5000, flush_interval=0.3)
    pipeline.start()
    pipeline.submit([f"m v=1 {NOW}"])
    deadline = time.monotonic() + 5
    while count(influxdb, database) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pipeline.stop(5)
    writer.close()


def test_outage_keeps_points_and_writes_them_when_back(tmp_path: Path) -> None:
    server = InfluxDB1(tmp_path)
    server.start()
    server.create_database("db")
    server.stop()
    writer = V1Writer(server.url, database="db")
    pipeline = Pipeline(writer, batch_size=10, flush_interval=0.2)
    pipeline.start()
    try:
        for i in range(50):
            pipeline.submit([f"m v={i} {NOW + i}"])
        deadline = time.monotonic() + 5
        while pipeline.stats.write_failures == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert pipeline.stats.written == 0
        server.start()
        deadline = time.monotonic() + 30
        while pipeline.stats.written < 50:
            assert time.monotonic() < deadline, pipeline.stats
            time.sleep(0.1)
        assert count(server, "db") == 50
        assert pipeline.backlog_lines == 0
    finally:
        pipeline.stop(5)
        writer.close()
        server.stop()


class FakeWriter:
    """Answers from a script, for the pipeline's bookkeeping alone."""

    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def write(self, lines: list[str]) -> None:
        self.batches.append(lines)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer

    def close(self) -> None:
        pass


def test_rejected_points_are_counted_and_not_resent() -> None:
    writer = FakeWriter(RejectedError("partial write: field type conflict dropped=1", 1))
    pipeline = Pipeline(writer, batch_size=10, flush_interval=60)
    pipeline.submit(["a", "b", "c"])
    pipeline.stop(1)
    assert writer.batches == [["a", "b", "c"]]
    assert pipeline.stats.written == 2
    assert pipeline.stats.dropped == {"rejected": 1}


def test_retry_keeps_order_and_the_backlog_is_bounded() -> None:
    writer = FakeWriter(RetryableError("down"), RetryableError("down"))
    pipeline = Pipeline(writer, batch_size=2, flush_interval=60, max_backlog_lines=4)
    pipeline.submit(["1", "2", "3", "4", "5", "6"])
    pipeline._drain_all()
    assert pipeline.flush() is False
    assert pipeline.backlog_lines == 4  # 1,2 dropped as the oldest beyond the cap
    assert pipeline.stats.dropped == {"backlog_full": 2}
    pipeline._retry_at = 0.0
    assert pipeline.flush() is False
    pipeline._retry_at = 0.0
    assert pipeline.flush() is True
    assert writer.batches[-2:] == [["3", "4"], ["5", "6"]]
    assert pipeline.stats.written == 4


def test_retry_after_is_honoured() -> None:
    now = [100.0]
    writer = FakeWriter(RetryableError("429", retry_after=120))
    pipeline = Pipeline(writer, batch_size=10, flush_interval=1, monotonic=lambda: now[0])
    pipeline.submit(["a"])
    pipeline._drain_all()
    assert pipeline.flush() is False
    now[0] += 119
    assert pipeline.flush() is False
    assert len(writer.batches) == 1  # not retried before Retry-After passed
    now[0] += 2
    assert pipeline.flush() is True
    assert len(writer.batches) == 2


@pytest.mark.parametrize("batch", [1, 7])
def test_too_large_splits_the_batch(batch: int) -> None:
    from pitelemetry.writer import TooLargeError  # noqa: PLC0415

    class LimitWriter(FakeWriter):
        def write(self, lines: list[str]) -> None:
            if len(lines) > 2:
                raise TooLargeError("413")
            self.batches.append(lines)

    writer = LimitWriter()
    pipeline = Pipeline(writer, batch_size=batch, flush_interval=60)
    pipeline.submit([str(i) for i in range(7)])
    pipeline.stop(1)
    assert [line for b in writer.batches for line in b] == [str(i) for i in range(7)]
    assert pipeline.stats.written == 7
