"""install.sh on a fresh Debian, proven by booting a real systemd: Debian 12 bookworm
(systemd 252, Python 3.11, what Raspberry Pi OS bookworm is built on) and Debian 13
trixie (systemd 257, Python 3.13, the current Raspberry Pi OS).

The root file system is built once with ``debootstrap --variant=minbase`` and cached
(``$PITELEMETRY_ROOTFS_CACHE``, default ``/var/cache/pitelemetry-test``); each test
boots a copy of it with ``systemd-nspawn --boot`` twice (install, then reboot) and
asserts on what ``boot_checks.py`` found inside. Needs root, ``debootstrap`` and
``systemd-container`` (``./scripts/test`` installs them), and the network for apt and
pip inside the container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CACHE = Path(os.environ.get("PITELEMETRY_ROOTFS_CACHE", "/var/cache/pitelemetry-test"))
INCLUDE = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,procps"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CHECK_UNIT = """[Unit]
Description=pitelemetry boot checks
After=multi-user.target
SuccessAction=exit
FailureAction=exit

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /root/boot_checks.py
StandardOutput=journal+console
TimeoutStartSec=900
Environment=PIP_CERT=/etc/ssl/certs/host-ca.crt
Environment=PIP_DISABLE_PIP_VERSION_CHECK=1

[Install]
WantedBy=multi-user.target
"""


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (``$PITELEMETRY_DEBIAN_MIRROR`` wins)."""
    if os.environ.get("PITELEMETRY_DEBIAN_MIRROR"):
        return os.environ["PITELEMETRY_DEBIAN_MIRROR"]
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    pattern = re.compile(r"(?:^URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s", re.M)
    for path in sources:
        if path.is_file():
            found = pattern.search(path.read_text() + "\n")
            if found:
                return found.group(1)
    pytest.fail("no Debian mirror in /etc/apt; set PITELEMETRY_DEBIAN_MIRROR", pytrace=False)


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found; sudo apt-get install {package}", pytrace=False)
    return path


def rootfs(release: str) -> Path:
    """The cached minimal root of ``release``, built on first use."""
    if os.geteuid() != 0:
        pytest.fail("booting a container needs root: sudo ./scripts/test", pytrace=False)
    debootstrap = need("debootstrap", "debootstrap")
    cached = CACHE / f"rootfs-{release}"
    if (cached / "usr" / "bin" / "python3").exists():
        return cached
    building = CACHE / f"building-{release}"
    shutil.rmtree(building, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            debootstrap,
            "--variant=minbase",
            f"--include={INCLUDE}",
            release,
            str(building),
            debian_mirror(),
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    building.rename(cached)
    return cached


def checkout_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode == 0 and listed.stdout:
        return [Path(line) for line in listed.stdout.splitlines()]
    skip = {".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    return [
        p.relative_to(ROOT)
        for p in ROOT.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
    ]


def boot(root: Path, phase: str) -> list[dict[str, object]]:
    nspawn = need("systemd-nspawn", "systemd-container")
    (root / "root" / "boot-phase").write_text(phase)
    done = subprocess.run(
        [
            nspawn,
            "-q",
            "-D",
            str(root),
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--bind-ro={HOST_CA}:/etc/ssl/certs/host-ca.crt",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    results = root / "root" / f"boot-{phase}.json"
    assert results.exists(), f"the checks did not run; nspawn said:\n{done.stdout[-4000:]}"
    found: list[dict[str, object]] = json.loads(results.read_text())
    return found


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_install_and_boot(release: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    subprocess.run(["cp", "-a", "--reflink=auto", str(rootfs(release)), str(root)], check=True)
    source = root / "root" / "pitelemetry"
    for relative in checkout_files():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    shutil.copy2(ROOT / "tests" / "e2e" / "boot_checks.py", root / "root" / "boot_checks.py")
    unit = root / "etc" / "systemd" / "system" / "boot-checks.service"
    unit.write_text(CHECK_UNIT)
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "boot-checks.service").symlink_to("/etc/systemd/system/boot-checks.service")
    try:
        for phase in ("install", "reboot"):
            results = boot(root, phase)
            failed = [r for r in results if not r["ok"]]
            assert results, f"{phase}: no checks ran"
            assert not failed, f"{release} {phase}: " + json.dumps(failed, indent=1)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)
