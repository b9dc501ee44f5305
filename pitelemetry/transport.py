"""One HTTP transport for every request pitelemetry makes to InfluxDB and Grafana.

The 1.x writer, ``/ping``, the InfluxQL client, InfluxDB 2.x/3.x management and the
Grafana client all send through a :class:`Transport`, given as a keyword argument that
defaults to :class:`HttpTransport`. A test (or a caller that wants to see the traffic)
passes its own; nothing above this module touches sockets or ``http.client``.

The contract is small: one request, one :class:`Answer` (status, headers, at most
``max_bytes`` of body), or :class:`TransportError` when there is no answer at all
(refused, unresolvable, cut off, or not complete within ``timeout`` seconds). What an
answer *means* (written, rejected, retry later) is decided by the caller, never here.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# An answer to a write or a ping is short (InfluxDB's errors are a line of JSON); what is
# beyond this is not read, so a server answering with gigabytes cannot fill the memory.
MAX_ANSWER_BYTES = 64 * 1024


class TransportError(Exception):
    """No answer: the connection was refused or cut, the name did not resolve, or the
    answer did not complete in time. The message says which, in a few words."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer. ``headers`` has lower-case names; ``body`` is at most the
    request's ``max_bytes`` (``truncated`` says the server had more)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    truncated: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not."""
        return json.loads(self.body)


class Transport(Protocol):
    """Sends one request and returns its answer; raises :class:`TransportError` when
    there is none. Safe to call from several threads."""

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
        max_bytes: int | None = MAX_ANSWER_BYTES,
    ) -> Answer: ...

    def close(self) -> None:
        """Close kept-alive connections; the transport stays usable."""


class _Deadlines:
    """Abandons HTTP exchanges that have not finished in time.

    A socket timeout only bounds each read: a server (or proxy) that trickles its
    answer a byte every few seconds would hold the writer for as long as it likes. One
    watcher thread (started on first use, shared by every request) shuts an exchange's
    socket down at its deadline, which ends the blocked read at once. Arming and
    disarming cost a lock and a dict operation, not a thread per request."""

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, http.client.HTTPConnection, list[bool]]] = {}
        self._next = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, conn: http.client.HTTPConnection, seconds: float) -> tuple[int, list[bool]]:
        expired = [False]
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="deadlines", daemon=True)
                self._thread.start()
            self._next += 1
            self._armed[self._next] = (time.monotonic() + seconds, conn, expired)
            self._changed.notify()
            return self._next, expired

    def disarm(self, token: int) -> None:
        with self._changed:
            self._armed.pop(token, None)

    def _watch(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for token, (deadline, conn, expired) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[token]
                        expired[0] = True
                        sock = conn.sock
                        if sock is not None:
                            with contextlib.suppress(OSError):
                                sock.shutdown(socket.SHUT_RDWR)
                soonest = min((d for d, _, _ in self._armed.values()), default=now + 3600)
                self._changed.wait(max(0.01, soonest - now))


_DEADLINES = _Deadlines()


def describe(exc: BaseException) -> str:
    """A few words for a failed connection: "connection refused", "timed out"..."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return str(exc) if str(exc) and str(exc) != "timed out" else "timed out"
    if isinstance(exc, socket.gaierror):
        return f"host name not found ({exc.strerror})"
    return str(exc) or type(exc).__name__


class HttpTransport:
    """``http.client`` with one kept-alive connection per server (more only while
    requests overlap), each exchange bounded by a deadline as a whole. HTTPS verifies
    certificates against the system's store."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float,
        max_bytes: int | None = MAX_ANSWER_BYTES,
    ) -> Answer:
        parts = urllib.parse.urlsplit(url)
        https = parts.scheme == "https"
        origin = (parts.scheme, parts.hostname or "127.0.0.1", parts.port or (443 if https else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            idle = self._idle.get(origin)
            conn = idle.pop() if idle else None
        if conn is None:
            cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
            conn = cls(origin[1], origin[2], timeout=timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        token, expired = _DEADLINES.arm(conn, timeout)
        try:
            conn.request(method, target, body, dict(headers or {}))
            response = conn.getresponse()
            data = response.read(max_bytes) if max_bytes is not None else response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            if expired[0]:
                raise TransportError(f"no complete answer within {timeout:g}s") from None
            raise TransportError(describe(exc)) from None
        finally:
            _DEADLINES.disarm(token)
        complete = response.isclosed() and not expired[0]
        if complete:  # read to its end: the connection may carry the next request
            with self._lock:
                self._idle.setdefault(origin, []).append(conn)
        else:  # never reused mid-answer, nor after its socket was shut at the deadline
            conn.close()
        headers_out = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers_out, data, truncated=not complete)

    def close(self) -> None:
        with self._lock:
            conns = [conn for idle in self._idle.values() for conn in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def one_shot(transport: Transport | None) -> contextlib.AbstractContextManager[Transport]:
    """``transport``, or a fresh :class:`HttpTransport` closed when the block ends."""
    if transport is not None:
        return contextlib.nullcontext(transport)
    return contextlib.closing(HttpTransport())
