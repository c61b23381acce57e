"""PrometheusProbe against real local servers: metrics, bad bodies, limits, deadlines, the demo.

Each server is a real aiohttp app (or a raw asyncio TCP server for byte-level misbehaviour) on
an ephemeral 127.0.0.1 port; nothing below the socket is mocked.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from console.demo.stack import DemoStack
from console.engine.config.schema import PrometheusTarget, Settings
from console.engine.model import Status
from console.engine.probes.http_client import HttpClients
from console.engine.probes.prometheus import THREAD_PARSE_BYTES, PrometheusProbe
from tests.promtools import Handler, registry_route, serve


class App:
    """A prometheus_client registry served over HTTP, plus misbehaving routes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "requests", ("status",),
                                registry=self.registry)
        self.latency = Histogram("lat_seconds", "latency", buckets=(0.1, 0.2, 0.5, 1.0),
                                 registry=self.registry)
        self.sockets = Gauge("sockets", "open sockets", registry=self.registry)
        self.routes: dict[str, Handler] = {}
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def app() -> AsyncIterator[App]:
    state = App()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        handler = state.routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    async with serve({"/metrics": registry_route(lambda: state.registry),
                      "/{tail:.*}": dispatch}) as port:
        state.port = port
        yield state


METRICS = {
    "requests_per_s": "rate(http_requests_total)",
    "error_pct": 'ratio(http_requests_total{status=~"5.."}, http_requests_total) * 100',
    "p50_ms": "histogram_quantile(0.5, lat_seconds) * 1000",
    "p95_ms": "histogram_quantile(0.95, lat_seconds) * 1000",
    "sockets": "sockets",
}


def target(url: str, **kw: object) -> PrometheusTarget:
    base: dict[str, object] = {"name": "app-metrics", "url": url, "timeout": "1s",
                               "metrics": METRICS}
    base.update(kw)
    return PrometheusTarget.model_validate(base)


