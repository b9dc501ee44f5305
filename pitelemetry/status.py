"""``pitelemetry status``: the running daemon's state file, for a person or a script.

The daemon rewrites ``<runtime_dir>/status.json`` every two seconds (``/run`` is tmpfs:
no SD-card wear). No network port is opened for this.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pitelemetry.health import STATE_FILE


class NotRunningError(Exception):
    pass


def read_state(runtime_dir: Path) -> dict[str, Any]:
    path = runtime_dir / STATE_FILE
    try:
        state: object = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotRunningError(
            f"no state file at {path}: is the daemon running? (systemctl status pitelemetry)"
        ) from None
    except (OSError, ValueError, RecursionError) as exc:
        raise NotRunningError(f"cannot read {path}: {exc}") from None
    if not isinstance(state, dict) or not _well_formed(state):
        raise NotRunningError(
            f"{path} does not hold pitelemetry's state (another program's file, or damaged); "
            "it is rewritten every two seconds while the daemon runs"
        )
    if not _alive(state["pid"]):
        raise NotRunningError(
            f"pitelemetry is not running (its last state, from "
            f"{_ago(state.get('updated'))}, is in {path})"
        )
    return state


# The parts of the state render() reads, and their types.
_SHAPE: dict[str, type | tuple[type, ...]] = {
    "version": str,
    "pid": int,
    "config": str,
    "clock": dict,
    "influxdb": dict,
    "points": dict,
    "spool": dict,
    "inputs": list,
}


def _well_formed(state: dict[str, Any]) -> bool:
    if not all(isinstance(state.get(key), kind) for key, kind in _SHAPE.items()):
        return False
    return not isinstance(state["pid"], bool)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # running as another user
    return True


def _ago(stamp: float | None, now: float | None = None) -> str:
    if not stamp:
        return "never"
    seconds = max(0, int((now or time.time()) - stamp))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago"
    return f"{seconds // 86400}d ago"


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render(state: dict[str, Any], now: float | None = None) -> str:
    """Lines of at most 80 columns; a state of another version (a key missing or of
    another type) gives a line that says so, never an exception."""
    try:
        return _render(state, now)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"pitelemetry {state.get('version', '?')}: cannot show this state ({exc!r})"


def _render(state: dict[str, Any], now: float | None = None) -> str:
    now = now or time.time()
    influx = state["influxdb"]
    points = state["points"]
    spool = state["spool"]
    lines = [
        f"pitelemetry {state['version']}, pid {state['pid']}, up since "
        f"{_ago(state['started'], now)} (state {_ago(state['updated'], now)})",
        f"config    {_cut(state['config'], 70)}",
        f"clock     {_cut(state['clock']['reason'], 70)}",
        f"influxdb  {_cut(influx['url'], 40)}, last write {_ago(influx['last_write'], now)}"
        f" ({influx['write_latency_ms']} ms)",
    ]
    if influx["outage_since"]:
        lines.append(
            f"          UNREACHABLE since {_ago(influx['outage_since'], now)}: "
            f"{_cut(influx['last_error'], 40)}"
        )
    if influx["problem"]:
        lines.append(f"          PROBLEM: {_cut(influx['problem'], 61)}")
    lines.extend(
        f"          REFUSED {conflict['times']}x {conflict['measurement']}."
        f"{conflict['field']}: {conflict['types']}"
        for conflict in influx.get("type_conflicts", [])[:3]
    )
    if influx.get("type_conflicts"):
        lines.append(
            "          (a field keeps its first type per shard: rename the field in the rule)"
        )
    dropped = sum(points["dropped"].values())
    lines.append(
        f"points    {points['collected']} collected, {points['written']} written, "
        f"{points['replayed']} replayed, {dropped} dropped"
    )
    lines.extend(
        f"          dropped {count} ({reason})"
        for reason, count in sorted(points["dropped"].items())
    )
    oldest = f", oldest from {_ago(spool['oldest'], now)}" if spool["oldest"] else ""
    lines.append(f"spool     {spool['points']} points, {_size(spool['bytes'])}{oldest}")
    if spool.get("degraded"):
        lines.append(f"          IN MEMORY ONLY: {_cut(spool['degraded'], 55)}")
    heartbeat = state.get("heartbeat")
    if heartbeat is not None:  # [agent] heartbeat_url is set
        sent = f"{heartbeat['sent']} pings ({heartbeat['style']})"
        if heartbeat["last_sent"]:
            told = "up" if heartbeat["reported"] == "up" else "FAILING"
            sent += f", last {_ago(heartbeat['last_sent'], now)}: {told}"
        lines.append(f"heartbeat {sent}")
        if heartbeat["problem"]:
            lines.append(f"          NOT DELIVERED: {_cut(heartbeat['problem'], 55)}")
    backup = state.get("backup")
    if backup is not None:  # [backup] to is set
        name = _cut(backup["path"].rsplit("/", 1)[-1], 50) if backup else ""
        made = f"{_ago(backup['time'], now)}, {name}" if backup else "never"
        lines.append(f"backup    last: {made}")
        if backup and backup.get("without"):
            lines.append("          WITHOUT InfluxDB's readings: see `pitelemetry backup`")
    lines.append(f"{'input':<16}{'last ok':>12}{'errors':>8}  last error")
    for item in state["inputs"]:
        lines.append(
            f"{_cut(item['name'], 15):<16}{_ago(item['last_success'], now):>12}"
            f"{item['errors']:>8}  {_cut(item['last_error'] or '-', 42)}"
        )
        if item.get("state"):
            lines.append(f"{'':16}{_cut(item['state'], 64)}")
    return "\n".join(line[:80] for line in lines)
