"""A fake Grafana for tests, built from the documented HTTP contract (Grafana 11-13).

Real HTTP on loopback, state kept across calls, and the documented status codes and
bodies: 401 without valid credentials (except ``/api/health``), 503 while "starting",
400 ``bad request data`` without ``type``/``access``, 409 for a duplicate data source
name or uid, 403 for a read-only (file-provisioned) data source, 404 ``Data source not
found`` / ``folder not found``, 409 for a duplicate folder uid, 400 ``folder not found``
for a dashboard in an unknown folder, 400 ``empty-name``, uid and message limits, and
412 ``version-mismatch`` when saving over a changed dashboard without ``overwrite``.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import re
import threading
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


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.datasources: dict[str, dict[str, Any]] = {}
        self.folders: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {dashboard, folderUid, ...}
        self.requests: list[tuple[str, str]] = []
        self.starting = False
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
