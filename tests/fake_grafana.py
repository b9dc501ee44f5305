"""A fake Grafana for tests, built from the documented HTTP contract (Grafana 11-13).

Real HTTP on loopback, state kept across calls, and the documented status codes and
bodies: 401 without valid credentials (except ``/api/health``), 503 while "starting",
400 ``bad request data`` without ``type``/``access``, 409 for a duplicate data source
name or uid, 403 for a read-only (file-provisioned) data source, 404 ``Data source not
found`` / ``folder not found``, 409 for a duplicate folder uid, 400 ``folder not found``
for a dashboard in an unknown folder, 400 ``empty-name``, uid and message limits, and
412 ``version-mismatch`` when saving over a changed dashboard without ``overwrite``.

Alerting's provisioning API as ``research/grafana-alerting-contract.md`` writes it down
from Grafana's code and docs: rule groups (PUT replaces the whole group, 200 echoing it;
400 ``invalid alert rule: ...`` for a bad interval, NoData/Error state, a numeric ``for``
or an inverted time range; stored rules normalised as Grafana does: ``for`` in
Prometheus' format, each model's keys sorted with ``intervalMs``/``maxDataPoints``
added; GET 404 when absent), contact points (POST and PUT 202, secure settings
``[REDACTED]`` on GET and kept when sent back so, 400 for missing settings, 404 for an
unknown uid), the notification-policy tree (GET, PUT 202 replacing the whole tree, 400
for a route to an unknown contact point) and the receiver test. Every alerting write is
recorded with whether it carried ``X-Disable-Provenance``.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "glsa_VVQjot0nijQ59lun6pMZRtsdBXxnFQ9M_77c34a79"
UID = re.compile(r"^[a-zA-Z0-9\-_]{1,40}$")
UNAUTHORIZED = {
    "extra": None,
    "message": "Unauthorized",
    "messageId": "auth.unauthorized",
    "statusCode": 401,
    "traceID": "",
}


DEFAULT_POLICY = {"receiver": "grafana-default-email", "group_by": ["grafana_folder", "alertname"]}
# Settings Grafana keeps secret, per contact point type: "[REDACTED]" on GET.
SECURE = {
    "telegram": {"bottoken"},
    "webhook": {"password", "authorization_credentials"},
    "discord": {"url"},
    "slack": {"url", "token"},
    "pushover": {"userKey", "apiToken"},
    "teams": {"url"},
    "googlechat": {"url"},
    "email": set(),
}
REQUIRED = {
    "telegram": ("bottoken", "chatid"),
    "email": ("addresses",),
    "webhook": ("url",),
    "discord": ("url",),
    "slack": ("url",),
    "pushover": ("userKey", "apiToken"),
    "teams": ("url",),
    "googlechat": ("url",),
}
NODATA_STATES = ("NoData", "Alerting", "OK", "KeepLast")
ERROR_STATES = ("Error", "Alerting", "OK", "KeepLast")


def prometheus_duration(text: str) -> str | None:
    """A duration string as Grafana stores it, or ``None`` when it is not one."""
    units = {"y": 31536000000, "w": 604800000, "d": 86400000, "h": 3600000}
    units |= {"m": 60000, "s": 1000, "ms": 1}
    parts = re.findall(r"(\d+)(ms|y|w|d|h|m|s)", text)
    if not text or "".join(n + u for n, u in parts) != text:
        return None
    total = sum(int(n) * units[u] for n, u in parts)
    if not total:
        return "0s"
    out = ""
    for unit, size in units.items():
        if unit in ("y", "w") and total % size:
            continue
        count, total = divmod(total, size)
        if count:
            out += f"{count}{unit}"
    return out


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {dashboard, folderUid, ...}
        self.requests: list[tuple[str, str]] = []
        self.starting = False
        self.rule_groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.contact_points: dict[str, dict[str, Any]] = {}
        self.policies: dict[str, Any] = dict(DEFAULT_POLICY)
        self.provenance: list[tuple[str, str, bool]] = []  # (method, path, header sent)
        self.tested: list[dict[str, Any]] = []
        self.users = {"admin": "admin"}


class FakeGrafana:
    def __init__(self) -> None:
        self.state = State()
        state = self.state

        class Handler(_Handler):
            pass

        Handler.state = state
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGrafana:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def edit_dashboard(self, uid: str, title: str) -> None:
        """What a user does in the UI: change something and save (version + 1)."""
        with self.state.lock:
            record = self.state.dashboards[uid]
            record["dashboard"]["title"] = title
            record["dashboard"]["version"] += 1

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.state.requests if r[0] in ("POST", "PUT", "DELETE")]

    def edit_rule(self, uid: str, **changes: Any) -> None:
        """What a user does in the alerting UI: change a rule and save it."""
        with self.state.lock:
            for group in self.state.rule_groups.values():
                for rule in group["rules"]:
                    if rule["uid"] == uid:
                        rule.update(changes)
                        return
        raise KeyError(uid)

    def rules(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [copy.deepcopy(r) for g in self.state.rule_groups.values() for r in g["rules"]]


class _Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, format: str, *args: Any) -> None:
        del format, args

    # -- plumbing ---------------------------------------------------------------------------

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if header == f"Bearer {TOKEN}":
            return True
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return self.state.users.get(user) == password
        return False

    def _route(self, method: str) -> None:
        path = self.path.split("?")[0]
        with self.state.lock:
            self.state.requests.append((method, path))
        if path == "/api/health":
            if self.state.starting:
                self._send(503, {"database": "failing"})
            else:
                self._send(200, {"database": "ok", "version": "12.4.0", "commit": "abcdef1234"})
            return
        if not self._authorized():
            self._send(401, UNAUTHORIZED)
            return
        body = self._body() if method in ("POST", "PUT") else None
        with self.state.lock:
            if path.startswith(("/api/v1/provisioning/", "/api/alertmanager/")):
                unlocked = "X-Disable-Provenance" in self.headers
                if method != "GET":
                    self.state.provenance.append((method, path, unlocked))
                status, answer = self._alerting(method, path, self.path, body, unlocked)
            else:
                status, answer = self._dispatch(method, path, body)
        self._send(status, answer)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _dispatch(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "datasources"]:
            if len(parts) == 2 and method == "POST":
                return self._create_datasource(body)
            if len(parts) == 4 and parts[2] == "uid":
                return self._datasource_by_uid(method, parts[3], body)
        if parts[:2] == ["api", "folders"]:
            if len(parts) == 2 and method == "POST":
                return self._create_folder(body)
            if len(parts) == 3 and method == "GET":
                folder = self.state.folders.get(parts[2])
                if folder is None:
                    return 404, {"status": "not-found", "message": "folder not found"}
                return 200, folder
        if path == "/api/dashboards/db" and method == "POST":
            return self._save_dashboard(body)
        if parts[:3] == ["api", "dashboards", "uid"] and len(parts) == 4 and method == "GET":
            record = self.state.dashboards.get(parts[3])
            if record is None:
                return 404, {"message": "Dashboard not found", "status": "not-found"}
            meta = {
                "type": "db",
                "slug": record["slug"],
                "url": record["url"],
                "folderUid": record["folderUid"],
                "provisioned": False,
                "version": record["dashboard"]["version"],
            }
            return 200, {"dashboard": copy.deepcopy(record["dashboard"]), "meta": meta}
        return 404, {"message": "Not found"}

    # -- data sources -----------------------------------------------------------------------

    def _dto(self, ds: dict[str, Any]) -> dict[str, Any]:
        dto = {k: v for k, v in ds.items() if k != "secureJsonData"}
        dto["secureJsonFields"] = dict.fromkeys(ds.get("secureJsonData") or {}, True)
        return dto

    def _create_datasource(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("type") or not body.get("access"):
            return 400, {"message": "bad request data", "traceID": ""}
        uid = body.get("uid") or f"ds{next(self.state.ids)}"
        if not UID.match(uid):
            return 400, {"message": "bad request data", "traceID": ""}
        if any(ds["name"] == body.get("name") for ds in self.state.datasources.values()):
            return 409, {"message": "data source with the same name already exists", "traceID": ""}
        if uid in self.state.datasources:
            return 409, {"message": "data source with the same uid already exists", "traceID": ""}
        ds = {
            "id": next(self.state.ids),
            "uid": uid,
            "orgId": 1,
            "version": 1,
            "readOnly": False,
            "user": "",
            "database": "",
            "basicAuth": False,
            "isDefault": False,
            "jsonData": {},
            **body,
        }
        self.state.datasources[uid] = ds
        return 200, {
            "datasource": self._dto(ds),
            "id": ds["id"],
            "message": "Datasource added",
            "name": ds["name"],
        }

    def _datasource_by_uid(self, method: str, uid: str, body: Any) -> tuple[int, Any]:
        ds = self.state.datasources.get(uid)
        if ds is None:
            return 404, {"message": "Data source not found"}
        if method == "GET":
            return 200, self._dto(ds)
        if method != "PUT":
            return 405, {"message": "Method not allowed"}
        if ds["readOnly"]:
            return 403, {"message": "Cannot update read-only data source"}
        if not isinstance(body, dict) or not body.get("type") or not body.get("access"):
            return 400, {"message": "bad request data", "traceID": ""}
        secrets = {**(ds.get("secureJsonData") or {}), **(body.get("secureJsonData") or {})}
        updated = {
            "id": ds["id"],
            "orgId": 1,
            "readOnly": False,
            "user": "",
            "database": "",
            "basicAuth": False,
            "isDefault": False,
            "jsonData": {},
            **body,
            "uid": uid,
            "version": ds["version"] + 1,
            "secureJsonData": secrets,
        }
        self.state.datasources[uid] = updated
        return 200, {
            "datasource": self._dto(updated),
            "id": updated["id"],
            "message": "Datasource updated",
            "name": updated["name"],
        }

    # -- folders and dashboards -------------------------------------------------------------

    def _create_folder(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("title"):
            return 400, {"message": "bad request data"}
        uid = body.get("uid") or f"f{next(self.state.ids)}"
        if uid in self.state.folders or uid in self.state.dashboards:
            return 409, {"message": "a folder/dashboard with the same uid already exists"}
        slug = re.sub(r"[^a-z0-9]+", "-", body["title"].lower()).strip("-")
        folder = {
            "id": next(self.state.ids),
            "uid": uid,
            "orgId": 1,
            "title": body["title"],
            "url": f"/dashboards/f/{uid}/{slug}",
            "version": 1,
        }
        self.state.folders[uid] = folder
        return 200, folder

    def _save_dashboard(self, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "bad request data"}
        dashboard = copy.deepcopy(body["dashboard"])
        title = str(dashboard.get("title") or "").strip()
        if not title:
            return 400, {"message": "Dashboard title cannot be empty", "status": "empty-name"}
        uid = dashboard.get("uid") or f"d{next(self.state.ids)}"
        if not UID.match(uid):
            return 400, {"message": "uid contains illegal characters"}
        if len(body.get("message") or "") > 500:
            return 400, {"message": "message too long, max 500 characters"}
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.state.folders:
            return 400, {"message": "folder not found"}
        existing = self.state.dashboards.get(uid)
        stale = (
            existing is not None and dashboard.get("version") != existing["dashboard"]["version"]
        )
        if stale and not body.get("overwrite"):
            return 412, {
                "message": "The dashboard has been changed by someone else",
                "status": "version-mismatch",
            }
        version = existing["dashboard"]["version"] + 1 if existing else 1
        dashboard_id = existing["dashboard"]["id"] if existing else next(self.state.ids)
        dashboard.update(id=dashboard_id, uid=uid, version=version)
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        url = f"/d/{uid}/{slug}"
        self.state.dashboards[uid] = {
            "dashboard": dashboard,
            "folderUid": folder_uid,
            "slug": slug,
            "url": url,
            "message": body.get("message"),
        }
        return 200, {
            "id": dashboard_id,
            "uid": uid,
            "url": url,
            "status": "success",
            "version": version,
            "slug": slug,
            "folderUid": folder_uid,
        }

    # -- alerting provisioning ---------------------------------------------------------------

    def _alerting(
        self, method: str, path: str, full: str, body: Any, unlocked: bool
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")[3:]  # after api/v1/provisioning
        if path == "/api/alertmanager/grafana/config/api/v1/receivers/test" and method == "POST":
            return self._test_receiver(body)
        if len(parts) == 4 and parts[0] == "folder" and parts[2] == "rule-groups":
            key = (parts[1], parts[3])
            if method == "GET":
                group = self.state.rule_groups.get(key)
                if group is None:
                    return 404, {
                        "statusCode": 404,
                        "messageId": "alerting.alert-rule.notFound",
                        "message": "NotFound",
                        "traceID": "",
                    }
                rules = [{k: v for k, v in r.items() if k != "provenance"} for r in group["rules"]]
                return 200, {
                    "title": key[1],
                    "folderUid": key[0],
                    "interval": group["interval"],
                    "rules": copy.deepcopy(rules),
                }
            if method == "PUT":
                return self._put_group(key, body, unlocked)
        if parts == ["contact-points"]:
            if method == "GET":
                name = urllib.parse.parse_qs(urllib.parse.urlsplit(full).query).get("name")
                points = [
                    self._redacted(cp)
                    for cp in self.state.contact_points.values()
                    if not name or cp["name"] == name[0]
                ]
                return 200, sorted(points, key=lambda cp: (cp["name"], cp["uid"]))
            if method == "POST":
                return self._save_contact_point(None, body, unlocked)
        if len(parts) == 2 and parts[0] == "contact-points" and method == "PUT":
            return self._save_contact_point(parts[1], body, unlocked)
        if parts == ["policies"]:
            if method == "GET":
                return 200, copy.deepcopy(self.state.policies)
            if method == "PUT":
                return self._put_policies(body, unlocked)
        return 404, {"message": "Not found"}

    def _rule_problem(self, rule: Any) -> str | None:
        if not isinstance(rule, dict):
            return "invalid alert rule: not an object"
        if not rule.get("title"):
            return "invalid alert rule: title is empty"
        if not rule.get("condition"):
            return "invalid alert rule: condition is required"
        if not rule.get("data"):
            return "invalid alert rule: no queries or expressions are found"
        if rule.get("noDataState") not in NODATA_STATES:
            return f"invalid alert rule: unknown NoData state option {rule.get('noDataState')}"
        if rule.get("execErrState") not in ERROR_STATES:
            return f"invalid alert rule: unknown Error state option {rule.get('execErrState')}"
        if (
            not isinstance(rule.get("for", "0s"), str)
            or prometheus_duration(rule.get("for", "0s")) is None
        ):
            return "invalid alert rule: invalid duration for 'for'"
        if rule.get("uid") and not UID.match(rule["uid"]):
            return "invalid alert rule: cannot create rule with UID: UID is invalid"
        for query in rule["data"]:
            span = query.get("relativeTimeRange") or {}
            is_expression = query.get("datasourceUid") in ("__expr__", "-100")
            if not is_expression and not span.get("from", 0) > span.get("to", 0):
                return "relative time range invalid"
        return None

    def _put_group(self, key: tuple[str, str], body: Any, unlocked: bool) -> tuple[int, Any]:
        if not isinstance(body, dict):
            return 400, {"message": "bad request data", "traceID": ""}
        interval = body.get("interval")
        if not isinstance(interval, int) or interval <= 0 or interval % 10:
            return 400, {
                "message": f"invalid alert rule: interval ({interval}s) should be non-zero and "
                "divided exactly by scheduler interval: 10",
                "traceID": "",
            }
        stored: list[dict[str, Any]] = []
        for rule in body.get("rules") or []:
            if problem := self._rule_problem(rule):
                return 400, {"message": problem, "traceID": ""}
            normal = copy.deepcopy(rule)
            normal["for"] = prometheus_duration(rule.get("for", "0s"))
            for query in normal["data"]:
                model = query["model"]
                model["intervalMs"] = model.get("intervalMs") or 1000
                model["maxDataPoints"] = model.get("maxDataPoints") or 43200
                query["model"] = dict(sorted(model.items()))
            normal.update(
                uid=rule.get("uid") or f"r{next(self.state.ids)}",
                id=next(self.state.ids),
                orgID=1,
                folderUID=key[0],
                ruleGroup=key[1],
                updated="2026-12-02T12:00:00.000000000Z",
                provenance="" if unlocked else "api",
            )
            normal.setdefault("notification_settings", None)
            normal.setdefault("record", None)
            normal.setdefault("isPaused", False)
            normal.setdefault("keep_firing_for", "0s")
            for empty in ("labels", "annotations"):
                if not normal.get(empty):
                    normal.pop(empty, None)
            stored.append(normal)
        self.state.rule_groups[key] = {"interval": interval, "rules": stored}
        return 200, body

    def _redacted(self, point: dict[str, Any]) -> dict[str, Any]:
        shown = copy.deepcopy({k: v for k, v in point.items() if k != "provenance"})
        for key in SECURE.get(point["type"], set()) & set(shown["settings"]):
            shown["settings"][key] = "[REDACTED]"
        return shown

    def _save_contact_point(self, uid: str | None, body: Any, unlocked: bool) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("name") or body.get("type") not in REQUIRED:
            return 400, {"message": "invalid object specification: name and type", "traceID": ""}
        settings = dict(body.get("settings") or {})
        existing = self.state.contact_points.get(uid or "")
        if uid is not None and existing is None:
            return 404, {
                "message": f"object not found: contact point with uid '{uid}' not found",
                "traceID": "",
            }
        if existing is not None:
            for key, value in list(settings.items()):
                if value == "[REDACTED]":
                    settings[key] = existing["settings"].get(key)
        missing = [k for k in REQUIRED[body["type"]] if not settings.get(k)]
        if missing:
            problem = f"{body['type']}: {missing[0]} is required"
            return 400, {"message": f"invalid object specification: {problem}", "traceID": ""}
        new_uid = uid or body.get("uid") or f"c{next(self.state.ids)}"
        if uid is None and new_uid in self.state.contact_points:
            return 500, {
                "message": "[alerting.notifications.contact-points.uidInUse] uid in use",
                "traceID": "",
            }
        point = {
            "uid": new_uid,
            "name": body["name"],
            "type": body["type"],
            "settings": settings,
            "disableResolveMessage": bool(body.get("disableResolveMessage")),
            "provenance": "" if unlocked else "api",
        }
        self.state.contact_points[new_uid] = point
        if uid is None:
            return 202, self._redacted(point)
        return 202, {"message": "contactpoint updated"}

    def _receivers(self, route: dict[str, Any]) -> list[str]:
        found = [route.get("receiver", "")]
        for child in route.get("routes") or []:
            found += self._receivers(child)
        return [r for r in found if r]

    def _put_policies(self, body: Any, unlocked: bool) -> tuple[int, Any]:
        if not isinstance(body, dict) or not body.get("receiver"):
            return 400, {"message": "invalid object specification: root route", "traceID": ""}
        names = {cp["name"] for cp in self.state.contact_points.values()}
        names.add("grafana-default-email")
        for receiver in self._receivers(body):
            if receiver not in names:
                return 400, {
                    "message": f"invalid object specification: receiver '{receiver}' does not "
                    "exist",
                    "traceID": "",
                }
        tree = copy.deepcopy(body)
        tree.pop("provenance", None)
        if not unlocked:
            tree["provenance"] = "api"
        self.state.policies = tree
        return 202, {"message": "policies updated"}

    def _test_receiver(self, body: Any) -> tuple[int, Any]:
        receivers = (body or {}).get("receivers") or []
        if not receivers:
            return 400, {}
        self.state.tested.append(copy.deepcopy(body))
        answers = []
        ok = True
        for receiver in receivers:
            configs = []
            for config in receiver.get("grafana_managed_receiver_configs") or []:
                missing = [
                    k
                    for k in REQUIRED.get(config.get("type"), ("?",))
                    if not (config.get("settings") or {}).get(k)
                ]
                status = {"name": config.get("name"), "uid": "x", "status": "ok"}
                if missing:
                    status.update(status="failed", error=f"{missing[0]} is required")
                    ok = False
                configs.append(status)
            answers.append({"name": receiver["name"], "grafana_managed_receiver_configs": configs})
        answer = {
            "alert": {"labels": {"alertname": "TestAlert"}, "annotations": {}},
            "receivers": answers,
            "notified_at": "2026-12-02T12:00:00Z",
        }
        return (200 if ok else 400), answer
