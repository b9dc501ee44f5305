"""How the presets' devices publish, and the points each message becomes.

Each decoder is checked against messages taken from the devices' own documentation and
test suites (``tests/fixtures/mqtt/``, each with its source). A decoder returns the
points of one message; one that does not carry readings (a command, an availability
notice, an event) returns none. Field types never change for a field: a number is
always a float, an on/off word always a boolean, text always a string, so InfluxDB
never refuses a write for a field-type conflict (:class:`FieldTypes` keeps to that for
every rule, presets and your own).

Home Assistant (``mqtt_statestream``), ``homeassistant/<domain>/<entity>/state``: the
raw state. A number becomes the float field ``value``; anything else the string field
``state``; ``on``/``off`` (and the other words Home Assistant maps to 1/0) also give
``value`` 1.0/0.0 and the boolean ``is_on``, as Home Assistant's own InfluxDB
integration does; ``unknown``, ``unavailable`` and an empty state are skipped. With
``publish_attributes``, ``homeassistant/<domain>/<entity>/<attribute>`` carries JSON:
numbers become float fields named after the attribute, and ``unit_of_measurement``
becomes the tag ``unit`` of that entity's later points.

Zigbee2MQTT, ``zigbee2mqtt/<friendly name>``: the JSON is flattened. Friendly names may
contain ``/``: the names in the retained ``zigbee2mqtt/bridge/devices`` are matched
longest first; without it the whole rest of the topic is the name. ``set``, ``get``,
``availability`` and ``bridge/`` topics are never readings, at any depth.

Shelly Gen2/Gen3: ``<id>/events/rpc`` (the default notification channel) carries
``NotifyStatus`` and ``NotifyFullStatus`` frames: one point per component
(``switch:0``, ``pm1:0``, ``em:0``, ``temperature:0``...) stamped with the frame's
``params.ts``; ``<id>/status/<component>`` carries one component's full status.
``aenergy.total`` becomes ``aenergy_total``, ``temperature.tC`` becomes
``temperature_tC``; ``null`` and per-minute arrays are left out.

Tasmota, ``tele/<topic>/SENSOR`` and ``tele/<topic>/STATE``: the JSON is flattened;
arrays (per channel or phase energy, ``Distance``) become fields numbered from 1
(``ENERGY_Power_1``, ``ENERGY_Power_2``); the ``ENERGY`` block's fields carry their
units (``ENERGY_Total_kwh``, ``ENERGY_Power_w``, ``ENERGY_Voltage_v``,
``ENERGY_Current_a``...), ``STATE``'s Wi-Fi ones too (``Wifi_RSSI_pct``,
``Wifi_Signal_dbm``); ``POWER``/``POWER1``... become booleans.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pitelemetry.point import FieldValue

log = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"on", "true", "open", "yes"})
FALSE_WORDS = frozenset({"off", "false", "closed", "no"})
# The states Home Assistant's state_as_number maps to 1 and 0 (homeassistant/helpers/state.py).
HA_ON = frozenset({"on", "home", "locked", "open", "above_horizon"})
HA_OFF = frozenset({"off", "not_home", "unlocked", "closed", "below_horizon"})
HA_SKIPPED = frozenset({"unknown", "unavailable", ""})
Z2M_NOT_READINGS = frozenset({"set", "get"})
MAX_DEPTH = 32  # JSON nested deeper is not a device's reading
TYPES_REMEMBERED = 10_000

# Tasmota's ENERGY block: the unit of each field (tasmota/docs Teleinfo.md, xdrv_03_energy).
TASMOTA_UNITS = {
    "Total": "kwh",
    "Today": "kwh",
    "Period": "wh",
    "Yesterday": "kwh",
    "Power": "w",
    "ApparentPower": "va",
    "ReactivePower": "var",
    "Voltage": "v",
    "Current": "a",
    "Frequency": "hz",
    "ExportActive": "kwh",
    "ImportActive": "kwh",
}
TASMOTA_STATE_UNITS = {"Wifi_RSSI": "Wifi_RSSI_pct", "Wifi_Signal": "Wifi_Signal_dbm"}


class Reading:
    """One point a message becomes, before the rule's measurement and tags are added."""

    __slots__ = ("fields", "tags", "time_ns")

    def __init__(
        self,
        fields: dict[str, FieldValue],
        tags: dict[str, str] | None = None,
        time_ns: int | None = None,
    ) -> None:
        self.fields = fields
        self.tags = tags or {}
        self.time_ns = time_ns


