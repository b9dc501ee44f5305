"""``pitelemetry backup`` and ``pitelemetry restore --verify-only`` of 1,000,000 points,
against InfluxDB's own ``influxd backup`` / ``influxd restore`` alone in the same run:
our overhead (counting, copying the config and state, checksums, the manifest) as a
ratio, and the peak RSS of our process.

    python -m bench.backup [--points 1000000] [--rounds 3]

Targets: ratio >= 0.8 (``influxd`` alone's time / ours) for each; RSS <= 60 MB.
Each is timed ``--rounds`` times, ours and the baseline in turn, and the medians are
compared. The first backup counts every field of every measurement; the later ones
count each measurement by the field the last backup found most written, as nightly
backups do: both are printed.
The restore baseline is what ``--verify-only`` does with ``influxd`` alone: start a
scratch ``influxd``, ``influxd restore``, wait until the points are queryable. The
package's bytecode is compiled first, as an installed package's is (pip compiles it):
otherwise a machine with ``PYTHONDONTWRITEBYTECODE`` set would time Python compiling
pitelemetry's sources on every run.
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pitelemetry
from pitelemetry.writer import V1Writer
from tests.servers import InfluxDB1

BATCH = 5000
T0 = 1_700_000_000_000_000_000


def fill(server: InfluxDB1, points: int) -> None:
    """Readings as noisy as a sensor's (regular data would compress to nothing): ten
    hosts' series, one point every 10 s each."""
    server.create_database("home")
    writer = V1Writer(server.url, database="home")
    noise = random.Random(1)
    for start in range(0, points, BATCH):
        writer.write(
            [
                f"system,host=pi{i % 10} load1={noise.gauss(0.5, 0.2):.4f},"
                f"temp_c={noise.gauss(48, 3):.3f},n={i}i {T0 + i * 10**9}"
                for i in range(start, min(points, start + BATCH))
            ]
        )
    writer.close()


# ``python -m pitelemetry`` that also prints its own peak RSS last, on stderr: wait4's
# figure for the child covers the influxd it runs too (``influxd backup`` alone peaks
# at about the size of the largest shard).
OWN_RSS = """
import resource, runpy, sys
sys.argv[0] = "pitelemetry"
try:
    runpy.run_module("pitelemetry", run_name="__main__", alter_sys=True)
finally:
    print("own-peak-rss-kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def run_pitelemetry(*args: str) -> list[str]:
    return [sys.executable, "-c", OWN_RSS, *args]


def timed(command: list[str]) -> tuple[float, int, int]:
    """Seconds; the peak RSS in kB of the child and what it ran (``wait4``'s resource
    usage); and, for :func:`run_pitelemetry` commands, that of pitelemetry's own process."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        said = errors.read().decode(errors="replace")
    if child.returncode != 0:
        raise RuntimeError(f"{command[-6:]} failed: {said[-2000:]!r}")
    own = [line.split()[1] for line in said.splitlines() if line.startswith("own-peak-rss-kb")]
    return elapsed, usage.ru_maxrss, int(own[-1]) if own else usage.ru_maxrss


def count(server: InfluxDB1) -> int:
    try:
        rows = server.rows("SELECT count(n) FROM system", "home")
    except ValueError:  # "shard is disabled" while a restored shard opens
        return 0
    return int(rows[0]["count"]) if rows else 0


def backup_ours(work: Path, config: Path) -> tuple[float, int, int]:
    return timed(
        run_pitelemetry("backup", "--to", f"{work}/ours", "--force", "--config", str(config))
    )


def restore_alone(work: Path, influxd: str, points: int, source: Path) -> float:
    """A scratch ``influxd``, ``influxd restore``, until every point is queryable."""
    scratch = InfluxDB1(work / f"scratch-{time.monotonic_ns()}")
    started = time.perf_counter()
    scratch.start()
    try:
        rpc = f"127.0.0.1:{scratch.rpc_port}"
        subprocess.run(
            [influxd, "restore", "-portable", "-host", rpc, "-db", "home", str(source)],
            capture_output=True,
            check=True,
        )
        while count(scratch) < points:
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        scratch.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    compileall.compile_dir(Path(pitelemetry.__file__).parent, quiet=1)
    influxd = shutil.which("influxd") or "influxd"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = InfluxDB1(work / "influxdb")
        server.start()
        alone: list[float] = []
        ours: list[float] = []
        ours_kb = tree_kb = 0
        try:
            fill(server, args.points)
            config = work / "pitelemetry.toml"
            config.write_text(f"""[agent]
state_dir = "{work}/state"
[influxdb]
url = "{server.url}"
database = "home"
[backup]
influxdb_rpc = "127.0.0.1:{server.rpc_port}"
[[inputs.system]]
""")
            rpc = f"127.0.0.1:{server.rpc_port}"
            (work / "ours").mkdir()
            for turn in range(args.rounds):
                target = f"{work}/alone-{turn}"
                command = [influxd, "backup", "-portable", "-host", rpc, "-db", "home", target]
                alone.append(timed(command)[0])
                seconds, with_influxd, kb = backup_ours(work, config)
                ours.append(seconds)
                ours_kb, tree_kb = max(ours_kb, kb), max(tree_kb, with_influxd)
                time.sleep(1.1)  # one backup per second: its name has the time in seconds
        finally:
            server.stop()
        made = sorted((work / "ours").iterdir())[-1]
        size = sum(p.stat().st_size for p in made.rglob("*") if p.is_file())
        startup = timed(run_pitelemetry("--version"))[0]
        restored_alone: list[float] = []
        restored_ours: list[float] = []
        restore_kb = 0
        for _ in range(args.rounds):
            restored_alone.append(restore_alone(work, influxd, args.points, work / "alone-0"))
            command = run_pitelemetry(
                "restore", "--verify-only", str(made), "--config", str(config)
            )
            seconds, _, kb = timed(command)
            restored_ours.append(seconds)
            restore_kb = max(restore_kb, kb)
    later = statistics.median(ours[1:]) if len(ours) > 1 else ours[0]
    base, again = statistics.median(alone), statistics.median(restored_alone)
    mine = statistics.median(restored_ours)
    print(f"{args.points:,} points; backup {size / 2**20:.1f} MiB; medians of {args.rounds}")
    print(
        f"backup:  influxd alone {base:6.2f} s, pitelemetry backup {later:6.2f} s  "
        f"ratio {base / later:.2f} (target >= 0.8); the first backup "
        f"(counting every field) {ours[0]:.2f} s, ratio {base / ours[0]:.2f}"
    )
    print(
        f"restore: influxd alone {again:6.2f} s, restore --verify-only "
        f"{mine:6.2f} s  ratio {again / mine:.2f} (target >= 0.8)"
    )
    print(
        f"our overhead: backup +{later - base:.2f} s, restore +{mine - again:.2f} s; "
        f"starting pitelemetry (--version) {startup:.2f} s"
    )
    print(
        f"peak RSS of pitelemetry's process: backup {ours_kb / 1024:.1f} MB, "
        f"restore {restore_kb / 1024:.1f} MB (target <= 60 MB); the influxd backup it "
        f"runs: {tree_kb / 1024:.1f} MB"
    )


if __name__ == "__main__":
    main()
