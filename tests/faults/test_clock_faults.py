"""Time faults with ``faketime`` (Debian's libfaketime): the daemon runs in a zone with
daylight-saving time across the 2026 US and EU changes, and with its wall clock stepped
an hour either way (what NTP's first sync does to a Pi without a real-time clock). The
wall clock is faked; the monotonic clock is left alone, as it is on a real machine."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.daemon import Daemon, write_config
from tests.servers import InfluxDB1

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIBFAKETIME = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))


def faked(offset_file: Path, zone: str) -> dict[str, str]:
    if not LIBFAKETIME:
        pytest.fail("libfaketime not found; install Debian's faketime", pytrace=False)
    return {
        **os.environ,
        "TZ": zone,
        "LD_PRELOAD": str(LIBFAKETIME[0]),
        "FAKETIME_TIMESTAMP_FILE": str(offset_file),
        "FAKETIME_CACHE_DURATION": "1",  # re-read the file every second: steps
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


def set_offset(offset_file: Path, seconds: float) -> None:
    offset_file.write_text(f"{round(seconds):+d}\n")


def collections(daemon: Daemon) -> int:
    (system,) = [i for i in daemon.status()["inputs"] if i["name"] == "system"]
    return int(system["collections"])


def start(tmp_path: Path, influxdb: InfluxDB1, database: str, env: dict[str, str]) -> Daemon:
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    daemon = Daemon(config, env).start()
    daemon.wait_for(lambda s: s["inputs"] and s["inputs"][0]["collections"] >= 1)
    return daemon


def keeps_collecting(daemon: Daemon, seconds: float = 8.0) -> int:
    """How many collections the 1 s input made in ``seconds`` of real time (as seen in
    the state file, which is rewritten every 2 s)."""
    before = collections(daemon)
    time.sleep(seconds)
    return collections(daemon) - before


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("America/New_York", "2026-11-01T02:00:00-04:00"),  # fall back to 01:00 EST
        ("Europe/Berlin", "2026-10-25T03:00:00+02:00"),  # fall back to 02:00 CET
        ("America/New_York", "2026-03-08T02:00:00-05:00"),  # spring forward to 03:00 EDT
        ("Europe/Berlin", "2026-03-29T02:00:00+01:00"),  # spring forward to 03:00 CEST
    ],
)
def test_inputs_keep_their_interval_across_a_daylight_saving_change(
    tmp_path: Path, influxdb: InfluxDB1, database: str, zone: str, change: str
) -> None:
    instant = datetime.datetime.fromisoformat(change)
    offsets = {
        instant.astimezone(ZoneInfo(zone)).utcoffset()
        for instant in (
            instant - datetime.timedelta(seconds=1),
            instant + datetime.timedelta(seconds=1),
        )
    }
    assert len(offsets) == 2, "not a daylight-saving change in that zone"
    offset_file = tmp_path / "faketime"
    set_offset(offset_file, instant.timestamp() - 6 - time.time())  # 6 s before it
    daemon = start(tmp_path, influxdb, database, faked(offset_file, zone))
    try:
        time.sleep(6)  # past the change
        made = keeps_collecting(daemon)
    finally:
        daemon.stop()
    assert made >= 5, f"{made} collections in 8 s after the change at {change} in {zone}"


@pytest.mark.parametrize("step", [-3600, 3600])
def test_inputs_keep_their_interval_when_the_wall_clock_steps(
    tmp_path: Path, influxdb: InfluxDB1, database: str, step: int
) -> None:
    offset_file = tmp_path / "faketime"
    set_offset(offset_file, 0)
    daemon = start(tmp_path, influxdb, database, faked(offset_file, "Europe/Berlin"))
    try:
        assert keeps_collecting(daemon, 4) >= 1
        set_offset(offset_file, step)
        time.sleep(1.5)  # libfaketime reads the file again within a second
        made = keeps_collecting(daemon)
    finally:
        daemon.stop()
    assert made >= 5, f"{made} collections in 8 s after a {step:+d} s step"
