"""Home-automation messages over MQTT: Tasmota, Zigbee2MQTT, Shelly, Home Assistant,
or your own mapping rules.

Config::

    [[inputs.mqtt]]
    broker = "tcp://127.0.0.1:1883"     # ssl://host:8883 for TLS
    preset = "tasmota"                  # tasmota | zigbee2mqtt | shelly | homeassistant
    username = ""
    password_file = ""
    ca_file = ""                        # TLS: a CA, and a client certificate if needed
    cert_file = ""
    key_file = ""
    qos = 1
    max_payload_bytes = 65536
    max_series = 1000                   # distinct devices; new ones beyond it are dropped

    [[inputs.mqtt.rules]]               # your own: a topic pattern -> a measurement
    topic = "sensors/{room}/climate"    # {name} captures a segment as a tag; + and # too
    measurement = "mqtt_climate"
    fields = ["temperature", "humidity"]  # optional allow-list
    timestamp_field = ""                # optional: epoch s/ms/us/ns or ISO 8601 in the JSON
    decode = "json"                     # or a preset's decoder (inputs/mqtt_presets.py)

A payload is a plain number (field ``value``, or the rule's ``field``), ``ON``/``OFF``/
``true``/``false`` (a boolean), or JSON: nested objects are flattened with ``_``
(``{"ENERGY": {"Power": 42}}`` becomes ``ENERGY_Power=42``); numbers and booleans are
kept, other strings dropped (they would fight the numbers for the field's type).

Delivery is at least once: with QoS 1 a message is acknowledged to the broker only
after its points are written to InfluxDB or fsync-ed to the spool, and the session is
persistent (a fixed client id, clean session off), so what arrives while pitelemetry is
stopped or killed is delivered when it is back. Messages are read and handed to the
pipeline in bursts (:mod:`pitelemetry.inputs.mqtt_client`), 11,000 to 22,000 a second
on two cores (``bench/mqtt``). A flood meets back-pressure (the pipeline's bounded
queue), not unbounded memory.

Topic segments and payload strings are only ever tag values, field keys or field
values, escaped by the line-protocol encoder: no message can add a point, a
measurement or a tag key. Messages that match no rule, do not parse, or exceed
``max_payload_bytes`` are counted and logged once per topic, and acknowledged. Any
error while turning one message into points (JSON nested 1,000 deep, a 400-digit
timestamp) costs that message only; should paho's network thread end anyway, the next
collection starts a new one and reports it.

State, for ``status`` (:meth:`MQTTInput.status`) and ``check``: connected, or since when
not and why (a wrong host or port, a refused login); the messages the broker says it
dropped (Mosquitto's ``$SYS/broker/publish/messages/dropped``) since pitelemetry started
or while it was stopped before (:class:`BrokerDrops`).
``check`` connects with a short-lived client of its own. Retained messages, which the
broker sends again at every subscription, are stored once per payload
(:class:`RetainedMemory`).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pitelemetry import statefile
from pitelemetry.inputs import Emit, Input, InputError, Options
from pitelemetry.inputs.mqtt_presets import (
    FALSE_WORDS,
    TRUE_WORDS,
    Decoder,
    FieldTypes,
    HomeAssistant,
    Zigbee2MQTT,
    decode_shelly_rpc,
    decode_shelly_status,
    decode_tasmota,
    flatten,
)
from pitelemetry.logs import StateLog
from pitelemetry.point import FieldValue, Point, clean_key, clean_name
from pitelemetry.values import Duration, Secret, url_problem

if TYPE_CHECKING:
    from pitelemetry.config import AgentConfig, InputConfig

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")
MQTT_MAX_PAYLOAD = 268_435_455  # the largest MQTT packet, less nothing: a generous cap
MQTT_MAX_KEEPALIVE_S = 65535
MQTT_MAX_STRING = 65535
# Tag keys InfluxDB refuses (time) or reserves (2.x's _measurement and _field).
RESERVED_TAGS = frozenset({"time", "_measurement", "_field"})
MAX_BURST = 1000  # messages handed to the pipeline at once, at most
BROKER_SCHEMES = ("tcp", "mqtt", "ssl", "mqtts")
BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"  # Mosquitto's counter
RETAINED_REMEMBERED = 10_000  # topics whose last retained payload is remembered


@dataclass(frozen=True)
class Rule:
    topic: str
    measurement: str
    tags: Mapping[str, str] = field(default_factory=dict)
    fields: tuple[str, ...] = ()
    field: str = "value"
    timestamp_field: str = ""
    skip: tuple[str, ...] = ()  # topic patterns this rule leaves alone
    # How a payload becomes points: "json" (numbers, words or JSON, flattened), or a
    # device's own format (pitelemetry/inputs/mqtt_presets.py).
    decode: Literal[
        "json", "homeassistant", "zigbee2mqtt", "shelly_rpc", "shelly_status", "tasmota"
    ] = "json"


PRESETS: dict[str, tuple[Rule, ...]] = {
    # tele/<device>/SENSOR {"Time":"...","ENERGY":{"Power":42,...},"AM2301":{...}}
    "tasmota": (
        Rule("tele/{device}/SENSOR", "mqtt_tasmota", decode="tasmota"),
        Rule("tele/{device}/STATE", "mqtt_tasmota_state", decode="tasmota"),
    ),
    # zigbee2mqtt/<friendly name, may hold "/"> {"temperature":21.3,"contact":true}
    "zigbee2mqtt": (Rule("zigbee2mqtt/{device}", "mqtt_zigbee2mqtt", decode="zigbee2mqtt"),),
    # <id>/events/rpc {"method":"NotifyStatus","params":{"ts":..,"switch:0":{..}}} and
    # <id>/status/<component> {"id":0,"output":true,"apower":12.3,"aenergy":{...}}
    "shelly": (
        Rule("{device}/events/rpc", "mqtt_shelly", decode="shelly_rpc"),
        Rule("{device}/status/{component}", "mqtt_shelly", decode="shelly_status"),
    ),
    # homeassistant/<domain>/<entity>/state "21.5" and .../<attribute> (statestream)
    "homeassistant": (
        Rule(
            "homeassistant/{domain}/{entity}/{item}", "mqtt_homeassistant", decode="homeassistant"
        ),
    ),
}


@dataclass(frozen=True)
class MQTTOptions(Options):
    broker: str = "tcp://127.0.0.1:1883"
    preset: Literal["", "tasmota", "zigbee2mqtt", "shelly", "homeassistant"] = ""
    rules: tuple[Rule, ...] = ()
    username: str = ""
    password_file: Secret | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_id: str = ""
    qos: int = 1
    keepalive: Duration = Duration(60.0)
    max_payload_bytes: int = 65536
    # Distinct series (devices) this input may create; a home has dozens. Beyond it new
    # ones are dropped and counted: anything on the LAN can publish to the broker.
    max_series: int = 1000

    def problems(self) -> Iterator[tuple[str, str]]:
        """(key, problem) for what the types alone do not catch."""
        if problem := url_problem(self.broker, BROKER_SCHEMES):
            yield "broker", problem
        if self.qos not in (0, 1, 2):
            yield "qos", f"{self.qos} is not a QoS level; use 0, 1 or 2"
        if not self.preset and not self.rules:
            yield "rules", "set a preset or at least one [[inputs.mqtt.rules]]"
        if not 1 <= self.max_payload_bytes <= MQTT_MAX_PAYLOAD:
            yield "max_payload_bytes", f"{self.max_payload_bytes}; use 1..{MQTT_MAX_PAYLOAD}"
        if self.max_series < 1:
            yield "max_series", "0 would drop every reading; use 1 or more (default 1000)"
        if self.keepalive > MQTT_MAX_KEEPALIVE_S:
            yield "keepalive", f"MQTT allows at most {MQTT_MAX_KEEPALIVE_S} s (18h12m15s)"
        if len(self.client_id.encode()) > MQTT_MAX_STRING or "\0" in self.client_id:
            yield "client_id", "not a client id: at most 65535 bytes, no NUL"
        for index, rule in enumerate(self.rules):
            for key, problem in rule_problems(rule):
                yield f"rules[{index}].{key}", problem


def rule_problems(rule: Rule) -> Iterator[tuple[str, str]]:
    """(key, problem) of one rule: a topic pattern MQTT and the matcher accept, names
    InfluxDB can store."""
    patterns = {"topic": rule.topic} | {f"skip[{i}]": s for i, s in enumerate(rule.skip)}
    for key, pattern in patterns.items():
        if problem := _pattern_problem(pattern):
            yield key, problem
    captured = [m.group(1) for s in rule.topic.split("/") if (m := _PLACEHOLDER.match(s))]
    for name in captured:
        if captured.count(name) > 1:
            yield "topic", f"{{{name}}} appears twice; each placeholder names one tag"
            break
    for name in [*captured, *rule.tags]:
        if name in RESERVED_TAGS:
            yield "topic" if name in captured else f"tags.{name}", f"{name!r} cannot be a tag"
    if not clean_name(rule.measurement).strip():
        yield "measurement", f"{rule.measurement!r} cannot be a measurement name"
    for key, name in [
        ("field", rule.field),
        *((f"fields[{i}]", f) for i, f in enumerate(rule.fields)),
    ]:
        if clean_key(name) in ("", "time"):
            yield key, f"{name!r} cannot be a field name (empty, or InfluxDB's 'time')"


def _pattern_problem(pattern: str) -> str | None:
    if not pattern or len(pattern.encode()) > MQTT_MAX_STRING or "\0" in pattern:
        return f"{pattern!r} is not an MQTT topic (empty, over 65535 bytes or a NUL)"
    segments = pattern.split("/")
    for index, segment in enumerate(segments):
        if segment == "#" and index != len(segments) - 1:
            return f"{pattern!r}: '#' can only be the last level"
        if segment not in ("#", "+") and ("#" in segment or "+" in segment):
            return f"{pattern!r}: '+' and '#' must be a whole level, like 'a/+/b'"
        if "{" in segment and not _PLACEHOLDER.match(segment):
            return f"{pattern!r}: a placeholder is a whole level, like 'sensors/{{room}}'"
    return None


class CompiledRule:
    """A rule's topic pattern as one regular expression over the whole topic: ``+`` is
    one level, ``#`` the rest (or nothing), ``{name}`` one level captured as a tag, and
    a ``{name}`` in the last place takes the rest of the topic (friendly names with /)."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        segments = rule.topic.split("/")
        self.subscription = "/".join("+" if _PLACEHOLDER.match(s) else s for s in segments)
        self.greedy_last = bool(_PLACEHOLDER.match(segments[-1]))
        if self.greedy_last:
            self.subscription = self.subscription[:-1] + "#"
        self.names = [m.group(1) for s in segments if (m := _PLACEHOLDER.match(s))]
        self.pattern = _topic_regex(segments, greedy_last=self.greedy_last)
        self.skips = [_topic_regex(s.split("/"), greedy_last=False) for s in rule.skip]

    def match(self, topic: str) -> dict[str, str] | None:
        if any(skip.match(topic) for skip in self.skips):
            return None
        found = self.pattern.match(topic)
        if found is None:
            return None
        return dict(zip(self.names, found.groups(), strict=True))


