"""No bad config ends in a traceback: wrong types, out-of-range numbers, empty and
duplicate names, unknown enum values, bad URLs and secret files that are not secrets,
through ``check``, ``once``, ``run`` and ``provision --dry-run``: exit 2 with the key
named, before any network or hardware is touched."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import subprocess
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pitelemetry import cli
from pitelemetry.config import ConfigError, load
from pitelemetry.inputs.registry import INPUTS, options_class
from pitelemetry.values import Duration, Secret

COMMANDS = (["check"], ["once"], ["run"], ["provision", "--dry-run", "--wait", "0"])

# A valid table of every input type: each test breaks one key of one of them.
VALID: dict[str, dict[str, Any]] = {
    "system": {},
    "ds18b20": {"names": {"28-0316a2794cff": "living_room"}},
    "bme280": {"address": 0x76, "name": "hallway"},
    "dht22": {"name": "bathroom"},
    "pulse": {"pin": 17, "name": "house"},
    "contact": {"pin": 27, "name": "front_door"},
    "mcp3008": {"channel": 0, "field": "moisture_pct", "raw_min": 0.78, "raw_max": 0.35},
    "mqtt": {"broker": "tcp://127.0.0.1:1883", "preset": "zigbee2mqtt"},
    "stocks": {"symbols": ["AAPL"]},
}

# Values each key refuses beyond a wrong type: out of range, empty, unknown. A
# "kind.key" entry is for that input type's key alone.
OUT_OF_RANGE: dict[str, list[Any]] = {
    "pin": [28, 99, 10**6],
    "address": [0, 2, 0x78, 0x99, 0xFFFF],
    "channel": [8, 9, 100],
    "device": [2, 7],  # mcp3008: CE0/CE1; dht22 takes a string (wrong type below)
    "qos": [3, 9],
    "reads": [0, 11],
    "max_series": [0],
    "max_payload_bytes": [0, 2**40],
    "pulses_per_unit": [0, -1.5, math.inf, math.nan],
    "meter_start": [-1.0, math.inf],
    "raw_max": [0.0],  # with raw_min 0.0 below: equal calibration points
    "altitude_m": [math.nan, -math.inf],
    "name": ["   ", "\t\n"],
    "field": ["", "time"],
    "mcp3008.field": ["raw"],  # its own second field
    "broker": ["ftp://broker.lan", "tcp://", "tcp://broker..lan:1883", "tcp://h:99999", "h"],
    "fx_url": ["ftp://x", "http://[::1", "no-scheme"],
    "base_url": ["gopher://x", "http://a b"],
    "base_currency": ["euro", "E"],
    "symbols": [[], [""], ["   "]],
    "preset": ["bogus", "Tasmota"],
    "kind": ["fridge", ""],
    "provider": ["bloomberg"],
    "log_level": ["verbose"],
    "keepalive": ["999999s"],
    "mount_points": [["boot"]],
    "interfaces": [[""], ["a/b"]],
}

BAD_DURATIONS = [5, "abc", "0s", "-1s", "0.000001ms", "1" + "0" * 400 + "d", "10"]


def toml(value: Any) -> str:
    """``value`` as TOML (an inline table for a dict)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            f"\\u{ord(c):04x}" if ord(c) < 0x20 or c in '\x7f"\\' else c for c in value
        )
        return f'"{escaped}"'  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml(str(k))} = {toml(v)}" for k, v in value.items()) + " }"


