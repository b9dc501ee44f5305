"""No secret reaches the log, at any level: the config's secrets are redacted from every
record (urllib3's debug request lines included), and ``check`` flags a secret file every
user can read."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitelemetry import logs
from pitelemetry.quotes.markets import NYSE
from pitelemetry.quotes.providers import PROVIDERS
from tests.quote_server import QuoteServer
from tests.quotes.test_providers import PATHS


@pytest.fixture
def debug_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The CLI's logging at debug level, to the captured stderr, restored afterwards."""
    del capsys  # captured first, so the handler writes into the capture
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.setup("debug")
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logs.redact_secrets(())


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_no_providers_key_is_logged_at_debug_level(
    name: str, quotes: QuoteServer, debug_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"SeCrEt-{name}-0042"
    logs.redact_secrets([key])
    quotes.serve(PATHS[name], b"{}")
    provider = PROVIDERS[name](base_url=quotes.url, api_key=key, timeout=5)
    with contextlib.suppress(Exception):
        provider.quote("AAPL", NYSE)
    logging.getLogger("urllib3.connectionpool").debug(
        "an error with the key in it", exc_info=ValueError(f"bad key {key}")
    )
    output = capsys.readouterr().err
    assert "an error with the key in it" in output  # the log is there ...
    assert "bad key ***" in output
    assert key not in output  # ... the key is not
    assert quotes.requests  # the provider was asked


def test_a_secret_looking_query_parameter_is_redacted_even_if_not_configured() -> None:
    line = '"GET /query?function=X&apikey=abc123&symbol=IBM HTTP/1.1" 200 None'
    assert (
        logs.REDACTOR.redact(line)
        == '"GET /query?function=X&apikey=***&symbol=IBM HTTP/1.1" 200 None'
    )


def test_check_flags_a_secret_file_every_user_can_read(tmp_path: Path) -> None:
    secret = tmp_path / "influx.password"
    secret.write_text("hunter2hunter2\n")
    secret.chmod(0o644)
    config = tmp_path / "pitelemetry.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path}/state"\nruntime_dir = "{tmp_path}/run"\n'
        f'[influxdb]\nurl = "http://127.0.0.1:9"\nusername = "pi"\npassword_file = "{secret}"\n'
        "[[inputs.system]]\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pitelemetry",
            "check",
            "--log-level",
            "debug",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert f"FAIL secrets    {secret} is readable by every user" in done.stdout
    assert "hunter2hunter2" not in done.stdout + done.stderr
    secret.chmod(0o600)
    again = subprocess.run(done.args, capture_output=True, text=True, timeout=60, check=False)
    assert "secrets" not in again.stdout


def test_check_flags_a_state_directory_every_user_can_write(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    config = tmp_path / "pitelemetry.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{state}"\nruntime_dir = "{tmp_path}/run"\n'
        '[influxdb]\nurl = "http://127.0.0.1:9"\n[[inputs.system]]\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pitelemetry", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert f"FAIL state      {state} is writable by every user: chmod o-w {state}" in done.stdout
