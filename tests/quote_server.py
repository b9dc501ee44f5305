"""A local HTTP server that answers like a quote provider, from recorded bodies.

Tests point a provider's ``base_url`` at it. ``serve(path, body, ...)`` sets the answer
for a path (the query string is ignored: one symbol per path or per test), and
``requests`` records what was asked, headers included, so a test can check that a key
went into a header and that no call was made beyond a quota.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

QUOTES = Path(__file__).resolve().parent / "fixtures" / "quotes"

CONTENT_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".html": "text/html; charset=utf-8",
}


@dataclass
class Answer:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class QuoteServer:
    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
                server.requests.append(Request(url.path, query, dict(self.headers)))
                answer = server.answers.get(url.path) or Answer(b"no such path", 599, "text/plain")
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def serve(
        self,
        path: str,
        fixture: str | bytes,
        status: int = 200,
        content_type: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``path`` with a fixture file's bytes (by name) or with ``fixture`` bytes."""
        if isinstance(fixture, str):
            body = (QUOTES / fixture).read_bytes()
            content_type = content_type or CONTENT_TYPES[Path(fixture).suffix]
        else:
            body = fixture
        self.answers[path] = Answer(body, status, content_type or "application/json", headers or {})

    def asked(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
