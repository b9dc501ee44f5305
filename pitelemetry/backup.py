"""``pitelemetry backup`` and ``pitelemetry restore``: years of readings on another disk.

A backup is taken live (the daemon keeps collecting) into one new directory
``<host>-<UTC time>`` directly in the target, made under a hidden name and renamed when
complete, so a half-made backup is never mistaken for one:

* ``influxdb/``: ``influxd backup -portable`` of pitelemetry's database, through the
  local meta service (``[backup] influxdb_rpc``, 127.0.0.1:8088). InfluxDB 1.x only:
  with 2.x, 3.x or another server (VictoriaMetrics) the backup holds everything else,
  and the manifest's ``influxdb_data`` and the output say plainly that the readings are
  not in it and which tool of that server's own to use;
* ``config/pitelemetry.toml``, byte for byte;
* ``state/``: everything in ``state_dir`` but the spool (meter totals, quote quota
  counts, the provisioning stamp), with each file's mode and owner in the manifest;
* ``systemd/``: the drop-ins for pitelemetry's units and InfluxDB's;
* ``grafana/``: the dashboards, alert rules and contact points pitelemetry manages,
  as Grafana holds them now (a user's edits included), when Grafana is configured;
* ``secrets/``: only with ``--include-secrets`` (the backup is then readable by its
  owner only, and the output says so);
* ``manifest.json``: the SHA-256 of every file, the versions, and the point count per
  measurement and retention policy just before the snapshot.

A restore first checks every checksum (a damaged backup is refused, naming the file),
then restores the database (into a fresh InfluxDB directly; into a live one through a
temporary database and ``SELECT INTO``, since InfluxDB 1.6 cannot restore over an
existing database), the state, the config and the drop-ins, re-provisions Grafana (then
puts back, from the copies, the dashboards and rules that were edited in Grafana and
any rule of the user's own in pitelemetry's group) and restarts the service.
``--verify-only`` restores into a scratch ``influxd`` on free loopback ports instead and
compares the counts with the manifest.
"""

from __future__ import annotations

import datetime as dt
import grp
import hashlib
import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pitelemetry import __version__, influxql, statefile
from pitelemetry.config import Config
from pitelemetry.influxql import ident
from pitelemetry.writer import WriteError, ping, wait_for

MANIFEST = "manifest.json"
LAST_BACKUP = "last-backup.json"
SYSTEMD_DROP_INS = Path("/etc/systemd/system")
INFLUX_DATA = Path("/var/lib/influxdb")
Say = Callable[[str], None]


class BackupError(Exception):
    """Why a backup or restore cannot be done; ``str()`` says what to do."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            yield path


def _owner(info: os.stat_result) -> tuple[str, str]:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return user, group


def _influx(config: Config, statement: str, database: str = "") -> list[dict[str, Any]]:
    influx = config.influxdb
    return influxql.query(
        influx.url,
        statement,
        database=database,
        username=influx.username,
        password=influx.password_file.reveal() if influx.password_file else "",
        timeout=max(influx.timeout, 60.0),
    )


Query = Callable[[str, str], list[dict[str, Any]]]


Counts = dict[str, dict[str, int]]  # {retention policy: {measurement: points}}
Fields = dict[str, dict[str, str]]  # {retention policy: {measurement: field}}


def point_counts(query: Query, database: str) -> Counts:
    """{retention policy: {measurement: points}}; a measurement's points are its most
    written field's count (InfluxQL counts fields, not points)."""
    return count_points(query, database)[0]


def count_points(query: Query, database: str, known: Fields | None = None) -> tuple[Counts, Fields]:
    """:func:`point_counts`, and the field each count came from. ``known``: the fields
    the last backup counted by; a measurement in it is counted by that field alone (a
    fraction of ``count(*)`` over every field), the others, and one whose field has no
    points any more, by ``count(*)``."""
    counts: Counts = {}
    fields: Fields = {}
    policies = influxql.rows(query(f"SHOW RETENTION POLICIES ON {ident(database)}", database)[0])
    for policy in (str(p["name"]) for p in policies):
        by_field = (known or {}).get(policy) or {}
        if by_field:
            shown = query(f"SHOW MEASUREMENTS ON {ident(database)}", database)[0]
            names = [str(row["name"]) for row in influxql.rows(shown)]
            found = _count_each(query, database, policy, {m: by_field.get(m, "*") for m in names})
            again = {m: "*" for m in names if m in by_field and found.get(m, (0, ""))[0] == 0}
            found.update(_count_each(query, database, policy, again))
        else:
            every = f"SELECT count(*) FROM {ident(database)}.{ident(policy)}./.*/"
            found = _counted(query(every, database)[0])
        for measurement, (count, field) in found.items():
            counts.setdefault(policy, {})[measurement] = count
            if field:
                fields.setdefault(policy, {})[measurement] = field
    return counts, fields