def flatten(
    value: Any,
    prefix: str = "",
    out: dict[str, FieldValue] | None = None,
    *,
    arrays: bool = False,
    depth: int = 0,
) -> dict[str, FieldValue]:
    """JSON to fields: nested objects joined with ``_``; numbers as floats, booleans and
    ``ON``/``OFF``-like words as booleans; with ``arrays``, list items numbered from 1.
    Other strings, nulls and (without ``arrays``) lists are left out."""
    out = {} if out is None else out
    if depth > MAX_DEPTH:
        return out
    if isinstance(value, dict):
        _flatten_object(value, prefix, out, arrays=arrays, depth=depth)
    elif isinstance(value, bool):
        if prefix:
            out[prefix] = value
    elif isinstance(value, int | float):
        number = float(value)
        if prefix and math.isfinite(number):
            out[prefix] = number
    elif isinstance(value, str):
        word = value.strip().lower()
        if prefix and (word in TRUE_WORDS or word in FALSE_WORDS):
            out[prefix] = word in TRUE_WORDS
    elif isinstance(value, list) and arrays and prefix:
        for index, item in enumerate(value, 1):
            flatten(item, f"{prefix}_{index}", out, arrays=arrays, depth=depth + 1)
    return out


def _flatten_object(
    value: dict[Any, Any], prefix: str, out: dict[str, FieldValue], *, arrays: bool, depth: int
) -> None:
    for key, item in value.items():
        name = f"{prefix}_{key}" if prefix else str(key)
        kind = type(item)
        if kind is float or kind is int:  # the common case, without a call
            number = float(item)  # OverflowError for a 400-digit integer: counted
            if math.isfinite(number):
                out[name] = number
        elif kind is bool:
            out[name] = item
        else:
            flatten(item, name, out, arrays=arrays, depth=depth + 1)


def as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# -- Home Assistant ----------------------------------------------------------------------


class HomeAssistant:
    """``homeassistant/<domain>/<entity>/<state|attribute>``; remembers each entity's
    unit."""

    def __init__(self) -> None:
        self.units: dict[tuple[str, str], str] = {}

    def decode(self, captured: Mapping[str, str], payload: bytes) -> list[Reading]:
        domain, entity = captured.get("domain", ""), captured.get("entity", "")
        item = captured.get("item", "state")
        text = payload.decode("utf-8").strip()
        tags = {"domain": domain, "entity": entity}
        unit = self.units.get((domain, entity))
        if unit:
            tags["unit"] = unit
        if item == "state":
            return self._state(text, tags)
        if item in ("last_updated", "last_changed"):
            return []
        value = json.loads(text) if text else None
        if item == "unit_of_measurement":
            if isinstance(value, str) and value and len(self.units) < TYPES_REMEMBERED:
                self.units[(domain, entity)] = value
            return []
        if isinstance(value, bool):
            return [Reading({item: 1.0 if value else 0.0}, tags)]
        if isinstance(value, int | float):
            value = float(value)
        elif isinstance(value, str):
            value = as_number(value)
        if isinstance(value, float) and math.isfinite(value):
            return [Reading({item: value}, tags)]
        return []  # text, lists and objects: not a reading to graph

    @staticmethod
    def _state(text: str, tags: dict[str, str]) -> list[Reading]:
        if text.lower() in HA_SKIPPED:
            return []
        number = as_number(text)
        if number is not None:
            return [Reading({"value": number}, tags)]
        word = text.lower()
        if word in HA_ON or word in HA_OFF:
            on = word in HA_ON
            return [Reading({"state": text, "value": 1.0 if on else 0.0, "is_on": on}, tags)]
        return [Reading({"state": text}, tags)]


# -- Zigbee2MQTT -------------------------------------------------------------------------


class Zigbee2MQTT:
    """``zigbee2mqtt/<friendly name>``, with names learnt from ``bridge/devices``."""

    def __init__(self) -> None:
        self.names: list[str] = []  # longest first

    def decode(self, captured: Mapping[str, str], payload: bytes) -> list[Reading]:
        rest = captured.get("device", "")
        parts = rest.split("/")
        if parts[0] == "bridge":
            if rest == "bridge/devices":
                self._learn(payload)
            return []
        device = next((n for n in self.names if rest == n or rest.startswith(n + "/")), None)
        if device is None:
            device = rest
            if Z2M_NOT_READINGS & set(parts[1:]) or parts[-1] == "availability":
                return []
        elif rest != device:
            return []  # a known device's sub-topic: set, get, availability
        data = json.loads(payload)
        if not isinstance(data, dict):
            return []
        fields = flatten(data)
        return [Reading(fields, {"device": device})] if fields else []

    def _learn(self, payload: bytes) -> None:
        devices = json.loads(payload)
        if not isinstance(devices, list):
            return
        names = {
            d["friendly_name"]
            for d in devices
            if isinstance(d, dict)
            and isinstance(d.get("friendly_name"), str)
            and d.get("type") != "Coordinator"
        }
        self.names = sorted(names, key=len, reverse=True)
        log.info("mqtt: zigbee2mqtt reports %d devices", len(self.names))


# -- Shelly ------------------------------------------------------------------------------


def shelly_component(data: Any) -> dict[str, FieldValue]:
    if not isinstance(data, dict):
        return {}
    return flatten({k: v for k, v in data.items() if k not in ("id", "errors")})


