from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

from pitelemetry.config import parse
from pitelemetry.discover import discover
from tests.conftest import FIXTURES
from tests.inputs.test_bme280 import FakeBus


def sys_with_everything(tmp_path: Path) -> Path:
    sys = tmp_path / "sys"
    shutil.copytree(FIXTURES / "w1", sys)
    shutil.copytree(FIXTURES / "iio", sys, dirs_exist_ok=True)
    return sys


def test_found_sensors_become_a_config_that_loads(tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "i2c-1").touch()
    bus = FakeBus()

    class OneChipBus(FakeBus):
        def read_byte_data(self, address: int, register: int) -> int:
            if address != 0x77:
                raise OSError(121, "Remote I/O error")
            return bus.read_byte_data(address, register)

    text = "\n".join(
        discover(sys=sys_with_everything(tmp_path), dev=dev, open_bus=lambda n: OneChipBus())
    )
    assert "# I2C bus 1: BME280 at 0x77" in text
    assert '"28-0316a2794cff" = "sensor8"' in text
    config = parse(tomllib.loads(text), "snippet", {})
    kinds = [i.type for i in config.inputs]
    assert sorted(kinds) == ["bme280", "dht22", "ds18b20"]
    [dht] = [i for i in config.inputs if i.type == "dht22"]
    assert dht.options.device == "iio:device1"  # the dht11 driver, not the other IIO device
    [bme] = [i for i in config.inputs if i.type == "bme280"]
    assert bme.options.address == 0x77


def test_disabled_interfaces_are_named_with_the_fix(tmp_path: Path) -> None:
    text = "\n".join(discover(sys=tmp_path, dev=tmp_path))
    assert "1-Wire is off: add dtoverlay=w1-gpio" in text
    assert "I2C is off" in text
    assert "raspi-config nonint do_i2c 0" in text
    assert "dtoverlay=dht11,gpiopin=4" in text


def test_missing_group_is_named(tmp_path: Path) -> None:
    (tmp_path / "i2c-1").touch()

    def refuse(number: int) -> FakeBus:
        raise PermissionError(13, "Permission denied")

    text = "\n".join(discover(sys=tmp_path, dev=tmp_path, open_bus=refuse))
    assert "needs group 'i2c'" in text
