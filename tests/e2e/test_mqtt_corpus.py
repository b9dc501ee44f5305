"""The device-message corpus through a real Mosquitto, the daemon and the real InfluxDB:
every reading stored, as the type it has, on a series that names the device; nothing
from command, bridge or availability topics; no write refused for a field type. And
random mixes of numbers, words and text on one topic never make InfluxDB refuse one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitelemetry.inputs.mqtt import MQTTInput, MQTTOptions, Rule
from pitelemetry.point import LineEncoder
from pitelemetry.writer import V1Writer
from tests.e2e.daemon import Daemon, write_config
from tests.e2e.test_mqtt import publisher, subscribed
from tests.inputs.test_mqtt_corpus import CORPUS, payload_bytes
from tests.servers import InfluxDB1, Mosquitto

pytestmark = pytest.mark.e2e


def literal(value: str) -> str:
    """An InfluxQL string literal (the corpus' tag values hold no quotes or backslashes)."""
    assert "'" not in value
    assert "\\" not in value
    return f"'{value}'"


def stored(influxdb: InfluxDB1, database: str, point: dict[str, Any]) -> dict[str, Any]:
    where = " AND ".join(f'"{k}" = {literal(v)}' for k, v in point["tags"].items())
    if "time_ns" in point:  # stamped by the device: that one point
        where += f" AND time = {point['time_ns']}"
    rows = influxdb.rows(f'SELECT * FROM "{point["measurement"]}" WHERE {where}', database)
    return rows[-1] if rows else {}


def test_the_corpus_is_stored_whole_and_nothing_else(
    tmp_path: Path, influxdb: InfluxDB1, database: str, mosquitto: Mosquitto
) -> None:
    inputs = "".join(
        f'[[inputs.mqtt]]\nbroker = "tcp://127.0.0.1:{mosquitto.port}"\npreset = "{p}"\n'
        for p in sorted({m["preset"] for m in CORPUS})
    )
    config = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=inputs
    )
    daemon = Daemon(config).start()
    client = publisher(mosquitto)
    expected = [p for m in CORPUS for p in m["points"]]
    try:
        subscribed(daemon)
        for message in CORPUS:  # in order: bridge/devices and units come first
            client.publish(
                message["topic"], payload_bytes(message), qos=1, retain=message.get("retain", False)
            ).wait_for_publish(10)
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while not all(stored(influxdb, database, p) for p in expected):
            assert time.monotonic() < deadline, "not every reading arrived"
            time.sleep(0.25)
        state = daemon.status()
    finally:
        client.loop_stop()
        daemon.stop()
    for point in expected:
        row = stored(influxdb, database, point)
        got = {k: row.get(k) for k in point["fields"]}
        assert got == point["fields"], point
    measurements = sorted({p["measurement"] for p in expected})
    series = {
        row["key"]
        for m in measurements
        for row in influxdb.rows(f'SHOW SERIES FROM "{m}"', database)
    }
    want = {
        ",".join(
            [
                p["measurement"],
                *sorted(
                    f"{k}={v}".replace(" ", "\\ ")
                    for k, v in {**p["tags"], "host": "e2e-pi"}.items()
                ),
            ]
        )
        for p in expected
    }
    assert series == want  # nothing from set, get, availability, bridge or events
    assert state["points"]["dropped"] == {}  # no write refused


STATES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"{f!r}"),
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["on", "off", "ON", "OFF", "true", "false", "open", "closed", "home"]),
    st.text(alphabet="abcdefgh _-", min_size=1, max_size=12),
    st.sampled_from(['{"v": 1}', '{"v": true}', '{"v": "ON"}', '{"v": "text"}', '"7.5"']),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(states=st.lists(STATES, min_size=2, max_size=12))
def test_any_mix_of_states_on_one_topic_is_never_refused(
    influxdb: InfluxDB1, states: list[str]
) -> None:
    database = "mixes"
    influxdb.create_database(database)
    writer = V1Writer(influxdb.url, database=database)
    encoder = LineEncoder({"host": "pi"})
    rule = Rule("sensors/{name}/state", "mqtt_mix")
    sources = [
        ("homeassistant/sensor/mixed/state", MQTTInput(MQTTOptions(preset="homeassistant"))),
        ("sensors/mixed/state", MQTTInput(MQTTOptions(rules=(rule,)))),
    ]
    try:
        stamp = time.time_ns()
        for topic, source in sources:
            lines = [
                encoder.encode(point, stamp + index)
                for index, state in enumerate(states)
                for point in source.points_for(topic, state.encode())
            ]
            if lines:
                writer.write(lines)  # raises RejectedError on a field type conflict
    finally:
        writer.close()
        influxdb.drop_database(database)
