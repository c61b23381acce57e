"""The console with frozen time and fixed results, for snapshot tests that never drift.

Nothing is polled (`poll=False`): every result is recorded straight into the engine with
fixed timestamps, values and texts, and the app's clock is frozen, so "since", uptime,
p95, sparklines, the chart and the result times are the same on every run. The addresses
point at 127.0.0.1 port 9 (discard) and are never contacted.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

from console.app import OpsConsoleApp
from console.engine.config.loader import load_config_text
from console.engine.model import CheckResult, ResponseInfo, Status
from tests.ui.apptools import ENGINE_READY_S, screen_text, wait_for

FIXED = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC (the ui_env fixture pins TZ=UTC)
SIZE = (80, 24)
HISTORY_S = 300.0  # five minutes of results before FIXED: the detail chart's first range

CONFIG = """
[console]
refresh = "1s"

[[targets]]
name = "api-health"
kind = "http"
group = "app"
url = "http://127.0.0.1:9/health"
interval = "5s"
slow = "300ms"

[[targets]]
name = "api-metrics"
kind = "prometheus"
group = "app"
url = "http://127.0.0.1:9/metrics"
interval = "5s"

[[targets]]
name = "frontend"
kind = "http"
group = "web"
url = "http://127.0.0.1:9/"
interval = "5s"
slow = "300ms"

[[targets]]
name = "payments-webhook"
kind = "http"
group = "app"
url = "http://127.0.0.1:9/webhooks/stripe/health"
interval = "5s"

[[targets]]
name = "postgres"
kind = "postgres"
group = "data"
dsn = "postgresql://monitor@127.0.0.1:9/app"
interval = "5s"

[[targets]]
name = "redis"
kind = "redis"
group = "data"
url = "redis://127.0.0.1:9/0"
interval = "5s"

[[panels]]
id = "requests"
title = "Request rate"
target = "api-metrics"
metric = "requests_per_s"
unit = "req/s"

[[panels]]
id = "error-rate"
title = "Error rate (5xx)"
target = "api-metrics"
metric = "error_pct"
unit = "%"
warn = 0.5
crit = 2.0

[[panels]]
id = "api-latency"
title = "API /health response"
target = "api-health"
unit = "ms"
warn = 200.0
crit = 1000.0

[[panels]]
id = "frontend-latency"
title = "Frontend response"
target = "frontend"
unit = "ms"
warn = 200.0
crit = 1000.0

[[panels]]
id = "payments-latency"
title = "Payments webhook response"
target = "payments-webhook"
unit = "ms"
warn = 300.0

[[panels]]
id = "db-latency"
title = "PostgreSQL round trip"
target = "postgres"
unit = "ms"
warn = 100.0
crit = 1000.0
"""

HEALTH_BODY = (
    '{"status":"ok","info":{"database":{"status":"up"},"redis":{"status":"up"}},'
    '"error":{},"details":{"database":{"status":"up"},"redis":{"status":"up"}}}'
)


# api-metrics' last two scrapes (5 s apart): per-route requests, 5xx and latency buckets, so
# its breakdown tables come from the real breakdown code on fixed numbers.
_ROUTES = (("/api/feed", 400, 2, (300, 380, 398)), ("/api/signals", 250, 12, (150, 230, 248)),
           ("/api/users/me", 90, 0, (88, 90, 90)), ("/api/auth/refresh", 25, 1, (20, 24, 25)))


def _exposition(scale: float) -> str:
    lines = ["# TYPE http_requests_total counter",
             "# TYPE http_request_duration_seconds histogram"]
    for route, total, errors, buckets in _ROUTES:
        n, e = round(total * scale), round(errors * scale)
        lines.append(f'http_requests_total{{route="{route}",status="200"}} {n - e}')
        lines.append(f'http_requests_total{{route="{route}",status="500"}} {e}')
        for le, count in zip(("0.05", "0.25", "1.0"), buckets, strict=True):
            lines.append(f'http_request_duration_seconds_bucket{{route="{route}",le="{le}"}} '
                         f"{round(count * scale)}")
        lines.append(f'http_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {n}')
        lines.append(f'http_request_duration_seconds_count{{route="{route}"}} {n}')
    return "\n".join(lines) + "\n"


def _breakdowns(t: float) -> dict[str, Any]:
    from console.engine.lang.promexpr import parse_scrape
    from console.engine.probes.breakdown import compute_breakdowns, default_breakdowns

    prev = parse_scrape(_exposition(10.0), at=t - 5.0)
    cur = parse_scrape(_exposition(11.0), at=t)
    return compute_breakdowns(default_breakdowns(cur), cur, prev)


def _wave(i: int, base: float, swing: float, period: float = 9.0) -> float:
    """A fixed, irregular-looking series (no randomness: the same numbers every run)."""
    return base + swing * (0.5 + 0.5 * math.sin(i / period * 2 * math.pi) * math.cos(i / 7.0))


def _results(name: str, kind: str, t: float, i: int, last: bool) -> CheckResult:
    """Target `name`'s check number `i`, started at `t`; `last` is the one shown in detail."""
    if name == "api-health":
        latency = _wave(i, 38.0, 60.0)
        return CheckResult(
            target=name, kind=kind, status=Status.UP, started_at=t, latency_ms=latency,
            metrics={"latency_ms": latency, "status_code": 200.0},
            response=ResponseInfo(status_code=200, reason="OK", http_version="HTTP/1.1",
                                  body_excerpt=HEALTH_BODY, body_bytes=len(HEALTH_BODY),
                                  final_url="http://127.0.0.1:9/health"),
        )
    if name == "api-metrics":
        latency = _wave(i, 8.0, 6.0)
        return CheckResult(
            target=name, kind=kind, status=Status.UP, started_at=t, latency_ms=latency,
            metrics={"latency_ms": latency, "requests_per_s": _wave(i, 120.0, 80.0, 13.0),
                     "error_pct": 3.2 if last else _wave(i, 0.2, 0.6, 11.0)},
            details={"breakdowns": _breakdowns(t)} if last else {},
        )
    if name == "frontend":
        latency = 412.0 if last else _wave(i, 90.0, 260.0, 17.0)
        slow = latency > 300
        return CheckResult(
            target=name, kind=kind, status=Status.DEGRADED if slow else Status.UP,
            started_at=t, latency_ms=latency, metrics={"latency_ms": latency},
            reasons=(f"latency {latency:.0f}ms above the slow threshold 300ms",) if slow else (),
        )
    if name == "payments-webhook":
        if i >= 50:  # down for the last part of the five minutes
            return CheckResult(
                target=name, kind=kind, status=Status.DOWN, started_at=t, latency_ms=1000.4,
                error="connection refused (127.0.0.1:9)",
            )
        latency = _wave(i, 55.0, 30.0, 5.0)
        return CheckResult(target=name, kind=kind, status=Status.UP, started_at=t,
                           latency_ms=latency, metrics={"latency_ms": latency})
    latency = _wave(i, 1.2, 2.5)  # postgres
    return CheckResult(target=name, kind=kind, status=Status.UP, started_at=t,
                       latency_ms=latency, metrics={"latency_ms": latency})


