"""The daemon: builds inputs, collector and pipeline from the config and runs them.

The main loop is the only place that decides the process is healthy: it starts due
collections, then sleeps until the next one (at most a second). ``SIGTERM`` and
``SIGINT`` stop it; what is still unwritten is flushed within ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from pitelemetry import __version__
from pitelemetry.collector import Collector, RunningInput
from pitelemetry.config import Config
from pitelemetry.inputs import registry
from pitelemetry.pipeline import Pipeline
from pitelemetry.point import LineEncoder
from pitelemetry.writer import AutoWriter, Writer

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0  # below systemd's default TimeoutStopSec= of 90 s


def tune_threads() -> None:
    """Hand the GIL over every millisecond instead of every five.

    The writer thread spends its time waiting on InfluxDB; with the default 5 ms switch
    interval, each of its wake-ups waits behind a busy input thread (an MQTT flood, a
    backfill) and throughput drops by a fifth (``bench/throughput``)."""
    sys.setswitchinterval(0.001)


def build_inputs(config: Config) -> list[RunningInput]:
    """One running input per ``[[inputs.*]]`` table, each with its own encoder."""
    host = config.agent.hostname
    running = []
    for input_config in config.inputs:
        cls = registry.input_class(input_config.type)
        instance = cls.from_config(input_config, config.agent)
        encoder = LineEncoder({"host": host, **input_config.tags})
        running.append(RunningInput(input_config, instance, encoder))
    return running


class Agent:
    def __init__(self, config: Config, writer: Writer | None = None) -> None:
        self.config = config
        self.pipeline = Pipeline(
            writer or AutoWriter(config.influxdb),
            batch_size=config.agent.batch_size,
            flush_interval=config.agent.flush_interval,
        )
        self.collector = Collector(build_inputs(config), self.pipeline.submit)
        self._stop = threading.Event()

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        del frame
        if signum:
            log.info("received %s, stopping", signal.Signals(signum).name)
        self._stop.set()

    def run(self) -> int:
        tune_threads()
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        names = ", ".join(r.config.name for r in self.collector.inputs) or "none"
        log.info(
            "pitelemetry %s starting; inputs: %s; InfluxDB %s",
            __version__,
            names,
            self.config.influxdb.url,
        )
        self.pipeline.start()
        self.collector.start()
        while not self._stop.is_set():
            idle = self.collector.run_pending()
            self._stop.wait(min(1.0, idle))
        self.collector.stop()
        self.pipeline.stop(STOP_TIMEOUT_S)
        log.info("stopped; %d points written", self.pipeline.stats.written)
        return 0
