"""``pitelemetry sensors``: what is attached, as a config snippet to paste.

Asks every registered input type what it finds (``Input.discover``): DS18B20s on
1-Wire, BME280/BMP280 at I²C addresses 0x76 and 0x77, DHT devices of the kernel's IIO
driver. Where an input cannot look, it says which interface is off (and the line that
turns it on) or which group is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pitelemetry.inputs import Host
from pitelemetry.inputs.registry import INPUTS, input_class


def discover(
    *,
    sys: Path | None = None,
    dev: Path = Path("/dev"),
    i2c_bus: int = 1,
    open_bus: Callable[[int], Any] | None = None,
) -> Iterator[str]:
    """Lines of TOML: tables for what was found, comments for what was not."""
    host = Host(sys or Path(os.environ.get("HOST_SYS", "/sys")), dev, i2c_bus, open_bus)
    for kind in INPUTS:
        yield from input_class(kind).discover(host)
