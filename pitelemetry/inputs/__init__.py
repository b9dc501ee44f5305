"""Inputs: one module per source of readings, each registered by one line in
:mod:`pitelemetry.inputs.registry`. ``_template.py`` is a complete small one to copy.

The contract, all of it declared here and type-checked:

* ``Options``: a frozen dataclass subclassing :class:`Options`. Its annotations are the
  input's config keys (the parser checks types, enums, durations and unknown keys);
  :meth:`Options.problems` adds what types cannot say (ranges, pins, addresses, one of
  two keys), and :meth:`Options.claims` the hardware it needs alone, so two inputs on
  one GPIO pin are refused. All of it runs once at config load, before any network or
  hardware is touched: a problem is exit 2 naming the file and key, never a traceback.
* ``Options.dashboard`` and :meth:`Options.panels`: the Grafana dashboard its panels go
  on and the panels, made with :mod:`pitelemetry.panels`; :meth:`Options.alerts` its
  default alert rules (:mod:`pitelemetry.alerting`).
* :class:`Input`: ``collect()`` yields fresh :class:`~pitelemetry.point.Point` objects
  every call (or ``start()`` keeps ``emit`` for events); ``discover()`` says what
  ``pitelemetry sensors`` finds of its kind. Inputs never talk to InfluxDB.

Everything an input touches outside the process (a sysfs root, a bus, a clock, an HTTP
session) is a keyword argument of its constructor that defaults to the real thing, so
tests pass fakes instead of patching. A sensor missing at run time is an
:class:`InputError` from ``collect()``, a per-input state, not a config problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from pitelemetry.alerting import AlertRule
    from pitelemetry.config import AgentConfig, InputConfig
    from pitelemetry.panels import Panel
    from pitelemetry.point import Point

# BCM GPIO numbers on the 40-pin header.
GPIO_PINS = range(28)
# 7-bit I2C addresses a device may have (0x00-0x02 and 0x78-0x7f are reserved).
I2C_ADDRESSES = range(0x03, 0x78)

Dashboard = Literal["", "pi-health", "home", "markets"]


@dataclass(frozen=True)
class Options:
    """Base of every input's options; subclasses are ``@dataclass(frozen=True)``."""

    # How often the input runs when its table sets no ``interval``; 0: ``[agent] interval``.
    default_interval: ClassVar[float] = 0.0
    # The dashboard :meth:`panels` go on; "": none.
    dashboard: ClassVar[Dashboard] = ""

    def problems(self) -> Iterator[tuple[str, str]]:
        """(key, what is wrong and what is allowed) for each problem the key types cannot
        express. The default finds none."""
        return iter(())

    def claims(self) -> Iterator[tuple[str, str]]:
        """(key, resource) for hardware this input must have to itself (``"GPIO17"``,
        ``"I2C bus 1 address 0x76"``); two inputs claiming one are refused at load."""
        return iter(())

    def sensor_names(self) -> Iterator[tuple[str, str]]:
        """(key, name) for each sensor name the input writes as its ``name`` tag; names
        must be unique among the inputs of one type, or their series would mix."""
        return iter(())

    def panels(self) -> Iterator[Panel]:
        """This input's Grafana panels (see :mod:`pitelemetry.panels`). Identical panels
        from two inputs appear once. The default has none."""
        return iter(())

    def alerts(self) -> Iterator[AlertRule]:
        """This input's default alert rules (see :mod:`pitelemetry.alerting`), on unless
        ``[alerts] defaults = false`` or named in ``[alerts] disable``. Rules of one name
        from two inputs must be the same rule. The default has none."""
        return iter(())


def pin_problems(key: str, pin: int) -> Iterator[tuple[str, str]]:
    if pin not in GPIO_PINS:
        yield key, f"GPIO {pin} does not exist; use a BCM number 0..27"


def i2c_problems(key: str, address: int) -> Iterator[tuple[str, str]]:
    if address not in I2C_ADDRESSES:
        yield key, f"0x{address:02x} is not an I2C device address; use 0x03..0x77"


def name_problems(key: str, name: str) -> Iterator[tuple[str, str]]:
    """A sensor name: empty means "derived"; one that is blank once control characters
    are removed (InfluxDB would store only U+FFFD) is refused."""
    if name and not "".join(c for c in name if c.isprintable()).strip():
        yield key, f"{name!r} is no name once control characters and spaces are removed"


@dataclass(frozen=True)
class Host:
    """Where ``pitelemetry sensors`` looks: the sysfs and /dev roots (fixture trees in
    tests), the I2C bus number, and how to open it (``None``: the real bus)."""

    sys: Path
    dev: Path
    i2c_bus: int
    open_bus: Callable[[int], Any] | None = None


class Emit(Protocol):
    def __call__(
        self,
        points: list[Point],
        on_durable: Callable[[], None] | None = None,
        *,
        source_stamped: bool = False,
    ) -> None: ...


class InputError(Exception):
    """An input could not read its source; the message says what to check.

    Raised from ``collect()``; the collector logs it once per change of message, counts
    it, and keeps running the input at its interval so a replugged sensor recovers.
    """


class Input:
    """Base class of every input. Subclasses set ``Options`` and implement ``collect``."""

    Options: ClassVar[type[Options]]
    # True when every point carries its source's own time (a quote's trade time), not
    # the Pi's clock: points collected before the clock was set are then not shifted
    # once it is.
    source_stamped: ClassVar[bool] = False

    @classmethod
    def from_config(
        cls, config: InputConfig, agent: AgentConfig, *, time_ns: Callable[[], int]
    ) -> Input:
        """Build the input from its config. Every input's constructor takes its options
        and ``time_ns``, the agent's clock, to stamp each reading; override this to pass
        more (``agent.state_dir`` for state that outlives a restart)."""
        del agent
        return cls(config.options, time_ns=time_ns)  # type: ignore[call-arg]

    def start(self, emit: Emit) -> None:
        """Called once when the daemon starts. Inputs that see events as they happen
        (a door opening, an MQTT message) keep ``emit`` and call it from any thread:
        ``emit(points, on_durable)`` calls ``on_durable`` once the points are written or
        safely spooled; ``source_stamped=True`` says the points carry their source's own
        times (see ``source_stamped``). The default has nothing to start."""
        del emit

    def collect(self) -> Iterable[Point]:
        """Read the source now and yield its points, stamped when read."""
        raise NotImplementedError

    def checks(self) -> Iterable[tuple[str, bool, str]]:
        """(subject, ok, detail) lines an input adds to ``pitelemetry check`` beyond its
        trial collection (the stocks input's quota plan). The default adds none."""
        return ()

    def status(self) -> str:
        """One line for ``pitelemetry status`` about a lasting state beyond the last
        error (the MQTT input: connected or since when not). The default says nothing."""
        return ""

    @classmethod
    def discover(cls, host: Host) -> Iterator[str]:
        """Lines of TOML for ``pitelemetry sensors``: a table per device of this kind
        found under ``host``, or a comment saying what is off and how to turn it on.
        The default looks for nothing."""
        del host
        return iter(())

    def close(self) -> None:
        """Release handles (GPIO pins, connections). The default has none."""
