"""The presets against the corpus of device messages (``tests/fixtures/mqtt/``): each
message becomes exactly the points listed for it, and a field never changes type."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pitelemetry.inputs.mqtt import MQTTInput, MQTTOptions
from tests.conftest import FIXTURES
from tests.golden import assert_golden

CORPUS: list[dict[str, Any]] = json.loads((FIXTURES / "mqtt" / "corpus.json").read_text())[
    "messages"
]
T0 = 1_795_300_000_000_000_000


def payload_bytes(message: dict[str, Any]) -> bytes:
    payload = message["payload"]
    return (payload if isinstance(payload, str) else json.dumps(payload)).encode()


def as_expected(points: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "measurement": p.measurement,
            "tags": dict(p.tags),
            "fields": dict(p.fields),
            **({"time_ns": p.time_ns} if p.time_ns != T0 else {}),
        }
        for p in points
    ]


@pytest.mark.parametrize("preset", sorted({m["preset"] for m in CORPUS}))
def test_each_message_becomes_exactly_its_points(preset: str) -> None:
    source = MQTTInput(MQTTOptions(preset=preset), client_id="corpus", time_ns=lambda: T0)  # type: ignore[arg-type]
    types: dict[tuple[str, str], type] = {}
    for message in (m for m in CORPUS if m["preset"] == preset):
        points = source.points_for(message["topic"], payload_bytes(message))
        assert as_expected(points) == message["points"], message["source"]
        for point in points:
            for key, value in point.fields.items():
                assert types.setdefault((point.measurement, key), type(value)) is type(value)
    assert source.invalid == 0


def test_golden_line_protocol() -> None:
    """One message of each preset's corpus, as written."""
    points = []
    for preset in sorted({m["preset"] for m in CORPUS}):
        source = MQTTInput(MQTTOptions(preset=preset), client_id="golden", time_ns=lambda: T0)
        first = next(m for m in CORPUS if m["preset"] == preset and m["points"])
        points += source.points_for(first["topic"], payload_bytes(first))
    assert_golden("mqtt", points)
