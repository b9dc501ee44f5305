"""Names from the config end up in InfluxQL that Grafana runs: random hostile names
(quotes, backslashes, newlines, tabs, statements of their own) go end to end into the
real ``influxd``: the dashboard's query parses, returns the reading, and nothing else
happens (the database next door is still there)."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pitelemetry.inputs.mcp3008 import MCP3008Options
from pitelemetry.point import LineEncoder, Point, clean_key, clean_name
from pitelemetry.writer import V1Writer
from tests.e2e.test_dashboard_queries import expand
from tests.servers import InfluxDB1

pytestmark = pytest.mark.e2e

INJECTION = 'moisture") FROM "environment"; DROP DATABASE "victim"; SELECT mean("raw'
hostile = st.one_of(
    st.text(min_size=1, max_size=30),
    st.text(alphabet="ab\"'\\;\n\t )(=,", min_size=1, max_size=30),
)
_numbers = itertools.count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(field=INJECTION, name="tomatoes")
@example(field="moisture_pct", name="x'; DROP DATABASE \"victim\"; SELECT '")
@example(field="trailing\\", name="tab\there\nnewline\\")
@given(field=hostile, name=hostile)
def test_a_hostile_name_is_one_identifier_in_the_dashboards_query(
    influxdb: InfluxDB1, field: str, name: str
) -> None:
    assume(clean_key(field) not in ("", "time"))
    assume(clean_name(name).strip())
    database = f"inject{next(_numbers)}"
    influxdb.create_database(database)
    influxdb.create_database("victim")
    try:
        writer = V1Writer(influxdb.url, database=database)
        try:
            point = Point("environment", {field: 1.5}, {"sensor": "mcp3008", "name": name})
            writer.write([LineEncoder({"host": "pi"}).encode(point, time.time_ns())])
        finally:
            writer.close()
        options = MCP3008Options(channel=0, field=field, name=name)
        [panel] = list(options.panels())
        query = expand(panel["targets"][0]["query"], "pi")
        rows = influxdb.rows(query, database)  # POST, as Grafana's data source sends it
        databases = {r["name"] for r in influxdb.rows("SHOW DATABASES", "")}
    finally:
        influxdb.drop_database(database)
    assert [row["mean"] for row in rows if row["mean"] is not None] == [1.5]
    assert "victim" in databases