def _count_each(
    query: Query, database: str, policy: str, wanted: dict[str, str]
) -> dict[str, tuple[int, str]]:
    """{measurement: (points, field)} counted by each one's field ("*": every field),
    all in one request; measurements without points in ``policy`` are left out."""
    if not wanted:
        return {}
    statements = [
        f"SELECT count({'*' if field == '*' else ident(field)}) FROM "
        f"{ident(database)}.{ident(policy)}.{ident(measurement)}"
        for measurement, field in wanted.items()
    ]
    found: dict[str, tuple[int, str]] = {}
    for result in query("; ".join(statements), database):
        for measurement, (count, field) in _counted(result).items():
            # count(f) names its column "count", not "count_f"
            asked = wanted.get(measurement, "*")
            found[measurement] = (count, field or ("" if asked == "*" else asked))
    return found


def _counted(result: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """{measurement: (its most written field's count, that field)} of a count query."""
    found = {}
    for series in result.get("series") or []:
        counted = [
            (value, column.removeprefix("count_") if column != "count" else "")
            for column, value in zip(series["columns"][1:], series["values"][0][1:], strict=True)
            if isinstance(value, int)
        ]
        found[str(series["name"])] = max(counted, default=(0, ""))
    return found


def recount(query: Query, database: str, fields: Fields) -> Counts:
    """The points of each measurement in ``fields``, counted by its one field, all in
    one request per retention policy."""
    counts: Counts = {}
    for policy, by_field in sorted(fields.items()):
        for measurement, (count, _) in _count_each(query, database, policy, by_field).items():
            counts.setdefault(policy, {})[measurement] = count
    return counts


@dataclass(frozen=True)
class Backup:
    path: Path
    manifest: dict[str, Any]


def backup(
    config: Config,
    to: Path,
    *,
    keep: int,
    include_secrets: bool = False,
    force: bool = False,
    say: Say = print,
    now: Callable[[], float] = time.time,
    step: Callable[[str, str], None] | None = None,
) -> Backup:
    """Make one backup in ``to``; keep the newest ``keep`` of this host's. ``step(part,
    result)`` is told as each part is done (a progress bar on a terminal: ``STEPS``,
    one more with secrets)."""
    if not to.is_dir():
        raise BackupError(f"{to} is not a directory: mount the backup disk, or mkdir it")
    version = _influx_version(config)
    missing = data_not_covered(config, version)
    if missing:
        say(missing)
    if (same := same_device_as_data(config, to)) and not force:
        raise BackupError(
            f"{to} is on the same device as {same}: a copy on the same SD card is no "
            "backup; use a USB disk or a NAS mount (--force to do it anyway)"
        )
    needed = (
        (0 if missing else _size(INFLUX_DATA))
        + _size(Path(config.agent.state_dir))
        + 16 * 1024 * 1024
    )
    free = shutil.disk_usage(to).free
    if free < needed:
        raise BackupError(f"{to} has {free // 2**20} MiB free; about {needed // 2**20} MiB needed")
    host = config.agent.hostname
    stamp = dt.datetime.fromtimestamp(now(), dt.UTC)
    name = f"{host}-{stamp:%Y%m%dT%H%M%SZ}"
    final = to / name
    if final.exists():
        raise BackupError(f"{final} exists already; wait a second and run again")
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=to))
    try:
        staging.chmod(0o700 if include_secrets else 0o755)
        manifest = _fill(
            config, staging, include_secrets, missing=missing, say=say, step=step or _said(say)
        )
        manifest.update(host=host, created=stamp.isoformat(), influxdb=version)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if include_secrets:
            for path in staging.rglob("*"):
                path.chmod(0o700 if path.is_dir() else 0o600)
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in final.rglob("*") if p.is_file())
    without = "; WITHOUT InfluxDB's readings" if missing else ""
    say(f"backup {final} ({size / 2**20:.1f} MiB, {len(manifest['files'])} files{without})")
    if include_secrets:
        say(f"it holds secrets: {final} is readable by {_owner(final.stat())[0]} only")
    for old in rotate(to, host, keep):
        say(f"removed the old backup {old}")
    try:
        statefile.write_atomic(
            Path(config.agent.state_dir) / LAST_BACKUP,
            json.dumps(
                {
                    "time": now(),
                    "path": str(final),
                    "without_readings": bool(missing),
                    "counted_fields": manifest.get("counted_fields", {}),
                }
            ),
        )
    except OSError as exc:
        say(f"cannot note the backup in {config.agent.state_dir}: {exc.strerror}")
    return Backup(final, manifest)


