"""Alert rules, contact points and the notification route, provisioned into the fake
Grafana (which follows Grafana's alerting provisioning contract), InfluxDB real."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitelemetry import alerting, check, cli
from pitelemetry.config import Config, ConfigError, load
from pitelemetry.provision import Change, ProvisionError, provision, write_files_to
from tests.fake_grafana import TOKEN, FakeGrafana
from tests.servers import InfluxDB1

FREEZER = """
[[inputs.system]]
[[inputs.ds18b20]]
names = {{ "28-0316a2794cff" = "freezer" }}

[alerts]
contact = "phone"

[[alerts.contacts]]
name = "phone"
type = "telegram"
chat_id = "123456789"
bot_token_file = "{tmp}/telegram.token"

[[alerts.rules]]
name = "Freezer too warm"
measurement = "environment"
field = "temperature_c"
where = {{ name = "freezer" }}
above = -15.0
for = "10m"

[[alerts.rules]]
name = "Freezer sensor silent"
measurement = "environment"
field = "temperature_c"
where = {{ name = "freezer" }}
no_data_for = "30m"
"""
BOT_TOKEN = "110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana() as fake:
        yield fake


def freezer_config(tmp: Path, influx: InfluxDB1, grafana: FakeGrafana, extra: str = "") -> Config:
    (tmp / "grafana.token").write_text(TOKEN)
    (tmp / "telegram.token").write_text(BOT_TOKEN + "\n")
    path = tmp / "pitelemetry.toml"
    path.write_text(
        f'[agent]\nstate_dir = "{tmp}/state"\n'
        f'[influxdb]\nurl = "{influx.url}"\ndatabase = "alerts"\n'
        f'[grafana]\nurl = "{grafana.url}"\ntoken_file = "{tmp}/grafana.token"\n'
        + FREEZER.format(tmp=tmp)
        + extra
    )
    return load(path, environ={})


def actions(changes: list[Change]) -> dict[str, str]:
    return {c.subject: c.action for c in changes}


def test_one_provision_gives_rules_a_contact_point_and_a_route(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    changes = actions(list(provision(config, wait=3)))
    assert changes["contact point 'phone' (telegram)"] == "created"
    assert changes["alert rule 'Freezer too warm'"] == "created"
    assert changes["notification route to 'phone' for pitelemetry's alerts"] == "updated"
    titles = {rule["title"] for rule in grafana.rules()}
    assert titles == {
        "Freezer too warm",
        "Freezer sensor silent",
        "Pi under-voltage",
        "Pi browned out",
        "CPU at or above 80 °C",
        "Disk at or above 90 % used",
        "Sensor silent",
        "Pi silent",
        "Readings waiting in the spool",
        "Readings dropped",
    }
    [point] = grafana.state.contact_points.values()
    assert point["settings"] == {"chatid": "123456789", "bottoken": BOT_TOKEN}
    [route] = grafana.state.policies["routes"]
    assert route["receiver"] == "phone"
    assert route["object_matchers"] == [["managed_by", "=", "pitelemetry"]]
    # Everything written stays editable in Grafana's UI.
    assert grafana.state.provenance
    assert all(unlocked for _, _, unlocked in grafana.state.provenance)
    assert "provenance" not in grafana.state.policies
    warm = next(r for r in grafana.rules() if r["title"] == "Freezer too warm")
    assert warm["for"] == "10m"
    assert warm["data"][2]["model"]["conditions"] == [
        {"evaluator": {"type": "gt", "params": [-15.0]}}
    ]
    assert "$host" not in warm["data"][0]["model"]["query"]
    assert 'GROUP BY "host", "name"' in warm["data"][0]["model"]["query"]
    assert "{{ $labels.host }} {{ $labels.name }}" in warm["annotations"]["summary"]
    assert BOT_TOKEN not in str([(c.subject, c.detail) for c in provision(config, wait=3)])


def test_the_second_provision_changes_nothing(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    list(provision(config, wait=3))
    writes = len(grafana.writes())
    again = list(provision(config, wait=3))
    assert {c.action for c in again} == {"unchanged", "reached"}
    assert len(grafana.writes()) == writes


def test_a_user_route_and_contact_point_survive(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    grafana.state.contact_points["mine"] = {
        "uid": "mine",
        "name": "my email",
        "type": "email",
        "settings": {"addresses": "me@example.com"},
        "disableResolveMessage": False,
        "provenance": "",
    }
    mine = {"receiver": "my email", "object_matchers": [["team", "=", "garden"]]}
    grafana.state.policies = {"receiver": "grafana-default-email", "routes": [mine]}
    config = freezer_config(tmp_path, influxdb, grafana)
    list(provision(config, wait=3))
    assert grafana.state.policies["routes"][1:] == [mine]
    assert grafana.state.policies["receiver"] == "grafana-default-email"
    assert grafana.state.contact_points["mine"]["settings"] == {"addresses": "me@example.com"}


def test_a_rule_edited_in_grafana_is_kept_unless_forced(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    list(provision(config, wait=3))
    grafana.edit_rule("pitelemetry-cpu_temperature", **{"for": "15m"})
    kept = actions(list(provision(config, wait=3)))
    assert kept["alert rule 'CPU at or above 80 °C'"] == "kept"
    cpu = next(r for r in grafana.rules() if r["uid"] == "pitelemetry-cpu_temperature")
    assert cpu["for"] == "15m"
    forced = actions(list(provision(config, wait=3, force=True)))
    assert forced["alert rule 'CPU at or above 80 °C'"] == "updated"
    cpu = next(r for r in grafana.rules() if r["uid"] == "pitelemetry-cpu_temperature")
    assert cpu["for"] == "5m"


def test_disabled_defaults_and_dry_run(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    path = Path(config.path)
    disable = 'contact = "phone"\ndisable = ["disk_full", "points_dropped"]'
    path.write_text(path.read_text().replace('contact = "phone"', disable))
    config = load(path, environ={})
    changes = list(provision(config, wait=3, dry_run=True))
    assert actions(changes)["alert rule 'Freezer too warm'"] == "would create"
    assert "alert rule 'Disk at or above 90 % used'" not in actions(changes)
    assert grafana.writes() == []
    assert BOT_TOKEN not in str([(c.subject, c.detail) for c in changes])


def test_a_removed_rule_leaves_the_group(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    list(provision(config, wait=3))
    path = Path(config.path)
    path.write_text(path.read_text().replace("[alerts]\n", "[alerts]\ndefaults = false\n"))
    changes = actions(list(provision(load(path, environ={}), wait=3)))
    assert changes["alert rule 'Pi silent'"] == "removed"
    assert {r["title"] for r in grafana.rules()} == {"Freezer too warm", "Freezer sensor silent"}


@pytest.mark.parametrize(
    ("alerts", "key"),
    [
        ('[[alerts.contacts]]\nname = "a"\ntype = "telegram"\nchat_id = "1"', "bot_token_file"),
        ('[[alerts.contacts]]\nname = "a"\ntype = "sms"', "type"),
        ('[alerts]\ncontact = "nobody"', "alerts.contact"),
        ('[alerts]\ndisable = ["cpu_temp"]', "alerts.disable[0]"),
        (
            '[[alerts.rules]]\nname = "r"\nmeasurement = "m"\nfield = "f"\nabove = 1.0\n'
            "below = 0.0",
            "alerts.rules[0]",
        ),
        (
            '[[alerts.rules]]\nname = "r"\nmeasurement = "m"\nfield = "f"\nabove = 1.0\nfor = 5',
            "for",
        ),
        ('[[alerts.contacts]]\nname = "a"\ntype = "discord"\nurl = "https://x"', "url_file"),
    ],
)
def test_alert_config_problems_name_the_key(tmp_path: Path, alerts: str, key: str) -> None:
    path = tmp_path / "pitelemetry.toml"
    path.write_text("[[inputs.system]]\n" + alerts + "\n")
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load(path, environ={})


def test_durations_are_sent_as_grafana_stores_them() -> None:
    assert [alerting.prom_duration(s) for s in (0, 600, 5400, 86400, 90, 604800)] == [
        "0s",
        "10m",
        "1h30m",
        "1d",
        "1m30s",
        "1w",
    ]


def test_alerts_test_sends_through_grafana(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana, capsys: pytest.CaptureFixture[str]
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    assert cli.main(["alerts", "test", "--config", config.path]) == 0
    out = capsys.readouterr().out
    assert "ok   phone (telegram): Grafana sent a test notification" in out
    [sent] = grafana.state.tested
    settings = sent["receivers"][0]["grafana_managed_receiver_configs"][0]["settings"]
    assert settings == {"chatid": "123456789", "bottoken": BOT_TOKEN}
    assert BOT_TOKEN not in out
    assert cli.main(["alerts", "test", "nobody", "--config", config.path]) == 2


def test_check_lists_contacts_and_flags_a_rule_without_series(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    influxdb.create_database("alerts")  # provision's job; nothing written to it yet
    try:
        lines = [r.render() for r in check.run_checks(config)]
    finally:
        influxdb.drop_database("alerts")
    said = {line.split(None, 2)[2]: line.split()[0] for line in lines if " alerts " in line}
    assert said["contact point 'phone' (telegram)"] == "ok"
    # Nothing was written: the user's rules fail, the defaults are listed.
    verdicts = {text.split(" finds")[0]: verdict for text, verdict in said.items()}
    assert verdicts["rule 'Freezer too warm'"] == "FAIL"
    assert verdicts["rule 'Pi silent'"] == "ok"


def test_write_files_gives_grafanas_alerting_file_without_secrets(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    config = freezer_config(tmp_path, influxdb, grafana)
    written = write_files_to(config, tmp_path / "out")
    [path] = [p for p in written if "alerting" in p.parts]
    text = path.read_text()
    assert BOT_TOKEN not in text
    document = json.loads(text.split("\n", 1)[1])  # JSON is YAML: Grafana reads it
    [point] = document["contactPoints"]
    assert point["receivers"][0]["settings"]["bottoken"] == f"$__file{{{tmp_path}/telegram.token}}"
    [group] = document["groups"]
    assert group["folder"] == "Pi telemetry"
    assert group["interval"] == "1m"
    receivers = {r["notification_settings"]["receiver"] for r in group["rules"]}
    assert receivers == {"phone"}  # the route, without replacing the user's policy tree


def test_the_daemon_needs_no_alert_secret_provisioning_does(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    """The collector's unit is not given the contact points' secrets: its config loads
    without them; check and provision say which key's file is missing."""
    config = freezer_config(tmp_path, influxdb, grafana)
    (tmp_path / "telegram.token").unlink()
    config = load(config.path, environ={})  # what the daemon does: fine
    key = "alerts.contacts[0].bot_token_file"
    lines = [r.render() for r in check.run_checks(config)]
    assert any(line.startswith("FAIL") and key in line for line in lines)
    with pytest.raises(ProvisionError, match=re.escape(key)):
        list(provision(config, wait=3))


