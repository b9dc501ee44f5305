"""``pitelemetry provision`` against the real InfluxDB 1.x and the fake Grafana."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from pitelemetry import dashboards
from pitelemetry.cli import main
from pitelemetry.config import Config, load
from pitelemetry.provision import Change, ProvisionError, provision, write_files_to
from tests.conftest import ROOT
from tests.fake_grafana import TOKEN, FakeGrafana
from tests.fake_influx import TOKEN as INFLUX_TOKEN
from tests.fake_influx import FakeInflux
from tests.servers import InfluxDB1, free_port


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def make_config(
    tmp_path: Path,
    influx_url: str,
    database: str,
    grafana_url: str,
    extra: str = "",
    token: str = TOKEN,
) -> Config:
    (tmp_path / "grafana.token").write_text(token)
    path = tmp_path / "pitelemetry.toml"
    path.write_text(f"""
[influxdb]
url = "{influx_url}"
database = "{database}"
{extra}

[grafana]
url = "{grafana_url}"
token_file = "{tmp_path}/grafana.token"

[[inputs.system]]
[[inputs.ds18b20]]
names = {{ "28-0316a2794cff" = "living_room" }}
[[inputs.pulse]]
pin = 17
name = "house"
[[inputs.contact]]
pin = 27
name = "front_door"
""")
    return load(path, environ={})


def actions(changes: list[Change]) -> dict[str, str]:
    return {c.subject: c.action for c in changes}


# -- the fake follows the contract --------------------------------------------------------


def test_fake_grafana_answers_as_documented(grafana: FakeGrafana) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    api = grafana.url + "/api"
    assert requests.get(api + "/health", timeout=5).json()["database"] == "ok"
    assert requests.get(api + "/folders/x", timeout=5).status_code == 401
    no_access = requests.post(
        api + "/datasources", json={"name": "a", "type": "influxdb"}, headers=auth, timeout=5
    )
    assert (no_access.status_code, no_access.json()["message"]) == (400, "bad request data")
    body = {"name": "a", "type": "influxdb", "access": "proxy", "uid": "a"}
    assert requests.post(api + "/datasources", json=body, headers=auth, timeout=5).ok
    again = requests.post(api + "/datasources", json=body, headers=auth, timeout=5)
    assert again.status_code == 409
    lost = requests.post(
        api + "/dashboards/db",
        json={"dashboard": {"title": "t"}, "folderUid": "nope"},
        headers=auth,
        timeout=5,
    )
    assert (lost.status_code, lost.json()["message"]) == (400, "folder not found")
    first = {"dashboard": {"title": "t", "uid": "t"}}
    assert requests.post(api + "/dashboards/db", json=first, headers=auth, timeout=5).ok
    stale = requests.post(api + "/dashboards/db", json=first, headers=auth, timeout=5)
    assert (stale.status_code, stale.json()["status"]) == (412, "version-mismatch")
    grafana.state.datasources["a"]["readOnly"] = True
    locked = requests.put(api + "/datasources/uid/a", json=body, headers=auth, timeout=5)
    assert locked.status_code == 403


# -- provisioning ----------------------------------------------------------------------------


def test_provision_twice_the_second_run_changes_nothing(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    database = "provtwice"
    config = make_config(tmp_path, influxdb.url, database, grafana.url)
    try:
        first = list(provision(config, wait=3))
        assert actions(first)["InfluxDB database 'provtwice'"] == "created"
        assert {c.action for c in first if c.subject.startswith("dashboard")} == {"created"}
        writes = len(grafana.writes())
        second = list(provision(config, wait=3))
        assert {c.action for c in second} == {"unchanged", "reached"}
        assert len(grafana.writes()) == writes  # no request that changes anything
        versions = {uid: r["dashboard"]["version"] for uid, r in grafana.state.dashboards.items()}
        assert set(versions.values()) == {1}  # no new dashboard version
        assert set(versions) == {"pitelemetry-pi-health", "pitelemetry-home", "pitelemetry-agent"}
        source = grafana.state.datasources["pitelemetry-influxdb"]
        assert source["access"] == "proxy"
        assert source["jsonData"]["dbName"] == database
        folder = grafana.state.dashboards["pitelemetry-home"]["folderUid"]
        assert folder == "pitelemetry"
    finally:
        influxdb.drop_database(database)


def test_dry_run_changes_nothing(tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana) -> None:
    config = make_config(tmp_path, influxdb.url, "provdry", grafana.url)
    changes = list(provision(config, wait=3, dry_run=True))
    assert actions(changes)["InfluxDB database 'provdry'"] == "would create"
    assert {c.action for c in changes if "dashboard" in c.subject} == {"would create"}
    assert grafana.writes() == []
    names = {r["name"] for r in influxdb.rows("SHOW DATABASES", "")}
    assert "provdry" not in names


def test_a_dashboard_edited_in_grafana_is_kept_unless_forced(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = make_config(tmp_path, influxdb.url, "provedit", grafana.url)
    try:
        list(provision(config, wait=3))
        grafana.edit_dashboard("pitelemetry-home", "My home")
        kept = [c for c in provision(config, wait=3) if c.subject == "dashboard 'Home'"]
        assert kept[0].action == "kept"
        assert "edited in Grafana" in kept[0].detail
        assert grafana.state.dashboards["pitelemetry-home"]["dashboard"]["title"] == "My home"
        forced = [
            c for c in provision(config, wait=3, force=True) if c.subject == "dashboard 'Home'"
        ]
        assert forced[0].action == "updated"
        assert grafana.state.dashboards["pitelemetry-home"]["dashboard"]["title"] == "Home"
    finally:
        influxdb.drop_database("provedit")


def test_a_changed_config_updates_only_what_changed(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = make_config(tmp_path, influxdb.url, "provchange", grafana.url)
    try:
        list(provision(config, wait=3))
        changed = make_config(
            tmp_path, influxdb.url, "provchange", grafana.url, extra='retention = "60d"'
        )
        result = actions(list(provision(changed, wait=3)))
        assert result["retention policy 'raw'"] == "updated"
        assert result["dashboard 'Home'"] == "unchanged"
        rps = {
            r["name"]: r["duration"]
            for r in influxdb.rows('SHOW RETENTION POLICIES ON "provchange"', "")
        }
        assert rps["raw"] == "1440h0m0s"
    finally:
        influxdb.drop_database("provchange")


def test_a_file_provisioned_data_source_is_left_alone(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = make_config(tmp_path, influxdb.url, "provro", grafana.url)
    try:
        list(provision(config, wait=3))
        grafana.state.datasources["pitelemetry-influxdb"]["readOnly"] = True
        source = next(
            c for c in provision(config, wait=3, force=True) if "data source" in c.subject
        )
        assert (source.action, source.detail) == (
            "kept",
            "provisioned from a file, read-only in the API",
        )
    finally:
        influxdb.drop_database("provro")


def test_grafana_still_starting_is_waited_for(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    grafana.state.starting = True
    threading.Timer(1.0, lambda: setattr(grafana.state, "starting", False)).start()
    config = make_config(tmp_path, influxdb.url, "provwait", grafana.url)
    try:
        changes = list(provision(config, wait=3))
        assert any(c.action == "reached" for c in changes)
    finally:
        influxdb.drop_database("provwait")


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("bad token", "check [grafana] token_file"),
        ("grafana down", "cannot reach Grafana at"),
        ("influxdb down", "is InfluxDB running?"),
    ],
)
def test_failures_name_what_failed_and_how_to_fix_it(
    tmp_path: Path,
    influxdb: InfluxDB1,
    grafana: FakeGrafana,
    problem: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    influx_url = f"http://127.0.0.1:{free_port()}" if problem == "influxdb down" else influxdb.url
    grafana_url = f"http://127.0.0.1:{free_port()}" if problem == "grafana down" else grafana.url
    token = "glsa_wrong" if problem == "bad token" else TOKEN
    config = make_config(tmp_path, influx_url, "provfail", grafana_url, token=token)
    try:
        with pytest.raises(ProvisionError, match=re.escape(message)):
            list(provision(config, wait=3))
        assert main(["provision", "--config", config.path, "--wait", "3"]) == 1
        assert message in capsys.readouterr().err
    finally:
        if problem != "influxdb down":
            influxdb.drop_database("provfail")
    # what was done before the failure is repaired by the next, good run
    if problem == "bad token":
        good = make_config(tmp_path, influx_url, "provfail", grafana_url)
        try:
            assert "created" in {c.action for c in provision(good, wait=3)}
        finally:
            influxdb.drop_database("provfail")


def test_cli_prints_a_summary_and_the_urls(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, influxdb.url, "provcli", grafana.url)
    try:
        assert main(["provision", "--config", config.path]) == 0
        out = capsys.readouterr().out
        assert re.search(r"\d+ created", out)
        assert f"open {grafana.url}/d/pitelemetry-pi-health" in out
        assert main(["provision", "--config", config.path, "--dry-run"]) == 0
        assert "dry run:" in capsys.readouterr().out
    finally:
        influxdb.drop_database("provcli")


# -- InfluxDB: retention, continuous query, downsampling -----------------------------------


def test_retention_policies_and_a_downsampled_point(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = make_config(
        tmp_path, influxdb.url, "provcq", grafana.url, extra='downsample_every = "2s"'
    )
    try:
        list(provision(config, wait=3))
        rps = {r["name"]: r for r in influxdb.rows('SHOW RETENTION POLICIES ON "provcq"', "")}
        assert rps["raw"]["duration"] == "720h0m0s"
        assert rps["raw"]["default"] is True
        assert rps["downsampled"]["duration"] == "17520h0m0s"
        cqs = influxdb.query("SHOW CONTINUOUS QUERIES")[0]["series"]
        [ours] = [s for s in cqs if s["name"] == "provcq"]
        assert ours["values"][0][0] == "pitelemetry_downsample"
        now = time.time_ns()
        from pitelemetry.writer import V1Writer  # noqa: PLC0415

        writer = V1Writer(influxdb.url, database="provcq")
        deadline = time.monotonic() + 20
        rows: list[dict[str, Any]] = []
        while not rows:
            assert time.monotonic() < deadline, "no downsampled point within 20 s"
            now = time.time_ns()
            writer.write(
                [
                    f"cpu,host=pi usage_pct={v} {now - i * 10**8}"
                    for i, v in enumerate((10.0, 20.0, 30.0))
                ]
            )
            time.sleep(0.5)
            rows = influxdb.rows('SELECT * FROM "provcq"."downsampled"."cpu"', "provcq")
        writer.close()
        assert "mean_usage_pct" in rows[0]
    finally:
        influxdb.drop_database("provcq")


# -- the dashboards ------------------------------------------------------------------------


# The SDK nudges towards its v2 schema; /api/dashboards/db takes the classic model.
@pytest.mark.filterwarnings("ignore:Prefer using dashboardv2:DeprecationWarning")
def test_dashboards_fit_grafanas_dashboard_model(tmp_path: Path) -> None:
    from grafana_foundation_sdk.models.dashboard import Dashboard  # noqa: PLC0415

    make_config(tmp_path, "http://127.0.0.1:8086", "x", "http://127.0.0.1:3000")
    path = tmp_path / "pitelemetry.toml"
    with path.open("a") as config_file:
        config_file.write(
            '[[inputs.stocks]]\nsymbols = ["AAPL", "VOD.L"]\nbase_currency = "EUR"\n'
            "[inputs.stocks.instruments.AAPL]\nquantity = 1\ncost_basis = 100.0\n"
        )
    boards = dashboards.generate(load(path, environ={}))
    assert [b["title"] for b in boards] == ["Pi health", "Home", "Markets", "pitelemetry"]
    for dashboard in boards:
        parsed = Dashboard.from_json(json.loads(json.dumps(dashboard)))
        again = json.loads(json.dumps(parsed.to_json(), default=_to_json))
        # Every key we write is a key of Grafana's model: none is dropped on the way
        # through it (the model adds its defaults, which Grafana would add too).
        assert _keys(dashboard) - _keys(again) == set(), dashboard["title"]
        for required in ("schemaVersion", "templating", "annotations", "title", "uid"):
            assert required in dashboard


def _to_json(value: object) -> object:
    to_json = getattr(value, "to_json", None)
    if to_json is not None:
        return to_json()
    return getattr(value, "value", str(value))


def _keys(value: object, prefix: str = "") -> set[str]:
    """Dotted paths of every key, list items folded."""
    found = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(prefix + key)
            found |= _keys(item, prefix + key + ".")
    elif isinstance(value, list):
        for item in value:
            found |= _keys(item, prefix + "[].")
    return found


def test_the_grafana_folder_matches_the_example_config(tmp_path: Path) -> None:
    config = load(ROOT / "examples" / "pitelemetry.toml", environ={})
    for path in write_files_to(config, tmp_path):
        shipped = ROOT / "grafana" / path.relative_to(tmp_path)
        assert shipped.exists(), f"grafana/ lacks {shipped.name}; run provision --write-files"
        assert shipped.read_text() == path.read_text(), (
            f"grafana/{path.relative_to(tmp_path)} is stale: run "
            "pitelemetry provision -c examples/pitelemetry.toml --write-files grafana"
        )


def test_the_stamp_skips_an_unchanged_config(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config(tmp_path, influxdb.url, "provstamp", grafana.url)
    stamp = tmp_path / "provisioned"
    command = ["provision", "--config", config.path, "--stamp", str(stamp), "--wait", "3"]
    try:
        assert main(command) == 0
        writes = len(grafana.writes())
        assert main(command) == 0
        assert "nothing changed since the last provision" in capsys.readouterr().out
        assert len(grafana.writes()) == writes
        (tmp_path / "grafana.token").write_text("glsa_rotated")  # a secret changed
        assert main(command) == 1  # so it runs again (and this token is refused)
    finally:
        influxdb.drop_database("provstamp")


# -- InfluxDB 2.x and 3 Core, against recorded API contracts ------------------------------


def v2_config(tmp_path: Path, influx: FakeInflux, grafana_url: str, extra: str = "") -> Config:
    (tmp_path / "influx.token").write_text(INFLUX_TOKEN)
    (tmp_path / "grafana.token").write_text(TOKEN)
    path = tmp_path / "v2.toml"
    path.write_text(f"""
