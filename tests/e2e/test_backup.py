"""Backup and restore against real influxd: a live backup while the daemon writes, a
verified restore into a scratch InfluxDB, a restore into another InfluxDB with the
state and config, a damaged backup refused, rotation and the same-device refusal."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pitelemetry import backup
from pitelemetry.config import Config, load
from tests.e2e.daemon import Daemon
from tests.servers import InfluxDB1, VictoriaMetrics

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[InfluxDB1]:
    influxdb = InfluxDB1(tmp_path / "influxdb-a")
    influxdb.start()
    yield influxdb
    influxdb.stop()


def write_config(path: Path, influxdb: InfluxDB1, state: Path, host: str = "pi-a") -> Config:
    path.write_text(f"""[agent]
interval = "1s"
flush_interval = "1s"
host = "{host}"
state_dir = "{state}"
runtime_dir = "{path.parent}/run-{host}"
[influxdb]
url = "{influxdb.url}"
database = "home"
[backup]
influxdb_rpc = "127.0.0.1:{influxdb.rpc_port}"
[[inputs.system]]
""")
    return load(path, environ={})


def influx_write(influxdb: InfluxDB1, line: str) -> None:
    from pitelemetry.writer import V1Writer  # noqa: PLC0415

    writer = V1Writer(influxdb.url, database="home")
    writer.write([line])
    writer.close()


def pitelemetry(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """The command, as a user runs it, with ``config``."""
    return subprocess.run(
        [sys.executable, "-m", "pitelemetry", *args, "--config", config.path],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def at(stamp: float) -> Callable[[], float]:
    return lambda: stamp


def counts(influxdb: InfluxDB1) -> dict[str, dict[str, int]]:
    return backup.point_counts(influxdb.query, "home")


def test_a_live_backup_restores_with_its_counts_state_and_config(
    tmp_path: Path, server: InfluxDB1
) -> None:
    server.create_database("home")
    state = tmp_path / "state-a"
    state.mkdir()
    meter = state / "pulse-house.json"
    meter.write_text('{"pulses": 123456}')
    meter.chmod(0o640)
    config = write_config(tmp_path / "a.toml", server, state)
    daemon = Daemon(Path(config.path)).start()
    try:
        time.sleep(3)
        target = tmp_path / "backups"
        target.mkdir()
        made = backup.backup(config, target, keep=3, force=True, say=lambda line: None)
        time.sleep(1.5)  # still collecting: the backup did not stop it
    finally:
        assert daemon.stop() == 0, daemon.stderr
    assert made.path.parent == target
    assert not made.path.name.startswith(".")
    assert made.path.name.startswith("pi-a-")
    assert [p.name for p in target.iterdir()] == [made.path.name]  # one entry per run
    manifest = json.loads((made.path / "manifest.json").read_text())
    assert manifest["measurements"]["system"] >= 3
    assert manifest["points"]["autogen"]["mem"] >= 3
    assert (made.path / "config" / "pitelemetry.toml").read_bytes() == Path(
        config.path
    ).read_bytes()
    assert "pulse-house.json" in manifest["state_modes"]
    assert not any(name.startswith("spool") for name in manifest["state_modes"])
    assert manifest["secrets"] == []

    live_before = counts(server)
    found = backup.verify_only(made.path, say=lambda line: None)
    assert backup.compare(manifest["points"], found) == []
    assert counts(server) == live_before  # the live system untouched
    databases = {r["name"] for r in server.rows("SHOW DATABASES", "")}
    assert databases == {"home", "_internal"} or databases == {"home"}

    # Pi B, fresh: its own InfluxDB and state; the restore brings A's back.
    other = InfluxDB1(tmp_path / "influxdb-b")
    other.start()
    try:
        state_b = tmp_path / "state-b"
        config_b = write_config(tmp_path / "b.toml", other, state_b, host="pi-b")
        backup.restore(config_b, made.path, say=lambda line: None, restart=False)
        restored = counts(other)
    finally:
        other.stop()
    assert backup.compare(manifest["points"], restored) == []
    assert (state_b / "pulse-house.json").read_text() == '{"pulses": 123456}'
    assert oct((state_b / "pulse-house.json").stat().st_mode & 0o777) == "0o640"
    assert (tmp_path / "b.toml").read_bytes() == Path(config.path).read_bytes()


def test_a_damaged_backup_is_refused_naming_the_file(tmp_path: Path, server: InfluxDB1) -> None:
    server.create_database("home")
    influx_write(server, "x v=1")
    config = write_config(tmp_path / "a.toml", server, tmp_path / "state")
    (tmp_path / "backups").mkdir()
    made = backup.backup(config, tmp_path / "backups", keep=1, force=True, say=lambda _: None)
    shard = next(p for p in (made.path / "influxdb").iterdir() if p.name.endswith(".tar.gz"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(backup.BackupError, match=f"influxdb/{shard.name} is damaged"):
        backup.check(made.path)
    done = pitelemetry(config, "restore", "--verify-only", str(made.path))
    assert done.returncode == 1
    assert f"{shard.name} is damaged" in done.stderr


def test_rotation_keeps_the_newest_and_the_same_device_is_refused(
    tmp_path: Path, server: InfluxDB1
) -> None:
    server.create_database("home")
    config = write_config(tmp_path / "a.toml", server, tmp_path / "state")
    target = tmp_path / "backups"
    target.mkdir()
    with pytest.raises(backup.BackupError, match="same device"):
        backup.backup(config, target, keep=2, say=lambda _: None)
    for stamp in (1795300000.0, 1795300001.0, 1795300002.0):
        backup.backup(config, target, keep=2, force=True, say=lambda _: None, now=at(stamp))
    assert sorted(p.name for p in target.iterdir()) == [
        "pi-a-20261121T222641Z",
        "pi-a-20261121T222642Z",
    ]


def test_secrets_only_when_asked_and_then_for_the_owner_only(
    tmp_path: Path, server: InfluxDB1
) -> None:
    server.create_database("home")
    secret = tmp_path / "influx.password"
    secret.write_text("s3cret\n")
    path = tmp_path / "a.toml"
    write_config(path, server, tmp_path / "state")
    extra = f'database = "home"\nusername = "pi"\npassword_file = "{secret}"'
    path.write_text(path.read_text().replace('database = "home"', extra))
    config = load(path, environ={})
    (tmp_path / "backups").mkdir()
    lines: list[str] = []
    made = backup.backup(
        config, tmp_path / "backups", keep=5, include_secrets=True, force=True, say=lines.append
    )
    assert (made.path / "secrets" / "influx.password").read_text() == "s3cret\n"
    assert oct(made.path.stat().st_mode & 0o777) == "0o700"
    assert oct((made.path / "manifest.json").stat().st_mode & 0o777) == "0o600"
    assert any("holds secrets" in line for line in lines)
    plain = backup.backup(
        config,
        tmp_path / "backups",
        keep=5,
        force=True,
        say=lambda _: None,
        now=lambda: time.time() + 5,
    )
    assert not (plain.path / "secrets").exists()
    assert "s3cret" not in "".join(
        p.read_text(errors="replace") for p in plain.path.rglob("*.json")
    )


def test_status_and_the_agents_points_show_the_last_backup(
    tmp_path: Path, server: InfluxDB1
) -> None:
    server.create_database("home")
    target = tmp_path / "backups"
    target.mkdir()
    path = tmp_path / "a.toml"
    write_config(path, server, tmp_path / "state")
    path.write_text(path.read_text().replace("[backup]\n", f'[backup]\nto = "{target}"\n'))
    config = load(path, environ={})
    daemon = Daemon(path).start()
    try:
        deadline = time.monotonic() + 30
        while "backup    last: never" not in daemon.command("status").stdout:
            assert time.monotonic() < deadline, daemon.command("status").stdout
            time.sleep(0.5)
        made = backup.backup(config, target, keep=2, force=True, say=lambda _: None)
        while made.path.name not in daemon.command("status").stdout:
            assert time.monotonic() < deadline + 30, daemon.command("status").stdout
            time.sleep(0.5)
        ages = server.rows(
            "SELECT last(backup_age_s) FROM pitelemetry WHERE scope = 'agent'", "home"
        )
    finally:
        assert daemon.stop() == 0, daemon.stderr
    assert ages
    assert ages[0]["last"] >= 0


def test_check_says_when_the_backup_disk_is_not_there(tmp_path: Path, server: InfluxDB1) -> None:
    from pitelemetry import check  # noqa: PLC0415

    path = tmp_path / "a.toml"
    write_config(path, server, tmp_path / "state")
    text = path.read_text()
    for to, said in (
        (tmp_path / "not-mounted", "does not exist: is the backup disk mounted?"),
        (tmp_path, "is on the device of"),  # a directory on the card itself
    ):
        path.write_text(text.replace("[backup]\n", f'[backup]\nto = "{to}"\n'))
        lines = [r.render() for r in check.run_checks(load(path, environ={}))]
        [line] = [line for line in lines if line.split()[1] == "backup"]
        assert line.startswith("FAIL")
        assert said in line


def test_the_command_says_each_part_as_it_is_done(tmp_path: Path, server: InfluxDB1) -> None:
    server.create_database("home")
    influx_write(server, "x v=1")
    config = write_config(tmp_path / "a.toml", server, tmp_path / "state")
    (tmp_path / "backups").mkdir()
    done = pitelemetry(config, "backup", "--to", str(tmp_path / "backups"), "--force")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()  # not a terminal: a plain line per part
    assert lines[0] == "backup 1/6 points counted: 1 in 'home'"
    assert lines[1].startswith("backup 2/6 InfluxDB: ")
    assert lines[5] == "backup 6/6 Grafana: none"
    assert lines[6].startswith(f"backup {tmp_path / 'backups'}/pi-a-")


def test_a_server_we_cannot_back_up_says_so_and_the_rest_is_kept(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    """VictoriaMetrics (no 1.x version header; InfluxDB 2.x and 3.x alike): no
    ``influxd backup`` can reach its readings. The backup holds the config and state and
    says plainly, in its output, its manifest, ``status`` and ``check``, that the
    readings are not in it; restoring it restores the rest and says the same."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "pulse-house.json").write_text('{"pulses": 42}')
    target = tmp_path / "backups"
    target.mkdir()
    path = tmp_path / "vm.toml"
    path.write_text(f"""[agent]
host = "pi-vm"
state_dir = "{state}"
runtime_dir = "{tmp_path}/run"
[influxdb]
url = "{victoria.url}"
database = "home"
[backup]
to = "{target}"
[[inputs.system]]
""")
    config = load(path, environ={})
    done = pitelemetry(config, "backup", "--force")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "readings are NOT in this backup" in lines[0]
    assert "vmbackup" in lines[0]
    assert "backup 2/6 InfluxDB: not in this backup" in lines
    assert lines[-1].endswith("WITHOUT InfluxDB's readings)")
    (made,) = target.iterdir()
    manifest = json.loads((made / "manifest.json").read_text())
    assert "NOT in this backup" in manifest["influxdb_data"]
    assert manifest["points"] == {}
    assert not (made / "influxdb").exists()
    assert "pulse-house.json" in manifest["state_modes"]

    daemon = Daemon(path).start()
    try:
        deadline = time.monotonic() + 30
        while "WITHOUT InfluxDB's readings" not in daemon.command("status").stdout:
            assert time.monotonic() < deadline, daemon.command("status").stdout
            time.sleep(0.5)
    finally:
        assert daemon.stop() == 0, daemon.stderr

    verified = pitelemetry(config, "restore", "--verify-only", str(made))
    assert verified.returncode == 0, verified.stderr
    assert "nothing to restore into a scratch InfluxDB" in verified.stdout

    (state / "pulse-house.json").write_text('{"pulses": 0}')
    said: list[str] = []
    backup.restore(config, made, say=said.append, restart=False)
    assert any(line.startswith("the database is not restored: ") for line in said)
    assert json.loads((state / "pulse-house.json").read_text()) == {"pulses": 42}