def test_a_restore_puts_back_what_was_edited_in_grafana(
    tmp_path: Path, influxdb: InfluxDB1, grafana: FakeGrafana
) -> None:
    """Pi A's Grafana holds an edited dashboard, an edited rule and a rule of the user's
    own in pitelemetry's group; its backup's copies bring all three back on Pi B's fresh
    Grafana after provisioning, and provisioning B again keeps them."""
    from pitelemetry.backup import _grafana_objects  # noqa: PLC0415
    from pitelemetry.provision import restore_edits  # noqa: PLC0415

    config = freezer_config(tmp_path, influxdb, grafana)
    list(provision(config, wait=3))
    grafana.edit_dashboard("pitelemetry-home", "My home")
    grafana.edit_rule("pitelemetry-cpu_temperature", **{"for": "15m"})
    (group,) = grafana.state.rule_groups.values()
    mine = dict(group["rules"][0], uid="my-greenhouse", title="Greenhouse", labels={"x": "y"})
    group["rules"].append(mine)
    saved = tmp_path / "backup" / "grafana"
    saved.parent.mkdir()
    assert _grafana_objects(config, saved, print)

    with FakeGrafana() as fresh:
        b = tmp_path / "b"
        b.mkdir()
        config_b = freezer_config(b, influxdb, fresh)
        list(provision(config_b, wait=3))
        assert fresh.state.dashboards["pitelemetry-home"]["dashboard"]["title"] == "Home"
        restored = actions(list(restore_edits(config_b, saved)))
        assert restored == {
            "dashboard 'My home'": "restored",
            "alert rule 'CPU at or above 80 °C'": "restored",
            "alert rule 'Greenhouse'": "restored",
        }
        assert fresh.state.dashboards["pitelemetry-home"]["dashboard"]["title"] == "My home"
        rules = {r["uid"]: r for r in fresh.rules()}
        assert rules["pitelemetry-cpu_temperature"]["for"] == "15m"
        assert rules["my-greenhouse"]["title"] == "Greenhouse"
        assert len(rules) == len(group["rules"])
        again = actions(list(provision(config_b, wait=3)))
        assert again["dashboard 'Home'"] == "kept"
        assert again["alert rule 'CPU at or above 80 °C'"] == "kept"
        assert "my-greenhouse" in {r["uid"] for r in fresh.rules()}
