"""Alert rules and contact points, as Grafana-managed alerting provisions them.

A rule is an :class:`AlertRule`: a field of a measurement, filtered by tags, above or
below a threshold for a while, or silent for a while. Inputs declare their default
rules (``Options.alerts()``), the agent adds its own (:func:`agent_rules`), and the user
writes ``[[alerts.rules]]``. :func:`grafana_rule` turns one into Grafana's provisioning
JSON: an InfluxQL query on the dashboards' data source, a ``reduce`` and a
``threshold`` expression. Queries group by the ``host`` tag (and the sensor's tags), so
one rule covers every Pi of a fleet and each alert names the Pi and sensor that fired;
they cannot use dashboard variables such as ``$host``, which Grafana does not expand
in alert rules.

Everything is sent the way Grafana stores it (``for`` in Prometheus' format, each
query's model with ``intervalMs`` and ``maxDataPoints``), so a rule read back hashes
the same unless someone edited it in Grafana.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pitelemetry.influxql import ident, literal
from pitelemetry.point import clean_key, clean_name

if TYPE_CHECKING:
    from pitelemetry.config import Config, ContactConfig

MANAGED_LABEL = ("managed_by", "pitelemetry")
HASH_ANNOTATION = "pitelemetry_hash"
RULE_GROUP = "pitelemetry"
GROUP_INTERVAL_S = 60  # how often Grafana evaluates the group; a multiple of 10 s
SILENCE_WINDOW_S = 86400  # a sensor seen within a day keeps its series while silent
UID_PREFIX = "pitelemetry-"
# The last value of each series, nulls and NaN dropped.
REDUCE_LAST = {"reducer": "last", "settings": {"mode": "dropNN"}}


@dataclass(frozen=True)
class AlertRule:
    """One rule. ``name`` is its id (``[alerts] disable`` names it; the Grafana uid is
    ``pitelemetry-<name>``). Exactly one of ``above``, ``below`` and ``silent_for_s``."""

    name: str
    title: str
    measurement: str
    field: str
    where: Mapping[str, str] = dataclasses.field(default_factory=dict)  # tag = value
    true_field: str = ""  # and this boolean field is true (under_voltage)
    by: tuple[str, ...] = ()  # tags besides host that make one alert each
    above: float | None = None
    below: float | None = None
    silent_for_s: float | None = None
    aggregate: str = "mean"  # over the window
    window_s: float = 300.0
    for_s: float = 0.0
    severity: str = "warning"
    unit: str = ""

    def query(self) -> str:
        """The InfluxQL query, with Grafana's ``$timeFilter`` macro."""
        conditions = [
            f"{ident(key)} = {literal(clean_name(value))}" for key, value in self.where.items()
        ]
        if self.true_field:
            conditions.append(f"{ident(self.true_field)} = true")
        conditions.append("$timeFilter")
        groups = ", ".join(ident(tag) for tag in ("host", *self.by))
        column = ident(clean_key(self.field))
        source = f"FROM {ident(clean_name(self.measurement))} WHERE {' AND '.join(conditions)}"
        if self.silent_for_s is not None:
            minutes = max(1, round(self.silent_for_s / 60))
            return (
                f"SELECT moving_average(count({column}), {minutes}) {source} "
                f"GROUP BY time(1m), {groups} fill(0)"
            )
        return f"SELECT {self.aggregate}({column}) {source} GROUP BY {groups}"

    def probe_query(self) -> str:
        """Whether the rule has anything to watch: its series over the last day (or its
        window), whatever their values. ``pitelemetry check`` runs it."""
        probe = dataclasses.replace(
            self, true_field="", silent_for_s=None, aggregate="count", above=0.0
        )
        seconds = max(self.window_s, SILENCE_WINDOW_S)
        return probe.query().replace("$timeFilter", f"time > now() - {round(seconds)}s")

    def summary(self) -> str:
        """The notification's text: which Pi and sensor, and the value."""
        who = " ".join("{{ $labels." + tag + " }}" for tag in ("host", *self.by))
        if self.silent_for_s is not None:
            return f"{self.title}: {who} sent nothing for {prom_duration(self.silent_for_s)}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.title}: {who} at {{{{ $values.B.Value }}}}{unit}"