def feed(engine: Any) -> None:
    """Record five minutes of fixed results for every target except redis (still waiting)."""
    for name in engine.names():
        if name == "redis":
            continue
        state = engine._states[name]
        interval = state.target.interval
        count = int(HISTORY_S / interval)
        for i in range(count):
            t = FIXED - HISTORY_S + (i + 1) * interval - 1.5
            engine.record(state, _results(name, state.target.kind, t, i, i == count - 1))


def frozen_app(theme: str = "opsconsole-dark") -> OpsConsoleApp:
    """The console on CONFIG with a frozen clock, no polling, no history file, no animation."""
    app = OpsConsoleApp(
        settings=load_config_text(CONFIG, "<snapshot config>"), theme_name=theme,
        history=False, clock=lambda: FIXED, poll=False,
    )
    app.animation_level = "none"
    return app


def prepare(*keys: str, detail: bool | str = False, shows: str | None = None
            ) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """A `run_before` for snap_compare: feed the results, settle the screen, press `keys`."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app: Any = pilot.app
        await wait_for(pilot, lambda: app.scheduler is not None and app.scheduler._running
                       and len(app.scheduler.names()) == 6, ENGINE_READY_S, "engine started")
        feed(app.scheduler)
        app.refresh_screen()
        # The panel grid paces sparkline-only repaints (2 s), so sparklines fed after the
        # first frame would show or not depending on timing. A width change relays the
        # screen out and redraws everything from the fed data at once, on every run.
        await pilot.resize_terminal(SIZE[0] - 1, SIZE[1])
        await pilot.pause()
        await pilot.resize_terminal(*SIZE)
        await pilot.pause()
        if detail:
            if isinstance(detail, str):  # that target's row on the board
                names = app.scheduler.names()
                await pilot.press(*["down"] * names.index(detail))
            await pilot.press("enter")
            await wait_for(pilot, lambda: type(app.screen).__name__ == "DetailScreen", 5,
                           "detail screen")
            chart = app.screen.query_one("#chart")
            await wait_for(pilot, lambda: chart.has_data, 5, "the chart drew the history")
            await pilot.pause()
        if keys:
            await pilot.press(*keys)
        if shows is not None:  # a screen pushed by `keys` fills in at its first refresh
            app.refresh_screen()
            await wait_for(pilot, lambda: shows in screen_text(app), 5, repr(shows))
        # The "P0 FIRING" toast of the fed alert would cover half of every screen; it is
        # tested on its own (tests/ui/test_journey.py), the screens are what is shown here.
        app.clear_notifications()
        await pilot.pause()

    return run_before
