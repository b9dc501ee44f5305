from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pitelemetry.clock import ClockMark
from pitelemetry.spool import DiskSpool, FallbackSpool, MemorySpool, open_spool


def drain(spool: DiskSpool | MemorySpool) -> list[list[str]]:
    out = []
    while (record := spool.head()) is not None:
        out.append(record.lines)
        spool.ack()
    return out


def test_round_trip_oldest_first_with_clock_marks(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000_000)
    mark = ClockMark("0f4c6a2e-43f5-4b5e-9c3d-2a8b6f1e7d90", -123)
    spool.append(["a 1", "b 2"])
    spool.append(["c 3"], mark)
    assert (spool.lines, spool.head().lines) == (3, ["a 1", "b 2"])  # type: ignore[union-attr]
    spool.ack()
    record = spool.head()
    assert record is not None
    assert (record.lines, record.mark) == (["c 3"], mark)
    spool.ack()
    assert spool.head() is None
    assert spool.lines == 0
    assert list(tmp_path.glob("*.seg")) == []  # consumed segments are deleted
    spool.close()


def test_records_survive_a_restart(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000_000, segment_bytes=100)
    for i in range(10):
        spool.append([f"m v={i} {i}"])
    spool.head()
    spool.ack()
    spool.close()
    reopened = DiskSpool(tmp_path, 10_000_000, segment_bytes=100)
    # Whole segments are deleted when consumed; a half-read one is replayed whole,
    # which InfluxDB absorbs (same series and time = the same point).
    assert [r[0] for r in drain(reopened)][-9:] == [f"m v={i} {i}" for i in range(1, 10)]


def test_appending_after_a_restart_continues_the_newest_segment(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, 10_000_000)
    spool.append(["before 1"])
    spool.close()
    reopened = DiskSpool(tmp_path, 10_000_000)
    reopened.append(["after 2"])
    reopened.close()
    assert drain(DiskSpool(tmp_path, 10_000_000)) == [["before 1"], ["after 2"]]


def test_torn_tail_after_power_loss_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = DiskSpool(tmp_path, 10_000_000)
    for i in range(3):
        spool.append([f"line {i}"])
    spool.close()
    [segment] = tmp_path.glob("*.seg")
    segment.write_bytes(segment.read_bytes()[:-5])
    reopened = DiskSpool(tmp_path, 10_000_000)
    assert drain(reopened) == [["line 0"], ["line 1"]]
    assert "torn record" in caplog.text
    reopened.append(["line 3"])  # appending after the cut works
    assert drain(reopened) == [["line 3"]]


def test_a_corrupt_segment_is_moved_aside_and_the_rest_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = DiskSpool(tmp_path, 10_000_000, segment_bytes=50)
    for i in range(4):
        spool.append([f"record number {i}"])
    spool.close()
    first = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit inside the payload
    first.write_bytes(bytes(data))
    reopened = DiskSpool(tmp_path, 10_000_000, segment_bytes=50)
    assert drain(reopened) == [["record number 1"], ["record number 2"], ["record number 3"]]
    assert len(list((tmp_path / "corrupt").iterdir())) == 1
    assert "checksum mismatch" in caplog.text


def test_garbage_in_the_spool_directory_does_not_stop_start(tmp_path: Path) -> None:
    (tmp_path / "000000000001.seg").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "000000000002.seg").write_bytes(b"")
    spool = DiskSpool(tmp_path, 10_000_000)
    assert spool.head() is None
    spool.append(["fresh 1"])
    assert drain(spool) == [["fresh 1"]]


def test_the_cap_drops_the_oldest_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = DiskSpool(tmp_path, max_bytes=2000, segment_bytes=300)
    for i in range(100):
        spool.append([f"m,host=pi value={i}i {1_700_000_000_000_000_000 + i}"])
    assert spool.bytes <= 2000
    assert spool.dropped > 0
    assert spool.dropped + spool.lines == 100
    remaining = drain(spool)
    assert remaining[-1] == [f"m,host=pi value=99i {1_700_000_000_000_000_099}"]
    assert "dropped the oldest" in caplog.text


def test_memory_spool_is_bounded_alike() -> None:
    spool = MemorySpool(max_bytes=30)
    for i in range(10):
        spool.append([f"line {i}"])
    assert spool.dropped + spool.lines == 10
    assert spool.bytes <= 30
    assert drain(spool)[-1] == ["line 9"]


def test_an_unusable_directory_falls_back_to_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spool = open_spool(blocker / "spool", 1000)
    assert isinstance(spool, MemorySpool)
    assert "kept in memory only" in caplog.text


WRITER = """
import sys
from pathlib import Path
from pitelemetry.spool import DiskSpool
spool = DiskSpool(Path(sys.argv[1]), 10**9, segment_bytes=4096)
for i in range(10**6):
    spool.append([f"m,host=pi v={i}i {i}", f"n v={i} {i}"])
    print(i, flush=True)
"""


@pytest.mark.slow
def test_kill_9_never_loses_what_was_handed_over(tmp_path: Path) -> None:
    for attempt in range(5):
        directory = tmp_path / str(attempt)
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE, text=True
        )
        time.sleep(0.3 + attempt * 0.17)
        process.send_signal(signal.SIGKILL)
        acknowledged = process.communicate()[0].split()
        assert acknowledged, "the writer never got going"
        last = int(acknowledged[-1])
        records = drain(DiskSpool(directory, 10**9, segment_bytes=4096))
        assert len(records) >= last + 1
        assert records[: last + 1] == [
            [f"m,host=pi v={i}i {i}", f"n v={i} {i}"] for i in range(last + 1)
        ]


def test_the_cap_holds_with_the_default_segment_size(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_bytes=4096)
    record = [f"cpu,host=pi usage_pct={i}.5 {1_795_300_000_000_000_000 + i}" for i in range(5)]
    largest = 0
    for i in range(300):
        spool.append([line.replace("usage_pct=", f"usage_pct={i}") for line in record])
        largest = max(largest, spool.bytes)
    assert spool.dropped > 0
    assert largest <= 4096 + 512  # the cap, and at most the newest segment over it
    spool.close()


def test_a_symlink_planted_in_the_spool_is_never_read_cut_or_appended_to(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    directory = tmp_path / "spool"
    directory.mkdir()
    (directory / "000000000001.seg").symlink_to(victim)  # there at start: moved aside
    spool = FallbackSpool(DiskSpool(directory, 10**6), 10**6)
    assert list((directory / "corrupt").iterdir())
    (directory / "000000000001.seg").symlink_to(victim)  # planted as the next segment
    spool.append(["m v=1 1"])  # refused by the disk, kept in memory
    assert victim.read_bytes() == b"precious"
    assert "cannot write" in spool.degraded
    assert spool.lines == 1