def decode_shelly_rpc(captured: Mapping[str, str], payload: bytes) -> list[Reading]:
    """``NotifyStatus``/``NotifyFullStatus`` on ``<id>/events/rpc``: a point per
    component, stamped with ``params.ts``."""
    frame = json.loads(payload)
    if not isinstance(frame, dict) or frame.get("method") not in (
        "NotifyStatus",
        "NotifyFullStatus",
    ):
        return []
    params = frame.get("params")
    if not isinstance(params, dict):
        return []
    stamp = params.get("ts")
    time_ns = int(float(stamp) * 1e9) if isinstance(stamp, int | float) else None
    device = captured.get("device") or str(frame.get("src", ""))
    readings = []
    for component, status in params.items():
        if component == "ts" or ":" not in component:
            continue  # sys, wifi, cloud, mqtt and ble carry no readings worth graphing
        fields = shelly_component(status)
        if fields:
            readings.append(Reading(fields, {"device": device, "component": component}, time_ns))
    return readings


def decode_shelly_status(captured: Mapping[str, str], payload: bytes) -> list[Reading]:
    fields = shelly_component(json.loads(payload))
    return [Reading(fields, dict(captured))] if fields else []


# -- Tasmota -----------------------------------------------------------------------------


def decode_tasmota(captured: Mapping[str, str], payload: bytes) -> list[Reading]:
    data = json.loads(payload)
    if not isinstance(data, dict):
        return []
    energy = data.get("ENERGY")
    if isinstance(energy, dict):
        data = dict(data)
        data["ENERGY"] = {
            f"{key}_{TASMOTA_UNITS[key]}" if key in TASMOTA_UNITS else key: value
            for key, value in energy.items()
        }
    fields = flatten(data, arrays=True)
    for old, new in TASMOTA_STATE_UNITS.items():
        if old in fields:
            fields[new] = fields.pop(old)
    return [Reading(fields, {"device": captured.get("device", "")})] if fields else []


# -- field types -------------------------------------------------------------------------


_KIND: dict[type, str] = {float: "float", int: "float", bool: "boolean", str: "string"}


class FieldTypes:
    """Keeps each field of a measurement to the type it was first written with, as
    InfluxDB requires (a field's type is fixed per shard; a value of another type is
    refused, and with it the rest of the batch's point).

    A later value of another type is converted where the meaning is plain (a boolean to
    a float field as 1.0/0.0, a number in a string to a float field, anything to a
    string field); otherwise that field alone is left out of the point, counted per
    field (:attr:`refused`) with the types, for ``status``. The first type seen in this
    run wins; bounded to :data:`TYPES_REMEMBERED` fields."""

    def __init__(self) -> None:
        self._kinds: dict[str, dict[str, str]] = {}  # measurement -> field -> type
        self._remembered = 0
        self.refused: dict[tuple[str, str], tuple[int, str]] = {}
        self._lock = threading.Lock()

    def conform(self, measurement: str, fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
        known = self._kinds.get(measurement)
        if known is not None:  # the common case: every field as before, nothing to copy
            for key, value in fields.items():
                if known.get(key) != _KIND.get(type(value), "float"):
                    break
            else:
                return fields
        return self._conform(measurement, fields)

    def _conform(self, measurement: str, fields: dict[str, FieldValue]) -> dict[str, FieldValue]:
        kinds = self._kinds.setdefault(measurement, {})
        out: dict[str, FieldValue] = {}
        for key, value in fields.items():
            kind = _KIND.get(type(value), "float")
            known = kinds.get(key)
            if known is None:
                if self._remembered < TYPES_REMEMBERED:
                    kinds[key] = kind
                    self._remembered += 1
                out[key] = value
            elif known == kind:
                out[key] = value
            else:
                converted = _convert(value, known)
                if converted is None:
                    self._refuse(measurement, key, f"{known}, got {kind}")
                else:
                    out[key] = converted
        return out

    def _refuse(self, measurement: str, key: str, types: str) -> None:
        with self._lock:
            count, _ = self.refused.get((measurement, key), (0, ""))
            if count == 0 and len(self.refused) >= TYPES_REMEMBERED:
                return
            self.refused[(measurement, key)] = (count + 1, types)

    def summary(self) -> str:
        """The most refused fields, for ``status``."""
        with self._lock:
            worst = sorted(self.refused.items(), key=lambda item: -item[1][0])[:2]
        return "; ".join(
            f"{count} values of {m}.{k} left out (the field is {types})"
            for (m, k), (count, types) in worst
        )


def _convert(value: FieldValue, kind: str) -> FieldValue | None:
    if kind == "string":
        return str(value).lower() if isinstance(value, bool) else str(value)
    if kind == "float":
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, str):
            return as_number(value)
        return float(value)
    if kind == "boolean" and isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
    return None


Decoder = Callable[[Mapping[str, str], bytes], list[Reading]]
