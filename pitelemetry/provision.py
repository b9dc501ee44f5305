"""``pitelemetry provision``: the InfluxDB database and retention, the Grafana data
source, folder and dashboards, all generated from the config and safe to run again.

InfluxDB 1.x: the database; a default retention policy for raw points (``retention``,
30 days) and ``downsampled`` (``long_retention``, 2 years) filled by a continuous query
with ``downsample_every`` (5 min) means of every numeric field (named ``mean_<field>``).

Grafana: waits for ``/api/health``; creates or updates the InfluxQL data source under
a stable uid; creates the folder; upserts each dashboard by uid with ``overwrite`` and a
message, and only when it changed. A dashboard someone edited in Grafana is kept (and
reported) unless ``--force``: each dashboard carries a ``pitelemetry:<hash>`` tag, the
hash of what provision generated, so an edit shows as content that no longer matches.

``--dry-run`` reports what would change and changes nothing. ``--write-files DIR``
writes Grafana's file-provisioning YAML and the dashboard JSON instead.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitelemetry import __version__, alerting, dashboards, influxql, statefile
from pitelemetry.config import (
    CREDSTORE,
    Config,
    ConfigError,
    ContactConfig,
    contact_secrets,
    secret_objects,
)
from pitelemetry.grafana import GrafanaClient, GrafanaError, GrafanaUnreachableError
from pitelemetry.influxql import ident
from pitelemetry.transport import HttpTransport, Transport, TransportError
from pitelemetry.writer import AuthError, WriteError, api_for_version, wait_for

CQ_NAME = "pitelemetry_downsample"
LONG_RP = "downsampled"
log = logging.getLogger(__name__)
HASH_TAG = "pitelemetry:"


class ProvisionError(Exception):
    """A step failed; the message says what and how to fix it."""


@dataclass(frozen=True)
class Change:
    action: str  # created, updated, unchanged, kept, skipped (dry run: "would create", ...)
    subject: str
    detail: str = ""

    def render(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.action:<14} {self.subject}{detail}"


def _would(action: str, dry_run: bool) -> str:
    """``created`` / ``updated``, or what a dry run would have done."""
    return {"created": "would create", "updated": "would update"}[action] if dry_run else action


def _flux_string(value: str) -> str:
    """A Flux string literal: backslash, quote and ``${`` (interpolation) escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    return f'"{escaped}"'


# -- InfluxDB 1.x ------------------------------------------------------------------------


_UNITS = {
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
    "u": 1e-6,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
}


def _go_seconds(text: str) -> float:
    """InfluxDB's durations in seconds: ``720h0m0s`` (``0s`` = forever), ``5m``, ``1w``."""
    pairs = re.findall(r"([\d.]+)(ms|us|µs|ns|u|w|d|h|m|s)", text)
    return sum(float(number) * _UNITS[unit] for number, unit in pairs)


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g}d" if seconds % 86400 == 0 else f"{seconds:g}s"


