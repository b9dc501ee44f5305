"""The value types a config holds and inputs use, with no dependency on the config
parser: :data:`Duration`, :class:`Secret` and the URL check. Inputs import these from
here, so an input module never imports :mod:`pitelemetry.config`.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import NewType

Duration = NewType("Duration", float)
"""Seconds, written in the file as ``"10s"``, ``"5m"``, ``"1h30m"`` or ``"250ms"``."""

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class Secret:
    """A secret read from a file; ``reveal()`` returns it, ``repr`` never does."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.source!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


SecretFile = NewType("SecretFile", str)
"""A ``*_file`` key: parsed into ``Secret | None``."""


def parse_duration(text: str) -> float:
    """``"1h30m"`` -> 5400.0; raises ``ValueError`` on anything else."""
    text = text.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(text)
    return total


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


def url_problem(url: str, schemes: tuple[str, ...]) -> str | None:
    """What is wrong with ``url`` (a scheme of ``schemes``, a host name or address, a
    port in 1..65535), or ``None``. Run at config load, so a typo stops the daemon with
    exit 2 instead of failing on the first write."""
    allowed = " or ".join(f"{scheme}://" for scheme in schemes)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if parts.scheme not in schemes:
        return f"{url!r} must start with {allowed}"
    host = parts.hostname
    if not host:
        return f"{url!r} names no host"
    if port == 0:
        return f"{url!r}: port 0 is not a port; use 1..65535"
    if ":" in host:  # an IPv6 address; urlsplit has checked the brackets
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return f"{url!r}: {host!r} is not an IPv6 address"
        return None
    if not all(_HOST_LABEL.match(label) for label in host.removesuffix(".").split(".")):
        return f"{url!r}: {host!r} is not a valid host name"
    return None
