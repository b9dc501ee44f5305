"""Draining a backlog of 1,000,000 spooled points into a real InfluxDB 1.x, as a ratio
to the server's raw ``/write`` ceiling measured in the same run, and the daemon's memory
while its spool fills (an outage) and drains, against its idle value.

1. idle: the daemon runs against a healthy InfluxDB; its RSS peak is the baseline.
2. fill: InfluxDB stops for ``--outage`` seconds; the daemon spools; RSS is sampled.
3. the spool is topped up to ``--points`` with records as the daemon writes them
   (SPOOL_RECORD_LINES lines of diskio-like points each), as after a long outage.
4. drain: InfluxDB starts, a fresh daemon starts; time until the spool is empty.

    python -m bench.replay [--points 1000000] [--outage 20]

Targets: drain rate >= 0.5 of the ceiling; RSS peak within 2 MB of idle.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.throughput import ceiling
from pitelemetry.pipeline import SPOOL_RECORD_LINES
from pitelemetry.spool import DiskSpool
from tests.servers import InfluxDB1

RECORD = SPOOL_RECORD_LINES
T0 = 1_790_000_000_000_000_000


def kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


class Daemon:
    def __init__(self, config: Path, runtime: Path) -> None:
        self.runtime = runtime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pitelemetry", "run", "--config", str(config)],
            stderr=subprocess.DEVNULL,
        )

    def state(self) -> dict[str, object]:
        try:
            state: dict[str, object] = json.loads((self.runtime / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return state

    def spool_points(self) -> int:
        spool = self.state().get("spool")
        return int(spool["points"]) if isinstance(spool, dict) else -1

    def peak_kb(self) -> int:
        return kb(self.process.pid, "VmHWM")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)


def top_up(spool_dir: Path, points: int) -> int:
    """Add synthetic points until the spool holds ``points``; return how many added."""
    spool = DiskSpool(spool_dir, 10**10)
    added = max(0, points - spool.lines)
    print(f"the daemon spooled {spool.lines} points in the outage")
    for start in range(0, added, RECORD):
        spool.append(
            [
                f"diskio,host=pi,name=mmcblk0p{i % 50} reads={i}i,writes={i * 2}i,"
                f"read_bytes={i * 512}i,busy_pct={i / 7.0},temp_c=41.5 {T0 + i}"
                for i in range(start, min(added, start + RECORD))
            ]
        )
    spool.close()
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--outage", type=float, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = InfluxDB1(work / "influxdb")
        server.start()
        server.create_database("ceiling")
        raw = ceiling(server, "ceiling", 500_000)
        server.drop_database("ceiling")
        server.create_database("replay")
        config = work / "pitelemetry.toml"
        runtime = work / "run"
        config.write_text(f"""
[agent]
interval = "1s"
flush_interval = "1s"
state_dir = "{work}/state"
runtime_dir = "{runtime}"
spool_max_bytes = {4 * 1024**3}
[influxdb]
url = "{server.url}"
database = "replay"
[[inputs.system]]
""")
        daemon = Daemon(config, runtime)
        time.sleep(8)
        idle_kb = daemon.peak_kb()
        server.stop()
        time.sleep(args.outage)
        fill_kb = daemon.peak_kb()
        daemon.stop()
        added = top_up(work / "state" / "spool", args.points)
        backlog = args.points
        server.start()
        started = time.perf_counter()
        daemon = Daemon(config, runtime)
        while daemon.spool_points() != 0:
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        drain_kb = daemon.peak_kb()
        daemon.stop()
        rows = server.rows("SELECT count(reads) FROM diskio WHERE host = 'pi'", "replay")
        server.stop()
    landed = int(rows[0]["count"]) if rows else 0
    rate = backlog / elapsed
    print(
        f"backlog: {backlog:,} points ({added:,} added to what the daemon spooled in a "
        f"{args.outage:g} s outage, as after a long one); {landed:,} of the {added:,} landed"
    )
    print(f"ceiling (raw /write)   {raw:>10,.0f} points/s")
    print(
        f"drain (daemon start to empty spool) {rate:>10,.0f} points/s  ratio {rate / raw:.2f}"
        "  (target >= 0.5)"
    )
    print(
        f"RSS peak idle {idle_kb / 1024:.1f} MB, while filling {fill_kb / 1024:.1f} MB "
        f"(+{(fill_kb - idle_kb) / 1024:.1f}), while draining {drain_kb / 1024:.1f} MB "
        f"(+{(drain_kb - idle_kb) / 1024:.1f})  (target <= +2 MB)"
    )


if __name__ == "__main__":
    main()
