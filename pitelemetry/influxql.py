"""A minimal InfluxQL client for InfluxDB 1.x's ``/query`` (``check``, ``provision``)."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from typing import Any

from pitelemetry.writer import RetryableError, classify, exchange

# What our queries (check, provision, backfill) read back is small; a server answering
# with gigabytes must not fill the Pi's memory.
MAX_RESULT_BYTES = 32 * 1024 * 1024


def ident(name: str) -> str:
    """``name`` as a quoted InfluxQL identifier.

    InfluxQL's scanner reads ``\\``, ``\"`` and ``\n`` inside quotes and nothing else,
    so a name of any characters becomes exactly one identifier: it cannot end the quotes
    and add a statement. Every identifier in every query we generate (dashboards,
    provisioning, backfill) goes through here, or :func:`literal` for string values."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def literal(value: str) -> str:
    """``value`` as an InfluxQL string literal (single quotes; see :func:`ident`)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def query(
    url: str,
    statement: str,
    *,
    database: str = "",
    username: str = "",
    password: str = "",
    timeout: float = 10.0,
    epoch: str = "",
) -> list[dict[str, Any]]:
    """Run ``statement`` (POST, so it may change things) and return its ``results``.

    Raises a :class:`~pitelemetry.writer.WriteError` subclass for HTTP errors and
    ``ValueError`` when a statement itself failed."""
    parts = urllib.parse.urlsplit(url)
    params = {"q": statement}
    if database:
        params["db"] = database
    if epoch:
        params["epoch"] = epoch
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if username:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname or "127.0.0.1", parts.port or 8086, timeout=timeout)
    try:
        response, data = exchange(
            conn,
            "POST",
            parts.path.rstrip("/") + "/query",
            urllib.parse.urlencode(params),
            headers,
            deadline=timeout,
            max_bytes=MAX_RESULT_BYTES,
        )
        body = data.decode("utf-8", "replace")
        if len(data) >= MAX_RESULT_BYTES:
            raise RetryableError(f"the answer from {url} is over {MAX_RESULT_BYTES} bytes")
    except (OSError, http.client.HTTPException) as exc:
        raise RetryableError(f"cannot reach InfluxDB at {url}: {exc}") from None
    finally:
        conn.close()
    error = classify(response.status, body, response.getheader("Retry-After"), 0)
    if error is not None:
        raise error
    results: list[dict[str, Any]] = json.loads(body).get("results", [])
    for result in results:
        if "error" in result:
            raise ValueError(f"InfluxDB: {result['error']} (in {statement!r})")
    return results


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten one statement's series into dicts of column -> value, tags included."""
    out = []
    for series in result.get("series", []):
        for values in series.get("values", []):
            row = dict(zip(series["columns"], values, strict=True))
            row.update(series.get("tags") or {})
            row["_measurement"] = series.get("name")
            out.append(row)
    return out
