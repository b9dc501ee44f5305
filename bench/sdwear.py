"""Bytes written to disk per day by the whole stack on a Pi: ``pitelemetry run`` plus
the InfluxDB it writes to (and the log lines both send to the journal), with Debian's
default InfluxDB config versus the drop-in install.sh adds
(``systemd/influxdb.service.d/50-pitelemetry.conf``, applied here as the same
``INFLUXDB_*`` environment). SD cards wear out; InfluxDB's own writes are most of it.

Each case runs the system input at its default 10 s for ``--seconds`` after a warm-up
and reads ``write_bytes`` (bytes sent to the block layer) of both processes from
``/proc/<pid>/io``; log lines are counted as the bytes the processes print (what
journald stores is that plus its own overhead). Figures are scaled to a day.

    python -m bench.sdwear [--seconds 120]

Prints ``stack ratio 0.NN`` (ours / Debian's default). Target: <= 0.4; pitelemetry's
own share with InfluxDB healthy: 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pitelemetry.values import parse_duration
from tests.servers import InfluxDB1

WARM_UP_S = 5.0
ROOT = Path(__file__).resolve().parent.parent
DROP_IN = ROOT / "systemd" / "influxdb.service.d" / "50-pitelemetry.conf"
DAY_S = 86400.0


def write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise KeyError("write_bytes")


def drop_in_environment() -> dict[str, str]:
    """The ``Environment=`` settings of the drop-in install.sh installs."""
    found = {}
    for line in DROP_IN.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            found[key] = value
    return found


class DebianInfluxDB(InfluxDB1):
    """influxd with Debian's shipped settings (``_internal``, HTTP and query logs on),
    only the paths and ports moved; ``environment`` as systemd would pass it."""

    def __init__(self, workdir: Path, environment: dict[str, str]) -> None:
        super().__init__(workdir)
        self.environment = environment
        # The test server's config without what it turns off: Debian's settings.
        shipped = self.config_path.read_text()
        for line in (
            "  query-log-enabled = false\n",
            "  log-enabled = false\n",
            '  run-interval = "1s"\n',
        ):
            shipped = shipped.replace(line, "")
        self.config_path.write_text(
            shipped.replace("store-enabled = false", "store-enabled = true")
        )

    def start(self, timeout: float = 30.0) -> None:
        saved = dict(os.environ)
        os.environ.update(self.environment)
        try:
            super().start(timeout)
        finally:
            os.environ.clear()
            os.environ.update(saved)


def run_case(
    workdir: Path, environment: dict[str, str], flush: str, seconds: float
) -> dict[str, float]:
    """One stack: bytes/day written by influxd, by pitelemetry, and logged by both."""
    server = DebianInfluxDB(workdir / "influxdb", environment)
    server.start()
    try:
        server.create_database("sdwear")
        config = workdir / "pitelemetry.toml"
        # The runtime directory is /run, a tmpfs, on a Pi: here too, or the state file
        # (rewritten every few seconds) would count as SD writes.
        runtime = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        config.write_text(f"""
[agent]
flush_interval = "{flush}"
state_dir = "{workdir}/state"
runtime_dir = "{runtime}"
[influxdb]
url = "{server.url}"
database = "sdwear"
[[inputs.system]]
""")
        log = workdir / "pitelemetry.log"
        with log.open("wb") as handle:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "pitelemetry", "run", "--config", str(config)],
                stderr=handle,
                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},  # as the unit has it
            )
        assert server.process is not None
        # Past the first write: what it imports and creates once is not a daily cost.
        time.sleep(WARM_UP_S + parse_duration(flush))
        before = (
            write_bytes(server.process.pid),
            write_bytes(daemon.pid),
            server.log_path.stat().st_size + log.stat().st_size,
        )
        started = time.monotonic()
        time.sleep(seconds)
        after = (
            write_bytes(server.process.pid),
            write_bytes(daemon.pid),
            server.log_path.stat().st_size + log.stat().st_size,
        )
        elapsed = time.monotonic() - started
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
    finally:
        server.stop()
    scale = DAY_S / elapsed
    influxd, ours, logged = ((a - b) * scale for a, b in zip(after, before, strict=True))
    return {"influxd": influxd, "pitelemetry": ours, "logs": logged}


def mb(value: float) -> str:
    return f"{value / 1e6:7.1f} MB/day"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120)
    args = parser.parse_args()
    ours_env = drop_in_environment()
    cases = {
        "Debian's InfluxDB, flush 5s": ({}, "5s"),  # the stack before the drop-in
        "with the drop-in, flush 5s": (ours_env, "5s"),  # a remote InfluxDB's default
        "with the drop-in, flush 30s": (ours_env, "30s"),  # the default, InfluxDB local
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, (name, (environment, flush)) in enumerate(cases.items()):
            results[name] = run_case(Path(tmp) / str(index), environment, flush, args.seconds)
    print(f"whole stack, system input every 10 s, {args.seconds:g} s per case, scaled to a day")
    for name, figures in results.items():
        total = sum(figures.values())
        parts = ", ".join(f"{k} {mb(v).strip()}" for k, v in figures.items())
        print(f"  {name:<30} {mb(total)}  ({parts})")
    default = sum(results["Debian's InfluxDB, flush 5s"].values())
    for name in list(cases)[1:]:
        ratio = sum(results[name].values()) / default if default else float("nan")
        print(f"{name}: ratio {ratio:.2f} to Debian's InfluxDB with flush 5s")
    ours = sum(results["with the drop-in, flush 30s"].values())
    print(f"stack ratio {ours / default:.2f} (pitelemetry's defaults / before; target <= 0.4)")


if __name__ == "__main__":
    main()
