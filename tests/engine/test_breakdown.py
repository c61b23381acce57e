"""Breakdowns (per route, per status class) from a real prometheus_client exporter, scraped by
the real PrometheusProbe, checked against numbers worked out by hand from what was observed.

The exporter is an aiohttp app on 127.0.0.1 serving a prometheus_client registry; the test
makes known observations between two scrapes. Quantiles are computed here by hand from the
bucket counts with Prometheus's interpolation, not by the code under test.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import ValidationError

from console.engine.config.schema import Breakdown, PrometheusTarget
from console.engine.lang.promexpr import Scrape, parse_scrape
from console.engine.model import Status
from console.engine.probes.breakdown import (
    CONVENTIONAL_NAMES,
    compute_breakdowns,
    default_breakdowns,
    status_class,
)
from console.engine.probes.http_client import HttpClients
from console.engine.probes.prometheus import PrometheusProbe
from tests.promtools import Exporter, serve_exporter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    async with serve_exporter(Exporter()) as e:
        yield e


def by_key(table: dict, label: str) -> dict[str, dict]:
    return {row[label]: row for row in table["rows"]}


def hand_quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """Prometheus's interpolation, written out plainly for the cases used here."""
    total = cumulative[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count)
        lower_bound, lower_count = bound, count
    raise AssertionError("rank beyond the last bucket")


ENDPOINTS = {
    "by": ["route"],
    "requests": "http_requests_total",
    "errors": 'http_requests_total{status=~"5.."}',
    "duration": "http_request_duration_seconds",
}


