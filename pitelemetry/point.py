"""The ``Point`` type and its InfluxDB line-protocol encoder.

A point is a measurement name, tags (str -> str), fields (str -> float | int | bool | str)
and a timestamp in nanoseconds since the epoch. :class:`LineEncoder` turns points into
line protocol that InfluxDB 1.x, 2.x and 3.x read back exactly as written.

What InfluxDB 1.x's parser does, verified against a real ``influxd``, and what we do:

* In measurement names, tag keys, tag values and field keys, ``\\,``, ``\\ `` and ``\\=``
  are escapes; any other backslash is literal. We escape ``,``, `` `` and ``=``.
* A name ending in a backslash cannot be represented (the backslash would escape the
  separator after it), so trailing backslashes are removed.
* A line starting with ``#`` is a comment and silently ignored, so a measurement may
  not start with ``#``. ``time`` is refused as a tag or field key (HTTP 400).
* Control characters (newline, tab, NUL, ...) in names and tag values are replaced by
  U+FFFD, so nothing can split one point into two or forge a tag. String field values
  escape ``\\`` and ``"``; inside the quotes a newline is data, not a line break.
* Empty tag values are dropped (InfluxDB does the same); a point without fields, a NaN
  or infinite float, or an integer outside int64 is refused with :class:`PointError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import NamedTuple

FieldValue = float | int | bool | str

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_STRING_BYTES = 64 * 1024  # InfluxDB 1.x refuses longer string fields

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NAME_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
_RESERVED_KEYS = frozenset({"time"})
_CACHE_LIMIT = 4096


class PointError(ValueError):
    """A point InfluxDB would refuse or misread; the message names the offending part."""


class Point(NamedTuple):
    """One reading: ``measurement``, ``fields`` and optional ``tags`` and ``time_ns``.

    ``time_ns`` is taken by the input when it reads the value; ``None`` means "stamp it
    when the collection that produced it started".
    """

    measurement: str
    fields: Mapping[str, FieldValue]
    tags: Mapping[str, str] = {}
    time_ns: int | None = None


def clean_name(name: str) -> str:
    """Return ``name`` as InfluxDB will store it: control characters and trailing
    backslashes made safe (see the module docstring)."""
    if _CONTROL.search(name):
        name = _CONTROL.sub("\ufffd", name)
    if name.endswith("\\"):
        name = name.rstrip("\\")
    return name


def _escape_name(name: str) -> str:
    return clean_name(name).translate(_NAME_ESCAPES)


def escape_string_field(value: str) -> str:
    """Return a string field value quoted for line protocol."""
    if len(value) > MAX_STRING_BYTES // 4 and len(value.encode("utf-8", "replace")) > (
        MAX_STRING_BYTES
    ):
        raise PointError(f"string field longer than {MAX_STRING_BYTES} bytes")
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def _format_value(key: str, value: object) -> str:
    # Exact type checks: bool is a subclass of int and must not become "1i".
    kind = type(value)
    if kind is float:
        if math.isfinite(value):  # type: ignore[arg-type]
            return repr(value)
        raise PointError(f"field {key!r} is {value}; InfluxDB stores only finite floats")
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            return f"{value}i"
        raise PointError(f"field {key!r} = {value} does not fit a 64-bit integer")
    if kind is bool:
        return "true" if value else "false"
    if kind is str:
        return escape_string_field(value)  # type: ignore[arg-type]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _format_value(key, float(value))
    if isinstance(value, int):
        return _format_value(key, int(value))
    if isinstance(value, str):
        return escape_string_field(str(value))
    raise PointError(f"field {key!r} has unsupported type {kind.__name__}")


class LineEncoder:
    """Encodes points to line protocol, adding ``extra_tags`` (the host tag, an input's
    configured tags) to every point; a point's own tags win over them.

    The encoded series key (measurement and tags) and escaped field keys are cached:
    inputs emit the same few series every interval, so the hot path is formatting the
    field values. One encoder per input; it is not shared between threads.
    """

    def __init__(self, extra_tags: Mapping[str, str] | None = None) -> None:
        self._extra = dict(extra_tags or {})
        self._series: dict[tuple[object, ...], str] = {}
        self._field_keys: dict[str, str] = {}

    def series_key(self, measurement: str, tags: Mapping[str, str]) -> str:
        """Return the escaped ``measurement,tag=value,...`` prefix of a line."""
        cache_key = (measurement, *tags.items())
        key = self._series.get(cache_key)
        if key is None:
            key = self._build_series_key(measurement, tags)
            if len(self._series) >= _CACHE_LIMIT:
                self._series.clear()
            self._series[cache_key] = key
        return key

    def _build_series_key(self, measurement: str, tags: Mapping[str, str]) -> str:
        name = _escape_name(measurement)
        if not name:
            raise PointError(f"empty measurement name {measurement!r}")
        if name.startswith("#"):
            raise PointError(f"measurement {measurement!r} starts with '#' (a comment line)")
        merged: dict[str, str] = {}
        for source in (self._extra, tags):
            for tag_key, tag_value in source.items():
                if not isinstance(tag_key, str) or not isinstance(tag_value, str):
                    raise PointError(f"tag {tag_key!r}={tag_value!r} must be str=str")
                escaped_key = _escape_name(tag_key)
                if not escaped_key or escaped_key in _RESERVED_KEYS:
                    raise PointError(f"tag key {tag_key!r} is not allowed")
                escaped_value = _escape_name(tag_value)
                if escaped_value:
                    merged[escaped_key] = escaped_value
                else:
                    merged.pop(escaped_key, None)
        parts = [name]
        parts.extend(f"{k}={merged[k]}" for k in sorted(merged))
        return ",".join(parts)

    def _field_key(self, key: str) -> str:
        escaped = self._field_keys.get(key)
        if escaped is None:
            if not isinstance(key, str):
                raise PointError(f"field key {key!r} must be a str")
            escaped = _escape_name(key)
            if not escaped or escaped in _RESERVED_KEYS:
                raise PointError(f"field key {key!r} is not allowed")
            if len(self._field_keys) >= _CACHE_LIMIT:
                self._field_keys.clear()
            self._field_keys[key] = escaped + "="
            escaped += "="
        return escaped

    def encode(self, point: Point, default_time_ns: int) -> str:
        """Return one line (without the trailing newline) for ``point``."""
        fields = point.fields
        if not fields:
            raise PointError(f"point {point.measurement!r} has no fields")
        key = self.series_key(point.measurement, point.tags)
        field_key = self._field_key
        body = ",".join([field_key(k) + _format_value(k, v) for k, v in fields.items()])
        stamp = default_time_ns if point.time_ns is None else point.time_ns
        return f"{key} {body} {stamp}"
