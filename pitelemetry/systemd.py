"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET``.

``READY=1`` once the pipeline runs, ``WATCHDOG=1`` from the main loop after each healthy
turn (never from a thread of its own, so a hung loop gets the service restarted),
``STATUS=`` a one-line summary, ``STOPPING=1``. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self._address = address
        self._socket: socket.socket | None = None
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else 0.0

    def notify(self, *assignments: str) -> None:
        if not self._address:
            return
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # systemd gone (shutdown) or not listening: nothing to tell.
        with contextlib.suppress(OSError):
            self._socket.sendto("\n".join(assignments).encode(), self._address)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
