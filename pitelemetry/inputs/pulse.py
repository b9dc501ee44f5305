"""Pulse meters on a GPIO pin: S0 electricity meters, reed-switch water and gas meters.

Wiring: an S0 output's ``S0+`` to the GPIO, ``S0-`` to GND, with the Pi's internal
pull-up (many S0 outputs are specified for 5 to 27 V: check the meter's datasheet, or
use an optocoupler). A reed contact: one side to the GPIO, the other to GND. The service
user needs group ``gpio``.

Config::

    [[inputs.pulse]]
    pin = 17
    name = "house"
    kind = "electricity"        # electricity | water | gas
    pulses_per_unit = 1000.0    # per kWh (electricity) or per m³ (water, gas): on the meter
    meter_start = 0.0           # the meter's reading (kWh or m³) when counting began
    bounce_time = "10ms"        # 20 to 50 ms for reed contacts, which bounce

Pulses are counted as they arrive (gpiozero, debounced); each collection reports:

============ ====================================================================
kind         fields (measurement ``meter``, tags ``name``, ``kind``)
============ ====================================================================
electricity  ``energy_wh`` (the running total), ``power_w``
water        ``volume_l``, ``flow_l_min``
gas          ``volume_m3``, ``flow_m3_h``
all          ``pulses`` (counted since the state file was created)
============ ====================================================================

The rate comes from the time between the last two pulses, and falls as time passes
without one (it can be no higher than one pulse over the time since the last); after
``zero_after`` without a pulse it is 0. The count is kept in ``state_dir`` and survives
restarts and power cuts; to spare the SD card it is written at most every
``save_every`` (and at shutdown), so a power cut can lose the pulses of that window.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pitelemetry import statefile
from pitelemetry.alerting import AlertRule
from pitelemetry.inputs import Input, Options, name_problems, pin_problems
from pitelemetry.inputs.sensors import open_gpio_input
from pitelemetry.panels import Panel, select, tag, target, timeseries
from pitelemetry.point import Point
from pitelemetry.values import Duration

if TYPE_CHECKING:
    from pitelemetry.config import AgentConfig, InputConfig

log = logging.getLogger(__name__)


# What a pulse meter's panels show: the rate and total fields, their Grafana units, and
# the words for the two panels.
PANELS = {
    "electricity": ("power_w", "energy_wh", "watt", "watth", ("power", "energy")),
    "water": ("flow_l_min", "volume_l", "flowlpm", "litre", ("flow", "water")),
    "gas": ("flow_m3_h", "volume_m3", "flowcmh", "m3", ("flow", "gas")),
}


@dataclass(frozen=True)
class PulseOptions(Options):
    dashboard = "home"

    pin: int
    name: str = ""
    kind: Literal["electricity", "water", "gas"] = "electricity"
    pulses_per_unit: float = 1000.0
    meter_start: float = 0.0
    pull_up: bool = True
    bounce_time: Duration = Duration(0.01)
    zero_after: Duration = Duration(300.0)
    save_every: Duration = Duration(300.0)

    @property
    def sensor(self) -> str:
        """The ``name`` tag (and the state file's name): the name, else ``gpio<pin>``."""
        return self.name or f"gpio{self.pin}"

    def problems(self) -> Iterator[tuple[str, str]]:
        yield from pin_problems("pin", self.pin)
        yield from name_problems("name", self.name)
        if "/" in self.name or self.name.startswith("."):
            yield "name", f"{self.name!r}: the count is kept in a file of this name; no '/'"
        if self.pulses_per_unit <= 0:
            yield "pulses_per_unit", f"{self.pulses_per_unit:g}; the meter's imp/kWh (or /m³) > 0"
        if self.meter_start < 0:
            yield "meter_start", f"{self.meter_start:g}; a meter's reading is 0 or more"

    def claims(self) -> Iterator[tuple[str, str]]:
        yield "pin", f"GPIO{self.pin}"

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        yield "name", self.sensor

    def alerts(self) -> Iterator[AlertRule]:
        # Not one pulse in a day: the meter, its wiring or the pin stopped counting.
        yield AlertRule(
            "meter_stuck",
            "Meter counted nothing for a day",
            "meter",
            "pulses",
            by=("name",),
            below=0.5,
            aggregate="spread",
            window_s=86400,
        )

    def panels(self) -> Iterator[Panel]:
        rate, total, rate_unit, total_unit, words = PANELS[self.kind]
        where = f'"name" = {tag(self.sensor)}'
        now = select(f'mean("{rate}")', "meter", where)
        yield timeseries(f"{self.sensor} {words[0]}", [target(now, alias="$tag_host")], rate_unit)
        daily = select(f'spread("{total}")', "meter", where).replace(
            "time($__interval)", "time(1d)"
        )
        yield timeseries(
            f"{self.sensor} {words[1]} per day",
            [target(daily, alias="$tag_host")],
            total_unit,
            minimum=0,
            bars=True,
        )


class PulseInput(Input):
    Options = PulseOptions

    def __init__(
        self,
        options: PulseOptions,
        *,
        state_dir: str | Path,
        pin_factory: object = None,
        monotonic: Callable[[], float] = time.monotonic,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options
        self.name = options.sensor
        self.state_file = Path(state_dir) / f"pulse-{self.name}.json"
        self._pin_factory = pin_factory
        self._monotonic = monotonic
        self._time_ns = time_ns
        self._lock = threading.Lock()
        self._device: Any = None
        self._pulses = self._load()
        self._saved_pulses = self._pulses
        self._saved_at = monotonic()
        self._last_pulse: float | None = None
        self._interval: float | None = None

    @classmethod
    def from_config(
        cls, config: InputConfig, agent: AgentConfig, *, time_ns: Callable[[], int]
    ) -> PulseInput:
        return cls(config.options, state_dir=agent.state_dir, time_ns=time_ns)

    def _load(self) -> int:
        pulses = statefile.read_json(
            self.state_file,
            lambda data: statefile.finite_int(data["pulses"]),
            f"meter {self.name} counts from 0 (set meter_start to the meter's reading)",
        )
        return pulses or 0

    def _save(self) -> None:
        with self._lock:
            pulses = self._pulses
        if pulses == self._saved_pulses:
            return
        try:
            statefile.write_atomic(self.state_file, json.dumps({"pulses": pulses}))
        except OSError as exc:
            log.error("pulse %s: cannot save the count to %s: %s", self.name, self.state_file, exc)
            return
        self._saved_pulses = pulses
        self._saved_at = self._monotonic()

    def _open(self) -> None:
        if self._device is None:
            self._device = open_gpio_input(
                self.options.pin,
                pull_up=self.options.pull_up,
                bounce_time=self.options.bounce_time,
                pin_factory=self._pin_factory,
            )
            self._device.when_activated = self._on_pulse

    def _on_pulse(self) -> None:
        """Runs on gpiozero's thread: count and note the time, nothing more."""
        now = self._monotonic()
        with self._lock:
            self._pulses += 1
            if self._last_pulse is not None:
                self._interval = now - self._last_pulse
            self._last_pulse = now

    def collect(self) -> Iterator[Point]:
        self._open()
        now = self._monotonic()
        with self._lock:
            pulses, last, interval = self._pulses, self._last_pulse, self._interval
        if now - self._saved_at >= self.options.save_every:
            self._save()
        period = None
        if last is not None and interval is not None and now - last <= self.options.zero_after:
            period = max(interval, now - last)
        per_pulse = 1 / self.options.pulses_per_unit  # kWh or m³
        total = self.options.meter_start + pulses * per_pulse
        rate_per_s = per_pulse / period if period else 0.0  # kWh/s or m³/s
        fields: dict[str, float | int] = {"pulses": pulses}
        kind = self.options.kind
        if kind == "electricity":
            fields.update(energy_wh=total * 1000, power_w=rate_per_s * 3_600_000)
        elif kind == "water":
            fields.update(volume_l=total * 1000, flow_l_min=rate_per_s * 60_000)
        else:
            fields.update(volume_m3=total, flow_m3_h=rate_per_s * 3600)
        yield Point("meter", fields, {"name": self.name, "kind": kind}, self._time_ns())

    def close(self) -> None:
        self._save()
        if self._device is not None:
            self._device.close()
            self._device = None
