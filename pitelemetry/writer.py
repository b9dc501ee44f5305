"""Writers: send a batch of line protocol to InfluxDB and say, by exception type, what
became of it.

* :class:`V1Writer` posts to ``/write`` (InfluxDB 1.x, and 3.x's v1 compatibility)
  through :mod:`pitelemetry.transport` (one kept-alive ``http.client`` connection): no
  third-party HTTP stack on the hot path.
* :class:`V2Writer` uses ``influxdb-client``'s ``/api/v2/write`` (InfluxDB 2.x and 3.x),
  imported only when configured: it costs about 17 MB of memory.
* :class:`AutoWriter` asks ``GET /ping`` for ``X-Influxdb-Version`` and picks one.

Low-level errors are translated here, at the boundary, into the small tree under
:class:`WriteError`; callers branch on the type, never on message text.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Protocol

from pitelemetry.transport import HttpTransport, Transport, TransportError, describe, one_shot

if TYPE_CHECKING:
    from pitelemetry.config import InfluxConfig

log = logging.getLogger(__name__)


class WriteError(Exception):
    """The batch was not (entirely) written. Subclasses say what to do with it."""


class RetryableError(WriteError):
    """Nothing was written; send the same batch again later (connection refused,
    timeout, 5xx, 429). ``retry_after`` is the server's ``Retry-After`` in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(RetryableError):
    """401/403: credentials are wrong or lack permission. Keep the batch; a person must
    fix the config, so this is reported loudly, once."""


class DatabaseNotFoundError(RetryableError):
    """404: the database or bucket does not exist yet (``pitelemetry provision``)."""


class NotInfluxDBError(RetryableError):
    """A 2xx answer that InfluxDB would not give (no ``204``, no ``X-Influxdb-Version``):
    the URL reaches some other web server. Nothing counts as written; the batch is kept
    and a person must fix ``[influxdb] url``."""


class TooLargeError(WriteError):
    """413: the request body is over the server's limit; split the batch and resend."""


class RejectedError(WriteError):
    """400/422: some or all points were refused for good (bad syntax, field type
    conflict, outside retention). ``dropped`` of them are gone, the rest were written;
    resending would only duplicate the accepted ones or fail again."""

    def __init__(self, message: str, dropped: int) -> None:
        super().__init__(message)
        self.dropped = dropped


class Writer(Protocol):
    """Writes one batch; raises a :class:`WriteError` subclass when not all was written."""

    def write(self, lines: list[str]) -> None:
        """Write lines of line protocol (no newlines inside them)."""

    def write_body(self, body: bytes, count: int) -> None:
        """Write ``count`` lines already joined and encoded (a spooled record)."""

    def close(self) -> None: ...


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; the caller's own backoff applies


def classify(
    status: int,
    body: str,
    retry_after: str | None,
    count: int,
    *,
    influx_version: str | None = "",
) -> WriteError | None:
    """Map an HTTP answer to the error it means, or ``None`` for success.

    ``influx_version`` is the answer's ``X-Influxdb-Version`` header, ``None`` when it
    had none. A write is acknowledged only by InfluxDB's own answer: ``204``, or another
    2xx that carries that header; any other 2xx comes from something that is not
    InfluxDB (a web server at a mistyped URL) and is :class:`NotInfluxDBError`."""
    if 200 <= status < 300:
        if status == 204 or influx_version is not None:
            return None
        return NotInfluxDBError(
            f"the server answered {status} without InfluxDB's X-Influxdb-Version header "
            f"({_error_message(body)[:60]!r}): it is not InfluxDB; check [influxdb] url"
        )
    message = _error_message(body) or f"HTTP {status}"
    if status in (401, 403):
        return AuthError(f"InfluxDB refused the credentials ({status}): {message}")
    if status == 404:
        return DatabaseNotFoundError(f"{message} (run `pitelemetry provision` to create it)")
    if status == 413:
        return TooLargeError(f"batch of {count} points is too large for the server: {message}")
    if status == 429 or status >= 500:
        return RetryableError(f"InfluxDB answered {status}: {message}", _retry_after(retry_after))
    if status in (400, 422):
        return RejectedError(message, _dropped(message, count))
    return RetryableError(f"unexpected answer {status} from InfluxDB: {message}")


