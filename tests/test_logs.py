"""The once-per-condition log: bounded in memory and in lines per minute."""

from __future__ import annotations

import logging

import pytest

from pitelemetry.logs import StateLog


def test_a_condition_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    states = StateLog(logging.getLogger("t"))
    with caplog.at_level(logging.INFO, "t"):
        assert states.report("k", "broken")
        assert not states.report("k", "broken")
        assert states.clear("k", "fixed")
    assert [r.getMessage() for r in caplog.records] == ["broken", "fixed"]


def test_a_flood_of_distinct_conditions_stays_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """300,000 distinct bad topics: a few dozen lines and 1,024 remembered keys."""
    now = [0.0]
    states = StateLog(logging.getLogger("t"), monotonic=lambda: now[0])
    with caplog.at_level(logging.INFO, "t"):
        for number in range(300_000):
            states.report(f"invalid:topic/{number}", f"topic/{number}: bad payload")
        now[0] = 61.0
        states.report("another", "after a minute")
    assert len(states._active) == 1024
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 22  # 20, the summary, and the next window's first
    assert messages[20] == "299980 more messages like these were not logged in the last 60s"
    assert messages[21] == "after a minute"
