"""`promql` targets against a real Prometheus 2.42 and VictoriaMetrics 1.79, and recorded
Thanos/Mimir answers.

Every value is compared with the server's own answer (`promtool query instant` at the
probe's evaluation time, `promtool query range` for charts), never with a number written
here; the exporter's gauges are only the data the servers scrape.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from console.engine.config.schema import PromqlTarget, Settings
from console.engine.model import CheckResult, Status
from console.engine.probes.http_client import HttpClients
from console.engine.probes.promapi import MAX_POINTS, chart_step, series_key
from console.engine.probes.promql import PromqlProbe
from console.engine.scheduler import Scheduler
from console.engine.text.sanitize import one_line
from tests.promservers import RemoteStores, VictoriaMetrics
from tests.promtools import serve
from tests.redisserver import free_port

RECORDED = Path(__file__).parent / "recorded"


def target(url: str, **kw: Any) -> PromqlTarget:
    kw.setdefault("metrics", {"cpu": "demo_cpu", "total": "sum(demo_cpu)",
                              "per_host": "sum by (host) (demo_cpu)"})
    return PromqlTarget(name=kw.pop("name", "remote"), url=url, **kw)


def server_values(answer: list[dict[str, Any]], name: str) -> dict[str, float]:
    """promtool's vector as {key: value}, keyed as the probe keys its series."""
    names = {a["metric"].get("__name__") for a in answer}
    out = {}
    for a in answer:
        labels = {k: v for k, v in a["metric"].items()
                  if not (len(names) <= 1 and k == "__name__")}
        out[name + series_key(labels)] = float(a["value"][1])
    return out


async def until_values(probe: PromqlProbe, metric: str) -> CheckResult:
    """Checks until `metric` has a value (VictoriaMetrics shows samples after its offset)."""
    async with asyncio.timeout(30):
        while True:
            r = await probe.check()
            if any(k == metric or k.startswith(metric + "{") for k in r.metrics):
                return r
            await asyncio.sleep(0.5)


# -- values ------------------------------------------------------------------------------------


async def test_instant_values_are_the_servers_own(remote_stores: RemoteStores,
                                                  clients: HttpClients) -> None:
    probe = PromqlProbe(target(remote_stores.prom.url), clients)
    r = await probe.check()
    assert r.status == Status.UP, r.error or r.reasons
    at = float(r.details["eval_time"])
    for name, expr in probe.target.metrics.items():
        expected = server_values(remote_stores.prom.query(expr, at), name)
        got = {k: v for k, v in r.metrics.items() if k == name or k.startswith(name + "{")}
        assert got == expected, name
    # labelled vectors: one series per label set; unlabelled ones: the metric itself
    assert "total" in r.metrics
    assert len([k for k in r.metrics if k.startswith("per_host{")]) == len(
        remote_stores.prom.query("sum by (host) (demo_cpu)", at))
    assert r.details["engine"].startswith("Prometheus 2.42")
    assert r.details["queries"]["per_host"]["labels"] == ["host"]


async def test_victoriametrics_values_and_its_latency_offset(remote_stores: RemoteStores,
                                                            clients: HttpClients) -> None:
    probe = PromqlProbe(target(remote_stores.vm.url), clients)
    r = await until_values(probe, "per_host")
    at = float(r.details["eval_time"])
    for name, expr in probe.target.metrics.items():
        expected = server_values(remote_stores.vm.query(expr, at), name)
        got = {k: v for k, v in r.metrics.items() if k == name or k.startswith(name + "{")}
        assert got == expected, name
    assert r.details["engine"] == "VictoriaMetrics"
    assert r.details["latency_offset_s"] == 1.0  # read from its /flags
    assert "hides samples newer than 1s" in r.details["notes"][0]


async def test_default_victoriametrics_offset_is_said_to_be_30s(clients: HttpClients) -> None:
    with VictoriaMetrics() as vm:
        vm.start()
        probe = PromqlProbe(target(vm.url, metrics={"n": "vector(1)"}), clients)
        r = await probe.check()
    assert r.status == Status.UP, r.error
    assert r.details["latency_offset_s"] == 30.0
    assert r.details["notes"][0].startswith("VictoriaMetrics hides samples newer than 30s")


