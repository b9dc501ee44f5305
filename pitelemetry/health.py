"""The agent's own health: a snapshot of its state, the ``pitelemetry`` points made from
it, and the state file ``pitelemetry status`` reads.

Measurement ``pitelemetry``, counters since the daemon started:

========================= ====================================================================
tags                      fields
========================= ====================================================================
``scope=agent``           ``collected``, ``written``, ``spooled``, ``replayed``,
                          ``dropped`` and ``dropped_<reason>`` (``rejected``, ``spool_full``,
                          ``too_large``, ``clock``, ``spool_error``, ``queue_full``),
                          ``write_failures``,
                          ``spool_points``, ``spool_bytes``, ``write_latency_ms``,
                          ``clock_trusted``, ``rss_bytes``, ``uptime_s``
``scope=input``,          ``collections``, ``errors``, ``points``, ``bad_points``,
``input=<name>``          ``dropped_fields`` (NaN or infinite values left out of a point),
                          ``duration_ms`` (the last collection)
========================= ====================================================================
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pitelemetry import statefile
from pitelemetry.inputs import Input
from pitelemetry.point import Point

if TYPE_CHECKING:
    from pitelemetry.agent import Agent
    from pitelemetry.config import Config

STATE_FILE = "status.json"
DROP_REASONS = ("rejected", "spool_full", "too_large", "clock", "spool_error", "queue_full")


def snapshot(agent: Agent) -> dict[str, Any]:
    """Everything ``pitelemetry status`` shows, as plain JSON-able data."""
    stats = agent.pipeline.stats
    pipeline = agent.pipeline
    dropped = dict(stats.dropped)
    if pipeline.spool.dropped:
        dropped["spool_full"] = pipeline.spool.dropped
    return {
        "version": agent.version,
        "pid": os.getpid(),
        "started": agent.started,
        "updated": time.time(),
        "config": agent.config.path,
        "clock": {"trusted": agent.clock.trusted(), "reason": agent.clock.reason},
        "influxdb": {
            "url": agent.config.influxdb.url,
            "last_write": stats.last_write,
            "last_error": stats.last_error,
            "problem": stats.problem,
            "type_conflicts": [
                {"measurement": m, "field": f, "times": times, "types": types}
                for (m, f), (times, types) in sorted(stats.type_conflicts.items())
            ],
            "outage_since": stats.outage_since,
            "write_latency_ms": round(stats.last_write_latency_s * 1000, 1),
        },
        "points": {
            "collected": stats.collected,
            "written": stats.written,
            "spooled": stats.spooled,
            "replayed": stats.replayed,
            "write_failures": stats.write_failures,
            "dropped": dropped,
        },
        "spool": {
            "degraded": pipeline.spool.degraded,
            "points": pipeline.spool_points,
            "bytes": pipeline.spool_bytes,
            "oldest": _seconds(pipeline.spool_head_time_ns),
        },
        "inputs": [
            {
                "name": running.config.name,
                "interval_s": running.config.interval,
                "collections": running.stats.collections,
                "errors": running.stats.errors,
                "points": running.stats.points,
                "bad_points": running.stats.bad_points,
                "dropped_fields": running.encoder.dropped_fields,
                "last_success": running.stats.last_success,
                "last_error": running.stats.last_error,
                "duration_ms": round(running.stats.last_duration_s * 1000, 1),
                "state": running.input.status(),
            }
            for running in agent.collector.inputs
            if running.config.type != "pitelemetry"
        ],
        "backup": last_backup(agent.config) if agent.config.backup.to else None,
        "heartbeat": agent.heartbeat.status() if agent.heartbeat is not None else None,
    }


def last_backup(config: Config) -> dict[str, Any]:
    """The last ``pitelemetry backup`` as it noted itself: time, path and whether it is
    without InfluxDB's readings (not 1.x); {} if none."""

    def check(data: Any) -> dict[str, Any]:
        without = data.get("without_readings", False)
        if not isinstance(without, bool):
            raise TypeError("without_readings is not a boolean")
        return {"time": float(data["time"]), "path": str(data["path"]), "without": without}

    noted = statefile.read_json(
        Path(config.agent.state_dir) / "last-backup.json", check, "no backup is known"
    )
    return noted or {}


def _seconds(stamp_ns: int | None) -> float | None:
    return stamp_ns / 1e9 if stamp_ns is not None else None


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically (rename), so a reader never sees half of it;
    never through a planted symbolic link (:func:`statefile.write_atomic`). No ``fsync``:
    the runtime directory is a tmpfs."""
    statefile.write_atomic(directory / STATE_FILE, json.dumps(state, indent=1), durable=False)


def read_rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class AgentHealth(Input):
    """Collects the agent's own health points; added by the agent, not configured.
    ``state`` returns what :func:`snapshot` returns: the one thing it reads."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Point]:
        state = self.state()
        points = state["points"]
        dropped = points["dropped"]
        fields: dict[str, float | int | bool] = {
            "collected": points["collected"],
            "written": points["written"],
            "spooled": points["spooled"],
            "replayed": points["replayed"],
            "write_failures": points["write_failures"],
            "dropped": sum(dropped.values()),
            "spool_points": state["spool"]["points"],
            "spool_bytes": state["spool"]["bytes"],
            "write_latency_ms": float(state["influxdb"]["write_latency_ms"]),
            "clock_trusted": state["clock"]["trusted"],
            "uptime_s": time.time() - state["started"],
            # How far behind the spool is: the age of its oldest point (0: empty).
            "spool_oldest_age_s": max(0.0, time.time() - (state["spool"]["oldest"] or time.time())),
        }
        fields.update({f"dropped_{reason}": dropped.get(reason, 0) for reason in DROP_REASONS})
        backup = state.get("backup")
        if backup is not None:  # [backup] to is set: how old the last backup is
            made = backup.get("time") or state["started"]
            fields["backup_age_s"] = max(0.0, time.time() - made)
        rss = read_rss_bytes()
        if rss is not None:
            fields["rss_bytes"] = rss
        yield Point("pitelemetry", fields, {"scope": "agent"})
        for item in state["inputs"]:
            yield Point(
                "pitelemetry",
                {
                    "collections": item["collections"],
                    "errors": item["errors"],
                    "points": item["points"],
                    "bad_points": item["bad_points"],
                    "dropped_fields": item["dropped_fields"],
                    "duration_ms": float(item["duration_ms"]),
                },
                {"scope": "input", "input": item["name"]},
            )
