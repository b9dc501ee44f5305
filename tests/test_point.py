from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitelemetry.point import LineEncoder, Point, PointError, clean_key, clean_name
from pitelemetry.writer import V1Writer
from tests.servers import InfluxDB1

T = 1_700_000_000_000_000_000


def encode(point: Point, extra: dict[str, str] | None = None) -> str:
    return LineEncoder(extra).encode(point, T)


def test_every_field_type_and_sorted_tags() -> None:
    line = encode(Point("m", {"f": 1.5, "i": -3, "b": True, "s": "hi"}, {"z": "1", "a": "2"}))
    assert line == f'm,a=2,z=1 f=1.5,i=-3i,b=true,s="hi" {T}'


def test_escaping_of_names_tags_and_strings() -> None:
    point = Point("cpu load,x", {"field key=": 'say "hi" \\'}, {"tag,key": "a value=b"})
    assert encode(point) == (
        f'cpu\\ load\\,x,tag\\,key=a\\ value\\=b field\\ key\\=="say \\"hi\\" \\\\" {T}'
    )


def test_extra_tags_are_added_and_the_points_own_tags_win() -> None:
    line = encode(Point("m", {"v": 1.0}, {"room": "attic"}), {"host": "pi", "room": "x"})
    assert line == f"m,host=pi,room=attic v=1.0 {T}"


def test_input_stamp_wins_over_the_collection_stamp() -> None:
    assert encode(Point("m", {"v": 1.0}, {}, 42)).endswith(" 42")


def test_control_characters_cannot_split_a_point() -> None:
    line = encode(Point("m\nx", {"f\r": "a\nb"}, {"t\n": "v\x00"}))
    assert line.count("\n") == 1  # only inside the quoted string value
    assert line.startswith("m\ufffdx,t\ufffd=v\ufffd f\ufffd=")


def test_trailing_backslash_is_removed_and_empty_tags_dropped() -> None:
    assert clean_name("a\\\\") == "a"
    assert encode(Point("m\\", {"v": 1.0}, {"t": "", "u": "\\"})) == f"m v=1.0 {T}"


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (Point("m", {}), "no fields"),
        (Point("m", {"v": math.nan}), "every field is NaN or infinite"),
        (Point("m", {"v": math.inf, "w": -math.inf}), "every field is NaN or infinite"),
        (Point("m", {"v": 1.0}, {}, -(2**63) + 1), "outside InfluxDB's range"),
        (Point("m", {"v": 1.0}, {}, 2**63 - 1), "outside InfluxDB's range"),
        (Point("m", {"v": 2**63}), "64-bit"),
        (Point("", {"v": 1.0}), "empty measurement"),
        (Point("#m", {"v": 1.0}), "comment"),
        (Point("m", {"time": 1.0}), "not allowed"),
        (Point("m", {"v": 1.0}, {"time": "x"}), "not allowed"),
        (Point("m", {"v": [1]}), "unsupported type"),  # type: ignore[dict-item]
        (Point("m", {"v": "x" * 70_000}), "longer than"),
    ],
)
def test_points_influxdb_would_refuse_are_refused(point: Point, message: str) -> None:
    with pytest.raises(PointError, match=message):
        encode(point)


def test_a_nan_field_is_left_out_and_counted_the_others_kept() -> None:
    encoder = LineEncoder()
    assert encoder.encode(Point("m", {"a": 1.0, "b": math.nan, "c": math.inf}), T) == (
        f"m a=1.0 {T}"
    )
    assert encoder.dropped_fields == 2
    # The same fields with finite values again take the fast path, unchanged.
    assert encoder.encode(Point("m", {"a": 1.0, "b": 2.0, "c": 3.0}), T) == (
        f"m a=1.0,b=2.0,c=3.0 {T}"
    )


def test_the_edges_of_influxdbs_time_range_are_kept() -> None:
    assert encode(Point("m", {"v": 1.0}, {}, -9223372036854775806)).endswith(
        " -9223372036854775806"
    )
    assert encode(Point("m", {"v": 1.0}, {}, 9223372036854775806)).endswith(" 9223372036854775806")


