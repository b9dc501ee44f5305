"""Every dashboard query returns data: ``pitelemetry run`` writes real points from the
configured inputs into the real InfluxDB, then each panel's, variable's and annotation's
InfluxQL runs with ``$host``, ``$timeFilter`` and ``$__interval`` expanded as Grafana
would. A query that returns nothing is a broken panel."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pitelemetry import dashboards
from pitelemetry.config import load
from tests.e2e.daemon import Daemon, sensor_env, sensor_sys_tree, write_config
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
    sys_root = sensor_sys_tree(tmp_path, pi=True)  # a Pi's thermal zone and throttling too
    config_path = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=INPUTS
    )
    daemon = Daemon(config_path, sensor_env(sys_root)).start()
    time.sleep(6)
    assert daemon.stop() == 0, daemon.stderr

    config = load(config_path, environ={})
    boards = dashboards.generate(config)
    assert [b["title"] for b in boards] == ["Pi health", "Home", "pitelemetry"]
    empty = []
    checked = 0
    for board in boards:
        for where, query in all_queries(board):
            results = influxdb.query(expand(query, "e2e-pi"), database)
            checked += 1
            if not results[0].get("series"):
                empty.append(f"{where}: {query}")
    assert not empty, "queries without data:\n" + "\n".join(empty)
    assert checked >= 25


def all_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, query) for every InfluxQL query in a dashboard: panels, the host
    variable and annotations."""
    for panel in dashboard["panels"]:
        for query in panel["targets"]:
            yield f"{dashboard['title']} / {panel['title']}", query["query"]
    for variable in dashboard["templating"]["list"]:
        yield f"{dashboard['title']} / ${variable['name']}", variable["query"]["query"]
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation:
            yield f"{dashboard['title']} / {annotation['name']}", annotation["target"]["query"]