[influxdb]
url = "{influx.url}"
org = "home"
bucket = "pi"
database = "pi"
token_file = "{tmp_path}/influx.token"
{extra}
[grafana]
url = "{grafana_url}"
token_file = "{tmp_path}/grafana.token"
[[inputs.system]]
""")
    return load(path, environ={})


def test_influxdb_2_bucket_dbrp_and_task_idempotent(tmp_path: Path, grafana: FakeGrafana) -> None:
    with FakeInflux("v2.7.11") as influx:
        config = v2_config(tmp_path, influx, grafana.url)
        first = actions(list(provision(config, wait=3)))
        assert first["InfluxDB bucket 'pi'"] == "created"
        assert first["InfluxDB bucket 'pi_downsampled'"] == "created"
        assert first["DBRP mapping 'pi'/raw"] == "created"
        assert first["InfluxDB task 'pitelemetry downsample'"] == "created"
        raw = next(b for b in influx.buckets.values() if b["name"] == "pi")
        assert raw["retentionRules"] == [{"type": "expire", "everySeconds": 30 * 86400}]
        [mapping] = influx.dbrps
        assert (
            mapping["bucketID"],
            mapping["database"],
            mapping["retention_policy"],
            mapping["default"],
        ) == (raw["id"], "pi", "raw", True)
        [task] = influx.tasks.values()
        assert 'to(bucket: "pi_downsampled")' in task["flux"]
        assert "every: 300s" in task["flux"]
        source = grafana.state.datasources["pitelemetry-influxdb"]
        assert source["jsonData"]["httpHeaderName1"] == "Authorization"
        assert source["secureJsonData"]["httpHeaderValue1"] == f"Token {INFLUX_TOKEN}"
        writes = len(influx.writes())
        second = list(provision(config, wait=3))
        assert {c.action for c in second} == {"unchanged", "reached"}
        assert len(influx.writes()) == writes
        longer = v2_config(tmp_path, influx, grafana.url, 'retention = "90d"')
        third = actions(list(provision(longer, wait=3)))
        assert third["InfluxDB bucket 'pi'"] == "updated"
        assert raw["retentionRules"] == [{"type": "expire", "everySeconds": 90 * 86400}]


def test_influxdb_2_wrong_org_or_token_is_named(tmp_path: Path, grafana: FakeGrafana) -> None:
    with FakeInflux("v2.7.11", org="elsewhere") as influx:
        config = v2_config(tmp_path, influx, grafana.url)
        with pytest.raises(ProvisionError, match="no organization 'home'"):
            list(provision(config, wait=3))
        (tmp_path / "influx.token").write_text("wrong")
        with pytest.raises(ProvisionError, match="needs an operator or all-access token"):
            list(provision(load(config.path, environ={}), wait=3))


def test_influxdb_3_core_database(tmp_path: Path, grafana: FakeGrafana) -> None:
    with FakeInflux("3.0.1") as influx:
        config = v2_config(tmp_path, influx, grafana.url)
        first = actions(list(provision(config, wait=3)))
        assert first["InfluxDB database 'pi'"] == "created"
        assert influx.databases == {"pi": "30d"}
        second = actions(list(provision(config, wait=3)))
        assert second["InfluxDB database 'pi'"] == "unchanged"
