"""Every dashboard query returns data: ``pitelemetry run`` writes real points from the
configured inputs into the real InfluxDB, then each panel's, variable's and annotation's
InfluxQL runs with ``$host``, ``$timeFilter`` and ``$__interval`` expanded as Grafana
would. A query that returns nothing is a broken panel."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pitelemetry import dashboards
from pitelemetry.config import load
from tests.conftest import FIXTURES
from tests.e2e.daemon import write_config
from tests.servers import InfluxDB1

pytestmark = pytest.mark.e2e

INPUTS = """
[[inputs.system]]
mount_points = ["/"]

[[inputs.ds18b20]]
names = { "28-0316a2794cff" = "living_room", "28-00000a1b2c3d" = "garden" }

[[inputs.dht22]]
name = "bathroom"
reads = 1

[[inputs.pulse]]
pin = 17
name = "house"

[[inputs.pulse]]
pin = 18
name = "garden tap"
kind = "water"

[[inputs.contact]]
pin = 27
name = "front_door"

[[inputs.mcp3008]]
channel = 0
name = "tomatoes"
field = "moisture_pct"
"""


def expand(query: str, host: str) -> str:
    """What Grafana sends for ``$host`` = one host, the last hour, a 1 s interval."""
    return (
        query.replace("$host", re.escape(host))
        .replace("$timeFilter", "time > now() - 1h")
        .replace("$__interval", "1s")
    )


def test_every_dashboard_query_returns_data(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    sys_root = tmp_path / "sys"
    shutil.copytree(FIXTURES / "system" / "pi" / "sys", sys_root)  # a Pi's thermal, throttling
    shutil.copytree(FIXTURES / "w1", sys_root, dirs_exist_ok=True)
    shutil.copytree(FIXTURES / "iio", sys_root, dirs_exist_ok=True)
    config_path = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=INPUTS
    )
    env = {**os.environ, "HOST_SYS": str(sys_root), "GPIOZERO_PIN_FACTORY": "mock"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pitelemetry", "run", "--config", str(config_path)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(6)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr

    config = load(config_path, environ={})
    boards = dashboards.generate(config)
    assert [b["title"] for b in boards] == ["Pi health", "Home", "pitelemetry"]
    empty = []
    checked = 0
    for board in boards:
        for where, query in dashboards.all_queries(board):
            results = influxdb.query(expand(query, "e2e-pi"), database)
            checked += 1
            if not results[0].get("series"):
                empty.append(f"{where}: {query}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert checked >= 25
