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

import hashlib
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
QEMU = {"arm64": "qemu-aarch64", "armhf": "qemu-arm"}
# sudo: the README's install command is run as the README writes it.
INCLUDE = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,procps,sudo"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CONTAINER_CA = "/etc/ssl/certs/host-ca.crt"  # HOST_CA, bound into the container
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


def host_arch() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def enable_emulation(arch: str) -> None:
    """Run ``arch`` binaries through qemu-user-static: binfmt_misc mounted and its
    qemu entry enabled (a fresh machine may have neither until a reboot)."""
    need("update-binfmts", "binfmt-support")
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], check=True)
    name = QEMU[arch]
    subprocess.run(["update-binfmts", "--enable", name], capture_output=True, check=False)
    if not (binfmt / name).exists():
        pytest.fail(f"no binfmt entry {name}: sudo apt-get install qemu-user-static", pytrace=False)


def rootfs(release: str, arch: str = "") -> Path:
    """The cached minimal root of ``release`` (for ``arch``: another architecture,
    emulated), built on first use."""
    if os.geteuid() != 0:
        pytest.fail("booting a container needs root: sudo ./scripts/test", pytrace=False)
    debootstrap = need("debootstrap", "debootstrap")
    if arch:
        enable_emulation(arch)
    # A root built with another package list is not reused.
    flavour = hashlib.sha256(INCLUDE.encode()).hexdigest()[:8]
    cached = CACHE / f"rootfs-{release}{'-' + arch if arch else ''}-{flavour}"
    if (cached / "usr" / "bin" / "python3").exists():
        return cached
    building = CACHE / f"building-{release}"
    shutil.rmtree(building, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            debootstrap,
            *([f"--arch={arch}"] if arch else []),
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


def checkout_files() -> dict[Path, int]:
    """Every file of the checkout with the mode a fresh ``git clone`` gives it (from
    git's index, not this working tree: a file made executable here but not in git
    would pass here and fail for a user)."""
    listed = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode == 0 and listed.stdout:
        files = {}
        for line in listed.stdout.splitlines():
            meta, _, name = line.partition("\t")
            files[Path(name)] = 0o755 if meta.startswith("100755") else 0o644
        return files
    skip = {".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
    return {
        p.relative_to(ROOT): p.stat().st_mode & 0o777
        for p in ROOT.rglob("*")
        if p.is_file() and not skip & set(p.relative_to(ROOT).parts)
    }


def readme_command(heading: str, index: int) -> str:
    """The ``index``-th ``sh`` block under ``heading`` in README.md, as written there."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    return str(blocks[index]).strip()


def test_the_readme_names_the_two_commands() -> None:
    assert readme_command("The two commands", 0) == "sudo ./install.sh"
    assert readme_command("The two commands", 1) == "./scripts/test"
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("exec ./scripts/test")


def boot(root: Path, phase: str, binds: tuple[str, ...] = ()) -> list[dict[str, object]]:
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
            *(f"--bind={bind}" for bind in binds),
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


# Under qemu-user, systemd cannot set up any unit's credentials ("Failed to set up
# credentials: Invalid argument", status 243/CREDENTIALS): a bare
# `systemd-run -p SetCredential=x:y /bin/true` fails the same way in the same container
# (boot_checks.py asserts it), and on real Pis Debian's own systemd-sysusers.service
# loads credentials at every boot. So in an emulated container only, and only for the
# test, the units' LoadCredential= lines are reset by a drop-in; the placeholders are
# empty there anyway. Native boots run the units as installed.
CREDENTIALS_OFF = """# the test harness: qemu-user cannot set up systemd credentials
[Service]
LoadCredential=
"""


def emulate_credentials_away(root: Path) -> None:
    for unit in ("pitelemetry.service", "pitelemetry-provision.service"):
        drop_in = root / "etc" / "systemd" / "system" / f"{unit}.d" / "qemu-credentials.conf"
        drop_in.parent.mkdir(parents=True, exist_ok=True)
        drop_in.write_text(CREDENTIALS_OFF)
    (root / "root" / "emulated").write_text("qemu-user\n")


@pytest.mark.parametrize(
    ("release", "arch"),
    [("bookworm", ""), ("trixie", ""), ("bookworm", "arm64")],
    ids=["bookworm", "trixie", "bookworm-arm64"],
)
def test_install_and_boot(release: str, arch: str, tmp_path: Path) -> None:
    arch = "" if arch == host_arch() else arch
    root = prepare(tmp_path / "root", release, arch)
    try:
        for phase in ("install", "reboot"):
            assert_phase(root, phase, release)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def prepare(root: Path, release: str, arch: str = "") -> Path:
    """A copy of the cached root with the checkout (as git has it) and the checks."""
    subprocess.run(
        ["cp", "-a", "--reflink=auto", str(rootfs(release, arch)), str(root)], check=True
    )
    source = root / "root" / "pitelemetry"
    for relative, mode in checkout_files().items():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / relative, target)
        target.chmod(mode)
    # sudo drops the environment, PIP_CERT included: pip inside finds this machine's CA
    # (for a proxy that may sit between it and the package index) in its own config.
    (root / "etc" / "pip.conf").write_text(f"[global]\ncert = {CONTAINER_CA}\n")
    # Run inside as the README writes it, from the checkout.
    (root / "root" / "install-command").write_text(readme_command("The two commands", 0))
    shutil.copy2(ROOT / "tests" / "e2e" / "boot_checks.py", root / "root" / "boot_checks.py")
    if arch:
        emulate_credentials_away(root)
    unit = root / "etc" / "systemd" / "system" / "boot-checks.service"
    unit.write_text(CHECK_UNIT)
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "boot-checks.service").symlink_to("/etc/systemd/system/boot-checks.service")
    return root


def assert_phase(root: Path, phase: str, what: str, binds: tuple[str, ...] = ()) -> None:
    results = boot(root, phase, binds)
    failed = [r for r in results if not r["ok"]]
    assert results, f"{phase}: no checks ran"
    assert not failed, f"{what} {phase}: " + json.dumps(failed, indent=1)


def test_a_dead_pi_comes_back_from_its_backup(tmp_path: Path) -> None:
    """Pi A installs, collects and backs up to a disk of the host; Pi B, fresh, runs
    `./install.sh --restore` and has A's readings, meter total and config."""
    backups = tmp_path / "backups"
    backups.mkdir()
    bind = (f"{backups}:/backup",)
    pi_a = prepare(tmp_path / "a", "bookworm")
    try:
        assert_phase(pi_a, "install", "Pi A")
        assert_phase(pi_a, "backup", "Pi A", bind)
    finally:
        subprocess.run(["rm", "-rf", str(pi_a)], check=False)
    pi_b = prepare(tmp_path / "b", "bookworm")
    try:
        assert_phase(pi_b, "restore", "Pi B", bind)
    finally:
        subprocess.run(["rm", "-rf", str(pi_b)], check=False)
