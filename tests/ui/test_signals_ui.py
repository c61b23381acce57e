"""Deploys on the screens: markers on the charts of their service, the High-error-rate
runbook's "recent deploy?" opening the deploys of the last hour next to the error rate; and
a replay's time cursor on the same screens, read-only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from console.app import OpsConsoleApp
from console.engine.config.loader import load_config_text
from console.engine.incidents.links import LinkTarget, parse_link, resolve
from console.engine.model import CheckResult, Status
from console.engine.paths import DataPaths
from console.engine.signals.events import make_event
from console.engine.signals.recording import Recording, ReplayDriver, result_json
from console.screens.deploys import DeploysScreen
from console.screens.detail import DetailScreen
from tests.ui.apptools import screen_text, wait_for, wait_screen, wait_started
from widgets.latency_chart import LatencyChart

CONFIG = '''
[[targets]]
name = "api-metrics"
kind = "prometheus"
url = "http://127.0.0.1:9/metrics"
group = "api"
interval = "10s"
metrics = { error_pct = "ratio(http_requests_total{status=~\\"5..\\"}, http_requests_total) * 100" }
'''


def _feed(app: OpsConsoleApp, now: float) -> None:
    """Ten minutes of error rates: 0.2 % until four minutes ago, 12 % since."""
    assert app.scheduler is not None
    state = app.scheduler._states["api-metrics"]
    for i in range(60):
        t = now - 600 + i * 10
        app.scheduler.record(state, CheckResult(
            "api-metrics", "prometheus", Status.UP, t, 12.0,
            metrics={"error_pct": 0.2 if t < now - 240 else 12.0}))


async def test_deploys_are_markers_and_the_runbook_answers_recent_deploy(
        tmp_path: Path, ui_env: None) -> None:
    settings = load_config_text(CONFIG)
    app = OpsConsoleApp(settings=settings, paths=DataPaths(tmp_path), history=False,
                        poll=False)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_started(pilot)
        runtime = app.runtime
        assert runtime is not None
        assert runtime.events is not None
        now = time.time()
        _feed(app, now)
        await runtime.events.append(make_event("Deployed v1.5.2 to production",
                                               kind="deploy", service="api",
                                               version="v1.5.2", at=now - 250))
        await runtime.events.append(make_event("Deployed billing v9", kind="deploy",
                                               service="billing", at=now - 200))

        app.push_screen(DetailScreen("api-metrics", "error_pct"))
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen)
                       and app.screen.query(LatencyChart), 5, "detail")
        chart = app.screen.query_one(LatencyChart)
        await wait_for(pilot, lambda: chart.markers != (), 10, "deploy markers")
        assert chart.markers == ((now - 250, "v1.5.2"),)  # the api's deploy, not billing's

        link = parse_link("deploys:error_pct?window=1h")
        dest = resolve(link, [LinkTarget("api-metrics", "prometheus")],
                       lambda t, m: m == "error_pct")
        assert dest.describe() == "deploys of the last 1 h next to api-metrics error_pct"
        app.open_destination(dest)
        await wait_for(pilot, lambda: isinstance(app.screen, DeploysScreen)
                       and app.screen.query(LatencyChart), 5, "deploys")
        # the chart's marker says v1.5.2 before the list has its row: wait for the row
        text = await wait_screen(pilot, lambda t: "1 deploy" in t and " ago) · " in t,
                                 "the deploy listed", within=10)
        assert "error_pct 0.2 % → 12.0 %" in text  # the error rate before and after it
        assert "billing" not in text
        deploys_chart: Any = app.screen.query_one(LatencyChart)
        assert deploys_chart.markers == ((now - 250, "v1.5.2"),)
        # error_pct: one line (each bucket's median), no p50/p95/p99 legend over it
        await wait_for(pilot, lambda: deploys_chart.has_data, 10, "the chart drawn")
        assert "p95" not in screen_text(app)


async def test_a_replay_shows_its_time_cursor_and_acts_on_nothing(tmp_path: Path,
                                                                  ui_env: None) -> None:
    settings = load_config_text(CONFIG)
    start = 1_800_000_000.0
    rec = Recording(tmp_path / "night.rec", settings.model_dump(mode="json"), start)
    for i in range(30):
        r = CheckResult("api-metrics", "prometheus", Status.UP if i < 20 else Status.DOWN,
                        start + i * 10, 10.0, error=None if i < 20 else "connection refused")
        rec.items.append((r.started_at, "r", result_json(r)))
    driver = ReplayDriver(rec, None, at=start + 250, speed=0.001)  # the cursor holds still
    app = OpsConsoleApp(settings=settings, paths=DataPaths(tmp_path / "scratch"),
                        history=False, replay=driver)
    async with app.run_test(size=(110, 34)) as pilot:
        await wait_started(pilot)
        text = await wait_screen(pilot, lambda t: "REPLAY 2027-01-15 08:04:1" in t,
                                 "the time cursor", within=10)
        assert "night.rec" in text
        assert app.read_only
        assert app.runtime is not None
        assert app.runtime.read_only
        assert app.scheduler is not None
        assert app.scheduler.last_result("api-metrics").status == Status.DOWN  # type: ignore[union-attr]
        await pilot.press("space")
        await wait_screen(pilot, lambda t: "paused" in t, "paused")
        before = driver.t
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: driver.t >= before + 60, 5, "a minute on")
        assert driver.finished


async def test_a_webhook_alert_shows_on_the_alerts_screen_and_every_banner(
        tmp_path: Path, ui_env: None, monkeypatch: Any) -> None:
    from console.engine.signals.mapping import map_body
    from console.screens.alerts import AlertsScreen

    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    settings = load_config_text(CONFIG + '''
[inbound]
port = 0

[[inbound.sources]]
name = "stripe"
kind = "stripe"
secret = "${HOOK_SECRET}"
service = "payments"
''')
    app = OpsConsoleApp(settings=settings, paths=DataPaths(tmp_path), history=False,
                        poll=False)
    async with app.run_test(size=(120, 34)) as pilot:
        await wait_started(pilot)
        runtime = app.runtime
        assert runtime is not None
        assert runtime.inbound_alerts is not None
        assert runtime.alerting is not None
        source = runtime.inbound_alerts.sources["stripe"]
        body = {"type": "invoice.payment_failed",
                "data": {"object": {"failure_message": "[red]card declined\x1b[2J"}}}
        runtime.inbound_alerts.apply(source, map_body(source, body), time.time())
        runtime.alerting.observe_now()
        await wait_screen(pilot, lambda t: "Stripe invoice.payment_failed" in t,
                          "the P1 on the banner", within=10)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), 5, "alerts")
        text = await wait_screen(pilot, lambda t: "invoice.payment_failed" in t,
                                 "the webhook alert listed", within=10)
        assert "\x1b" not in text
        await pilot.press("enter")  # its target is a sender, not a checked target
        assert app.is_running
        assert app.return_code is None
