"""Grafana dashboards generated from the config: a panel exists only for what is
configured, and every input brings its own panels (``Options.panels()``, see
:mod:`pitelemetry.inputs`), so this module names no input type.

* "Pi health": the panels of inputs whose ``dashboard`` is ``"pi-health"`` (the system
  input: CPU, temperature with the firmware's throttling bands, load, memory, disks,
  network, under-voltage and throttling).
* "Home": the home sensors' panels, one or more per named sensor.
* "Markets": the quotes' panels.
* "pitelemetry": the agent's own health: points written, spool depth, drops, write
  latency, per-input duration and errors.

Every dashboard has a ``$host`` variable (``SHOW TAG VALUES WITH KEY = "host"``) so a
fleet of Pis shares them, and annotations from the ``events`` measurement. All queries
are InfluxQL, which InfluxDB 1.x, 2.x (through the DBRP mapping provision creates) and
3.x answer. Dashboards are plain dicts in Grafana's JSON model (``schemaVersion`` 41).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pitelemetry import health
from pitelemetry.config import Config
from pitelemetry.panels import HOST, Panel, select, target, timeseries

SCHEMA_VERSION = 41
# Each dashboard an input can name in its Options.dashboard: (uid, title), in order.
BOARDS = {
    "pi-health": ("pitelemetry-pi-health", "Pi health"),
    "home": ("pitelemetry-home", "Home"),
    "markets": ("pitelemetry-markets", "Markets"),
}


@dataclass
class Board:
    """A dashboard being built: panels are laid out two per row."""

    uid: str
    title: str
    datasource: dict[str, str]
    panels: list[dict[str, Any]] = field(default_factory=list)

    def add(self, panel: Panel, width: int = 12) -> None:
        """Lay ``panel`` out after the others (``sized()`` may have set its width); one
        identical to a panel already there (from a second input) is left out."""
        width = panel.pop("gridPos", {}).get("w", width)
        if any(_same(panel, other) for other in self.panels):
            return
        used = sum(p["gridPos"]["w"] for p in self.panels)
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": 8, "w": width, "x": used % 24, "y": used // 24 * 8}
        panel["datasource"] = self.datasource
        for query in panel["targets"]:
            query["datasource"] = self.datasource
        self.panels.append(panel)

    def build(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "tags": ["pitelemetry"],
            "description": "Made by pitelemetry provision from the collector's config. If you "
            "edit it in Grafana, provision keeps your version (until run with --force).",
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "time": {"from": "now-6h", "to": "now"},
            "refresh": "30s",
            "timezone": "browser",
            "templating": {"list": [_host_variable(self.datasource)]},
            "annotations": {"list": _annotations(self.datasource)},
            "panels": self.panels,
        }


def _host_variable(datasource: dict[str, str]) -> dict[str, Any]:
    query = 'SHOW TAG VALUES WITH KEY = "host"'
    return {
        "type": "query",
        "name": "host",
        "label": "Host",
        "datasource": datasource,
        "query": {"query": query, "refId": "InfluxVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 1,
        "multi": True,
        "includeAll": True,
        "sort": 1,
        "options": [],
        "current": {},
    }


def _annotations(datasource: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        {
            "name": "pitelemetry events",
            "datasource": datasource,
            "enable": True,
            "iconColor": "orange",
            "target": {
                "refId": "Anno",
                "rawQuery": True,
                "resultFormat": "table",
                "query": 'SELECT "title", "text", "kind" FROM "events" WHERE '
                f"{HOST} AND $timeFilter",
            },
            "mappings": {
                "title": {"source": "field", "value": "title"},
                "text": {"source": "field", "value": "text"},
                "tags": {"source": "field", "value": "kind"},
            },
        },
    ]


def _same(panel: Panel, other: Panel) -> bool:
    """The same panel, whatever layout ``other`` got."""
    keep = ("type", "title", "targets", "fieldConfig")
    targets = [{k: v for k, v in t.items() if k != "datasource"} for t in other["targets"]]
    return all(panel[k] == (targets if k == "targets" else other[k]) for k in keep)


def generate(config: Config) -> list[dict[str, Any]]:
    """The dashboards for ``config``, each a Grafana dashboard model."""
    datasource = {"type": "influxdb", "uid": config.grafana.datasource_uid}
    boards = {name: Board(uid, title, datasource) for name, (uid, title) in BOARDS.items()}
    for item in config.inputs:
        board = boards.get(item.options.dashboard)
        if board is not None:
            for panel in item.options.panels():
                board.add(panel)
    built = [board for board in boards.values() if board.panels]
    built.append(agent(Board("pitelemetry-agent", "pitelemetry", datasource)))
    return [board.build() for board in built]


def agent(board: Board) -> Board:
    scope = "\"scope\" = 'agent'"
    rates = select(
        'non_negative_derivative(last("collected"), 1s) AS "collected", '
        'non_negative_derivative(last("written"), 1s) AS "written", '
        'non_negative_derivative(last("replayed"), 1s) AS "replayed"',
        "pitelemetry",
        scope,
    )
    board.add(timeseries("Points per second", [target(rates)], "short", minimum=0))
    spool = select('last("spool_points") AS "points in the spool"', "pitelemetry", scope)
    board.add(timeseries("Spool depth", [target(spool)], "short", minimum=0))
    reasons = health.DROP_REASONS
    drops = select(
        ", ".join(f'last("dropped_{r}") AS "{r}"' for r in reasons), "pitelemetry", scope
    )
    board.add(timeseries("Points dropped (since start)", [target(drops)], "short", minimum=0))
    latency = select('mean("write_latency_ms")', "pitelemetry", scope)
    board.add(timeseries("Write latency", [target(latency, alias="$tag_host")], "ms", minimum=0))
    inputs = "\"scope\" = 'input'"
    duration = select('mean("duration_ms")', "pitelemetry", inputs, '"input"')
    board.add(
        timeseries(
            "Collection time per input", [target(duration, alias="$tag_input")], "ms", minimum=0
        )
    )
    errors = select('non_negative_difference(last("errors"))', "pitelemetry", inputs, '"input"')
    board.add(
        timeseries(
            "Input errors", [target(errors, alias="$tag_input")], "short", minimum=0, bars=True
        )
    )
    memory = select('last("rss_bytes")', "pitelemetry", scope)
    board.add(
        timeseries(
            "Memory of the collector", [target(memory, alias="$tag_host")], "bytes", minimum=0
        ),
        width=24,
    )
    return board
