"""DS18B20 1-Wire temperature sensors, read from sysfs.

Wiring: DQ to GPIO4 (or the pin in ``dtoverlay=w1-gpio,gpiopin=N``), a 4.7 kΩ pull-up
from DQ to 3.3 V, GND, and VDD to 3.3 V (parasite power works but is less reliable).
Enable with ``dtoverlay=w1-gpio`` in ``/boot/firmware/config.txt`` and reboot; sensors
appear as ``/sys/bus/w1/devices/28-<id>`` (under ``$HOST_SYS``). No group is needed.

Config::

    [[inputs.ds18b20]]
    names = { "28-0316a2794cff" = "living_room" }   # ROM id -> name; others by id

Points: measurement ``environment``, tags ``sensor=ds18b20``, ``name`` (from ``names``,
else the ROM id) and ``id``; field ``temperature_c``. Every sensor on the bus is read.

Failure modes, each rejected and counted, the other sensors unaffected:

* ``w1_slave``'s first line ends in ``NO`` (a CRC error on older kernels) or the read is
  empty (a CRC error on current kernels);
* all nine scratchpad bytes zero (a shorted or missing sensor reads ``crc=00 YES``);
* 85.000 °C, the power-on reset value (a read right after power-up or a brown-out),
  unless the previous reading was already above 80 °C;
* outside the sensor's range, -55 to 125 °C;
* a configured sensor that is not on the bus (unplugged).

Without ``w1_slave`` the newer ``temperature`` file (millidegrees, empty on error) is used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pitelemetry.alerting import AlertRule
from pitelemetry.inputs import Host, Input, InputError, Options, name_problems
from pitelemetry.inputs.sensors import SENSOR_SILENT, SensorWatch
from pitelemetry.panels import Panel, select, tag, target, timeseries
from pitelemetry.point import Point

POWER_ON_RESET_MC = 85000
RANGE_MC = (-55000, 125000)


@dataclass(frozen=True)
class DS18B20Options(Options):
    dashboard = "home"

    names: Mapping[str, str] = field(default_factory=dict)

    def problems(self) -> Iterator[tuple[str, str]]:
        for rom, name in self.names.items():
            if not rom.strip():
                yield "names", "a ROM id cannot be empty; it is the 28-... directory's name"
            yield from name_problems(f"names.{rom}", name)

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        return ((f"names.{rom}", name) for rom, name in self.names.items() if name)

    def alerts(self) -> Iterator[AlertRule]:
        yield SENSOR_SILENT

    def panels(self) -> Iterator[Panel]:
        for room in sorted({name for name in self.names.values() if name}):
            where = f'"sensor" = \'ds18b20\' AND "name" = {tag(room)}'
            query = select('mean("temperature_c")', "environment", where)
            yield timeseries(f"{room} temperature", [target(query, alias="$tag_host")], "celsius")
        query = select('mean("temperature_c")', "environment", "\"sensor\" = 'ds18b20'", '"name"')
        yield timeseries("All 1-Wire thermometers", [target(query, alias="$tag_name")], "celsius")


class BadReadError(ValueError):
    pass


def parse_w1_slave(text: str) -> int:
    """Millidegrees from a ``w1_slave`` file; :class:`BadReadError` says why not."""
    lines = text.strip().splitlines()
    if len(lines) < 2:
        raise BadReadError("empty read (CRC error or the sensor did not answer)")
    if not lines[0].rstrip().endswith("YES"):
        raise BadReadError("CRC check failed (crc=... NO)")
    scratchpad = lines[0].split(":")[0].split()
    if scratchpad and all(byte == "00" for byte in scratchpad):
        raise BadReadError("all-zero scratchpad: the sensor is shorted or missing")
    _, found, value = lines[1].partition("t=")
    if not found:
        raise BadReadError("no t= in the second line")
    try:
        return int(value.strip())
    except ValueError:
        raise BadReadError(f"t={value.strip()!r} is not a number") from None


def parse_temperature_file(text: str) -> int:
    text = text.strip()
    if not text:
        raise BadReadError("empty read (CRC error or the sensor did not answer)")
    try:
        return int(text)
    except ValueError:
        raise BadReadError(f"{text!r} is not a number") from None


class DS18B20Input(Input):
    Options = DS18B20Options

    @classmethod
    def discover(cls, host: Host) -> Iterator[str]:
        devices = host.sys / "bus" / "w1" / "devices"
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

    def __init__(
        self,
        options: DS18B20Options | None = None,
        *,
        sys: str | Path | None = None,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options or DS18B20Options()
        root = Path(sys or os.environ.get("HOST_SYS", "/sys"))
        self.devices = root / "bus" / "w1" / "devices"
        self._time_ns = time_ns
        self._watch = SensorWatch("ds18b20")
        self._last_mc: dict[str, int] = {}

    def collect(self) -> Iterator[Point]:
        if not self.devices.is_dir():
            raise InputError(
                f"{self.devices} does not exist: 1-Wire is off. Add dtoverlay=w1-gpio to "
                "/boot/firmware/config.txt (data on GPIO4, 4.7 kOhm pull-up to 3.3 V) and reboot"
            )
        found = sorted(p.name for p in self.devices.glob("28-*"))
        if not found and not self.options.names:
            raise InputError(
                f"no DS18B20 (28-*) under {self.devices}: check the wiring and the pull-up"
            )
        for rom in sorted(set(found) | set(self.options.names)):
            if rom not in found:
                yield from self._watch.failed(rom, "not on the bus: unplugged? check the wiring")
                continue
            try:
                millidegrees = self._read(rom)
            except (OSError, BadReadError) as exc:
                yield from self._watch.failed(rom, str(exc))
                continue
            yield from self._watch.ok(rom)
            tags = {"sensor": "ds18b20", "name": self.options.names.get(rom) or rom, "id": rom}
            yield Point(
                "environment", {"temperature_c": millidegrees / 1000}, tags, self._time_ns()
            )

    def _read(self, rom: str) -> int:
        device = self.devices / rom
        w1_slave = device / "w1_slave"
        if w1_slave.exists():
            millidegrees = parse_w1_slave(w1_slave.read_text())
        else:
            millidegrees = parse_temperature_file((device / "temperature").read_text())
        previous = self._last_mc.get(rom)
        if millidegrees == POWER_ON_RESET_MC and (previous is None or previous < 80000):
            raise BadReadError(
                "85.000 °C is the power-on reset value, not a reading "
                "(read too early, or the supply browned out)"
            )
        if not RANGE_MC[0] <= millidegrees <= RANGE_MC[1]:
            raise BadReadError(f"{millidegrees / 1000} °C is outside the sensor's range")
        self._last_mc[rom] = millidegrees
        return millidegrees
