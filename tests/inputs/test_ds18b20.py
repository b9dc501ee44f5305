from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pitelemetry.inputs import InputError
from pitelemetry.inputs.ds18b20 import (
    BadReadError,
    DS18B20Input,
    DS18B20Options,
    parse_w1_slave,
)
from tests.conftest import FIXTURES
from tests.golden import assert_golden

T0 = 1_795_300_000_000_000_000


@pytest.fixture
def sys_tree(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "w1", tmp_path / "sys")
    return tmp_path / "sys"


def make(sys_tree: Path, names: dict[str, str] | None = None) -> DS18B20Input:
    return DS18B20Input(DS18B20Options(names or {}), sys=sys_tree, time_ns=lambda: T0)


def test_golden_line_protocol(sys_tree: Path) -> None:
    ds = make(sys_tree, {"28-0316a2794cff": "living_room", "28-00000a1b2c3d": "garden"})
    assert_golden("ds18b20", ds.collect(), T0)


def test_good_reads_bad_reads_and_names(sys_tree: Path) -> None:
    ds = make(sys_tree, {"28-0316a2794cff": "living_room", "28-00000a1b2c3d": "garden"})
    points = list(ds.collect())
    readings = {p.tags["id"]: p for p in points if p.measurement == "environment"}
    assert {rom: p.fields["temperature_c"] for rom, p in readings.items()} == {
        "28-0316a2794cff": 25.187,
        "28-000005e2fdc3": 25.812,
        "28-00000a1b2c3d": -5.625,  # negative temperatures right
        "28-0000000f11e5": 25.187,  # the newer temperature file
    }
    assert readings["28-0316a2794cff"].tags["name"] == "living_room"
    assert readings["28-000005e2fdc3"].tags["name"] == "28-000005e2fdc3"  # unknown: by id
    lost = {p.tags["sensor"] for p in points if p.measurement == "events"}
    assert lost == {"28-000008500000", "28-00000bad0c0c", "28-00000e3e3e3e", "28-000000000000"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty read"),
        ("93 01 7f 80 7f ff 0d 10 be : crc=bd NO\n93 01 7f 80 7f ff 0d 10 bd t=25187\n", "CRC"),
        ("00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n", "zero"),
        ("50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c\n", "no t="),
    ],
)
def test_parser_refuses_bad_reads(text: str, reason: str) -> None:
    with pytest.raises(BadReadError, match=reason):
        parse_w1_slave(text)


def test_85_is_accepted_only_after_a_hot_reading(sys_tree: Path) -> None:
    rom = sys_tree / "bus/w1/devices/28-000008500000/w1_slave"
    ds = make(sys_tree)
    hot = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=84000\n"
    rom.write_text(hot)
    list(ds.collect())
    rom.write_text(hot.replace("t=84000", "t=85000"))
    temps = [p.fields["temperature_c"] for p in ds.collect() if p.tags.get("id") == rom.parent.name]
    assert temps == [85.0]


def test_unplugged_sensor_is_lost_once_and_found_again(
    sys_tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    devices = sys_tree / "bus/w1/devices"
    ds = make(sys_tree, {"28-0316a2794cff": "living_room"})
    list(ds.collect())
    shutil.move(devices / "28-0316a2794cff", sys_tree / "unplugged")
    first = [p for p in ds.collect() if p.measurement == "events"]
    second = [p for p in ds.collect() if p.measurement == "events"]
    assert [(p.tags["kind"], p.tags["sensor"]) for p in first if "0316" in p.tags["sensor"]] == [
        ("sensor_lost", "28-0316a2794cff")
    ]
    assert not [p for p in second if "0316" in p.tags["sensor"]]  # once, not every tick
    assert caplog.text.count("28-0316a2794cff: not on the bus") == 1
    shutil.move(sys_tree / "unplugged", devices / "28-0316a2794cff")
    back = list(ds.collect())
    assert ("sensor_found", "28-0316a2794cff") in {
        (p.tags["kind"], p.tags["sensor"]) for p in back if p.measurement == "events"
    }
    assert any(p.tags.get("name") == "living_room" for p in back)


def test_one_wire_off_says_how_to_turn_it_on(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dtoverlay=w1-gpio"):
        list(make(tmp_path).collect())


def test_no_sensors_on_the_bus(tmp_path: Path) -> None:
    (tmp_path / "bus/w1/devices/w1_bus_master1").mkdir(parents=True)
    with pytest.raises(InputError, match="check the wiring and the pull-up"):
        list(make(tmp_path).collect())
