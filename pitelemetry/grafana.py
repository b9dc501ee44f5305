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

import time
from typing import Any
from urllib.parse import quote

import requests


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
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif username:
            self.session.auth = (username, password)

    def _request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        try:
            response = self.session.request(
                method, self.url + path, json=body, timeout=self.timeout, headers=headers
            )
        except requests.RequestException as exc:
            raise GrafanaUnreachableError(
                f"cannot reach Grafana at {self.url}: {type(exc).__name__}; is it running? "
                "[grafana] url"
            ) from None
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = {"message": response.text[:200]}
        status = response.status_code
        if status in (401, 403):
            message = data.get("message", "") if isinstance(data, dict) else ""
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
        return status, data

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
