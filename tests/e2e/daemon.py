"""``pitelemetry run`` as a child process, for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import FIXTURES

SYSTEM_INPUT = '[[inputs.system]]\ntags = { site = "lab" }'


def write_config(
    workdir: Path, influx: str, agent: str = "", inputs: str = SYSTEM_INPUT, interval: str = "1s"
) -> Path:
    path = workdir / "pitelemetry.toml"
    path.write_text(f"""
[agent]
interval = "{interval}"
flush_interval = "{interval}"
host = "e2e-pi"
state_dir = "{workdir}/state"
runtime_dir = "{workdir}/run"
{agent}

[influxdb]
{influx}

{inputs}
""")
    return path


def sensor_sys_tree(workdir: Path, *, pi: bool = False) -> Path:
    """A ``HOST_SYS`` tree with the 1-Wire and IIO fixtures (and a Pi's thermal zone and
    throttling files with ``pi``)."""
    root = workdir / "sys"
    if pi:
        shutil.copytree(FIXTURES / "system" / "pi" / "sys", root)
    shutil.copytree(FIXTURES / "w1", root, dirs_exist_ok=True)
    shutil.copytree(FIXTURES / "iio", root, dirs_exist_ok=True)
    return root


def sensor_env(sys_root: Path) -> dict[str, str]:
    """The daemon's environment for fixture sensors: that sysfs, gpiozero's mock pins."""
    return {**os.environ, "HOST_SYS": str(sys_root), "GPIOZERO_PIN_FACTORY": "mock"}


class Daemon:
    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = env
        self.process: subprocess.Popen[str] | None = None
        self.stderr = ""

    def start(self) -> Daemon:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pitelemetry", "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is not None:
            stderr = self.process.communicate()[1]
            raise AssertionError(f"the daemon had already exited:\n{stderr}")
        self.process.send_signal(sig)
        _, stderr = self.process.communicate(timeout=60)
        self.stderr += stderr
        return self.process.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pitelemetry", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        done = self.command("status", "--json")
        assert done.returncode == 0, done.stderr
        state: dict[str, Any] = json.loads(done.stdout)
        return state

    def wait_for(self, condition: Any, seconds: float = 30) -> dict[str, Any]:
        """Poll ``status --json`` until ``condition(state)`` holds."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                state = self.status()
            except AssertionError:
                state = {}
            if state and condition(state):
                return state
            assert time.monotonic() < deadline, f"gave up waiting; last state: {state}"
            time.sleep(0.25)
