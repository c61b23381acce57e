"""The demo stack: every endpoint, every fault on /health and /metrics, hang release, config.

Everything runs against the real servers the demo binds on 127.0.0.1. Metric assertions use
`simulate()` (traffic without sleeping) on a stack whose background traffic is off, so the
statistics are steady; one test checks the background traffic itself in real time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from console.demo.stack import (
    DEFAULT_PORT,
    FAULTS,
    ROUTES,
    DemoStack,
    describe_fault,
    fault_label,
    probe_local_services,
)
from console.engine.config.dashboards import HOST_METRICS, READY_MADE, with_playbook_dashboards
from console.engine.config.loader import load_config_text
from console.engine.config.schema import LogTarget, PrometheusTarget, Settings
from console.engine.errors import ConfigError, ConsoleError
from console.engine.lang.promexpr import Scrape, parse_expr, parse_scrape
from console.engine.probes.catalog import REDIS_METRICS
from console.engine.probes.log import LogProbe
from console.engine.probes.postgres import METRICS as PG_METRICS
from console.engine.probes.postgres import SLOW_METRICS as PG_SLOW

TIMEOUT = aiohttp.ClientTimeout(total=5)


@pytest.fixture
async def stack() -> AsyncIterator[DemoStack]:
    s = DemoStack(port=0, seed=7, traffic=False)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as r:
        return r.status, r.content_type, await r.text()  # content_type: the bare mime type


async def scrape(http: aiohttp.ClientSession, stack: DemoStack) -> Scrape:
    _, _, text = await get(http, stack.base_url + "/metrics")
    return parse_scrape(text, at=time.monotonic())


def value(expr: str, cur: Scrape, prev: Scrape | None) -> float | None:
    return parse_expr(expr).evaluate(cur, prev)


ERR = 'ratio(http_requests_total{status=~"5.."}, http_requests_total) * 100'
P50 = "histogram_quantile(0.5, http_request_duration_seconds) * 1000"
P95 = "histogram_quantile(0.95, http_request_duration_seconds) * 1000"
DB = "ratio(db_query_duration_seconds_sum, db_query_duration_seconds_count) * 1000"
HOOK_FAIL = 'rate(stripe_webhooks_total{result="failed"})'
PAY_FAIL = 'ratio(payments_total{result="failed"}, payments_total) * 100'
BUSINESS = ("signals_per_min", "active_users", "active_competitions", "subscriptions_per_h",
            "revenue_per_h", "payment_failed_pct")


async def window(http: aiohttp.ClientSession, stack: DemoStack,
                 seconds: float = 30.0) -> tuple[Scrape, Scrape]:
    """Two scrapes around `seconds` of simulated traffic."""
    before = await scrape(http, stack)
    stack.simulate(seconds)
    return before, await scrape(http, stack)


async def health(http: aiohttp.ClientSession, stack: DemoStack) -> tuple[int, dict, float]:
    t0 = time.perf_counter()
    status, ctype, text = await get(http, stack.base_url + "/health")
    assert ctype == "application/json"
    return status, json.loads(text), time.perf_counter() - t0


# -- endpoints ---------------------------------------------------------------------------


async def test_serves_every_endpoint(stack: DemoStack, http: aiohttp.ClientSession) -> None:
    status, body, _ = await health(http, stack)
    assert status == 200
    assert body["status"] == "ok"
    assert body["error"] == {}
    assert set(body["info"]) == {"database", "redis", "stripe", "gemini"}
    assert body["details"] == body["info"]
    assert all(v == {"status": "up"} for v in body["info"].values())
    # Keyword monitors from the playbook match the compact JSON.
    _, _, raw = await get(http, stack.base_url + "/health")
    assert '"status":"ok"' in raw
    assert '"database":{"status":"up"}' in raw

    status, ctype, text = await get(http, stack.base_url + "/metrics")
    assert status == 200
    assert ctype == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["http_requests"].type == "counter"
    assert families["http_request_duration_seconds"].type == "histogram"
    assert families["db_query_duration_seconds"].type == "histogram"
    assert families["websocket_connections"].type == "gauge"
    assert families["stripe_webhooks"].type == "counter"
    assert "process_cpu_seconds" in families
    labels = {tuple(sorted(s.labels)) for s in families["http_requests"].samples
              if s.name == "http_requests_total"}
    assert labels == {("method", "route", "status")}

    for path in ("/api/signals", "/api/feed", "/api/competitions", "/api/users/me"):
        status, ctype, text = await get(http, stack.base_url + path)
        assert (status, ctype) == (200, "application/json"), path
        assert json.loads(text)

    status, ctype, text = await get(http, stack.frontend_url + "/")
    assert (status, ctype) == (200, "text/html")
    assert "TradoSphere" in text

    status, _, text = await get(http, stack.payments_url + "/webhooks/stripe")
    assert status == 200
    assert json.loads(text)["status"] == "ok"
    event = {"id": "evt_1", "type": "invoice.paid"}
    async with http.post(stack.payments_url + "/webhooks/stripe", json=event,
                         headers={"Stripe-Signature": "t=1,v1=abc"}) as r:
        assert r.status == 200
        assert (await r.json())["received"] is True
    async with http.post(stack.payments_url + "/webhooks/stripe", json=event) as r:
        assert r.status == 400  # no signature


async def test_real_api_requests_are_counted(stack: DemoStack,
                                             http: aiohttp.ClientSession) -> None:
    before = await scrape(http, stack)
    for _ in range(5):
        await get(http, stack.base_url + "/api/feed")
    after = await scrape(http, stack)
    sel = 'http_requests_total{route="/api/feed"}'
    assert value(sel, after, None) - value(sel, before, None) == 5


async def test_normal_traffic_matches_the_playbook_targets(
    stack: DemoStack, http: aiohttp.ClientSession
) -> None:
    before, after = await window(http, stack)
    dt = after.at - before.at
    rate = value("rate(http_requests_total)", after, before)
    assert rate is not None
    assert 120 < rate * dt / 30 < 260  # ~180 req/s of simulated time
    assert value(ERR, after, before) < 0.5  # target < 0.5 %
    assert 25 < value(P50, after, before) < 60  # p50 ≈ 40 ms (target < 100 ms)
    assert 100 < value(P95, after, before) < 200  # p95 ≈ 150 ms (target < 200 ms)
    assert value(DB, after, before) < 20  # target < 50 ms average
    assert value(HOOK_FAIL, after, before) == 0
    assert 100 < value("websocket_connections", after, None) < 180


async def test_background_traffic_moves_metrics_between_scrapes(
    http: aiohttp.ClientSession,
) -> None:
    async with DemoStack(port=0, seed=1) as live:
        first = await scrape(http, live)
        await asyncio.sleep(0.6)
        second = await scrape(http, live)
        live.inject("error_spike")
        await asyncio.sleep(0.6)
        third = await scrape(http, live)
    assert value("rate(http_requests_total)", second, first) > 50
    # A fault shows in the very next scrape.
    assert value(ERR, third, second) > 10


async def test_business_metrics_move_with_traffic(stack: DemoStack,
                                                  http: aiohttp.ClientSession) -> None:
    first = await scrape(http, stack)
    for name in ("signals_posted_total", "subscriptions_total", "revenue_cents_total",
                 'payments_total{result="succeeded"}', 'payments_total{result="failed"}'):
        assert value(name, first, None) == 0, name  # initialised, so rates work from the start
    before, after = await window(http, stack, 60.0)
    signals = value("rate(signals_posted_total)", after, before)
    requests = value("rate(http_requests_total)", after, before)
    # POST /api/signals is 6 % of the traffic, nearly all of it succeeding.
    assert 0.04 < signals / requests < 0.07
    payments = value("payments_total", after, None)
    assert 40 < payments < 160  # one payment per ~120 requests over ~10 800 requests
    assert value("revenue_cents_total", after, None) >= 499 * payments
    assert value(PAY_FAIL, after, before) == 0  # none fail while the stack is healthy
    users = value("active_users", after, None)
    assert 900 < users < 1700  # ~7 per req/s at ~180 req/s
    assert 1 <= value("active_competitions", after, None) <= 6
    # More traffic, more posted: a second minute adds about as much again.
    more_before, more_after = await window(http, stack, 60.0)
    assert value("signals_posted_total", more_after, None) > 1.5 * value(
        "signals_posted_total", after, None)


async def test_dependency_down_fails_payments_and_users_drop(
    stack: DemoStack, http: aiohttp.ClientSession
) -> None:
    stack.simulate(30.0)
    normal_users = value("active_users", await scrape(http, stack), None)
    stack.inject("dependency_down")
    before, after = await window(http, stack, 60.0)
    failed = value(PAY_FAIL, after, before)
    assert 10 < failed < 45  # a quarter of payments: far above the P1 rule's 2 %
    assert value("active_users", after, None) < 0.8 * normal_users
    stack.clear("dependency_down")
    before, after = await window(http, stack, 30.0)
    assert value(PAY_FAIL, after, before) == 0


# -- faults ------------------------------------------------------------------------------


def test_fault_catalogue() -> None:
    assert FAULTS == ("error_spike", "latency_spike", "dependency_down", "endpoint_hang")
    for f in FAULTS:
        assert describe_fault(f)
        assert fault_label(f)
    with pytest.raises(ValueError, match="unknown fault"):
        describe_fault("meteor_strike")


async def test_inject_clear_toggle(stack: DemoStack) -> None:
    assert stack.active == frozenset()
    stack.inject("error_spike")
    assert stack.toggle("latency_spike") is True
    assert stack.active == {"error_spike", "latency_spike"}
    assert stack.toggle("latency_spike") is False
    stack.clear("error_spike")
    assert stack.active == frozenset()
    for f in FAULTS:
        stack.inject(f)
    stack.clear_all()
    assert stack.active == frozenset()
    with pytest.raises(ValueError, match="unknown fault"):
        stack.inject("nope")


async def test_error_spike(stack: DemoStack, http: aiohttp.ClientSession) -> None:
    stack.inject("error_spike")
    before, after = await window(http, stack)
    assert 20 < value(ERR, after, before) < 40  # ~30 %: past the 5 % critical line
    status, body, _ = await health(http, stack)
    assert (status, body["status"]) == (200, "ok")  # dependencies are fine
    answers = await asyncio.gather(*(get(http, stack.base_url + "/api/signals")
                                     for _ in range(30)))
    codes = [a[0] for a in answers]
    assert any(c >= 500 for c in codes)  # real requests fail too
    stack.clear("error_spike")
    before, after = await window(http, stack)
    assert value(ERR, after, before) < 0.5


async def test_latency_spike(stack: DemoStack, http: aiohttp.ClientSession) -> None:
    before, after = await window(http, stack)
    normal_p50 = value(P50, after, before)
    stack.inject("latency_spike")
    before, after = await window(http, stack)
    assert value(P50, after, before) > 12 * normal_p50  # ×20
    # past the playbook's P1 line (p95 > 2 s), so the Slow-performance runbook is reachable
    assert value(P95, after, before) > 2200
    assert value(DB, after, before) > 30
    status, body, took = await health(http, stack)
    assert status == 200
    assert 0.35 < took < 1.5  # the 300 ms `slow` threshold trips
    stack.clear("latency_spike")
    status, _, took = await health(http, stack)
    assert status == 200
    assert took < 0.3
    before, after = await window(http, stack)
    assert value(P50, after, before) < 2 * normal_p50


async def test_dependency_down(stack: DemoStack, http: aiohttp.ClientSession) -> None:
    stack.inject("dependency_down")
    status, body, _ = await health(http, stack)
    # @nestjs/terminus: 503, "status":"error", the failing indicator under "error".
    assert status == 503
    assert body["status"] == "error"
    assert body["error"]["redis"]["status"] == "down"
    assert body["error"]["redis"]["message"]
    assert "redis" not in body["info"]
    assert body["info"]["database"] == {"status": "up"}
    assert set(body["details"]) == {"database", "redis", "stripe", "gemini"}
    status, _, text = await get(http, stack.payments_url + "/webhooks/stripe")
    assert status == 503
    assert json.loads(text)["status"] == "error"
    before, after = await window(http, stack, 10.0)
    assert value(HOOK_FAIL, after, before) > 0
    assert 0.5 < value(ERR, after, before) < 5  # session routes fail: warning level
    assert value("websocket_connections", after, None) < 40
    # the API's log names the dependency that is down (it said "Database connection lost")
    assert stack._log_file is not None
    stack._log_file.flush()
    text = await asyncio.to_thread(Path(stack.log_path or "").read_text, encoding="utf-8")
    lines = text.splitlines()
    lost = {json.loads(line)["message"] for line in lines
            if line.startswith("{") and '"status":503' in line}
    assert lost == {"Redis connection lost (session store unreachable)"}
    stack.clear("dependency_down")
    status, body, _ = await health(http, stack)
    assert (status, body["status"]) == (200, "ok")
    status, _, _ = await get(http, stack.payments_url + "/webhooks/stripe")
    assert status == 200
    before, after = await window(http, stack, 10.0)
    assert value(HOOK_FAIL, after, before) == 0


async def test_endpoint_hang_released_on_clear(stack: DemoStack,
                                               http: aiohttp.ClientSession) -> None:
    stack.inject("endpoint_hang")
    pending = asyncio.create_task(health(http, stack))
    for _ in range(100):
        if stack.hung_requests:
            break
        await asyncio.sleep(0.01)
    assert stack.hung_requests == 1
    await asyncio.sleep(0.3)
    assert not pending.done()  # accepted, never answered
    # The metrics endpoint keeps answering: only /health hangs.
    status, _, _ = await get(http, stack.base_url + "/metrics")
    assert status == 200
    stack.clear("endpoint_hang")
    status, body, _ = await asyncio.wait_for(pending, 2)
    assert (status, body["status"]) == (200, "ok")
    assert stack.hung_requests == 0


async def test_endpoint_hang_client_giving_up_frees_the_handler(
    stack: DemoStack, http: aiohttp.ClientSession
) -> None:
    stack.inject("endpoint_hang")
    for _ in range(3):
        with pytest.raises(asyncio.TimeoutError):
            async with http.get(stack.base_url + "/health",
                                timeout=aiohttp.ClientTimeout(total=0.2)) as r:
                await r.read()
    for _ in range(100):
        if stack.hung_requests == 0:
            break
        await asyncio.sleep(0.02)
    assert stack.hung_requests == 0  # a probe that timed out leaves nothing behind


async def test_stop_releases_hung_requests_and_leaks_no_tasks() -> None:
    before = asyncio.all_tasks()
    s = DemoStack(port=0, seed=3)
    await s.start()
    s.inject("endpoint_hang")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        pending = asyncio.create_task(get(session, s.base_url + "/health"))
        for _ in range(100):
            if s.hung_requests:
                break
            await asyncio.sleep(0.01)
        assert s.hung_requests == 1
        t0 = time.perf_counter()
        await s.stop()
        assert time.perf_counter() - t0 < 1.5
        done, _ = await asyncio.wait({pending}, timeout=2)
        assert done  # answered (503) or connection closed: either way not hanging
        assert s.hung_requests == 0
    await asyncio.sleep(0)
    left = {t for t in asyncio.all_tasks() - before if not t.done()}
    assert left == set()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            await get(session, s.base_url + "/health")
    await s.stop()  # idempotent


async def test_simulated_traffic_costs_little_cpu() -> None:
    async with DemoStack(port=0, seed=5):
        await asyncio.sleep(0.3)  # past start-up
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(2.0)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
    assert cpu / wall < 0.03  # target < 1 % of a core; generous for a loaded machine


# -- ports -------------------------------------------------------------------------------


async def test_default_ports_fall_back_when_taken() -> None:
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", DEFAULT_PORT))
        blocker.listen()
    except OSError:
        pass  # already taken by something else: the fallback is exercised all the same
    try:
        async with DemoStack(seed=1, traffic=False) as s:
            assert s.port_of("api") != DEFAULT_PORT
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                status, _, _ = await get(session, s.base_url + "/health")
            assert status == 200
    finally:
        blocker.close()
    assert DemoStack().base_url == f"http://127.0.0.1:{DEFAULT_PORT}"  # planned, not bound


async def test_explicit_port_taken_is_a_clear_error() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        s = DemoStack(port=port, traffic=False)
        with pytest.raises(ConsoleError, match=f"cannot listen on 127.0.0.1:{port}"):
            await s.start()
        await s.stop()
    finally:
        blocker.close()


# -- config ------------------------------------------------------------------------------


@pytest.mark.parametrize("local", [False, True])
async def test_config_toml_validates_and_points_at_the_stack(stack: DemoStack,
                                                            local: bool) -> None:
    pg, redis = ("postgresql://127.0.0.1:5432/test", "redis://127.0.0.1:6379/0") if local else (
        None, None)
    text = stack.config_toml(postgres_dsn=pg, redis_url=redis)
    settings = Settings.model_validate(tomllib.loads(text))
    assert settings == load_config_text(text, "<demo>")  # the app's own loader agrees
    names = [t.name for t in settings.targets]
    expected = ["api-health", "api-metrics", "frontend", "payments-webhook"]
    assert names == expected + (["postgres", "redis"] if local else []) + [
        "api-logs", "this-host", "web-1"]
    web1 = settings.target("web-1")
    assert web1.kind == "host"
    assert web1.url == stack.base_url + "/node/metrics"  # node_exporter format, served by the demo
    health_t = settings.target("api-health")
    assert health_t.url == stack.base_url + "/health"
    assert health_t.interval == 2.0
    assert health_t.timeout == 1.0
    assert health_t.expect_status == [200, 503]
    assert health_t.slow == pytest.approx(0.3)
    assert health_t.down_unless == ['body.details.database.status == "up"']
    assert health_t.degraded_unless == ['body.status == "ok"']
    prom = settings.target("api-metrics")
    assert isinstance(prom, PrometheusTarget)
    assert prom.url == stack.base_url + "/metrics"
    assert set(prom.breakdowns) == {"endpoints", "status"}
    assert set(prom.metrics) == {"requests_per_s", "error_pct", "p50_ms", "p95_ms", "p99_ms",
                                 "db_query_ms", "websockets", "webhook_failures_per_s",
                                 *BUSINESS}
    assert settings.target("frontend").url == stack.frontend_url + "/"
    assert settings.target("payments-webhook").url == stack.payments_url + "/webhooks/stripe"
    # Every panel reads a metric its target produces; every prometheus metric has a panel.
    for p in settings.panels:
        t = settings.target(p.target)
        produced = {"prometheus": set(getattr(t, "metrics", {})), "host": HOST_METRICS,
                    "postgres": set(PG_METRICS) | set(PG_SLOW), "redis": set(REDIS_METRICS)}
        assert p.metric == "latency_ms" or p.metric in produced.get(t.kind, set()), p
    assert {p.metric for p in settings.panels if p.target == "api-metrics"} == set(prom.metrics)
    by_key = {p.key: p for p in settings.panels}
    assert (by_key["p95"].warn, by_key["p95"].crit) == (200.0, 2000.0)
    assert (by_key["error-rate"].warn, by_key["error-rate"].crit) == (0.5, 5.0)
    assert by_key["p50"].warn == 100.0
    assert by_key["p99"].warn == 500.0
    # The playbook's four, declared (so the ready-made ones are not added on top).
    assert tuple(d.name for d in settings.dashboards) == READY_MADE
    assert with_playbook_dashboards(settings) == settings
    assert "active-users" in settings.dashboards[0].panels
    assert "payment-failures" in settings.dashboards[2].panels
    assert (by_key["payment-failures"].warn, by_key["payment-failures"].crit) == (1.0, 2.0)
    assert "cpu" in settings.dashboards[3].panels
    if local:
        assert settings.target("postgres").dsn == pg
        assert "redis-latency" in settings.dashboards[1].panels


def test_config_toml_before_start_uses_default_ports() -> None:
    text = DemoStack().config_toml()
    assert f"http://127.0.0.1:{DEFAULT_PORT}/health" in text
    assert f"http://127.0.0.1:{DEFAULT_PORT + 1}/" in text
    assert f"http://127.0.0.1:{DEFAULT_PORT + 2}/webhooks/stripe" in text
    Settings.model_validate(tomllib.loads(text))


# -- the machine's PostgreSQL and Redis --------------------------------------------------


async def test_probe_local_services_finds_the_machines_servers() -> None:
    t0 = time.perf_counter()
    pg, redis = await probe_local_services()
    assert pg == "postgresql://127.0.0.1:5432/test"
    assert redis == "redis://127.0.0.1:6379/0"
    assert time.perf_counter() - t0 < 0.6


async def test_probe_local_services_never_hangs_on_silent_ports() -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept, read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    try:
        port = server.sockets[0].getsockname()[1]
        t0 = time.perf_counter()
        pg, redis = await probe_local_services(0.3, pg_port=port, redis_port=port)
        assert (pg, redis) == (None, None)
        assert time.perf_counter() - t0 < 0.8
        refused = closed.getsockname()[1]
        assert await probe_local_services(0.3, pg_port=refused, redis_port=refused) == (
            None, None)
    finally:
        closed.close()
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_demo_web1_host_is_scraped_as_a_remote_node_exporter(stack: DemoStack) -> None:
    """The demo's "web-1" is this machine in node_exporter's format; the real remote-host
    probe reads the local probe's metric names from it, rates from the second scrape."""
    from console.engine.config.schema import HostTarget
    from console.engine.model import Status
    from console.engine.probes.host import HostProbe
    from console.engine.probes.http_client import HttpClients

    target = HostTarget(name="web-1", url=stack.base_url + "/node/metrics", timeout=2.0)
    async with HttpClients() as clients:
        probe = HostProbe(target, clients)
        try:
            first = await probe.check()
            await asyncio.sleep(0.3)
            second = await probe.check()
        finally:
            await probe.aclose()
    assert first.status == second.status == Status.UP, (first.error, second.error)
    assert 0.0 < second.metrics["memory_pct"] < 100.0
    assert 0.0 < second.metrics["disk_used_pct"] < 100.0
    assert 0.0 <= second.metrics["cpu_pct"] <= 100.0
    assert second.metrics["net_rx_bytes_per_s"] >= 0.0  # a rate, once there are two scrapes
    assert "net_rx_bytes_per_s" not in first.metrics


