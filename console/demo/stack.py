"""The built-in demo: a simulated stack on 127.0.0.1 modelled on the monitoring playbook.

`opsconsole demo` runs this inside the console's own event loop: an API (NestJS-terminus
`/health`, a Prometheus `/metrics`, a few JSON endpoints), a frontend and a payments webhook
receiver, each an aiohttp server on its own port, with simulated traffic recorded straight
into the metrics (no real requests, so it costs well under 1 % of a core). The operator
injects faults from the console and watches the board and panels react within one interval.

Default ports are 18780 (API), 18781 (frontend) and 18782 (payments); a taken port falls back
to a free one, so two demos can run side by side.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import math
import os
import random
import shutil
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import IO

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from console.demo.ports import DEFAULT_PORT, SERVICES
from console.engine.errors import ConsoleError

FAULTS = ("error_spike", "latency_spike", "dependency_down", "endpoint_hang")
FAULT_LABELS = {
    "error_spike": "Error spike",
    "latency_spike": "Latency spike",
    "dependency_down": "Dependency down",
    "endpoint_hang": "Endpoint hang",
}
FAULT_DESCRIPTIONS = {
    "error_spike": "about 30 % of API requests fail with 5xx (error rate panel goes critical)",
    "latency_spike": "slow database: API latency ×20 (p95 ≈ 2.6 s: the P1 line is 2 s for "
                     "5 min), /health answers in 0.4–0.8 s (slow)",
    "dependency_down": "the API's Redis (simulated, 10.0.3.7) unreachable: /health 503 "
                       "(degraded), webhooks fail, sockets drop; this machine's redis row stays up",
    "endpoint_hang": "/health accepts connections and never answers (the check times out)",
}

# Request latency buckets fitted to p50 ≈ 40 ms / p95 ≈ 150 ms, with room for a ×10 spike.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)
DB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_log = logging.getLogger(__name__)
_log.addHandler(logging.NullHandler())  # never let aiohttp's lastResort output reach the TUI


def describe_fault(name: str) -> str:
    """What a fault does, in a line, for the fault menu and the command palette."""
    try:
        return FAULT_DESCRIPTIONS[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}") from None


def fault_label(name: str) -> str:
    describe_fault(name)
    return FAULT_LABELS[name]


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str
    weight: float
    median_s: float
    db_queries: int
    needs_session: bool  # fails when Redis (sessions) is down
    client_error: int | None  # the 4xx this route sometimes answers
    client_error_p: float


ROUTES = (
    _Route("GET", "/api/feed", 0.34, 0.045, 3, False, 404, 0.002),
    _Route("GET", "/api/signals", 0.24, 0.038, 2, False, 404, 0.004),
    _Route("POST", "/api/signals", 0.06, 0.070, 2, True, 400, 0.02),
    _Route("GET", "/api/competitions", 0.16, 0.032, 2, False, None, 0.0),
    _Route("GET", "/api/users/me", 0.14, 0.018, 1, True, 401, 0.01),
    _Route("POST", "/api/auth/refresh", 0.06, 0.022, 1, True, 401, 0.03),
)
LATENCY_SPIKE = 20.0  # p95 ≈ 2.6 s: well past the playbook's P1 line (p95 > 2 s)
_SIGMA = 0.72  # log-normal spread: with the medians above, p50 ≈ 40 ms and p95 ≈ 150 ms
_BASE_RPS = 180.0
_WEBHOOKS_PER_S = 2.0
_NORMAL_5XX = 0.0005  # 0.05 %: one error in ~11 s, below the 0.5 % warning in any 2 s scrape
_TICK_S = 0.15
# Business numbers, driven by the same traffic: a payment for every ~120 requests, plan
# prices in cents, one payment in fifty a new subscription, ~7 active users per req/s.
_REQUESTS_PER_PAYMENT = 120.0
_PLAN_CENTS = (499, 999, 1999)
_NEW_SUBSCRIPTION_P = 0.02  # most payments are renewals
_USERS_PER_RPS = 7.0
_PAYMENT_FAIL_P = 0.25  # with dependency_down; none otherwise (the P1 rule fires above 2 %)
# The demo's log is rotated (renamed to .1) past this size. Every simulated request writes a
# line (~40 KB/s): at 5 MB a walk's incident logs were gone within two minutes, before
# `opsconsole logs --demo --since 1h` could read them; 25 MB and its .1 hold ~20 minutes.
LOG_ROTATE_BYTES = 25_000_000
BACKLOG_SECONDS = 600  # what a new demo log holds from before the console started
# Not "Gemini API failed" or "Database connection lost": the error spike is the API's own
# fault, and a walk sent after the database its logs blamed while health said it was up.
_ERROR_MESSAGES = {500: "Unhandled exception", 502: "Bad gateway: API worker crashed",
                   503: "Service unavailable: API workers overloaded"}


class _Metrics:
    """The stack's Prometheus metrics in their own registry (never the global one)."""

    def __init__(self) -> None:
        reg = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests", "HTTP requests handled by the API",
            ("method", "route", "status"), registry=reg,
        )
        self.duration = Histogram(
            "http_request_duration_seconds", "API request latency",
            ("route",), buckets=LATENCY_BUCKETS, registry=reg,
        )
        self.db = Histogram(
            "db_query_duration_seconds", "Database query time", buckets=DB_BUCKETS, registry=reg,
        )
        self.websockets = Gauge("websocket_connections", "Open WebSocket connections",
                                registry=reg)
        self.webhooks = Counter(
            "stripe_webhooks", "Stripe webhook deliveries by result", ("result",), registry=reg,
        )
        # Business metrics (the playbook's "Business Metrics"), driven by the traffic.
        self.signals = Counter("signals_posted", "Trade signals posted", registry=reg)
        self.active_users = Gauge("active_users", "Users active right now", registry=reg)
        self.active_competitions = Gauge("active_competitions", "Competitions running",
                                         registry=reg)
        self.subscriptions = Counter("subscriptions", "New subscriptions", registry=reg)
        self.revenue = Counter("revenue_cents", "Revenue from payments, in cents", registry=reg)
        self.payments = Counter("payments", "Payments by result", ("result",), registry=reg)
        self._pay = {k: self.payments.labels(k) for k in ("succeeded", "failed")}
        self.users_level = 0.0  # the active-user level the gauge follows (0: not yet set)
        self.competitions_level = 3
        self.build = Gauge("tradosphere_build_info", "Build of the API", ("version",),
                           registry=reg)
        self.build.labels("1.5.2").set(1)
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        # Initialise every series an operator may select on, so a rate or ratio has a
        # previous value from the first scrape on (Prometheus "instrumentation" best practice).
        self._req: dict[tuple[str, str, str], Counter] = {}
        self._lat: dict[str, Histogram] = {}
        for r in ROUTES:
            ok = "201" if r.method == "POST" else "200"
            codes = {ok, "500", "502", "503"}
            if r.client_error:
                codes.add(str(r.client_error))
            for code in sorted(codes):
                self._req[(r.method, r.path, code)] = self.requests.labels(r.method, r.path, code)
            self._lat[r.path] = self.duration.labels(r.path)
        self._hooks = {k: self.webhooks.labels(k) for k in ("processed", "duplicate", "failed")}

    def request(self, route: _Route, status: int, seconds: float) -> None:
        key = (route.method, route.path, str(status))
        child = self._req.get(key)
        if child is None:
            child = self._req[key] = self.requests.labels(*key)
        child.inc()
        self._lat[route.path].observe(seconds)
        if route.method == "POST" and route.path == "/api/signals" and status == 201:
            self.signals.inc()

    def payment(self, ok: bool, cents: int, new_subscription: bool) -> None:
        self._pay["succeeded" if ok else "failed"].inc()
        if ok:
            self.revenue.inc(cents)
            if new_subscription:
                self.subscriptions.inc()

    def webhook(self, result: str) -> None:
        self._hooks[result].inc()


