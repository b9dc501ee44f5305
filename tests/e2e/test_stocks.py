"""Quotes end to end: ``pitelemetry run`` polls a local quote server (recorded bodies,
re-stamped to now) and writes into the real InfluxDB, where every Markets dashboard
query finds data; ``pitelemetry check`` reports the quota plan; ``pitelemetry
backfill`` writes daily history and, run twice, overwrites instead of duplicating."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pitelemetry import dashboards
from pitelemetry.config import load
from tests.e2e.daemon import Daemon, write_config
from tests.e2e.test_dashboard_queries import all_queries, expand
from tests.quote_server import QUOTES, QuoteServer
from tests.servers import InfluxDB1

pytestmark = pytest.mark.e2e


def stocks_inputs(url: str, exchange: str = "crypto") -> str:
    # "crypto" hours (always open) so the daemon test does not depend on when it runs.
    return f"""
[[inputs.stocks]]
interval = "1s"
symbols = ["AAPL", "MSFT"]
fallback = ["stooq"]
base_url = "{url}"
base_currency = "EUR"
fx_url = "{url}"

[inputs.stocks.providers.stooq]
base_url = "{url}"

[inputs.stocks.instruments.AAPL]
exchange = "{exchange}"
quantity = 10
cost_basis = 3000.0

[inputs.stocks.instruments.MSFT]
exchange = "{exchange}"
currency = "USD"
"""


def serve_fresh_quotes(quotes: QuoteServer) -> int:
    """AAPL from Yahoo stamped a minute ago; Yahoo does not know MSFT, Stooq does."""
    now = int(time.time()) - 60
    chart = json.loads((QUOTES / "yahoo_v8_chart_aapl_2026-07-24.json").read_text())
    chart["chart"]["result"][0]["meta"]["regularMarketTime"] = now
    quotes.serve("/v8/finance/chart/AAPL", json.dumps(chart).encode())
    quotes.serve("/v8/finance/chart/MSFT", "yahoo_404_not_found.json", status=404)
    warsaw = dt.datetime.fromtimestamp(now, ZoneInfo("Europe/Warsaw"))
    csv = (
        "Symbol,Date,Time,Open,High,Low,Close,Volume\r\n"
        f"MSFT.US,{warsaw:%Y-%m-%d},{warsaw:%H:%M:%S},470.1,475.2,468.3,472.55,20111222\r\n"
    )
    quotes.serve("/q/l/", csv.encode(), content_type="text/csv")
    quotes.serve("/v1/latest", "frankfurter_v1_latest_2026-07-10.json")
    return now


def test_quotes_reach_influxdb_and_every_markets_query_has_data(
    tmp_path: Path, influxdb: InfluxDB1, database: str, quotes: QuoteServer
) -> None:
    now = serve_fresh_quotes(quotes)
    config_path = write_config(
        tmp_path,
        f'url = "{influxdb.url}"\ndatabase = "{database}"',
        inputs=stocks_inputs(quotes.url),
    )
    daemon = Daemon(config_path).start()
    time.sleep(4)
    assert daemon.stop() == 0, daemon.stderr

    rows = influxdb.rows(
        'SELECT "price", "provider", "currency" FROM "quote" GROUP BY "symbol"', database
    )
    assert sorted((r["price"], r["provider"], r["currency"]) for r in rows) == [
        (328.879, "yahoo", "USD"),
        (472.55, "stooq", "USD"),
    ]  # one point each: polled every second, but the source's time did not change
    assert {r["time"] for r in rows} == {now * 10**9}
    assert len(quotes.asked("/v8/finance/chart/MSFT")) == 1  # unknown: not asked again

    config = load(config_path, environ={})
    (board,) = [b for b in dashboards.generate(config) if b["title"] == "Markets"]
    empty = []
    for where, query in all_queries(board):
        if not influxdb.query(expand(query, "e2e-pi"), database)[0].get("series"):
            empty.append(f"{where}: {query}")
    assert not empty, "queries without data:\n" + "\n".join(empty)

    assert not quotes.asked("/q/l/")[1:], "paced, not failed: AAPL stays with yahoo"
    check = daemon.command("check")
    assert check.returncode == 1
    assert (
        "FAIL stocks quota yahoo 2 symbols every 1s: at most one call per symbol every 60s: "
        "does not fit; use interval = '1m' or more"
    ) in check.stdout


def test_backfill_is_idempotent(
    tmp_path: Path, influxdb: InfluxDB1, database: str, quotes: QuoteServer
) -> None:
    quotes.serve("/v8/finance/chart/AAPL", "yahoo_v8_chart_aapl_2026-07-24.json")
    quotes.serve(
        "/v8/finance/chart/MSFT", "yahoo_429.txt", status=429, headers={"Retry-After": "3600"}
    )
    quotes.serve("/q/d/l/", "stooq_q_d_l_aapl.csv")
    config_path = write_config(
        tmp_path,
        f'url = "{influxdb.url}"\ndatabase = "{database}"',
        inputs=stocks_inputs(quotes.url, exchange="NASDAQ"),
    )
    daemon = Daemon(config_path)
    for _ in range(2):
        done = daemon.command("backfill", "--days", "200")
        assert done.returncode == 0, done.stderr
        assert "backfill 1/2 AAPL: 5 days from yahoo" in done.stderr
        assert "backfill 2/2 MSFT: 3 days from stooq" in done.stderr
        counts = influxdb.rows('SELECT count("price") FROM "quote" GROUP BY "symbol"', database)
        assert sorted(r["count"] for r in counts) == [3, 5]
    (close,) = influxdb.rows(
        'SELECT "price", "change" FROM "quote" WHERE "symbol" = \'AAPL\' '
        "ORDER BY time DESC LIMIT 1",
        database,
    )
    # 24 July 2026's session closed at 16:00 in New York.
    assert close["time"] == int(dt.datetime(2026, 7, 24, 20, tzinfo=dt.UTC).timestamp()) * 10**9
    assert close["price"] == 328.87921142578125
    assert close["change"] == pytest.approx(328.87921142578125 - 321.6600036621094)
