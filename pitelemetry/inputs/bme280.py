"""Bosch BME280 (temperature, humidity, pressure) and BMP280 (no humidity) over I²C.

Wiring: VIN to 3.3 V, GND, SCL to GPIO3 (pin 5), SDA to GPIO2 (pin 3); SDO to GND for
address 0x76, to 3.3 V for 0x77. Enable I²C with ``sudo raspi-config nonint do_i2c 0``
(or ``dtparam=i2c_arm=on``); the service user needs group ``i2c`` for ``/dev/i2c-1``.
``i2cdetect -y 1`` shows the address.

Config::

    [[inputs.bme280]]
    bus = 1
    address = 0x76
    name = "hallway"
    altitude_m = 120.0      # optional: adds sea-level pressure

Each collection triggers one forced-mode measurement (the sensor sleeps in between, so
it does not warm itself), waits for it, and compensates the raw values with the
datasheet's integer formulas and the chip's own calibration.

Points: measurement ``environment``, tags ``sensor`` (``bme280`` or ``bmp280``),
``name``; fields ``temperature_c``, ``pressure_hpa``, ``humidity_pct`` (BME280 only),
``sea_level_pressure_hpa`` (with ``altitude_m``).

Failure modes: no ``/dev/i2c-N`` (I²C off), permission denied (group ``i2c``), no answer
at the address (wiring, address), an unknown chip id, a measurement that never
finishes. Each is one clear log line and an error count; the next collection tries
again, so a replugged sensor comes back by itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from pitelemetry.alerting import AlertRule
from pitelemetry.inputs import Host, Input, InputError, Options, i2c_problems, name_problems
from pitelemetry.inputs.sensors import SENSOR_SILENT, access_hint, environment_panels
from pitelemetry.panels import Panel
from pitelemetry.point import Point

CHIP_IDS = {0x60: "bme280", 0x58: "bmp280", 0x56: "bmp280", 0x57: "bmp280"}
REG_ID, REG_CTRL_HUM, REG_STATUS, REG_CTRL_MEAS, REG_DATA = 0xD0, 0xF2, 0xF3, 0xF4, 0xF7
REG_CALIB_TP, REG_CALIB_H1, REG_CALIB_H2 = 0x88, 0xA1, 0xE1
OVERSAMPLING_X1 = 1
FORCED_MODE = 0b01
MEASURING = 0b1000


class SMBusLike(Protocol):
    """The part of ``smbus2.SMBus`` this input uses (tests pass a fake)."""

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def close(self) -> None: ...


def open_smbus(bus: int) -> SMBusLike:
    from smbus2 import SMBus  # noqa: PLC0415 - only bme280 users need it

    smbus: SMBusLike = SMBus(bus)
    return smbus


BME280_ADDRESSES = (0x76, 0x77)


@dataclass(frozen=True)
class BME280Options(Options):
    dashboard = "home"

    bus: int = 1
    address: int = 0x76
    name: str = ""
    altitude_m: float | None = None

    @property
    def sensor(self) -> str:
        """The ``name`` tag: the configured name, else the bus and address."""
        return self.name or f"/dev/i2c-{self.bus}@0x{self.address:02x}"

    def problems(self) -> Iterator[tuple[str, str]]:
        yield from i2c_problems("address", self.address)
        yield from name_problems("name", self.name)

    def claims(self) -> Iterator[tuple[str, str]]:
        yield "address", f"I2C bus {self.bus} address 0x{self.address:02x}"

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        yield "name", self.sensor

    def alerts(self) -> Iterator[AlertRule]:
        yield SENSOR_SILENT

    def panels(self) -> Iterator[Panel]:
        return environment_panels(self.sensor, pressure=True)


@dataclass(frozen=True)
class Calibration:
    t: tuple[int, int, int]
    p: tuple[int, int, int, int, int, int, int, int, int]
    h: tuple[int, int, int, int, int, int] | None

    @classmethod
    def parse(cls, tp: list[int], h1: int | None, h: list[int] | None) -> Calibration:
        """From registers 0x88..0x9F, 0xA1 and 0xE1..0xE7 (the datasheet's table 16)."""
        words = [tp[i] | tp[i + 1] << 8 for i in range(0, 24, 2)]
        signed = [w - 65536 if w > 32767 else w for w in words]
        t = (words[0], signed[1], signed[2])
        p = (words[3], *signed[4:12])
        humidity = None
        if h1 is not None and h is not None:
            h2 = _s16(h[0] | h[1] << 8)
            h3 = h[2]
            h4 = _s8(h[3]) << 4 | (h[4] & 0x0F)
            h5 = _s8(h[5]) << 4 | h[4] >> 4
            h6 = _s8(h[6])
            humidity = (h1, h2, h3, h4, h5, h6)
        return cls(t, p, humidity)  # type: ignore[arg-type]


def _s16(value: int) -> int:
    return value - 65536 if value > 32767 else value


def _s8(value: int) -> int:
    return value - 256 if value > 127 else value


def compensate(
    cal: Calibration, adc_t: int, adc_p: int, adc_h: int | None
) -> tuple[float, float, float | None]:
    """(°C, Pa, %RH) by the datasheet's integer formulas (section 4.2.3)."""
    t1, t2, t3 = cal.t
    var1 = (((adc_t >> 3) - (t1 << 1)) * t2) >> 11
    var2 = (((((adc_t >> 4) - t1) * ((adc_t >> 4) - t1)) >> 12) * t3) >> 14
    t_fine = var1 + var2
    temperature = ((t_fine * 5 + 128) >> 8) / 100

    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal.p
    var1 = t_fine - 128000
    var2 = var1 * var1 * p6
    var2 += (var1 * p5) << 17
    var2 += p4 << 35
    var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
    var1 = (((1 << 47) + var1) * p1) >> 33
    if var1 == 0:
        raise InputError("pressure calibration is zero: the chip's calibration data is bad")
    pressure = 1048576 - adc_p
    pressure = (((pressure << 31) - var2) * 3125) // var1
    var1 = (p9 * (pressure >> 13) * (pressure >> 13)) >> 25
    var2 = (p8 * pressure) >> 19
    pressure = ((pressure + var1 + var2) >> 8) + (p7 << 4)
    pascal = pressure / 256

    humidity = None
    if cal.h is not None and adc_h is not None:
        h1, h2, h3, h4, h5, h6 = cal.h
        v = t_fine - 76800
        v = ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15) * (
            ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
        )
        v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
        v = min(max(v, 0), 419430400)
        humidity = (v >> 12) / 1024
    return temperature, pascal, humidity


