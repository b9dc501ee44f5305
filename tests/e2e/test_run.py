"""``pitelemetry run`` as a real process against real servers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FIXTURES
from tests.e2e.daemon import Daemon, write_config
from tests.servers import InfluxDB1, VictoriaMetrics

pytestmark = pytest.mark.e2e


def run_daemon(config: Path, seconds: float) -> subprocess.CompletedProcess[str]:
    daemon = Daemon(config).start()
    time.sleep(seconds)
    code = daemon.stop()
    return subprocess.CompletedProcess([], code, "", daemon.stderr)


def test_run_writes_system_points_to_influxdb_1(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    done = run_daemon(config, 4.5)
    assert done.returncode == 0, done.stderr
    assert "version 1.6.7" in done.stderr  # api = "auto" asked /ping
    measurements = {r["name"] for r in influxdb.rows("SHOW MEASUREMENTS", database)}
    assert {"cpu", "mem", "system", "diskio"} <= measurements
    cpu = influxdb.rows("SELECT usage_pct FROM cpu WHERE cpu = 'cpu-total'", database)
    assert len(cpu) >= 2  # one per second after the first
    assert all(0.0 <= row["usage_pct"] <= 100.0 for row in cpu)
    mem = influxdb.rows("SELECT total_bytes, used_pct FROM mem GROUP BY host, site", database)
    assert mem[0]["total_bytes"] > 0
    assert (mem[0]["host"], mem[0]["site"]) == ("e2e-pi", "lab")
    load = influxdb.rows("SELECT load1, uptime_s FROM system", database)
    assert len(load) >= 4
    assert load[-1]["uptime_s"] > 0


def test_run_writes_through_the_v2_api(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    config = write_config(
        tmp_path, f'url = "{victoria.url}"\napi = "v2"\norg = "home"\nbucket = "pi"'
    )
    done = run_daemon(config, 3.5)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while not (series := victoria.export('{__name__="mem_total_bytes", host="e2e-pi"}')):
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.2)
    assert series[0]["values"][0] > 0
    assert series[0]["metric"]["site"] == "lab"
    assert victoria.export('{__name__="system_load1", host="e2e-pi"}')


def test_run_with_influxdb_down_exits_cleanly_and_says_so(tmp_path: Path) -> None:
    from tests.servers import free_port  # noqa: PLC0415

    config = write_config(tmp_path, f'url = "http://127.0.0.1:{free_port()}"')
    done = run_daemon(config, 2.5)
    assert done.returncode == 0
    assert "connection refused" in done.stderr
    assert done.stderr.count("connection refused") == 1  # a state change is logged once
    assert "wait in the spool" in done.stderr


def test_once_prints_line_protocol_and_writes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'url = "http://127.0.0.1:9"')
    done = subprocess.run(
        [sys.executable, "-m", "pitelemetry", "once", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("mem,host=e2e-pi,site=lab ") for line in lines)
    assert all(" " in line and line.rsplit(" ", 1)[1].isdigit() for line in lines)


def test_check_reports_each_part(tmp_path: Path, influxdb: InfluxDB1, database: str) -> None:
    good = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    done = subprocess.run(
        [sys.executable, "-m", "pitelemetry", "check", "--config", str(good)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"database '{database}' exists" in done.stdout
    assert "ok   system" in done.stdout

    missing = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "nope"')
    done = subprocess.run(
        [sys.executable, "-m", "pitelemetry", "check", "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "database 'nope' does not exist; run `pitelemetry provision`" in done.stdout


def test_once_input_collects_only_the_named_inputs(tmp_path: Path) -> None:
    """``once --input``, for someone wiring one sensor: by sensor name, type or input
    name; an unknown one is exit 2 listing what there is."""
    shutil.copytree(FIXTURES / "w1", tmp_path / "sys")
    config = write_config(tmp_path, 'url = "http://127.0.0.1:9"')
    config.write_text(
        config.read_text() + '[[inputs.ds18b20]]\nnames = { "28-0316a2794cff" = "living_room" }\n'
    )

    def once(*names: str) -> subprocess.CompletedProcess[str]:
        arguments = [a for name in names for a in ("--input", name)]
        return subprocess.run(
            [sys.executable, "-m", "pitelemetry", "once", *arguments, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "HOST_SYS": str(tmp_path / "sys")},
        )

    for names in (["living_room"], ["ds18b20"]):
        done = once(*names)
        measurements = {line.split(",", 1)[0] for line in done.stdout.splitlines()}
        assert measurements == {"environment", "events"}, done.stdout + done.stderr
    done = once("living_room", "system")
    assert {"environment", "mem"} <= {line.split(",", 1)[0] for line in done.stdout.splitlines()}
    done = once("kitchen")
    assert done.returncode == 2
    assert "no input 'kitchen'" in done.stderr
    assert "living_room" in done.stderr
    assert "Traceback" not in done.stderr
