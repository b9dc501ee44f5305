"""Logging to stderr: plain lines on a terminal, ``<N>`` priority prefixes under systemd.

journald adds its own timestamps and reads a ``<N>`` prefix as the syslog priority when
the process's stderr is connected to it (``$JOURNAL_STREAM`` is set), so we print
neither timestamps nor levels there.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping

_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """``<4>message``: the priority prefix journald understands, no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6)
        text = super().format(record)
        # Each line of a traceback carries the prefix, so journald keeps them together.
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


# A secret in a URL's query string, whatever it is called (urllib3 logs request lines at
# debug level: "GET /query?function=...&apikey=... HTTP/1.1").
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:api_?key|apitoken|token|access_token|auth|password|passwd|secret|key)=)"
    r"[^&;\s\"'#]+"
)
REDACTED = "***"


class Redactor(logging.Filter):
    """Rewrites every record so no configured secret, and no secret-looking query
    parameter, reaches the log at any level; installed on the handler, so it sees the
    records of every library (urllib3, paho) too."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = self.redact(text), ()
        return True

    def redact(self, text: str) -> str:
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


REDACTOR = Redactor()


def redact_secrets(secrets: Iterable[str]) -> None:
    """Never log these (the config's secrets, once it is loaded); longest first, so a
    secret that contains another is hidden whole."""
    REDACTOR.secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))


def setup(level: str = "info", environ: Mapping[str, str] | None = None) -> None:
    """Configure the root logger for the CLI; call once at start."""
    environ = os.environ if environ is None else environ
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if environ.get("JOURNAL_STREAM"):
        formatter = JournalFormatter("%(name)s: %(message)s")
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    handler.setFormatter(formatter)
    handler.addFilter(REDACTOR)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class StateLog:
    """Logs a condition once when it starts and once when it ends, not every tick.

    ``report(key, message)`` logs ``message`` only when it differs from the last one
    for ``key``; ``clear(key, message)`` logs the recovery once if a problem was active.

    Bounded, because keys can come from outside (an MQTT topic per bad message): at most
    ``max_keys`` conditions are remembered (the oldest forgotten first), and at most
    ``burst`` lines are written per ``window`` seconds; the rest are counted and summed
    up in one line when the window ends. A flood of distinct bad topics then costs a
    few kilobytes and a few lines a minute, not a line and a dict entry per topic.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        max_keys: int = 1024,
        burst: int = 20,
        window: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys
        self._burst = burst
        self._window = window
        self._monotonic = monotonic
        self._window_end = 0.0
        self._lines = 0
        self._suppressed = 0

    def report(self, key: str, message: str, level: int = logging.WARNING) -> bool:
        """Log ``message`` if it is new for ``key`` (and the rate allows); return whether
        the condition is new."""
        with self._lock:
            if self._active.get(key) == message:
                return False
            self._active.pop(key, None)
            self._active[key] = message
            if len(self._active) > self._max_keys:
                del self._active[next(iter(self._active))]
            allowed, suppressed = self._take_line()
        if suppressed:
            self._logger.warning(
                "%d more messages like these were not logged in the last %gs",
                suppressed,
                self._window,
            )
        if allowed:
            self._logger.log(level, "%s", message)
        return True

    def _take_line(self) -> tuple[bool, int]:
        """Whether one more line fits this window, and how many were held back in the
        window that just ended (to say so once)."""
        now = self._monotonic()
        suppressed = 0
        if now >= self._window_end:
            suppressed, self._suppressed = self._suppressed, 0
            self._window_end = now + self._window
            self._lines = 0
        if self._lines >= self._burst:
            self._suppressed += 1
            return False, suppressed
        self._lines += 1
        return True, suppressed

    def clear(self, key: str, message: str | None = None) -> bool:
        """End the condition ``key``; log ``message`` if one was active."""
        with self._lock:
            was_active = self._active.pop(key, None) is not None
        if was_active and message:
            self._logger.info("%s", message)
        return was_active
