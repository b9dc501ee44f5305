"""Inputs: one module per source of readings, each registered by one line in
:mod:`pitelemetry.inputs.registry`.

An input is a class with a frozen ``Options`` dataclass (its config keys, validated by
:mod:`pitelemetry.config`, which also reports what its ``problems()`` method yields and
uses its ``default_interval``) and a ``collect()`` method that yields fresh
:class:`~pitelemetry.point.Point` objects every call. Inputs never talk to InfluxDB.
Everything an input touches outside the process (a sysfs root, a bus, a clock, an HTTP
session) is a keyword argument of its constructor that defaults to the real thing, so
tests pass fakes instead of patching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from pitelemetry.config import AgentConfig, InputConfig
    from pitelemetry.point import Point


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

    Options: ClassVar[type[Any]]
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

    def close(self) -> None:
        """Release handles (GPIO pins, connections). The default has none."""
