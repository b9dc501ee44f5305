from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pitelemetry.inputs import InputError
from pitelemetry.inputs.system import SystemInput, SystemOptions
from pitelemetry.point import LineEncoder
from tests.conftest import FIXTURES
from tests.golden import assert_golden

PI_TREE = FIXTURES / "system" / "pi"
T0 = 1_795_300_000_000_000_000


def fake_statvfs(path: str) -> os.statvfs_result:
    sizes = {  # f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree ...
        "/": (4096, 4096, 7_500_000, 5_000_000, 4_700_000, 1_900_000, 1_700_000),
        "/boot/firmware": (512, 512, 1_048_576, 800_000, 800_000, 0, 0),
        "/mnt/usb disk": (4096, 4096, 100, 0, 0, 64, 0),
    }
    if path not in sizes:
        raise FileNotFoundError(2, "No such file or directory", path)
    return os.statvfs_result((*sizes[path], 0, 0, 0, 255))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(PI_TREE, tmp_path / "pi")
    return tmp_path / "pi"


def make(
    tree: Path, vcgencmd: str | None = "throttled=0x50005\n", **options: object
) -> SystemInput:
    return SystemInput(
        SystemOptions(**options),  # type: ignore[arg-type]
        proc=tree / "proc",
        sys=tree / "sys",
        statvfs=fake_statvfs,
        vcgencmd=lambda: vcgencmd,
        time_ns=lambda: T0,
    )


def lines(system: SystemInput) -> list[str]:
    encoder = LineEncoder({"host": "pi"})
    return [encoder.encode(point, T0) for point in system.collect()]


def advance_cpu(tree: Path) -> None:
    """The next /proc/stat: 100 jiffies per core later, 25% busy."""
    stat = tree / "proc" / "stat"
    stat.write_text(
        stat.read_text()
        .replace("cpu  10000 200 3000 80000 500", "cpu  10080 200 3020 80280 520")
        .replace("cpu0 2500 50 750 20000 125", "cpu0 2580 50 770 20000 125")
    )


def test_golden_line_protocol(tree: Path) -> None:
    system = make(tree, per_cpu=True)
    first = lines(system)
    assert not [line for line in first if line.startswith("cpu,")]  # needs two samples
    advance_cpu(tree)
    assert_golden("system", system.collect(), T0)


def test_values_a_reader_can_check_by_hand(tree: Path) -> None:
    system = make(tree)
    advance_cpu(tree)
    points = {(p.measurement, tuple(sorted(p.tags.items()))): p.fields for p in system.collect()}
    cpu = points[("cpu", (("cpu", "cpu-total"),))]
    assert cpu["usage_pct"] == pytest.approx(25.0)  # 100 busy of 400 jiffies, iowait idle
    assert cpu["usage_iowait_pct"] == pytest.approx(5.0)
    pi = points[("pi", ())]
    assert pi["cpu_temp_c"] == 48.312
    assert pi["cpu_freq_hz"] == 1_500_000_000
    assert pi["under_voltage"] is True
    assert pi["throttled_occurred"] is True
    assert pi["freq_capped"] is False
    assert pi["throttled_raw"] == 0x50005
    system_fields = points[("system", ())]
    assert (system_fields["load1"], system_fields["n_cpus"]) == (0.52, 4)
    mem = points[("mem", ())]
    assert mem["used_bytes"] == (3884024 - 3305548) * 1024
    assert "swap_used_pct" in mem
    disks = {dict(tags)["path"] for (m, tags) in points if m == "disk"}
    assert disks == {"/", "/boot/firmware", "/mnt/usb disk"}  # bind mount and tmpfs left out
    diskio = {dict(tags)["name"] for (m, tags) in points if m == "diskio"}
    assert diskio == {"mmcblk0", "mmcblk0p1", "mmcblk0p2"}  # no loop, ram, idle sda
    nets = {dict(tags)["interface"] for (m, tags) in points if m == "net"}
    assert nets == {"eth0", "wlan0"}


def test_throttling_falls_back_to_sysfs_then_hwmon(tree: Path) -> None:
    pi = next(p for p in make(tree, vcgencmd=None).collect() if p.measurement == "pi")
    assert pi.fields["throttled_raw"] == 0x50005
    (tree / "sys/devices/platform/soc/soc:firmware/get_throttled").unlink()
    pi = next(p for p in make(tree, vcgencmd=None).collect() if p.measurement == "pi")
    assert pi.fields["under_voltage"] is True
    assert "throttled" not in pi.fields


def test_what_a_pc_lacks_is_absent_not_zero(tree: Path) -> None:
    shutil.rmtree(tree / "sys")
    (tree / "sys").mkdir()
    meminfo = tree / "proc" / "meminfo"
    meminfo.write_text(meminfo.read_text().replace("SwapTotal:        102396", "SwapTotal: 0"))
    points = list(make(tree, vcgencmd=None).collect())
    assert "pi" not in {p.measurement for p in points}
    mem = next(p for p in points if p.measurement == "mem")
    assert "swap_used_pct" not in mem.fields
    assert mem.fields["swap_total_bytes"] == 0


def test_one_unreadable_source_does_not_stop_the_others(
    tree: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tree / "proc" / "meminfo").unlink()
    system = make(tree)
    measurements = {p.measurement for p in system.collect()}
    assert "mem" not in measurements
    assert {"system", "disk", "net", "pi"} <= measurements
    list(system.collect())
    assert sum("cannot read mem" in r.message for r in caplog.records) == 1  # logged once


def test_nothing_readable_is_an_input_error(tmp_path: Path) -> None:
    system = SystemInput(proc=tmp_path / "none", sys=tmp_path / "none", vcgencmd=lambda: None)
    with pytest.raises(InputError, match="no system source readable"):
        list(system.collect())


def test_filters(tree: Path) -> None:
    points = list(make(tree, mount_points=("/",), interfaces=("lo",)).collect())
    assert {p.tags["path"] for p in points if p.measurement == "disk"} == {"/"}
    assert {p.tags["interface"] for p in points if p.measurement == "net"} == {"lo"}


def test_honours_host_proc_and_host_sys(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_PROC", str(tree / "proc"))
    monkeypatch.setenv("HOST_SYS", str(tree / "sys"))
    system = SystemInput(statvfs=fake_statvfs, vcgencmd=lambda: None)
    load = next(p for p in system.collect() if p.measurement == "system")
    assert load.fields["load1"] == 0.52
