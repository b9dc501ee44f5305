from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.quote_server import QuoteServer
from tests.servers import InfluxDB1, MissingServerError, Mosquitto, Server, VictoriaMetrics

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
_db_numbers = itertools.count()


def _start(server_cls: type[Server], workdir: Path) -> Iterator[Server]:
    try:
        server = server_cls(workdir)
    except MissingServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """One real InfluxDB 1.x for the session; tests use their own database in it."""
    for server in _start(InfluxDB1, tmp_path_factory.mktemp("influxdb")):
        assert isinstance(server, InfluxDB1)
        yield server


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """One real VictoriaMetrics serving InfluxDB's /api/v2/write."""
    for server in _start(VictoriaMetrics, tmp_path_factory.mktemp("victoria")):
        assert isinstance(server, VictoriaMetrics)
        yield server


@pytest.fixture(params=["generous", "default"])
def mosquitto(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mosquitto]:
    """A Mosquitto of this test's own, which it may stop and start; every test that
    uses it runs against generous limits and against Mosquitto's defaults."""
    try:
        server = Mosquitto(tmp_path / "mosquitto", limits=request.param)
    except MissingServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database(influxdb: InfluxDB1) -> Iterator[str]:
    """A fresh, empty database on the session's InfluxDB, dropped afterwards."""
    name = f"test{next(_db_numbers)}"
    influxdb.create_database(name)
    yield name
    influxdb.drop_database(name)


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def quotes() -> Iterator[QuoteServer]:
    """A local HTTP server answering like a quote provider, from recorded bodies."""
    server = QuoteServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """``cli.main`` run in-process points the root logger at that moment's stderr;
    put back what was there, so a later test does not log into a closed capture."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