async def test_rates_errors_and_quantiles_per_route(exporter: Exporter,
                                                    clients: HttpClients) -> None:
    # Before the first scrape: traffic that must NOT count (slow, failing).
    exporter.hit("/api/signals", 500, 50, 2.0)
    exporter.hit("/api/users", 200, 10, 0.9)
    target = PrometheusTarget(name="api", url=exporter.url, breakdowns={
        "endpoints": Breakdown(**ENDPOINTS),
        "status": Breakdown(by=["status_class"], requests="http_requests_total",
                            errors='http_requests_total{status=~"5.."}'),
    })
    probe = PrometheusProbe(target, clients)
    first = await probe.check()
    assert first.status is Status.UP, first.error
    s1 = probe.previous
    assert s1 is not None

    # Between the scrapes: /api/signals 100 x 200 (30 ms), 3 x 404 (30 ms), 5 x 500 (0.2 s);
    # /api/users 30 x 200 at 30 ms, 8 at 0.2 s, 2 at 0.7 s (all 200).
    exporter.hit("/api/signals", 200, 100, 0.03)
    exporter.hit("/api/signals", 404, 3, 0.03)
    exporter.hit("/api/signals", 500, 5, 0.2)
    exporter.hit("/api/users", 200, 30, 0.03)
    exporter.hit("/api/users", 200, 8, 0.2)
    exporter.hit("/api/users", 200, 2, 0.7)
    await asyncio.sleep(0.05)
    second = await probe.check()
    assert second.status is Status.UP, second.error
    s2 = probe.previous
    assert s2 is not None
    dt = s2.at - s1.at

    tables = second.details["breakdowns"]
    assert isinstance(tables, dict)
    ep = tables["endpoints"]
    assert ep["by"] == ["route"]
    assert ep["columns"] == ["route", "requests", "rate_per_s", "share_pct", "error_pct",
                             "p50_ms", "p95_ms", "p99_ms"]
    assert [r["route"] for r in ep["rows"]] == ["/api/signals", "/api/users"]  # rate desc
    assert ep["others"] == 0
    assert ep["window_s"] == pytest.approx(dt, abs=1e-3)
    rows = by_key(ep, "route")
    sig, usr = rows["/api/signals"], rows["/api/users"]
    assert sig["requests"] == 108
    assert usr["requests"] == 40
    assert sig["rate_per_s"] == pytest.approx(108 / dt, rel=1e-3)
    assert usr["rate_per_s"] == pytest.approx(40 / dt, rel=1e-3)
    assert sig["share_pct"] == pytest.approx(108 / 148 * 100, abs=1e-3)
    assert sig["error_pct"] == pytest.approx(5 / 108 * 100, abs=1e-3)
    assert usr["error_pct"] == 0.0

    # /api/users buckets between the scrapes, cumulative: 30 ≤0.05, 30 ≤0.1, 38 ≤0.25,
    # 38 ≤0.5, 40 ≤1, 40 +Inf. p95: rank 38 -> (0.1, 0.25] holds 8, rank 8 in it -> 0.25 s.
    users = [(0.05, 30), (0.1, 30), (0.25, 38), (0.5, 38), (1.0, 40), (float("inf"), 40)]
    assert hand_quantile(0.95, users) == pytest.approx(0.25)
    assert usr["p95_ms"] == pytest.approx(250.0, abs=1e-6)
    assert usr["p50_ms"] == pytest.approx(hand_quantile(0.5, users) * 1000, abs=1e-3)  # 33.3
    assert usr["p99_ms"] == pytest.approx(900.0, abs=1e-6)  # 0.5 + 0.5 * 1.6/2
    # /api/signals: 103 at 30 ms, 5 at 0.2 s; the 50 slow ones before scrape 1 are excluded.
    signals = [(0.05, 103), (0.1, 103), (0.25, 108), (0.5, 108), (1.0, 108),
               (float("inf"), 108)]
    assert sig["p95_ms"] == pytest.approx(hand_quantile(0.95, signals) * 1000, abs=1e-3)
    assert sig["p50_ms"] == pytest.approx(0.05 * 54 / 103 * 1000, abs=1e-3)

    st = by_key(tables["status"], "status_class")
    assert set(st) == {"2xx", "4xx", "5xx"}
    assert st["2xx"]["requests"] == 140
    assert st["4xx"]["requests"] == 3
    assert st["5xx"]["requests"] == 5
    assert st["5xx"]["error_pct"] == 100.0
    assert st["2xx"]["error_pct"] == 0.0
    assert "p95_ms" not in tables["status"]["columns"]

    # The first scrape had no window: lifetime totals, no rates.
    once = first.details["breakdowns"]["endpoints"]  # type: ignore[index]
    assert once["window_s"] is None
    assert "totals since" in once["note"]
    only = by_key(once, "route")
    assert only["/api/signals"]["requests"] == 50
    assert only["/api/signals"]["rate_per_s"] is None
    assert only["/api/signals"]["error_pct"] == 100.0
    # All 50 took 2 s, beyond every finite bound: a rank in +Inf gives the highest finite
    # bound, 1 s, as Prometheus does.
    assert only["/api/signals"]["p50_ms"] == pytest.approx(1000.0)


async def test_counter_reset_between_scrapes_counts_from_zero(exporter: Exporter,
                                                             clients: HttpClients) -> None:
    exporter.hit("/a", 200, 1000, 0.03)
    exporter.hit("/a", 500, 100)
    exporter.hit("/b", 200, 500)
    target = PrometheusTarget(name="api", url=exporter.url,
                              breakdowns={"endpoints": Breakdown(**ENDPOINTS)})
    probe = PrometheusProbe(target, clients)
    assert (await probe.check()).status is Status.UP
    exporter.restart()  # the service restarted: every counter below its previous value
    exporter.hit("/a", 200, 7, 0.2)
    exporter.hit("/a", 500, 3)
    exporter.hit("/b", 200, 4)
    result = await probe.check()
    rows = by_key(result.details["breakdowns"]["endpoints"], "route")  # type: ignore[index]
    assert rows["/a"]["requests"] == 10
    assert rows["/b"]["requests"] == 4
    assert rows["/a"]["error_pct"] == pytest.approx(30.0)
    # The histogram reset too: all 7 observations in (0.1, 0.25], so p50 = 0.1 + 0.15 * 3.5/7.
    assert rows["/a"]["p50_ms"] == pytest.approx(175.0)


