"""``pitelemetry run`` with the home-sensor inputs on fixture sysfs trees and gpiozero's
mock pins, writing into the real InfluxDB."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.e2e.daemon import write_config
from tests.servers import InfluxDB1

pytestmark = pytest.mark.e2e

INPUTS = """
[[inputs.ds18b20]]
names = { "28-0316a2794cff" = "living_room", "28-00000a1b2c3d" = "garden" }

[[inputs.dht22]]
name = "bathroom"
reads = 1

[[inputs.pulse]]
pin = 17
name = "house"
pulses_per_unit = 1000.0
meter_start = 100.0

[[inputs.contact]]
pin = 27
name = "front_door"
"""


def test_sensor_readings_reach_influxdb(tmp_path: Path, influxdb: InfluxDB1, database: str) -> None:
    sys_root = tmp_path / "sys"
    shutil.copytree(FIXTURES / "w1", sys_root)
    shutil.copytree(FIXTURES / "iio", sys_root, dirs_exist_ok=True)
    config = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=INPUTS
    )
    env = {**os.environ, "HOST_SYS": str(sys_root), "GPIOZERO_PIN_FACTORY": "mock"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pitelemetry", "run", "--config", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(4)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr

    def values(query: str) -> dict[str, float]:
        return {r["name"]: r["v"] for r in influxdb.rows(query, database)}

    temperatures = values(
        "SELECT last(temperature_c) AS v FROM environment "
        "WHERE sensor = 'ds18b20' GROUP BY \"name\""
    )
    assert temperatures["living_room"] == 25.187
    assert temperatures["garden"] == -5.625
    assert "28-000008500000" not in temperatures  # the power-on value never lands
    humidity = values('SELECT last(humidity_pct) AS v FROM environment GROUP BY "name"')
    assert humidity == {"bathroom": 48.7}
    meter = values('SELECT last(energy_wh) AS v FROM meter GROUP BY "name"')
    assert meter == {"house": 100_000.0}
    door = influxdb.rows('SELECT last(state) AS v FROM gpio GROUP BY "name"', database)
    assert [(r["name"], r["v"]) for r in door] == [("front_door", True)]  # pulled up: open
    lost = influxdb.rows("SELECT title FROM events WHERE kind = 'sensor_lost'", database)
    assert len(lost) == 4  # 85 °C, CRC NO, empty read, all zeros: once each
    assert "28-00000bad0c0c: CRC check failed" in stderr