def test_demo_config_notification_example_validates_when_uncommented(stack: DemoStack) -> None:
    """The commented receivers are the playbook's routing; a user who uncomments them gets
    a valid config (secrets as ${ENV} references), not a puzzle."""
    text = stack.config_toml()
    start = text.index("# [[alerting.receivers]]")
    body = "\n".join(line[2:] if line.startswith("# ") else ("" if line == "#" else line)
                     for line in text[start:].splitlines())
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "ONCALL_SLACK_USER": "U0AAA",
           "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "TWILIO_FROM": "+14155550100",
           "ONCALL_PHONE": "+14155550101", "SMTP_PASSWORD": "pw",
           "PAGERDUTY_ROUTING_KEY": "k"}
    settings = load_config_text(text[:start] + body, "<demo, receivers uncommented>", env=env)
    by_name = {r.name: r for r in settings.alerting.receivers}
    assert set(by_name) == {"slack", "sms", "email", "pagerduty"}
    assert by_name["sms"].severities == ["P0"]
    assert by_name["email"].severities == ["P0", "P1"]
    assert by_name["email"].summary_at == "08:00"
    assert by_name["slack"].digest == 3600.0
    assert by_name["slack"].digest_severities == ["P3"]
    assert by_name["slack"].slack_bot
    without = {k: v for k, v in env.items() if k != "TWILIO_FROM"}
    with pytest.raises(ConfigError, match="TWILIO_FROM is not set"):  # validate says so
        load_config_text(text[:start] + body, "<demo>", env=without)


