"""Grafana panel building blocks for inputs: each input's ``Options.panels()`` yields
panels made with these, and :mod:`pitelemetry.dashboards` lays them out.

A panel is a dict in Grafana's dashboard JSON model (``schemaVersion`` 41); its width
on the 24-column grid is 12 unless :func:`sized` says otherwise. Every query is InfluxQL
(InfluxDB 1.x, 2.x through the DBRP mapping, 3.x), built with :func:`select`, which adds
the ``$host`` filter and Grafana's time filter, and :func:`tag`, which quotes a config
name exactly as the point encoder stores it.
"""

from __future__ import annotations

from typing import Any

from pitelemetry.influxql import ident, literal
from pitelemetry.point import clean_key, clean_name

Panel = dict[str, Any]
HOST = '"host" =~ /^$host$/'


def target(query: str, ref: str = "A", alias: str = "") -> dict[str, Any]:
    """One query of a panel; ``alias`` names its series (``$tag_host``, ``$col``)."""
    query_target = {"refId": ref, "rawQuery": True, "resultFormat": "time_series", "query": query}
    if alias:
        query_target["alias"] = alias
    return query_target


def select(expressions: str, measurement: str, where: str = "", group: str = "") -> str:
    """``SELECT ... FROM m WHERE <where> AND host AND $timeFilter GROUP BY time, host``."""
    conditions = " AND ".join(c for c in (where, HOST, "$timeFilter") if c)
    groups = ", ".join(g for g in ("time($__interval)", '"host"', group) if g)
    return f"SELECT {expressions} FROM {ident(measurement)} WHERE {conditions} GROUP BY {groups}"


def tag(value: str) -> str:
    """A tag value from the config as an InfluxQL literal: as the encoder stores it
    (control characters made U+FFFD), quoted by :func:`influxql.literal`."""
    return literal(clean_name(value))


def field(name: str) -> str:
    """A field key from the config as an InfluxQL identifier, as the encoder stores it."""
    return ident(clean_key(name))


def sized(panel: Panel, width: int) -> Panel:
    """``panel`` taking ``width`` of the grid's 24 columns (24: a whole row)."""
    panel["gridPos"] = {"w": width}
    return panel


def timeseries(
    title: str,
    targets: list[dict[str, Any]],
    unit: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    bars: bool = False,
    bands: list[tuple[float | None, str]] | None = None,
) -> dict[str, Any]:
    custom: dict[str, Any] = {"drawStyle": "bars" if bars else "line", "spanNulls": True}
    if bands:
        custom["thresholdsStyle"] = {"mode": "area"}
    defaults: dict[str, Any] = {"unit": unit, "custom": custom}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    steps = bands or [(None, "green")]
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }
    return {
        "type": "timeseries",
        "title": title,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": True,
                "calcs": [],
            },
            "tooltip": {"mode": "multi", "sort": "none"},
        },
    }


def state_timeline(
    title: str, targets: list[dict[str, Any]], words: tuple[str, str] = ("yes", "no")
) -> dict[str, Any]:
    mappings = [
        {
            "type": "value",
            "options": {
                "true": {"text": words[0], "color": "red", "index": 0},
                "false": {"text": words[1], "color": "green", "index": 1},
            },
        }
    ]
    return {
        "type": "state-timeline",
        "title": title,
        "targets": targets,
        "fieldConfig": {"defaults": {"mappings": mappings}, "overrides": []},
        "options": {
            "showValue": "auto",
            "mergeValues": True,
            "rowHeight": 0.9,
            "alignValue": "left",
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    }