_DROPPED = re.compile(r"dropped=(\d+)")


def _dropped(message: str, count: int) -> int:
    """Points refused by a 400/422. InfluxDB 1.x reports type conflicts and retention
    as ``dropped=N`` but unparsable lines only as ``unable to parse '...'``."""
    found = _DROPPED.search(message)
    if not found and "partial write" not in message:
        return count  # a whole-batch rejection
    dropped = int(found.group(1)) if found else 0
    return min(count, dropped + message.count("unable to parse"))


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or body)[:500]
    return body.strip()[:500]


class V1Writer:
    """``POST /write?db=&rp=&precision=ns`` with gzip and basic auth, over ``transport``
    (one kept-alive connection by default)."""

    def __init__(
        self,
        url: str,
        *,
        database: str,
        retention_policy: str = "",
        username: str = "",
        password: str = "",
        timeout: float = 10.0,
        use_gzip: bool = True,
        transport: Transport | None = None,
    ) -> None:
        self._where = urllib.parse.urlsplit(endpoint(url, "")).netloc
        query = {"db": database, "precision": "ns"}
        if retention_policy:
            query["rp"] = retention_policy
        self._url = endpoint(url, "/write") + "?" + urllib.parse.urlencode(query)
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if use_gzip:
            self._headers["Content-Encoding"] = "gzip"
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._gzip = use_gzip
        self._timeout = timeout
        self._transport = transport or HttpTransport()

    def write(self, lines: list[str]) -> None:
        self.write_body(("\n".join(lines) + "\n").encode("utf-8", "replace"), len(lines))

    def write_body(self, body: bytes, count: int) -> None:
        if self._gzip:
            body = gzip.compress(body, compresslevel=1, mtime=0)
        try:
            answer = self._transport.request(
                "POST", self._url, body, self._headers, timeout=self._timeout
            )
        except TransportError as exc:
            raise RetryableError(f"cannot reach InfluxDB at {self._where}: {exc}") from None
        error = classify(
            answer.status,
            answer.text,
            answer.header("Retry-After"),
            count,
            influx_version=answer.header("X-Influxdb-Version"),
        )
        if error is not None:
            raise error

    def close(self) -> None:
        self._transport.close()


