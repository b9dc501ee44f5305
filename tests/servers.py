"""Real servers for tests: InfluxDB 1.x (``influxd``) and VictoriaMetrics (its
``/api/v2/write`` is InfluxDB's v2 write API), each on a free loopback port in a
temporary directory. A missing binary is an error with an install hint, never a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from pitelemetry import influxql

INSTALL_HINT = "install it with: sudo apt-get install {package} (./scripts/test does this as root)"


class MissingServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise MissingServerError(f"{name} not found; " + INSTALL_HINT.format(package=package))
    return path


class Server:
    """A child process on a loopback port; ``start``/``stop`` may be called repeatedly."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as response:
                return bool(response.status < 300)
        except (OSError, urllib.error.URLError):
            return False

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; log:\n{self.log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


class InfluxDB1(Server):
    """``influxd`` 1.x with monitoring off and continuous queries checked every second."""

    name = "influxd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _binary("influxd", "influxdb")
        self.rpc_port = free_port()
        self.config_path = workdir / "influxdb.conf"
        self.config_path.write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[continuous_queries]
  log-enabled = false
  run-interval = "1s"
"""
        )

    def command(self) -> list[str]:
        return [self.binary, "-config", str(self.config_path)]

    def query(self, statement: str, database: str = "") -> list[dict[str, Any]]:
        return influxql.query(self.url, statement, database=database, epoch="ns")

    def rows(self, statement: str, database: str) -> list[dict[str, Any]]:
        return influxql.rows(self.query(statement, database)[0])

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.query(f'DROP DATABASE "{name}"')


class VictoriaMetrics(Server):
    """VictoriaMetrics: accepts ``/api/v2/write``; metric name = measurement_field."""

    name = "victoria-metrics"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _binary("victoria-metrics", "victoria-metrics")

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.workdir}/data",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-loggerLevel=ERROR",
        ]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every sample of the series matching ``match``, one dict per series."""
        with contextlib.suppress(OSError):
            urllib.request.urlopen(self.url + "/internal/force_flush", timeout=5).read()
        query = urllib.parse.urlencode({"match[]": match})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]


GENEROUS = "max_queued_messages 0\nmax_inflight_messages 1000\n"
LIMITS = {"generous": GENEROUS, "default": "", "small": "max_queued_messages 5\n"}


class Mosquitto(Server):
    """Mosquitto with persistence (sessions survive a broker restart). ``limits``:
    ``"generous"`` lifts the limits on the messages it queues for a client or keeps in
    flight; ``"default"`` keeps Mosquitto's own defaults (1,000 queued per client, 20 in
    flight), which is what a Pi owner's broker has; ``"small"`` queues 5 per client, to
    make it drop. ``$SYS`` topics are published every second."""

    name = "mosquitto"

    def __init__(self, workdir: Path, limits: str = "generous") -> None:
        super().__init__(workdir)
        self.binary = _binary("mosquitto", "mosquitto")
        self.config_path = workdir / "mosquitto.conf"
        self.limits = limits
        self._write_config()

    def _write_config(self, listeners: str = "") -> None:
        # Started as root, Mosquitto would switch to its own user, which cannot read the
        # test's private temporary directory.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            f"""{user}per_listener_settings true
persistence true
persistence_location {self.workdir}/
{LIMITS[self.limits]}sys_interval 1
log_dest stderr
log_type error
listener {self.port} 127.0.0.1
allow_anonymous true
{listeners}"""
        )

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def add_tls_listener(self, username: str, password: str) -> int:
        """A second listener with TLS that requires a client certificate and a password;
        the CA, the client's certificate and key are in ``tls/``. Returns its port."""
        tls = self.workdir / "tls"
        tls.mkdir(exist_ok=True)
        _make_certificates(tls)
        passwords = self.workdir / "passwords"
        passwords.write_text(f"{username}:{password}\n")
        subprocess.run(["mosquitto_passwd", "-U", str(passwords)], check=True)
        port = free_port()
        self._write_config(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
            f"cafile {tls}/ca.pem\ncertfile {tls}/server.pem\nkeyfile {tls}/server.key\n"
            "require_certificate true\n"
        )
        return port

    def ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def _make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pitelemetry test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
        )
        (directory / f"{name}.ext").write_text(extra + "\n" if extra else "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            "-out",
            f"{name}.pem",
        )
