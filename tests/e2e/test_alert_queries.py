"""Every alert rule's query, run as Grafana runs it (``$timeFilter`` from the rule's time
range) against the real influxd after the real daemon wrote a Pi's health and a
fixture DS18B20 named "freezer": each returns series, one per Pi (and sensor), and the
rule's reduce and threshold decide as they should on the fixture values."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from pitelemetry import alerting
from pitelemetry.config import load
from tests.e2e.daemon import Daemon, sensor_env, sensor_sys_tree, write_config
from tests.servers import InfluxDB1

pytestmark = pytest.mark.e2e

INPUTS = """
[[inputs.system]]
mount_points = ["/"]

[[inputs.ds18b20]]
names = { "28-0316a2794cff" = "freezer" }

[[inputs.pulse]]
pin = 17
name = "house"

[[inputs.mcp3008]]
channel = 0
name = "tomatoes"
field = "moisture_pct"

[[alerts.rules]]
name = "Freezer too warm"
measurement = "environment"
field = "temperature_c"
where = { name = "freezer" }
above = -15.0
for = "10m"

[[alerts.rules]]
name = "Freezer sensor silent"
measurement = "environment"
field = "temperature_c"
where = { name = "freezer" }
no_data_for = "30m"
"""

# Whether each rule fires on the fixtures: the freezer reads 25.187 °C, the Pi's
# throttle word has under-voltage now, the CPU is at 48 °C, every sensor is writing.
FIRING = {
    "rule-Freezer-too-warm": True,
    "rule-Freezer-sensor-silent": False,
    "pi_under_voltage": True,
    "pi_brownout": False,  # no event while it ran
    "cpu_temperature": False,
    "disk_full": False,
    "sensor_silent": False,
    "analog_sensor_silent": False,
    "meter_stuck": True,  # no pulse in the run: spread 0 over the day
    "host_silent": False,
    "spool_behind": False,
    "points_dropped": False,
}


def as_grafana_runs_it(query: dict[str, Any]) -> str:
    """The macros Grafana's InfluxQL backend expands in an alert query."""
    span = query["relativeTimeRange"]
    now = time.time_ns() // 10**6
    start, end = now - span["from"] * 1000, now - span["to"] * 1000
    text: str = query["model"]["query"]
    return text.replace("$timeFilter", f"time >= {start}ms and time <= {end}ms")


def fires(rule: dict[str, Any], series: list[dict[str, Any]]) -> bool:
    """Grafana's chain on the series: reduce B = last non-null, threshold C."""
    reduce, threshold = rule["data"][1]["model"], rule["data"][2]["model"]
    assert reduce["reducer"] == "last"
    assert reduce["settings"]["mode"] == "dropNN"
    (condition,) = threshold["conditions"]
    kind, (limit,) = condition["evaluator"]["type"], condition["evaluator"]["params"]
    firing = []
    for one in series:
        values = [v[1] for v in one["values"] if v[1] is not None and not math.isnan(v[1])]
        last = values[-1]
        firing.append(last > limit if kind == "gt" else last < limit)
    return any(firing)


def test_every_alert_query_finds_its_series(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    sys_root = sensor_sys_tree(tmp_path, pi=True)
    config_path = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=INPUTS
    )
    daemon = Daemon(config_path, sensor_env(sys_root)).start()
    time.sleep(6)
    assert daemon.stop() == 0, daemon.stderr

    config = load(config_path, environ={})
    rules = alerting.rules_of(config)
    assert {rule.name for rule, _ in rules} == set(FIRING)
    decided = {}
    for rule, receiver in rules:
        body = alerting.grafana_rule(rule, "ds", "folder", receiver)
        query = body["data"][0]
        [result] = influxdb.query(as_grafana_runs_it(query), database)
        series = result.get("series") or []
        assert series, f"{rule.name}: no series for {query['model']['query']}"
        for one in series:
            assert one["tags"]["host"] == "e2e-pi", rule.name  # one alert per Pi
            assert set(one["tags"]) == {"host", *rule.by}, rule.name
        decided[rule.name] = fires(body, series)
    assert decided == FIRING
