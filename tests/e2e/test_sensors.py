"""``pitelemetry run`` with the home-sensor inputs on fixture sysfs trees and gpiozero's
mock pins, writing into the real InfluxDB."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, sensor_env, sensor_sys_tree, write_config
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
    config = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=INPUTS
    )
    daemon = Daemon(config, sensor_env(sensor_sys_tree(tmp_path))).start()
    time.sleep(4)
    assert daemon.stop() == 0, daemon.stderr
    stderr = daemon.stderr

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
