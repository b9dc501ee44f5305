"""No reading lost: outages, kill -9, a full spool, rejected points and a corrupt spool,
with the real daemon and a real InfluxDB 1.x."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitelemetry.spool import DiskSpool
from tests.e2e.daemon import Daemon, write_config
from tests.servers import InfluxDB1

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def own_influxdb(tmp_path: Path) -> Iterator[InfluxDB1]:
    """An InfluxDB this test may stop and start."""
    server = InfluxDB1(tmp_path / "influxdb")
    server.start()
    server.create_database("pi")
    yield server
    server.stop()


def load_stamps(server: InfluxDB1) -> list[int]:
    return [int(r["time"]) for r in server.rows("SELECT load1 FROM system", "pi")]


def system_collections(state: dict[str, object]) -> int:
    [system] = [i for i in state["inputs"] if i["name"] == "system"]  # type: ignore[attr-defined]
    return int(system["collections"])


def test_a_30_second_outage_loses_nothing(tmp_path: Path, own_influxdb: InfluxDB1) -> None:
    config = write_config(tmp_path, f'url = "{own_influxdb.url}"\ndatabase = "pi"')
    daemon = Daemon(config).start()
    try:
        daemon.wait_for(lambda s: s["points"]["written"] > 0)
        own_influxdb.stop()
        time.sleep(30)
        during = daemon.status()
        assert during["influxdb"]["outage_since"] is not None
        assert during["spool"]["points"] > 0
        own_influxdb.start()
        daemon.wait_for(
            lambda s: (
                s["spool"]["points"] == 0
                and s["influxdb"]["last_error"]
                and s["influxdb"]["outage_since"] is None
            ),
            60,
        )
        time.sleep(1.5)
    finally:
        assert daemon.stop() == 0
    stamps = load_stamps(own_influxdb)
    final = json.loads((tmp_path / "run" / "status.json").read_text())
    assert len(stamps) == system_collections(final)  # every collection, once
    assert len(stamps) >= 35
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 1.9, f"a gap of {max(gaps):.1f}s in a 1 s series"
    events = own_influxdb.rows("SELECT title, kind FROM events", "pi")
    assert {"start", "outage", "outage_end", "stop"} <= {e["kind"] for e in events}


def test_kill_9_during_an_outage_loses_nothing_spooled(
    tmp_path: Path, own_influxdb: InfluxDB1
) -> None:
    config = write_config(tmp_path, f'url = "{own_influxdb.url}"\ndatabase = "pi"')
    own_influxdb.stop()
    daemon = Daemon(config).start()
    daemon.wait_for(lambda s: s["spool"]["points"] > 50)
    daemon.kill()
    copy = tmp_path / "spool-copy"  # reading acknowledges, so read a copy
    shutil.copytree(tmp_path / "state" / "spool", copy)
    spool = DiskSpool(copy, 10**9)
    spooled = []
    while (record := spool.head()) is not None:
        spooled += [
            int(line.rsplit(" ", 1)[1]) for line in record.lines if line.startswith("system,")
        ]
        spool.ack()
    spool.close()
    assert spooled
    own_influxdb.start()
    daemon = Daemon(config).start()
    try:
        daemon.wait_for(lambda s: s["spool"]["points"] == 0 and s["points"]["written"] > 0)
    finally:
        daemon.stop()
    assert set(spooled) <= set(load_stamps(own_influxdb))


def test_a_full_spool_drops_the_oldest_counts_them_and_runs_on(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        'url = "http://127.0.0.1:9"',
        agent="spool_max_bytes = 4096",
        interval="100ms",
    )
    daemon = Daemon(config).start()
    try:
        state = daemon.wait_for(lambda s: s["points"]["dropped"].get("spool_full", 0) > 0, 60)
        assert state["spool"]["bytes"] <= 4096 + 2048  # the cap, give or take a record
        later = daemon.wait_for(
            lambda s: s["points"]["collected"] > state["points"]["collected"] + 20
        )
        assert later["points"]["dropped"]["spool_full"] >= state["points"]["dropped"]["spool_full"]
    finally:
        assert daemon.stop() == 0
    assert daemon.stderr.count("dropped the oldest") >= 1


def test_a_point_of_the_wrong_type_is_dropped_the_rest_land(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    from pitelemetry.writer import V1Writer  # noqa: PLC0415

    writer = V1Writer(influxdb.url, database=database)
    writer.write([f'mem,host=e2e-pi total_bytes="a string" {time.time_ns() - 10**12}'])
    writer.close()
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    daemon = Daemon(config).start()
    try:
        state = daemon.wait_for(lambda s: s["points"]["dropped"].get("rejected", 0) >= 3)
        assert state["spool"]["points"] == 0  # not retried forever
    finally:
        daemon.stop()
    assert "field type conflict" in daemon.stderr
    assert influxdb.rows("SELECT count(load1) FROM system", database)[0]["count"] >= 3
    assert (
        len(influxdb.rows("SELECT used_pct FROM mem", database)) == 0
    )  # refused, as a whole point


def test_a_corrupt_spool_file_is_moved_aside_and_the_daemon_runs(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    spool_dir = tmp_path / "state" / "spool"
    spool_dir.mkdir(parents=True)
    (spool_dir / "000000000001.seg").write_bytes(b"PTS1" + b"\xff" * 300)
    (spool_dir / "000000000002.seg").write_bytes(b"")
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    daemon = Daemon(config).start()
    try:
        daemon.wait_for(lambda s: s["points"]["written"] > 0)
    finally:
        assert daemon.stop() == 0
    assert "moved it to" in daemon.stderr
    assert list((spool_dir / "corrupt").iterdir())


def test_status_reads_the_running_daemon(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    daemon = Daemon(config).start()
    try:
        daemon.wait_for(lambda s: s["points"]["written"] > 0)
        done = daemon.command("status")
    finally:
        daemon.stop()
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("pitelemetry 0.1.0, pid ")
    assert any(line.startswith("system ") for line in lines)
    gone = daemon.command("status")
    assert gone.returncode == 1
    assert "not running" in gone.stderr
    health = influxdb.rows(
        "SELECT written, spool_points FROM pitelemetry WHERE scope = 'agent'", database
    )
    assert health
    assert health[-1]["spool_points"] == 0


def test_bad_credentials_keep_spooling_and_say_so(tmp_path: Path) -> None:
    server = InfluxDB1(tmp_path / "influxdb")
    server.config_path.write_text(
        server.config_path.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n")
    )
    server.start()
    try:
        server.query("CREATE USER admin WITH PASSWORD 'right' WITH ALL PRIVILEGES")
        (tmp_path / "password").write_text("wrong\n")
        config = write_config(
            tmp_path,
            f'url = "{server.url}"\nusername = "admin"\npassword_file = "{tmp_path}/password"',
        )
        daemon = Daemon(config).start()
        try:
            state = daemon.wait_for(lambda s: s["spool"]["points"] > 0)
            assert "check [influxdb] username and password_file" in state["influxdb"]["problem"]
            check = daemon.command("check")
        finally:
            daemon.stop()
        assert check.returncode == 1
        assert "FAIL influxdb" in check.stdout
        assert "check [influxdb] username and password_file" in check.stdout
        assert daemon.stderr.count("authorization failed") == 1  # logged once
    finally:
        server.stop()


def test_a_missing_database_spools_until_it_exists(tmp_path: Path, influxdb: InfluxDB1) -> None:
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "later"')
    daemon = Daemon(config).start()
    try:
        state = daemon.wait_for(lambda s: s["spool"]["points"] > 0)
        assert "pitelemetry provision" in state["influxdb"]["problem"]
        influxdb.create_database("later")
        daemon.wait_for(lambda s: s["spool"]["points"] == 0 and not s["influxdb"]["problem"], 90)
    finally:
        daemon.stop()
    try:
        assert influxdb.rows("SELECT count(load1) FROM system", "later")[0]["count"] >= 2
    finally:
        influxdb.drop_database("later")


def test_sighup_reloads_a_valid_config_and_keeps_running_on_a_bad_one(
    tmp_path: Path, influxdb: InfluxDB1, database: str
) -> None:
    config = write_config(tmp_path, f'url = "{influxdb.url}"\ndatabase = "{database}"')
    daemon = Daemon(config).start()
    assert daemon.process is not None
    try:
        first = daemon.wait_for(lambda s: s["points"]["written"] > 0)
        config.write_text(config.read_text().replace('site = "lab"', 'site = "attic"'))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda s: s["started"] > first["started"] and s["points"]["written"] > 0)
        config.write_text(config.read_text() + "\n[broken\n")
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(2)
        assert daemon.process.poll() is None  # still running, on the last good config
        assert daemon.process.pid == first["pid"]  # reloaded in place: systemd sees one PID
    finally:
        daemon.stop()
    assert "not reloading, the config has an error" in daemon.stderr
    sites = {r["site"] for r in influxdb.rows("SELECT load1 FROM system GROUP BY site", database)}
    assert sites == {"lab", "attic"}