async def test_a_new_demo_log_has_a_backlog_so_ordinary_errors_are_not_new(
        tmp_path: Path) -> None:
    """A fresh demo paged P2 "new error kind" at its first ordinary 500: its log started
    empty, so the console had no tail to learn the API's usual errors from."""
    log = tmp_path / "combined.log"
    s = DemoStack(port=0, seed=7, traffic=False, log_path=str(log))
    await s.start()
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
        records = [json.loads(x) for x in lines if x.startswith("{")]
        assert len(records) > 100
        assert all(r["timestamp"] < time.strftime("%Y-%m-%dT%H:%M:%S",
                                                  time.gmtime(time.time() + 1))
                   for r in records)
        assert [r["message"] for r in records if r["level"] == "error"] == [
            "Unhandled exception"]
        probe = LogProbe(LogTarget(name="api-logs", path=str(log), interval=1),
                         state_dir=tmp_path / "state")
        try:
            assert (await probe.check()).metrics["new_error_kinds_total"] == 0.0
            s._log_request(ROUTES[0], 500, 0.02)  # the ordinary error, as traffic makes it
            s._flush_log()
            after = await probe.check()
            assert after.metrics["errors_total"] == 1.0
            assert after.metrics["new_error_kinds_total"] == 0.0
            s._log_request(ROUTES[0], 502, 0.02)  # the error spike's: really new
            s._flush_log()
            assert (await probe.check()).metrics["new_error_kinds_total"] == 1.0
        finally:
            await probe.aclose()
    finally:
        await s.stop()
    size = log.stat().st_size
    again = DemoStack(port=0, seed=7, traffic=False, log_path=str(log))
    await again.start()  # a log with content is followed as it is, never backfilled
    try:
        assert log.stat().st_size == size
    finally:
        await again.stop()
