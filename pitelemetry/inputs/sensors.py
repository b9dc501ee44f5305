"""What every sensor input shares: each sensor fails alone, a state change is logged
once, and losing or finding a sensor becomes an ``events`` point for Grafana.

An input that reads several sensors (all DS18B20s on a 1-Wire bus) keeps one
:class:`SensorWatch` and reports each sensor's read as :meth:`SensorWatch.ok` or
:meth:`SensorWatch.failed`; both return the event points to yield alongside the readings.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from typing import Any

from pitelemetry.alerting import AlertRule
from pitelemetry.inputs import InputError
from pitelemetry.logs import StateLog
from pitelemetry.panels import Panel, select, tag, target, timeseries
from pitelemetry.point import Point

log = logging.getLogger("pitelemetry.inputs")


class SensorWatch:
    def __init__(self, input_name: str) -> None:
        self.input_name = input_name
        self._state = StateLog(log)
        self._seen: set[str] = set()

    def ok(self, sensor: str) -> list[Point]:
        """``sensor`` read fine; an event if it had been lost."""
        recovered = self._state.clear(sensor, f"{self.input_name}: {sensor} is back")
        first = sensor not in self._seen
        self._seen.add(sensor)
        if recovered:
            return [_event("sensor_found", f"{sensor} is back", self.input_name, sensor)]
        if first:
            log.info("%s: found %s", self.input_name, sensor)
        return []

    def failed(self, sensor: str, problem: str) -> list[Point]:
        """``sensor`` could not be read: log once, and an event when it is lost."""
        if self._state.report(sensor, f"{self.input_name}: {sensor}: {problem}"):
            return [_event("sensor_lost", f"{sensor} lost", self.input_name, sensor, problem)]
        return []


def _event(kind: str, title: str, source: str, sensor: str, text: str = "") -> Point:
    return Point(
        "events",
        {"title": title, "text": text or title},
        {"kind": kind, "source": source, "sensor": sensor},
    )


def access_hint(exc: OSError, device: str, group: str, enable: str) -> str:
    """A message that says what to do about an ``OSError`` opening a device."""
    if isinstance(exc, FileNotFoundError):
        return f"{device} does not exist: the interface is off ({enable})"
    if isinstance(exc, PermissionError):
        return (
            f"permission denied on {device}: the service user needs group {group!r} "
            f"(sudo adduser pitelemetry {group}; the systemd unit adds it itself)"
        )
    if exc.errno in (errno.EREMOTEIO, errno.ENXIO, errno.EIO):
        return f"no answer on {device} ({exc.strerror}): check the wiring and the address"
    return f"{device}: {exc.strerror or exc}"


def open_gpio_input(
    pin: int, *, pull_up: bool | None, bounce_time: float | None, pin_factory: object = None
) -> Any:
    """A gpiozero ``DigitalInputDevice``, or :class:`InputError` saying what to fix."""
    from gpiozero import DigitalInputDevice  # noqa: PLC0415 - only GPIO inputs need it
    from gpiozero.exc import BadPinFactory, GPIOZeroError  # noqa: PLC0415

    try:
        return DigitalInputDevice(
            pin, pull_up=pull_up, bounce_time=bounce_time, pin_factory=pin_factory
        )
    except BadPinFactory:
        raise InputError(
            f"GPIO{pin}: no GPIO library found (is this a Raspberry Pi? install python3-lgpio)"
        ) from None
    except PermissionError:
        raise InputError(
            f"GPIO{pin}: permission denied: the service user needs group 'gpio'"
        ) from None
    except (GPIOZeroError, OSError) as exc:
        raise InputError(f"GPIO{pin}: {exc}") from None


def environment_panels(name: str, *, pressure: bool, where: str = "") -> Iterator[Panel]:
    """Temperature, humidity (and pressure) panels of the ``environment`` sensor ``name``
    (or of the series ``where`` selects)."""
    where = where or f'"name" = {tag(name)}'
    temperature = select('mean("temperature_c")', "environment", where)
    yield timeseries(f"{name} temperature", [target(temperature, alias="$tag_host")], "celsius")
    humidity = select('mean("humidity_pct")', "environment", where)
    yield timeseries(
        f"{name} humidity",
        [target(humidity, alias="$tag_host")],
        "humidity",
        minimum=0,
        maximum=100,
    )
    if pressure:
        pressure_query = select('mean("pressure_hpa")', "environment", where)
        yield timeseries(
            f"{name} pressure", [target(pressure_query, alias="$tag_host")], "pressurehpa"
        )


# Every environment sensor that writes a temperature, silent for 30 minutes: one rule
# for DS18B20, BME280 and DHT22 alike, one alert per Pi and sensor.
SENSOR_SILENT = AlertRule(
    "sensor_silent",
    "Sensor silent",
    "environment",
    "temperature_c",
    by=("sensor", "name"),
    silent_for_s=1800,
)
