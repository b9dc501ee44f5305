"""Faults of the process and its own files: SIGHUPs in quick succession, and garbage
in the files it keeps (meter totals, quota counts, the provisioning stamp, the state
file ``status`` reads)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from pitelemetry.inputs.pulse import PulseInput, PulseOptions
from pitelemetry.quotes.budget import Budget
from pitelemetry.quotes.providers import Limits
from tests.e2e.daemon import Daemon, write_config
from tests.servers import InfluxDB1


@pytest.mark.e2e
def test_sighups_in_quick_succession_never_end_the_daemon(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    """``systemctl reload`` twice: a SIGHUP that lands while the daemon re-executes
    itself used to end it (exit 129), which systemd took for a clean exit."""
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    daemon = Daemon(config).start()
    assert daemon.process is not None
    pid = daemon.process.pid
    try:
        daemon.wait_for(lambda s: s["pid"] == pid)
        for _ in range(12):  # 50 ms apart, over the whole re-exec
            os.kill(pid, signal.SIGHUP)
            time.sleep(0.05)
        time.sleep(2)
        assert daemon.process.poll() is None, "the daemon ended"
        first = daemon.wait_for(lambda s: s["inputs"][0]["collections"] >= 1, 60)
        later = daemon.wait_for(
            lambda s: s["inputs"][0]["collections"] > first["inputs"][0]["collections"], 30
        )
    finally:
        code = daemon.stop()
    assert later["pid"] == pid  # reloaded in place
    assert code == 0
    assert "SIGHUP: config is valid; restarting in place" in daemon.stderr


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    mock = MockFactory()
    yield mock
    mock.close()


@pytest.mark.parametrize(
    "content",
    ['{"pulses": 1e400}', '{"pulses": -5}', '{"pulses": "12"}', "[]", "\x00\xff\xfe", "{"],
)
def test_a_garbage_meter_total_is_moved_aside_and_counting_starts_from_zero(
    factory: MockFactory, tmp_path: Path, content: str
) -> None:
    saved = tmp_path / "pulse-house.json"
    saved.write_bytes(content.encode("latin-1"))
    meter = PulseInput(PulseOptions(pin=17, name="house"), state_dir=tmp_path, pin_factory=factory)
    try:
        (point,) = [p for p in meter.collect() if p.measurement == "meter"]
    finally:
        meter.close()
    assert point.fields["pulses"] == 0
    assert not saved.exists()
    assert len(list(tmp_path.glob("pulse-house.json.bad-*"))) == 1


def test_a_meter_total_where_a_directory_is_does_not_stop_the_input(
    factory: MockFactory, tmp_path: Path
) -> None:
    (tmp_path / "pulse-house.json").mkdir()
    meter = PulseInput(PulseOptions(pin=17, name="house"), state_dir=tmp_path, pin_factory=factory)
    meter.close()
    assert (tmp_path / "pulse-house.json").is_file() or not (tmp_path / "pulse-house.json").exists()
    assert len(list(tmp_path.glob("pulse-house.json.bad-*"))) == 1


@pytest.mark.parametrize(
    "content", ['{"day": "2026-12-02", "calls": 1e400}', '{"day": 5, "calls": 3}', '"x"']
)
def test_a_garbage_quota_count_is_moved_aside(tmp_path: Path, content: str) -> None:
    saved = tmp_path / "quota.json"
    saved.write_text(content)
    budget = Budget(Limits(per_day=800), saved)
    assert budget.state_file == saved
    assert not saved.exists()
    assert len(list(tmp_path.glob("quota.json.bad-*"))) == 1


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_a_garbage_provisioning_stamp_means_provisioning_again(
    tmp_path: Path, influxdb: InfluxDB1, database: str, kind: str
) -> None:
    stamp = tmp_path / "provisioned"
    if kind == "directory":
        stamp.mkdir()
    else:
        stamp.write_bytes(b"\xff\xfe\x00garbage")
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    done = Daemon(config).command("provision", "--stamp", str(stamp))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert stamp.is_file()
    again = Daemon(config).command("provision", "--stamp", str(stamp))
    assert "nothing changed since the last provision" in again.stdout


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '"running"',
        '{"pid": "12", "version": "x"}',
        '{"pid": true}',
        "\x00\x01",
        "[" * 5000,
    ],
)
def test_status_never_crashes_on_a_garbage_state_file(tmp_path: Path, content: str) -> None:
    config = write_config(tmp_path, 'url = "http://127.0.0.1:9"')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "status.json").write_text(content)
    done = Daemon(config).command("status")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "status.json" in done.stderr


def test_status_renders_a_state_of_another_version_without_crashing() -> None:
    from pitelemetry.status import render  # noqa: PLC0415

    assert "cannot show this state" in render({"version": "0.0", "influxdb": {}})


def test_a_symlink_planted_in_the_runtime_directory_is_never_written_through(
    tmp_path: Path,
) -> None:
    """Run as root while debugging, with a runtime directory the service user can
    write: the old fixed temporary name let a planted link overwrite its target."""
    from pitelemetry.health import write_state  # noqa: PLC0415

    victim = tmp_path / "victim"
    victim.write_text("precious")
    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / ".status.json.tmp").symlink_to(victim)
    (runtime / "status.json").symlink_to(victim)
    write_state(runtime, {"pid": 1})
    assert victim.read_text() == "precious"
    assert not (runtime / "status.json").is_symlink()
    assert json.loads((runtime / "status.json").read_text()) == {"pid": 1}