def sea_level(pressure_pa: float, altitude_m: float, temperature_c: float) -> float:
    """Pressure reduced to sea level (the hypsometric formula, as weather services do)."""
    kelvin = temperature_c + 273.15
    return float(pressure_pa * (1 - 0.0065 * altitude_m / (kelvin + 0.0065 * altitude_m)) ** -5.257)


class BME280Input(Input):
    Options = BME280Options

    def __init__(
        self,
        options: BME280Options | None = None,
        *,
        open_bus: Callable[[int], SMBusLike] = open_smbus,
        sleep: Callable[[float], None] = time.sleep,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options or BME280Options()
        self._open_bus = open_bus
        self._sleep = sleep
        self._time_ns = time_ns
        self._bus: SMBusLike | None = None
        self._chip = ""
        self._calibration: Calibration | None = None
        self.device = f"/dev/i2c-{self.options.bus}"
        self.sensor = f"{self.device}@0x{self.options.address:02x}"

    @classmethod
    def discover(cls, host: Host) -> Iterator[str]:
        device = host.dev / f"i2c-{host.i2c_bus}"
        if not device.exists():
            yield f"# I2C is off ({device} missing): sudo raspi-config nonint do_i2c 0"
            return
        hint = "sudo raspi-config nonint do_i2c 0"
        try:
            bus: SMBusLike = (host.open_bus or open_smbus)(host.i2c_bus)
        except OSError as exc:
            yield f"# I2C: {access_hint(exc, str(device), 'i2c', hint)}"
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
                    yield f"# I2C bus {host.i2c_bus}: {chip.upper()} at 0x{address:02x}"
                    yield "[[inputs.bme280]]"
                    yield f"bus = {host.i2c_bus}"
                    yield f"address = 0x{address:02x}"
                    yield f'name = "{chip}_{address:02x}"'
                    yield ""
        finally:
            bus.close()
        if not found:
            yield f"# I2C bus {host.i2c_bus}: no BME280/BMP280 at 0x76 or 0x77 (i2cdetect -y 1)"

    def collect(self) -> Iterator[Point]:
        try:
            temperature, pascal, humidity = self._measure()
        except OSError as exc:
            self._reset()
            problem = access_hint(exc, self.device, "i2c", "sudo raspi-config nonint do_i2c 0")
            raise InputError(f"{self.sensor}: {problem}") from None
        except InputError:
            self._reset()
            raise
        fields = {"temperature_c": temperature, "pressure_hpa": pascal / 100}
        if humidity is not None:
            fields["humidity_pct"] = humidity
        if self.options.altitude_m is not None:
            fields["sea_level_pressure_hpa"] = (
                sea_level(pascal, self.options.altitude_m, temperature) / 100
            )
        tags = {"sensor": self._chip, "name": self.options.sensor}
        yield Point("environment", fields, tags, self._time_ns())

    def _reset(self) -> None:
        """Forget the bus and calibration: a replugged sensor is set up afresh."""
        if self._bus is not None:
            self._bus.close()
        self._bus = None
        self._calibration = None

    def _setup(self) -> tuple[SMBusLike, Calibration]:
        if self._bus is None:
            self._bus = self._open_bus(self.options.bus)
        if self._calibration is None:
            bus, address = self._bus, self.options.address
            chip_id = bus.read_byte_data(address, REG_ID)
            if chip_id not in CHIP_IDS:
                raise InputError(
                    f"chip id 0x{chip_id:02x} at {self.sensor} is not a BME280 (0x60) or "
                    "BMP280 (0x58): another device at this address?"
                )
            self._chip = CHIP_IDS[chip_id]
            tp = bus.read_i2c_block_data(address, REG_CALIB_TP, 24)
            h1 = h = None
            if self._chip == "bme280":
                h1 = bus.read_byte_data(address, REG_CALIB_H1)
                h = bus.read_i2c_block_data(address, REG_CALIB_H2, 7)
            self._calibration = Calibration.parse(tp, h1, h)
        return self._bus, self._calibration

    def _measure(self) -> tuple[float, float, float | None]:
        bus, calibration = self._setup()
        address = self.options.address
        if self._chip == "bme280":
            bus.write_byte_data(address, REG_CTRL_HUM, OVERSAMPLING_X1)
        ctrl = OVERSAMPLING_X1 << 5 | OVERSAMPLING_X1 << 2 | FORCED_MODE
        bus.write_byte_data(address, REG_CTRL_MEAS, ctrl)
        self._sleep(0.01)  # 1x oversampling of all three takes at most 9.3 ms
        for _ in range(20):
            if not bus.read_byte_data(address, REG_STATUS) & MEASURING:
                break
            self._sleep(0.005)
        else:
            raise InputError(f"{self.sensor}: the measurement never finished")
        data = bus.read_i2c_block_data(address, REG_DATA, 8)
        adc_p = data[0] << 12 | data[1] << 4 | data[2] >> 4
        adc_t = data[3] << 12 | data[4] << 4 | data[5] >> 4
        adc_h = data[6] << 8 | data[7] if self._chip == "bme280" else None
        return compensate(calibration, adc_t, adc_p, adc_h)

    def close(self) -> None:
        self._reset()
