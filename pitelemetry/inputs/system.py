"""The Pi's own health: CPU, load, memory, disks, network, temperature and throttling.

Config::

    [[inputs.system]]
    per_cpu = false        # also one "cpu" point per core
    mount_points = []      # only these mounts; empty = every mount of a real filesystem
    interfaces = []        # only these interfaces; empty = all but loopback

Sources, relative to ``$HOST_PROC`` (default ``/proc``) and ``$HOST_SYS`` (default
``/sys``), as in Telegraf, so a containerised collector can read the host's files:

============ ================================ ==================================================
measurement  tags                             fields (units in the names)
============ ================================ ==================================================
``cpu``      ``cpu`` (``cpu-total``, ``cpu0``) ``usage_pct`` (not idle nor iowait),
                                              ``usage_{user,nice,system,idle,iowait,irq,
                                              softirq,steal}_pct`` over the last interval
``system``                                    ``load1``, ``load5``, ``load15``, ``n_cpus``,
                                              ``procs_running``, ``procs_total``, ``uptime_s``
``mem``                                       ``{total,available,used,free,buffers,cached}_bytes``,
                                              ``used_pct``, ``swap_{total,free,used}_bytes``,
                                              ``swap_used_pct`` (absent without swap)
``disk``     ``path``, ``device``, ``fstype``  ``{total,used,free}_bytes``, ``used_pct`` (as df),
                                              ``inodes_{total,free}``, ``inodes_used_pct``
``diskio``   ``name``                         counters since boot: ``reads``, ``writes``,
                                              ``{read,write}_bytes``, ``{read,write,io}_time_ms``
``net``      ``interface``                    counters since boot: ``bytes_{recv,sent}``,
                                              ``packets_{recv,sent}``, ``err_{in,out}``,
                                              ``drop_{in,out}``
``pi``                                        ``cpu_temp_c``, ``cpu_freq_hz``, and the firmware's
                                              throttling flags: ``under_voltage``,
                                              ``freq_capped``, ``throttled``, ``soft_temp_limit``
                                              (now) and the same with ``_occurred`` (since boot),
                                              ``throttled_raw``; on a Pi, under-voltage
                                              events from the kernel:
                                              ``under_voltage_events``,
                                              ``under_voltage_last_s``,
                                              ``under_voltage_suppressed``
                                              (:mod:`pitelemetry.inputs.power`)
============ ================================ ==================================================

A value whose source does not exist on this machine is absent, never zero: a PC has no
throttling flags, a Pi without swap has no ``swap_used_pct``. Throttling comes from
``vcgencmd get_throttled`` (needs group ``video``), else the firmware's sysfs
``get_throttled`` file, else the ``rpi_volt`` hwmon alarm (under-voltage only).
Each source fails alone: an unreadable one is logged once and the others still report.
The first ``cpu`` point comes one interval after start (usage needs two samples).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pitelemetry.alerting import AlertRule
from pitelemetry.inputs import Emit, Input, InputError, Options, power
from pitelemetry.logs import StateLog
from pitelemetry.panels import Panel, select, sized, state_timeline, target, timeseries
from pitelemetry.point import Point

log = logging.getLogger(__name__)

SECTOR_BYTES = 512  # /proc/diskstats counts 512-byte sectors whatever the device's size
_CPU_STATES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_SKIP_DISKS = ("loop", "ram", "fd")
# Mounted often, never a disk worth watching; /proc/filesystems' "nodev" list adds more.
_VIRTUAL_FS = frozenset({"squashfs", "iso9660", "overlay", "aufs", "tmpfs", "devtmpfs"})
_THROTTLE_BITS = {
    0: "under_voltage",
    1: "freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
    16: "under_voltage_occurred",
    17: "freq_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}


# The Pi firmware: soft temperature limit at 60 °C (Pi 3B+), ARM frequency capped from
# 80 °C, throttled hard at 85 °C.
TEMPERATURE_BANDS: list[tuple[float | None, str]] = [
    (None, "green"),
    (60.0, "yellow"),
    (80.0, "orange"),
    (85.0, "red"),
]


@dataclass(frozen=True)
class SystemOptions(Options):
    dashboard = "pi-health"

    per_cpu: bool = False
    mount_points: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()

    def problems(self) -> Iterator[tuple[str, str]]:
        for index, path in enumerate(self.mount_points):
            if not path.startswith("/"):
                yield f"mount_points[{index}]", f"{path!r} is not an absolute path like '/boot'"
        for index, interface in enumerate(self.interfaces):
            if not interface or "/" in interface or len(interface) > 15:
                yield f"interfaces[{index}]", f"{interface!r} is not a network interface name"

    def alerts(self) -> Iterator[AlertRule]:
        # The firmware's "under-voltage now" bit in any sample of the last 2 minutes.
        yield AlertRule(
            "pi_under_voltage",
            "Pi under-voltage",
            "pi",
            "cpu_temp_c",
            true_field="under_voltage",
            above=0,
            aggregate="count",
            window_s=120,
            severity="critical",
        )
        # A brown-out between two samples: the kernel's count went up.
        yield AlertRule(
            "pi_brownout",
            "Pi browned out",
            "pi",
            "under_voltage_events",
            above=0,
            aggregate="spread",
            window_s=600,
            severity="critical",
        )
        yield AlertRule(
            "cpu_temperature",
            "CPU at or above 80 °C",
            "pi",
            "cpu_temp_c",
            above=79.99,
            window_s=60,
            for_s=300,
            unit="°C",
        )
        yield AlertRule(
            "disk_full",
            "Disk at or above 90 % used",
            "disk",
            "used_pct",
            by=("path",),
            above=89.99,
            aggregate="last",
            unit="%",
        )

    def panels(self) -> Iterator[Panel]:
        cpu = select('mean("usage_pct")', "cpu", "\"cpu\" = 'cpu-total'")
        yield timeseries(
            "CPU usage", [target(cpu, alias="$tag_host")], "percent", minimum=0, maximum=100
        )
        temperature = select('mean("cpu_temp_c")', "pi")
        yield timeseries(
            "CPU temperature",
            [target(temperature, alias="$tag_host")],
            "celsius",
            bands=TEMPERATURE_BANDS,
        )
        load = select(
            'mean("load1") AS "1 min", mean("load5") AS "5 min", mean("load15") AS "15 min"',
            "system",
        )
        yield timeseries("Load", [target(load)], "short", minimum=0)
        memory = select('mean("used_pct") AS "memory", mean("swap_used_pct") AS "swap"', "mem")
        yield timeseries("Memory used", [target(memory)], "percent", minimum=0, maximum=100)
        disk = select('last("used_pct")', "disk", group='"path"')
        yield timeseries(
            "Disk used", [target(disk, alias="$tag_path")], "percent", minimum=0, maximum=100
        )
        network = select(
            'non_negative_derivative(mean("bytes_recv"), 1s) AS "in", '
            'non_negative_derivative(mean("bytes_sent"), 1s) AS "out"',
            "net",
            group='"interface"',
        )
        yield timeseries("Network", [target(network, alias="$tag_interface $col")], "Bps")
        flags = select(
            'last("under_voltage") AS "under-voltage", last("throttled") AS '
            '"throttled", last("freq_capped") AS "frequency capped"',
            "pi",
        )
        yield sized(state_timeline("Power and throttling", [target(flags)]), 24)
        events = select(
            'non_negative_difference(max("under_voltage_events")) AS "under-voltage events"', "pi"
        )
        yield sized(
            timeseries(
                "Under-voltage events (from the kernel)",
                [target(events, alias="$tag_host")],
                "short",
                minimum=0,
                bars=True,
            ),
            24,
        )


def run_vcgencmd() -> str | None:
    """``vcgencmd get_throttled`` output, or ``None`` where it is missing or refused."""
    binary = shutil.which("vcgencmd")
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "get_throttled"], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


class SystemInput(Input):
    Options = SystemOptions

    def __init__(
        self,
        options: SystemOptions | None = None,
        *,
        proc: str | Path | None = None,
        sys: str | Path | None = None,
        mount_prefix: str | None = None,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        vcgencmd: Callable[[], str | None] = run_vcgencmd,
        journal: Callable[[], list[str] | None] = power.journal_command,
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.options = options or SystemOptions()
        self.proc = Path(proc or os.environ.get("HOST_PROC", "/proc"))
        self.sys = Path(sys or os.environ.get("HOST_SYS", "/sys"))
        self.mount_prefix = (
            mount_prefix if mount_prefix is not None else os.environ.get("HOST_MOUNT_PREFIX", "")
        )
        self._statvfs = statvfs
        self._vcgencmd = vcgencmd
        self._time_ns = time_ns
        self._problems = StateLog(log)
        self._last_cpu: dict[str, list[int]] = {}
        with contextlib.suppress(OSError):  # reported by the first collect()
            self._last_cpu = self._read_cpu_times()
        self._journal = journal
        self.power = power.PowerEvents()
        self._stop_power = threading.Event()

    def start(self, emit: Emit) -> None:
        """On a Pi (the ``rpi_volt`` hwmon device exists), count under-voltage events
        from the kernel log, else from the alarm file (:mod:`pitelemetry.inputs.power`)."""
        del emit  # the counts go out with the next collection
        alarm = power.find_alarm(self.sys)
        if alarm is None:
            return
        command = self._journal()
        watch: Callable[[], None]
        if command is not None:
            source = "the kernel log"

            def watch() -> None:
                power.follow_journal(command, self.power, self._stop_power)
        else:
            source = f"{alarm} (kernel log not readable: group systemd-journal?)"

            def watch() -> None:
                power.watch_alarm(alarm, self.power, self._stop_power)

        threading.Thread(target=watch, name="under-voltage", daemon=True).start()
        log.info("system: counting under-voltage events from %s", source)

    def close(self) -> None:
        self._stop_power.set()

    def collect(self) -> Iterator[Point]:
        readers: tuple[Callable[[int], Iterator[Point]], ...] = (
            self._cpu,
            self._system,
            self._mem,
            self._disk,
            self._diskio,
            self._net,
            self._pi,
        )
        produced = 0
        for reader in readers:
            now = self._time_ns()
            name = reader.__name__.lstrip("_")
            try:
                for point in reader(now):
                    produced += 1
                    yield point
            except (OSError, ValueError, IndexError) as exc:
                self._problems.report(name, f"system: cannot read {name}: {exc}")
            else:
                self._problems.clear(name, f"system: {name} readable again")
        if not produced:
            raise InputError(f"no system source readable under {self.proc} and {self.sys}")

    # -- /proc ---------------------------------------------------------------------------

    def _read_cpu_times(self) -> dict[str, list[int]]:
        times = {}
        for line in (self.proc / "stat").read_text().splitlines():
            if not line.startswith("cpu"):
                break
            name, *values = line.split()
            times[name] = [int(v) for v in values[: len(_CPU_STATES)]]
        return times

    def _cpu(self, now: int) -> Iterator[Point]:
        current = self._read_cpu_times()
        previous, self._last_cpu = self._last_cpu, current
        for name, values in current.items():
            if name != "cpu" and not self.options.per_cpu:
                continue
            before = previous.get(name)
            if before is None:
                continue
            deltas = [max(0, a - b) for a, b in zip(values, before, strict=False)]
            total = sum(deltas)
            if total == 0:
                continue
            fields: dict[str, float] = {
                f"usage_{state}_pct": 100.0 * delta / total
                for state, delta in zip(_CPU_STATES, deltas, strict=False)
            }
            idle = fields["usage_idle_pct"] + fields.get("usage_iowait_pct", 0.0)
            fields["usage_pct"] = 100.0 - idle
            yield Point("cpu", fields, {"cpu": "cpu-total" if name == "cpu" else name}, now)

    def _system(self, now: int) -> Iterator[Point]:
        load1, load5, load15, procs, _ = (self.proc / "loadavg").read_text().split()
        running, total = procs.split("/")
        uptime = float((self.proc / "uptime").read_text().split()[0])
        n_cpus = sum(1 for name in self._last_cpu if name != "cpu")
        fields: dict[str, float | int] = {
            "load1": float(load1),
            "load5": float(load5),
            "load15": float(load15),
            "procs_running": int(running),
            "procs_total": int(total),
            "uptime_s": uptime,
        }
        if n_cpus:
            fields["n_cpus"] = n_cpus
        yield Point("system", fields, {}, now)

    def _mem(self, now: int) -> Iterator[Point]:
        info = {}
        for line in (self.proc / "meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                info[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
        total = info["MemTotal"]
        available = info.get("MemAvailable", info["MemFree"] + info.get("Cached", 0))
        used = total - available
        fields: dict[str, float | int] = {
            "total_bytes": total,
            "available_bytes": available,
            "used_bytes": used,
            "free_bytes": info["MemFree"],
            "used_pct": 100.0 * used / total if total else 0.0,
        }
        for key, name in (("Buffers", "buffers_bytes"), ("Cached", "cached_bytes")):
            if key in info:
                fields[name] = info[key]
        if "SwapTotal" in info:
            swap_total, swap_free = info["SwapTotal"], info.get("SwapFree", 0)
            fields["swap_total_bytes"] = swap_total
            fields["swap_free_bytes"] = swap_free
            fields["swap_used_bytes"] = swap_total - swap_free
            if swap_total:
                fields["swap_used_pct"] = 100.0 * (swap_total - swap_free) / swap_total
        yield Point("mem", fields, {}, now)

    def _mounts(self) -> Iterator[tuple[str, str, str]]:
        for candidate in (self.proc / "1" / "mounts", self.proc / "self" / "mounts"):
            try:
                text = candidate.read_text()
            except OSError:
                continue
            break
        else:
            text = (self.proc / "mounts").read_text()
        virtual = set(_VIRTUAL_FS)
        try:
            for line in (self.proc / "filesystems").read_text().splitlines():
                flag, _, fstype = line.rpartition("\t")
                if flag.strip() == "nodev":
                    virtual.add(fstype.strip())
        except OSError:
            pass
        seen_devices = set()
        for line in text.splitlines():
            device, path, fstype, *_ = line.split()
            path = _unescape_mount(path)
            if self.options.mount_points:
                if path not in self.options.mount_points:
                    continue
            elif fstype in virtual or device in seen_devices:
                continue
            seen_devices.add(device)
            yield device, path, fstype

    def _disk(self, now: int) -> Iterator[Point]:
        for device, path, fstype in self._mounts():
            try:
                st = self._statvfs(self.mount_prefix + path)
            except OSError as exc:
                self._problems.report(f"disk:{path}", f"system: cannot stat {path}: {exc}")
                continue
            self._problems.clear(f"disk:{path}")
            total = st.f_blocks * st.f_frsize
            free = st.f_bavail * st.f_frsize
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            fields: dict[str, float | int] = {
                "total_bytes": total,
                "free_bytes": free,
                "used_bytes": used,
            }
            if used + free:
                fields["used_pct"] = 100.0 * used / (used + free)
            if st.f_files:
                fields["inodes_total"] = st.f_files
                fields["inodes_free"] = st.f_ffree
                fields["inodes_used_pct"] = 100.0 * (st.f_files - st.f_ffree) / st.f_files
            tags = {"path": path, "device": device.removeprefix("/dev/"), "fstype": fstype}
            yield Point("disk", fields, tags, now)

    def _diskio(self, now: int) -> Iterator[Point]:
        for line in (self.proc / "diskstats").read_text().splitlines():
            parts = line.split()
            name = parts[2]
            if name.startswith(_SKIP_DISKS):
                continue
            reads, _, read_sectors, read_ms, writes, _, write_sectors, write_ms = (
                int(v) for v in parts[3:11]
            )
            if reads == 0 and writes == 0:
                continue
            fields = {
                "reads": reads,
                "writes": writes,
                "read_bytes": read_sectors * SECTOR_BYTES,
                "write_bytes": write_sectors * SECTOR_BYTES,
                "read_time_ms": read_ms,
                "write_time_ms": write_ms,
                "io_time_ms": int(parts[12]),
            }
            yield Point("diskio", fields, {"name": name}, now)

    def _net(self, now: int) -> Iterator[Point]:
        for line in (self.proc / "net" / "dev").read_text().splitlines()[2:]:
            name, _, counters = line.partition(":")
            name = name.strip()
            if self.options.interfaces:
                if name not in self.options.interfaces:
                    continue
            elif name == "lo":
                continue
            v = [int(x) for x in counters.split()]
            fields = {
                "bytes_recv": v[0],
                "packets_recv": v[1],
                "err_in": v[2],
                "drop_in": v[3],
                "bytes_sent": v[8],
                "packets_sent": v[9],
                "err_out": v[10],
                "drop_out": v[11],
            }
            yield Point("net", fields, {"interface": name}, now)

    # -- /sys and the firmware -------------------------------------------------------------

    def _pi(self, now: int) -> Iterator[Point]:
        fields: dict[str, float | int | bool] = {}
        temperature = self._cpu_temperature()
        if temperature is not None:
            fields["cpu_temp_c"] = temperature
        freq = self.sys / "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
        if freq.exists():
            fields["cpu_freq_hz"] = int(freq.read_text()) * 1000
        fields.update(self._throttling())
        fields.update(self.power.fields())
        if fields:
            yield Point("pi", fields, {}, now)

    def _cpu_temperature(self) -> float | None:
        zones = sorted((self.sys / "class/thermal").glob("thermal_zone*"))
        chosen = None
        for zone in zones:
            kind = _read_optional(zone / "type")
            if kind in ("cpu-thermal", "cpu_thermal", "x86_pkg_temp"):
                chosen = zone
                break
        chosen = chosen or (zones[0] if zones else None)
        if chosen is None:
            return None
        return int((chosen / "temp").read_text()) / 1000.0

    def _throttling(self) -> dict[str, bool | int]:
        raw: int | None = None
        output = self._vcgencmd()
        if output and "throttled=" in output:
            raw = int(output.strip().partition("=")[2], 16)
        else:
            text = _read_optional(self.sys / "devices/platform/soc/soc:firmware/get_throttled")
            if text:
                raw = int(text, 16)
        if raw is not None:
            flags: dict[str, bool | int] = {
                name: bool(raw >> bit & 1) for bit, name in _THROTTLE_BITS.items()
            }
            flags["throttled_raw"] = raw
            return flags
        for hwmon in sorted((self.sys / "class/hwmon").glob("hwmon*")):
            if _read_optional(hwmon / "name") == "rpi_volt":
                alarm = _read_optional(hwmon / "in0_lcrit_alarm")
                if alarm is not None:
                    return {"under_voltage": alarm == "1"}
        return {}


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _unescape_mount(path: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    if "\\" not in path:
        return path
    return (
        path.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )
