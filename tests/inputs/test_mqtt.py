"""MQTT mapping: presets with sample messages, topic patterns, hostile input."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from pitelemetry.inputs.mqtt import (
    BROKER_DROPPED,
    BrokerDrops,
    CompiledRule,
    MQTTInput,
    MQTTOptions,
    Rule,
    parse_timestamp,
)
from pitelemetry.point import LineEncoder, Point

T0 = 1_795_300_000_000_000_000


def mqtt(preset: str = "", rules: tuple[Rule, ...] = (), **options: object) -> MQTTInput:
    return MQTTInput(
        MQTTOptions(preset=preset, rules=rules, **options),  # type: ignore[arg-type]
        client_id="test",
        time_ns=lambda: T0,
    )


def lines(source: MQTTInput, topic: str, payload: str | bytes) -> list[str]:
    data = payload.encode() if isinstance(payload, str) else payload
    encoder = LineEncoder({"host": "pi"})
    return [encoder.encode(p, T0) for p in source.points_for(topic, data)]


TASMOTA_SENSOR = json.dumps(
    {
        "Time": "2026-11-22T10:15:00",
        "ENERGY": {
            "TotalStartTime": "2026-01-01T00:00:00",
            "Total": 12.345,
            "Power": 42,
            "Voltage": 231,
            "Current": 0.182,
        },
        "AM2301": {"Temperature": 21.4, "Humidity": 48.1},
        "TempUnit": "C",
    }
)
TASMOTA_STATE = json.dumps(
    {
        "Time": "2026-11-22T10:15:00",
        "Uptime": "0T01:02:03",
        "UptimeSec": 3723,
        "POWER": "ON",
        "Wifi": {"RSSI": 76},
    }
)
ZIGBEE = json.dumps(
    {
        "battery": 97,
        "contact": False,
        "linkquality": 123,
        "temperature": 19.5,
        "voltage": 3000,
        "update": {"state": "idle"},
    }
)
SHELLY = json.dumps(
    {
        "id": 0,
        "source": "init",
        "output": True,
        "apower": 12.3,
        "voltage": 230.1,
        "aenergy": {"total": 1234.5, "by_minute": [1, 2, 3]},
        "temperature": {"tC": 45.2, "tF": 113.4},
    }
)


@pytest.mark.parametrize(
    ("preset", "topic", "payload", "expected"),
    [
        (
            "tasmota",
            "tele/plug-kitchen/SENSOR",
            TASMOTA_SENSOR,
            "mqtt_tasmota,device=plug-kitchen,host=pi AM2301_Humidity=48.1,AM2301_Temperature=21.4,"
            "ENERGY_Current_a=0.182,ENERGY_Power_w=42.0,ENERGY_Total_kwh=12.345,"
            "ENERGY_Voltage_v=231.0",
        ),
        (
            "tasmota",
            "tele/plug-kitchen/STATE",
            TASMOTA_STATE,
            "mqtt_tasmota_state,device=plug-kitchen,host=pi POWER=true,UptimeSec=3723.0,"
            "Wifi_RSSI_pct=76.0",
        ),
        (
            "zigbee2mqtt",
            "zigbee2mqtt/living room/door",
            ZIGBEE,
            "mqtt_zigbee2mqtt,device=living\\ room/door,host=pi battery=97.0,contact=false,"
            "linkquality=123.0,temperature=19.5,voltage=3000.0",
        ),
        (
            "shelly",
            "shellyplus1pm-a8032ab12345/status/switch:0",
            SHELLY,
            "mqtt_shelly,component=switch:0,device=shellyplus1pm-a8032ab12345,host=pi "
            "aenergy_total=1234.5,apower=12.3,output=true,temperature_tC=45.2,"
            "temperature_tF=113.4,voltage=230.1",
        ),
        (
            "homeassistant",
            "homeassistant/sensor/outdoor_temperature/state",
            "7.25",
            "mqtt_homeassistant,domain=sensor,entity=outdoor_temperature,host=pi value=7.25",
        ),
        (
            "homeassistant",
            "homeassistant/light/hall/state",
            "on",
            'mqtt_homeassistant,domain=light,entity=hall,host=pi state="on",value=1.0,is_on=true',
        ),
    ],
)
def test_presets_turn_sample_messages_into_points(
    preset: str, topic: str, payload: str, expected: str
) -> None:
    [line] = lines(mqtt(preset), topic, payload)
    series, fields, stamp = re.split(r"(?<!\\) ", line)
    want_series, want_fields = re.split(r"(?<!\\) ", expected)
    assert series == want_series
    assert sorted(fields.split(",")) == sorted(want_fields.split(","))
    assert stamp == str(T0)


def test_zigbee2mqtt_skips_the_bridge_and_commands_at_any_depth() -> None:
    source = mqtt("zigbee2mqtt")
    for topic in (
        "zigbee2mqtt/bridge/state",
        "zigbee2mqtt/bridge/response/device/rename",
        "zigbee2mqtt/lamp/set",
        "zigbee2mqtt/kitchen/floor_light/set",
        "zigbee2mqtt/kitchen/floor_light/set/brightness",
        "zigbee2mqtt/kitchen/floor_light/get",
        "zigbee2mqtt/kitchen/floor_light/availability",
    ):
        assert lines(source, topic, '{"state":"ON"}') == [], topic
    assert (source.invalid, source.unmatched) == (0, 0)  # not readings, not errors


def test_own_rules_allow_list_and_timestamp() -> None:
    rule = Rule(
        "sensors/{room}/climate",
        "mqtt_climate",
        tags={"site": "home"},
        fields=("temperature",),
        timestamp_field="ts",
    )
    source = mqtt(rules=(rule,))
    payload = json.dumps({"temperature": 20.5, "humidity": 40, "ts": 1795300000})
    assert lines(source, "sensors/attic/climate", payload) == [
        "mqtt_climate,host=pi,room=attic,site=home temperature=20.5 1795300000000000000"
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1795300000, 1795300000 * 10**9),
        (1795300000123, 1795300000123 * 10**6),
        ("2026-11-22T10:00:00Z", 1795341600 * 10**9),
        ("1795300000.5", 17953000005 * 10**8),
    ],
)
def test_timestamps_in_any_unit(raw: object, expected: int) -> None:
    assert parse_timestamp(raw) == expected


def test_plain_numbers_words_and_bad_payloads() -> None:
    source = mqtt(rules=(Rule("meter/+/power", "mqtt_meter"),))
    assert lines(source, "meter/a/power", " 1500 ") == [f"mqtt_meter,host=pi value=1500.0 {T0}"]
    # The field is a float: a word later is stored as its number, not refused by InfluxDB.
    assert lines(source, "meter/a/power", "OFF") == [f"mqtt_meter,host=pi value=0.0 {T0}"]
    assert lines(source, "meter/a/power", "not json {") == []
    assert lines(source, "meter/a/power", b"\xff\xfe\x00") == []  # not UTF-8
    assert lines(source, "meter/a/power", '{"note": "text only"}') == []
    assert source.invalid == 3


def test_oversized_payloads_are_refused_and_counted() -> None:
    source = mqtt("tasmota", max_payload_bytes=100)
    assert lines(source, "tele/x/SENSOR", json.dumps({"a": "x" * 200, "b": 1})) == []
    assert source.too_large == 1


HOSTILE_TOPICS = [
    "tele/evil device,host=forged x=1/SENSOR",
    'tele/quote"s and \\backslash\\/SENSOR',
    "tele/new\nline/SENSOR",
    "tele/tab\there=1 2/SENSOR",
    "tele/#comment/SENSOR",
]
HOSTILE_PAYLOADS = [
    json.dumps({"Power": 1, "evil key,host=x y=1": 2, "new\nline": 3}),
    json.dumps({"Power": 1, "note": "bye\nmeasurement,tag=1 field=2 3"}),
    json.dumps({"Power 1\n": 4, "x=y": 5, "time": 6}),
]


def test_hostile_topics_and_payloads_stay_inside_one_point() -> None:
    source = mqtt("tasmota")
    encoder = LineEncoder({"host": "pi"})
    for topic in HOSTILE_TOPICS:
        for payload in HOSTILE_PAYLOADS:
            points = source.points_for(topic, payload.encode())
            assert len(points) == 1
            [point] = points
            assert point.measurement == "mqtt_tasmota"
            assert set(point.tags) == {"device"}
            line = encoder.encode(point, T0)
            assert "\n" not in line


def test_a_rule_or_a_preset_is_required() -> None:
    assert ("rules", "set a preset or at least one [[inputs.mqtt.rules]]") in list(
        MQTTOptions().problems()
    )


@pytest.mark.parametrize(
    ("broker", "problem"),
    [
        ("ftp://127.0.0.1", "must start with tcp:// or mqtt:// or ssl:// or mqtts://"),
        ("tcp://broker..lan:1883", "is not a valid host name"),
        ("tcp://127.0.0.1:99999", "not a valid URL"),
        ("tcp://[::1", "not a valid URL"),
        ("tcp://:1883", "names no host"),
    ],
)
def test_a_bad_broker_url_is_a_config_problem(broker: str, problem: str) -> None:
    found = dict(MQTTOptions(broker=broker, preset="tasmota").problems())
    assert problem in found["broker"]


def test_a_burst_is_acknowledged_once_its_own_and_its_payload_stamped_points_are_safe() -> None:
    """Points with the payload's time go to the pipeline apart (they are not shifted if
    the Pi's clock is set later); the broker hears of the burst once both are safe."""
    source = mqtt(
        rules=(
            Rule("meter/{name}", "mqtt_meter", timestamp_field="ts"),
            Rule("room/{name}", "mqtt_room"),
        )
    )
    acked: list[list[tuple[int, int]]] = []
    emitted: list[tuple[list[str], bool, Callable[[], None]]] = []

    class Client:
        def ack_all(self, acks: list[tuple[int, int]]) -> None:
            acked.append(acks)

    def emit(
        points: list[Point],
        on_durable: Callable[[], None] | None = None,
        *,
        source_stamped: bool = False,
    ) -> None:
        assert on_durable is not None
        emitted.append(([p.measurement for p in points], source_stamped, on_durable))

    source._client = Client()
    source._emit = emit
    for mid, (topic, payload) in enumerate(
        [("meter/house", b'{"power": 5, "ts": 1795300000}'), ("room/attic", b"21.5")], 1
    ):
        source._on_message(
            None, None, SimpleNamespace(topic=topic, payload=payload, mid=mid, qos=1, retain=False)
        )
    source._flush()
    assert [(names, sourced) for names, sourced, _ in emitted] == [
        (["mqtt_room"], False),
        (["mqtt_meter"], True),
    ]
    emitted[0][2]()
    assert acked == []  # one of the two is safe: not yet
    emitted[1][2]()
    assert acked == [[(1, 1), (2, 1)]]