class DemoStack:
    """The simulated stack; start() and stop() on the caller's running loop.

    `port`: None tries the default ports (18780…) and falls back to free ones when taken;
    0 always picks free ports; any other number uses that port and the next two, or fails.
    `traffic=False` leaves the simulated traffic to `simulate()` (deterministic tests).
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int | None = None,
                 seed: int | None = None, traffic: bool = True,
                 log_path: str | None = None) -> None:
        self.host = host
        self._traffic_enabled = traffic
        self._requested_port = port
        self._rng = random.Random(seed)
        self._active: set[str] = set()
        self._release = asyncio.Event()  # set to free requests held by endpoint_hang
        self._hung = 0
        self._stopping = False
        self._started = False
        self.metrics = _Metrics()
        self._runners: list[web.AppRunner] = []
        self._ports: dict[str, int] = {}
        self._traffic_task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()
        self._err_budget = 0.0
        self._ws = 140.0
        self._webhook_failed = 0
        self._webhook_ok = 0
        self.tick_errors = 0
        # The API's winston-format log: the given path (kept, rotated past LOG_ROTATE_BYTES),
        # else a private temporary one removed at stop.
        self.log_path: str | None = log_path
        self._own_log_dir = log_path is None
        self._log_file: IO[bytes] | None = None
        self._log_seq = 0
        cum = 0.0
        self._cum_weights: list[float] = []
        for r in ROUTES:
            cum += r.weight
            self._cum_weights.append(cum)

    # -- lifecycle -------------------------------------------------------------------------

    def _planned_port(self, index: int) -> int:
        base = self._requested_port
        if base is None:
            return DEFAULT_PORT + index
        return 0 if base == 0 else base + index

    async def start(self) -> None:
        """Bind the three servers and start the simulated traffic."""
        if self._started:
            return
        self._stopping = False
        self._release = asyncio.Event()
        try:
            for i, (service, app) in enumerate(
                (("api", self._api_app()), ("frontend", self._frontend_app()),
                 ("payments", self._payments_app()))
            ):
                runner = web.AppRunner(
                    app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0,
                    logger=_log,
                )
                await runner.setup()
                self._runners.append(runner)
                self._ports[service] = await self._bind(runner, self._planned_port(i))
        except BaseException:
            await self._cleanup_runners()
            raise
        self._t0 = time.monotonic()
        self._open_log()
        self._write_backlog()
        if self._traffic_enabled:
            self._traffic_task = asyncio.create_task(self._traffic(), name="demo-traffic")
        self._started = True

    async def _bind(self, runner: web.AppRunner, port: int) -> int:
        site = web.TCPSite(runner, self.host, port, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            with contextlib.suppress(Exception):
                await site.stop()
            if self._requested_port not in (None, 0):
                raise ConsoleError(
                    f"demo: cannot listen on {self.host}:{port} ({exc.strerror or exc}); "
                    "choose another --port"
                ) from exc
            site = web.TCPSite(runner, self.host, 0, reuse_port=False)
            await site.start()
        return site.port

    async def stop(self) -> None:
        """Release hung requests, stop the traffic and close every server (idempotent)."""
        self._stopping = True
        self._release.set()
        task, self._traffic_task = self._traffic_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._cleanup_runners()
        self._close_log(remove=True)
        self._started = False

    # -- the API's log (winston JSON lines) -------------------------------------------------

    def _open_log(self) -> None:
        """The combined.log, written as the simulated traffic flows (a private temp dir
        unless a path was given)."""
        if self.log_path is None:
            self.log_path = os.path.join(tempfile.mkdtemp(prefix="opsconsole-demo-"),
                                         "combined.log")
        else:
            try:
                os.makedirs(os.path.dirname(self.log_path) or ".", mode=0o700, exist_ok=True)
                self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - open while running
                return
            except OSError as exc:  # a full or read-only data dir: a private log instead
                _log.warning("demo log %s unusable (%s); using a temporary one",
                             self.log_path, exc)
                self.log_path = os.path.join(tempfile.mkdtemp(prefix="opsconsole-demo-"),
                                             "combined.log")
                self._own_log_dir = True
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - open while running

    def _close_log(self, *, remove: bool = False) -> None:
        f, self._log_file = self._log_file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
        if remove and self.log_path is not None and self._own_log_dir:
            shutil.rmtree(os.path.dirname(self.log_path), ignore_errors=True)
            self.log_path = None

    def _write_backlog(self) -> None:
        """A new (empty) log gets the last minutes the API logged before the console came:
        a real service's log is never empty when the console starts following it, and the
        console learns the error kinds in that tail silently. Without it the demo's first
        ordinary 500 looked like a never-seen error and paged (P2 "new error kind")."""
        f = self._log_file
        if f is None or f.tell() > 0:
            return
        now = time.time()
        n = BACKLOG_SECONDS // 2
        for i in range(n):  # one request every 2 s, the routes in turn; not from _rng
            route = ROUTES[i % len(ROUTES)]
            status = 201 if route.method == "POST" else 200
            if i == n // 2:
                status = 500  # the API's ordinary unhandled exception, as traffic has it
            elif route.client_error and i % 25 == 0:
                status = route.client_error
            self._log_request(route, status, route.median_s,
                              at=now - BACKLOG_SECONDS + 2 * i)
        self._flush_log()

    def _write_log(self, level: str, message: str, *, at: float | None = None,
                   **fields: object) -> None:
        if self._log_file is None:
            return
        now = time.time() if at is None else at
        stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                 + f".{int(now % 1 * 1000):03d}Z")
        rec = {"level": level, "message": message, "timestamp": stamp,
               "service": "tradosphere-api", **fields}
        self._log_file.write(json.dumps(rec, separators=(",", ":")).encode() + b"\n")

    def _log_request(self, route: _Route, status: int, seconds: float, *,
                     at: float | None = None) -> None:
        if self._log_file is None:
            return
        self._log_seq += 1
        rid = f"req-{self._log_seq:08x}"
        ms = round(seconds * 1000, 1)
        user = str(self._log_seq * 7919 % 500 + 1)  # not from _rng: seeded runs stay the same
        if status >= 500:
            message = _ERROR_MESSAGES.get(status, "Request failed")
            if status == 503 and "dependency_down" in self._active:  # the fault is Redis's
                message = "Redis connection lost (session store unreachable)"
            self._write_log("error", message, at=at, requestId=rid,
                      userId=user, route=route.path, status=status, responseTime=ms)
            if status == 500:  # an uncaught stack trace printed raw: not JSON
                self._log_file.write(b"    at processTicksAndRejections "
                                     b"(node:internal/process/task_queues:95:5)\n")
            return
        level = "warn" if ms > 1000 or status >= 400 else "http"
        self._write_log(level, f"{route.method} {route.path}", at=at, requestId=rid,
                        userId=user, status=status, responseTime=ms)

    def _flush_log(self) -> None:
        f = self._log_file
        if f is None or self.log_path is None:
            return
        try:
            f.flush()
            if f.tell() > LOG_ROTATE_BYTES:  # logrotate's `create`: rename, start anew
                self._close_log()
                os.replace(self.log_path, self.log_path + ".1")
                self._open_log()
        except OSError:
            self._close_log()  # a full /tmp ends the demo's log, not the demo

    async def _cleanup_runners(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()

    async def __aenter__(self) -> DemoStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- addresses -------------------------------------------------------------------------

    def port_of(self, service: str) -> int:
        """The bound port once started, else the port it will try first."""
        if service in self._ports:
            return self._ports[service]
        index = SERVICES.index(service)
        return self._planned_port(index) or DEFAULT_PORT + index  # port 0: not known yet

    def url_of(self, service: str) -> str:
        return f"http://{self.host}:{self.port_of(service)}"

    @property
    def base_url(self) -> str:
        """The API's base URL (its /health and /metrics live here)."""
        return self.url_of("api")

    @property
    def frontend_url(self) -> str:
        return self.url_of("frontend")

    @property
    def payments_url(self) -> str:
        return self.url_of("payments")

    # -- faults ----------------------------------------------------------------------------

    @property
    def active(self) -> frozenset[str]:
        return frozenset(self._active)

    @property
    def hung_requests(self) -> int:
        """Requests currently held by endpoint_hang."""
        return self._hung

    def inject(self, fault: str) -> None:
        describe_fault(fault)
        if fault == "endpoint_hang" and fault not in self._active:
            self._release = asyncio.Event()
        self._active.add(fault)

    def clear(self, fault: str) -> None:
        describe_fault(fault)
        self._active.discard(fault)
        if fault == "endpoint_hang":
            self._release.set()

    def clear_all(self) -> None:
        for fault in list(self._active):
            self.clear(fault)

    def toggle(self, fault: str) -> bool:
        """Inject or clear; True if the fault is now active."""
        if fault in self._active:
            self.clear(fault)
            return False
        self.inject(fault)
        return True

    # -- simulated traffic -----------------------------------------------------------------

    async def _traffic(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(_TICK_S)
            now = time.monotonic()
            dt, last = min(now - last, 2.0), now
            try:
                self._tick(dt, now)
            except Exception:  # a simulator bug must not end the demo
                self.tick_errors += 1
                _log.exception("demo traffic tick failed")

    def simulate(self, seconds: float) -> None:
        """Record `seconds` of simulated traffic at once, under the current faults.

        No sleeping and no requests: tests use it to get statistically steady metrics in
        milliseconds.
        """
        now = time.monotonic()
        steps = max(1, round(seconds / _TICK_S))
        for i in range(steps):
            self._tick(seconds / steps, now + i * seconds / steps)

    def _request_rate(self, now: float) -> float:
        t = now - self._t0
        # A slow 5-minute wave with a faster ripple: "normal" traffic that still moves.
        return _BASE_RPS * (1 + 0.18 * math.sin(2 * math.pi * t / 300)
                            + 0.05 * math.sin(2 * math.pi * t / 37))

    def _tick(self, dt: float, now: float) -> None:
        rng = self._rng
        for _ in range(_poisson(rng, self._request_rate(now) * dt)):
            pick = rng.random() * self._cum_weights[-1]
            route = ROUTES[min(bisect.bisect(self._cum_weights, pick), len(ROUTES) - 1)]
            status = self._status(route)
            seconds = self._latency(route)
            self.metrics.request(route, status, seconds)
            self._log_request(route, status, seconds)
            self._db_queries(route)
        for _ in range(_poisson(rng, _WEBHOOKS_PER_S * dt)):
            self._webhook_result(rng.random())
        # WebSocket clients: mean-reverting around 140, collapsing when Redis pub/sub is gone.
        target = 12.0 if "dependency_down" in self._active else 140.0
        pull = 0.5 if "dependency_down" in self._active else 0.05
        self._ws += (target - self._ws) * min(1.0, pull * dt / _TICK_S) + rng.gauss(0, 1.5)
        self._ws = max(0.0, self._ws)
        self.metrics.websockets.set(round(self._ws))
        self._business(dt, now)
        self._flush_log()

    def _business(self, dt: float, now: float) -> None:
        """Active users follow the request rate (sessions fail with Redis down), payments
        come with the traffic, and dependency_down makes a quarter of them fail."""
        rng, m = self._rng, self.metrics
        rate = self._request_rate(now)
        down = "dependency_down" in self._active
        want = rate * _USERS_PER_RPS * (0.6 if down else 1.0)
        if m.users_level <= 0:
            m.users_level = want
        m.users_level += (want - m.users_level) * min(1.0, 0.1 * dt / _TICK_S)
        m.active_users.set(max(0, round(m.users_level + rng.gauss(0, 4))))
        if rng.random() < dt / 120:  # a competition starts or ends every two minutes or so
            m.competitions_level = min(6, max(1, m.competitions_level + rng.choice((-1, 1))))
        m.active_competitions.set(m.competitions_level)
        for _ in range(_poisson(rng, rate * dt / _REQUESTS_PER_PAYMENT)):
            ok = not (down and rng.random() < _PAYMENT_FAIL_P)
            m.payment(ok, rng.choice(_PLAN_CENTS), rng.random() < _NEW_SUBSCRIPTION_P)

    def _status(self, route: _Route) -> int:
        rng = self._rng
        ok = 201 if route.method == "POST" else 200
        if "error_spike" in self._active and rng.random() < 0.30:
            return rng.choices((500, 502, 503), (0.6, 0.25, 0.15))[0]
        if "dependency_down" in self._active and route.needs_session and rng.random() < 0.10:
            return 503
        if route.client_error and rng.random() < route.client_error_p:
            return route.client_error
        self._err_budget += _NORMAL_5XX
        if self._err_budget >= 1.0:
            self._err_budget -= 1.0
            return 500
        return ok

    def _latency(self, route: _Route) -> float:
        factor = 1.0
        if "latency_spike" in self._active:
            factor *= LATENCY_SPIKE
        if "dependency_down" in self._active:
            factor *= 1.5  # cache misses fall through to the database
        return self._rng.lognormvariate(math.log(route.median_s * factor), _SIGMA)

    def _db_queries(self, route: _Route) -> None:
        factor = 10.0 if "latency_spike" in self._active else 1.0
        n = route.db_queries * (2 if "dependency_down" in self._active else 1)
        rng = self._rng
        for _ in range(n):
            self.metrics.db.observe(rng.lognormvariate(math.log(0.004 * factor), 0.8))

    def _webhook_result(self, u: float) -> str:
        if "dependency_down" in self._active:
            result = "failed"  # the idempotency store (Redis) is unreachable
        else:
            result = "duplicate" if u < 0.03 else "processed"
        self.metrics.webhook(result)
        if result == "failed":
            self._write_log("error", "stripe.webhook.failed", event="invoice.paid",
                      error="idempotency store unreachable")
            self._webhook_failed += 1
        else:
            self._webhook_ok += 1
        return result

    # -- the API ---------------------------------------------------------------------------

    def _api_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_get("/node/metrics", self._node_metrics)
        app.router.add_get("/", self._api_index)
        data: dict[str, Callable[[], object]] = {
            "/api/feed": _feed,
            "/api/signals": _signals,
            "/api/competitions": _competitions,
            "/api/users/me": _me,
        }
        for r in ROUTES:
            if r.method == "GET":
                app.router.add_get(r.path, self._api_handler(r, data[r.path]))
            else:
                app.router.add_post(r.path, self._api_handler(r, lambda: {"ok": True}))
        return app

    def _api_handler(
        self, route: _Route, payload: Callable[[], object]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            latency = min(self._latency(route), 3.0)
            await asyncio.sleep(latency)
            status = self._status(route)
            self.metrics.request(route, status, latency)
            self._db_queries(route)
            if status >= 400:
                return _json({"statusCode": status, "message": _REASONS.get(status, "Error")},
                             status)
            return _json(payload(), status)

        return handler

    async def _api_index(self, request: web.Request) -> web.Response:
        return _json({"name": "tradosphere-api", "version": "1.5.2",
                      "endpoints": ["/health", "/metrics"] + [r.path for r in ROUTES]})

    async def _health(self, request: web.Request) -> web.Response:
        if "endpoint_hang" in self._active and not self._stopping:
            release = self._release
            self._hung += 1
            try:
                await release.wait()
            finally:
                self._hung -= 1
            if self._stopping:
                return _json({"status": "error", "error": {"api": "shutting down"}}, 503)
        slow = "latency_spike" in self._active
        delay = self._rng.uniform(0.4, 0.8) if slow else self._rng.uniform(0.003, 0.015)
        await asyncio.sleep(delay)
        deps = {"database": {"status": "up"}, "redis": {"status": "up"},
                "stripe": {"status": "up"}, "gemini": {"status": "up"}}
        if "dependency_down" in self._active:
            deps["redis"] = {"status": "down",
                             "message": "connect ECONNREFUSED 10.0.3.7:6379"}
        down = {k: v for k, v in deps.items() if v["status"] != "up"}
        up = {k: v for k, v in deps.items() if v["status"] == "up"}
        # @nestjs/terminus: 200 {"status":"ok"...} or 503 {"status":"error"...} with the
        # failing indicators under "error" and every indicator under "details".
        body = {"status": "error" if down else "ok", "info": up, "error": down,
                "details": deps}
        return _json(body, 503 if down else 200)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _node_metrics(self, request: web.Request) -> web.Response:
        """The "web-1" host: this machine in node_exporter's format, as a remote host would
        serve it (psutil in a thread: a disk check can block on a stuck mount)."""
        from console.demo.node_exporter import node_exporter_text

        text = await asyncio.to_thread(node_exporter_text)
        return web.Response(text=text,
                            headers={"Content-Type": "text/plain; version=0.0.4"})

    # -- the frontend ----------------------------------------------------------------------

    def _frontend_app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024)
        app.router.add_get("/", self._frontend)
        return app

    async def _frontend(self, request: web.Request) -> web.Response:
        # Server-side rendering calls the API, so an API latency spike shows here too.
        slow = "latency_spike" in self._active
        await asyncio.sleep(self._rng.uniform(0.6, 1.0) if slow else self._rng.uniform(0.01, 0.04))
        return web.Response(text=_FRONTEND_HTML, content_type="text/html")

    # -- payments --------------------------------------------------------------------------

    def _payments_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/webhooks/stripe", self._payments_health)
        app.router.add_post("/webhooks/stripe", self._payments_webhook)
        return app

    async def _payments_health(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self._rng.uniform(0.002, 0.01))
        if "dependency_down" in self._active:
            return _json({"status": "error", "service": "payments",
                          "error": "idempotency store (redis) unreachable: ECONNREFUSED",
                          "failed_total": self._webhook_failed}, 503)
        return _json({"status": "ok", "service": "payments",
                      "processed_total": self._webhook_ok, "failed_total": self._webhook_failed})

    async def _payments_webhook(self, request: web.Request) -> web.Response:
        if "Stripe-Signature" not in request.headers:
            return _json({"error": "missing Stripe-Signature header"}, 400)
        try:
            event = await request.json()
        except (ValueError, web.HTTPException):
            return _json({"error": "body is not a Stripe event"}, 400)
        if not isinstance(event, dict) or "type" not in event:
            return _json({"error": "body is not a Stripe event"}, 400)
        result = self._webhook_result(self._rng.random())
        if result == "failed":
            return _json({"received": False, "error": "idempotency store unavailable"}, 500)
        return _json({"received": True, "duplicate": result == "duplicate"})

    # -- config ----------------------------------------------------------------------------

    def config_toml(self, *, postgres_dsn: str | None = None, redis_url: str | None = None) -> str:
        """A complete, commented opsconsole config for this stack (a starting point)."""
        return _config_toml(self.base_url, self.frontend_url, self.payments_url,
                            postgres_dsn, redis_url, self.log_path)


# -- helpers -------------------------------------------------------------------------------

_REASONS = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            500: "Internal server error", 502: "Bad Gateway", 503: "Service Unavailable"}


