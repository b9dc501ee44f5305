from __future__ import annotations

from pathlib import Path

import pytest

from pitelemetry.cli import main
from pitelemetry.config import ConfigError, load, parse_duration
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pitelemetry.toml"
    path.write_text(text)
    return path


def test_the_example_config_loads() -> None:
    config = load(ROOT / "examples" / "pitelemetry.toml", environ={})
    assert config.agent.interval == 10.0
    assert config.influxdb.api == "auto"
    assert [i.type for i in config.inputs] == ["system"]


def test_design_contract_keys_parse(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    path = write(
        tmp_path,
        f"""
[agent]
interval = "1m30s"
flush_interval = "500ms"
batch_size = 100
host = "pi-attic"
state_dir = "{tmp_path}"
spool_max_bytes = 1024

[influxdb]
url = "http://db.lan:8086"
api = "v1"
database = "home"
retention_policy = "raw"
username = "pi"
password_file = "{tmp_path}/pw"

[[inputs.system]]
interval = "2s"
timeout = "1s"
tags = {{ room = "attic" }}
per_cpu = true

[[inputs.system]]
""",
    )
    config = load(path, environ={})
    assert config.agent.interval == 90.0
    assert config.agent.flush_interval == 0.5
    assert config.influxdb.password_file is not None
    assert config.influxdb.password_file.reveal() == "s3cret"
    first, second = config.inputs
    assert (first.interval, first.timeout, dict(first.tags)) == (2.0, 1.0, {"room": "attic"})
    assert first.options.per_cpu is True
    assert (second.name, second.interval, second.timeout) == ("system#2", 90.0, 90.0)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[agent]\ninterval = "10 parsecs"', "agent.interval", "bad duration '10 parsecs'"),
        ("[agent]\ninterval = 10", "agent.interval", 'expected a duration like "10s"'),
        ('[agent]\nbatch_size = "many"', "agent.batch_size", "expected an integer"),
        ("[agent]\nintervall = '10s'", "agent.intervall", "unknown key; allowed keys: batch_size"),
        ('[influxdb]\napi = "v3"', "influxdb.api", "expected one of auto, v1, v2"),
        ('[influxdb]\nurl = "db:8086"', "influxdb.url", "must start with http://"),
        (
            "[[inputs.thermometer]]",
            "inputs.thermometer",
            "unknown input type; known: bme280, contact, dht22, ds18b20, mcp3008, mqtt, pulse, "
            "stocks, system",
        ),
        ("[[inputs.system]]\nper_cpu = 1", "inputs.system[0].per_cpu", "expected true or false"),
        (
            "[[inputs.system]]\ncolour = 1",
            "inputs.system[0].colour",
            "allowed keys: interfaces, interval, mount_points, per_cpu, tags, timeout",
        ),
        ("[[inputs.system]]\ntags = { a = 1 }", "inputs.system[0].tags.a", "expected a string"),
        ("[mystery]", "mystery", "unknown section"),
        ("[[inputs.pulse]]\nname = 'house'", "inputs.pulse[0].pin", "required key is missing"),
        (
            '[[inputs.pulse]]\npin = 17\nkind = "steam"',
            "inputs.pulse[0].kind",
            "expected one of electricity, water, gas",
        ),
    ],
)
def test_errors_name_file_key_and_what_is_allowed(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path, environ={})
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[agent]\ninterval = \n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2"):
        load(path, environ={})


def test_missing_secret_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[influxdb]\ntoken_file = "/nonexistent/token"\n')
    with pytest.raises(ConfigError, match="secret file not found: /nonexistent/token"):
        load(path, environ={})


def test_secrets_come_from_the_credentials_directory(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "influxdb.token").write_text("tok-default")
    (creds / "named").write_text("tok-named")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    config = load(write(tmp_path, "[influxdb]\n"), environ=env)
    assert config.influxdb.token_file is not None
    assert config.influxdb.token_file.reveal() == "tok-default"
    config = load(write(tmp_path, '[grafana]\ntoken_file = "named"\n'), environ=env)
    assert config.grafana.token_file is not None
    assert config.grafana.token_file.reveal() == "tok-named"


def test_outside_the_service_a_credential_name_is_found_in_the_credstore(
    tmp_path: Path,
) -> None:
    store = tmp_path / "credstore"
    store.mkdir()
    (store / "twelvedata.key").write_text("KEY\n")
    path = write(
        tmp_path,
        '[[inputs.stocks]]\nprovider = "twelvedata"\nsymbols = ["AAPL"]\n'
        'api_key_file = "twelvedata.key"\n',
    )
    config = load(path, environ={}, credstore=store)
    assert config.inputs[0].options.api_key_file.reveal() == "KEY"
    with pytest.raises(ConfigError, match=r"not found: twelvedata\.key or .*elsewhere"):
        load(path, environ={}, credstore=tmp_path / "elsewhere")


def test_secrets_never_show_in_repr(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2")
    config = load(write(tmp_path, f'[influxdb]\npassword_file = "{tmp_path}/pw"\n'), environ={})
    assert "hunter2" not in repr(config)
    assert "hunter2" not in str(config.influxdb.password_file)


@pytest.mark.parametrize(
    ("text", "seconds"), [("10s", 10), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1d", 86400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "s", "10 s", "10parsecs", "1h-5m", "ms10"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_cli_exits_2_and_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[agent]\nflush_interval = "soon"\n')
    assert main(["once", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: agent.flush_interval: bad duration 'soon'" in err


@pytest.mark.parametrize(
    ("url", "compression", "gzip"),
    [
        ("http://127.0.0.1:8086", "auto", False),
        ("http://localhost:8086", "auto", False),
        ("https://influx.example.org", "auto", True),
        ("http://127.0.0.1:8086", "gzip", True),
        ("https://influx.example.org", "none", False),
    ],
)
def test_gzip_only_pays_off_over_a_network(
    tmp_path: Path, url: str, compression: str, gzip: bool
) -> None:
    path = write(tmp_path, f'[influxdb]\nurl = "{url}"\ncompression = "{compression}"\n')
    assert load(path, environ={}).influxdb.use_gzip is gzip


def test_journal_lines_carry_priorities_not_timestamps(capsys: pytest.CaptureFixture[str]) -> None:
    import logging  # noqa: PLC0415

    from pitelemetry import logs  # noqa: PLC0415

    logs.setup("info", environ={"JOURNAL_STREAM": "8:1234"})
    logging.getLogger("pitelemetry.test").warning("spool full")
    logging.getLogger("pitelemetry.test").info("two\nlines")
    logs.setup("info", environ={})
    assert capsys.readouterr().err == (
        "<4>pitelemetry.test: spool full\n<6>pitelemetry.test: two\n<6>lines\n"
    )


def test_mqtt_rules_nest_under_their_input(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[inputs.mqtt]]
broker = "tcp://broker.lan:1883"
preset = "tasmota"

[[inputs.mqtt.rules]]
topic = "sensors/{room}/climate"
measurement = "mqtt_climate"
fields = ["temperature"]
""",
    )
    [mqtt] = load(path, environ={}).inputs
    [rule] = mqtt.options.rules
    assert (rule.topic, rule.measurement, rule.fields) == (
        "sensors/{room}/climate",
        "mqtt_climate",
        ("temperature",),
    )
    bad = write(tmp_path, '[[inputs.mqtt]]\n[[inputs.mqtt.rules]]\ntopic = "x"\n')
    with pytest.raises(ConfigError, match=r"inputs.mqtt\[0\].rules\[0\].measurement"):
        load(bad, environ={})