def test_int_subclasses_and_bool_keep_their_meaning() -> None:
    assert encode(Point("m", {"b": False, "i": 7})).split(" ")[1] == "b=false,i=7i"


# -- property: random points read back equal from the real InfluxDB ----------------------

names = st.text(min_size=1, max_size=12).filter(lambda s: clean_name(s) not in ("", "time"))
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=40),
)
_numbers = itertools.count()


@st.composite
def points(draw: st.DrawFn) -> Point:
    tag_keys = draw(st.lists(names, max_size=3, unique_by=clean_name))
    field_keys = draw(
        st.lists(
            names.filter(lambda k: clean_key(k) not in map(clean_name, tag_keys)),
            min_size=1,
            max_size=4,
            unique_by=clean_key,
        )
    )
    measurement = draw(names.filter(lambda s: not clean_key(s).startswith("#")))
    return Point(
        measurement,
        {k: draw(field_values) for k in field_keys},
        {k: draw(names) for k in tag_keys},
        draw(st.integers(min_value=0, max_value=2**62)),
    )


def _expected_tags(point: Point) -> dict[str, str]:
    return {clean_name(k): clean_name(v) for k, v in point.tags.items() if clean_name(v)}


def _read_back(influxdb: InfluxDB1, database: str) -> list[dict[str, Any]]:
    rows = []
    for result in influxdb.query("SELECT *::field FROM /.*/ GROUP BY *", database):
        for series in result.get("series", []):
            for values in series["values"]:
                fields = {
                    k: v for k, v in zip(series["columns"], values, strict=True) if v is not None
                }
                stamp = fields.pop("time")
                tags = {k: v for k, v in (series.get("tags") or {}).items() if v}
                rows.append({"name": series["name"], "tags": tags, "fields": fields, "time": stamp})
    return rows


@pytest.mark.e2e
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(point=points())
def test_random_points_read_back_equal(influxdb: InfluxDB1, point: Point) -> None:
    database = f"prop{next(_numbers)}"
    influxdb.create_database(database)
    try:
        writer = V1Writer(influxdb.url, database=database)
        try:
            writer.write([LineEncoder().encode(point, 0)])
        finally:
            writer.close()
        [row] = _read_back(influxdb, database)
    finally:
        influxdb.drop_database(database)
    assert row["name"] == clean_key(point.measurement)
    assert row["tags"] == _expected_tags(point)
    assert row["time"] == point.time_ns
    expected = {clean_key(k): v for k, v in point.fields.items()}
    assert row["fields"].keys() == expected.keys()
    for key, value in expected.items():
        got = row["fields"][key]
        # JSON has one number type: InfluxDB prints 4.5e16 as 45000000000000000.
        if isinstance(value, float):
            assert type(got) in (int, float)
            assert float(got) == value
        else:
            assert type(got) is type(value)
            assert got == value


tricky_names = st.text(alphabet='ab\\, ="', min_size=1, max_size=8).filter(
    lambda s: clean_key(s) not in ("", "time") and not clean_key(s).startswith("#")
)


def test_a_backslash_influxdb_stores_exactly_is_kept() -> None:
    assert clean_key("C:\\temp") == "C:\\temp"
    assert clean_key("a\\,b") == "a\ufffd,b"  # before a separator: ambiguous
    assert clean_key('a\\"b') == 'a\ufffd"b'
    assert clean_key("a\\\\b") == "a\ufffd\\b"


@pytest.mark.e2e
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(measurement=tricky_names, key=tricky_names)
def test_backslashes_and_separators_in_names_read_back_as_cleaned(
    influxdb: InfluxDB1, measurement: str, key: str
) -> None:
    database = f"prop{next(_numbers)}"
    influxdb.create_database(database)
    try:
        writer = V1Writer(influxdb.url, database=database)
        try:
            writer.write([LineEncoder().encode(Point(measurement, {key: 1.0}), 1)])
        finally:
            writer.close()
        [row] = _read_back(influxdb, database)
    finally:
        influxdb.drop_database(database)
    assert row["name"] == clean_key(measurement)
    assert list(row["fields"]) == [clean_key(key)]