def test_counting_one_field_per_measurement_gives_the_same_counts(
    tmp_path: Path, server: InfluxDB1
) -> None:
    """What a restore counts by (each measurement's most written field, from the
    manifest) against ``count(*)`` over every field, on points missing some fields:
    both are the most written field's count, a lower bound of the points (env has 3
    points, but no field in all 3)."""
    server.create_database("home")
    for line in (
        "env,room=a temp=1,hum=50 1",
        "env,room=a temp=2 2",
        "env,room=b hum=40 3",
        'door,name=front open=true,note="x" 4',
        "door,name=front open=false 5",
        "weird\\ name,t=1 odd\\ field=1i 6",
    ):
        influx_write(server, line)
    counts, fields = backup.count_points(server.query, "home")
    assert counts == {"autogen": {"env": 2, "door": 2, "weird name": 1}}
    assert fields["autogen"]["door"] == "open"
    assert fields["autogen"]["weird name"] == "odd field"
    assert backup.recount(server.query, "home", fields) == counts
    # The next backup counts by the fields the last one found: a measurement it did not
    # know, and one whose field has no points any more, by every field.
    influx_write(server, "new,t=1 a=1,b=2 7")
    known = {"autogen": {**fields["autogen"], "door": "gone"}}
    again, again_fields = backup.count_points(server.query, "home", known)
    assert again == {"autogen": {**counts["autogen"], "new": 1}}
    assert again_fields["autogen"]["door"] == "open"
    assert again_fields["autogen"]["env"] == fields["autogen"]["env"]
