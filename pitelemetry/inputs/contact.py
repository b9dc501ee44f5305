"""Door and window contacts and PIR motion sensors on a GPIO pin.

Wiring: a reed contact between the GPIO and GND, with the Pi's internal pull-up
(``pull_up = true``, the default for doors and windows): a closed door closes the
contact and pulls the pin low. A PIR module's output to the GPIO, powered from 5 V (its
output is 3.3 V), no pull-up (``pull_up = false``, the default for motion). The service
user needs group ``gpio``.

Config::

    [[inputs.contact]]
    pin = 27
    name = "front_door"
    kind = "door"            # door | window | motion | contact
    invert = false           # flip the meaning, e.g. a normally-closed contact
    bounce_time = "50ms"

Points: measurement ``gpio``, tags ``name``, ``kind``; field ``state`` (boolean: open
for a door or window, motion for a PIR, the pin high for ``contact``), at every
``interval`` and at once on every change, stamped when it happened; plus field
``changes`` (counted since start). Every change is also an ``events`` point
(``front_door opened`` / ``closed``, ``motion`` / ``no motion``) for Grafana
annotations.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pitelemetry.inputs import Emit, Input, InputError, Options, name_problems, pin_problems
from pitelemetry.inputs.sensors import open_gpio_input
from pitelemetry.panels import Panel, select, state_timeline, tag, target
from pitelemetry.point import Point
from pitelemetry.values import Duration

WORDS = {
    "door": ("opened", "closed"),
    "window": ("opened", "closed"),
    "motion": ("motion", "no motion"),
    "contact": ("on", "off"),
}


# The words of a contact's state timeline for true and false.
PANEL_WORDS = {"motion": ("motion", "quiet"), "contact": ("on", "off")}


@dataclass(frozen=True)
class ContactOptions(Options):
    dashboard = "home"

    pin: int
    name: str = ""
    kind: Literal["door", "window", "motion", "contact"] = "door"
    pull_up: bool | None = None  # default: true for door/window/contact, false for motion
    invert: bool = False
    bounce_time: Duration = Duration(0.05)

    @property
    def sensor(self) -> str:
        """The ``name`` tag: the name, else ``gpio<pin>``."""
        return self.name or f"gpio{self.pin}"

    def problems(self) -> Iterator[tuple[str, str]]:
        yield from pin_problems("pin", self.pin)
        yield from name_problems("name", self.name)

    def claims(self) -> Iterator[tuple[str, str]]:
        yield "pin", f"GPIO{self.pin}"

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        yield "name", self.sensor

    def panels(self) -> Iterator[Panel]:
        words = PANEL_WORDS.get(self.kind, ("open", "closed"))
        query = select('last("state")', "gpio", f'"name" = {tag(self.sensor)}') + " fill(previous)"
        yield state_timeline(self.sensor, [target(query, alias="$tag_host")], words)


class ContactInput(Input):
    Options = ContactOptions

    def __init__(
        self,
        options: ContactOptions,
        *,
        pin_factory: object = None,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options
        self.name = options.sensor
        self._pin_factory = pin_factory
        self._time_ns = time_ns
        self._device: Any = None
        self._emit: Emit | None = None
        self._lock = threading.Lock()
        self._state: bool | None = None
        self.changes = 0

    def start(self, emit: Emit) -> None:
        self._emit = emit
        with contextlib.suppress(InputError):  # collect() reports it, and retries
            self._open()

    def _open(self) -> None:
        if self._device is not None:
            return
        pull_up = self.options.pull_up
        if pull_up is None:
            pull_up = self.options.kind != "motion"
        device = open_gpio_input(
            self.options.pin,
            pull_up=pull_up,
            bounce_time=self.options.bounce_time,
            pin_factory=self._pin_factory,
        )
        device.when_activated = self._changed
        device.when_deactivated = self._changed
        self._device = device
        with self._lock:
            self._state = self._read()

    def _read(self) -> bool:
        """True for open / motion / high, from the pin's electrical level."""
        return bool(self._device.pin.state) != self.options.invert

    def _point(self, state: bool, stamp: int) -> Point:
        fields = {"state": state, "changes": self.changes}
        return Point("gpio", fields, {"name": self.name, "kind": self.options.kind}, stamp)

    def _changed(self) -> None:
        """Runs on gpiozero's thread on every debounced edge."""
        stamp = self._time_ns()
        with self._lock:
            state = self._read()
            if state == self._state:
                return
            self._state = state
            self.changes += 1
            points = [self._point(state, stamp)]
        word = WORDS[self.options.kind][0 if state else 1]
        points.append(
            Point(
                "events",
                {"title": f"{self.name} {word}", "text": f"GPIO{self.options.pin}"},
                {"kind": f"{self.options.kind}_{word.replace(' ', '_')}", "source": self.name},
                stamp,
            )
        )
        if self._emit is not None:
            self._emit(points)

    def collect(self) -> Iterator[Point]:
        self._open()
        with self._lock:
            state = self._read()
            self._state = state
            point = self._point(state, self._time_ns())
        yield point

    def close(self) -> None:
        if self._device is not None:
            self._device.close()
            self._device = None
