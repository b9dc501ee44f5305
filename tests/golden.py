"""Golden line protocol: what each input writes for a fixed reading, byte for byte, in
``tests/fixtures/golden/<input type>.lp``. Every registered input has one (the registry
test checks). ``UPDATE_GOLDEN=1`` rewrites a file after a deliberate change: review the
diff like code."""

from __future__ import annotations

import os
from collections.abc import Iterable

from pitelemetry.point import LineEncoder, Point
from tests.conftest import FIXTURES

GOLDEN = FIXTURES / "golden"
T0 = 1_795_300_000_000_000_000


def assert_golden(kind: str, points: Iterable[Point], now: int = T0) -> None:
    """The points as line protocol (tag ``host=pi``, stamped ``now`` where unstamped)
    equal ``tests/fixtures/golden/<kind>.lp``."""
    encoder = LineEncoder({"host": "pi"})
    got = "".join(encoder.encode(point, now) + "\n" for point in points)
    path = GOLDEN / f"{kind}.lp"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(got)
    assert got, "no points"
    assert got == path.read_text()