def config_text(
    tmp: Path, tables: list[tuple[str, dict[str, Any]]], top: str = "", agent: str = ""
) -> str:
    lines = [f'[agent]\nstate_dir = "{tmp}/state"\nruntime_dir = "{tmp}/run"\n{agent}\n', top]
    for kind, table in tables:
        lines.append(f"[[inputs.{kind}]]")
        lines.extend(f"{json.dumps(key)} = {toml(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


def wrong_types(hint: Any) -> list[Any]:
    """Values of a type the key does not take."""
    origin = typing.get_origin(hint)
    if hint is Duration:
        return BAD_DURATIONS
    if hint == Secret | None:
        return [5, ["x"]]
    if hint is bool:
        return ["yes", 1]
    if hint is int:
        return ["1", 1.5, True, -1]
    if hint is float:
        return ["1.5", True, [1]]
    if hint is str or origin is typing.Literal:
        return [5, ["x"], {"a": 1}]
    if origin is tuple:
        return ["x", {"a": 1}]
    if origin in (dict, Mapping):
        return ["x", [1]]
    if dataclasses.is_dataclass(hint):
        return ["x", 5]
    return [{"a": 1}]


def bad_values(kind: str) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(options_class(kind))
    bad: list[tuple[str, Any]] = []
    for spec in dataclasses.fields(options_class(kind)):
        hint = hints[spec.name]
        optional = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) is types.UnionType and hint != Secret | None:
            (hint,) = optional  # "float | None": a float or absent
        bad += [(spec.name, v) for v in wrong_types(hint)]
        bad += [(spec.name, v) for v in OUT_OF_RANGE.get(spec.name, [])]
        bad += [(spec.name, v) for v in OUT_OF_RANGE.get(f"{kind}.{spec.name}", [])]
    bad += [("interval", v) for v in BAD_DURATIONS]
    bad += [("tags", v) for v in ["x", {"time": "x"}, {"_field": "x"}, {"k": 5}]]
    return bad


CASES = [(kind, key, value) for kind in VALID for key, value in bad_values(kind)]


def run_cli(config: Path, command: list[str]) -> tuple[int, str]:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main([*command, "--config", str(config)])
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # `run` holds it
    return code, stderr.getvalue()


def assert_refused(config: Path, key: str) -> None:
    """``load`` refuses it naming ``key``, so every command exits 2 before doing anything
    (a config that loaded would reach the network: ``run`` is only tried after this)."""
    with pytest.raises(ConfigError) as refused:
        load(config, environ={})
    assert key in str(refused.value), (key, str(refused.value))
    for command in COMMANDS:
        code, stderr = run_cli(config, command)
        assert code == cli.EXIT_USAGE, (command, stderr)
        assert key in stderr, (command, stderr)
        assert str(config) in stderr, (command, stderr)
        assert "Traceback" not in stderr


def test_the_cases_cover_every_input_and_key() -> None:
    missing = set(INPUTS) - set(VALID)
    assert not missing, f"add a valid table of {sorted(missing)} to VALID in this file"
    for kind in INPUTS:
        keys = {key for k, key, _ in CASES if k == kind}
        assert {f.name for f in dataclasses.fields(options_class(kind))} <= keys, kind


@pytest.mark.parametrize(("kind", "key", "value"), CASES)
def test_a_bad_key_is_exit_2_naming_it_in_every_command(
    tmp_path: Path, kind: str, key: str, value: Any
) -> None:
    table = dict(VALID[kind])
    if key == "raw_max":
        table["raw_min"] = 0.0
    table[key] = value
    tables = [(other, VALID[other]) for other in VALID if other != kind] + [(kind, table)]
    config = tmp_path / f"{kind}-{key}.toml"
    config.write_text(config_text(tmp_path, tables))
    assert_refused(config, key)


# A value its key takes may break a rule between two keys, reported on the other one:
# an MQTT input with no preset needs rules.
RELATED = {("mqtt", "preset"): "rules"}

