"""A small typed client for the Grafana HTTP API endpoints provisioning needs.

Health, data sources, folders, dashboards, and alerting's provisioning API (rule
groups, contact points, the notification-policy tree, a receiver test), as documented
for Grafana 11 to 13. Alerting writes send ``X-Disable-Provenance``, so what
pitelemetry provisions stays editable in Grafana's UI.
Errors are translated at this boundary into :class:`GrafanaError` subclasses that say
what failed and how to fix it; callers branch on the type and on ``status_text``
(Grafana's own machine-readable ``status``, such as ``version-mismatch``).
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pitelemetry.transport import HttpTransport, Transport, TransportError

if TYPE_CHECKING:
    from pitelemetry.config import GrafanaConfig


# Dashboards are the largest answers (hundreds of KB); a server sending more than this is
# not the Grafana we provision, and is not read into the Pi's memory.
MAX_ANSWER_BYTES = 32 * 1024 * 1024


class GrafanaError(Exception):
    """Grafana refused or failed a request."""

    def __init__(self, message: str, status: int = 0, status_text: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.status_text = status_text


class GrafanaUnreachableError(GrafanaError):
    """No answer, or 503 while Grafana starts."""


class GrafanaAuthError(GrafanaError):
    """401/403: wrong token or password, or not allowed."""


class GrafanaClient:
    def __init__(
        self,
        url: str,
        *,
        token: str = "",
        username: str = "",
        password: str = "",
        timeout: float = 10.0,
        transport: Transport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.transport = transport or HttpTransport()
        self.headers = {"Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif username:
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"

    @classmethod
    def from_config(
        cls, grafana: GrafanaConfig, transport: Transport | None = None
    ) -> GrafanaClient:
        """A client for ``[grafana]``, its secrets read now."""
        return cls(
            grafana.url,
            token=grafana.token_file.reveal() if grafana.token_file else "",
            username=grafana.username,
            password=grafana.password_file.reveal() if grafana.password_file else "",
            timeout=grafana.timeout,
            transport=transport,
        )

    def close(self) -> None:
        """Close the transport's kept-alive connections."""
        self.transport.close()

    def __enter__(self) -> GrafanaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        sent = dict(self.headers, **(headers or {}))
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            answer = self.transport.request(
                method,
                self.url + path,
                data,
                sent,
                timeout=self.timeout,
                max_bytes=MAX_ANSWER_BYTES,
            )
        except TransportError as exc:
            raise GrafanaUnreachableError(
                f"cannot reach Grafana at {self.url}: {exc}; is it running? [grafana] url"
            ) from None
        if answer.truncated:
            raise GrafanaError(
                f"Grafana's answer to {method} {path} is over {MAX_ANSWER_BYTES} bytes",
                answer.status,
            )
        try:
            reply = answer.json() if answer.body else None
        except ValueError:
            reply = {"message": answer.text[:200]}
        status = answer.status
        if status in (401, 403):
            message = reply.get("message", "") if isinstance(reply, dict) else ""
            hint = (
                "check [grafana] token_file (a service-account token) or username/password_file"
                if status == 401
                else "the account lacks permission (it needs the Admin role)"
            )
            raise GrafanaAuthError(
                f"Grafana refused {method} {path} ({status} {message}): {hint}", status
            )
        if status == 503:
            raise GrafanaUnreachableError(f"Grafana at {self.url} is starting (503)", status)
        return status, reply

    def _expect(
        self,
        method: str,
        path: str,
        body: object,
        ok: tuple[int, ...],
        headers: dict[str, str] | None = None,
    ) -> Any:
        status, data = self._request(method, path, body, headers)
        if status not in ok:
            message = data.get("message", "") if isinstance(data, dict) else str(data)
            status_text = data.get("status", "") if isinstance(data, dict) else ""
            raise GrafanaError(
                f"Grafana answered {method} {path} with {status}: {message}", status, status_text
            )
        return data

    # -- health ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        data = self._expect("GET", "/api/health", None, (200,))
        return data if isinstance(data, dict) else {}

    def wait_healthy(self, timeout: float, interval: float = 1.0) -> dict[str, Any]:
        """Poll ``/api/health`` until Grafana answers 200 or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except GrafanaUnreachableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(interval)

    # -- data sources ----------------------------------------------------------------------

    def get_datasource(self, uid: str) -> dict[str, Any] | None:
        status, data = self._request("GET", f"/api/datasources/uid/{uid}")
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise GrafanaError(f"Grafana answered GET datasource {uid} with {status}", status)
        return data

    def create_datasource(self, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = self._expect("POST", "/api/datasources", body, (200,))
        return data

    def update_datasource(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = self._expect("PUT", f"/api/datasources/uid/{uid}", body, (200,))
        return data

    # -- folders and dashboards ------------------------------------------------------------

    def get_folder(self, uid: str) -> dict[str, Any] | None:
        status, data = self._request("GET", f"/api/folders/{uid}")
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise GrafanaError(f"Grafana answered GET folder {uid} with {status}", status)
        return data

    def create_folder(self, uid: str, title: str) -> dict[str, Any]:
        body = {"uid": uid, "title": title}
        data: dict[str, Any] = self._expect("POST", "/api/folders", body, (200,))
        return data

    def get_dashboard(self, uid: str) -> dict[str, Any] | None:
        """``{"dashboard": ..., "meta": ...}`` or ``None``."""
        status, data = self._request("GET", f"/api/dashboards/uid/{uid}")
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise GrafanaError(f"Grafana answered GET dashboard {uid} with {status}", status)
        return data

    def save_dashboard(
        self, dashboard: dict[str, Any], folder_uid: str, message: str, *, overwrite: bool = True
    ) -> dict[str, Any]:
        body = {
            "dashboard": dashboard,
            "folderUid": folder_uid,
            "message": message[:500],
            "overwrite": overwrite,
        }
        data: dict[str, Any] = self._expect("POST", "/api/dashboards/db", body, (200,))
        return data

    # -- alerting provisioning -------------------------------------------------------------

    def get_rule_group(self, folder_uid: str, group: str) -> dict[str, Any] | None:
        path = f"{ALERTING}/folder/{folder_uid}/rule-groups/{group}"
        status, data = self._request("GET", path)
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise GrafanaError(f"Grafana answered GET rule group {group} with {status}", status)
        return data

    def put_rule_group(self, folder_uid: str, group: dict[str, Any]) -> None:
        path = f"{ALERTING}/folder/{folder_uid}/rule-groups/{group['title']}"
        self._expect("PUT", path, group, (200,), UNLOCKED)

    def contact_points(self, name: str = "") -> list[dict[str, Any]]:
        path = f"{ALERTING}/contact-points" + (f"?name={quote(name)}" if name else "")
        data = self._expect("GET", path, None, (200,))
        return data if isinstance(data, list) else []

    def create_contact_point(self, body: dict[str, Any]) -> None:
        self._expect("POST", f"{ALERTING}/contact-points", body, (202,), UNLOCKED)

    def update_contact_point(self, uid: str, body: dict[str, Any]) -> None:
        self._expect("PUT", f"{ALERTING}/contact-points/{uid}", body, (202,), UNLOCKED)

    def policies(self) -> dict[str, Any]:
        data = self._expect("GET", f"{ALERTING}/policies", None, (200,))
        return data if isinstance(data, dict) else {}

    def put_policies(self, tree: dict[str, Any]) -> None:
        """Replaces the whole tree (there is no other way): read, merge, put."""
        self._expect("PUT", f"{ALERTING}/policies", tree, (202,), UNLOCKED)

    def test_receiver(self, point: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Send a test notification through ``point``; (status, Grafana's answer)."""
        body = {
            "alert": {
                "labels": {"alertname": "pitelemetry test"},
                "annotations": {"summary": "A test from pitelemetry: this contact works."},
            },
            "receivers": [
                {
                    "name": point["name"],
                    "grafana_managed_receiver_configs": [
                        {k: v for k, v in point.items() if k != "uid"}
                    ],
                }
            ],
        }
        path = "/api/alertmanager/grafana/config/api/v1/receivers/test"
        status, data = self._request("POST", path, body)
        return status, data if isinstance(data, dict) else {}


ALERTING = "/api/v1/provisioning"
# Without it Grafana marks what we write "provisioned" and locks it in the UI.
UNLOCKED = {"X-Disable-Provenance": "true"}
