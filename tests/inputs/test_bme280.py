from __future__ import annotations

import errno

import pytest

from pitelemetry.inputs import InputError
from pitelemetry.inputs.bme280 import (
    BME280Input,
    BME280Options,
    Calibration,
    compensate,
    sea_level,
)
from pitelemetry.point import LineEncoder
from tests.conftest import FIXTURES
from tests.golden import assert_golden

T0 = 1_795_300_000_000_000_000
CALIB_TP = bytes.fromhex((FIXTURES / "i2c" / "bme280_calib_0x88_tp_example.hex").read_text())
DATA = bytes.fromhex((FIXTURES / "i2c" / "bme280_data_0xF7_example.hex").read_text())
# Humidity calibration H1=75, H2=362, H3=0, H4=313, H5=50, H6=30, packed as the chip
# stores it: 0xA1 = H1; 0xE1.. = H2 (LE), H3, H4[11:4], H5[3:0]<<4 | H4[3:0], H5[11:4], H6.
CALIB_H1 = 75
CALIB_H = bytes([0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E])


class FakeBus:
    """Registers of a BME280 holding the datasheet's worked example."""

    def __init__(self, chip_id: int = 0x60, busy_polls: int = 1) -> None:
        self.registers = {0xD0: chip_id, 0xA1: CALIB_H1, 0xF3: 0}
        for offset, byte in enumerate(CALIB_TP):
            self.registers[0x88 + offset] = byte
        for offset, byte in enumerate(CALIB_H):
            self.registers[0xE1 + offset] = byte
        for offset, byte in enumerate(DATA):
            self.registers[0xF7 + offset] = byte
        self.writes: list[tuple[int, int]] = []
        self.busy_polls = busy_polls
        self.closed = False
        self.fail: OSError | None = None

    def read_byte_data(self, address: int, register: int) -> int:
        if self.fail:
            raise self.fail
        if register == 0xF3 and self.busy_polls:
            self.busy_polls -= 1
            return 0b1000  # still measuring
        return self.registers[register]

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self.writes.append((register, value))

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        return [self.registers[register + i] for i in range(length)]

    def close(self) -> None:
        self.closed = True


def test_datasheet_worked_example() -> None:
    cal = Calibration.parse(list(CALIB_TP), CALIB_H1, list(CALIB_H))
    assert cal.t == (27504, 26435, -1000)
    assert cal.p == (36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
    assert cal.h == (75, 362, 0, 313, 50, 30)
    temperature, pascal, humidity = compensate(cal, 519888, 415148, 30000)
    assert temperature == 25.08
    assert pascal == 25767233 / 256  # 100653.25 Pa
    assert humidity == 56317 / 1024  # 54.997 %RH


def test_forced_mode_reading_through_the_bus() -> None:
    bus = FakeBus()
    sensor = BME280Input(
        BME280Options(name="hallway"),
        open_bus=lambda n: bus,
        sleep=lambda s: None,
        time_ns=lambda: T0,
    )
    [point] = sensor.collect()
    assert (0xF2, 0b001) in bus.writes  # humidity oversampling x1, before ctrl_meas
    assert bus.writes[-1] == (0xF4, 0b001_001_01)  # T x1, P x1, forced mode
    line = LineEncoder({"host": "pi"}).encode(point, T0)
    assert line == (
        "environment,host=pi,name=hallway,sensor=bme280 temperature_c=25.08,"
        f"pressure_hpa=1006.5325390625,humidity_pct=54.9970703125 {T0}"
    )


def test_bmp280_has_no_humidity() -> None:
    bus = FakeBus(chip_id=0x58)
    sensor = BME280Input(open_bus=lambda n: bus, sleep=lambda s: None)
    [point] = sensor.collect()
    assert point.tags["sensor"] == "bmp280"
    assert set(point.fields) == {"temperature_c", "pressure_hpa"}
    assert (0xF2, 0b001) not in bus.writes


def test_sea_level_pressure_with_altitude() -> None:
    sensor = BME280Input(
        BME280Options(altitude_m=500.0), open_bus=lambda n: FakeBus(), sleep=lambda s: None
    )
    [point] = sensor.collect()
    expected = sea_level(25767233 / 256, 500.0, 25.08) / 100
    assert point.fields["sea_level_pressure_hpa"] == expected
    # By hand: 1006.53 * (1 - 3.25 / 301.48) ** -5.257 = 1065.55
    assert expected == pytest.approx(1065.55, abs=0.01)


def test_wrong_chip_is_named() -> None:
    sensor = BME280Input(open_bus=lambda n: FakeBus(chip_id=0x33), sleep=lambda s: None)
    with pytest.raises(InputError, match=r"chip id 0x33 .* is not a BME280"):
        list(sensor.collect())


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (FileNotFoundError(2, "No such file"), "raspi-config nonint do_i2c 0"),
        (PermissionError(13, "Permission denied"), "group 'i2c'"),
        (OSError(errno.EREMOTEIO, "Remote I/O error"), "check the wiring and the address"),
    ],
)
def test_bus_errors_say_what_to_check(error: OSError, hint: str) -> None:
    def open_bus(number: int) -> FakeBus:
        raise error

    sensor = BME280Input(open_bus=open_bus, sleep=lambda s: None)
    with pytest.raises(InputError, match=hint):
        list(sensor.collect())


def test_a_replugged_sensor_recovers_without_restart() -> None:
    bus = FakeBus()
    opened = []

    def open_bus(number: int) -> FakeBus:
        opened.append(number)
        return bus

    sensor = BME280Input(open_bus=open_bus, sleep=lambda s: None)
    list(sensor.collect())
    bus.fail = OSError(errno.EREMOTEIO, "Remote I/O error")
    with pytest.raises(InputError):
        list(sensor.collect())
    assert bus.closed
    bus.fail = None
    [point] = sensor.collect()
    assert point.fields["temperature_c"] == 25.08
    assert len(opened) == 2  # reopened, calibration read again


def test_a_measurement_that_never_finishes() -> None:
    sensor = BME280Input(open_bus=lambda n: FakeBus(busy_polls=10**6), sleep=lambda s: None)
    with pytest.raises(InputError, match="never finished"):
        list(sensor.collect())


def test_golden_line_protocol() -> None:
    sensors = [
        BME280Input(
            BME280Options(name="hallway", altitude_m=120.0),
            open_bus=lambda n: FakeBus(),
            sleep=lambda s: None,
            time_ns=lambda: T0,
        ),
        BME280Input(
            BME280Options(address=0x77),
            open_bus=lambda n: FakeBus(chip_id=0x58),
            sleep=lambda s: None,
            time_ns=lambda: T0,
        ),
    ]
    assert_golden("bme280", [point for sensor in sensors for point in sensor.collect()])
