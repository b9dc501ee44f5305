"""``pitelemetry sensors``: what is attached, as a config snippet to paste.

Looks for DS18B20s on 1-Wire, BME280/BMP280 at I²C addresses 0x76 and 0x77, and DHT
devices of the kernel's IIO driver. Where it cannot look, it says which interface is
off (and the line that turns it on) or which group is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from pitelemetry.inputs.bme280 import CHIP_IDS, REG_ID, SMBusLike, open_smbus
from pitelemetry.inputs.dht22 import find_dht_devices
from pitelemetry.inputs.sensors import access_hint

BME280_ADDRESSES = (0x76, 0x77)


def discover(
    *,
    sys: Path | None = None,
    dev: Path = Path("/dev"),
    i2c_bus: int = 1,
    open_bus: Callable[[int], SMBusLike] = open_smbus,
) -> Iterator[str]:
    """Lines of TOML: tables for what was found, comments for what was not."""
    sys = sys or Path(os.environ.get("HOST_SYS", "/sys"))
    yield from _one_wire(sys / "bus" / "w1" / "devices")
    yield from _i2c(dev / f"i2c-{i2c_bus}", i2c_bus, open_bus)
    yield from _dht(sys / "bus" / "iio" / "devices")


def _one_wire(devices: Path) -> Iterator[str]:
    if not devices.is_dir():
        yield "# 1-Wire is off: add dtoverlay=w1-gpio to /boot/firmware/config.txt, reboot"
        return
    roms = sorted(p.name for p in devices.glob("28-*"))
    if not roms:
        yield "# 1-Wire is on, but no DS18B20 answers: check the wiring and the pull-up"
        return
    yield f"# 1-Wire: {len(roms)} DS18B20 found; name them after their rooms"
    yield "[[inputs.ds18b20]]"
    names = ", ".join(f'"{rom}" = "sensor{number}"' for number, rom in enumerate(roms, 1))
    yield f"names = {{ {names} }}"
    yield ""


def _i2c(device: Path, bus_number: int, open_bus: Callable[[int], SMBusLike]) -> Iterator[str]:
    if not device.exists():
        yield f"# I2C is off ({device} missing): sudo raspi-config nonint do_i2c 0"
        return
    try:
        bus = open_bus(bus_number)
    except OSError as exc:
        yield f"# I2C: {access_hint(exc, str(device), 'i2c', 'sudo raspi-config nonint do_i2c 0')}"
        return
    found = False
    try:
        for address in BME280_ADDRESSES:
            try:
                chip = CHIP_IDS.get(bus.read_byte_data(address, REG_ID))
            except OSError:
                continue  # nothing at this address
            if chip:
                found = True
                yield f"# I2C bus {bus_number}: {chip.upper()} at 0x{address:02x}"
                yield "[[inputs.bme280]]"
                yield f"bus = {bus_number}"
                yield f"address = 0x{address:02x}"
                yield f'name = "{chip}_{address:02x}"'
                yield ""
    finally:
        bus.close()
    if not found:
        yield f"# I2C bus {bus_number}: no BME280/BMP280 at 0x76 or 0x77 (i2cdetect -y 1)"


def _dht(iio: Path) -> Iterator[str]:
    devices = find_dht_devices(iio)
    if not devices:
        yield "# DHT22: none; for one on GPIO4 add dtoverlay=dht11,gpiopin=4, reboot"
        return
    for device in devices:
        yield f"# DHT (kernel IIO driver): {device.name}"
        yield "[[inputs.dht22]]"
        yield f'device = "{device.name}"'
        yield f'name = "{device.name.replace(":", "_")}"'
        yield 'interval = "1m"'
        yield ""
