"""Under-voltage events, as the kernel sees them (part of the system input).

The Pi firmware keeps "under-voltage has occurred" (bit 16 of ``get_throttled``), but on
Raspberry Pi OS the kernel's ``raspberrypi-hwmon`` driver polls it every 2 s and asks
the firmware to clear it each time: ``vcgencmd``'s ``*_occurred`` bits are then close to
useless, and sampling the "now" bit every 10 s misses a brown-out of a second. The
driver does see each one: it logs a line on every 0->1 edge of bit 16 and notifies
``in0_lcrit_alarm`` of its ``rpi_volt`` hwmon device. Two sources, in this order:

* the kernel log, through the journal (``journalctl -k -b -f``; the service's group
  ``systemd-journal``): one event per "Undervoltage detected!" (mainline) or
  "Under-voltage detected! (0x...)" (Raspberry Pi kernels) since boot, with its time.
  The downstream driver allows three such lines per five minutes; the rest show only
  as "rpi_firmware_get_throttled: N callbacks suppressed", counted apart as
  ``under_voltage_suppressed`` (N counts both kinds of line, so it is an upper bound);
* else the ``in0_lcrit_alarm`` file, read on its notification: one event per 0->1 edge
  seen while pitelemetry runs (dips closer than the driver's 2 s poll are one).

Fields on the ``pi`` point: ``under_voltage_events`` (a counter since boot, or since
the start with the alarm file), ``under_voltage_last_s`` (the last event's Unix time),
``under_voltage_suppressed``. What it cannot see: a dip the firmware itself did not
flag (it samples the PMIC), dips merged within one 2 s poll, and events before the
journal's start. The kernel reports no event for throttling or frequency capping: those
stay the sampled ``throttled``/``freq_capped`` bits.
"""

from __future__ import annotations

import json
import logging
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

UNDER_VOLTAGE = re.compile(r"Under-?voltage detected!")
SUPPRESSED = re.compile(r"rpi_firmware_get_throttled: (\d+) callbacks suppressed")
ALARM_SPACING_S = 0.1  # the least time between two reads of the alarm file
# How long a read waits for the kernel's notification: its own poll period. (A regular
# file, in tests, is never notified: each read then comes after this.)
ALARM_PERIOD_S = 2.0


def kmsg_record(record: str) -> tuple[float | None, str]:
    """``/dev/kmsg``'s ``prio,seq,usec,flag;text`` -> (None: no wall time, text)."""
    _, _, text = record.partition(";")
    return None, text.rstrip("\n")


def journal_record(line: str) -> tuple[float | None, str]:
    """A ``journalctl -o json`` line -> (Unix time, message)."""
    entry = json.loads(line)
    stamp = entry.get("__REALTIME_TIMESTAMP")
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):  # journalctl's form of a message that is not UTF-8
        message = bytes(message).decode("utf-8", "replace")
    return (int(stamp) / 1e6 if stamp else None), str(message)


class PowerEvents:
    """The counts, fed by :meth:`kernel_line` or :meth:`alarm`, from any thread."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._lock = threading.Lock()
        self.events = 0
        self.suppressed = 0
        self.last_s: float | None = None
        self.source = ""
        self._alarm: bool | None = None

    def kernel_line(self, text: str, stamp: float | None = None) -> None:
        with self._lock:
            self.source = "kernel log"
            if UNDER_VOLTAGE.search(text):
                self.events += 1
                self.last_s = stamp or self._now()
            elif found := SUPPRESSED.search(text):
                self.suppressed += int(found.group(1))

    def alarm(self, value: bool) -> None:
        """The alarm file's value; an event on each 0->1 edge (unless the kernel log
        is counting)."""
        with self._lock:
            rising = value and self._alarm is False
            self._alarm = value
            if self.source != "kernel log":
                self.source = "hwmon alarm"
                if rising:
                    self.events += 1
                    self.last_s = self._now()

    def fields(self) -> dict[str, float | int]:
        with self._lock:
            if not self.source:
                return {}
            fields: dict[str, float | int] = {
                "under_voltage_events": self.events,
                "under_voltage_suppressed": self.suppressed,
            }
            if self.last_s is not None:
                fields["under_voltage_last_s"] = round(self.last_s, 3)
            return fields


def find_alarm(sys: Path) -> Path | None:
    """``in0_lcrit_alarm`` of the ``rpi_volt`` hwmon device (its number varies)."""
    for hwmon in sorted((sys / "class" / "hwmon").glob("hwmon*")):
        try:
            if (hwmon / "name").read_text().strip() == "rpi_volt":
                alarm = hwmon / "in0_lcrit_alarm"
                return alarm if alarm.exists() else None
        except OSError:
            continue
    return None


def watch_alarm(path: Path, events: PowerEvents, stop: threading.Event) -> None:
    """Read the alarm file each time the kernel notifies it (``POLLPRI``), or every 2 s."""
    try:
        with path.open("rb", buffering=0) as handle:
            poller = select.poll()
            poller.register(handle, select.POLLPRI | select.POLLERR)
            while not stop.is_set():
                handle.seek(0)
                events.alarm(handle.read(8).strip() == b"1")
                poller.poll(ALARM_PERIOD_S * 1000)
                stop.wait(ALARM_SPACING_S)
    except OSError as exc:
        log.warning("system: cannot watch %s for under-voltage: %s", path, exc.strerror)


def journal_lines(command: list[str], stop: threading.Event) -> Iterable[str]:
    """Lines of a following ``journalctl``, until ``stop``; nothing if it cannot run."""
    try:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    except OSError:
        return
    assert process.stdout is not None

    def end_on_stop() -> None:
        stop.wait()
        process.terminate()

    threading.Thread(target=end_on_stop, daemon=True).start()
    try:
        yield from process.stdout
    finally:
        process.terminate()
        process.wait(5)
        process.stdout.close()


def journal_command() -> list[str] | None:
    """``journalctl -k`` following from this boot, or ``None`` where the kernel's
    messages cannot be read (no journalctl, or not in group ``systemd-journal``)."""
    binary = shutil.which("journalctl")
    if binary is None:
        return None
    probe = subprocess.run(
        [binary, "-k", "-b", "-n", "1", "-q", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if probe.returncode != 0 or not probe.stdout.strip():
        return None  # no permission shows as no kernel entry at all
    return [binary, "-k", "-b", "-f", "-q", "-o", "json", "--output-fields=MESSAGE"]


def follow_journal(command: list[str], events: PowerEvents, stop: threading.Event) -> None:
    for line in journal_lines(command, stop):
        try:
            stamp, text = journal_record(line)
        except (ValueError, TypeError):
            continue
        events.kernel_line(text, stamp)