def text_route(body: str | bytes, content_type: str = "text/plain",
               status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(body=raw, status=status,
                            headers={"Content-Type": content_type, **(headers or {})})

    return handler


async def raw_server(respond: Callable[[asyncio.StreamWriter], Awaitable[None]]
                     ) -> tuple[asyncio.Server, str]:
    """A TCP server that reads the request head and answers with raw bytes."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await respond(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/metrics"


# -- metrics -----------------------------------------------------------------------------


async def test_metrics_from_two_scrapes(app: App, clients: HttpClients) -> None:
    probe = PrometheusProbe(target(app.url("/metrics")), clients)
    app.requests.labels("200").inc(10)
    app.sockets.set(42)
    first = await probe.check()
    assert first.status is Status.UP, first.error
    assert first.kind == "prometheus"
    # Gauges have a value at once; rates and quantiles need a previous scrape.
    assert first.metrics["sockets"] == 42
    assert "requests_per_s" not in first.metrics
    assert "p95_ms" not in first.metrics
    text = generate_latest(app.registry).decode()
    samples = sum(len(f.samples) for f in text_string_to_metric_families(text))
    assert first.metrics["series"] == samples
    assert first.metrics["latency_ms"] == first.latency_ms
    assert first.latency_ms is not None
    assert first.latency_ms > 0
    t_first = probe.previous.at  # type: ignore[union-attr]

    app.requests.labels("200").inc(96)
    app.requests.labels("500").inc(4)
    for v, n in ((0.05, 20), (0.15, 50), (0.3, 25), (0.7, 4), (2.0, 1)):
        for _ in range(n):
            app.latency.observe(v)
    await asyncio.sleep(0.05)
    second = await probe.check()
    assert second.status is Status.UP, second.error
    dt = probe.previous.at - t_first  # type: ignore[union-attr]
    assert second.metrics["requests_per_s"] == pytest.approx(100 / dt)
    assert second.metrics["error_pct"] == pytest.approx(4.0)
    assert second.metrics["p50_ms"] == pytest.approx(160.0)  # hand-computed, as Prometheus
    assert second.metrics["p95_ms"] == pytest.approx(500.0)
    assert second.response is not None
    assert second.response.status_code == 200
    assert "http_requests_total" in second.response.body_excerpt
    await probe.aclose()


async def test_counter_reset_between_scrapes(app: App, clients: HttpClients) -> None:
    app.routes["/c"] = text_route('http_requests_total{status="200"} 1000\n')
    probe = PrometheusProbe(target(app.url("/c")), clients)
    assert (await probe.check()).status is Status.UP
    before = probe.previous
    # The exporter restarted: the same counter now reads 30.
    app.routes["/c"] = text_route('http_requests_total{status="200"} 30\n')
    r = await probe.check()
    assert r.status is Status.UP
    dt = probe.previous.at - before.at  # type: ignore[union-attr]
    assert r.metrics["requests_per_s"] == pytest.approx(30 / dt)  # from zero, not -970


# -- what is not a good scrape -----------------------------------------------------------


async def test_malformed_body_is_down_and_keeps_the_previous_scrape(
    app: App, clients: HttpClients
) -> None:
    app.routes["/m"] = text_route('http_requests_total{status="200"} 10\n')
    probe = PrometheusProbe(target(app.url("/m")), clients)
    assert (await probe.check()).status is Status.UP
    kept = probe.previous
    app.routes["/m"] = text_route('http_requests_total{status="200" 12\n')
    bad = await probe.check()
    assert bad.status is Status.DOWN
    assert bad.error is not None
    assert bad.error.startswith("not the Prometheus text format")
    assert probe.previous is kept
    assert bad.response is not None
    assert "http_requests_total" in bad.response.body_excerpt
    app.routes["/m"] = text_route('http_requests_total{status="200"} 70\n')
    good = await probe.check()
    assert good.status is Status.UP
    # The rate spans the failed scrape: 60 over the time since the kept scrape.
    assert good.metrics["requests_per_s"] == pytest.approx(
        60 / (probe.previous.at - kept.at)  # type: ignore[union-attr]
    )


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        ("<!doctype html><html><body><h1>Sign in</h1></body></html>", "text/html",
         "not the Prometheus text format (the server sent text/html)"),
        ('{"status":"ok"}', "application/json",
         "not the Prometheus text format (the server sent application/json)"),
        # An HTML page mislabelled as text/plain is still caught by the parser.
        ("<!doctype html><html><body><h1>Sign in</h1></body></html>\n", "text/plain",
         "not the Prometheus text format"),
    ],
)
async def test_not_the_format(app: App, clients: HttpClients, body: str, content_type: str,
                              fragment: str) -> None:
    app.routes["/x"] = text_route(body, content_type)
    r = await PrometheusProbe(target(app.url("/x")), clients).check()
    assert r.status is Status.DOWN
    assert r.error is not None
    assert r.error.startswith(fragment)
    assert r.response is not None
    assert "Sign in" in r.response.body_excerpt or "status" in r.response.body_excerpt


async def test_http_error_status(app: App, clients: HttpClients) -> None:
    app.routes["/x"] = text_route("upstream unavailable", status=503)
    r = await PrometheusProbe(target(app.url("/x")), clients).check()
    assert r.status is Status.DOWN
    assert r.error == "HTTP 503 Service Unavailable"
    assert r.response is not None
    assert r.response.status_code == 503


async def test_redirect_names_the_final_url(app: App, clients: HttpClients) -> None:
    app.routes["/old"] = text_route("", status=301, headers={"Location": "/metrics"})
    r = await PrometheusProbe(target(app.url("/old")), clients).check()
    assert r.status is Status.DOWN
    assert r.error == "HTTP 301 Moved Permanently (redirects to /metrics; use that as url)"


async def test_truncated_body(clients: HttpClients) -> None:
    """Content-Length promises more than arrives, then the server closes."""
    body = b'# TYPE x_total counter\nx_total{a="1"} 1\nx_total{a="2"} 2\n'

    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: %d\r\n\r\n" % (len(body) + 500) + body)
        await writer.drain()

    server, url = await raw_server(respond)
    async with server:
        r = await PrometheusProbe(target(url), clients).check()
    assert r.status is Status.DOWN
    assert r.error is not None
    assert "incomplete" in r.error or "closed the connection" in r.error


async def test_body_cut_mid_line(app: App, clients: HttpClients) -> None:
    """A body that ends cleanly at the HTTP level but in the middle of a sample line."""
    app.requests.labels("200").inc()
    full = generate_latest(app.registry).decode()
    cut = full[: full.index('http_requests_total{status="2') + 25]
    app.routes["/cut"] = text_route(cut)
    r = await PrometheusProbe(target(app.url("/cut")), clients).check()
    assert r.status is Status.DOWN
    assert r.error is not None
    assert r.error.startswith("not the Prometheus text format")


async def test_body_larger_than_max_body(app: App, clients: HttpClients) -> None:
    app.routes["/big"] = text_route("".join(f"g{{i=\"{i}\"}} {i}\n" for i in range(2000)))
    r = await PrometheusProbe(target(app.url("/big"), max_body="10KB"), clients).check()
    assert r.status is Status.DOWN
    assert r.error == "response larger than 10 kB"  # SI, as everywhere
    assert r.response is not None
    assert r.response.truncated


async def test_gzip_bomb_is_capped(app: App, clients: HttpClients) -> None:
    bomb = gzip.compress(b"# " + b"a" * 5_000_000 + b"\n")  # 5 MB of comment in ~5 KB
    app.routes["/z"] = text_route(bomb, headers={"Content-Encoding": "gzip"})
    r = await PrometheusProbe(target(app.url("/z"), max_body="1MB"), clients).check()
    assert r.status is Status.DOWN
    assert r.error == "response larger than 1 MB once decompressed"


async def test_gzip_and_openmetrics(app: App, clients: HttpClients) -> None:
    app.requests.labels("200").inc(3)
    app.routes["/gz"] = text_route(gzip.compress(generate_latest(app.registry)),
                                   headers={"Content-Encoding": "gzip"})
    r = await PrometheusProbe(target(app.url("/gz")), clients).check()
    assert r.status is Status.UP, r.error
    assert r.metrics["series"] > 5
    om = "# TYPE sockets gauge\nsockets 7\n# EOF\n"
    ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    app.routes["/om"] = text_route(om, ctype)
    r = await PrometheusProbe(target(app.url("/om")), clients).check()
    assert r.status is Status.UP, r.error
    assert r.metrics["sockets"] == 7
    app.routes["/om-cut"] = text_route(om.replace("# EOF\n", ""), ctype)
    r = await PrometheusProbe(target(app.url("/om-cut")), clients).check()
    assert r.status is Status.DOWN
    assert r.error is not None
    assert "EOF" in r.error  # OpenMetrics's terminator catches a truncated scrape


# -- deadlines ---------------------------------------------------------------------------


async def test_silent_server_times_out_on_time(clients: HttpClients) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/metrics"
    try:
        probe = PrometheusProbe(target(url, timeout="300ms"), clients)
        t0 = time.perf_counter()
        r = await probe.check()
        took = time.perf_counter() - t0
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()
    assert r.status is Status.DOWN
    assert r.error == "timed out after 300ms (no response headers)"
    assert 0.35 <= took < 0.9  # timeout + 0.1 s, plus scheduling slack


async def test_dripping_body_times_out(clients: HttpClients) -> None:
    async def respond(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(50):
            writer.write(b"1\r\n#\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)

    server, url = await raw_server(respond)
    async with server:
        t0 = time.perf_counter()
        r = await PrometheusProbe(target(url, timeout="300ms"), clients).check()
        took = time.perf_counter() - t0
    assert r.status is Status.DOWN
    assert r.error == "timed out after 300ms (body incomplete)"
    assert took < 0.9


def _big_exposition(lines: int) -> bytes:
    head = "# HELP big_total a big counter\n# TYPE big_total counter\n"
    rows = (f'big_total{{route="/api/r{i % 500}",status="{200 + i % 7}",pod="p-{i}"}} {i}\n'
            for i in range(lines))
    return (head + "".join(rows)).encode()


async def test_large_scrape_is_parsed_off_the_loop(
        app: App, clients: HttpClients, monkeypatch: pytest.MonkeyPatch) -> None:
    body = _big_exposition(20_000)  # ~1.4 MB
    assert len(body) > THREAD_PARSE_BYTES
    app.routes["/large"] = text_route(body)
    probe = PrometheusProbe(
        target(app.url("/large"), timeout="10s", metrics={"total": "big_total"}), clients
    )
    import console.engine.probes.prometheus as prom

    loop = asyncio.get_running_loop()
    real = prom.parse_scrape
    answered: list[bool] = []

    def parse_asking_the_loop(*args: Any, **kw: Any) -> Any:
        # Run a step on the event loop and wait for it. Parsed on the loop, this would wait
        # on itself (TimeoutError); parsed in a thread, the loop is free and answers. Timing
        # the loop's ticks instead failed on a fast machine, where the parse took too few.
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=10)
        answered.append(True)
        return real(*args, **kw)

    monkeypatch.setattr(prom, "parse_scrape", parse_asking_the_loop)
    r = await probe.check()
    assert r.status is Status.UP, r.error
    assert answered == [True]
    assert r.metrics["series"] == 20_000
    assert r.metrics["total"] == sum(range(20_000))


async def test_parse_deadline_stops_the_parser_thread(app: App, clients: HttpClients) -> None:
    # ~4 MB whose last line carries an escape: the fast path reads it all, gives up there,
    # and prometheus_client's parser then takes seconds over the whole text
    body = _big_exposition(60_000) + b'big_total{route="/a\\"b",status="1",pod="x"} 1\n'
    app.routes["/huge"] = text_route(body)
    probe = PrometheusProbe(target(app.url("/huge"), timeout="500ms",
                                   metrics={"t": "big_total"}), clients)
    t0 = time.perf_counter()
    r = await probe.check()
    took = time.perf_counter() - t0
    assert r.status is Status.DOWN
    assert r.error == "timed out after 500ms (parsing)"
    assert took < 1.2
    # The abandoned parse stops within a few thousand lines instead of burning a core.
    await asyncio.sleep(0.3)
    cpu0 = time.process_time()
    await asyncio.sleep(0.7)
    assert time.process_time() - cpu0 < 0.3


# -- set-up problems ---------------------------------------------------------------------


async def test_connection_refused_and_missing_env(clients: HttpClients) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        r = await PrometheusProbe(target(f"http://127.0.0.1:{port}/metrics"), clients).check()
    finally:
        s.close()
    assert r.status is Status.DOWN
    assert r.error is not None
    assert "refused" in r.error
    r = await PrometheusProbe(target("${OPSCONSOLE_TEST_UNSET_METRICS_URL}"), clients).check()
    assert r.status is Status.DOWN
    assert r.error == "environment variable OPSCONSOLE_TEST_UNSET_METRICS_URL is not set"


async def test_closed_probe(app: App, clients: HttpClients) -> None:
    probe = PrometheusProbe(target(app.url("/metrics")), clients)
    await probe.aclose()
    r = await probe.check()
    assert r.status is Status.DOWN
    assert r.error == "probe is closed"


# -- against the demo --------------------------------------------------------------------


async def test_demo_metrics_react_to_a_fault_within_one_scrape(clients: HttpClients) -> None:
    async with DemoStack(port=0, seed=11, traffic=False) as demo:
        settings = Settings.model_validate(tomllib.loads(demo.config_toml()))
        prom = settings.target("api-metrics")
        assert isinstance(prom, PrometheusTarget)
        probe = PrometheusProbe(prom, clients)
        assert (await probe.check()).status is Status.UP
        demo.simulate(10)
        normal = await probe.check()
        assert normal.status is Status.UP, normal.error
        assert set(prom.metrics) <= set(normal.metrics)
        assert normal.metrics["error_pct"] < 0.5
        assert normal.metrics["p95_ms"] < 200
        demo.inject("error_spike")
        demo.inject("latency_spike")
        demo.simulate(10)
        faulty = await probe.check()
        assert faulty.metrics["error_pct"] > 5  # the error panel's crit line
        assert faulty.metrics["p95_ms"] > 200  # the p95 panel's warn line
        demo.clear_all()
        demo.simulate(10)
        healed = await probe.check()
        assert healed.metrics["error_pct"] < 0.5
        assert healed.metrics["p95_ms"] < 200
