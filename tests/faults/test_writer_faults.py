"""Faults on the way to InfluxDB: a typo in the URL, an error nobody expected in the
writer, a server that trickles its answer, a web server that is not InfluxDB answering
200, and a state directory the spool cannot write. Real servers throughout: the real
``influxd``, and real sockets for the misbehaving ones."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pitelemetry.pipeline import Pipeline
from pitelemetry.spool import DiskSpool, FallbackSpool, open_spool
from pitelemetry.writer import NotInfluxDBError, RetryableError, V1Writer
from tests.e2e.daemon import Daemon, write_config
from tests.servers import InfluxDB1
from tests.test_pipeline import FakeWriter, count, trusted_clock, wait_until


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://influx..lan:8086", "is not a valid host name"),
        ("http://127.0.0.1:99999", "is not a valid URL"),
        ("http://[::1", "is not a valid URL"),
        ("influx.lan:8086", "must start with http:// or https://"),
        ("http://:8086", "names no host"),
    ],
)
@pytest.mark.parametrize("command", ["check", "once", "run", "provision --dry-run"])
def test_a_typo_in_the_influxdb_url_is_a_config_error(
    tmp_path: Path, url: str, problem: str, command: str
) -> None:
    config = write_config(tmp_path, f'url = "{url}"')
    done = subprocess.run(
        [sys.executable, "-m", "pitelemetry", *command.split(), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"influxdb.url: {url!r}" in done.stderr
    assert problem in done.stderr
    assert "Traceback" not in done.stderr


def test_the_writer_thread_survives_an_error_nobody_expected(
    influxdb: InfluxDB1, database: str, tmp_path: Path
) -> None:
    """A bug in a writer (here a ValueError) spools the batch and retries; the thread
    lives on and the points arrive once writes work."""
    real = V1Writer(influxdb.url, database=database)

    class Buggy(FakeWriter):
        def write(self, lines: list[str]) -> None:
            if self.answers:
                self.answers.pop(0)
                raise ValueError("a bug in the writer")
            real.write(lines)

    spool = DiskSpool(tmp_path / "spool", 10**8)
    pipeline = Pipeline(
        Buggy(None), spool, trusted_clock(tmp_path), batch_size=10, flush_interval=0.05
    )
    pipeline.start()
    try:
        pipeline.submit([f"m v={i} {i + 1}" for i in range(25)])
        wait_until(lambda: count(influxdb, database) == 25, seconds=20)
        assert pipeline.alive(5)
    finally:
        pipeline.stop(2)
        real.close()
    assert pipeline.stats.write_failures == 1
    assert "ValueError('a bug in the writer')" in pipeline.stats.last_error
    assert pipeline.stats.dropped == {}


class Trickle:
    """A server that reads a request, then answers one byte every ``every`` seconds."""

    def __init__(self, every: float = 1.0) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.every = every
        self.stopping = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 204 No Content\r\nX-Influxdb-Version: 1.8\r\n\r\n":
                if self.stopping.wait(self.every):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    server = Trickle()
    yield server
    server.close()


def test_a_server_that_trickles_its_answer_is_abandoned_at_the_deadline(
    trickle: Trickle, tmp_path: Path
) -> None:
    writer = V1Writer(f"http://127.0.0.1:{trickle.port}", database="d", timeout=2.0)
    started = time.monotonic()
    with pytest.raises(RetryableError, match=r"no complete answer within 2s"):
        writer.write(["m v=1 1"])
    took = time.monotonic() - started
    assert 1.9 < took < 4.0  # the per-read timeout (2 s) alone would wait ~50 s
    spool = DiskSpool(tmp_path / "spool", 10**8)
    pipeline = Pipeline(writer, spool, trusted_clock(tmp_path), flush_interval=0.05)
    pipeline.start()
    try:
        pipeline.submit(["m v=1 1", "m v=2 2"])
        wait_until(lambda: spool.lines == 2, seconds=10)  # abandoned, spooled
        assert pipeline.alive(5)
    finally:
        pipeline.stop(3)
    assert "no complete answer within 2s" in pipeline.stats.last_error


class NotInflux(ThreadingHTTPServer):
    """Some web server at a mistyped URL: 200 and a page, to anything."""

    def __init__(self) -> None:
        class Page(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b"<html><body>It works!</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(("127.0.0.1", 0), Page)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def not_influx() -> Iterator[NotInflux]:
    server = NotInflux()
    yield server
    server.shutdown()
    server.server_close()


def test_a_200_from_something_that_is_not_influxdb_writes_nothing(
    not_influx: NotInflux, tmp_path: Path
) -> None:
    with pytest.raises(NotInfluxDBError, match="it is not InfluxDB; check"):
        V1Writer(not_influx.url, database="d").write(["m v=1 1"])
    config = write_config(tmp_path, f'url = "{not_influx.url}"')
    daemon = Daemon(config).start()
    try:
        state = daemon.wait_for(lambda s: s["spool"]["points"] > 0 and s["influxdb"]["problem"])
    finally:
        daemon.stop()
    assert state["points"]["written"] == 0
    assert "it is not InfluxDB" in state["influxdb"]["problem"]
    assert "it is not InfluxDB" in daemon.command("check").stdout


def test_a_spool_directory_that_cannot_be_written_keeps_the_outage_in_memory(
    influxdb: InfluxDB1, tmp_path: Path
) -> None:
    """The spool directory turns unusable under the daemon (here: replaced by a file,
    which refuses writes as a read-only card or a root-owned directory would, whoever
    runs the test). The outage's points are kept in memory and written once InfluxDB is
    back; ``degraded`` says so."""
    directory = tmp_path / "spool"
    spool = open_spool(directory, 10**8)
    assert isinstance(spool, FallbackSpool)
    shutil.rmtree(directory)
    directory.write_text("not a directory")
    missing = "outage"  # the database does not exist yet: every write fails, retryably
    pipeline = Pipeline(
        V1Writer(influxdb.url, database=missing),
        spool,
        trusted_clock(tmp_path),
        flush_interval=0.05,
    )
    pipeline.start()
    try:
        pipeline.submit([f"m v={i} {i + 1}" for i in range(30)])
        wait_until(lambda: spool.lines == 30)
        assert "cannot write" in spool.degraded
        assert pipeline.stats.dropped == {}
        influxdb.create_database(missing)
        try:
            wait_until(lambda: count(influxdb, missing) == 30, seconds=90)
        finally:
            pipeline.stop(1)
    finally:
        influxdb.drop_database(missing)
    assert spool.lines == 0


def test_check_names_a_state_directory_it_cannot_write(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    config = write_config(tmp_path, 'url = "http://127.0.0.1:9"')
    text = config.read_text().replace(
        f'state_dir = "{tmp_path}/state"', f'state_dir = "{blocked}/state"'
    )
    config.write_text(text)
    done = Daemon(config).command("check")
    assert done.returncode == 1
    assert f"FAIL state      cannot write {blocked}/state" in done.stdout


class Flood:
    """A server answering 500 with a body of 2 GiB, streamed until the client hangs up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                b"Content-Length: 2147483648\r\n\r\n"
            )
            chunk = b"x" * 65536
            with contextlib.suppress(OSError):
                for _ in range(32768):
                    conn.sendall(chunk)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_gigabyte_error_body_is_not_read_into_memory() -> None:
    flood = Flood()
    try:
        writer = V1Writer(f"http://127.0.0.1:{flood.port}", database="d", timeout=5.0)
        before = rss_bytes()
        started = time.monotonic()
        with pytest.raises(RetryableError, match="InfluxDB answered 500"):
            writer.write(["m v=1 1"])
        writer.close()
        took = time.monotonic() - started
        grew = rss_bytes() - before
    finally:
        flood.listener.close()
    assert took < 3
    assert grew < 16 * 1024 * 1024
