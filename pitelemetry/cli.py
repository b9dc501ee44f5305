"""The ``pitelemetry`` command. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config.

Only ``argparse`` is imported up front; each command imports what it needs, so
``pitelemetry --help`` answers quickly on a Pi Zero.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pitelemetry import __version__

if TYPE_CHECKING:
    from pitelemetry.config import Config, InputConfig

log = logging.getLogger("pitelemetry")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Collects a Raspberry Pi's health, home sensors, MQTT messages and stock quotes
and writes them to InfluxDB.

commands:
  run     the daemon: collect every input at its interval and write to InfluxDB
  once    collect every input once and print line protocol; writes nothing
  check   validate the config, reach InfluxDB, try every input; exit 0 only if all is well
  status  what the running daemon is doing: writes, spool, clock, each input
  provision  create the InfluxDB database and the Grafana data source and dashboards
  sensors find attached sensors and print a config snippet for them
  backfill  write the configured symbols' daily history (--days N) to InfluxDB
  alerts test [CONTACT]  send a test notification through Grafana to a contact point
  backup  back up the readings, config, state and Grafana objects to another disk, live
  restore BACKUP  restore a backup (--verify-only: into a scratch InfluxDB, compare)
"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: /etc/pitelemetry/pitelemetry.toml)",
    )
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=argparse.SUPPRESS,
        help="override [agent] log_level",
    )
    parser = argparse.ArgumentParser(
        prog="pitelemetry",
        description=DESCRIPTION,
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pitelemetry {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("run", parents=[common], help="run the collector daemon")
    once = commands.add_parser("once", parents=[common], help="collect once, print line protocol")
    once.add_argument(
        "--input",
        action="append",
        dest="inputs",
        metavar="NAME",
        help="only this input: its type (bme280), name (bme280#2) or sensor name (hallway); "
        "repeat for more",
    )
    commands.add_parser("check", parents=[common], help="check config, InfluxDB and inputs")
    status = commands.add_parser("status", parents=[common], help="show the daemon's state")
    status.add_argument("--json", action="store_true", help="the raw state, for scripts")
    commands.add_parser("sensors", parents=[common], help="find sensors, print a config snippet")
    back = commands.add_parser(
        "backfill", parents=[common], help="write the quotes' daily history to InfluxDB"
    )
    back.add_argument(
        "--days", type=int, default=30, metavar="N", help="how many days back (default: 30)"
    )
    prov = commands.add_parser(
        "provision", parents=[common], help="set up InfluxDB and Grafana from the config"
    )
    prov.add_argument(
        "--dry-run", action="store_true", help="say what would change; change nothing"
    )
    prov.add_argument(
        "--force",
        action="store_true",
        help="replace dashboards edited in Grafana and re-send the data source",
    )
    prov.add_argument(
        "--write-files",
        metavar="DIR",
        help="write Grafana provisioning files and dashboards to DIR instead",
    )
    prov.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for InfluxDB and Grafana to answer (default: 60)",
    )
    prov.add_argument(
        "--stamp",
        metavar="FILE",
        help="do nothing if FILE says this config was provisioned; update FILE after a run",
    )
    back_up = commands.add_parser(
        "backup", parents=[common], help="back up the readings, config and state, live"
    )
    back_up.add_argument("--to", metavar="DIR", help="where (default: [backup] to)")
    back_up.add_argument("--keep", type=int, metavar="N", help="backups kept (default: 7)")
    back_up.add_argument(
        "--include-secrets", action="store_true", help="also the secret files (0600 backup)"
    )
    back_up.add_argument("--force", action="store_true", help="even onto the device the data is on")
    restore = commands.add_parser(
        "restore", parents=[common], help="restore a backup (as root), or --verify-only"
    )
    restore.add_argument("archive", metavar="BACKUP", help="a directory pitelemetry backup made")
    restore.add_argument(
        "--verify-only",
        action="store_true",
        help="restore into a scratch InfluxDB and compare; touch nothing live",
    )
    alerts = commands.add_parser("alerts", help="alert contact points")
    alert_commands = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    test = alert_commands.add_parser(
        "test", parents=[common], help="send a test notification to each contact point"
    )
    test.add_argument("name", metavar="CONTACT", nargs="?", help="only this contact point")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        # A SIGHUP that comes before the daemon's handler exists (systemctl reload twice
        # in a row, while the first reload re-executes) would end the process: hold it
        # until Agent.run installs the handler. A re-executed daemon inherits the block.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    from pitelemetry import logs  # noqa: PLC0415 - keep --help fast
    from pitelemetry.config import DEFAULT_PATH, ConfigError, load, secrets_of  # noqa: PLC0415

    logs.setup(getattr(args, "log_level", "info"))
    if args.command == "sensors":  # works before there is a config
        from pitelemetry.discover import discover  # noqa: PLC0415

        print("\n".join(discover()))
        return EXIT_OK
    try:
        config = load(getattr(args, "config", DEFAULT_PATH))
    except ConfigError as exc:
        print(f"pitelemetry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.redact_secrets(secrets_of(config))
    if not hasattr(args, "log_level"):
        logging.getLogger().setLevel(config.agent.log_level.upper())
    if args.command == "status":
        return _status(config, as_json=args.json)
    if args.command == "provision":
        return _provision(config, args)
    if args.command == "backfill":
        return _backfill(config, args.days)
    if args.command == "alerts":
        return _alerts_test(config, args.name)
    if args.command == "backup":
        return _backup(config, args)
    if args.command == "restore":
        return _restore(config, args)
    if args.command == "once":
        return _once(config, args.inputs or [])
    handler = {"run": _run, "check": _check}[args.command]
    return handler(config)


def _backfill(config: Config, days: int) -> int:
    from pitelemetry.backfill import backfill  # noqa: PLC0415
    from pitelemetry.inputs.stocks import StocksOptions  # noqa: PLC0415

    if not any(isinstance(item.options, StocksOptions) for item in config.inputs):
        print(f"pitelemetry backfill: no stock quotes input in {config.path}", file=sys.stderr)
        return EXIT_USAGE
    if days < 1:
        print("pitelemetry backfill: --days must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_FAILURE if backfill(config, days) else EXIT_OK


def _alerts_test(config: Config, name: str | None) -> int:
    from pitelemetry import alerting  # noqa: PLC0415
    from pitelemetry.config import ConfigError, contact_secrets  # noqa: PLC0415
    from pitelemetry.grafana import GrafanaClient, GrafanaError  # noqa: PLC0415

    contacts = [c for c in config.alerts.contacts if name in (None, c.name)]
    if not contacts:
        known = ", ".join(c.name for c in config.alerts.contacts) or "none"
        print(
            f"pitelemetry alerts test: no contact {name or ''!r}; known: {known}", file=sys.stderr
        )
        return EXIT_USAGE
    grafana = config.grafana
    failed = False
    reveal = contact_secrets(config)
    with GrafanaClient.from_config(grafana) as client:
        for contact in contacts:
            try:
                status, answer = client.test_receiver(
                    alerting.contact_point(contact, reveal(contact))
                )
            except ConfigError as exc:
                print(f"pitelemetry alerts test: {exc}", file=sys.stderr)
                return EXIT_USAGE
            except GrafanaError as exc:
                print(f"FAIL {contact.name}: {exc}")
                failed = True
                continue
            results = [
                c
                for r in answer.get("receivers") or []
                for c in r.get("grafana_managed_receiver_configs") or []
            ]
            errors = [r.get("error", "") for r in results if r.get("status") != "ok"]
            if status == 200 and results and not errors:
                print(f"ok   {contact.name} ({contact.type}): Grafana sent a test notification")
            else:
                reason = (
                    "; ".join(e for e in errors if e) or answer.get("message") or f"HTTP {status}"
                )
                print(f"FAIL {contact.name} ({contact.type}): {reason}")
                failed = True
    return EXIT_FAILURE if failed else EXIT_OK


def _backup(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from pitelemetry.backup import STEPS, BackupError, backup  # noqa: PLC0415
    from pitelemetry.progress import Progress  # noqa: PLC0415

    to = args.to or config.backup.to
    if not to:
        print("pitelemetry backup: where to? --to DIR, or [backup] to", file=sys.stderr)
        return EXIT_USAGE
    keep = args.keep if args.keep is not None else config.backup.keep
    if keep < 1:
        print("pitelemetry backup: --keep must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        backup(
            config,
            Path(to),
            keep=keep,
            include_secrets=args.include_secrets,
            force=args.force,
            say=lambda line: print(line, flush=True),
            step=Progress(STEPS + args.include_secrets, sys.stdout, "backup").step,
        )
    except BackupError as exc:
        print(f"pitelemetry backup: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _restore(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from pitelemetry.backup import BackupError, restore, verify_only  # noqa: PLC0415
    from pitelemetry.grafana import GrafanaError  # noqa: PLC0415
    from pitelemetry.provision import (  # noqa: PLC0415
        ProvisionError,
        grafana_configured,
        provision,
        restore_edits,
    )
    from pitelemetry.writer import WriteError  # noqa: PLC0415

    archive = Path(args.archive)
    say = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if args.verify_only:
            verify_only(archive, say)
            return EXIT_OK
        restore(config, archive, say=say)
    except (BackupError, WriteError, OSError) as exc:
        print(f"pitelemetry restore: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        for change in provision(config, wait=60):
            print(change.render())
        if grafana_configured(config) and (archive / "grafana").is_dir():
            for change in restore_edits(config, archive / "grafana"):
                print(change.render())
    except (ProvisionError, GrafanaError) as exc:
        print(f"pitelemetry restore: provisioning again failed: {exc}", file=sys.stderr)
    return EXIT_OK


def _run(config: Config) -> int:
    from pitelemetry.agent import Agent  # noqa: PLC0415

    return Agent(config).run()


def _select_inputs(config: Config, wanted: Sequence[str]) -> Config | None:
    """``config`` with only the inputs ``wanted`` names (by type, name or sensor name);
    ``None`` after saying which name matches nothing."""
    import dataclasses  # noqa: PLC0415

    def names(item: InputConfig) -> set[str]:
        return {item.type, item.name, *(name for _, name in item.options.sensor_names())}

    unknown = [name for name in wanted if not any(name in names(i) for i in config.inputs)]
    if unknown:
        known = ", ".join(sorted({n for item in config.inputs for n in names(item)}))
        print(
            f"pitelemetry once: no input {unknown[0]!r} in {config.path}; known: {known}",
            file=sys.stderr,
        )
        return None
    chosen = tuple(i for i in config.inputs if names(i) & set(wanted))
    return dataclasses.replace(config, inputs=chosen)


def _once(config: Config, wanted: Sequence[str]) -> int:
    from pitelemetry.agent import build_inputs  # noqa: PLC0415
    from pitelemetry.collector import Collector  # noqa: PLC0415

    if wanted:
        selected = _select_inputs(config, wanted)
        if selected is None:
            return EXIT_USAGE
        config = selected

    def emit(lines: list[str], mark: object, on_durable: object = None) -> None:
        del mark, on_durable  # printed as stamped, clock set or not
        sys.stdout.write("\n".join(lines) + "\n")

    collector = Collector(build_inputs(config), emit)
    collector.collect_once()
    sys.stdout.flush()
    collector.stop()
    failed = [r for r in collector.inputs if r.stats.errors]
    return EXIT_FAILURE if failed else EXIT_OK


def _check(config: Config) -> int:
    from pitelemetry.check import run_checks  # noqa: PLC0415

    ok = True
    for result in run_checks(config):
        ok = ok and result.ok
        print(result.render())
    return EXIT_OK if ok else EXIT_FAILURE


def _provision(config: Config, args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from pitelemetry import statefile  # noqa: PLC0415
    from pitelemetry.provision import (  # noqa: PLC0415
        ProvisionError,
        config_fingerprint,
        provision,
        write_files_to,
    )

    if args.write_files:
        for path in write_files_to(config, Path(args.write_files)):
            print(f"wrote          {path}")
        return EXIT_OK
    dry_run = args.dry_run
    stamp = Path(args.stamp) if args.stamp else None
    fingerprint = config_fingerprint(config)
    stamped = statefile.read_text(stamp, "provisioning again") if stamp and not args.force else None
    if stamp and stamped is not None and stamped.strip() == fingerprint:
        print(f"unchanged      nothing changed since the last provision ({stamp})")
        return EXIT_OK
    counts: dict[str, int] = {}
    urls = []
    try:
        for change in provision(config, dry_run=dry_run, force=args.force, wait=args.wait):
            print(change.render())
            counts[change.action] = counts.get(change.action, 0) + 1
            if change.subject.startswith("dashboard") and "/d/" in change.detail:
                urls.append(change.detail.rsplit(" ", 1)[-1])
    except ProvisionError as exc:
        print(f"pitelemetry provision: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if stamp and not dry_run:
        try:
            statefile.write_atomic(stamp, fingerprint + "\n")
        except OSError as exc:
            log.warning("cannot record the provisioning in %s: %s", stamp, exc.strerror or exc)
    summary = ", ".join(f"{count} {action}" for action, count in counts.items())
    print(f"\n{'dry run: ' if dry_run else ''}{summary}")
    for url in urls:
        print(f"open {url}")
    return EXIT_OK


def _status(config: Config, *, as_json: bool) -> int:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from pitelemetry.status import NotRunningError, read_state, render  # noqa: PLC0415

    runtime_dir = Path(os.environ.get("RUNTIME_DIRECTORY") or config.agent.runtime_dir)
    try:
        state = read_state(runtime_dir)
    except NotRunningError as exc:
        print(f"pitelemetry: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(state, indent=1) if as_json else render(state))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
