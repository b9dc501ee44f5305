"""The ``Point`` type and its InfluxDB line-protocol encoder.

A point is a measurement name, tags (str -> str), fields (str -> float | int | bool | str)
and a timestamp in nanoseconds since the epoch. :class:`LineEncoder` turns points into
line protocol that InfluxDB 1.x, 2.x and 3.x read back exactly as written.

What InfluxDB 1.x's parser does, verified against a real ``influxd``, and what we do:

* In measurement names, tag keys, tag values and field keys, ``\\,``, ``\\ `` and ``\\=``
  are escapes; any other backslash in a tag is literal (``\\\\`` stays two). We escape
  exactly those three characters.
* In measurement names and field keys InfluxDB also unescapes ``\\"``, and a backslash
  before another backslash or an escapable character is read inconsistently (1.6.7
  stores ``a\\\\,b`` as ``a,b`` but ``m\\\\x`` as ``m\\\\x``), so such a backslash is
  replaced by U+FFFD. Any other backslash (``m\\x``) is stored exactly, and kept.
* A name ending in a backslash cannot be represented (the backslash would escape the
  separator after it), so trailing backslashes are removed.
* A line starting with ``#`` is a comment and silently ignored, so a measurement may
  not start with ``#``. ``time`` is refused as a tag or field key (HTTP 400).
* Control characters (newline, tab, NUL, ...) in names and tag values are replaced by
  U+FFFD, so nothing can split one point into two or forge a tag. String field values
  escape ``\\`` and ``"``; inside the quotes a newline is data, not a line break.
* Empty tag values are dropped (InfluxDB does the same). A NaN or infinite float field
  is left out and counted (``LineEncoder.dropped_fields``), so the point's other fields
  are kept; a point left without fields, an integer outside int64, or a timestamp
  outside InfluxDB's range (``MIN_TIME_NS`` .. ``MAX_TIME_NS``: 1677-09-21 to
  2262-04-11, which the server would refuse as a partial write) is refused with
  :class:`PointError`.
* String field values are limited to 64 KiB, the limit InfluxDB's documentation gives.
  1.6.7 itself stores longer ones (a 16 MiB string was written and read back whole,
  measured); we keep to the documented limit so a point is valid on every version.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

FieldValue = float | int | bool | str

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_STRING_BYTES = 64 * 1024  # InfluxDB's documented limit (see the module docstring)
# InfluxDB's time range: "time outside range -9223372036854775806 - 9223372036854775806".
MIN_TIME_NS = -9223372036854775806
MAX_TIME_NS = 9223372036854775806

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
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


def _escape_tag(name: str) -> str:
    return clean_name(name).translate(_ESCAPES)


_AMBIGUOUS_BACKSLASH = re.compile(r'\\(?=[\\,= "])')


def clean_key(name: str) -> str:
    """Return a measurement name or field key as InfluxDB will store it: as
    :func:`clean_name`, and a backslash before another backslash, a separator or a quote
    replaced (see the module docstring)."""
    name = clean_name(name)
    return _AMBIGUOUS_BACKSLASH.sub("\ufffd", name) if "\\" in name else name


def _escape_key(name: str) -> str:
    return clean_key(name).translate(_ESCAPES)


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

    Inputs emit the same few series with the same fields every interval, so the encoder
    caches, per (measurement, tags, field names), the escaped series key and a small
    function generated for exactly those fields (see :func:`_compile_fields`). The hot
    path is then one dict lookup and one call. One encoder per input; not thread-safe.
    """

    def __init__(self, extra_tags: Mapping[str, str] | None = None) -> None:
        self._extra = dict(extra_tags or {})
        self._cache: dict[tuple[object, ...], tuple[str, _FieldsEncoder]] = {}
        self.dropped_fields = 0  # NaN or infinite floats left out of otherwise good points

    def series_key(self, measurement: str, tags: Mapping[str, str]) -> str:
        """Return the escaped ``measurement,tag=value,...`` prefix of a line."""
        name = _escape_key(measurement)
        if not name:
            raise PointError(f"empty measurement name {measurement!r}")
        if name.startswith("#"):
            raise PointError(f"measurement {measurement!r} starts with '#' (a comment line)")
        merged: dict[str, str] = {}
        for source in (self._extra, tags):
            for tag_key, tag_value in source.items():
                if not isinstance(tag_key, str) or not isinstance(tag_value, str):
                    raise PointError(f"tag {tag_key!r}={tag_value!r} must be str=str")
                escaped_key = _escape_tag(tag_key)
                if not escaped_key or escaped_key in _RESERVED_KEYS:
                    raise PointError(f"tag key {tag_key!r} is not allowed")
                escaped_value = _escape_tag(tag_value)
                if escaped_value:
                    merged[escaped_key] = escaped_value
                else:
                    merged.pop(escaped_key, None)
        parts = [name]
        parts.extend(f"{k}={merged[k]}" for k in sorted(merged))
        return ",".join(parts)

    def encode(self, point: Point, default_time_ns: int) -> str:
        """Return one line (without the trailing newline) for ``point``."""
        fields = point.fields
        cache_key = (point.measurement, *point.tags.items(), *fields)
        entry = self._cache.get(cache_key)
        if entry is None:
            if not fields:
                raise PointError(f"point {point.measurement!r} has no fields")
            entry = (self.series_key(point.measurement, point.tags), _compile_fields(fields))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[cache_key] = entry
        series, encode_fields = entry
        stamp = default_time_ns if point.time_ns is None else point.time_ns
        if not MIN_TIME_NS <= stamp <= MAX_TIME_NS:
            raise PointError(f"time {stamp} is outside InfluxDB's range")
        line = encode_fields(fields, series, stamp)
        if line is None:  # a value of another type, NaN, out of range: say exactly what
            kept = {k: v for k, v in fields.items() if not _non_finite(v)}
            if len(kept) < len(fields):
                self.dropped_fields += len(fields) - len(kept)
                if not kept:
                    raise PointError(
                        f"point {point.measurement!r}: every field is NaN or infinite; "
                        "InfluxDB stores only finite floats"
                    )
            body = ",".join([_field_key(k) + _format_value(k, v) for k, v in kept.items()])
            line = f"{series} {body} {stamp}"
        return line