class InfluxV1:
    def __init__(self, config: Config, dry_run: bool, transport: Transport) -> None:
        self.influx = config.influxdb
        self.dry_run = dry_run
        self.transport = transport
        self.password = self.influx.password_file.reveal() if self.influx.password_file else ""

    def query(self, statement: str) -> list[dict[str, Any]]:
        try:
            return influxql.query(
                self.influx.url,
                statement,
                username=self.influx.username,
                password=self.password,
                timeout=self.influx.timeout,
                transport=self.transport,
            )
        except AuthError as exc:
            raise ProvisionError(
                f"{exc}; provisioning needs an InfluxDB admin: [influxdb] username and "
                "password_file"
            ) from None
        except (WriteError, ValueError) as exc:
            raise ProvisionError(f"InfluxDB: {exc}") from None

    def change(self, statement: str) -> None:
        if not self.dry_run:
            self.query(statement)

    def run(self) -> Iterator[Change]:
        database = self.influx.database
        db = ident(database)
        existing = {r["name"] for r in influxql.rows(self.query("SHOW DATABASES")[0])}
        created = database not in existing
        if created:
            self.change(f"CREATE DATABASE {db}")
        yield Change(
            _would("created", self.dry_run) if created else "unchanged",
            f"InfluxDB database {database!r}",
        )
        policies = {}
        if not (created and self.dry_run):
            policies = {
                r["name"]: r
                for r in influxql.rows(self.query(f"SHOW RETENTION POLICIES ON {db}")[0])
            }
        raw = self.influx.retention_policy or "raw"
        yield self._policy(db, policies, raw, self.influx.retention, default=True)
        yield self._policy(db, policies, LONG_RP, self.influx.long_retention, default=False)
        yield self._continuous_query(database, raw)

    def _policy(
        self, db: str, policies: dict[str, Any], name: str, seconds: float, *, default: bool
    ) -> Change:
        subject = f"retention policy {name!r}"
        want = f"{_days(seconds)}{', default' if default else ''}"
        clause = f"DURATION {int(seconds)}s REPLICATION 1{' DEFAULT' if default else ''}"
        current = policies.get(name)
        if current is None:
            self.change(f"CREATE RETENTION POLICY {ident(name)} ON {db} {clause}")
            return Change(_would("created", self.dry_run), subject, want)
        if _go_seconds(current["duration"]) != seconds or (default and not current["default"]):
            self.change(f"ALTER RETENTION POLICY {ident(name)} ON {db} {clause}")
            return Change(_would("updated", self.dry_run), subject, want)
        return Change("unchanged", subject, want)

    def _continuous_query(self, database: str, raw: str) -> Change:
        db = ident(database)
        every = f"{int(self.influx.downsample_every)}s"  # InfluxDB shows it back as 5m
        statement = (
            f"CREATE CONTINUOUS QUERY {ident(CQ_NAME)} ON {db} BEGIN SELECT mean(*) INTO "
            f"{db}.{ident(LONG_RP)}.:MEASUREMENT FROM {db}.{ident(raw)}./.*/ "
            f"GROUP BY time({every}), * END"
        )
        subject = f"continuous query {CQ_NAME!r}"
        detail = f"{_days(self.influx.downsample_every)} means into {LONG_RP!r}"
        existing = ""
        if not self.dry_run or self._database_exists(database):
            for series in self.query("SHOW CONTINUOUS QUERIES")[0].get("series", []):
                if series["name"] == database:
                    for name, text in series.get("values", []):
                        if name == CQ_NAME:
                            existing = text
        if not existing:
            self.change(statement)
            return Change(_would("created", self.dry_run), subject, detail)
        interval = re.search(r"time\(([^)]+)\)", existing)
        same_every = interval and _go_seconds(interval.group(1)) == self.influx.downsample_every
        if same_every and f".{raw}." in existing.replace('"', ""):
            return Change("unchanged", subject, detail)
        self.change(f"DROP CONTINUOUS QUERY {ident(CQ_NAME)} ON {db}")
        self.change(statement)
        return Change(_would("updated", self.dry_run), subject, detail)

    def _database_exists(self, database: str) -> bool:
        return database in {r["name"] for r in influxql.rows(self.query("SHOW DATABASES")[0])}


# -- InfluxDB 2.x and 3.x ----------------------------------------------------------------

TASK_NAME = "pitelemetry downsample"


MAX_API_BYTES = 32 * 1024 * 1024  # lists of a few buckets, DBRPs and tasks


