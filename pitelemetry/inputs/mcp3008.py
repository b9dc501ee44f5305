"""Analog sensors through an MCP3008 ADC on SPI: soil moisture, light, a potentiometer.

Wiring (SPI0, CE0): MCP3008 VDD and VREF to 3.3 V, AGND and DGND to GND, CLK to GPIO11,
DOUT to GPIO9 (MISO), DIN to GPIO10 (MOSI), CS to GPIO8 (CE0); the sensor's analog
output to CH0..CH7. Enable SPI with ``sudo raspi-config nonint do_spi 0``; the service
user needs group ``spi`` (and ``gpio``).

Config::

    [[inputs.mcp3008]]
    channel = 0
    name = "tomatoes"
    field = "moisture_pct"      # the field's name, with its unit
    raw_min = 0.78              # the ADC's reading (0..1) at scale_min, e.g. dry soil
    raw_max = 0.35              # ... and at scale_max, e.g. in water
    scale_min = 0.0
    scale_max = 100.0

The reading (0..1 of VREF) is mapped linearly from ``raw_min``..``raw_max`` onto
``scale_min``..``scale_max``; readings beyond the calibration are not clamped, so a
drifting sensor shows. Points: measurement ``environment``, tags ``sensor=mcp3008``,
``name``, ``channel``; fields ``<field>`` and ``raw``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pitelemetry.alerting import AlertRule
from pitelemetry.inputs import Input, InputError, Options, name_problems
from pitelemetry.panels import Panel, field, select, tag, target, timeseries
from pitelemetry.point import Point, clean_key


def open_mcp3008(channel: int, device: int) -> Any:
    from gpiozero import MCP3008  # noqa: PLC0415 - only analog inputs need it
    from gpiozero.exc import GPIOZeroError  # noqa: PLC0415

    try:
        return MCP3008(channel=channel, device=device)
    except PermissionError:
        raise InputError(
            f"/dev/spidev0.{device}: permission denied: the service user needs group 'spi'"
        ) from None
    except (GPIOZeroError, OSError) as exc:
        raise InputError(
            f"MCP3008 on SPI0 CE{device}: {exc} (SPI off? sudo raspi-config nonint do_spi 0)"
        ) from None


@dataclass(frozen=True)
class MCP3008Options(Options):
    dashboard = "home"

    channel: int
    field: str
    name: str = ""
    device: int = 0
    raw_min: float = 0.0
    raw_max: float = 1.0
    scale_min: float = 0.0
    scale_max: float = 1.0

    @property
    def sensor(self) -> str:
        """The ``name`` tag: the name, else ``ch<channel>``."""
        return self.name or f"ch{self.channel}"

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.channel > 7:
            yield "channel", f"{self.channel}; an MCP3008 has channels 0..7"
        if self.device > 1:
            yield "device", f"{self.device}; SPI0 has chip selects 0 (CE0) and 1 (CE1)"
        if self.raw_min == self.raw_max:
            yield "raw_max", f"equals raw_min ({self.raw_min:g}); the two calibration points differ"
        if clean_key(self.field) in ("", "time", "raw"):
            yield "field", f"{self.field!r} cannot be the field (empty, 'time' or 'raw')"
        yield from name_problems("name", self.name)

    def claims(self) -> Iterator[tuple[str, str]]:
        yield "channel", f"MCP3008 on SPI0 CE{self.device} channel {self.channel}"

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        yield "name", self.sensor

    def alerts(self) -> Iterator[AlertRule]:
        yield AlertRule(
            "analog_sensor_silent",
            "Analog sensor silent",
            "environment",
            "raw",
            {"sensor": "mcp3008"},
            by=("name",),
            silent_for_s=1800,
        )

    def panels(self) -> Iterator[Panel]:
        where = f'"sensor" = \'mcp3008\' AND "name" = {tag(self.sensor)}'
        query = select(f"mean({field(self.field)})", "environment", where)
        yield timeseries(f"{self.sensor} {self.field}", [target(query, alias="$tag_host")], "short")


class MCP3008Input(Input):
    Options = MCP3008Options

    def __init__(
        self,
        options: MCP3008Options,
        *,
        open_adc: Callable[[int, int], Any] = open_mcp3008,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options
        self._open_adc = open_adc
        self._time_ns = time_ns
        self._adc: Any = None

    def scale(self, raw: float) -> float:
        o = self.options
        return o.scale_min + (raw - o.raw_min) * (o.scale_max - o.scale_min) / (
            o.raw_max - o.raw_min
        )

    def collect(self) -> Iterator[Point]:
        if self._adc is None:
            self._adc = self._open_adc(self.options.channel, self.options.device)
        try:
            raw = float(self._adc.value)
        except OSError as exc:
            self.close()
            raise InputError(f"MCP3008 channel {self.options.channel}: {exc}") from None
        tags = {
            "sensor": "mcp3008",
            "name": self.options.sensor,
            "channel": str(self.options.channel),
        }
        fields = {self.options.field: self.scale(raw), "raw": raw}
        yield Point("environment", fields, tags, self._time_ns())

    def close(self) -> None:
        if self._adc is not None:
            self._adc.close()
            self._adc = None
