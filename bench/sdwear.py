"""Bytes ``pitelemetry run`` writes to disk with a healthy InfluxDB: SD cards wear out.

60 s of the system input at 1 s on the 1.x path; the daemon's own ``write_bytes`` from
``/proc/<pid>/io`` (bytes sent to the block layer, so tmpfs writes such as the state
file in ``/run`` do not count), measured after a warm-up. Target: 0. For scale, the same
run with InfluxDB stopped, when every batch goes to the spool.

    python -m bench.sdwear [--seconds 60]
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from bench import daemon
from tests.servers import InfluxDB1

WARM_UP_S = 3.0


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise KeyError("write_bytes")


def measure(url: str, workdir: Path, seconds: float) -> int:
    """Bytes the daemon wrote to disk after the warm-up."""
    workdir.mkdir(parents=True, exist_ok=True)
    runtime = Path("/dev/shm") if Path("/dev/shm").is_dir() else workdir
    agent, inputs = daemon.SYSTEM_EVERY_SECOND
    runtime_dir = Path(tempfile.mkdtemp(dir=runtime))
    process = daemon.start(
        workdir, url, "sdwear", agent=agent, inputs=inputs, runtime_dir=runtime_dir
    )
    time.sleep(WARM_UP_S)
    before = write_bytes(process.pid)
    time.sleep(seconds)
    written = write_bytes(process.pid) - before
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDB1(Path(tmp) / "influxdb")
        server.start()
        try:
            server.create_database("sdwear")
            healthy = measure(server.url, Path(tmp) / "healthy", args.seconds)
            points = server.rows("SELECT count(load1) FROM system", "sdwear")
        finally:
            server.stop()
        outage = measure(server.url, Path(tmp) / "down", args.seconds)
    cycles = points[0]["count"] if points else 0
    print(
        f"pitelemetry run, system input at 1 s, {args.seconds:g} s after a {WARM_UP_S:g} s warm-up"
    )
    print(
        f"  InfluxDB healthy: {healthy:>9} bytes written to disk   (target 0; "
        f"{cycles} collections written to InfluxDB)"
    )
    print(f"  InfluxDB down:    {outage:>9} bytes written to disk   (the spool at work)")


if __name__ == "__main__":
    main()
