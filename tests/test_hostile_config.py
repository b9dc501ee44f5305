"""Config and secret files that are not what they should be: each is exit 2 with the
file and key named, never a traceback, a hang or a flood of memory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

GOOD = '[agent]\nstate_dir = "{d}/state"\nruntime_dir = "{d}/run"\n[[inputs.system]]\n'


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pitelemetry", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,  # a FIFO read would hang here
        check=False,
    )


def secret_config(tmp_path: Path, secret: Path) -> Path:
    config = tmp_path / "pitelemetry.toml"
    config.write_text(
        GOOD.format(d=tmp_path) + f'[influxdb]\nusername = "pi"\npassword_file = "{secret}"\n'
    )
    return config


def binary(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(b"\xff\xfe\x00\x81password")
    return path


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    os.mkfifo(path)
    return path


def huge(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(b"x" * (1024 * 1024))
    return path


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (binary, "not UTF-8 text"),
        (fifo, "not a regular file"),
        (lambda _: Path("/dev/zero"), "not a regular file"),
        (huge, "1048576 bytes; a secret file holds at most 65536"),
    ],
)
def test_a_secret_file_that_is_not_a_secret(
    tmp_path: Path, make: Callable[[Path], Path], problem: str
) -> None:
    secret = make(tmp_path)
    done = check(secret_config(tmp_path, secret))
    assert done.returncode == 2
    assert f"influxdb.password_file: cannot read secret file {secret}: {problem}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[agent]\ninterval = "0.000001ms"\n', "agent.interval", "too short; the least is 100ms"),
        ('[agent]\nflush_interval = "1ms"\n', "agent.flush_interval", "too short"),
        (f'[agent]\ninterval = "{"9" * 400}s"\n', "agent.interval", "longer than ten years"),
        ('[[inputs.system]]\ninterval = "0.01s"\n', "inputs.system[0].interval", "too short"),
        ('[[inputs.system]]\ntags = { time = "x" }\n', "inputs.system[0].tags.time", "tag key"),
        ('[[inputs.system]]\ntags = { _field = "x" }\n', "inputs.system[0].tags._field", "tag"),
    ],
)
def test_values_that_would_burn_the_cpu_or_be_refused_by_influxdb(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    config = tmp_path / "pitelemetry.toml"
    config.write_text(text)
    done = check(config)
    assert done.returncode == 2
    assert f"{config}: {key}: " in done.stderr
    assert problem in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b'[agent]\nhost = "\xff\xfe"\n'), "not UTF-8 text"),
        (lambda p: p.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n"), "not valid TOML"),
        (os.mkfifo, "not a regular file"),
    ],
)
def test_a_config_file_that_is_not_a_config(
    tmp_path: Path, make: Callable[[Path], object], problem: str
) -> None:
    config = tmp_path / "pitelemetry.toml"
    make(config)
    done = check(config)
    assert done.returncode == 2
    assert f"pitelemetry: {config}: {problem}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ('channel = 0\nfield = ""', "inputs.mcp3008[0].field"),
        ('channel = 0\nfield = "time"', "inputs.mcp3008[0].field"),
        ('channel = 0\nfield = "moisture"\nname = "\\u0007"', "inputs.mcp3008[0].name"),
    ],
)
def test_a_name_influxdb_cannot_store_is_refused(tmp_path: Path, table: str, key: str) -> None:
    config = tmp_path / "pitelemetry.toml"
    config.write_text(f"[[inputs.mcp3008]]\n{table}\n")
    done = check(config)
    assert done.returncode == 2
    assert f"{config}: {key}: " in done.stderr
