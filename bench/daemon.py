"""``pitelemetry run`` as a child process for the benchmarks: a config of the given
agent and input tables, writing to ``url``/``database``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SYSTEM_EVERY_SECOND = ('interval = "1s"\nflush_interval = "1s"', "[[inputs.system]]")


def start(
    workdir: Path,
    url: str,
    database: str,
    *,
    agent: str,
    inputs: str,
    runtime_dir: Path | None = None,
) -> subprocess.Popen[bytes]:
    config = workdir / "pitelemetry.toml"
    config.write_text(f"""
[agent]
{agent}
state_dir = "{workdir}/state"
runtime_dir = "{runtime_dir or workdir / "run"}"
[influxdb]
url = "{url}"
database = "{database}"
{inputs}
""")
    return subprocess.Popen(
        [sys.executable, "-m", "pitelemetry", "run", "--config", str(config)],
        stderr=subprocess.DEVNULL,
    )
