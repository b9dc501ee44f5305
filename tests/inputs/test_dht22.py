from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pitelemetry.inputs import InputError
from pitelemetry.inputs.dht22 import DHT22Input, DHT22Options
from pitelemetry.point import LineEncoder
from tests.conftest import FIXTURES
from tests.golden import assert_golden

T0 = 1_795_300_000_000_000_000


@pytest.fixture
def sys_tree(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "iio", tmp_path / "sys")
    return tmp_path / "sys"


def device(sys_tree: Path) -> Path:
    return sys_tree / "bus/iio/devices/iio:device1"


class Script:
    """The sleep seam: before each retry, put the next reading (or fault) in place."""

    def __init__(self, device: Path, readings: list[tuple[str, str] | None]) -> None:
        self.device = device
        self.readings = readings
        self.sleeps: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        reading = self.readings.pop(0)
        temp = self.device / "in_temp_input"
        if temp.is_dir():
            temp.rmdir()
        if reading is None:  # the driver's EIO/ETIMEDOUT: reading the file fails
            temp.unlink()
            temp.mkdir()
            return
        temp.write_text(reading[0] + "\n")
        (self.device / "in_humidityrelative_input").write_text(reading[1] + "\n")


def test_finds_the_dht_device_by_driver_name_and_reports_the_median(sys_tree: Path) -> None:
    script = Script(device(sys_tree), [("21500", "48000"), ("21400", "49000")])
    dht = DHT22Input(DHT22Options(name="bathroom"), sys=sys_tree, sleep=script, time_ns=lambda: T0)
    [point] = dht.collect()
    assert LineEncoder().encode(point, 0) == (
        f"environment,name=bathroom,sensor=dht22 temperature_c=21.4,humidity_pct=48.7 {T0}"
    )
    assert script.sleeps == [2.0, 2.0]  # never faster than the sensor allows


def test_bad_reads_are_retried_and_left_out(sys_tree: Path) -> None:
    script = Script(
        device(sys_tree), [None, ("21000", "150000"), ("22000", "50000"), ("23000", "51000")]
    )
    dht = DHT22Input(sys=sys_tree, sleep=script)
    [point] = dht.collect()
    # good: 21.3/48.7 (first), 22.0/50.0, 23.0/51.0; an I/O error and 150 %RH left out
    assert point.fields == {"temperature_c": 22.0, "humidity_pct": 50.0}
    assert dht.bad_reads == 2
    assert point.tags["name"] == "iio:device1"


def test_no_good_read_is_an_error_with_a_hint(sys_tree: Path) -> None:
    temp = device(sys_tree) / "in_temp_input"
    temp.write_text("95000\n")  # 95 °C: not a DHT22 reading
    script = Script(device(sys_tree), [("95000", "40000")] * 4)
    dht = DHT22Input(sys=sys_tree, sleep=script)
    with pytest.raises(InputError, match=r"no good read in 5 tries .*implausible temperature"):
        list(dht.collect())


def test_without_the_overlay(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dtoverlay=dht11,gpiopin="):
        list(DHT22Input(sys=tmp_path).collect())
    with pytest.raises(InputError, match="does not exist"):
        list(DHT22Input(DHT22Options(device="iio:device7"), sys=tmp_path).collect())


def test_golden_line_protocol(sys_tree: Path) -> None:
    script = Script(device(sys_tree), [("21500", "48000"), ("21400", "49000")])
    dht = DHT22Input(DHT22Options(name="bathroom"), sys=sys_tree, sleep=script, time_ns=lambda: T0)
    assert_golden("dht22", dht.collect())