def prom_duration(seconds: float) -> str:
    """A duration as Grafana stores it: Prometheus' format, largest units first
    (600 -> ``10m``, 5400 -> ``1h30m``, 86400 -> ``1d``, 0 -> ``0s``)."""
    milliseconds = round(seconds * 1000)
    if not milliseconds:
        return "0s"
    units = [("y", 31_536_000_000), ("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000)]
    units += [("m", 60_000), ("s", 1000), ("ms", 1)]
    text = ""
    for unit, size in units:
        if unit in ("y", "w") and milliseconds % size:
            continue  # years and weeks only when exact
        count, milliseconds = divmod(milliseconds, size)
        if count:
            text += f"{count}{unit}"
    return text


def _expression(ref: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": ref,
        "queryType": "",
        "relativeTimeRange": {"from": 0, "to": 0},
        "datasourceUid": "__expr__",
        "model": {
            "refId": ref,
            "datasource": {"type": "__expr__", "uid": "__expr__"},
            "intervalMs": 1000,
            "maxDataPoints": 43200,
            **model,
        },
    }


def grafana_rule(
    rule: AlertRule, datasource_uid: str, folder_uid: str, receiver: str = ""
) -> dict[str, Any]:
    """The rule as Grafana's provisioning API takes it, its hash annotated; with a
    ``receiver`` it notifies that contact point directly, not through the policy tree."""
    silent = rule.silent_for_s is not None
    window = SILENCE_WINDOW_S if silent else round(rule.window_s)
    if silent:
        evaluator = {"evaluator": {"type": "lt", "params": [0.01]}}
    elif rule.above is not None:
        evaluator = {"evaluator": {"type": "gt", "params": [rule.above]}}
    else:
        evaluator = {"evaluator": {"type": "lt", "params": [rule.below]}}
    query = {
        "refId": "A",
        "queryType": "",
        "relativeTimeRange": {"from": window, "to": 0},
        "datasourceUid": datasource_uid,
        "model": {
            "refId": "A",
            "datasource": {"type": "influxdb", "uid": datasource_uid},
            "rawQuery": True,
            "resultFormat": "time_series",
            "query": rule.query(),
            "intervalMs": 1000,
            "maxDataPoints": 43200,
        },
    }
    body: dict[str, Any] = {
        "uid": UID_PREFIX + rule.name,
        "title": rule.title,
        "ruleGroup": RULE_GROUP,
        "folderUID": folder_uid,
        "condition": "C",
        "data": [
            query,
            _expression(
                "B",
                {
                    "type": "reduce",
                    "expression": "A",
                    "reducer": "last",
                    "settings": {"mode": "dropNN"},
                },
            ),
            _expression(
                "C",
                {"type": "threshold", "expression": "B", "conditions": [evaluator]},
            ),
        ],
        # No series at all: for a silence rule that is the alarm (every sensor gone);
        # for a threshold, nothing to judge.
        "noDataState": "Alerting" if silent else "OK",
        "execErrState": "Error",
        "for": prom_duration(rule.for_s),
        "isPaused": False,
        "labels": {MANAGED_LABEL[0]: MANAGED_LABEL[1], "severity": rule.severity},
        "annotations": {"summary": rule.summary()},
    }
    if receiver:
        body["notification_settings"] = {"receiver": receiver}
    body["annotations"][HASH_ANNOTATION] = rule_hash(body)
    return body


RULE_KEYS = (
    "title",
    "condition",
    "data",
    "noDataState",
    "execErrState",
    "for",
    "isPaused",
    "notification_settings",
)


def rule_hash(rule: dict[str, Any]) -> str:
    """A hash of what a rule does, as Grafana returns it: edits in the UI change it."""
    content = {key: rule.get(key) for key in RULE_KEYS}
    content["labels"] = rule.get("labels") or {}
    annotations = dict(rule.get("annotations") or {})
    annotations.pop(HASH_ANNOTATION, None)
    content["annotations"] = annotations
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def edited(stored: dict[str, Any]) -> bool:
    """Whether a rule we wrote was changed in Grafana since."""
    return rule_hash(stored) != (stored.get("annotations") or {}).get(HASH_ANNOTATION)


def route(receiver: str) -> dict[str, Any]:
    """The one notification-policy route pitelemetry owns: its rules to ``receiver``."""
    return {
        "receiver": receiver,
        "object_matchers": [[MANAGED_LABEL[0], "=", MANAGED_LABEL[1]]],
        "group_by": ["alertname", "host", "name"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
    }


def merge_route(tree: dict[str, Any], receiver: str) -> dict[str, Any]:
    """The whole policy tree with our route replaced, or added first; the user's own
    routes as they were."""
    merged = {k: v for k, v in tree.items() if k != "provenance"}
    ours = route(receiver)
    routes = [
        r for r in merged.get("routes") or [] if r.get("object_matchers") != ours["object_matchers"]
    ]
    merged["routes"] = [ours, *routes]
    return merged


def slug(name: str) -> str:
    """A uid-safe form of a name (``[a-zA-Z0-9-_]``, at most 40 with the prefix)."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", name).strip("-")[: 40 - len(UID_PREFIX)] or "x"


def agent_rules() -> Iterator[AlertRule]:
    """The agent's own defaults: a Pi gone silent, a spool falling behind, drops."""
    agent = {"scope": "agent"}
    yield AlertRule(
        "host_silent",
        "Pi silent",
        "pitelemetry",
        "written",
        agent,
        silent_for_s=600,
        severity="critical",
    )
    yield AlertRule(
        "spool_behind",
        "Readings waiting in the spool",
        "pitelemetry",
        "spool_oldest_age_s",
        agent,
        above=900,
        aggregate="last",
        window_s=300,
        unit="s",
    )
    yield AlertRule(
        "points_dropped",
        "Readings dropped",
        "pitelemetry",
        "dropped",
        agent,
        above=0,
        aggregate="spread",
        window_s=600,
    )


def rules_of(config: Config) -> list[tuple[AlertRule, str]]:
    """Every rule ``config`` asks for, with the contact a rule names itself ("" for the
    route's): the agent's and inputs' defaults (those not disabled), then the user's."""
    rules: dict[str, tuple[AlertRule, str]] = {}
    alerts = config.alerts
    if alerts.defaults:
        defaults = [*agent_rules(), *(r for item in config.inputs for r in item.options.alerts())]
        for rule in defaults:
            if rule.name not in alerts.disable:
                rules.setdefault(rule.name, (rule, ""))
    if alerts.defaults and config.backup.to and "backup_old" not in alerts.disable:
        rule = AlertRule(
            "backup_old",
            "No backup for 3 days",
            "pitelemetry",
            "backup_age_s",
            {"scope": "agent"},
            above=3 * 86400,
            aggregate="last",
            window_s=900,
            unit="s",
        )
        rules.setdefault(rule.name, (rule, ""))
    for user in alerts.rules:
        name = "rule-" + slug(user.name)
        rule = AlertRule(
            name,
            user.name,
            user.measurement,
            user.field,
            user.where,
            by=tuple(user.where),
            above=user.above,
            below=user.below,
            silent_for_s=user.no_data_for,
            aggregate="last",
            window_s=600,
            for_s=user.for_,
            severity=user.severity,
        )
        rules[name] = (rule, user.contact)
    return list(rules.values())


# Each contact type's settings in Grafana: (config key, Grafana key).
CONTACT_SETTINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "telegram": (("chat_id", "chatid"), ("bot_token_file", "bottoken")),
    "email": (("addresses", "addresses"),),
    "webhook": (
        ("url", "url"),
        ("url_file", "url"),
        ("username", "username"),
        ("password_file", "password"),
    ),
    "discord": (("url_file", "url"),),
    "slack": (("url_file", "url"),),
    "teams": (("url_file", "url"),),
    "googlechat": (("url_file", "url"),),
    "pushover": (("user_key_file", "userKey"), ("api_token_file", "apiToken")),
}


def contact_point(contact: ContactConfig, reveal: Callable[[str, str], str]) -> dict[str, Any]:
    """A ``[[alerts.contacts]]`` as Grafana's contact point; ``reveal(key, name)`` gives
    what a ``*_file`` key's setting holds: the secret (for Grafana's API, never printed)
    or a reference to its file (for Grafana's provisioning files)."""
    settings: dict[str, Any] = {}
    for key, grafana_key in CONTACT_SETTINGS[contact.type]:
        value = getattr(contact, key)
        if value and key.endswith("_file"):
            settings[grafana_key] = reveal(key, value)
        elif value:
            settings[grafana_key] = value
    return {
        "uid": UID_PREFIX + slug(contact.name),
        "name": contact.name,
        "type": contact.type,
        "settings": settings,
        "disableResolveMessage": False,
    }


def secret_keys(contact: ContactConfig) -> set[str]:
    """The Grafana settings of ``contact`` that come from secret files."""
    return {g for key, g in CONTACT_SETTINGS[contact.type] if key.endswith("_file")}


def contact_hash(point: dict[str, Any]) -> str:
    canonical = json.dumps(point, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
