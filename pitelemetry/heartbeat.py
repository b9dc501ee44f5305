"""The heartbeat: a dead-man's switch outside the Pi, for the one failure Grafana on
the same Pi cannot report (the Pi itself gone).

Every ``heartbeat_interval`` the agent calls :meth:`Heartbeat.beat` with whether writes
to InfluxDB are going well; a thread of its own sends the ping, so a slow or dead
monitoring server never holds up collecting or writing. Two styles, chosen by the URL's
shape unless ``heartbeat_style`` says:

* healthchecks.io (and self-hosted Healthchecks): ``GET <url>`` on success,
  ``POST <url>/fail`` with the reason as the body on failure;
* Uptime Kuma push monitors (``/api/push/<token>``): ``GET <url>?status=up&msg=OK`` or
  ``status=down&msg=<reason>``.

The URL is a secret (anyone with it can report for this Pi): it is never logged; a
failed ping is logged once per change as "heartbeat: <reason>".
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from pitelemetry.logs import StateLog

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0


def style_of(url: str, style: str = "auto") -> str:
    """``healthchecks`` or ``uptimekuma``."""
    if style != "auto":
        return style
    return "uptimekuma" if "/api/push/" in urllib.parse.urlsplit(url).path else "healthchecks"


def request_for(url: str, style: str, healthy: bool, reason: str) -> urllib.request.Request:
    """The ping for one beat."""
    if style == "uptimekuma":
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in query if k not in ("status", "msg")]
        query += [("status", "up" if healthy else "down"), ("msg", "OK" if healthy else reason)]
        return urllib.request.Request(parts._replace(query=urllib.parse.urlencode(query)).geturl())
    if healthy:
        return urllib.request.Request(url)
    data = reason.encode()[:10_000]
    return urllib.request.Request(url.rstrip("/") + "/fail", data=data, method="POST")


class Heartbeat:
    def __init__(self, url: str, style: str = "auto") -> None:
        self.url = url
        self.style = style_of(url, style)
        self.sent = 0
        self.last_status = ""
        self.last_sent: float | None = None  # when the monitor last took a ping
        self.reported = ""  # what the last ping said: "up", or the failure's reason
        self.problem = ""  # why the monitor could not be told, while it lasts
        self._busy = threading.Lock()
        self._problems = StateLog(log)

    def beat(self, healthy: bool, reason: str = "") -> None:
        """Send one ping without waiting; skipped while the previous one is in flight."""
        if not self._busy.acquire(blocking=False):
            return
        request = request_for(self.url, self.style, healthy, reason)
        said = "up" if healthy else reason
        threading.Thread(
            target=self._send, args=(request, said), name="heartbeat", daemon=True
        ).start()

    def _send(self, request: urllib.request.Request, said: str) -> None:
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                response.read(1024)
                self.last_status = str(response.status)
            self.sent += 1
            self.last_sent, self.reported, self.problem = time.time(), said, ""
            self._problems.clear("ping", "heartbeat: the monitor answers again")
        except urllib.error.HTTPError as exc:
            self.last_status = str(exc.code)
            self.problem = f"the monitor answered {exc.code}"
            self._problems.report("ping", f"heartbeat: {self.problem}")
        except (OSError, ValueError) as exc:
            self.last_status = "unreachable"
            self.problem = f"the monitor cannot be reached ({getattr(exc, 'reason', exc)})"
            self._problems.report("ping", f"heartbeat: {self.problem}")
        finally:
            self._busy.release()

    def status(self) -> dict[str, object]:
        """For ``pitelemetry status``: never the URL."""
        return {
            "style": self.style,
            "sent": self.sent,
            "last_sent": self.last_sent,
            "reported": self.reported,
            "problem": self.problem,
        }
