"""``pitelemetry check``: the config, InfluxDB and every input, one line each."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pitelemetry import alerting, influxql
from pitelemetry.agent import build_inputs
from pitelemetry.clock import Clock
from pitelemetry.collector import Collector
from pitelemetry.config import Config, ConfigError, contact_secrets, secret_objects
from pitelemetry.transport import Transport, one_shot
from pitelemetry.writer import AuthError, WriteError, api_for_version, ping


@dataclass(frozen=True)
class CheckResult:
    subject: str
    ok: bool
    detail: str

    def render(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return f"{mark} {self.subject:<10} {self.detail}"


def run_checks(config: Config, *, transport: Transport | None = None) -> Iterator[CheckResult]:
    """One result per line of ``check``; every request to InfluxDB goes through
    ``transport`` (a fresh one, closed at the end, by default)."""
    yield CheckResult("config", True, f"{config.path} ({len(config.inputs)} inputs)")
    clock = Clock(give_up_after=config.agent.clock_wait)
    yield CheckResult("clock", clock.trusted(), clock.reason)
    with one_shot(transport) as http:
        yield _check_influxdb(config, http)
        yield _check_state_dir(Path(config.agent.state_dir))
        yield from _check_secret_files(config)
        yield from _check_inputs(config)
        yield from _check_alerts(config, http)
    if config.backup.to:
        yield _check_backup(config)


def _check_secret_files(config: Config) -> Iterator[CheckResult]:
    """A secret file any user of the machine can read is a leaked secret."""
    for source in sorted({secret.source for secret in secret_objects(config)}):
        try:
            mode = Path(source).stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IROTH:
            yield CheckResult(
                "secrets", False, f"{source} is readable by every user: chmod o-r {source}"
            )


def _check_state_dir(state_dir: Path) -> CheckResult:
    """Whether the spool and the state files can be written: if not, the points of an
    InfluxDB outage are kept in memory only. Tried with a file that is removed again."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=state_dir):
            pass
    except OSError as exc:
        return CheckResult(
            "state",
            False,
            f"cannot write {state_dir} ({exc.strerror or exc}): the spool would be in "
            "memory only; fix the owner or mount ([agent] state_dir)",
        )
    if problem := directory_problem(state_dir):
        return CheckResult("state", False, problem)
    return CheckResult("state", True, f"{state_dir} is writable")


def directory_problem(directory: Path, *, writing: bool = False) -> str:
    """What is unsafe about a directory pitelemetry keeps files in: writable by every
    user, or, for a daemon that will write there (``writing``) as root, owned by another
    user, who could plant links for root to follow (files are written without following
    them, but the service user is the one to run as). Empty when nothing is."""
    try:
        info = directory.stat()
    except OSError:
        return ""
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        return f"{directory} is writable by every user: chmod o-w {directory}"
    if writing and os.geteuid() == 0 and info.st_uid != 0:
        return (
            f"running as root with {directory} owned by uid {info.st_uid}: run commands "
            "as the service user (sudo -u pitelemetry pitelemetry ...)"
        )
    return ""


def _check_influxdb(config: Config, transport: Transport) -> CheckResult:
    influx = config.influxdb
    try:
        version = ping(influx.url, influx.timeout, transport=transport)
    except WriteError as exc:
        return CheckResult("influxdb", False, f"{exc}; is InfluxDB running? [influxdb] url")
    api = api_for_version(version) if influx.api == "auto" else influx.api
    where = f"{influx.url} (version {version or 'unknown'}, {api} API)"
    if api == "v2":
        bucket = influx.bucket or influx.database
        return CheckResult("influxdb", True, f"{where}, writing to bucket {bucket!r}")
    password = influx.password_file.reveal() if influx.password_file else ""
    try:
        results = influxql.query(
            influx.url,
            "SHOW DATABASES",
            username=influx.username,
            password=password,
            timeout=influx.timeout,
            transport=transport,
        )
    except AuthError as exc:
        return CheckResult(
            "influxdb", False, f"{where}: {exc}; check [influxdb] username and password_file"
        )
    except (WriteError, ValueError) as exc:
        return CheckResult("influxdb", False, f"{where}: {exc}")
    names = {row["name"] for row in influxql.rows(results[0])}
    if influx.database not in names:
        return CheckResult(
            "influxdb",
            False,
            f"{where}: database {influx.database!r} does not exist; run `pitelemetry provision`",
        )
    return CheckResult("influxdb", True, f"{where}, database {influx.database!r} exists")


