"""A minimal InfluxQL client for InfluxDB 1.x's ``/query`` (``check``, ``provision``)."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

from pitelemetry.transport import Transport, TransportError, one_shot
from pitelemetry.writer import RetryableError, classify, endpoint

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
    transport: Transport | None = None,
) -> list[dict[str, Any]]:
    """Run ``statement`` (POST, so it may change things) and return its ``results``.

    Raises a :class:`~pitelemetry.writer.WriteError` subclass for HTTP errors and
    ``ValueError`` when a statement itself failed."""
    params = {"q": statement}
    if database:
        params["db"] = database
    if epoch:
        params["epoch"] = epoch
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if username:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    with one_shot(transport) as http:
        try:
            answer = http.request(
                "POST",
                endpoint(url, "/query"),
                urllib.parse.urlencode(params).encode(),
                headers,
                timeout=timeout,
                max_bytes=MAX_RESULT_BYTES,
            )
        except TransportError as exc:
            raise RetryableError(f"cannot reach InfluxDB at {url}: {exc}") from None
    if answer.truncated and len(answer.body) >= MAX_RESULT_BYTES:
        raise RetryableError(f"the answer from {url} is over {MAX_RESULT_BYTES} bytes")
    error = classify(answer.status, answer.text, answer.header("Retry-After"), 0)
    if error is not None:
        raise error
    try:
        results: list[dict[str, Any]] = answer.json().get("results", [])
    except (ValueError, AttributeError):
        raise RetryableError(
            f"{url} answered /query with something other than InfluxDB's JSON"
        ) from None
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