async def test_default_breakdowns_on_conventional_names(exporter: Exporter,
                                                        clients: HttpClients) -> None:
    target = PrometheusTarget(name="api", url=exporter.url)  # no breakdowns configured
    probe = PrometheusProbe(target, clients)
    exporter.hit("/x", 200, 1, 0.01)
    await probe.check()
    exporter.hit("/x", 200, 90, 0.01)
    exporter.hit("/x", 503, 10, 0.01)
    exporter.hit("/y", 404, 5, 0.3)
    result = await probe.check()
    tables = result.details["breakdowns"]
    assert isinstance(tables, dict)
    assert set(tables) == {"endpoints", "status"}
    ep = tables["endpoints"]
    assert ep["default"] is True
    assert ep["by"] == ["route"]
    x = by_key(ep, "route")["/x"]
    assert x["requests"] == 100
    assert x["error_pct"] == pytest.approx(10.0)
    assert x["p99_ms"] == pytest.approx(0.05 * 99 / 100 * 1000)  # all 100 in [0, 0.05]
    st = by_key(tables["status"], "status_class")
    assert {k: v["requests"] for k, v in st.items()} == {"2xx": 90, "5xx": 10, "4xx": 5}
    # share, no error % (a 5xx row would say 100 %), no quantiles: the histogram has no status
    assert tables["status"]["columns"] == ["status_class", "requests", "rate_per_s",
                                           "share_pct"]
    assert st["5xx"]["share_pct"] == pytest.approx(10 / 105 * 100, abs=1e-3)
    # and the whole result serialises for `check --json`
    assert json.loads(json.dumps(result.to_json()))["details"]["breakdowns"]["status"]


async def test_default_picks_handler_and_skips_other_exporters() -> None:
    reg_exporter = Exporter(route_label="handler")
    reg_exporter.hit("/metrics", 200, 3, 0.01)
    text = generate_latest(reg_exporter.registry).decode()
    scrape = parse_scrape(text, at=1.0, keep=CONVENTIONAL_NAMES.__contains__)
    specs = default_breakdowns(scrape)
    assert specs["endpoints"].by == ("handler",)
    assert specs["endpoints"].duration is not None
    other = CollectorRegistry()
    Counter("jobs", "jobs", ("queue",), registry=other).labels("q").inc()
    bare = parse_scrape(generate_latest(other).decode(), at=1.0)
    assert default_breakdowns(bare) == {}


async def test_top_keeps_the_busiest_and_counts_the_others(exporter: Exporter,
                                                           clients: HttpClients) -> None:
    target = PrometheusTarget(name="api", url=exporter.url, breakdowns={
        "endpoints": Breakdown(by=["route", "method"], requests="http_requests_total", top=2)})
    probe = PrometheusProbe(target, clients)
    await probe.check()
    for i, n in enumerate((5, 50, 20, 1)):
        exporter.hit(f"/r{i}", 200, n)
    exporter.hit("/r1", 200, 7, method="POST")
    exporter.hit("/\x1b]52;c;ZXZpbA==\x07evil\x1b[2J", 200, 60)  # remote text
    table = (await probe.check()).details["breakdowns"]["endpoints"]  # type: ignore[index]
    assert [(r["route"], r["method"]) for r in table["rows"]] == [("/evil", "GET"),
                                                                  ("/r1", "GET")]
    assert table["others"] == 4
    assert table["groups"] == 6
    assert table["others_requests"] == 5 + 20 + 1 + 7


def test_status_class_and_config_validation() -> None:
    assert [status_class(c) for c in ("200", "304", "404", "503", "", "abc", "99")] == [
        "2xx", "3xx", "4xx", "5xx", "", "other", "other"]
    bad = [
        {"by": ["route"], "requests": "rate(http_requests_total)"},
        {"by": ["route"], "requests": 'http_requests_total{status=~"("}'},
        {"by": ["le"], "requests": "x"},
        {"by": ["rate_per_s"], "requests": "x"},
        {"by": [], "requests": "x"},
        {"by": ["route", "route"], "requests": "x"},
        {"by": ["route"], "requests": "x", "top": 0},
        {"by": ["route"], "requests": "x", "duration": "histogram_quantile(0.9, h)"},
        {"by": ["route"], "requests": "x", "colour": "red"},
    ]
    for fields in bad:
        with pytest.raises(ValidationError):
            Breakdown(**fields)
    with pytest.raises(ValidationError):
        PrometheusTarget(name="m", url="http://127.0.0.1:9/metrics",
                         breakdowns={"bad name!": Breakdown(by=["route"], requests="x")})


