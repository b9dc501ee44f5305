from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitelemetry.config import InfluxConfig
from pitelemetry.writer import (
    AuthError,
    AutoWriter,
    DatabaseNotFoundError,
    RejectedError,
    RetryableError,
    TooLargeError,
    V1Writer,
    V2Writer,
    api_for_version,
    classify,
)
from tests.servers import InfluxDB1, VictoriaMetrics, free_port

NOW = time.time_ns()


@pytest.fixture
def v1(influxdb: InfluxDB1, database: str) -> Iterator[V1Writer]:
    writer = V1Writer(influxdb.url, database=database)
    yield writer
    writer.close()


def test_v1_writes_and_reads_back(influxdb: InfluxDB1, database: str, v1: V1Writer) -> None:
    v1.write([f"m,host=pi v=1.5 {NOW}", f"m,host=pi v=2.5 {NOW + 1}"])
    rows = influxdb.rows("SELECT v FROM m", database)
    assert [r["v"] for r in rows] == [1.5, 2.5]


@pytest.mark.parametrize("use_gzip", [True, False])
def test_v1_gzip_on_and_off(influxdb: InfluxDB1, database: str, use_gzip: bool) -> None:
    writer = V1Writer(influxdb.url, database=database, use_gzip=use_gzip)
    writer.write([f"g v={i}i {NOW + i}" for i in range(1000)])
    writer.close()
    assert influxdb.rows("SELECT count(v) FROM g", database)[0]["count"] == 1000


def test_missing_database_is_typed(influxdb: InfluxDB1) -> None:
    writer = V1Writer(influxdb.url, database="does_not_exist")
    with pytest.raises(DatabaseNotFoundError, match="pitelemetry provision"):
        writer.write([f"m v=1 {NOW}"])
    writer.close()


def test_field_type_conflict_is_a_partial_rejection(
    influxdb: InfluxDB1, database: str, v1: V1Writer
) -> None:
    v1.write([f"m v=1i {NOW}"])
    with pytest.raises(RejectedError) as caught:
        v1.write([f"m v=2i {NOW + 1}", f"m v=2.5 {NOW + 2}", f"m v=3i {NOW + 3}"])
    assert caught.value.dropped == 1
    assert "field type conflict" in str(caught.value)
    assert [r["v"] for r in influxdb.rows("SELECT v FROM m", database)] == [1, 2, 3]


def test_unparsable_line_is_counted_as_dropped(
    influxdb: InfluxDB1, database: str, v1: V1Writer
) -> None:
    with pytest.raises(RejectedError) as caught:
        v1.write([f"m v=1 {NOW}", "not line protocol", f"m v=2 {NOW + 1}"])
    assert caught.value.dropped == 1
    assert len(influxdb.rows("SELECT v FROM m", database)) == 2


def test_connection_refused_is_retryable() -> None:
    writer = V1Writer(f"http://127.0.0.1:{free_port()}", database="x")
    with pytest.raises(RetryableError, match="connection refused"):
        writer.write(["m v=1"])


def test_413_from_a_real_server(tmp_path: Path) -> None:
    server = InfluxDB1(tmp_path)
    server.config_path.write_text(
        server.config_path.read_text().replace(
            "log-enabled = false\n[cont", "log-enabled = false\n  max-body-size = 2000\n[cont"
        )
    )
    server.start()
    try:
        server.create_database("small")
        writer = V1Writer(server.url, database="small", use_gzip=False)
        with pytest.raises(TooLargeError):
            writer.write([f"m v={i} {NOW + i}" for i in range(500)])
        writer.write([f"m v={i} {NOW + i}" for i in range(10)])
        writer.close()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "kind"),
    [
        (401, '{"error":"authorization failed"}', None, AuthError),
        (403, '{"error":"user not authorized to write"}', None, AuthError),
        (404, '{"error":"database not found: \\"x\\""}', None, DatabaseNotFoundError),
        (413, '{"error":"Request Entity Too Large"}', None, TooLargeError),
        (429, '{"code":"too many requests"}', "30", RetryableError),
        (503, "Service Unavailable", None, RetryableError),
        (
            422,
            '{"code":"unprocessable entity","message":"failure writing points to database: '
            'partial write: points beyond retention policy dropped=2"}',
            None,
            RejectedError,
        ),
        (400, '{"code":"invalid","message":"unable to parse \'x\'"}', None, RejectedError),
    ],
)
def test_classify_by_status(status: int, body: str, retry_after: str | None, kind: type) -> None:
    error = classify(status, body, retry_after, 10)
    assert type(error) is kind
    if status == 429:
        assert isinstance(error, RetryableError)
        assert error.retry_after == 30.0
    if status == 422:
        assert isinstance(error, RejectedError)
        assert error.dropped == 2


def test_classify_success() -> None:
    assert classify(204, "", None, 1) is None


@pytest.mark.parametrize(
    ("version", "api"),
    [
        ("1.6.7~rc0", "v1"),
        ("1.8.10", "v1"),
        ("v2.7.11", "v2"),
        ("2.7.1", "v2"),
        ("3.0.1", "v2"),
        ("", "v1"),
    ],
)
def test_api_from_ping_version(version: str, api: str) -> None:
    assert api_for_version(version) == api


def test_auto_picks_v1_for_influxdb_1(influxdb: InfluxDB1, database: str) -> None:
    writer = AutoWriter(InfluxConfig(url=influxdb.url, database=database))
    writer.write([f"auto v=1 {NOW}"])
    writer.close()
    assert writer.api == "v1"
    assert len(influxdb.rows("SELECT v FROM auto", database)) == 1


def test_v2_write_api(victoria: VictoriaMetrics) -> None:
    writer = V2Writer(victoria.url, org="home", bucket="pitelemetry", token="t")
    writer.write([f"v2test,host=pi temp_c=21.5,count=3i {NOW}"])
    writer.close()
    deadline = time.monotonic() + 10
    while not (series := victoria.export('{__name__=~"v2test_.*"}')):
        assert time.monotonic() < deadline, "points never appeared in VictoriaMetrics"
        time.sleep(0.2)
    values = {s["metric"]["__name__"]: s["values"] for s in series}
    assert values == {"v2test_temp_c": [21.5], "v2test_count": [3]}
    assert all(s["metric"]["host"] == "pi" for s in series)


def test_v2_unreachable_is_retryable() -> None:
    writer = V2Writer(f"http://127.0.0.1:{free_port()}", org="o", bucket="b", token="t", timeout=2)
    with pytest.raises(RetryableError):
        writer.write(["m v=1"])
    writer.close()