class _Api:
    """InfluxDB's management API (JSON) with the configured token, over ``transport``."""

    def __init__(self, config: Config, transport: Transport) -> None:
        influx = config.influxdb
        self.url = influx.url.rstrip("/")
        self.timeout = influx.timeout
        self.transport = transport
        token = influx.token_file.reveal() if influx.token_file else ""
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(
        self, method: str, path: str, body: object = None, ok: tuple[int, ...] = (200, 201)
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        try:
            answer = self.transport.request(
                method,
                self.url + path,
                data,
                self.headers,
                timeout=self.timeout,
                max_bytes=MAX_API_BYTES,
            )
        except TransportError as exc:
            raise ProvisionError(f"cannot reach InfluxDB at {self.url}: {exc}") from None
        if answer.truncated:
            raise ProvisionError(
                f"InfluxDB's answer to {method} {path} is over {MAX_API_BYTES} bytes"
            )
        if answer.status in (401, 403):
            raise ProvisionError(
                f"InfluxDB refused {method} {path} ({answer.status}): provisioning needs "
                "an operator or all-access token in [influxdb] token_file"
            )
        if answer.status not in ok:
            raise ProvisionError(
                f"InfluxDB answered {method} {path} with {answer.status}: {answer.text[:300]}"
            )
        try:
            return answer.json() if answer.body else None
        except ValueError:
            raise ProvisionError(
                f"InfluxDB answered {method} {path} with something other than JSON: "
                f"{answer.text[:100]!r}"
            ) from None


class InfluxV2:
    """InfluxDB 2.x: the bucket and a downsampled bucket with retention, a DBRP mapping so
    the InfluxQL dashboards find the bucket as ``database``/``raw``, and a task that
    writes ``downsample_every`` means of numeric fields into the downsampled bucket."""

    def __init__(self, config: Config, dry_run: bool, transport: Transport) -> None:
        self.influx = config.influxdb
        self.dry_run = dry_run
        self.api = _Api(config, transport)

    def run(self) -> Iterator[Change]:
        org_name = self.influx.org
        found = self.api.call("GET", f"/api/v2/orgs?{_query(org=org_name)}", ok=(200, 404))
        orgs = found.get("orgs") or []
        if not orgs:
            raise ProvisionError(f"InfluxDB has no organization {org_name!r}: [influxdb] org")
        org = orgs[0]["id"]
        name = self.influx.bucket or self.influx.database
        raw, change = self._bucket(org, name, self.influx.retention)
        yield change
        _, change = self._bucket(org, f"{name}_downsampled", self.influx.long_retention)
        yield change
        yield self._dbrp(org, raw)
        yield self._task(org, name)

    def _bucket(self, org: str, name: str, seconds: float) -> tuple[str, Change]:
        rules = [{"type": "expire", "everySeconds": int(seconds)}]
        subject = f"InfluxDB bucket {name!r}"
        found = self.api.call(
            "GET", f"/api/v2/buckets?{_query(orgID=org, name=name)}", ok=(200, 404)
        )
        buckets = found.get("buckets") or []
        if not buckets:
            if self.dry_run:
                return "", Change("would create", subject, _days(seconds))
            made = self.api.call(
                "POST", "/api/v2/buckets", {"orgID": org, "name": name, "retentionRules": rules}
            )
            return str(made["id"]), Change("created", subject, _days(seconds))
        bucket = buckets[0]
        current = [r.get("everySeconds") for r in bucket.get("retentionRules") or []]
        if current != [int(seconds)]:
            if not self.dry_run:
                self.api.call("PATCH", f"/api/v2/buckets/{bucket['id']}", {"retentionRules": rules})
            return str(bucket["id"]), Change(
                _would("updated", self.dry_run), subject, _days(seconds)
            )
        return str(bucket["id"]), Change("unchanged", subject, _days(seconds))

    def _dbrp(self, org: str, bucket: str) -> Change:
        database = self.influx.database
        subject = f"DBRP mapping {database!r}/raw"
        found = self.api.call("GET", f"/api/v2/dbrps?{_query(orgID=org, db=database)}")
        if any(m.get("retention_policy") == "raw" for m in found.get("content") or []):
            return Change("unchanged", subject)
        if not self.dry_run:
            self.api.call(
                "POST",
                "/api/v2/dbrps",
                {
                    "orgID": org,
                    "bucketID": bucket,
                    "database": database,
                    "retention_policy": "raw",
                    "default": True,
                },
            )
        return Change(_would("created", self.dry_run), subject)

    def _task(self, org: str, bucket: str) -> Change:
        every = f"{int(self.influx.downsample_every)}s"
        flux = (
            'import "types"\n'
            f'option task = {{name: "{TASK_NAME}", every: {every}}}\n'
            f"from(bucket: {_flux_string(bucket)})\n"
            "  |> range(start: -task.every)\n"
            "  |> filter(fn: (r) => types.isNumeric(v: r._value))\n"
            "  |> aggregateWindow(every: task.every, fn: mean, createEmpty: false)\n"
            f"  |> to(bucket: {_flux_string(bucket + '_downsampled')})\n"
        )
        subject = f"InfluxDB task {TASK_NAME!r}"
        found = self.api.call("GET", f"/api/v2/tasks?{_query(orgID=org, name=TASK_NAME)}")
        tasks = found.get("tasks") or []
        if not tasks:
            if not self.dry_run:
                self.api.call(
                    "POST",
                    "/api/v2/tasks",
                    {
                        "orgID": org,
                        "flux": flux,
                        "status": "active",
                        "description": "pitelemetry: means into the downsampled bucket",
                    },
                )
            return Change(_would("created", self.dry_run), subject, f"every {every}")
        if tasks[0].get("flux") != flux:
            if not self.dry_run:
                self.api.call("PATCH", f"/api/v2/tasks/{tasks[0]['id']}", {"flux": flux})
            return Change(_would("updated", self.dry_run), subject, f"every {every}")
        return Change("unchanged", subject, f"every {every}")


class InfluxV3:
    """InfluxDB 3 Core: the database, with the raw retention (fixed once created)."""

    def __init__(self, config: Config, dry_run: bool, transport: Transport) -> None:
        self.influx = config.influxdb
        self.dry_run = dry_run
        self.api = _Api(config, transport)

    def run(self) -> Iterator[Change]:
        database = self.influx.database
        subject = f"InfluxDB database {database!r}"
        listed = self.api.call("GET", "/api/v3/configure/database?format=json") or []
        if any(database in entry.values() for entry in listed):
            yield Change("unchanged", subject, "3.x fixes the retention when it creates one")
            return
        if not self.dry_run:
            self.api.call(
                "POST",
                "/api/v3/configure/database",
                {
                    "db": database,
                    "retention_period": f"{int(self.influx.retention // 86400)}d",
                },
            )
        yield Change(_would("created", self.dry_run), subject, _days(self.influx.retention))


def _query(**params: str) -> str:
    return urllib.parse.urlencode(params)


# -- Grafana -----------------------------------------------------------------------------


def datasource_body(config: Config, api: str) -> dict[str, Any]:
    """The data source as Grafana's API takes it (``access`` and ``type`` required)."""
    influx = config.influxdb
    body: dict[str, Any] = {
        "name": config.grafana.datasource_name,
        "uid": config.grafana.datasource_uid,
        "type": "influxdb",
        "access": "proxy",
        "url": influx.url,
        "jsonData": {
            "version": "InfluxQL",
            "dbName": influx.database,
            "httpMode": "POST",
            "timeInterval": f"{int(max(1.0, config.agent.interval))}s",
        },
        "secureJsonData": {},
    }
    if api == "v1":
        if influx.username:
            body["user"] = influx.username
        if influx.password_file:
            body["secureJsonData"]["password"] = influx.password_file.reveal()
    else:
        token = influx.token_file.reveal() if influx.token_file else ""
        body["jsonData"]["httpHeaderName1"] = "Authorization"
        body["secureJsonData"]["httpHeaderValue1"] = f"Token {token}"
    return body


def _datasource_differs(existing: dict[str, Any], body: dict[str, Any]) -> bool:
    for key in ("name", "type", "access", "url"):
        if existing.get(key) != body.get(key):
            return True
    if existing.get("user", "") != body.get("user", ""):
        return True
    current = existing.get("jsonData") or {}
    if any(current.get(k) != v for k, v in body["jsonData"].items()):
        return True
    stored = existing.get("secureJsonFields") or {}
    return any(not stored.get(key) for key in body["secureJsonData"])


def fingerprint(dashboard: dict[str, Any]) -> str:
    """A hash of a dashboard's content, without what Grafana adds or our own tag."""
    content = copy.deepcopy(dashboard)
    for key in ("id", "version"):
        content.pop(key, None)
    content["tags"] = [t for t in content.get("tags", []) if not t.startswith(HASH_TAG)]
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def stamp(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard with its fingerprint tag."""
    stamped = copy.deepcopy(dashboard)
    stamped["tags"] = [*dashboard.get("tags", []), HASH_TAG + fingerprint(dashboard)]
    return stamped


def _tagged_hash(dashboard: dict[str, Any]) -> str:
    for tag in dashboard.get("tags", []):
        if tag.startswith(HASH_TAG):
            return str(tag[len(HASH_TAG) :])
    return ""


class GrafanaSide:
    def __init__(
        self,
        config: Config,
        *,
        api: str,
        dry_run: bool,
        force: bool,
        wait: float,
        client: GrafanaClient,
    ) -> None:
        self.wait = wait
        self.config = config
        self.api = api
        self.dry_run = dry_run
        self.force = force
        self.client = client

    def run(self) -> Iterator[Change]:
        grafana = self.config.grafana
        try:
            health = self.client.wait_healthy(self.wait)
        except GrafanaUnreachableError as exc:
            raise ProvisionError(
                f"{exc} (waited {self.wait:g}s); start it with: sudo systemctl start grafana-server"
            ) from None
        yield Change("reached", f"Grafana {health.get('version', '')} at {grafana.url}")
        try:
            yield self._datasource()
            yield self._folder()
            for dashboard in dashboards.generate(self.config):
                yield self._dashboard(dashboard)
            yield from self._alerting()
        except GrafanaError as exc:
            raise ProvisionError(str(exc)) from None

    def _datasource(self) -> Change:
        body = datasource_body(self.config, self.api)
        uid = body["uid"]
        subject = f"Grafana data source {body['name']!r} (uid {uid})"
        existing = self.client.get_datasource(uid)
        if existing is None:
            if not self.dry_run:
                self.client.create_datasource(body)
            return Change(_would("created", self.dry_run), subject)
        if existing.get("readOnly"):
            return Change("kept", subject, "provisioned from a file, read-only in the API")
        if self.force or _datasource_differs(existing, body):
            if not self.dry_run:
                self.client.update_datasource(uid, body)
            return Change(_would("updated", self.dry_run), subject)
        return Change("unchanged", subject)

    def _folder(self) -> Change:
        grafana = self.config.grafana
        subject = f"Grafana folder {grafana.folder!r}"
        if self.client.get_folder(grafana.folder_uid) is not None:
            return Change("unchanged", subject)
        if not self.dry_run:
            self.client.create_folder(grafana.folder_uid, grafana.folder)
        return Change(_would("created", self.dry_run), subject)

    def _dashboard(self, generated: dict[str, Any]) -> Change:
        uid = generated["uid"]
        url = f"{self.config.grafana.url.rstrip('/')}/d/{uid}"
        subject = f"dashboard {generated['title']!r}"
        new = stamp(generated)
        existing = self.client.get_dashboard(uid)
        message = f"pitelemetry provision ({_tagged_hash(new)})"
        if existing is None:
            if not self.dry_run:
                self.client.save_dashboard(new, self.config.grafana.folder_uid, message)
            return Change(_would("created", self.dry_run), subject, url)
        current = existing.get("dashboard") or {}
        edited = fingerprint(current) != _tagged_hash(current)
        if edited and not self.force:
            return Change("kept", subject, f"edited in Grafana; --force replaces it: {url}")
        if not edited and _tagged_hash(current) == _tagged_hash(new):
            return Change("unchanged", subject, url)
        if not self.dry_run:
            self.client.save_dashboard(new, self.config.grafana.folder_uid, message)
        return Change(_would("updated", self.dry_run), subject, url)

    # -- alerting ----------------------------------------------------------------------------

    def _alerting(self) -> Iterator[Change]:
        """Contact points, the rule group and our notification-policy route."""
        alerts = self.config.alerts
        rules = alerting.rules_of(self.config)
        if not rules and not alerts.contacts:
            return
        hashes_file = Path(self.config.agent.state_dir) / CONTACT_HASHES
        known = statefile.read_json(hashes_file, _string_map, "contact points are re-sent") or {}
        sent = dict(known)
        for contact in alerts.contacts:
            yield self._contact_point(contact, sent)
        yield from self._rules(rules)
        receiver = alerts.contact or (alerts.contacts[0].name if len(alerts.contacts) == 1 else "")
        if receiver:
            yield self._route(receiver)
        if sent != known and not self.dry_run:
            try:
                statefile.write_atomic(hashes_file, json.dumps(sent, sort_keys=True))
            except OSError as exc:
                log.warning("cannot keep contact point hashes in %s: %s", hashes_file, exc)

    def _contact_point(self, contact: ContactConfig, sent: dict[str, str]) -> Change:
        try:
            point = alerting.contact_point(contact, contact_secrets(self.config)(contact))
        except ConfigError as exc:
            raise ProvisionError(str(exc)) from None
        uid, desired = point["uid"], alerting.contact_hash(point)
        subject = f"contact point {contact.name!r} ({contact.type})"
        stored = [p for p in self.client.contact_points(contact.name) if p.get("uid") == uid]
        if not stored:
            if not self.dry_run:
                self.client.create_contact_point(point)
                sent[uid] = desired
            return Change(_would("created", self.dry_run), subject)
        secret = alerting.secret_keys(contact)
        public = {k: v for k, v in point["settings"].items() if k not in secret}
        stored_public = {
            k: v for k, v in (stored[0].get("settings") or {}).items() if k not in secret
        }
        edited = stored_public != public or stored[0].get("type") != contact.type
        if sent.get(uid) == desired and not self.force:
            if edited:
                return Change("kept", subject, "edited in Grafana; --force replaces it")
            return Change("unchanged", subject)
        if not self.dry_run:
            self.client.update_contact_point(uid, point)
            sent[uid] = desired
        return Change(_would("updated", self.dry_run), subject)

    def _rules(self, rules: list[tuple[alerting.AlertRule, str]]) -> Iterator[Change]:
        grafana = self.config.grafana
        folder = grafana.folder_uid
        group = self.client.get_rule_group(folder, alerting.RULE_GROUP)
        stored = {r.get("uid"): r for r in (group or {}).get("rules") or []}
        body: list[dict[str, Any]] = []
        changed = False
        for rule, receiver in rules:
            desired = alerting.grafana_rule(rule, grafana.datasource_uid, folder, receiver)
            subject = f"alert rule {rule.title!r}"
            old = stored.pop(desired["uid"], None)
            if old is None:
                action = _would("created", self.dry_run)
            elif alerting.edited(old) and not self.force:
                body.append(_writable(old))
                yield Change("kept", subject, "edited in Grafana; --force replaces it")
                continue
            elif alerting.rule_hash(old) == alerting.rule_hash(desired):
                action = "unchanged"
            else:
                action = _would("updated", self.dry_run)
            changed = changed or action != "unchanged"
            body.append(desired)
            yield Change(action, subject)
        for old in stored.values():
            if _ours(old):
                changed = True  # ours, no longer configured: left out of the group, deleted
                yield Change(_would("removed", self.dry_run), f"alert rule {old.get('title')!r}")
            else:
                body.append(_writable(old))  # someone's own rule in our group: kept
        if changed and not self.dry_run:
            self.client.put_rule_group(
                folder,
                {
                    "title": alerting.RULE_GROUP,
                    "folderUid": folder,
                    "interval": alerting.GROUP_INTERVAL_S,
                    "rules": body,
                },
            )

    def _route(self, receiver: str) -> Change:
        subject = f"notification route to {receiver!r} for pitelemetry's alerts"
        tree = self.client.policies()
        merged = alerting.merge_route(tree, receiver)
        current = {k: v for k, v in tree.items() if k != "provenance"}
        if merged == current:
            return Change("unchanged", subject)
        if not self.dry_run:
            self.client.put_policies(merged)
        return Change(_would("updated", self.dry_run), subject, "other routes kept as they are")


CONTACT_HASHES = "grafana-contact-points.json"


def _string_map(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        raise TypeError("not an object")
    return {str(k): str(v) for k, v in data.items()}


def _writable(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as read, without what Grafana adds and takes no part in a PUT."""
    return {k: v for k, v in rule.items() if k not in ("id", "updated", "provenance")}


def restore_edits(
    config: Config, saved: Path, *, transport: Transport | None = None
) -> Iterator[Change]:
    """After a restored Pi is provisioned: put back, from a backup's ``grafana/`` copies,
    what the config cannot make again: dashboards that were edited in Grafana, and rules
    in pitelemetry's group that were edited there or are someone's own. Contact points
    are not taken from the copies (Grafana shows their secrets redacted): provisioning
    made them from the config and its secret files."""
    grafana = config.grafana
    with GrafanaClient.from_config(grafana, transport) as client:
        for path in sorted(saved.glob("dashboard-*.json")):
            board = json.loads(path.read_text())
            if fingerprint(board) == _tagged_hash(board):
                continue  # as generated: provisioning has made it again
            board = {k: v for k, v in board.items() if k not in ("id", "version")}
            client.save_dashboard(
                board, grafana.folder_uid, "pitelemetry restore: the copy edited in Grafana"
            )
            yield Change("restored", f"dashboard {board.get('title')!r}", "as edited in Grafana")
        rules_file = saved / "alert-rules.json"
        saved_rules: list[dict[str, Any]] = []
        if rules_file.is_file():
            saved_rules = json.loads(rules_file.read_text()).get("rules") or []
        wanted = [r for r in saved_rules if not _ours(r) or alerting.edited(r)]
        if not wanted:
            return
        folder = grafana.folder_uid
        group = client.get_rule_group(folder, alerting.RULE_GROUP) or {}
        rules = {r.get("uid"): _writable(r) for r in group.get("rules") or []}
        for rule in wanted:
            rules[rule.get("uid")] = _writable(rule)
        client.put_rule_group(
            folder,
            {
                "title": alerting.RULE_GROUP,
                "folderUid": folder,
                "interval": group.get("interval", alerting.GROUP_INTERVAL_S),
                "rules": list(rules.values()),
            },
        )
        for rule in wanted:
            how = "as edited in Grafana" if _ours(rule) else "a rule of your own"
            yield Change("restored", f"alert rule {rule.get('title')!r}", how)


def _ours(rule: dict[str, Any]) -> bool:
    labels = rule.get("labels") or {}
    return bool(labels.get(alerting.MANAGED_LABEL[0]) == alerting.MANAGED_LABEL[1])


# -- files -------------------------------------------------------------------------------


def _yaml(value: object) -> str:
    """A YAML scalar: JSON's quoting is valid YAML."""
    return json.dumps(value)


def write_files_to(
    config: Config,
    directory: Path,
    dashboards_path: str = "/var/lib/grafana/dashboards/pitelemetry",
) -> list[Path]:
    """Grafana's provisioning files and the dashboards, for provisioning from disk.

    Secrets are not written: the data source reads them from the environment of
    grafana-server (``$PITELEMETRY_INFLUXDB_PASSWORD`` or ``..._TOKEN``)."""
    api = "v1" if config.influxdb.api in ("auto", "v1") else "v2"
    body = datasource_body(config, api)
    secure = {
        key: "$PITELEMETRY_INFLUXDB_PASSWORD"
        if key == "password"
        else "Token $PITELEMETRY_INFLUXDB_TOKEN"
        for key in body["secureJsonData"]
    }
    lines = [
        "# Made by pitelemetry provision --write-files; do not edit, re-run it.",
        "apiVersion: 1",
        "datasources:",
        f"  - name: {_yaml(body['name'])}",
        "    type: influxdb",
        "    access: proxy",
        f"    uid: {_yaml(body['uid'])}",
        f"    url: {_yaml(body['url'])}",
        "    editable: false",
    ]
    if "user" in body:
        lines.append(f"    user: {_yaml(body['user'])}")
    lines.append("    jsonData:")
    lines.extend(f"      {key}: {_yaml(value)}" for key, value in body["jsonData"].items())
    if secure:
        lines.append("    secureJsonData:")
        lines.extend(f"      {key}: {_yaml(value)}" for key, value in secure.items())
    grafana = config.grafana
    provider = [
        "# Made by pitelemetry provision --write-files; do not edit, re-run it.",
        "apiVersion: 1",
        "providers:",
        '  - name: "pitelemetry"',
        "    type: file",
        f"    folder: {_yaml(grafana.folder)}",
        f"    folderUid: {_yaml(grafana.folder_uid)}",
        "    allowUiUpdates: true",
        "    updateIntervalSeconds: 60",
        "    options:",
        f"      path: {_yaml(dashboards_path)}",
    ]
    written = []
    targets = {
        directory / "provisioning" / "datasources" / "pitelemetry.yaml": "\n".join(lines),
        directory / "provisioning" / "dashboards" / "pitelemetry.yaml": "\n".join(provider),
    }
    for dashboard in dashboards.generate(config):
        path = directory / "dashboards" / f"{dashboard['uid']}.json"
        targets[path] = json.dumps(stamp(dashboard), indent=2, sort_keys=True)
    if alerting_files := _alerting_file(config):
        targets[directory / "provisioning" / "alerting" / "pitelemetry.yaml"] = alerting_files
    for path, text in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        written.append(path)
    return written


def _file_reference(key: str, name: str) -> str:
    """A secret for Grafana's provisioning file: ``$__file{<path>}``, which Grafana
    reads itself (a name is taken to be in ``/etc/credstore``)."""
    del key
    return "$__file{" + (name if Path(name).is_absolute() else str(CREDSTORE / name)) + "}"


def _alerting_file(config: Config) -> str:
    """Grafana's alerting provisioning file (JSON, which YAML reads): the rule group and
    the contact points. Secrets stay in their files, read by Grafana through
    ``$__file{...}``; the rules name the default contact themselves
    (``notification_settings``), since a policy tree from a file would replace yours."""
    grafana = config.grafana
    alerts = config.alerts
    default = alerts.contact or (alerts.contacts[0].name if len(alerts.contacts) == 1 else "")
    rules = [
        alerting.grafana_rule(rule, grafana.datasource_uid, grafana.folder_uid, contact or default)
        for rule, contact in alerting.rules_of(config)
    ]
    if not rules and not alerts.contacts:
        return ""
    for rule in rules:
        for key in ("folderUID", "ruleGroup"):
            rule.pop(key)
    points = []
    for contact in alerts.contacts:
        point = alerting.contact_point(contact, _file_reference)
        name = point.pop("name")
        points.append({"orgId": 1, "name": name, "receivers": [point]})
    document: dict[str, Any] = {"apiVersion": 1}
    if rules:
        document["groups"] = [
            {
                "orgId": 1,
                "name": alerting.RULE_GROUP,
                "folder": grafana.folder,
                "interval": alerting.prom_duration(alerting.GROUP_INTERVAL_S),
                "rules": rules,
            }
        ]
    if points:
        document["contactPoints"] = points
    header = "# Made by pitelemetry provision --write-files; do not edit, re-run it.\n"
    return header + json.dumps(document, indent=2, ensure_ascii=False)


# -- the command -------------------------------------------------------------------------


def config_fingerprint(config: Config) -> str:
    """A hash of what provisioning depends on: the config file, the secrets, the version.
    Secrets enter only hashed; the stamp file never holds them."""
    digest = hashlib.sha256(Path(config.path).read_bytes())
    for secret in secret_objects(config):  # a new token in a file changes nothing else
        digest.update(b"\0" + secret.reveal().encode())
    digest.update(__version__.encode())
    return digest.hexdigest()


def detect_version(config: Config, wait: float, transport: Transport | None = None) -> str:
    """Wait (at most ``wait`` seconds) for InfluxDB to answer ``/ping``; its version."""
    try:
        return wait_for(config.influxdb.url, wait, transport=transport)
    except WriteError as exc:
        raise ProvisionError(
            f"{exc} (waited {wait:g}s); is InfluxDB running? [influxdb] url"
        ) from None


def grafana_configured(config: Config) -> bool:
    return bool(config.grafana.token_file or config.grafana.username)


def provision(
    config: Config,
    *,
    dry_run: bool = False,
    force: bool = False,
    wait: float = 60.0,
    transport: Transport | None = None,
) -> Iterator[Change]:
    """Every step's outcome, in order; raises :class:`ProvisionError` on the first failure
    (what was done before it stays done, and the next run picks up from there). Waits up
    to ``wait`` seconds for each of InfluxDB and Grafana to answer. Every request to
    InfluxDB and Grafana goes through ``transport`` (a fresh :class:`HttpTransport`,
    closed at the end, by default)."""
    http = transport or HttpTransport()
    try:
        version = detect_version(config, wait, http)
        api = api_for_version(version) if config.influxdb.api == "auto" else config.influxdb.api
        major = version.lstrip("vV")[:1]
        if major == "3":
            yield from InfluxV3(config, dry_run, http).run()
        elif api == "v2":
            yield from InfluxV2(config, dry_run, http).run()
        else:
            yield from InfluxV1(config, dry_run, http).run()
        if grafana_configured(config):
            side = GrafanaSide(
                config,
                api=api,
                dry_run=dry_run,
                force=force,
                wait=wait,
                client=GrafanaClient.from_config(config.grafana, http),
            )
            yield from side.run()
        else:
            yield Change(
                "skipped",
                "Grafana",
                "set [grafana] token_file (or username and "
                "password_file) to provision the data source and dashboards",
            )
    finally:
        if transport is None:
            http.close()