def _json(body: object, status: int = 200) -> web.Response:
    # Compact separators like Express, so keyword monitors such as "status":"ok" match.
    return web.Response(text=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json")


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw: Knuth's method for small means, a normal approximation above 30."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit = math.exp(-lam)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _feed() -> object:
    return {"items": [
        {"id": 9812, "kind": "signal", "asset": "BTC/USD", "direction": "LONG", "likes": 41},
        {"id": 9811, "kind": "stream", "title": "London open", "viewers": 312},
        {"id": 9809, "kind": "signal", "asset": "ETH/USD", "direction": "SHORT", "likes": 17},
    ], "next": "c9809"}


def _signals() -> object:
    return {"signals": [
        {"id": 456, "asset": "BTC/USD", "direction": "LONG", "entry": 67250.0, "stop": 66100.0},
        {"id": 455, "asset": "EUR/USD", "direction": "SHORT", "entry": 1.0842, "stop": 1.0871},
    ]}


def _competitions() -> object:
    return {"competitions": [
        {"id": 12, "name": "Weekly crypto sprint", "participants": 1480, "status": "active"},
        {"id": 11, "name": "FX masters", "participants": 622, "status": "finished"},
    ]}


def _me() -> object:
    return {"id": "123", "handle": "demo", "plan": "pro", "subscription": "active"}


_FRONTEND_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>TradoSphere</title></head>
<body><main><h1>TradoSphere</h1><p>Trade ideas, live streams and competitions.</p>
<div id="feed" data-api="/api/feed"></div></main></body></html>
"""


def _config_toml(api: str, web_url: str, pay: str, pg: str | None, redis: str | None,
                 log_path: str | None = None) -> str:
    """The demo's config from its template (`console/demo/config/*.toml`): the optional
    PostgreSQL, Redis and log parts join when those are there."""
    part = _template
    dep_targets = ""
    dep_panels = ""
    dep_keys: list[str] = []
    if pg:
        dep_targets += part("postgres-targets.toml", pg=pg)
        dep_panels += part("postgres-panels.toml")
        dep_keys += ["postgres-latency", "pg-pool", "pg-slow-queries", "pg-cache-hit", "pg-xact",
                     "pg-size"]
    if redis:
        dep_targets += part("redis-targets.toml", redis=redis)
        dep_panels += part("redis-panels.toml")
        dep_keys += ["redis-latency", "redis-hit-rate", "redis-memory", "redis-evictions"]
    if log_path:
        dep_targets += part("log-target.toml", log_path=log_path)
    dep_targets += part("host-target.toml", api=api)
    db_dashboard = ",\n          ".join(
        ", ".join(f'"{k}"' for k in ["db-query", *dep_keys][i:i + 4])
        for i in range(0, len(dep_keys) + 1, 4)
    )
    return part("config.toml", api=api, web_url=web_url, pay=pay, dep_targets=dep_targets,
                dep_panels=dep_panels, db_dashboard=db_dashboard)


def _template(name: str, **values: str) -> str:
    """A template file with each `@@key@@` replaced (TOML's own `${ENV}` references and
    braces stay as written, which `str.format` or `string.Template` would not allow)."""
    text = resources.files("console.demo").joinpath("config", name).read_text("utf-8")
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    return text


async def probe_local_services(
    timeout: float = 0.5,  # noqa: ASYNC109 - one deadline shared by both probes
    *,
    host: str = "127.0.0.1",
    pg_port: int = 5432,
    redis_port: int = 6379,
) -> tuple[str | None, str | None]:
    """(PostgreSQL DSN, Redis URL) for local servers that answer, each None if not.

    Speaks just enough protocol to be sure: PostgreSQL's SSLRequest (answered with one byte,
    'S' or 'N', and closed without a log line since SSL negotiation happened) and Redis's PING.
    A hard deadline covers connect, write and read, so a silent port cannot hang start-up.
    """
    pg, redis = await asyncio.gather(
        _answers(host, pg_port, struct.pack("!ii", 8, 80877103), (b"S", b"N"), timeout),
        _answers(host, redis_port, b"PING\r\n", (b"+PONG",), timeout),
    )
    return (f"postgresql://{host}:{pg_port}/test" if pg else None,
            f"redis://{host}:{redis_port}/0" if redis else None)


async def _answers(host: str, port: int, hello: bytes, expect: tuple[bytes, ...],
                   deadline: float) -> bool:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(deadline):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(hello)
            await writer.drain()
            want = max(len(e) for e in expect)
            data = b""
            while len(data) < want:
                chunk = await reader.read(want - len(data))
                if not chunk:
                    break
                data += chunk
                if any(data.startswith(e) for e in expect):
                    return True
            return any(data.startswith(e) for e in expect)
    except (OSError, TimeoutError):
        return False
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.2):
                    await writer.wait_closed()
