"""The daemon: builds the clock, spool, pipeline, inputs and collector from the config
and runs them.

The main loop is the only place that decides the process is healthy: it starts due
collections, refreshes the state file, pings the systemd watchdog, then sleeps until the
next collection (at most a second). ``SIGTERM`` and ``SIGINT`` stop it: what can be
written within ``STOP_TIMEOUT_S`` is written and the rest is spooled. ``SIGHUP`` checks
the config file and, if it is valid, restarts the daemon in place with it (same PID, so
systemd sees a reload); an invalid file is reported and the daemon carries on.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from pitelemetry import __version__, health
from pitelemetry.clock import Clock
from pitelemetry.collector import Collector, RunningInput
from pitelemetry.config import Config, ConfigError, InputConfig, flush_interval, load
from pitelemetry.heartbeat import Heartbeat
from pitelemetry.inputs import registry
from pitelemetry.logs import StateLog
from pitelemetry.pipeline import Pipeline
from pitelemetry.point import LineEncoder, Point
from pitelemetry.spool import Spool, open_spool
from pitelemetry.systemd import Notifier
from pitelemetry.writer import AutoWriter, Writer

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0  # well below systemd's default TimeoutStopSec= of 90 s
STATE_EVERY_S = 2.0


def tune_threads() -> None:
    """Hand the GIL over every millisecond instead of every five.

    The writer thread spends its time waiting on InfluxDB; with the default 5 ms switch
    interval, each of its wake-ups waits behind a busy input thread (an MQTT flood, a
    backfill) and throughput drops by a fifth (``bench/throughput``)."""
    sys.setswitchinterval(0.001)


def build_inputs(config: Config, clock: Clock | None = None) -> list[RunningInput]:
    """One running input per ``[[inputs.*]]`` table, each with its own encoder."""
    time_ns = (clock or Clock()).time_ns
    host = config.agent.hostname
    running = []
    for input_config in config.inputs:
        cls = registry.input_class(input_config.type)
        instance = cls.from_config(input_config, config.agent, time_ns=time_ns)
        encoder = LineEncoder({"host": host, **input_config.tags})
        running.append(RunningInput(input_config, instance, encoder))
    return running


class Agent:
    def __init__(
        self,
        config: Config,
        *,
        writer: Writer | None = None,
        spool: Spool | None = None,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.version = __version__
        self.started = time.time()
        agent = config.agent
        self.clock = clock or Clock(give_up_after=agent.clock_wait)
        self.notifier = notifier or Notifier()
        self._events = LineEncoder({"host": agent.hostname})
        self.pipeline = Pipeline(
            writer or AutoWriter(config.influxdb),
            spool or open_spool(Path(agent.state_dir) / "spool", agent.spool_max_bytes),
            self.clock,
            batch_size=agent.batch_size,
            flush_interval=flush_interval(config),
            on_event=self.event,
        )
        inputs = build_inputs(config, self.clock)
        if agent.self_metrics:
            health_config = InputConfig("pitelemetry", 0, agent.interval, agent.interval, {}, None)
            inputs.append(
                RunningInput(
                    health_config,
                    health.AgentHealth(lambda: health.snapshot(self)),
                    LineEncoder({"host": agent.hostname}),
                )
            )
        self.collector = Collector(
            inputs, self.pipeline.submit, clock=self.clock, on_event=self.event
        )
        self.runtime_dir = Path(os.environ.get("RUNTIME_DIRECTORY") or agent.runtime_dir)
        self._stop = threading.Event()
        self._reload = False
        self._problems = StateLog(log)
        self._clock_was_trusted = False
        # A write may take its timeout, a few times over while splitting a batch.
        self._writer_grace = max(30.0, 3 * config.influxdb.timeout)
        self.heartbeat = (
            Heartbeat(agent.heartbeat_url, agent.heartbeat_style) if agent.heartbeat_url else None
        )
        self._spool_at_beat = self.pipeline.spool_points

    def health_problem(self) -> str:
        """Why the heartbeat reports a failure, or "" while writes go well: failing
        writes, a stuck writer, or a spool that grew since the last beat."""
        stats = self.pipeline.stats
        if stats.outage_since is not None:
            return f"writes to InfluxDB failing since {time.ctime(stats.outage_since)}"
        if not self.pipeline.alive(self._writer_grace):
            return "the writer thread is stuck"
        spooled = self.pipeline.spool_points
        grew = spooled > self._spool_at_beat
        self._spool_at_beat = spooled
        return f"the spool keeps growing ({spooled} points waiting)" if grew else ""

    def event(self, kind: str, title: str, text: str) -> None:
        """An annotation for Grafana: measurement ``events``, tag ``kind``."""
        point = Point("events", {"title": title, "text": text}, {"kind": kind})
        mark = None if self.clock.trusted() else self.clock.mark()
        # Called from the writer thread too (outage begin and end): never block there.
        line = self._events.encode(point, self.clock.time_ns())
        self.pipeline.submit([line], mark, block=False)

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        del frame
        if signum:
            log.info("received %s, stopping", signal.Signals(signum).name)
        self._stop.set()

    def _request_reload(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        try:
            load(self.config.path)
        except ConfigError as exc:
            log.error("SIGHUP: not reloading, the config has an error: %s", exc)
            return
        log.info("SIGHUP: config is valid; restarting in place to apply it")
        self._reload = True
        self._stop.set()

    def run(self) -> int:
        tune_threads()
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self._request_reload)
        # cli.main blocked SIGHUP until now; one that arrived meanwhile is delivered here.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        names = ", ".join(r.config.name for r in self.collector.inputs) or "none"
        log.info(
            "pitelemetry %s starting; inputs: %s; InfluxDB %s",
            self.version,
            names,
            self.config.influxdb.url,
        )
        from pitelemetry.check import directory_problem  # noqa: PLC0415 - a cycle otherwise

        for directory in (Path(self.config.agent.state_dir), self.runtime_dir):
            if problem := directory_problem(directory, writing=True):
                log.warning("%s", problem)
        self.pipeline.start()
        self.collector.start()
        self.event("start", "pitelemetry started", f"version {self.version}; inputs: {names}")
        self.notifier.notify("READY=1", f"STATUS={self.summary()}")
        next_state = next_beat = 0.0
        while not self._stop.is_set():
            idle = self.collector.run_pending()
            self._watch_clock()
            if self.heartbeat is not None and time.monotonic() >= next_beat:
                problem = self.health_problem()
                self.heartbeat.beat(not problem, problem)
                next_beat = time.monotonic() + self.config.agent.heartbeat_interval
            if time.monotonic() >= next_state:
                self._write_state()
                self.notifier.notify(f"STATUS={self.summary()}")
                next_state = time.monotonic() + STATE_EVERY_S
            if self.pipeline.alive(self._writer_grace):
                self.notifier.notify("WATCHDOG=1")
            else:
                self._problems.report(
                    "writer",
                    "the writer thread is stuck; no watchdog ping, so systemd restarts the service",
                    logging.ERROR,
                )
            self._stop.wait(min(1.0, idle))
        self.notifier.notify("STOPPING=1")
        self.event("stop", "pitelemetry stopping", "reload" if self._reload else "stop")
        self.collector.stop()
        self.pipeline.stop(STOP_TIMEOUT_S)
        self._write_state()
        log.info(
            "stopped; %d points written, %d wait in the spool",
            self.pipeline.stats.written,
            self.pipeline.spool_points,
        )
        if self._reload:
            self.notifier.notify("RELOADING=1")
            # Blocked across exec: the new process holds a SIGHUP until its handler is set.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
            argv = [sys.executable, "-m", "pitelemetry", *sys.argv[1:]]
            os.execv(sys.executable, argv)  # noqa: S606 - the same program, same arguments
        return 0

    def _watch_clock(self) -> None:
        trusted = self.clock.trusted()
        if trusted and not self._clock_was_trusted:
            log.info("clock: %s", self.clock.reason)
        elif not trusted:
            self._problems.report(
                "clock",
                f"clock: {self.clock.reason}; readings are kept "
                "and will be stamped right once it is set",
            )
        self._clock_was_trusted = trusted

    def summary(self) -> str:
        stats = self.pipeline.stats
        line = f"{stats.written} points written, {self.pipeline.spool_points} spooled"
        if stats.outage_since is not None:
            line += ", InfluxDB unreachable"
        if not self.clock.trusted():
            line += ", clock not set"
        return line

    def _write_state(self) -> None:
        try:
            health.write_state(self.runtime_dir, health.snapshot(self))
        except OSError as exc:
            self._problems.report(
                "state",
                f"cannot write {self.runtime_dir}/{health.STATE_FILE} for "
                f"`pitelemetry status`: {exc.strerror or exc}",
            )
