"""A fake InfluxDB 2.x / 3 Core management API for provisioning tests, built from the
documented endpoints (no 2.x or 3.x server can be installed here):

* 2.x: ``GET /api/v2/orgs?org=``, ``GET|POST /api/v2/buckets``, ``PATCH
  /api/v2/buckets/{id}``, ``GET|POST /api/v2/dbrps``, ``GET|POST /api/v2/tasks``, ``PATCH
  /api/v2/tasks/{id}``; ``Authorization: Token ...``; 401 ``{"code":"unauthorized"}``;
  404 for an unknown organization name; 422 for a duplicate bucket name.
* 3 Core: ``GET /api/v3/configure/database?format=json`` (``[{"iox::database": name}]``)
  and ``POST /api/v3/configure/database`` (``{"db", "retention_period"}``, 409 if it
  exists).
* ``GET /ping`` answers 204 with ``X-Influxdb-Version``.
"""

from __future__ import annotations

import itertools
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "influx-operator-token"


class FakeInflux:
    def __init__(self, version: str = "v2.7.11", org: str = "home") -> None:
        self.version = version
        self.orgs = {org: "0a1b2c3d4e5f6a7b"}
        self.buckets: dict[str, dict[str, Any]] = {}
        self.dbrps: list[dict[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.databases: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.ids = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def answer(self, status: int, body: object = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("X-Influxdb-Version", fake.version)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                fake.requests.append((method, url.path))
                if url.path == "/ping":
                    self.answer(204)
                    return
                if self.headers.get("Authorization") != f"Token {TOKEN}":
                    self.answer(401, {"code": "unauthorized", "message": "unauthorized access"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                self.answer(*fake.route(method, url.path, query, body))

            def do_GET(self) -> None:
                self.handle_any("GET")

            def do_POST(self) -> None:
                self.handle_any("POST")

            def do_PATCH(self) -> None:
                self.handle_any("PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeInflux:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, object]:
        parts = path.strip("/").split("/")
        if path == "/api/v2/orgs":
            org_id = self.orgs.get(query.get("org", ""))
            if org_id is None:
                return 404, {
                    "code": "not found",
                    "message": f'organization name "{query.get("org")}" not found',
                }
            return 200, {"orgs": [{"id": org_id, "name": query["org"]}]}
        if path == "/api/v2/buckets" and method == "GET":
            found = [
                b
                for b in self.buckets.values()
                if b["name"] == query.get("name") and b["orgID"] == query.get("orgID")
            ]
            return 200, {"buckets": found}
        if path == "/api/v2/buckets" and method == "POST":
            if any(b["name"] == body["name"] for b in self.buckets.values()):
                return 422, {
                    "code": "conflict",
                    "message": f"bucket with name {body['name']} already exists",
                }
            bucket = {
                "id": f"b{next(self.ids):015d}",
                "orgID": body["orgID"],
                "name": body["name"],
                "retentionRules": body.get("retentionRules", []),
            }
            self.buckets[bucket["id"]] = bucket
            return 201, bucket
        if parts[:3] == ["api", "v2", "buckets"] and method == "PATCH":
            bucket = self.buckets[parts[3]]
            bucket.update(body)
            return 200, bucket
        if path == "/api/v2/dbrps" and method == "GET":
            return 200, {
                "content": [
                    m
                    for m in self.dbrps
                    if m["orgID"] == query.get("orgID") and m["database"] == query.get("db")
                ]
            }
        if path == "/api/v2/dbrps" and method == "POST":
            if body["bucketID"] not in self.buckets:
                return 404, {"code": "not found", "message": "bucket not found"}
            mapping = {"id": f"d{next(self.ids)}", **body}
            self.dbrps.append(mapping)
            return 201, mapping
        if path == "/api/v2/tasks" and method == "GET":
            return 200, {
                "tasks": [t for t in self.tasks.values() if t["name"] == query.get("name")]
            }
        if path == "/api/v2/tasks" and method == "POST":
            name = body["flux"].split('name: "')[1].split('"')[0]
            task = {"id": f"t{next(self.ids)}", "name": name, **body}
            self.tasks[task["id"]] = task
            return 201, task
        if parts[:3] == ["api", "v2", "tasks"] and method == "PATCH":
            self.tasks[parts[3]].update(body)
            return 200, self.tasks[parts[3]]
        if path == "/api/v3/configure/database" and method == "GET":
            return 200, [{"iox::database": name} for name in self.databases]
        if path == "/api/v3/configure/database" and method == "POST":
            if body["db"] in self.databases:
                return 409, {"error": "attempted to create a resource that already exists"}
            self.databases[body["db"]] = body.get("retention_period", "")
            return 200, None
        return 404, {"code": "not found", "message": "path not found"}
