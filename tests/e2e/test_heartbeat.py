"""The heartbeat against a local catcher: success pings while the real InfluxDB takes
the writes, a failure ping with the reason soon after it is stopped, and the URL (a
secret) nowhere in the log."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pitelemetry.heartbeat import request_for, style_of
from tests.e2e.daemon import Daemon, write_config
from tests.servers import InfluxDB1

pytestmark = pytest.mark.e2e
SECRET = "ping/5a1c0d6e-93f4-4c1b-8e7a-0f2b9c4d1e77"


class Catcher:
    """An HTTP server that records every request: (time, method, path, body)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str, str]] = []
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                del format, args

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                catcher.seen.append((time.monotonic(), self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def do_GET(self) -> None:
                self._record()

            def do_POST(self) -> None:
                self._record()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, method: str, suffix: str, after: float = 0.0, within: float = 30) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for stamp, seen_method, path, _ in list(self.seen):
                if stamp >= after and seen_method == method and path.endswith(suffix):
                    return stamp
            time.sleep(0.05)
        raise AssertionError(f"no {method} ...{suffix} within {within}s: {self.seen}")


@pytest.fixture
def catcher() -> Iterator[Catcher]:
    catcher = Catcher()
    yield catcher
    catcher.server.shutdown()
    catcher.server.server_close()


def test_success_while_writes_succeed_failure_soon_after_influxdb_stops(
    tmp_path: Path, catcher: Catcher
) -> None:
    influxdb = InfluxDB1(tmp_path / "influxdb")
    influxdb.start()
    interval = 2.0
    try:
        influxdb.create_database("beat")
        config = write_config(
            tmp_path,
            f'url = "{influxdb.url}"\ndatabase = "beat"',
            agent=f'heartbeat_url = "{catcher.url}/{SECRET}"\n'
            f'heartbeat_interval = "{interval:g}s"\nlog_level = "debug"',
        )
        daemon = Daemon(config).start()
        first = catcher.wait_for("GET", SECRET)
        catcher.wait_for("GET", SECRET, after=first + 0.5)  # and again, each interval
        deadline = time.monotonic() + 20
        while ": up" not in (status := daemon.command("status").stdout):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert "heartbeat " in status
        assert "(healthchecks)" in status
        assert SECRET not in status
        stopped = time.monotonic()
        influxdb.stop()
        failed = catcher.wait_for("POST", f"{SECRET}/fail", after=stopped)
        assert daemon.stop() == 0
    finally:
        influxdb.stop()
    took = failed - stopped
    print(f"failure ping {took:.1f}s after InfluxDB stopped (interval {interval:g}s)")
    assert took <= 2 * interval + 2.0  # two intervals, and the 1 s flush that finds it down
    reasons = [body for _, method, _, body in catcher.seen if method == "POST"]
    assert "writes to InfluxDB failing" in reasons[0]
    assert SECRET not in daemon.stderr  # debug level: every request is logged, not this one
    assert catcher.url not in daemon.stderr


def test_the_style_follows_the_url() -> None:
    kuma = "https://status.example.net/api/push/Xk29sLq0?status=up&msg=OK&ping="
    assert style_of(kuma) == "uptimekuma"
    assert style_of("https://hc-ping.com/5a1c0d6e") == "healthchecks"
    assert style_of("https://hc-ping.com/5a1c0d6e", "uptimekuma") == "uptimekuma"
    down = request_for(kuma, "uptimekuma", healthy=False, reason="writes failing")
    assert down.full_url == (
        "https://status.example.net/api/push/Xk29sLq0?ping=&status=down&msg=writes+failing"
    )
    assert down.get_method() == "GET"
    up = request_for("https://hc-ping.com/5a1c0d6e", "healthchecks", healthy=True, reason="")
    assert (up.full_url, up.get_method()) == ("https://hc-ping.com/5a1c0d6e", "GET")
    fail = request_for("https://hc-ping.com/5a1c0d6e", "healthchecks", healthy=False, reason="x")
    assert (fail.full_url, fail.get_method(), fail.data) == (
        "https://hc-ping.com/5a1c0d6e/fail",
        "POST",
        b"x",
    )


def test_a_monitor_that_cannot_be_reached_shows_in_status(tmp_path: Path) -> None:
    from tests.servers import free_port  # noqa: PLC0415

    influxdb = InfluxDB1(tmp_path / "influxdb")
    influxdb.start()
    try:
        influxdb.create_database("beat")
        config = write_config(
            tmp_path,
            f'url = "{influxdb.url}"\ndatabase = "beat"',
            agent=f'heartbeat_url = "http://127.0.0.1:{free_port()}/{SECRET}"\n'
            'heartbeat_interval = "1s"',
        )
        daemon = Daemon(config).start()
        deadline = time.monotonic() + 30
        while "NOT DELIVERED" not in (status := daemon.command("status").stdout):
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert daemon.stop() == 0
    finally:
        influxdb.stop()
    assert "the monitor cannot be reached" in status
    assert daemon.stderr.count("heartbeat: the monitor cannot be reached") == 1  # once
    assert SECRET not in status + daemon.stderr