# Anything TOML can hold, for any key of any input.
JUNK = st.recursive(
    st.none().map(lambda _: "")
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


# The same 400 cases every run, so CI is repeatable; 6,000 random ones found nothing
# more (run it with derandomize=False and more examples to search further).
@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_value_for_any_key_loads_or_is_refused_naming_the_key(
    tmp_path: Path, data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(sorted(VALID)))
    keys = [f.name for f in dataclasses.fields(options_class(kind))]
    key = data.draw(st.sampled_from([*keys, "interval", "timeout", "tags"]))
    table = {**VALID[kind], key: data.draw(JUNK)}
    config = tmp_path / "junk.toml"
    config.write_text(config_text(tmp_path, [(kind, table)]))
    try:
        load(config, environ={})
    except ConfigError as exc:
        refused = exc
    else:
        return  # a value the key takes
    named = (f"inputs.{kind}[0].{key}", f"inputs.{kind}[0].{RELATED.get((kind, key), key)}")
    assert refused.key.startswith(named), str(refused)
    code, stderr = run_cli(config, ["once"])
    assert code == cli.EXIT_USAGE, stderr


# Two inputs that cannot both have what they ask for.
CLASHES = [
    ("pulse", {"pin": 17}, "contact", {"pin": 17}, "GPIO17 is already used by"),
    ("bme280", {"address": 0x76}, "bme280", {"address": 0x76, "name": "b"}, "0x76 is already"),
    ("contact", {"pin": 5, "name": "door"}, "contact", {"pin": 6, "name": "door"}, "'door' is"),
    ("mcp3008", {"channel": 1, "field": "x"}, "mcp3008", {"channel": 1, "field": "y"}, "CE0"),
    ("pulse", {"pin": 5}, "pulse", {"pin": 6, "name": "gpio5"}, "name 'gpio5' is already"),
]


@pytest.mark.parametrize(("kind1", "table1", "kind2", "table2", "problem"), CLASHES)
def test_two_inputs_on_one_pin_address_or_name_are_refused(
    tmp_path: Path,
    kind1: str,
    table1: dict[str, Any],
    kind2: str,
    table2: dict[str, Any],
    problem: str,
) -> None:
    config = tmp_path / "clash.toml"
    config.write_text(config_text(tmp_path, [(kind1, table1), (kind2, table2)]))
    with pytest.raises(ConfigError, match=problem) as refused:
        load(config, environ={})
    assert refused.value.key.startswith(f"inputs.{kind2}[")


@pytest.mark.parametrize(
    ("top", "key"),
    [
        ('[influxdb]\nurl = "http://influx..lan:8086"', "influxdb.url"),
        ('[grafana]\nurl = "grafana:3000"', "grafana.url"),
        ('[influxdb]\nusername = "pi"\npassword_file = "/nonexistent/secret"', "password_file"),
        ('[influxdb]\nusername = "pi"\npassword_file = "/dev/zero"', "password_file"),
        ('[influxdb]\nusername = "pi"\npassword_file = "/"', "password_file"),
        ('[grafana]\ntoken_file = "{tmp}/binary"', "token_file"),
    ],
)
def test_bad_servers_and_secret_files_are_exit_2(tmp_path: Path, top: str, key: str) -> None:
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00\x81")
    config = tmp_path / "top.toml"
    config.write_text(config_text(tmp_path, [("system", {})], top.format(tmp=tmp_path)))
    assert_refused(config, key)


@pytest.mark.parametrize(
    ("agent", "key"),
    [("batch_size = 0", "batch_size"), ('interval = "0.000001ms"', "interval")],
)
def test_bad_agent_keys_are_exit_2(tmp_path: Path, agent: str, key: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(config_text(tmp_path, [("system", {})], agent=agent))
    assert_refused(config, f"agent.{key}")


# The bad configs a user reported, run as they would: the installed command, its stderr.
REPORTED = [
    ("pulse", {"pin": 17, "pulses_per_unit": 0}, "pulses_per_unit"),
    ("mqtt", {"broker": "tcp://127.0.0.1:1883"}, "rules"),
    ("mcp3008", {"channel": 9, "field": "moisture"}, "channel"),
    ("mcp3008", {"channel": 0, "field": "m", "raw_min": 0.5, "raw_max": 0.5}, "raw_max"),
    ("mqtt", {"broker": "ftp://broker.lan"}, "broker"),
    ("contact", {"pin": 99}, "pin"),
    ("ds18b20", {"names": {"28-0316a2794cff": " "}}, "names.28-0316a2794cff"),
    ("bme280", {"address": 0x99}, "address"),
]


@pytest.mark.parametrize(("kind", "table", "key"), REPORTED)
def test_reported_bad_configs_end_cleanly_in_every_command(
    tmp_path: Path, kind: str, table: dict[str, Any], key: str
) -> None:
    config = tmp_path / "reported.toml"
    config.write_text(config_text(tmp_path, [(kind, table)]))
    for command in COMMANDS:
        done = subprocess.run(
            [sys.executable, "-m", "pitelemetry", *command, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "CREDENTIALS_DIRECTORY": ""},
        )
        assert done.returncode == 2, (command, done.stderr)
        assert f"inputs.{kind}[0].{key}" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr
