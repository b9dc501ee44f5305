"""The one HTTP seam: the writer, ``/ping``, InfluxQL, provisioning and the Grafana client
all send through an injected :class:`~pitelemetry.transport.Transport`.

Two transports are used here. :class:`Recording` wraps the real :class:`HttpTransport`
and keeps every request, to show what a command sends to the real influxd and the fake
Grafana. :class:`Scripted` answers from a list without any socket, to pin down how the
writer reads each answer it can get.
"""

from __future__ import annotations

import gzip
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pitelemetry import influxql
from pitelemetry.check import run_checks
from pitelemetry.config import load
from pitelemetry.grafana import GrafanaClient
from pitelemetry.provision import provision
from pitelemetry.transport import MAX_ANSWER_BYTES, Answer, HttpTransport, TransportError
from pitelemetry.writer import (
    AuthError,
    NotInfluxDBError,
    RejectedError,
    RetryableError,
    V1Writer,
    ping,
)
from tests.fake_grafana import TOKEN, FakeGrafana
from tests.servers import InfluxDB1, free_port


@dataclass
class Sent:
    method: str
    url: str
    body: bytes | None
    headers: dict[str, str]


@dataclass
class Recording:
    """The real transport, with every request kept."""

    inner: HttpTransport = field(default_factory=HttpTransport)
    sent: list[Sent] = field(default_factory=list)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
        max_bytes: int | None = MAX_ANSWER_BYTES,
    ) -> Answer:
        self.sent.append(Sent(method, url, body, dict(headers or {})))
        return self.inner.request(method, url, body, headers, timeout=timeout, max_bytes=max_bytes)

    def close(self) -> None:
        self.inner.close()

    def statements(self) -> list[str]:
        """The InfluxQL statements sent to ``/query``."""
        return [
            urllib.parse.parse_qs(s.body.decode())["q"][0]
            for s in self.sent
            if s.url.split("?")[0].endswith("/query") and s.body
        ]


@dataclass
class Scripted:
    """Answers in order from ``answers``; an exception in the list is raised instead."""

    answers: list[Answer | TransportError]
    sent: list[Sent] = field(default_factory=list)

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
        max_bytes: int | None = MAX_ANSWER_BYTES,
    ) -> Answer:
        del timeout, max_bytes
        self.sent.append(Sent(method, url, body, dict(headers or {})))
        answer = self.answers.pop(0)
        if isinstance(answer, TransportError):
            raise answer
        return answer

    def close(self) -> None:
        pass


# -- the writer reads every answer through the seam ---------------------------------------


def test_the_writer_sends_gzip_line_protocol_with_its_query_and_credentials() -> None:
    http = Scripted([Answer(204, {"x-influxdb-version": "1.8.10"})])
    writer = V1Writer(
        "http://pi.local:8086/influx/",
        database="home",
        retention_policy="raw",
        username="collector",
        password="s3cret",
        transport=http,
    )
    writer.write(["m v=1 1", "m v=2 2"])
    (sent,) = http.sent
    url = urllib.parse.urlsplit(sent.url)
    assert (sent.method, url.netloc, url.path) == ("POST", "pi.local:8086", "/influx/write")
    assert urllib.parse.parse_qs(url.query) == {"db": ["home"], "rp": ["raw"], "precision": ["ns"]}
    assert sent.body is not None
    assert gzip.decompress(sent.body) == b"m v=1 1\nm v=2 2\n"
    assert sent.headers["Content-Encoding"] == "gzip"
    assert sent.headers["Authorization"] == "Basic Y29sbGVjdG9yOnMzY3JldA=="


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (Answer(200, {}, b"<html>it works</html>"), NotInfluxDBError),
        (Answer(401, {}, b'{"error":"authorization failed"}'), AuthError),
        (Answer(503, {"retry-after": "7"}, b"busy"), RetryableError),
        (Answer(400, {}, b'{"error":"partial write: dropped=1"}'), RejectedError),
        (TransportError("connection refused"), RetryableError),
    ],
)
def test_the_writer_types_each_answer(answer: Answer | TransportError, kind: type) -> None:
    writer = V1Writer("http://127.0.0.1:8086", database="d", transport=Scripted([answer]))
    with pytest.raises(kind) as raised:
        writer.write(["m v=1 1", "m v=2 2"])
    if isinstance(answer, TransportError):
        assert str(raised.value) == "cannot reach InfluxDB at 127.0.0.1:8086: connection refused"
    if kind is RetryableError and isinstance(answer, Answer):
        assert raised.value.retry_after == 7  # type: ignore[attr-defined]
    if kind is RejectedError:
        assert raised.value.dropped == 1  # type: ignore[attr-defined]


def test_ping_defaults_the_port_by_scheme() -> None:
    http = Scripted([Answer(204, {"x-influxdb-version": "v2.7.11"})] * 2)
    assert ping("http://influx.lan", transport=http) == "v2.7.11"
    assert ping("https://influx.example.org/db", transport=http) == "v2.7.11"
    assert [s.url for s in http.sent] == [
        "http://influx.lan:8086/ping",
        "https://influx.example.org:443/db/ping",
    ]


def test_influxql_refuses_an_answer_that_is_not_influxdbs_json() -> None:
    http = Scripted([Answer(200, {"x-influxdb-version": "1.8"}, b"<html></html>")])
    with pytest.raises(RetryableError, match="other than InfluxDB's JSON"):
        influxql.query("http://127.0.0.1:8086", "SHOW DATABASES", transport=http)