@pytest.mark.parametrize(
    ("pattern", "topic", "captured"),
    [
        ("tele/{device}/SENSOR", "tele/plug/SENSOR", {"device": "plug"}),
        ("tele/{device}/SENSOR", "tele/plug/STATE", None),
        ("tele/{device}/SENSOR", "tele/a/b/SENSOR", None),  # one level only
        ("zigbee2mqtt/{device}", "zigbee2mqtt/hall/door", {"device": "hall/door"}),  # the rest
        ("zigbee2mqtt/{device}", "zigbee2mqtt", None),
        ("sensors/#", "sensors", {}),  # "#" matches the parent level too
        ("sensors/#", "sensors/a/b", {}),
        ("sensors/+/t", "sensors//t", {}),  # an empty level is a level
        ("a.b/{x}", "aXb/1", None),  # literal, not a regular expression
        ("{x}/status/{y}", "s1/status/switch:0", {"x": "s1", "y": "switch:0"}),
    ],
)
def test_topic_patterns(pattern: str, topic: str, captured: dict[str, str] | None) -> None:
    assert CompiledRule(Rule(pattern, "m")).match(topic) == captured


def test_new_devices_beyond_max_series_are_dropped_counted_and_told_once() -> None:
    source = mqtt("zigbee2mqtt", max_series=5)
    stored = [
        line
        for number in range(10)
        for line in lines(source, f"zigbee2mqtt/device{number}", '{"temperature": 20}')
    ]
    assert len(stored) == 5
    assert lines(source, "zigbee2mqtt/device0", '{"temperature": 21}')  # known: kept
    assert source.series_refused == 5
    assert source.status() == "MAX_SERIES (5) reached, 5 readings of new devices dropped"
    events = [p for p in source._pending_points if p.measurement == "events"]
    assert [e.tags for e in events] == [{"kind": "series_limit"}]
    (counters,) = source.collect()
    assert (counters.fields["series"], counters.fields["series_refused"]) == (5, 5)


