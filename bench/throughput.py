"""Points per second from an input to acknowledged by a real InfluxDB 1.x, as a ratio to
the server's own ceiling measured in the same run.

Ceiling: pre-encoded line protocol in batches of 5,000 posted straight to ``/write``.
pitelemetry: a synthetic input yields points shaped like the system input's (three tags,
five fields, floats and integers); the collector encodes them, the pipeline batches them
and the v1 writer posts them, gzip on (the default) and off.

    python -m bench.throughput [--points 500000]
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pitelemetry.agent import tune_threads
from pitelemetry.clock import Clock
from pitelemetry.collector import Collector, RunningInput
from pitelemetry.config import InputConfig
from pitelemetry.inputs import Input
from pitelemetry.pipeline import Pipeline
from pitelemetry.point import LineEncoder, Point
from pitelemetry.spool import MemorySpool
from pitelemetry.writer import V1Writer
from tests.servers import InfluxDB1

BATCH = 5000
T0 = 1_790_000_000_000_000_000


class Synthetic(Input):
    """``points`` points per collection over 50 series, a distinct stamp each."""

    def __init__(self, points: int, offset: int) -> None:
        self.points = points
        self.offset = offset

    def collect(self) -> Iterator[Point]:
        base = T0 + self.offset
        for i in range(self.points):
            yield Point(
                "diskio",
                {
                    "reads": i,
                    "writes": i * 2,
                    "read_bytes": i * 512,
                    "busy_pct": i / 7.0,
                    "temp_c": 41.5,
                },
                {"name": f"mmcblk0p{i % 50}", "model": "SD card"},
                base + i,
            )


def ceiling(server: InfluxDB1, database: str, total: int) -> float:
    lines = [
        f"diskio,host=pi,model=SD\\ card,name=mmcblk0p{i % 50} reads={i}i,writes={i * 2}i,"
        f"read_bytes={i * 512}i,busy_pct={i / 7.0},temp_c=41.5 {T0 + i}"
        for i in range(total)
    ]
    bodies = [("\n".join(lines[i : i + BATCH]) + "\n").encode() for i in range(0, total, BATCH)]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    started = time.perf_counter()
    for body in bodies:
        conn.request("POST", f"/write?db={database}&precision=ns", body)
        response = conn.getresponse()
        response.read()
        assert response.status == 204, response.status
    elapsed = time.perf_counter() - started
    conn.close()
    return total / elapsed


def through_pitelemetry(server: InfluxDB1, database: str, total: int, use_gzip: bool) -> float:
    writer = V1Writer(server.url, database=database, use_gzip=use_gzip)
    pipeline = Pipeline(writer, MemorySpool(10**9), Clock(), batch_size=BATCH, flush_interval=0.2)
    # One input, as a busy MQTT or backfill input would be: a single worker thread.
    inputs = [
        RunningInput(
            InputConfig("synthetic", 0, 3600.0, 3600.0, {}, None),
            Synthetic(total, 0),
            LineEncoder({"host": "pi"}),
        )
    ]
    collector = Collector(inputs, pipeline.submit)
    started = time.perf_counter()
    pipeline.start()
    collector.collect_once()
    while pipeline.stats.written < total:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    collector.stop()
    pipeline.stop(5)
    writer.close()
    assert pipeline.stats.written == total, pipeline.stats
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=500_000)
    args = parser.parse_args()
    total = args.points - args.points % BATCH
    tune_threads()  # as the daemon does
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDB1(Path(tmp))
        server.start()
        try:
            runs: dict[str, Callable[[str], float]] = {
                "ceiling (raw /write)": lambda db: ceiling(server, db, total),
                "pitelemetry, gzip": lambda db: through_pitelemetry(server, db, total, True),
                "pitelemetry, no gzip": lambda db: through_pitelemetry(server, db, total, False),
            }
            results: dict[str, float] = {}
            for number, (name, run) in enumerate(runs.items()):
                database = f"bench{number}"
                server.create_database(database)
                results[name] = run(database)
                server.drop_database(database)
        finally:
            server.stop()
    base = results["ceiling (raw /write)"]
    print(f"points: {total}, batch: {BATCH}")
    for name, rate in results.items():
        print(f"{name:<24} {rate:>10,.0f} points/s   ratio {rate / base:.2f}")


if __name__ == "__main__":
    main()