def _check_backup(config: Config) -> CheckResult:
    """Whether the nightly backup has somewhere to go, and when it last went."""
    from pitelemetry.backup import same_device_as_data  # noqa: PLC0415
    from pitelemetry.health import last_backup  # noqa: PLC0415

    to = Path(config.backup.to)
    if not to.is_dir():
        return CheckResult("backup", False, f"{to} does not exist: is the backup disk mounted?")
    if same := same_device_as_data(config, to):
        return CheckResult(
            "backup", False, f"{to} is on the device of {same}: is the backup disk mounted?"
        )
    noted = last_backup(config)
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(noted["time"])) if noted else "none yet"
    if noted.get("without"):
        when += ", WITHOUT InfluxDB's readings (this server's own tool must back them up)"
    return CheckResult("backup", True, f"to {to}; last: {when}")


def _check_alerts(config: Config, transport: Transport) -> Iterator[CheckResult]:
    """The contact points and rules provision registers, and whether each rule's
    measurement and tags have series: a rule on a misspelt field never fires. A rule of
    your own without data fails; a default one is only listed (a new install has no
    data yet)."""
    reveal = contact_secrets(config)
    for contact in config.alerts.contacts:
        try:
            alerting.contact_point(contact, reveal(contact))  # its secrets can be read
        except ConfigError as exc:
            yield CheckResult("alerts", False, f"contact point {contact.name!r}: {exc}")
            continue
        yield CheckResult("alerts", True, f"contact point {contact.name!r} ({contact.type})")
    influx = config.influxdb
    password = influx.password_file.reveal() if influx.password_file else ""
    own = {"rule-" + alerting.slug(rule.name) for rule in config.alerts.rules}
    for rule, _ in alerting.rules_of(config):
        try:
            results = influxql.query(
                influx.url,
                rule.probe_query(),
                database=influx.bucket or influx.database,
                username=influx.username,
                password=password,
                timeout=influx.timeout,
                transport=transport,
            )
            series = len(results[0].get("series") or []) if results else 0
        except (WriteError, ValueError) as exc:
            yield CheckResult("alerts", True, f"alert rules not checked: {exc}")
            return
        if series:
            yield CheckResult("alerts", True, f"rule {rule.title!r} watches {series} series")
        else:
            yield CheckResult(
                "alerts",
                rule.name not in own,
                f"rule {rule.title!r} finds no series yet: {rule.probe_query()}",
            )


def _check_inputs(config: Config) -> Iterator[CheckResult]:
    if not config.inputs:
        yield CheckResult("inputs", False, "no [[inputs.*]] configured: nothing to collect")
        return

    def discard(lines: list[str], mark: object, on_durable: object = None) -> None:
        del lines, mark, on_durable  # check only counts points (InputStats.points)

    try:
        running = build_inputs(config)
    except Exception as exc:  # noqa: BLE001 - reported as the check's result
        yield CheckResult("inputs", False, f"cannot start inputs: {exc}")
        return
    collector = Collector(running, discard)
    collector.collect_once()
    collector.stop()
    for item in running:
        stats = item.stats
        if stats.errors:
            yield CheckResult(item.config.name, False, stats.last_error)
        else:
            yield CheckResult(item.config.name, True, f"{stats.points} points")
        for subject, ok, detail in item.input.checks():
            yield CheckResult(f"{item.config.name} {subject}", ok, detail)