# -- every command's requests go through the one it is given --------------------------


def _config(tmp_path: Path, influx_url: str, grafana_url: str) -> Path:
    (tmp_path / "grafana.token").write_text(TOKEN)
    path = tmp_path / "pitelemetry.toml"
    path.write_text(f"""
[agent]
state_dir = "{tmp_path}/state"
[influxdb]
url = "{influx_url}"
database = "seam"
[grafana]
url = "{grafana_url}"
token_file = "{tmp_path}/grafana.token"
[[inputs.system]]
""")
    return path


def test_provision_dry_run_sends_only_reads_through_its_transport(
    tmp_path: Path, influxdb: InfluxDB1
) -> None:
    with FakeGrafana() as grafana:
        config = load(_config(tmp_path, influxdb.url, grafana.url), environ={})
        http = Recording()
        changes = list(provision(config, dry_run=True, wait=3, transport=http))
        http.close()
        assert grafana.writes() == []
    assert changes
    influx = [s for s in http.sent if s.url.startswith(influxdb.url)]
    to_grafana = [s for s in http.sent if s.url.startswith(grafana.url)]
    assert len(influx) + len(to_grafana) == len(http.sent)
    assert influx[0].url == f"{influxdb.url}/ping"
    statements = http.statements()
    assert statements
    assert all(s.startswith("SHOW ") for s in statements), statements
    assert to_grafana
    assert {s.method for s in to_grafana} == {"GET"}
    assert all(s.headers.get("Authorization") == f"Bearer {TOKEN}" for s in to_grafana[1:])


def test_check_asks_influxdb_through_its_transport(tmp_path: Path, influxdb: InfluxDB1) -> None:
    config = load(_config(tmp_path, influxdb.url, "http://127.0.0.1:9"), environ={})
    http = Recording()
    results = list(run_checks(config, transport=http))
    http.close()
    influx = next(r for r in results if r.subject == "influxdb")
    assert "database 'seam' does not exist" in influx.detail or not influx.ok
    assert http.sent[0].url == f"{influxdb.url}/ping"
    assert "SHOW DATABASES" in http.statements()


def test_grafana_basic_auth_and_json_bodies_through_the_seam() -> None:
    with FakeGrafana() as grafana:
        http = Recording()
        client = GrafanaClient(grafana.url, username="admin", password="admin", transport=http)
        client.create_folder("telemetry-uid", "Telemetry")
        client.close()
    post = next(s for s in http.sent if s.method == "POST")
    assert post.headers["Authorization"] == "Basic YWRtaW46YWRtaW4="
    assert post.headers["Content-Type"] == "application/json"
    assert b'"title": "Telemetry"' in (post.body or b"")


# -- HttpTransport: kept-alive connections, limits, failures ----------------------------


class _Counting(ThreadingHTTPServer):
    """Answers ``GET /n`` with ``n`` bytes and counts the connections it accepted."""

    daemon_threads = True
    connections = 0

    def get_request(self) -> tuple[socket.socket, Any]:
        self.connections += 1
        return super().get_request()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    def do_GET(self) -> None:
        size = int(self.path.strip("/"))
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("X-Influxdb-Version", "1.8.10")
        self.end_headers()
        self.wfile.write(b"x" * size)


@pytest.fixture
def counting() -> Iterator[_Counting]:
    server = _Counting(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_one_connection_carries_many_requests(counting: _Counting) -> None:
    http = HttpTransport()
    url = f"http://127.0.0.1:{counting.server_address[1]}"
    for _ in range(20):
        answer = http.request("GET", f"{url}/10", timeout=5)
        assert (answer.status, answer.body, answer.truncated) == (200, b"x" * 10, False)
        assert answer.header("X-INFLUXDB-VERSION") == "1.8.10"
    http.close()
    assert counting.connections == 1


def test_requests_from_several_threads_each_get_their_own_answer(counting: _Counting) -> None:
    http = HttpTransport()
    url = f"http://127.0.0.1:{counting.server_address[1]}"
    sizes: dict[int, list[int]] = {n: [] for n in range(1, 9)}

    def ask(n: int) -> None:
        for _ in range(25):
            sizes[n].append(len(http.request("GET", f"{url}/{n}", timeout=5).body))

    threads = [threading.Thread(target=ask, args=(n,)) for n in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    http.close()
    assert sizes == {n: [n] * 25 for n in sizes}
    assert counting.connections <= len(sizes)


def test_an_oversized_answer_is_cut_and_its_connection_not_reused(counting: _Counting) -> None:
    http = HttpTransport()
    url = f"http://127.0.0.1:{counting.server_address[1]}"
    big = http.request("GET", f"{url}/1000000", timeout=5, max_bytes=1000)
    assert (len(big.body), big.truncated) == (1000, True)
    assert http.request("GET", f"{url}/5", timeout=5).body == b"xxxxx"
    http.close()
    assert counting.connections == 2


def test_no_answer_is_a_transport_error_in_a_few_words() -> None:
    http = HttpTransport()
    with pytest.raises(TransportError, match=r"^connection refused$"):
        http.request("GET", f"http://127.0.0.1:{free_port()}/ping", timeout=2)
    with pytest.raises(TransportError, match="host name not found"):
        http.request("GET", "http://no-such-host.invalid/ping", timeout=2)