async def test_per_label_series_reach_the_store_and_a_breakdown(
        remote_stores: RemoteStores) -> None:
    settings = Settings(targets=[target(remote_stores.prom.url)])
    engine = Scheduler(settings)
    await engine.start(poll=False)
    try:
        [r] = await engine.check_once()
    finally:
        await engine.stop()
    at = float(r.details["eval_time"])
    expected = server_values(remote_stores.prom.query("sum by (host) (demo_cpu)", at), "per_host")
    for key, value in expected.items():
        assert engine.store.latest(f"remote:{key}")[1] == value
    table = r.details["breakdowns"]["by host"]
    assert table["columns"] == ["host", "per_host"]
    assert {row["host"]: row["per_host"] for row in table["rows"]} == {
        k.split('"')[1]: v for k, v in expected.items()}
    # rows ranked by value, largest first
    values = [row["per_host"] for row in table["rows"]]
    assert values == sorted(values, reverse=True)


async def test_a_panel_may_name_some_of_a_series_labels_as_a_selector_would(
        remote_stores: RemoteStores) -> None:
    """`cpu{host="…"}` picks the one series with that host whatever other labels
    (instance, job) it carries; a selector that several series or none match is n/a."""
    from console.engine.config.schema import Panel

    panels = [Panel(title="one", target="remote", metric='cpu{host = "web-2"}'),
              Panel(title="several", target="remote", metric='cpu{job="test"}'),
              Panel(title="none", target="remote", metric='cpu{host="nowhere"}')]
    settings = Settings(targets=[target(remote_stores.prom.url)], panels=panels)
    engine = Scheduler(settings)
    await engine.start(poll=False)
    try:
        [r] = await engine.check_once()
        at = float(r.details["eval_time"])
        [answer] = remote_stores.prom.query('demo_cpu{host="web-2"}', at)
        assert len(answer["metric"]) > 2  # host plus the scrape's own labels
        one, several, none = engine.panel_views(now=at)
    finally:
        await engine.stop()
    assert one.value == float(answer["value"][1])
    hosts = remote_stores.prom.query('demo_cpu{job="test"}', at)
    assert len(hosts) > 1
    assert several.value is None
    assert none.value is None
    assert none.state == "nodata"


# -- bad input ---------------------------------------------------------------------------------


async def test_a_query_the_server_refuses_is_that_metrics_clear_error(
        remote_stores: RemoteStores, clients: HttpClients) -> None:
    probe = PromqlProbe(target(remote_stores.prom.url, metrics={
        "total": "sum(demo_cpu)", "broken": "sum(demo_cpu"}), clients)
    r = await probe.check()
    assert r.status == Status.DEGRADED
    assert "total" in r.metrics
    [reason] = r.reasons
    assert reason.startswith("broken: bad_data: ")
    assert "unclosed left parenthesis" in reason  # the server's own words
    assert r.metrics["queries_failed"] == 1


async def test_every_query_failing_is_down(remote_stores: RemoteStores,
                                           clients: HttpClients) -> None:
    probe = PromqlProbe(target(remote_stores.prom.url,
                               metrics={"a": "sum(", "b": "rate(demo_cpu)"}), clients)
    r = await probe.check()
    assert r.status == Status.DOWN
    assert r.error is not None
    assert r.error.startswith("a: bad_data")
    assert r.error.endswith("(and 1 more)")
    assert "expected type range vector" in r.details["queries"]["b"]["error"]


async def test_a_range_vector_is_explained(remote_stores: RemoteStores,
                                           clients: HttpClients) -> None:
    probe = PromqlProbe(target(remote_stores.prom.url, metrics={"raw": "demo_cpu[1m]"}), clients)
    r = await probe.check()
    assert r.status == Status.DOWN
    assert "range vector" in (r.error or "")
    assert "rate(" in (r.error or "")


