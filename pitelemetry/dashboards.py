"""Grafana dashboards generated from the config: a panel exists only for what is
configured.

* "Pi health" (with ``[[inputs.system]]``): CPU, temperature with the firmware's
  throttling bands, load, memory, disks, network, under-voltage and throttling.
* "Home" (with any sensor input): one panel per named sensor, meters as power and daily
  energy (or flow and daily volume), contacts as state timelines.
* "Markets" (with ``[[inputs.stocks]]``): a price panel per symbol, the day's change,
  and the portfolio's value and gains when holdings are configured.
* "pitelemetry": the agent's own health: points written, spool depth, drops, write
  latency, per-input duration and errors.

Every dashboard has a ``$host`` variable (``SHOW TAG VALUES WITH KEY = "host"``) so a
fleet of Pis shares them, and annotations from the ``events`` measurement. All queries
are InfluxQL, which InfluxDB 1.x, 2.x (through the DBRP mapping provision creates) and
3.x answer. Dashboards are plain dicts in Grafana's JSON model (``schemaVersion`` 41).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pitelemetry import health
from pitelemetry.config import Config, InputConfig
from pitelemetry.influxql import ident, literal
from pitelemetry.point import clean_key, clean_name

SCHEMA_VERSION = 41
HOST = '"host" =~ /^$host$/'
SENSOR_INPUTS = ("ds18b20", "bme280", "dht22", "pulse", "contact", "mcp3008")
# The Pi firmware: soft temperature limit at 60 °C (Pi 3B+), ARM frequency capped from
# 80 °C, throttled hard at 85 °C.
TEMPERATURE_BANDS: list[tuple[float | None, str]] = [
    (None, "green"),
    (60.0, "yellow"),
    (80.0, "orange"),
    (85.0, "red"),
]


@dataclass
class Board:
    """A dashboard being built: panels are laid out two per row."""

    uid: str
    title: str
    datasource: dict[str, str]
    panels: list[dict[str, Any]] = field(default_factory=list)

    def add(self, panel: dict[str, Any], width: int = 12) -> None:
        used = sum(p["gridPos"]["w"] for p in self.panels)
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": 8, "w": width, "x": used % 24, "y": used // 24 * 8}
        panel["datasource"] = self.datasource
        for target in panel["targets"]:
            target["datasource"] = self.datasource
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


def _target(query: str, ref: str = "A", alias: str = "") -> dict[str, Any]:
    target = {"refId": ref, "rawQuery": True, "resultFormat": "time_series", "query": query}
    if alias:
        target["alias"] = alias
    return target


def _select(expressions: str, measurement: str, where: str = "", group: str = "") -> str:
    """``SELECT ... FROM m WHERE <where> AND host AND $timeFilter GROUP BY time, host``."""
    conditions = " AND ".join(c for c in (where, HOST, "$timeFilter") if c)
    groups = ", ".join(g for g in ("time($__interval)", '"host"', group) if g)
    return f"SELECT {expressions} FROM {ident(measurement)} WHERE {conditions} GROUP BY {groups}"


def _quote(value: str) -> str:
    """A tag value from the config as an InfluxQL literal: as the encoder stores it
    (control characters made U+FFFD), quoted by :func:`influxql.literal`."""
    return literal(clean_name(value))


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


def generate(config: Config) -> list[dict[str, Any]]:
    """The dashboards for ``config``, each a Grafana dashboard model."""
    datasource = {"type": "influxdb", "uid": config.grafana.datasource_uid}
    boards = []
    kinds = {i.type for i in config.inputs}
    if "system" in kinds:
        boards.append(pi_health(Board("pitelemetry-pi-health", "Pi health", datasource)))
    sensors = [i for i in config.inputs if i.type in SENSOR_INPUTS]
    if sensors:
        boards.append(home(Board("pitelemetry-home", "Home", datasource), sensors))
    stocks = [i for i in config.inputs if i.type == "stocks"]
    if stocks:
        boards.append(markets(Board("pitelemetry-markets", "Markets", datasource), stocks))
    boards.append(agent(Board("pitelemetry-agent", "pitelemetry", datasource)))
    return [board.build() for board in boards]


def pi_health(board: Board) -> Board:
    cpu = _select('mean("usage_pct")', "cpu", "\"cpu\" = 'cpu-total'")
    board.add(
        timeseries(
            "CPU usage", [_target(cpu, alias="$tag_host")], "percent", minimum=0, maximum=100
        )
    )
    temperature = _select('mean("cpu_temp_c")', "pi")
    board.add(
        timeseries(
            "CPU temperature",
            [_target(temperature, alias="$tag_host")],
            "celsius",
            bands=TEMPERATURE_BANDS,
        )
    )
    load = _select(
        'mean("load1") AS "1 min", mean("load5") AS "5 min", mean("load15") AS "15 min"', "system"
    )
    board.add(timeseries("Load", [_target(load)], "short", minimum=0))
    memory = _select('mean("used_pct") AS "memory", mean("swap_used_pct") AS "swap"', "mem")
    board.add(timeseries("Memory used", [_target(memory)], "percent", minimum=0, maximum=100))
    disk = _select('last("used_pct")', "disk", group='"path"')
    board.add(
        timeseries(
            "Disk used", [_target(disk, alias="$tag_path")], "percent", minimum=0, maximum=100
        )
    )
    network = _select(
        'non_negative_derivative(mean("bytes_recv"), 1s) AS "in", '
        'non_negative_derivative(mean("bytes_sent"), 1s) AS "out"',
        "net",
        group='"interface"',
    )
    board.add(timeseries("Network", [_target(network, alias="$tag_interface $col")], "Bps"))
    power = _select(
        'last("under_voltage") AS "under-voltage", last("throttled") AS '
        '"throttled", last("freq_capped") AS "frequency capped"',
        "pi",
    )
    board.add(state_timeline("Power and throttling", [_target(power)]), width=24)
    return board


def _sensor_name(item: InputConfig) -> str:
    options = item.options
    name: str = getattr(options, "name", "") or ""
    if name:
        return name
    if item.type == "bme280":
        return f"/dev/i2c-{options.bus}@0x{options.address:02x}"
    if item.type in ("pulse", "contact"):
        return f"gpio{options.pin}"
    if item.type == "mcp3008":
        return f"ch{options.channel}"
    return str(options.device) if item.type == "dht22" and options.device else ""


def home(board: Board, sensors: list[InputConfig]) -> Board:
    for item in sensors:
        for panel in _sensor_panels(item):
            board.add(panel)
    return board


def _sensor_panels(item: InputConfig) -> Iterator[dict[str, Any]]:
    name = _sensor_name(item)
    where = f'"name" = {_quote(name)}'
    kind = item.type
    if kind == "ds18b20":
        names = sorted(set(item.options.names.values()))
        for room in names:
            query = _select(
                'mean("temperature_c")',
                "environment",
                f'"sensor" = \'ds18b20\' AND "name" = {_quote(room)}',
            )
            yield timeseries(f"{room} temperature", [_target(query, alias="$tag_host")], "celsius")
        query = _select('mean("temperature_c")', "environment", "\"sensor\" = 'ds18b20'", '"name"')
        yield timeseries("All 1-Wire thermometers", [_target(query, alias="$tag_name")], "celsius")
    elif kind in ("bme280", "dht22"):
        temperature = _select('mean("temperature_c")', "environment", where)
        humidity = _select('mean("humidity_pct")', "environment", where)
        yield timeseries(
            f"{name} temperature", [_target(temperature, alias="$tag_host")], "celsius"
        )
        yield timeseries(
            f"{name} humidity",
            [_target(humidity, alias="$tag_host")],
            "humidity",
            minimum=0,
            maximum=100,
        )
        if kind == "bme280":
            pressure = _select('mean("pressure_hpa")', "environment", where)
            yield timeseries(
                f"{name} pressure", [_target(pressure, alias="$tag_host")], "pressurehpa"
            )
    elif kind == "pulse":
        rate, total, rate_unit, total_unit, words = {
            "electricity": ("power_w", "energy_wh", "watt", "watth", ("power", "energy")),
            "water": ("flow_l_min", "volume_l", "flowlpm", "litre", ("flow", "water")),
            "gas": ("flow_m3_h", "volume_m3", "flowcmh", "m3", ("flow", "gas")),
        }[item.options.kind]
        now = _select(f'mean("{rate}")', "meter", where)
        yield timeseries(f"{name} {words[0]}", [_target(now, alias="$tag_host")], rate_unit)
        daily = _select(f'spread("{total}")', "meter", where).replace(
            "time($__interval)", "time(1d)"
        )
        yield timeseries(
            f"{name} {words[1]} per day",
            [_target(daily, alias="$tag_host")],
            total_unit,
            minimum=0,
            bars=True,
        )
    elif kind == "contact":
        words = {"motion": ("motion", "quiet"), "contact": ("on", "off")}.get(
            item.options.kind, ("open", "closed")
        )
        query = _select('last("state")', "gpio", where) + " fill(previous)"
        yield state_timeline(name, [_target(query, alias="$tag_host")], words)
    elif kind == "mcp3008":
        query = _select(
            f"mean({ident(clean_key(item.options.field))})",
            "environment",
            f"\"sensor\" = 'mcp3008' AND {where}",
        )
        yield timeseries(
            f"{name} {item.options.field}", [_target(query, alias="$tag_host")], "short"
        )


# Currencies with a Grafana unit ("currencyUSD"); others show plain numbers.
CURRENCY_UNITS = frozenset(
    {"USD", "EUR", "GBP", "JPY", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "ZAR", "INR"}
    | {"KRW", "BRL", "ILS", "TRY"}
)
MAX_PRICE_PANELS = 24  # beyond this, one panel of all prices


def _currency_unit(currency: str) -> str:
    return f"currency{currency}" if currency in CURRENCY_UNITS else "short"


def markets(board: Board, inputs: list[InputConfig]) -> Board:
    """A price panel per symbol (each on its own scale), the day's change of all,
    and the portfolio when holdings are configured."""
    from pitelemetry.quotes.markets import (  # noqa: PLC0415 - stocks users only
        currency_for,
        market_for,
    )

    symbols: dict[str, str] = {}
    holdings = False
    base = ""
    for item in inputs:
        options = item.options
        base = base or options.base_currency
        for symbol in options.all_symbols:
            instrument = options.instruments.get(symbol)
            currency = instrument.currency if instrument else ""
            holdings = holdings or bool(instrument and instrument.quantity)
            exchange = instrument.exchange if instrument else ""
            symbols[symbol] = currency or currency_for(symbol, market_for(symbol, exchange))
    if len(symbols) <= MAX_PRICE_PANELS:
        for symbol, currency in symbols.items():
            query = _select('last("price")', "quote", f'"symbol" = {_quote(symbol)}')
            board.add(
                timeseries(symbol, [_target(query, alias="$tag_host")], _currency_unit(currency)),
                width=8,
            )
    else:
        query = _select('last("price")', "quote", "", '"symbol"')
        board.add(timeseries("Prices", [_target(query, alias="$tag_symbol")], "short"), 24)
    change = _select('last("change_pct")', "quote", "", '"symbol"')
    board.add(
        timeseries("Change on the day", [_target(change, alias="$tag_symbol")], "percent"),
        width=24,
    )
    if holdings:
        value = _select('last("value")', "portfolio_total", "\"scope\" = 'currency'", '"currency"')
        board.add(timeseries("Portfolio value", [_target(value, alias="$tag_currency")], "short"))
        gain = _select('last("gain_pct")', "portfolio", "", '"symbol"')
        board.add(timeseries("Gain per position", [_target(gain, alias="$tag_symbol")], "percent"))
        if base:
            total = _select('last("value")', "portfolio_total", "\"scope\" = 'all'")
            board.add(
                timeseries(
                    f"Portfolio value in {base}",
                    [_target(total, alias="$tag_host")],
                    _currency_unit(base),
                ),
                width=24,
            )
    return board


def agent(board: Board) -> Board:
    scope = "\"scope\" = 'agent'"
    rates = _select(
        'non_negative_derivative(last("collected"), 1s) AS "collected", '
        'non_negative_derivative(last("written"), 1s) AS "written", '
        'non_negative_derivative(last("replayed"), 1s) AS "replayed"',
        "pitelemetry",
        scope,
    )
    board.add(timeseries("Points per second", [_target(rates)], "short", minimum=0))
    spool = _select('last("spool_points") AS "points in the spool"', "pitelemetry", scope)
    board.add(timeseries("Spool depth", [_target(spool)], "short", minimum=0))
    reasons = health.DROP_REASONS
    drops = _select(
        ", ".join(f'last("dropped_{r}") AS "{r}"' for r in reasons), "pitelemetry", scope
    )
    board.add(timeseries("Points dropped (since start)", [_target(drops)], "short", minimum=0))
    latency = _select('mean("write_latency_ms")', "pitelemetry", scope)
    board.add(timeseries("Write latency", [_target(latency, alias="$tag_host")], "ms", minimum=0))
    inputs = "\"scope\" = 'input'"
    duration = _select('mean("duration_ms")', "pitelemetry", inputs, '"input"')
    board.add(
        timeseries(
            "Collection time per input", [_target(duration, alias="$tag_input")], "ms", minimum=0
        )
    )
    errors = _select('non_negative_difference(last("errors"))', "pitelemetry", inputs, '"input"')
    board.add(
        timeseries(
            "Input errors", [_target(errors, alias="$tag_input")], "short", minimum=0, bars=True
        )
    )
    memory = _select('last("rss_bytes")', "pitelemetry", scope)
    board.add(
        timeseries(
            "Memory of the collector", [_target(memory, alias="$tag_host")], "bytes", minimum=0
        ),
        width=24,
    )
    return board


def all_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, query) for every InfluxQL query in a dashboard: panels, the host
    variable and annotations."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield f"{dashboard['title']} / {panel['title']}", target["query"]
    for variable in dashboard["templating"]["list"]:
        yield f"{dashboard['title']} / ${variable['name']}", variable["query"]["query"]
    for annotation in dashboard["annotations"]["list"]:
        if "target" in annotation:
            yield f"{dashboard['title']} / {annotation['name']}", annotation["target"]["query"]
