"""The unit file: valid for systemd, and hardened (``systemd-analyze security``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pitelemetry.systemd import Notifier
from tests.conftest import ROOT

UNIT = ROOT / "systemd" / "pitelemetry.service"


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail("systemd-analyze not found; install it with: sudo apt-get install systemd")
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def test_units_verify_clean(tmp_path: Path) -> None:
    # The installed ExecStart does not exist here; point it at a binary that does.
    units = []
    for source in sorted((ROOT / "systemd").iterdir()):
        if source.is_dir():  # the InfluxDB drop-in: not a unit
            continue
        unit = tmp_path / source.name
        text = source.read_text().replace("/opt/pitelemetry/venv/bin/pitelemetry", "/bin/true")
        unit.write_text(text)
        units.append(str(unit))
    assert len(units) == 5
    done = analyze("verify", *units)
    assert done.stdout + done.stderr == ""


@pytest.mark.parametrize(
    "name", ["pitelemetry.service", "pitelemetry-provision.service", "pitelemetry-backup.service"]
)
def test_exposure_is_at_most_1_6(name: str) -> None:
    done = analyze("security", "--offline=yes", str(ROOT / "systemd" / name))
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 1.6


def test_unit_never_hides_gpio_devices() -> None:
    text = UNIT.read_text()
    assert "PrivateDevices=no" in text
    assert "DevicePolicy=closed" in text
    after = [line for line in text.splitlines() if line.startswith("After=")]
    assert after
    assert not [line for line in after if "time-sync.target" in line]  # waits forever offline


def test_sd_notify_datagrams(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "60000000"})
        notifier.notify("READY=1", "STATUS=ok")
        notifier.notify("WATCHDOG=1")
        assert server.recv(100) == b"READY=1\nSTATUS=ok"
        assert server.recv(100) == b"WATCHDOG=1"
        assert notifier.watchdog_s == 60.0
        notifier.close()
    finally:
        server.close()


def test_sd_notify_outside_systemd_does_nothing() -> None:
    Notifier({}).notify("READY=1")  # no socket, no error


def test_the_daemon_is_restarted_after_any_end_it_did_not_ask_for() -> None:
    """systemd counts an end by SIGHUP (or any exit 0) as success: ``on-failure`` would
    leave collection stopped. ``systemctl stop`` is never followed by a restart."""
    restart = [line for line in UNIT.read_text().splitlines() if line.startswith("Restart=")]
    assert restart == ["Restart=always"]