class V2Writer:
    """``/api/v2/write`` through ``influxdb-client`` (org, bucket, token)."""

    def __init__(
        self,
        url: str,
        *,
        org: str,
        bucket: str,
        token: str,
        timeout: float = 10.0,
        use_gzip: bool = True,
    ) -> None:
        # Imported here: influxdb-client costs ~17 MB, paid only by v2 users.
        from influxdb_client.client.influxdb_client import InfluxDBClient  # noqa: PLC0415
        from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: PLC0415
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415

        self._client = InfluxDBClient(
            url=url,
            token=token or "none",
            org=org or "-",
            timeout=int(timeout * 1000),
            enable_gzip=use_gzip,
            retries=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org or "-"
        self._precision: Any = WritePrecision.NS  # a str constant the stubs call a class

    def write(self, lines: list[str]) -> None:
        self.write_body(("\n".join(lines) + "\n").encode("utf-8", "replace"), len(lines))

    def write_body(self, body: bytes, count: int) -> None:
        from influxdb_client.rest import ApiException  # noqa: PLC0415
        from urllib3.exceptions import HTTPError  # noqa: PLC0415

        try:
            self._api.write(
                bucket=self._bucket, org=self._org, record=body, write_precision=self._precision
            )
        except ApiException as exc:
            headers: Any = exc.headers or {}
            error = classify(
                int(exc.status or 0),
                str(exc.body or exc.reason or ""),
                headers.get("Retry-After"),
                count,
            )
            raise (error or RetryableError(str(exc))) from None
        except (HTTPError, OSError) as exc:
            raise RetryableError(f"cannot reach InfluxDB: {describe(exc)}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def endpoint(url: str, path: str) -> str:
    """``path`` under the server's base URL (``http://h:8086/influx`` + ``/ping``). Without
    a port, ``http`` means InfluxDB's 8086 and ``https`` 443 (a proxy in front of it)."""
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 8086
    netloc = parts.netloc if parts.port or not parts.hostname else f"{parts.netloc}:{default}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + path, "", ""))


def ping(url: str, timeout: float = 5.0, *, transport: Transport | None = None) -> str:
    """``GET /ping``; returns ``X-Influxdb-Version`` ("" when absent). Raises
    :class:`RetryableError` when the server cannot be reached, and
    :class:`NotInfluxDBError` when it answers 2xx as InfluxDB never does (every InfluxDB,
    and VictoriaMetrics, answers ``204``, or sends the version header)."""
    with one_shot(transport) as http:
        try:
            answer = http.request("GET", endpoint(url, "/ping"), timeout=timeout)
        except TransportError as exc:
            raise RetryableError(f"cannot reach InfluxDB at {url}: {exc}") from None
    if answer.status >= 500:
        raise RetryableError(f"InfluxDB at {url} answered /ping with {answer.status}")
    version = answer.header("X-Influxdb-Version")
    if 200 <= answer.status < 300 and answer.status != 204 and version is None:
        raise NotInfluxDBError(
            f"{url} answered /ping with {answer.status} and no X-Influxdb-Version "
            "header: it is not InfluxDB; check [influxdb] url"
        )
    return version or ""


def api_for_version(version: str) -> str:
    """``"1.8.10"`` -> ``"v1"``; ``"v2.7.1"``, ``"2.7"``, ``"3.0.1"`` -> ``"v2"``.

    A server that sends no version (VictoriaMetrics, proxies) gets the 1.x ``/write``,
    which every InfluxDB-compatible server implements."""
    number = version.lstrip("vV")
    return "v2" if number[:1] in ("2", "3") else "v1"


def make_writer(config: InfluxConfig, api: str, transport: Transport | None = None) -> Writer:
    """The writer for ``api`` (``"v1"`` or ``"v2"``) built from ``[influxdb]``. The v2
    writer brings its own HTTP stack (``influxdb-client``) and ignores ``transport``."""
    if api == "v2":
        token = config.token_file.reveal() if config.token_file else ""
        return V2Writer(
            config.url,
            org=config.org,
            bucket=config.bucket or config.database,
            token=token,
            timeout=config.timeout,
            use_gzip=config.use_gzip,
        )
    password = config.password_file.reveal() if config.password_file else ""
    return V1Writer(
        config.url,
        database=config.database,
        retention_policy=config.retention_policy,
        username=config.username,
        password=password,
        timeout=config.timeout,
        use_gzip=config.use_gzip,
        transport=transport,
    )


class AutoWriter:
    """Resolves ``api = "auto"`` on the first write (InfluxDB may be down at start)."""

    def __init__(self, config: InfluxConfig, *, transport: Transport | None = None) -> None:
        self._config = config
        self._transport = transport or HttpTransport()
        self._writer: Writer | None = None
        self.api: str = "" if config.api == "auto" else config.api

    def write(self, lines: list[str]) -> None:
        self._resolve().write(lines)

    def write_body(self, body: bytes, count: int) -> None:
        self._resolve().write_body(body, count)

    def _resolve(self) -> Writer:
        if self._writer is None:
            if not self.api:
                version = ping(self._config.url, self._config.timeout, transport=self._transport)
                self.api = api_for_version(version)
                log.info(
                    "InfluxDB at %s is version %s; writing with the %s API",
                    self._config.url,
                    version or "unknown",
                    self.api,
                )
            self._writer = make_writer(self._config, self.api, self._transport)
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._transport.close()


def wait_for(
    url: str, timeout: float, interval: float = 0.2, *, transport: Transport | None = None
) -> str:
    """Ping until InfluxDB answers or ``timeout`` passes; returns its version."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ping(url, min(5.0, timeout), transport=transport)
        except RetryableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval)
