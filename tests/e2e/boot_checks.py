"""Runs inside a booted Debian container (stdlib only): installs pitelemetry with
install.sh and checks what a Pi owner relies on. Writes its findings as JSON for the
test on the host to assert on. The phase to run is in /root/boot-phase.

Phase "install" (first boot): install.sh; the user, the service, points in the
container's InfluxDB, permissions; install.sh again keeps a config edit.
Phase "reboot" (second boot): the service came back by itself and writes; a SIGSTOP-ed
daemon is restarted by the watchdog; --uninstall leaves no unit behind.
Phase "backup" (Pi A, after "install"): a meter total in the state, then
`pitelemetry backup` to /backup (a directory of the host, bound in).
Phase "restore" (Pi B, a fresh container): `./install.sh --restore` of that backup; A's
counts, meter total and config are back, and the service writes.
"""

from __future__ import annotations

import grp
import json
import pwd
import stat
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

SOURCE = Path("/root/pitelemetry")
RESULTS: list[dict[str, object]] = []


def check(name: str, ok: bool, detail: object = "") -> bool:
    RESULTS.append({"name": name, "ok": bool(ok), "detail": str(detail)[-2000:]})
    return bool(ok)


def run(*command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)


def show(prop: str) -> str:
    return run("systemctl", "show", "-p", prop, "--value", "pitelemetry").stdout.strip()


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # noqa: BLE001 - keep polling while things start
            pass
        time.sleep(1)
    return False


def points() -> int:
    query = urllib.parse.urlencode({"db": "pitelemetry", "q": "SELECT count(load1) FROM system"})
    with urllib.request.urlopen(f"http://127.0.0.1:8086/query?{query}", timeout=5) as answer:
        series = json.load(answer)["results"][0].get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


def mode_owner(path: str) -> tuple[str, str, str]:
    info = Path(path).stat()
    return (
        oct(stat.S_IMODE(info.st_mode)),
        pwd.getpwuid(info.st_uid).pw_name,
        grp.getgrgid(info.st_gid).gr_name,
    )


def phase_install() -> None:
    emulated = Path("/root/emulated").exists()
    probe = run("systemd-run", "--wait", "--quiet", "-p", "SetCredential=probe:x", "/bin/true")
    check(
        "systemd sets up a unit's credentials"
        + (" (not under qemu-user: the harness resets LoadCredential=)" if emulated else ""),
        (probe.returncode == 0) != emulated,
        probe.stdout + probe.stderr,
    )
    # The README's install command, exactly as written there (e.g. "sudo ./install.sh").
    command = Path("/root/install-command").read_text().strip()
    done = run("sh", "-c", command, cwd=SOURCE)
    journal = run("journalctl", "-u", "pitelemetry", "-n", "30", "--no-pager").stdout
    if not check(f"{command} exits 0", done.returncode == 0, done.stdout + done.stderr + journal):
        return
    user = pwd.getpwnam("pitelemetry")
    check("user pitelemetry has no login shell", user.pw_shell.endswith("nologin"), user)
    check(
        "pitelemetry.service is active",
        wait_until(lambda: show("ActiveState") == "active", 60),
        show("ActiveState"),
    )
    pid = show("MainPID")
    owner = ""
    if pid and pid != "0":
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        owner = pwd.getpwuid(uid).pw_name
    check("the daemon runs as pitelemetry", owner == "pitelemetry", owner)
    check(
        "points from the system input reach InfluxDB",
        wait_until(lambda: points() > 0, 180),
        run(
            "journalctl",
            "-u",
            "pitelemetry",
            "-u",
            "pitelemetry-provision",
            "-n",
            "40",
            "--no-pager",
        ).stdout,
    )
    check(
        "/etc/pitelemetry is 0750 root:pitelemetry",
        mode_owner("/etc/pitelemetry") == ("0o750", "root", "pitelemetry"),
        mode_owner("/etc/pitelemetry"),
    )
    config = "/etc/pitelemetry/pitelemetry.toml"
    check(
        "the config is 0640 root:pitelemetry",
        mode_owner(config) == ("0o640", "root", "pitelemetry"),
        mode_owner(config),
    )
    check(
        "/etc/credstore is 0700 root",
        mode_owner("/etc/credstore")[:2] == ("0o700", "root"),
        mode_owner("/etc/credstore"),
    )
    token = "/etc/credstore/grafana.token"
    check("secrets are 0600 root", mode_owner(token)[:2] == ("0o600", "root"), mode_owner(token))
    sources = [
        line.split(":", 1)[1].strip()
        for unit in ("pitelemetry.service", "pitelemetry-provision.service")
        for line in Path(f"/usr/local/lib/systemd/system/{unit}").read_text().splitlines()
        if line.startswith("LoadCredential=")
    ]
    missing = [source for source in sources if not Path(source).is_file()]
    check("every LoadCredential= file exists (a missing one fails the unit)", not missing, missing)
    influx_env = run("systemctl", "show", "-p", "Environment", "influxdb").stdout
    check(
        "the local InfluxDB runs with the SD-card drop-in",
        "INFLUXDB_MONITOR_STORE_ENABLED=false" in influx_env,
        influx_env,
    )
    with Path(config).open("a") as handle:
        handle.write("\n# a line the user added\n")
    again = run("bash", str(SOURCE / "install.sh"))
    check("install.sh runs again", again.returncode == 0, again.stdout + again.stderr)
    check(
        "a second install.sh keeps the user's config",
        "# a line the user added" in Path(config).read_text(),
    )
    check(
        "the service is active after the upgrade",
        wait_until(lambda: show("ActiveState") == "active", 60),
        show("ActiveState"),
    )
    Path("/root/points-before-reboot").write_text(str(points()))