def test_cost_on_a_100k_series_scrape() -> None:
    """The grouping must stay a small part of what parsing such a scrape costs (~4 s here);
    measured ~0.3-0.5 s for two tables over 104k series on a 2-core machine."""

    def scrape(at: float, scale: float) -> Scrape:
        s = Scrape(at=at)
        req: dict = {}
        n = 0
        for r in range(2000):
            for st in ("200", "201", "404", "500", "503"):
                for m in ("GET", "POST"):
                    for inst in range(4):
                        req[(("instance", f"i{inst}"), ("method", m), ("route", f"/r{r}"),
                             ("status", st))] = 1000.0 * scale + n
                        n += 1
        s.samples["http_requests_total"] = req
        s.samples["http_request_duration_seconds_bucket"] = {
            (("instance", f"i{inst}"), ("le", le), ("route", f"/r{r}")): 10.0 * scale
            for r in range(1000) for inst in range(4)
            for le in ("0.05", "0.1", "0.25", "0.5", "1.0", "+Inf")}
        return s

    before, after = scrape(0.0, 1.0), scrape(10.0, 2.0)
    specs = default_breakdowns(after)
    t0 = time.perf_counter()
    tables = compute_breakdowns(specs, after, before)
    took = time.perf_counter() - t0
    print(f"\nbreakdowns over 104k series: {took * 1000:.0f} ms")
    assert took < 5.0  # generous for a loaded machine; the figure is printed above
    assert tables["endpoints"]["groups"] == 2000
    assert len(tables["endpoints"]["rows"]) == 20
    assert tables["endpoints"]["others"] == 1980
    top = tables["endpoints"]["rows"][0]
    # every series rose by 1000 over 10 s; a route has 40 series, 16 of them 5xx
    assert top["rate_per_s"] == pytest.approx(4000.0)
    assert top["error_pct"] == 40.0
    assert top["p50_ms"] == pytest.approx(25.0)  # all in [0, 0.05]: 0.05 * 0.5


async def test_check_json_carries_the_breakdowns(exporter: Exporter, tmp_path: Path) -> None:
    exporter.hit("/api/orders", 200, 9, 0.03)
    exporter.hit("/api/orders", 500, 1, 0.03)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[[targets]]\nname = "api"\nkind = "prometheus"\nurl = "{exporter.url}"\n'
        '[targets.breakdowns.endpoints]\nby = ["route"]\nrequests = "http_requests_total"\n'
        "errors = 'http_requests_total{status=~\"5..\"}'\n", encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console", "--no-history", "check", "--once", "--json",
        "-c", str(config), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    view = json.loads(out)[0]
    table = view["details"]["breakdowns"]["endpoints"]
    assert table["rows"] == [{"route": "/api/orders", "requests": 10.0, "rate_per_s": None,
                              "share_pct": 100.0, "error_pct": 10.0}]
    assert table["window_s"] is None


async def test_large_scrape_is_broken_down_on_the_parse_thread(exporter: Exporter,
                                                               clients: HttpClients) -> None:
    from console.engine.probes.prometheus import THREAD_PARSE_BYTES

    target = PrometheusTarget(name="api", url=exporter.url,
                              breakdowns={"endpoints": Breakdown(**ENDPOINTS)})
    probe = PrometheusProbe(target, clients)
    for i in range(1500):
        exporter.hit(f"/api/item/{i}", 200, 1)
    await probe.check()
    for i in range(1500):
        exporter.hit(f"/api/item/{i}", 200 if i % 10 else 500, 1 + i % 3)
    assert len(generate_latest(exporter.registry)) > THREAD_PARSE_BYTES  # the threaded path
    result = await probe.check()
    table = result.details["breakdowns"]["endpoints"]  # type: ignore[index]
    assert table["groups"] == 1500
    assert table["others"] == 1480
    assert all(r["requests"] == 3 for r in table["rows"])  # the busiest: i % 3 == 2
    assert table["rows"][0]["route"] == "/api/item/1001"  # ties by label, as text