STEPS = 6


def _said(say: Say) -> Callable[[str, str], None]:
    return lambda part, result: say(f"{part}: {result}")


def _fill(
    config: Config,
    staging: Path,
    include_secrets: bool,
    *,
    missing: str,
    say: Say,
    step: Callable[[str, str], None],
) -> dict[str, Any]:
    """Everything a backup holds, into ``staging``; the manifest (without host, time
    and InfluxDB version). ``missing``: why the readings cannot be in it ("" if they can)."""
    influx = config.influxdb
    counts: Counts = {}
    fields: Fields = {}
    if missing:
        step("points counted", "none: not in this backup")
        step("InfluxDB", "not in this backup")
    else:
        counts, fields = count_points(
            lambda q, d: _influx(config, q, d), influx.database, _last_fields(config)
        )
        total = sum(sum(m.values()) for m in counts.values())
        step("points counted", f"{total} in {influx.database!r}")
        _influxd_backup(config, staging / "influxdb")
        step("InfluxDB", f"{_size(staging / 'influxdb') / 2**20:.1f} MiB (live)")
    (staging / "config").mkdir()
    shutil.copy2(config.path, staging / "config" / "pitelemetry.toml")
    step("config", config.path)
    modes = _copy_state(Path(config.agent.state_dir), staging / "state")
    step("state", f"{len(modes)} files")
    _copy_drop_ins(staging / "systemd")
    step("drop-ins", f"{len(list((staging / 'systemd').rglob('*.conf')))} files")
    grafana = _grafana_objects(config, staging / "grafana", say)
    step("Grafana", f"{len(grafana)} objects" if grafana else "none")
    secrets = _copy_secrets(config, staging / "secrets") if include_secrets else []
    if include_secrets:
        step("secrets", f"{len(secrets)} files")
    return {
        "format": 1,
        "pitelemetry": __version__,
        "database": influx.database,
        "influxdb_data": missing,
        "measurements": counts.get(_default_policy(counts), {}),
        "points": counts,
        "counted_fields": fields,
        "state_modes": modes,
        "grafana": grafana,
        "secrets": secrets,
        "files": {str(p.relative_to(staging)): _sha256(p) for p in _files(staging)},
    }


def _default_policy(counts: dict[str, dict[str, int]]) -> str:
    return "autogen" if "autogen" in counts or "raw" not in counts else "raw"


def _last_fields(config: Config) -> Fields:
    """The fields the last backup counted by (:func:`count_points`); {} if none."""

    def check(data: Any) -> Fields:
        fields = data.get("counted_fields") or {}
        for by_field in fields.values():
            if not all(isinstance(f, str) and f for f in by_field.values()):
                raise TypeError("counted_fields holds something other than field names")
        return {str(p): {str(m): f for m, f in by_field.items()} for p, by_field in fields.items()}

    path = Path(config.agent.state_dir) / LAST_BACKUP
    return statefile.read_json(path, check, "every field is counted") or {}


def _influx_version(config: Config) -> str:
    try:
        return ping(config.influxdb.url, config.influxdb.timeout)
    except WriteError as exc:
        raise BackupError(f"InfluxDB: {exc}") from None


def data_not_covered(config: Config, version: str) -> str:
    """Why this server's readings cannot go into a backup ("" when they can: InfluxDB
    1.x, whose ``influxd backup`` we run), and what to use instead."""
    major = version.lstrip("vV")[:1]
    if major == "1":
        return ""
    if major == "2":
        bucket = config.influxdb.bucket or config.influxdb.database
        return (
            f"InfluxDB {version}'s readings are NOT in this backup: back them up with "
            f"`influx backup -b {bucket} -b {bucket}_downsampled DIR` (InfluxDB's own CLI) "
            "and restore them with `influx restore`"
        )
    if major == "3":
        return (
            f"InfluxDB {version}'s readings are NOT in this backup: InfluxDB 3 keeps them "
            "as Parquet files in its object store; copy its --data-dir (object store "
            "'file') while it is stopped, or use your object store's own backup"
        )
    return (
        f"the server at {config.influxdb.url} sends no InfluxDB 1.x version "
        f"({version or 'none'}: VictoriaMetrics or a proxy?), so its readings are NOT in "
        "this backup: use that server's own backup tool (vmbackup for VictoriaMetrics)"
    )


