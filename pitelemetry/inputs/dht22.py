"""DHT22 / AM2302 temperature and humidity through the kernel's IIO driver.

Wiring: VCC to 3.3 V, GND, DATA to a GPIO with a 10 kΩ pull-up to 3.3 V (modules on a
small board usually have it). Enable the kernel driver, which also drives the DHT22
despite its name, in ``/boot/firmware/config.txt``: ``dtoverlay=dht11,gpiopin=4``, and
reboot. Values then appear under ``/sys/bus/iio/devices/iio:deviceN/`` (``$HOST_SYS``):
``in_temp_input`` (m°C) and ``in_humidityrelative_input`` (m%RH). No group is needed.
The kernel times the sensor's pulses, which userspace Python cannot do reliably: the
userspace libraries lose 10 to 50 % of reads on a busy Pi.

Config::

    [[inputs.dht22]]
    name = "bathroom"
    device = ""          # iio:deviceN; empty = the first device named dht11
    reads = 3            # good reads per collection; the median is reported
    interval = "1m"

Each collection reads up to ``reads + 2`` times, 2 s apart (the sensor's minimum;
the driver caches a reading for 2 s), and reports the median of the good ones. A read
is bad when the driver returns an error (no answer, checksum) or a value outside the
sensor's range: -40 to 80 °C, 0 to 100 %RH. With 3 reads a collection takes about 4 s,
so keep ``interval`` at 10 s or more.

Points: measurement ``environment``, tags ``sensor=dht22``, ``name``; fields
``temperature_c``, ``humidity_pct``.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pitelemetry.alerting import AlertRule
from pitelemetry.inputs import Host, Input, InputError, Options, name_problems
from pitelemetry.inputs.sensors import SENSOR_SILENT, environment_panels
from pitelemetry.panels import Panel
from pitelemetry.point import Point

DRIVER_NAME = "dht11"  # the kernel driver's name, for DHT11 and DHT22 alike
MIN_SPACING_S = 2.0
TEMPERATURE_RANGE_C = (-40.0, 80.0)


MAX_READS = 10  # each read after the first waits MIN_SPACING_S


@dataclass(frozen=True)
class DHT22Options(Options):
    dashboard = "home"

    name: str = ""
    device: str = ""
    reads: int = 3

    def problems(self) -> Iterator[tuple[str, str]]:
        yield from name_problems("name", self.name)
        if self.device and not re.fullmatch(r"iio:device\d+", self.device):
            yield "device", f"{self.device!r} is not an IIO device name like 'iio:device0'"
        if not 1 <= self.reads <= MAX_READS:
            yield "reads", f"{self.reads} reads; use 1..{MAX_READS} (the median is written)"

    def claims(self) -> Iterator[tuple[str, str]]:
        if self.device:
            yield "device", f"IIO device {self.device}"

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        if self.name or self.device:
            yield ("name" if self.name else "device"), self.name or self.device

    def alerts(self) -> Iterator[AlertRule]:
        yield SENSOR_SILENT

    def panels(self) -> Iterator[Panel]:
        name = self.name or self.device
        if name:
            return environment_panels(name, pressure=False)
        # The first DHT device found at run time: its name is not known here.
        return environment_panels("DHT22", pressure=False, where="\"sensor\" = 'dht22'")


def find_dht_devices(iio: Path) -> list[Path]:
    """IIO devices whose driver is the DHT one, in name order."""
    return [
        device
        for device in sorted(iio.glob("iio:device*"))
        if _read(device / "name") == DRIVER_NAME
    ]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class DHT22Input(Input):
    Options = DHT22Options

    def __init__(
        self,
        options: DHT22Options | None = None,
        *,
        sys: str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options or DHT22Options()
        self.iio = Path(sys or os.environ.get("HOST_SYS", "/sys")) / "bus" / "iio" / "devices"
        self._sleep = sleep
        self._time_ns = time_ns
        self.bad_reads = 0

    @classmethod
    def discover(cls, host: Host) -> Iterator[str]:
        devices = find_dht_devices(host.sys / "bus" / "iio" / "devices")
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

    def _device(self) -> Path:
        if self.options.device:
            device = self.iio / self.options.device
            if not device.is_dir():
                raise InputError(f"{device} does not exist: is dtoverlay=dht11,gpiopin=N set?")
            return device
        devices = find_dht_devices(self.iio)
        if not devices:
            raise InputError(
                f"no DHT device under {self.iio}: add dtoverlay=dht11,gpiopin=<N> to "
                "/boot/firmware/config.txt and reboot"
            )
        return devices[0]

    def collect(self) -> Iterator[Point]:
        device = self._device()
        good: list[tuple[float, float]] = []
        problems: list[str] = []
        stamp = self._time_ns()
        for attempt in range(self.options.reads + 2):
            if len(good) >= self.options.reads:
                break
            if attempt:
                self._sleep(MIN_SPACING_S)
            try:
                good.append(self._read_once(device))
            except (OSError, ValueError) as exc:
                self.bad_reads += 1
                problems.append(str(exc))
        if not good:
            raise InputError(
                f"{device.name}: no good read in {self.options.reads + 2} tries "
                f"(last: {problems[-1]}); check the wiring and the 10 kOhm pull-up"
            )
        fields = {
            "temperature_c": statistics.median(t for t, _ in good),
            "humidity_pct": statistics.median(h for _, h in good),
        }
        tags = {"sensor": "dht22", "name": self.options.name or device.name}
        yield Point("environment", fields, tags, stamp)

    def _read_once(self, device: Path) -> tuple[float, float]:
        try:
            temperature = int((device / "in_temp_input").read_text()) / 1000
            humidity = int((device / "in_humidityrelative_input").read_text()) / 1000
        except OSError as exc:
            raise OSError(exc.errno, f"read failed: {exc.strerror}") from None
        if not TEMPERATURE_RANGE_C[0] <= temperature <= TEMPERATURE_RANGE_C[1]:
            raise ValueError(f"implausible temperature {temperature} °C")
        if not 0.0 <= humidity <= 100.0:
            raise ValueError(f"implausible humidity {humidity} %RH")
        return temperature, humidity