async def test_a_huge_result_is_capped_and_the_drop_counted(remote_stores: RemoteStores,
                                                            clients: HttpClients) -> None:
    probe = PromqlProbe(target(remote_stores.prom.url, metrics={"many": "demo_many"}, max_series=5),
                        clients)
    r = await probe.check()
    at = float(r.details["eval_time"])
    answer = server_values(remote_stores.prom.query("demo_many", at), "many")
    kept = {k: v for k, v in r.metrics.items() if k.startswith("many{")}
    assert len(kept) == 5
    assert sorted(kept.values()) == sorted(answer.values())[-5:]  # the largest five
    dropped = len(answer) - 5
    assert r.details["queries"]["many"]["series"] == len(answer)
    assert any(f"({dropped} dropped" in n for n in r.details["notes"])
    assert r.status == Status.UP


async def test_an_unreachable_store_is_down_with_the_reason(clients: HttpClients) -> None:
    probe = PromqlProbe(target(f"http://127.0.0.1:{free_port()}"), clients)
    r = await probe.check()
    assert r.status == Status.DOWN
    assert "connection refused" in (r.error or "")


async def test_a_hanging_store_times_out_and_other_targets_keep_polling(
        remote_stores: RemoteStores) -> None:
    hang = asyncio.Event()

    async def never(_: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(text="{}")

    async with serve({"/{tail:.*}": never}) as port:
        slow = target(f"http://127.0.0.1:{port}", name="slow", timeout="1s", interval="30s")
        fast = target(remote_stores.prom.url, name="fast", interval="200ms")
        engine = Scheduler(Settings(targets=[slow, fast]))
        slow_done = asyncio.Event()
        engine.subscribe(lambda r: slow_done.set() if r.target == "slow" else None)
        await engine.start()
        try:
            async with asyncio.timeout(20):
                await slow_done.wait()
            fast_checks = len(engine.results("fast"))
            [down] = engine.results("slow")
        finally:
            await engine.stop()
            hang.set()
    assert down.status == Status.DOWN
    assert down.error is not None
    assert "no answer within 1s" in down.error
    assert fast_checks >= 3  # the fast target went on while the slow one hung


async def test_a_server_side_timeout_is_named(clients: HttpClients) -> None:
    body = (RECORDED / "prometheus_timeout.json").read_bytes()

    async def timeout(_: web.Request) -> web.Response:
        return web.Response(body=body, status=503, content_type="application/json")

    async with serve({"/api/v1/query": timeout}) as port:
        r = await PromqlProbe(target(f"http://127.0.0.1:{port}",
                                     metrics={"x": "sum(rate(a[1d]))"}), clients).check()
    assert r.status == Status.DOWN
    assert r.error == "x: timeout: query timed out in expression evaluation"


# -- engines that cannot run here: recorded answers ------------------------------------------------


async def test_thanos_warnings_degrade_and_partial_response_false_is_asked(
        clients: HttpClients) -> None:
    seen: list[dict[str, str]] = []
    warning = (RECORDED / "thanos_partial_warning.json").read_bytes()

    async def query(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.Response(body=warning, content_type="application/json")

    async with serve({"/api/v1/query": query}) as port:
        t = target(f"http://127.0.0.1:{port}", metrics={"err": "sum by (cluster) (x)"},
                   params={"dedup": "true"})
        r = await PromqlProbe(t, clients).check()
    assert seen[0]["partial_response"] == "false"
    assert seen[0]["dedup"] == "true"
    assert r.status == Status.DEGRADED
    expected = one_line(json.loads(warning)["warnings"][0], 300)  # the server's own words
    assert r.reasons == (f"err: warning: {expected}",)
    assert r.details["queries"]["err"]["warnings"]
    assert len([k for k in r.metrics if k.startswith("err{")]) == 2


async def test_thanos_partial_response_refused_is_an_error(clients: HttpClients) -> None:
    body = (RECORDED / "thanos_partial_error.json").read_bytes()

    async def query(_: web.Request) -> web.Response:
        return web.Response(body=body, status=422, content_type="application/json")

    async with serve({"/api/v1/query": query}) as port:
        r = await PromqlProbe(target(f"http://127.0.0.1:{port}", metrics={"x": "x"}),
                              clients).check()
    assert r.status == Status.DOWN
    assert r.error is not None
    assert r.error.startswith("x: internal: fetch series for")


async def test_mimir_path_prefix_and_tenant_header(clients: HttpClients,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tenants: list[str | None] = []
    vector = (RECORDED / "mimir_vector.json").read_bytes()
    no_org = (RECORDED / "mimir_no_org.txt").read_bytes()

    async def query(request: web.Request) -> web.Response:
        org = request.headers.get("X-Scope-OrgID")
        tenants.append(org)
        if not org:
            return web.Response(body=no_org, status=401, content_type="text/plain")
        return web.Response(body=vector, content_type="application/json")

    monkeypatch.setenv("MIMIR_TENANT", "team-a")
    async with serve({"/prometheus/api/v1/query": query}) as port:
        base = f"http://127.0.0.1:{port}/prometheus"
        no_tenant = await PromqlProbe(target(base, metrics={"cpu": "x"}), clients).check()
        with_tenant = await PromqlProbe(target(
            base, metrics={"cpu": "x"}, headers={"X-Scope-OrgID": "${MIMIR_TENANT}"}),
            clients).check()
    assert no_tenant.status == Status.DOWN
    assert no_tenant.error == "cpu: HTTP 401: no org id"
    assert with_tenant.status == Status.UP
    assert tenants[-1] == "team-a"
    expected = {f"cpu{series_key(a['metric'])}": float(a["value"][1])
                for a in json.loads(vector)["data"]["result"]}
    assert {k: v for k, v in with_tenant.metrics.items() if k.startswith("cpu{")} == expected


async def test_a_html_login_page_is_not_taken_for_an_answer(clients: HttpClients) -> None:
    async def login(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>Sign in</body></html>", content_type="text/html")

    async with serve({"/{tail:.*}": login}) as port:
        r = await PromqlProbe(target(f"http://127.0.0.1:{port}", metrics={"x": "x"}),
                              clients).check()
    assert r.status == Status.DOWN
    assert "not a Prometheus API answer" in (r.error or "")


async def test_a_missing_env_reference_is_a_clear_error(clients: HttpClients) -> None:
    t = target("http://127.0.0.1:1", headers={"Authorization": "Bearer ${NO_SUCH_TOKEN_XYZ}"})
    r = await PromqlProbe(t, clients).check()
    assert r.status == Status.DOWN
    assert r.error == "environment variable NO_SUCH_TOKEN_XYZ is not set"


# -- charts --------------------------------------------------------------------------------------


async def test_a_chart_is_the_servers_range_query(remote_stores: RemoteStores,
                                                  clients: HttpClients) -> None:
    probe = PromqlProbe(target(remote_stores.prom.url), clients)
    chart = await probe.history("per_host", 120.0, 60)
    assert "error" not in chart, chart.get("error")
    assert chart["step"] == chart_step(120.0, 60) == 2.0
    answer = remote_stores.prom.query_range("sum by (host) (demo_cpu)", chart["start"],
                                            chart["end"], chart["step"])
    expected = {f"per_host{series_key(a['metric'])}": [(float(t), float(v))
                                                        for t, v in a["values"]]
                for a in answer}
    got = {s["key"]: list(zip(s["t"].tolist(), s["v"].tolist(), strict=True))
           for s in chart["series"]}
    assert got == expected


def test_chart_steps_never_exceed_the_point_cap() -> None:
    for span in (300.0, 3600.0, 86400.0, 30 * 86400.0, 400 * 86400.0):
        for points in (10, 160, 320, 100_000):
            step = chart_step(span, points)
            assert span / step + 1 <= MAX_POINTS
            assert step >= 1
            assert step == math.ceil(step)
    # a 24 h chart 160 cells wide (2 braille points a cell): one point per 270 s
    assert chart_step(86400.0, 320) == 270.0


async def test_a_chart_error_is_reported_not_raised(clients: HttpClients) -> None:
    probe = PromqlProbe(target(f"http://127.0.0.1:{free_port()}"), clients)
    chart = await probe.history("total", 3600.0, 100)
    assert "connection refused" in chart["error"]
    assert (await probe.history("nope", 60.0, 10))["error"].startswith("nope is not one")
