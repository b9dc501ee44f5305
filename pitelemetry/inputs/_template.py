"""A reading from one sysfs file: the template to copy for a new input.

Many Pi sensors have a kernel driver that shows the reading as a number in a file: an
``hwmon`` temperature (``/sys/class/hwmon/hwmon0/temp1_input``, millidegrees), an IIO
light sensor (``in_illuminance_raw``). This input reads such a file and scales it. Say
here what a user must know, as a datasheet would: the wiring, the overlay or group it
needs, the range, and how it fails.

Config::

    [[inputs.template]]
    path = "/sys/class/hwmon/hwmon0/temp1_input"
    name = "cpu_hwmon"
    field = "temperature_c"
    scale = 0.001               # millidegrees -> degrees

Points: measurement ``environment``, tags ``sensor=template``, ``name``; field
``<field>``. A missing or unreadable file, or one that is not a number, is an
:class:`InputError` naming the file; the next collection tries again.

To make it a real input: rename the module, the classes and ``SENSOR``, add one line to
``registry.py``, a golden line-protocol fixture and a test (see
``tests/test_registry.py``), and the commented table to ``examples/pitelemetry.toml``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pitelemetry.inputs import Input, InputError, Options, name_problems
from pitelemetry.panels import Panel, field, select, tag, target, timeseries
from pitelemetry.point import Point, clean_key

SENSOR = "template"  # its ``sensor`` tag: rename it with the module


@dataclass(frozen=True)
class TemplateOptions(Options):
    dashboard = "home"  # its panels go on the Home dashboard

    path: str  # no default: a required key
    name: str
    field: str = "value"
    scale: float = 1.0

    def problems(self) -> Iterator[tuple[str, str]]:
        """What the key types cannot say; each is exit 2 naming the key, at load."""
        if not self.path.startswith("/"):
            yield "path", f"{self.path!r} is not an absolute path"
        if not self.name:
            yield "name", "a name is needed: it is the series' name tag"
        yield from name_problems("name", self.name)
        if clean_key(self.field) in ("", "time"):
            yield "field", f"{self.field!r} cannot be a field name"

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        yield "name", self.name  # two inputs of this type with one name are refused

    def panels(self) -> Iterator[Panel]:
        where = f'"sensor" = {tag(SENSOR)} AND "name" = {tag(self.name)}'
        query = select(f"mean({field(self.field)})", "environment", where)
        yield timeseries(f"{self.name} {self.field}", [target(query, alias="$tag_host")], "short")


class TemplateInput(Input):
    Options = TemplateOptions

    def __init__(
        self, options: TemplateOptions, *, time_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self.options = options
        self._time_ns = time_ns  # a seam: tests pass a fixed clock

    def collect(self) -> Iterator[Point]:
        path = Path(self.options.path)
        try:
            raw = float(path.read_text().strip())
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror}") from None
        except ValueError:
            raise InputError(f"{path}: not a number") from None
        fields = {self.options.field: raw * self.options.scale}
        tags = {"sensor": SENSOR, "name": self.options.name}
        yield Point("environment", fields, tags, self._time_ns())
