"""Memory and CPU of ``pitelemetry run`` with the system input at 1 s on the 1.x path,
and the start-up time of ``pitelemetry --help``, each beside a baseline from this run.

    python -m bench.footprint [--seconds 60]

Targets: peak RSS <= 30 MB, ``--help`` <= 150 ms.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import daemon as daemon_process
from tests.servers import InfluxDB1

TICKS = os.sysconf("SC_CLK_TCK")


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def wall_ms(command: list[str], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def daemon(server: InfluxDB1, workdir: Path, seconds: float) -> tuple[int, int, float, int]:
    server.create_database("footprint")
    agent, inputs = daemon_process.SYSTEM_EVERY_SECOND
    process = daemon_process.start(workdir, server.url, "footprint", agent=agent, inputs=inputs)
    time.sleep(3)  # imports done, first collections written
    cpu_before, started = cpu_seconds(process.pid), time.monotonic()
    time.sleep(seconds)
    cpu = cpu_seconds(process.pid) - cpu_before
    elapsed = time.monotonic() - started
    peak, rss = status_kb(process.pid, "VmHWM"), status_kb(process.pid, "VmRSS")
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    rows = server.rows("SELECT count(load1) FROM system", "footprint")
    written = int(rows[0]["count"]) if rows else 0
    return peak, rss, cpu * 1000 / elapsed, written  # elapsed s = cycles at 1 s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDB1(Path(tmp) / "influxdb")
        server.start()
        try:
            peak, rss, cpu_ms, written = daemon(server, Path(tmp), args.seconds)
        finally:
            server.stop()
    bare = subprocess.run(
        [
            sys.executable,
            "-c",
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    python_ms = wall_ms([sys.executable, "-c", "pass"])
    help_ms = wall_ms([sys.executable, "-m", "pitelemetry", "--help"])
    print(f"pitelemetry run, system input at 1 s for {args.seconds:g} s ({written} cycles written)")
    print(
        f"  peak RSS        {peak / 1024:6.1f} MB   (target <= 30; bare CPython "
        f"{int(bare.stdout) / 1024:.1f} MB)"
    )
    print(f"  RSS at the end  {rss / 1024:6.1f} MB")
    print(f"  CPU per cycle   {cpu_ms:6.1f} ms")
    print(
        f"pitelemetry --help {help_ms:6.0f} ms    (target <= 150; bare `python -c pass` "
        f"{python_ms:.0f} ms)"
    )


if __name__ == "__main__":
    main()
