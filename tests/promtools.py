"""Prometheus-side test servers shared by the probe, node_exporter, breakdown and UI tests.

`serve` runs a real aiohttp app on an ephemeral 127.0.0.1 port in the test's own loop (nothing
below the socket is mocked); `Exporter` is a service's request metrics in a prometheus_client
registry, and `serve_exporter` serves it at /metrics as a real exporter would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXPOSITION = "text/plain; version=0.0.4"
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0)


@contextlib.asynccontextmanager
async def serve(routes: Mapping[str, Handler], method: str = "GET") -> AsyncIterator[int]:
    """Serve `routes` (aiohttp path patterns, matched in order) for `method` ("*": any)
    until the block ends; yields the port. A handler whose client hung up (a probe past its
    deadline) is cancelled, so a slow route never outlives its test."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site.port
    finally:
        await runner.cleanup()


def registry_route(registry: Callable[[], CollectorRegistry]) -> Handler:
    """A /metrics handler: the registry's text exposition, as prometheus_client serves it.
    `registry` is called per request, so a test may replace the registry between scrapes."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry()),
                            headers={"Content-Type": EXPOSITION})

    return metrics


class Exporter:
    """A service's metrics: http_requests_total{method,route,status} and a latency histogram
    by route, in a registry of its own; `restart()` starts from zero like a new process."""

    def __init__(self, route_label: str = "route") -> None:
        self.route_label = route_label
        self.port = 0
        self.restart()

    def restart(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "requests",
                                ("method", self.route_label, "status"), registry=self.registry)
        self.duration = Histogram("http_request_duration_seconds", "latency",
                                  (self.route_label,), buckets=BUCKETS, registry=self.registry)

    def hit(self, route: str, status: int, n: int, seconds: float | None = None,
            method: str = "GET") -> None:
        self.requests.labels(method, route, str(status)).inc(n)
        if seconds is not None:
            for _ in range(n):
                self.duration.labels(route).observe(seconds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


@contextlib.asynccontextmanager
async def serve_exporter(exporter: Exporter) -> AsyncIterator[Exporter]:
    """`exporter` at /metrics on 127.0.0.1 until the block ends (its `url` is then valid)."""
    async with serve({"/metrics": registry_route(lambda: exporter.registry)}) as port:
        exporter.port = port
        yield exporter