def phase_reboot() -> None:
    check(
        "pitelemetry.service is active after a reboot",
        wait_until(lambda: show("ActiveState") == "active", 60),
        show("ActiveState"),
    )
    before = int(Path("/root/points-before-reboot").read_text())
    check(
        "it keeps writing after the reboot",
        wait_until(lambda: points() > before + 3, 120),
        f"{before} -> {points()}",
    )
    dropin = Path("/etc/systemd/system/pitelemetry.service.d/watchdog.conf")
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nWatchdogSec=5s\n")
    run("systemctl", "daemon-reload")
    run("systemctl", "restart", "pitelemetry")
    wait_until(lambda: show("ActiveState") == "active", 60)
    first = show("MainPID")
    run("systemctl", "kill", "-s", "SIGSTOP", "pitelemetry")
    check(
        "the watchdog restarts a hung daemon",
        wait_until(
            lambda: show("MainPID") not in ("0", first) and show("ActiveState") == "active", 60
        ),
        f"pid {first} -> {show('MainPID')}, restarts {show('NRestarts')}",
    )
    dropin.unlink()
    run("systemctl", "daemon-reload")
    done = run("bash", str(SOURCE / "install.sh"), "--uninstall")
    check("install.sh --uninstall exits 0", done.returncode == 0, done.stdout + done.stderr)
    left = run("systemctl", "list-unit-files", "pitelemetry*", "--no-legend").stdout.strip()
    check("--uninstall leaves no unit behind", left == "", left)
    check("--uninstall keeps the config", Path("/etc/pitelemetry/pitelemetry.toml").exists())


PITELEMETRY = "/opt/pitelemetry/venv/bin/pitelemetry"
METER = Path("/var/lib/pitelemetry/pulse-house.json")


def counts() -> dict[str, int]:
    """Points per measurement (the most written field's count)."""
    query = urllib.parse.urlencode({"db": "pitelemetry", "q": "SELECT count(*) FROM /.*/"})
    with urllib.request.urlopen(f"http://127.0.0.1:8086/query?{query}", timeout=10) as answer:
        series = json.load(answer)["results"][0].get("series") or []
    return {s["name"]: max(v for v in s["values"][0][1:] if isinstance(v, int)) for s in series}


def phase_backup() -> None:
    check(
        "pitelemetry.service is active",
        wait_until(lambda: show("ActiveState") == "active", 60),
        show("ActiveState"),
    )
    check("points are written", wait_until(lambda: points() > 3, 120), points())
    METER.write_text('{"pulses": 4242}')  # what a pulse meter keeps there
    run("chown", "pitelemetry:pitelemetry", str(METER))
    # The container's root and /backup are on the host's one disk: --force.
    done = run(PITELEMETRY, "backup", "--to", "/backup", "--force")
    check("pitelemetry backup exits 0", done.returncode == 0, done.stdout + done.stderr)
    made = [p for p in Path("/backup").iterdir() if not p.name.startswith(".")]
    check("one backup entry", len(made) == 1, made)


def phase_restore() -> None:
    [made] = [p for p in Path("/backup").iterdir() if not p.name.startswith(".")]
    command = Path("/root/install-command").read_text().strip()
    done = run("sh", "-c", f"{command} --restore {made}", cwd=SOURCE)
    check("install.sh --restore exits 0", done.returncode == 0, done.stdout + done.stderr)
    manifest = json.loads((made / "manifest.json").read_text())
    have = counts()
    short = {
        m: (have.get(m, 0), n) for m, n in manifest["measurements"].items() if have.get(m, 0) < n
    }
    check("every measurement has at least A's points", bool(have) and not short, short or have)
    check("A's meter total is back", METER.read_text() == '{"pulses": 4242}', METER.read_text())
    config = Path("/etc/pitelemetry/pitelemetry.toml").read_bytes()
    check(
        "A's config is back, byte for byte",
        config == (made / "config" / "pitelemetry.toml").read_bytes()
        and b"# a line the user added" in config,
    )
    check(
        "pitelemetry.service is active",
        wait_until(lambda: show("ActiveState") == "active", 60),
        show("ActiveState"),
    )
    before = points()
    check("and writing", wait_until(lambda: points() > before, 60), f"{before} -> {points()}")


def main() -> None:
    phase = Path("/root/boot-phase").read_text().strip()
    phases = {
        "install": phase_install,
        "reboot": phase_reboot,
        "backup": phase_backup,
        "restore": phase_restore,
    }
    try:
        phases[phase]()
    except Exception as exc:  # noqa: BLE001 - reported to the host as a failed check
        check(f"phase {phase} ran to the end", False, repr(exc))
    Path(f"/root/boot-{phase}.json").write_text(json.dumps(RESULTS, indent=1))


if __name__ == "__main__":
    main()