_FieldsEncoder = Callable[[Mapping[str, FieldValue], str, int], "str | None"]


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _field_key(key: str) -> str:
    if not isinstance(key, str):
        raise PointError(f"field key {key!r} must be a str")
    escaped = _escape_key(key)
    if not escaped or escaped in _RESERVED_KEYS:
        raise PointError(f"field key {key!r} is not allowed")
    return escaped + "="


def _compile_fields(fields: Mapping[str, FieldValue]) -> _FieldsEncoder:
    """Generate a function that encodes a field set with these keys, in this order,
    with these value types; it returns ``None`` when the values do not fit (another
    type, NaN, an int beyond int64), and the caller falls back to the general path.

    A generated f-string formats about twice as fast as a loop over the fields, which
    matters at hundreds of thousands of points per second. Keys enter the generated
    code only as arguments, never as source text.
    """
    args: dict[str, object] = {"_escape": escape_string_field}
    loads, checks, parts = [], [], []
    for index, (key, value) in enumerate(fields.items()):
        v, k = f"v{index}", f"k{index}"
        args[k] = ("," if index else " ") + _field_key(key)
        args[f"n{index}"] = key
        loads.append(f"{v} = fields[n{index}]")
        kind = type(value)
        if kind is float:
            checks.append(f"type({v}) is float and {v} - {v} == 0.0")
            parts.append(f"{{{k}}}{{{v}!r}}")
        elif kind is int:
            checks.append(f"type({v}) is int and {INT64_MIN} <= {v} <= {INT64_MAX}")
            parts.append(f"{{{k}}}{{{v}}}i")
        elif kind is bool:
            checks.append(f"type({v}) is bool")
            parts.append(f"{{{k}}}{{'true' if {v} else 'false'}}")
        elif kind is str:
            checks.append(f"type({v}) is str")
            parts.append(f"{{{k}}}{{_escape({v})}}")
        else:
            return _no_fast_path
    signature = ", ".join(f"{name}={name}" for name in args)
    source = (
        f"def encode(fields, series, stamp, {signature}):\n"
        f"    {'; '.join(loads)}\n"
        f"    if {' and '.join(checks)}:\n"
        f'        return f"{{series}}{"".join(parts)} {{stamp}}"\n'
        f"    return None\n"
    )
    namespace: dict[str, Any] = {}
    exec(compile(source, "<line-protocol>", "exec"), dict(args), namespace)  # noqa: S102
    encoder: _FieldsEncoder = namespace["encode"]
    return encoder


def _no_fast_path(fields: Mapping[str, FieldValue], series: str, stamp: int) -> None:
    del fields, series, stamp
