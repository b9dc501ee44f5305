"""MQTT faults, against a real Mosquitto (at its default limits and generous ones), the
real daemon and the real InfluxDB: a burst at the broker's default window, poison
messages, a broker that is never reached, retained messages at every restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pitelemetry.inputs import InputError
from pitelemetry.inputs.mqtt import MQTTInput, MQTTOptions, Rule
from pitelemetry.point import Point
from tests.e2e.daemon import Daemon, write_config
from tests.e2e.test_mqtt import (
    burst,
    burst_config,
    count,
    publish_all,
    publisher,
    subscribed,
    tls_input,
    wait_count,
)
from tests.servers import InfluxDB1, Mosquitto, free_port

pytestmark = pytest.mark.e2e


def mqtt_state(daemon: Daemon) -> dict[str, object]:
    (item,) = [i for i in daemon.status()["inputs"] if i["name"] == "mqtt"]
    return dict(item)


@pytest.mark.slow
def test_a_2000_message_burst_at_the_brokers_default_window_loses_nothing(
    tmp_path: Path, influxdb: InfluxDB1, database: str, mosquitto: Mosquitto
) -> None:
    """What a Home Assistant statestream start or a Zigbee2MQTT restart sends: with
    Mosquitto's defaults (20 in flight, 1,000 queued per client) acknowledgements that
    lag behind the burst make the broker drop messages it already acknowledged to the
    publisher."""
    config = burst_config(tmp_path, influxdb, database, mosquitto)
    daemon = Daemon(config).start()
    client = publisher(mosquitto)
    try:
        subscribed(daemon)
        publish_all(client, burst(1_795_300_000_000_000_000, 2000))
        got = wait_count(influxdb, database, "SELECT count(seq) FROM mqtt_burst", 2000, 60)
        time.sleep(2)  # the test broker publishes its $SYS counters every second
        state = mqtt_state(daemon)
    finally:
        client.loop_stop()
        daemon.stop()
    assert got == 2000
    assert "DROPPED" not in str(state["state"])
    assert str(state["state"]).startswith("connected to ")


def test_poison_messages_cost_only_themselves(
    tmp_path: Path, influxdb: InfluxDB1, database: str, mosquitto: Mosquitto
) -> None:
    """JSON nested 1,000 deep (RecursionError), a 400-digit integer and -1e400 as the
    timestamp (OverflowError): each is counted as invalid and acknowledged, and the next
    message is stored; at QoS 1 nothing is redelivered after a restart to kill it again."""
    config = burst_config(tmp_path, influxdb, database, mosquitto)
    poison = [
        ("burst/deep", b"[" * 1000 + b"]" * 1000),
        ("burst/deep", ('{"a":' * 1000 + "1" + "}" * 1000).encode()),
        ("burst/big", json.dumps({"seq": 1, "ts": int("9" * 400)}).encode()),
        ("burst/big", b'{"seq": 1, "ts": -1e400}'),
        ("burst/big", b'{"seq": 1, "ts": 1e400}'),
    ]
    daemon = Daemon(config).start()
    client = publisher(mosquitto)
    try:
        subscribed(daemon)
        publish_all(client, poison)
        publish_all(client, burst(1_795_400_000_000_000_000, 3))
        got = wait_count(influxdb, database, "SELECT count(seq) FROM mqtt_burst", 3, 30)
        assert daemon.stop() == 0
        first_log = daemon.stderr
        daemon = Daemon(config).start()  # nothing unacknowledged comes back to kill it
        subscribed(daemon)
        publish_all(client, burst(1_795_400_000_000_000_100, 2, source="after"))
        after = wait_count(
            influxdb, database, "SELECT count(seq) FROM mqtt_burst WHERE source = 'after'", 2
        )
    finally:
        client.loop_stop()
        daemon.stop()
    assert (got, after) == (3, 2)
    assert "Traceback" not in first_log + daemon.stderr
    assert "'burst/deep': cannot use the payload: RecursionError" in first_log
    assert "'burst/big': cannot use the payload: OverflowError" in first_log


def test_a_broker_that_is_never_reached_fails_check_and_shows_in_status(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    port = free_port()  # nothing listens there
    inputs = f'[[inputs.mqtt]]\nbroker = "tcp://127.0.0.1:{port}"\npreset = "tasmota"\n'
    config = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=inputs
    )
    daemon = Daemon(config)
    checked = daemon.command("check")
    assert checked.returncode == 1
    assert f"FAIL mqtt broker tcp://127.0.0.1:{port}: cannot connect: connection refused" in (
        checked.stdout
    )
    daemon.start()
    try:
        state = daemon.wait_for(
            lambda s: any("not connected since" in i["last_error"] for i in s["inputs"]), 30
        )
        shown = daemon.command("status").stdout
    finally:
        daemon.stop()
    (mqtt,) = [i for i in state["inputs"] if i["name"] == "mqtt"]
    assert "connection refused" in mqtt["last_error"]
    assert mqtt["state"].startswith("NOT CONNECTED since")
    assert "NOT CONNECTED since" in shown
    # Said once in the log, not at every retry.
    assert daemon.stderr.count("cannot connect: connection refused") == 1


def test_a_refused_login_fails_check(
    tmp_path: Path, influxdb: InfluxDB1, database: str, mosquitto: Mosquitto
) -> None:
    inputs = tls_input(mosquitto, tmp_path, "wrong") + 'preset = "tasmota"\n'
    broker = inputs.split('broker = "')[1].split('"')[0]
    config = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=inputs
    )
    checked = Daemon(config).command("check")
    assert checked.returncode == 1
    assert f"FAIL mqtt broker {broker}: refused: Not authorized" in checked.stdout


def test_retained_messages_are_stored_once_across_restarts(
    tmp_path: Path, influxdb: InfluxDB1, database: str, mosquitto: Mosquitto
) -> None:
    inputs = f'[[inputs.mqtt]]\nbroker = "tcp://127.0.0.1:{mosquitto.port}"\npreset = "tasmota"\n'
    config = write_config(
        tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"', inputs=inputs
    )
    client = publisher(mosquitto)
    client.publish("tele/plug/STATE", b'{"Wifi":{"RSSI":70}}', qos=1, retain=True).wait_for_publish(
        10
    )
    query = 'SELECT count("Wifi_RSSI_pct") FROM mqtt_tasmota_state'
    try:
        for _ in range(3):
            daemon = Daemon(config).start()
            try:
                subscribed(daemon)
                assert wait_count(influxdb, database, query, 1, 30) >= 1
                time.sleep(1.5)  # a repeat would be written within a second
            finally:
                daemon.stop()
        stored = count(influxdb, database, query)
        # A changed retained value is a new reading.
        client.publish(
            "tele/plug/STATE", b'{"Wifi":{"RSSI":64}}', qos=1, retain=True
        ).wait_for_publish(10)
        daemon = Daemon(config).start()
        try:
            subscribed(daemon)
            changed = wait_count(influxdb, database, query, 2, 30)
        finally:
            daemon.stop()
    finally:
        client.loop_stop()
    assert (stored, changed) == (1, 2)


def test_check_fails_when_the_broker_reports_dropped_messages(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    """A client whose persistent session is offline, a broker that queues 5 messages
    for it: the rest of a burst is dropped, and ``$SYS`` says so."""
    broker = Mosquitto(tmp_path / "mosquitto", limits="small")
    broker.start()
    try:
        away = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="away",
            clean_session=False,
        )
        away.connect("127.0.0.1", broker.port)
        away.loop_start()
        away.subscribe("burst/#", qos=1)
        time.sleep(0.5)
        away.disconnect()
        away.loop_stop()
        client = publisher(broker)
        publish_all(client, burst(1_795_500_000_000_000_000, 50))
        client.loop_stop()
        time.sleep(2)  # $SYS every second
        config = burst_config(tmp_path, influxdb, database, broker)
        checked = Daemon(config).command("check")
    finally:
        broker.stop()
    assert checked.returncode == 1
    assert "the broker has dropped 45 messages since it started" in checked.stdout


def connected_input(
    mosquitto: Mosquitto, rule: Rule, client_id: str
) -> tuple[MQTTInput, list[Point]]:
    """An MQTT input of this process on ``mosquitto``, connected; the points it emits
    land in the list (and count as safe at once)."""
    got: list[Point] = []
    source = MQTTInput(
        MQTTOptions(broker=f"tcp://127.0.0.1:{mosquitto.port}", rules=(rule,)),
        client_id=client_id,
    )

    def emit(points: list[Point], on_durable: object = None, **_: object) -> None:
        got.extend(points)
        if callable(on_durable):
            on_durable()

    source.start(emit)
    deadline = time.monotonic() + 10
    while not source.connected:
        assert time.monotonic() < deadline, "the input never connected"
        time.sleep(0.05)
    return source, got


def test_a_dead_network_thread_is_restarted_and_reported_once(mosquitto: Mosquitto) -> None:
    source, got = connected_input(mosquitto, Rule("burst/{source}", "mqtt_burst"), "thread-test")
    client = publisher(mosquitto)
    try:
        deadline = time.monotonic() + 10
        flush = source._client.after_read
        calls = []

        def fails_once() -> None:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("a bug after a read")
            flush()

        source._client.after_read = fails_once
        publish_all(client, [("burst/a", b'{"seq": 1}')])
        while not source._client.thread_error:
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
        with pytest.raises(InputError, match=r"network thread died \(RuntimeError: a bug"):
            list(source.collect())
        (counters,) = source.collect()  # reported once
        assert counters.fields["thread_restarts"] == 1
        publish_all(client, [("burst/b", b'{"seq": 2}')])
        while len(got) < 2:
            assert time.monotonic() < deadline + 20
            time.sleep(0.05)
    finally:
        client.loop_stop()
        source.close()
    assert sorted(p.tags["source"] for p in got) == ["a", "b"]


PUBLISH_BIG = """
import sys
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="big-publisher")
client.connect("127.0.0.1", int(sys.argv[1]))
client.loop_start()
client.publish("big/a", b"x" * 50_000_000, qos=1).wait_for_publish(60)
client.publish("big/b", b'{"v": 1}', qos=1).wait_for_publish(60)
client.disconnect()
client.loop_stop()
"""


def peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to the current RSS


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_an_oversized_message_is_never_held_in_memory(mosquitto: Mosquitto) -> None:
    """A 50 MB payload (max_payload_bytes is 64 KiB): cut while it is read, refused as
    too large, acknowledged; the next message is stored."""
    source, got = connected_input(mosquitto, Rule("big/{name}", "mqtt_big"), "big-test")
    try:
        deadline = time.monotonic() + 10
        peak_rss_reset()
        before = peak_rss()
        subprocess.run(
            [sys.executable, "-c", PUBLISH_BIG, str(mosquitto.port)], check=True, timeout=120
        )
        while not got:
            assert time.monotonic() < deadline + 60, "the next message never came"
            time.sleep(0.05)
        grew = peak_rss() - before
    finally:
        source.close()
    assert [p.tags["name"] for p in got] == ["b"]
    assert source.too_large == 1
    assert grew < 10_000_000, f"peak RSS grew by {grew} bytes"