def test_a_flood_of_bad_topics_keeps_the_log_state_bounded() -> None:
    source = mqtt("tasmota")
    for number in range(20_000):
        lines(source, f"tele/device{number}/SENSOR", "not json {")
    assert source.invalid == 20_000
    assert len(source._problems._active) <= 1024


def sys_message(source: MQTTInput, dropped: bytes) -> None:
    message = SimpleNamespace(topic=BROKER_DROPPED, payload=dropped, mid=0, qos=0, retain=True)
    source._on_message(None, None, message)


def test_the_broker_s_drops_count_from_its_first_value_and_show_in_status(
    tmp_path: Path,
) -> None:
    source = MQTTInput(MQTTOptions(preset="tasmota"), state_dir=tmp_path)
    sys_message(source, b"40")  # drops before we ever saw this broker: not ours to judge
    assert source.status() == ""
    sys_message(source, b"not a number")
    sys_message(source, b"-5")
    sys_message(source, b"55")
    assert source.status().startswith("the BROKER DROPPED 15 messages since pitelemetry started")
    assert [p.fields["broker_dropped"] for p in source.collect()] == [15]


def test_drops_while_pitelemetry_was_stopped_are_counted_at_the_next_start(
    tmp_path: Path,
) -> None:
    drops = BrokerDrops(tmp_path / "mqtt-broker.json", "tcp://hub:1883")
    assert (drops.update(40), drops.update(45)) == (0, 5)
    assert json.loads((tmp_path / "mqtt-broker.json").read_text())["dropped"] == 40
    drops.save()
    assert json.loads((tmp_path / "mqtt-broker.json").read_text()) == {
        "broker": "tcp://hub:1883",
        "dropped": 45,
    }
    again = BrokerDrops(tmp_path / "mqtt-broker.json", "tcp://hub:1883")  # a restart
    assert (again.update(1045), again.total, again.while_away) == (1000, 1000, 1000)
    assert again.update(1046) == 1
    assert (again.total, again.while_away) == (1001, 1000)
    assert again.update(3) == 3  # the broker restarted: its counter began again
    assert again.total == 1004


def test_the_drop_counter_is_written_only_when_it_moved(tmp_path: Path) -> None:
    path = tmp_path / "mqtt-broker.json"
    drops = BrokerDrops(path, "tcp://hub:1883")
    drops.update(7)
    assert path.exists()  # the first value, at once: a kill -9 next still has a baseline
    path.unlink()
    drops.update(7)
    drops.save()
    assert not path.exists()  # a quiet broker: no SD write
    drops.update(9)
    drops.save()
    assert json.loads(path.read_text())["dropped"] == 9


def test_another_broker_s_or_a_garbled_count_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "mqtt-broker.json"
    path.write_text('{"broker": "tcp://old:1883", "dropped": 5}')
    assert BrokerDrops(path, "tcp://hub:1883").update(900) == 0
    path.write_text('{"broker": "tcp://hub:1883", "dropped": 1e400}')
    assert BrokerDrops(path, "tcp://hub:1883").update(900) == 0
    assert list(tmp_path.glob("mqtt-broker.json.bad-*"))  # moved aside, said in the log