def same_device_as_data(config: Config, to: Path) -> Path | None:
    """The data directory ``to`` shares a device with (the state, InfluxDB's data)."""
    for data in (Path(config.agent.state_dir), INFLUX_DATA):
        if _same_device(to, data):
            return data
    return None


def _same_device(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False


def _size(path: Path) -> int:
    try:
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


def _influxd_backup(config: Config, target: Path) -> None:
    influxd = shutil.which("influxd")
    if influxd is None:
        raise BackupError("influxd not found: the backup needs InfluxDB 1.x's own influxd")
    done = subprocess.run(
        [
            influxd,
            "backup",
            "-portable",
            "-host",
            config.backup.influxdb_rpc,
            "-db",
            config.influxdb.database,
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BackupError(
            f"influxd backup failed ({'; '.join(tail)}); is InfluxDB's backup service on "
            f"{config.backup.influxdb_rpc}? ([backup] influxdb_rpc)"
        )


def _copy_state(state_dir: Path, target: Path) -> dict[str, list[str | int]]:
    """Everything in the state directory but the spool; {path: [mode, user, group]}."""
    modes: dict[str, list[str | int]] = {}
    target.mkdir()
    if not state_dir.is_dir():
        return modes
    for path in sorted(state_dir.rglob("*")):
        relative = path.relative_to(state_dir)
        if relative.parts[0] == "spool" or path.is_symlink() or not path.is_file():
            continue
        info = path.stat()
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / relative)
        modes[str(relative)] = [stat.S_IMODE(info.st_mode), *_owner(info)]
    return modes


def _copy_drop_ins(target: Path) -> None:
    target.mkdir()
    for directory in sorted(SYSTEMD_DROP_INS.glob("*.service.d")):
        if not directory.name.startswith(("pitelemetry", "influxdb")):
            continue
        for conf in sorted(directory.glob("*.conf")):
            (target / directory.name).mkdir(exist_ok=True)
            shutil.copyfile(conf, target / directory.name / conf.name)


def _grafana_objects(config: Config, target: Path, say: Say) -> list[str]:
    """What Grafana holds of pitelemetry's now, edits included; nothing without Grafana."""
    from pitelemetry import alerting, dashboards  # noqa: PLC0415
    from pitelemetry.grafana import GrafanaClient, GrafanaError  # noqa: PLC0415

    grafana = config.grafana
    if not (grafana.token_file or grafana.password_file):
        return []
    client = GrafanaClient.from_config(grafana)
    saved = []
    try:
        objects: dict[str, Any] = {}
        for board in dashboards.generate(config):
            stored = client.get_dashboard(board["uid"])
            if stored is not None:
                objects[f"dashboard-{board['uid']}.json"] = stored["dashboard"]
        group = client.get_rule_group(grafana.folder_uid, alerting.RULE_GROUP)
        if group is not None:
            objects["alert-rules.json"] = group
        names = {contact.name for contact in config.alerts.contacts}
        points = [p for p in client.contact_points() if p.get("name") in names]
        if points:
            objects["contact-points.json"] = points  # secrets as Grafana shows them
    except GrafanaError as exc:
        say(f"Grafana left out of the backup: {exc}")
        return []
    finally:
        client.close()
    target.mkdir()
    for name, value in objects.items():
        (target / name).write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
        saved.append(name)
    return saved


def _copy_secrets(config: Config, target: Path) -> list[str]:
    from pitelemetry.config import secret_objects  # noqa: PLC0415

    target.mkdir(mode=0o700)
    copied = []
    for secret in secret_objects(config):
        source = Path(secret.source)
        if source.is_file():
            shutil.copyfile(source, target / source.name)
            copied.append(source.name)
    return sorted(set(copied))


def rotate(to: Path, host: str, keep: int) -> list[Path]:
    """Remove this host's backups beyond the newest ``keep``; the removed ones."""
    ours = sorted(
        p for p in to.iterdir() if p.name.startswith(f"{host}-") and (p / MANIFEST).is_file()
    )
    old = ours[: max(0, len(ours) - keep)]
    for path in old:
        shutil.rmtree(path)
    return old


# -- restore ------------------------------------------------------------------------------


def _peek(archive: Path) -> dict[str, Any]:
    """The manifest, unchecked ({} when unreadable: :func:`check` then says why)."""
    try:
        manifest: dict[str, Any] = json.loads((archive / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def check(archive: Path) -> dict[str, Any]:
    """The manifest, once every file's checksum matched; :class:`BackupError` naming
    the first file that is damaged, missing or not listed."""
    try:
        manifest: dict[str, Any] = json.loads((archive / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{archive}: no readable {MANIFEST} ({exc})") from None
    listed: dict[str, str] = manifest.get("files") or {}
    for name, digest in sorted(listed.items()):
        path = archive / name
        if not path.is_file():
            raise BackupError(f"{archive}: {name} is missing")
        if _sha256(path) != digest:
            raise BackupError(f"{archive}: {name} is damaged (its checksum differs)")
    extra = [
        str(p.relative_to(archive))
        for p in _files(archive)
        if str(p.relative_to(archive)) not in listed
    ]
    if extra:
        raise BackupError(f"{archive}: {extra[0]} is not in the manifest")
    return manifest


class ScratchInfluxDB:
    """A throw-away ``influxd`` on free loopback ports, for ``--verify-only``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pitelemetry-verify-"))
        self.http, self.rpc = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.http}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ScratchInfluxDB:
        """Starts ``influxd``; :meth:`wait_ready` waits for it (do other work between)."""
        influxd = shutil.which("influxd")
        if influxd is None:
            raise BackupError("influxd not found: --verify-only needs InfluxDB 1.x's influxd")
        conf = self.dir / "influxdb.conf"
        conf.write_text(
            f'reporting-enabled = false\nbind-address = "127.0.0.1:{self.rpc}"\n'
            f'[meta]\n  dir = "{self.dir}/meta"\n'
            f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n'
            "  query-log-enabled = false\n[monitor]\n  store-enabled = false\n"
            f'[http]\n  bind-address = "127.0.0.1:{self.http}"\n  log-enabled = false\n'
        )
        with (self.dir / "influxd.log").open("wb") as log:
            self.process = subprocess.Popen(
                [influxd, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                ping(self.url, 1.0)
            except WriteError:
                exited = self.process is None or self.process.poll() is not None
                if time.monotonic() > deadline or exited:
                    raise BackupError("the scratch influxd did not start") from None
                time.sleep(0.02)
            else:
                return

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _influxd_restore(rpc: str, source: Path, database: str, new: str = "") -> None:
    influxd = shutil.which("influxd")
    if influxd is None:
        raise BackupError("influxd not found: the restore needs InfluxDB 1.x's own influxd")
    command = [influxd, "restore", "-portable", "-host", rpc, "-db", database]
    if new:
        command += ["-newdb", new]
    done = subprocess.run(
        [*command, str(source)], capture_output=True, text=True, timeout=3600, check=False
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise BackupError(f"influxd restore failed: {'; '.join(tail)}")


def compare(expected: dict[str, dict[str, int]], found: dict[str, dict[str, int]]) -> list[str]:
    """Measurements with fewer points than the manifest says (a backup taken while the
    daemon wrote holds at least its counts)."""
    short = []
    for policy, measurements in expected.items():
        for measurement, count in measurements.items():
            have = found.get(policy, {}).get(measurement, 0)
            if have < count:
                short.append(f"{policy}.{measurement}: {have} of {count} points")
    return short


def settled_counts(
    query: Query,
    database: str,
    expected: Counts,
    fields: Fields | None = None,
    seconds: float = 60,
) -> Counts:
    """The counts once they reach ``expected``, or after ``seconds``: influxd loads a
    restored shard a moment after ``influxd restore`` returns (and may answer "engine
    is closed" meanwhile). With the manifest's ``fields``, each measurement is counted
    by its one field (:func:`recount`); without (an older manifest), by ``count(*)``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = recount(query, database, fields) if fields else point_counts(query, database)
        except (ValueError, WriteError):  # "engine is closed" while a shard opens
            if time.monotonic() > deadline:
                raise
        else:
            if not compare(expected, found) or time.monotonic() > deadline:
                return found
        time.sleep(0.05)


def verify_only(archive: Path, say: Say = print) -> dict[str, dict[str, int]]:
    """Restore into a scratch influxd and compare the counts; the live system is not
    touched. Returns the restored counts."""
    if _peek(archive).get("influxdb_data"):
        check(archive)
        say(f"{archive}: every checksum matches")
        say(f"nothing to restore into a scratch InfluxDB: {_peek(archive)['influxdb_data']}")
        return {}
    with ScratchInfluxDB() as scratch:  # it boots while the checksums are checked
        manifest = check(archive)
        say(f"{archive}: every checksum matches")
        database = manifest["database"]
        scratch.wait_ready()
        _influxd_restore(f"127.0.0.1:{scratch.rpc}", archive / "influxdb", database)

        def query(statement: str, db: str) -> list[dict[str, Any]]:
            return influxql.query(scratch.url, statement, database=db, timeout=60)

        found = settled_counts(query, database, manifest["points"], manifest.get("counted_fields"))
    short = compare(manifest["points"], found)
    if short:
        raise BackupError("the restored database is short: " + "; ".join(short))
    total = sum(sum(m.values()) for m in found.values())
    say(f"restored into a scratch InfluxDB: {total} points, every count as in the manifest")
    return found


def restore(config: Config, archive: Path, *, say: Say = print, restart: bool = True) -> None:
    """Restore ``archive`` onto this machine (run as root): database, state, config,
    drop-ins, then provision Grafana and restart the service."""
    manifest = check(archive)
    say(f"{archive}: every checksum matches")
    if manifest.get("influxdb_data"):
        say(f"the database is not restored: {manifest['influxdb_data']}")
    else:
        _restore_database(config, archive, manifest, say)
    _restore_files(config, archive, manifest, say)
    if restart and shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "restart", "pitelemetry.service"], check=False)
        say("pitelemetry.service restarted")


def _restore_database(config: Config, archive: Path, manifest: dict[str, Any], say: Say) -> None:
    database = manifest["database"]
    try:
        wait_for(config.influxdb.url, 120)  # just installed or restarted
    except WriteError as exc:
        raise BackupError(f"InfluxDB: {exc}") from None
    existing = {r["name"] for r in influxql.rows(_influx(config, "SHOW DATABASES")[0])}
    rpc = config.backup.influxdb_rpc
    if database not in existing:
        _influxd_restore(rpc, archive / "influxdb", database)
    else:  # InfluxDB 1.6 cannot restore over a database: by a temporary one
        temporary = f"{database}_restore_{int(time.time())}"
        _influxd_restore(rpc, archive / "influxdb", database, temporary)
        try:
            for policy in manifest["points"]:
                _influx(
                    config,
                    f"SELECT * INTO {ident(database)}.{ident(policy)}.:MEASUREMENT "
                    f"FROM {ident(temporary)}.{ident(policy)}./.*/ GROUP BY *",
                    database,
                )
        finally:
            _influx(config, f"DROP DATABASE {ident(temporary)}")
    say(f"database {database!r} restored")
    found = settled_counts(
        lambda q, d: _influx(config, q, d),
        database,
        manifest["points"],
        manifest.get("counted_fields"),
    )
    short = compare(manifest["points"], found)
    if short:
        raise BackupError("the restored database is short: " + "; ".join(short))


def _restore_files(config: Config, archive: Path, manifest: dict[str, Any], say: Say) -> None:
    shutil.copyfile(archive / "config" / "pitelemetry.toml", config.path)
    say(f"config restored to {config.path}")
    state_dir = Path(config.agent.state_dir)
    for relative, (mode, user, group) in manifest.get("state_modes", {}).items():
        target = state_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        statefile.write_atomic(target, (archive / "state" / relative).read_text())
        target.chmod(int(mode))
        if os.geteuid() == 0:
            try:
                os.chown(target, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
            except KeyError:
                say(f"{target}: no user {user} or group {group} here; owner left as is")
    say(f"state restored to {state_dir} ({len(manifest.get('state_modes', {}))} files)")
    drop_ins = archive / "systemd"
    for conf in sorted(drop_ins.rglob("*.conf")) if drop_ins.is_dir() else []:
        target = SYSTEMD_DROP_INS / conf.relative_to(drop_ins)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(conf, target)
        say(f"restored {target}")