def _topic_regex(segments: list[str], *, greedy_last: bool) -> re.Pattern[str]:
    parts = []
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        separator = "/" if index else ""
        if segment == "#":  # "a/#" matches "a" too
            parts.append(f"(?:{separator}.*)?" if index else ".*")
            break
        if _PLACEHOLDER.match(segment):
            parts.append(separator + ("(.*)" if index == last and greedy_last else "([^/]*)"))
        elif segment == "+":
            parts.append(separator + "[^/]*")
        else:
            parts.append(separator + re.escape(segment))
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


def parse_payload(payload: bytes, rule: Rule) -> tuple[dict[str, FieldValue], Any]:
    """Fields from one payload, and its JSON object if it was one; ``ValueError`` when
    it is not a number, a word or JSON."""
    text = payload.decode("utf-8").strip()
    if text.startswith("{"):  # the common case: skip trying it as a number
        data = json.loads(text)
        return flatten(data), data
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return flatten({rule.field: number}), None
    word = text.lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return {rule.field: word in TRUE_WORDS}, None
    data = json.loads(text)
    if not isinstance(data, dict):
        return flatten({rule.field: data}), None
    return flatten(data), data


def parse_timestamp(value: Any) -> int:
    """Epoch seconds, ms, us or ns (by magnitude), or ISO 8601, to nanoseconds."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                raise ValueError(f"timestamp {value!r} has no time zone") from None
            return int(moment.timestamp() * 1e9)
    if isinstance(value, int) and not isinstance(value, bool):
        for whole in (10**9, 10**6, 10**3, 1):  # seconds, ms, us, ns: exact for integers
            if value * whole < 10**19:
                return value * whole
    number = float(value)
    for scale in (1e9, 1e6, 1e3, 1.0):
        if number * scale < 1e19:
            return int(number * scale)
    raise ValueError(f"timestamp {value!r} out of range")


class MQTTInput(Input):
    Options = MQTTOptions

    def __init__(
        self,
        options: MQTTOptions,
        *,
        client_id: str = "",
        state_dir: Path | None = None,
        suffix: str = "",
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``state_dir``: where the retained messages already stored and the broker's
        last drop count are kept (``mqtt-retained<suffix>.json``, ``mqtt-broker…``);
        ``None`` keeps them in memory."""
        self.options = options
        rules = PRESETS.get(options.preset, ()) + options.rules
        self.rules = [CompiledRule(rule) for rule in rules]
        self.client_id = options.client_id or client_id
        self._time_ns = time_ns
        self._emit: Emit | None = None
        self._client: Any = None
        self._problems = StateLog(log)
        self._lock = threading.Lock()
        self._pending_points: list[Point] = []
        self._pending_sourced: list[Point] = []
        self._pending_acks: list[tuple[int, int]] = []
        self._pending_retained: list[tuple[str, str]] = []
        self.received = 0
        self.unmatched = 0
        self.invalid = 0
        self.too_large = 0
        self.connected = False
        self._last_error = ""
        self._refused = ""
        self._down_since = time.time()
        self.thread_restarts = 0
        self._thread_died = ""
        self._closing = False

        def state(name: str) -> Path | None:
            return state_dir / f"mqtt-{name}{suffix}.json" if state_dir is not None else None

        self.broker_drops = BrokerDrops(state("broker"), options.broker)
        self.retained = RetainedMemory(state("retained"))
        self.retained_skipped = 0
        self.types = FieldTypes()
        self._series: set[tuple[object, ...]] = set()
        self.series_refused = 0
        self._decoders: dict[str, Decoder] = {
            "homeassistant": HomeAssistant().decode,
            "zigbee2mqtt": Zigbee2MQTT().decode,
            "shelly_rpc": decode_shelly_rpc,
            "shelly_status": decode_shelly_status,
            "tasmota": decode_tasmota,
        }

    @classmethod
    def from_config(
        cls, config: InputConfig, agent: AgentConfig, *, time_ns: Callable[[], int]
    ) -> MQTTInput:
        suffix = f"-{config.index + 1}" if config.index else ""
        client_id = f"pitelemetry-{agent.hostname}{suffix}"
        return cls(
            config.options,
            client_id=client_id,
            state_dir=Path(agent.state_dir),
            suffix=suffix,
            time_ns=time_ns,
        )

    # -- connection ------------------------------------------------------------------------

    def start(self, emit: Emit) -> None:
        self._emit = emit
        self._client = self._make_client()
        url = urllib.parse.urlsplit(self.options.broker)
        port = url.port or (8883 if url.scheme in ("ssl", "mqtts") else 1883)
        self._client.connect_async(
            url.hostname or "127.0.0.1", port, keepalive=int(self.options.keepalive)
        )
        self._client.loop_start()

    def _make_client(self) -> Any:
        import paho.mqtt.client as paho  # noqa: PLC0415 - only MQTT users need it
        from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415

        from pitelemetry.inputs.mqtt_client import BufferedClient  # noqa: PLC0415

        client = BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,  # persistent session: the broker keeps what we missed
            protocol=paho.MQTTv311,
            manual_ack=True,  # acknowledge only once the points are safe
        )
        if self.options.username:
            password = self.options.password_file.reveal() if self.options.password_file else None
            client.username_pw_set(self.options.username, password)
        scheme = urllib.parse.urlsplit(self.options.broker).scheme
        if scheme in ("ssl", "mqtts") or self.options.ca_file:
            client.tls_set(
                ca_certs=self.options.ca_file or None,
                certfile=self.options.cert_file or None,
                keyfile=self.options.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        client.max_payload_bytes = self.options.max_payload_bytes
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.after_read = self._flush
        return client

    def _on_connect(
        self, client: Any, userdata: object, flags: Any, reason: Any, properties: object
    ) -> None:
        del userdata, flags, properties
        if getattr(reason, "is_failure", False):
            self._refused = f"the broker refused the connection: {reason}"
            self._last_error = self._refused
            self._problems.report("connect", f"mqtt {self.options.broker}: {self._last_error}")
            return
        self.connected = True
        self._last_error = self._refused = ""
        self._problems.clear("connect", f"mqtt: connected to {self.options.broker}")
        subscriptions = sorted({rule.subscription for rule in self.rules})
        client.subscribe(
            [(topic, self.options.qos) for topic in subscriptions] + [(BROKER_DROPPED, 0)]
        )
        log.info(
            "mqtt: connected to %s, subscribed to %s", self.options.broker, ", ".join(subscriptions)
        )

    def _on_connect_fail(self, client: Any, userdata: object) -> None:
        """The TCP (or TLS) connection could not be made; paho retries on its own. The
        collector logs it once, from :meth:`collect`, with the time it began."""
        del userdata
        error = getattr(client, "connect_error", None)
        self._last_error = f"cannot connect: {_describe(error)}"
        log.debug("mqtt %s: %s; retrying", self.options.broker, self._last_error)

    def _on_disconnect(
        self, client: Any, userdata: object, flags: Any, reason: Any, properties: object
    ) -> None:
        del client, userdata, flags, properties
        if self.connected:
            self._down_since = time.time()
        self.connected = False
        # After a refusal the broker hangs up; the refusal is what the user must fix.
        self._last_error = self._refused or f"disconnected ({reason}); reconnecting"
        self._problems.report("connect", f"mqtt {self.options.broker}: {self._last_error}")

    # -- messages --------------------------------------------------------------------------

    def _on_message(self, client: Any, userdata: object, message: Any) -> None:
        """Collect a burst's points and acknowledgements; :meth:`_flush` hands them on
        after the read (paho's network thread calls both)."""
        del client, userdata
        self._pending_acks.append((message.mid, message.qos))
        topic = _topic(message)
        if topic.startswith("$SYS/"):
            self._broker_counter(topic, message.payload)
        else:
            self._take(topic, message.payload, retained=bool(message.retain))
        if len(self._pending_acks) >= MAX_BURST:
            self._flush()

    def _take(self, topic: str, payload: bytes, *, retained: bool) -> None:
        if (
            retained
            and len(payload) <= self.options.max_payload_bytes
            and self.retained.seen(topic, payload)
        ):
            # Sent again because we subscribed again (a restart, a reconnect):
            # stored the first time, so storing it again would add a stale reading.
            with self._lock:
                self.retained_skipped += 1
            return
        try:
            points, sourced = self._points_and_origin(topic, payload)
        except Exception as exc:  # noqa: BLE001 - one message's failure costs only it
            # (RecursionError from JSON nested 1,000 deep, OverflowError from a 400-digit
            # timestamp, a bug): left to escape, it would end paho's network thread, and
            # at QoS 1 the redelivered message would end it again.
            self._count("invalid", topic, f"cannot use the payload: {type(exc).__name__}")
            return
        (self._pending_sourced if sourced else self._pending_points).extend(points)
        if points:
            self.retained.note(topic, payload)
            if retained:
                self._pending_retained.append((topic, self.retained.digest(payload)))

    def _flush(self) -> None:
        acks = self._pending_acks
        if not acks:
            return
        client, emit = self._client, self._emit
        # Stamped by us, and stamped by the payload's own time (kept as is when the
        # Pi's clock is set later): two lists, one acknowledgement once both are safe.
        batches = [
            (b, s) for b, s in ((self._pending_points, False), (self._pending_sourced, True)) if b
        ]
        retained = self._pending_retained
        self._pending_points, self._pending_sourced, self._pending_acks = [], [], []
        self._pending_retained = []
        with self._lock:
            self.received += len(acks)
        if not batches or emit is None:
            client.ack_all(acks)
            return
        remaining = len(batches)

        def one_safe() -> None:  # on the writer thread, one call after another
            nonlocal remaining
            remaining -= 1
            if not remaining:
                client.ack_all(acks)
                # Remembered only now: a retained message whose points were lost in a
                # crash is stored when the broker sends it again.
                self.retained.remember(retained)

        for points, sourced in batches:
            emit(points, one_safe, source_stamped=sourced)

    def points_for(self, topic: str, payload: bytes) -> list[Point]:
        """The points one message becomes (none when it matches no rule or is bad)."""
        return self._points_and_origin(topic, payload)[0]

    def _points_and_origin(self, topic: str, payload: bytes) -> tuple[list[Point], bool]:
        """The points one message becomes, and whether their time is the payload's."""
        points, sourced = self._parsed(topic, payload)
        if points:
            points = [p for p in points if self._series_allowed(p)]
        return points, sourced

    def _series_allowed(self, point: Point) -> bool:
        """Whether ``point`` is on a known series, or a new one within ``max_series``."""
        tags = point.tags
        key = (point.measurement, *(sorted(tags.items()) if len(tags) > 1 else tags.items()))
        series = self._series
        if key in series:
            return True
        if len(series) < self.options.max_series:
            series.add(key)
            return True
        with self._lock:
            self.series_refused += 1
        text = (
            f"max_series ({self.options.max_series}) reached: readings of new devices "
            "are dropped; raise [[inputs.mqtt]] max_series if they are yours"
        )
        if self._problems.report("max_series", f"mqtt: {text}", logging.ERROR):
            event = Point("events", {"title": "MQTT device limit reached", "text": text})
            self._pending_points.append(event._replace(tags={"kind": "series_limit"}))
        return False

    def _parsed(self, topic: str, payload: bytes) -> tuple[list[Point], bool]:
        if len(payload) > self.options.max_payload_bytes:
            self._count(
                "too_large",
                topic,
                f"payload of {len(payload)} bytes is over "
                f"max_payload_bytes ({self.options.max_payload_bytes})",
            )
            return [], False
        stamp = self._time_ns()
        for compiled in self.rules:
            captured = compiled.match(topic)
            if captured is None:
                continue
            rule = compiled.rule
            if rule.decode != "json":
                return self._decoded(rule, captured, topic, payload, stamp)
            try:
                fields, data = parse_payload(payload, rule)
                timestamp = stamp
                if rule.timestamp_field:
                    timestamp = parse_timestamp(data[rule.timestamp_field])
                    fields.pop(rule.timestamp_field, None)
            except (ValueError, KeyError, TypeError) as exc:
                self._count("invalid", topic, f"cannot parse the payload: {exc}")
                return [], False
            # InfluxDB refuses a field called time or with no name: leave those out
            # rather than lose the whole message.
            fields = {k: v for k, v in fields.items() if _usable_key(k)}
            if rule.fields:
                fields = {k: v for k, v in fields.items() if k in rule.fields}
            fields = self.types.conform(rule.measurement, fields)
            if not fields:
                self._count("invalid", topic, "no numeric or boolean field in the payload")
                return [], False
            point = Point(rule.measurement, fields, {**rule.tags, **captured}, timestamp)
            return [point], bool(rule.timestamp_field)
        self._count("unmatched", topic, "matches no rule")
        return [], False

    def _decoded(
        self, rule: Rule, captured: dict[str, str], topic: str, payload: bytes, stamp: int
    ) -> tuple[list[Point], bool]:
        """A preset's message: the device's own format, maybe several points, maybe none
        (a command, an availability notice)."""
        try:
            readings = self._decoders[rule.decode](captured, payload)
        except (ValueError, KeyError, TypeError) as exc:  # UnicodeDecodeError is one
            self._count("invalid", topic, f"cannot parse the payload: {exc}")
            return [], False
        points = []
        sourced = False
        for reading in readings:
            fields = {k: v for k, v in reading.fields.items() if _usable_key(k)}
            if rule.fields:
                fields = {k: v for k, v in fields.items() if k in rule.fields}
            fields = self.types.conform(rule.measurement, fields)
            if fields:
                sourced = sourced or reading.time_ns is not None
                time_ns = stamp if reading.time_ns is None else reading.time_ns
                points.append(
                    Point(rule.measurement, fields, {**rule.tags, **reading.tags}, time_ns)
                )
        return points, sourced

    def _count(self, kind: str, topic: str, problem: str) -> None:
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)
        root = topic.split("/", 1)[0]
        self._problems.report(
            f"{kind}:{topic}",
            f"mqtt: {topic!r}: {problem}",
            logging.DEBUG if kind == "unmatched" and root else logging.INFO,
        )

    def collect(self) -> Iterator[Point]:
        """The input's own counters, as ``mqtt`` points. Raises while the broker is not
        connected, and once after the network thread died and was restarted."""
        self.retained.save()
        self.broker_drops.save()
        self._watch_thread()
        if self._thread_died:
            died, self._thread_died = self._thread_died, ""
            raise InputError(f"the MQTT network thread died ({died}); restarted it")
        if self._client is not None and not self.connected and self._last_error:
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._down_since))
            raise InputError(
                f"{self.options.broker}: not connected since {since}: {self._last_error}"
            )
        with self._lock:
            fields: dict[str, FieldValue] = {
                "received": self.received,
                "unmatched": self.unmatched,
                "invalid": self.invalid,
                "too_large": self.too_large,
                "retained_skipped": self.retained_skipped,
                "type_refused": sum(count for count, _ in self.types.refused.values()),
                "series": len(self._series),
                "series_refused": self.series_refused,
                "thread_restarts": self.thread_restarts,
                "connected": self.connected,
            }
        if self.broker_drops.seen:
            fields["broker_dropped"] = self.broker_drops.total
        yield Point("mqtt", fields, {"broker": self.options.broker}, self._time_ns())

    def _watch_thread(self) -> None:
        """paho's network thread can end on an error (recorded by the client); start a
        new one. It carries on with the same connection and the unacknowledged burst."""
        client = self._client
        if client is None or self._closing or not client.thread_error:
            return
        self.thread_restarts += 1
        self._thread_died, client.thread_error = client.thread_error, ""
        log.error(
            "mqtt %s: the network thread died (%s); restarting it",
            self.options.broker,
            self._thread_died,
        )
        client._reset_sockets(sockpair_only=True)  # loop_start makes a new wake-up pair
        client.loop_start()

    def status(self) -> str:
        parts = []
        if self._client is not None and self.connected:
            parts.append(f"connected to {self.options.broker}")
        elif self._client is not None:
            since = time.strftime("%H:%M:%S", time.localtime(self._down_since))
            parts.append(f"NOT CONNECTED since {since}: {self._last_error or 'connecting'}")
        if drops := self.broker_drops.total:
            away = self.broker_drops.while_away
            parts.append(
                f"the BROKER DROPPED {drops} messages since pitelemetry started"
                + (f" ({away} while it was stopped)" if away else "")
                + " (see README: MQTT)"
            )
        if self.retained_skipped:
            parts.append(f"{self.retained_skipped} retained repeats skipped")
        if self.types.refused:
            parts.append(f"TYPE CHANGES: {self.types.summary()}")
        if self.series_refused:
            parts.append(
                f"MAX_SERIES ({self.options.max_series}) reached, "
                f"{self.series_refused} readings of new devices dropped"
            )
        return "; ".join(parts)

    def _broker_counter(self, topic: str, payload: bytes) -> None:
        """Mosquitto's ``$SYS/broker/publish/messages/dropped``: messages it threw away
        because a client's queue was full."""
        del topic
        try:
            value = int(payload.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return
        if value < 0 or not self.broker_drops.update(value):
            return
        drops, away = self.broker_drops.total, self.broker_drops.while_away
        self._problems.report(
            "broker-dropped",
            f"mqtt {self.options.broker}: the broker dropped {drops} messages since "
            f"pitelemetry started ({away} while it was stopped before); its queue for a "
            "client was full: see the README's MQTT section for max_queued_messages",
            logging.ERROR,
        )

    def checks(self) -> Iterator[tuple[str, bool, str]]:
        """Connect to the broker now, as a separate short-lived client (never with the
        daemon's persistent session), and read its dropped-messages counter."""
        yield probe_broker(self)

    def close(self) -> None:
        self._closing = True
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None
        self.retained.save()
        self.broker_drops.save()


class BrokerDrops:
    """The broker's count of the messages it dropped, for status, the log and the
    ``mqtt`` points: Mosquitto's ``$SYS/broker/publish/messages/dropped``, one counter for all
    its clients, which it drops from when a client's queue is full (1,000 messages by
    default): typically ours, while pitelemetry is stopped or too slow.

    The last value seen is kept in the state file, so the first value after a start
    counts what the broker dropped while pitelemetry was stopped (:attr:`while_away`).
    A value lower than the last means the broker restarted and began again at 0: all of
    it is new. The file is written when the first value of a run differs from it, then
    from :meth:`MQTTInput.collect` only when the counter moved: a quiet broker costs no
    SD writes."""

    def __init__(self, path: Path | None, broker: str) -> None:
        self.path = path
        self.broker = broker
        self.total = 0  # dropped since this run began, the downtime before it included
        self.while_away = 0  # of those, found at the first value of this run
        self.seen = False
        self._last: int | None = None
        self._dirty = False
        self._lock = threading.Lock()
        if path is not None:
            self._last = statefile.read_json(
                path, lambda data: _broker_drops(data, broker), "counting the broker's drops anew"
            )

    def update(self, value: int) -> int:
        """A value of the counter (paho's network thread): how many are new."""
        with self._lock:
            last, first = self._last, not self.seen
            if last is None:  # no earlier value for this broker: counting begins now
                last = value
            new = value - last if value >= last else value
            self.seen = True
            self.total += new
            if first:
                self.while_away = new
            if value != self._last:
                self._last, self._dirty = value, True
        if first:  # at once: a daemon killed before its first collection keeps it
            self.save()
        return new

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        with self._lock:
            text = json.dumps({"broker": self.broker, "dropped": self._last})
            self._dirty = False
        try:
            statefile.write_atomic(self.path, text)
        except OSError as exc:
            log.warning("mqtt: cannot save %s: %s", self.path, exc.strerror or exc)


def _broker_drops(data: Any, broker: str) -> int | None:
    """The saved counter, if it was this broker's (after a change of broker: none)."""
    if not isinstance(data, dict) or not isinstance(data.get("broker"), str):
        raise TypeError("expected {broker: ..., dropped: ...}")
    dropped = statefile.finite_int(data.get("dropped"))
    return dropped if data["broker"] == broker else None


class RetainedMemory:
    """Which retained messages were stored already, so a restart or reconnect does not
    store every retained value again as a new reading.

    A broker sends its retained messages to each new subscription: at every start and
    reconnect. A retained message is skipped when its payload is the last one stored for
    its topic: in this run (any message, retained or not: a persistent session also
    delivers what was published while we were away, then the retained copy of the same
    message), or, from the state file, in an earlier run. A changed payload is stored.
    The file holds a digest per topic, only for retained messages and only once their
    points are safe, so a crash can repeat a reading but never lose one; it is bounded
    to :data:`RETAINED_REMEMBERED` topics (the oldest forgotten first) and saved from
    :meth:`MQTTInput.collect` only when it changed."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._saved: dict[str, str] = {}  # digests, kept across restarts
        self._last: dict[str, int] = {}  # hash() of the payloads, this run only
        self._lock = threading.Lock()
        self._dirty = False
        if path is not None:
            loaded = statefile.read_json(path, _digest_map, "storing retained messages again")
            self._saved = loaded or {}

    @staticmethod
    def digest(payload: bytes) -> str:
        return hashlib.blake2b(payload, digest_size=12).hexdigest()

    def seen(self, topic: str, payload: bytes) -> bool:
        if self._last.get(topic) == hash(payload):
            return True
        saved = self._saved.get(topic)
        return saved is not None and saved == self.digest(payload)

    def note(self, topic: str, payload: bytes) -> None:
        """A message of ``topic`` became points (paho's network thread only). Costs a
        ``hash()`` per message: every message passes here."""
        last = self._last
        last[topic] = hash(payload)
        if len(last) > RETAINED_REMEMBERED:
            del last[next(iter(last))]

    def remember(self, retained: list[tuple[str, str]]) -> None:
        """These retained messages' points are safe (on the writer thread)."""
        if not retained:
            return
        with self._lock:
            for topic, digest in retained:
                self._saved.pop(topic, None)
                self._saved[topic] = digest
            while len(self._saved) > RETAINED_REMEMBERED:
                del self._saved[next(iter(self._saved))]
            self._dirty = True

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        with self._lock:
            text = json.dumps(self._saved)
            self._dirty = False
        try:
            statefile.write_atomic(self.path, text)
        except OSError as exc:
            log.warning("mqtt: cannot save %s: %s", self.path, exc.strerror or exc)


def _digest_map(data: Any) -> dict[str, str]:
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise TypeError("expected a table of topic = digest")
    return dict(list(data.items())[-RETAINED_REMEMBERED:])


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "the connection failed"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the broker running, is the port right?)"
    if isinstance(error, socket.gaierror):
        return f"host name not found ({error.strerror})"
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    return f"{type(error).__name__}: {error}"


def probe_broker(mqtt: MQTTInput, timeout: float = 5.0) -> tuple[str, bool, str]:
    """``pitelemetry check``'s look at the broker: connect with the configured address,
    TLS and login as a short-lived client (a clean session under its own id, so the
    daemon's persistent session is left alone), and read the broker's count of dropped
    messages if it publishes one."""
    options = mqtt.options
    probe = MQTTInput(options, client_id=f"{mqtt.client_id}-check")
    client = probe._make_client()
    client._clean_session = True
    connected = threading.Event()
    answered = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(
        client: Any, userdata: object, flags: Any, reason: Any, properties: object
    ) -> None:
        del userdata, flags, properties
        outcome["reason"] = reason
        if not getattr(reason, "is_failure", False):
            client.subscribe(BROKER_DROPPED, 0)
            connected.set()
        answered.set()

    def on_message(client: Any, userdata: object, message: Any) -> None:
        del client, userdata
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            outcome["dropped"] = int(message.payload.decode("ascii"))

    client.on_connect = on_connect
    client.on_message = on_message
    client.on_disconnect = None
    client.on_connect_fail = None
    client.after_read = None
    url = urllib.parse.urlsplit(options.broker)
    port = url.port or (8883 if url.scheme in ("ssl", "mqtts") else 1883)
    try:
        client.connect(url.hostname or "127.0.0.1", port, keepalive=10)
    except (OSError, ValueError) as exc:
        return "broker", False, f"{options.broker}: cannot connect: {_describe(exc)}"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return "broker", False, f"{options.broker}: no answer to CONNECT within {timeout:g}s"
        if not connected.is_set():
            return "broker", False, f"{options.broker}: refused: {outcome.get('reason')}"
        time.sleep(0.5)  # the $SYS counter is retained: it comes at once if at all
    finally:
        client.disconnect()
        client.loop_stop()
    dropped = outcome.get("dropped")
    if dropped:
        return (
            "broker",
            False,
            f"{options.broker}: connected, but the broker has dropped {dropped} messages "
            "since it started (a client's queue was full); see the README's MQTT section",
        )
    return "broker", True, f"{options.broker}: connected"


_USABLE: dict[str, bool] = {}


def _usable_key(key: str) -> bool:
    """Whether InfluxDB takes ``key`` as a field key (not empty, not ``time``); cached,
    since the same few keys arrive in every message."""
    usable = _USABLE.get(key)
    if usable is None:
        if len(_USABLE) > 4096:
            _USABLE.clear()
        usable = _USABLE[key] = clean_key(key) not in ("", "time")
    return usable


def _topic(message: Any) -> str:
    """A message's topic; bytes that are not UTF-8 become U+FFFD, never an error."""
    raw = getattr(message, "_topic", None)
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(message.topic)
