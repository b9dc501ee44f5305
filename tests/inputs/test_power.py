"""Under-voltage events from recorded kernel lines, through a journalctl that prints
them and through the rpi_volt alarm file."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from pitelemetry.inputs import power
from pitelemetry.inputs.system import SystemInput
from tests.conftest import FIXTURES

KERNEL = FIXTURES / "kernel"


def test_mainline_kmsg_records_count_each_edge() -> None:
    events = power.PowerEvents(now=lambda: 1795300000.0)
    for record in (KERNEL / "rpi_volt.kmsg").read_text().splitlines():
        stamp, text = power.kmsg_record(record)
        events.kernel_line(text, stamp)
    assert events.fields() == {
        "under_voltage_events": 2,
        "under_voltage_suppressed": 0,
        "under_voltage_last_s": 1795300000.0,
    }


def test_the_rate_limited_driver_counts_what_it_logged_and_what_it_suppressed() -> None:
    events = power.PowerEvents()
    for line in (KERNEL / "rpi_volt_downstream.journal.jsonl").read_text().splitlines():
        stamp, text = power.journal_record(line)
        events.kernel_line(text, stamp)
    assert events.fields() == {
        "under_voltage_events": 4,
        "under_voltage_suppressed": 4,
        "under_voltage_last_s": 1795300190.0,
    }


def pi_tree(tmp_path: Path) -> Path:
    sys = tmp_path / "sys"
    shutil.copytree(FIXTURES / "system" / "pi" / "sys", sys)
    return sys


def fake_journalctl(tmp_path: Path) -> list[str]:
    """A journalctl that prints the recorded lines and keeps following, as -f does."""
    script = tmp_path / "journalctl"
    lines = KERNEL / "rpi_volt_downstream.journal.jsonl"
    script.write_text(f"#!/bin/sh\ncat {lines}\nexec sleep 60\n")
    script.chmod(0o755)
    return [str(script)]


def wait_for(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.02)


def pi_point(system: SystemInput) -> dict[str, object]:
    [point] = [p for p in system.collect() if p.measurement == "pi"]
    return dict(point.fields)


def test_the_system_input_counts_from_the_kernel_log(tmp_path: Path) -> None:
    command = fake_journalctl(tmp_path)
    system = SystemInput(sys=pi_tree(tmp_path), vcgencmd=lambda: None, journal=lambda: command)
    system.start(lambda *a, **k: None)
    try:
        wait_for(lambda: system.power.events == 4)
        fields = pi_point(system)
    finally:
        system.close()
    assert fields["under_voltage_events"] == 4
    assert fields["under_voltage_last_s"] == 1795300190.0
    assert fields["under_voltage_suppressed"] == 4


def test_without_the_journal_the_alarm_files_edges_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(power, "ALARM_PERIOD_S", 0.05)  # a regular file is never notified
    sys = pi_tree(tmp_path)
    alarm = sys / "class" / "hwmon" / "hwmon1" / "in0_lcrit_alarm"
    alarm.write_text("0\n")
    system = SystemInput(sys=sys, vcgencmd=lambda: None, journal=lambda: None)
    system.start(lambda *a, **k: None)
    try:
        for value in ("1", "0", "1", "1", "0"):
            alarm.write_text(value + "\n")
            time.sleep(0.4)  # the watcher reads at most every 0.1 s; a dip is one read
        wait_for(lambda: system.power.events == 2)
        fields = pi_point(system)
    finally:
        system.close()
    assert fields["under_voltage_events"] == 2
    assert system.power.source == "hwmon alarm"


def test_no_rpi_volt_device_no_watcher_and_no_fields(tmp_path: Path) -> None:
    system = SystemInput(
        sys=tmp_path, proc=FIXTURES / "system" / "pi" / "proc", journal=pytest.fail
    )
    before = set(threading.enumerate())
    system.start(lambda *a, **k: None)
    assert not [t for t in set(threading.enumerate()) - before if t.name == "under-voltage"]
    assert "under_voltage_events" not in str(list(system.collect()))


def test_a_journal_that_shows_no_kernel_entry_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside group systemd-journal, journalctl shows no kernel entry and exits 0."""
    script = tmp_path / "journalctl"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert power.journal_command() is None
    script.write_text(
        f"#!/bin/sh\n/usr/bin/head -1 {KERNEL / 'rpi_volt_downstream.journal.jsonl'}\n"
    )
    assert power.journal_command() == [
        str(script),
        "-k",
        "-b",
        "-f",
        "-q",
        "-o",
        "json",
        "--output-fields=MESSAGE",
    ]
