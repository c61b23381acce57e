"""From a firing alert to an incident with one key, as the operator does it at 3 a.m."""

from __future__ import annotations

from typing import Any

import pytest

from console.engine.alerting.lifecycle import AlertState
from console.screens.alerts import AlertsScreen
from console.screens.incidents import IncidentScreen
from tests.ui.apptools import demo_app, screen_text, wait_for, wait_ready

pytestmark = pytest.mark.usefixtures("ui_env")  # the journal goes under the test's tmp dir


async def test_o_on_a_firing_alert_opens_its_incident() -> None:
    app: Any = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        app.demo.inject("endpoint_hang")  # /health never answers: api-health goes down

        def api_down() -> Any:
            for a in app.alerting.alerts.current():
                if a.rule.name == "api-down" and a.state == AlertState.FIRING:
                    return a
            return None

        await wait_for(pilot, api_down, 25.0, "the P0 api-down alert fires")
        app.refresh_screen()
        await pilot.pause()
        assert "P0" in screen_text(app).splitlines()[0]  # the banner, on the overview

        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), 3.0, "alerts open")
        alert = api_down()
        screen = app.screen
        for _ in range(10):  # highlight the api-down row
            if screen.selected() is not None and screen.selected().id == alert.id:
                break
            await pilot.press("j")
        assert screen.selected().id == alert.id

        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5.0,
                       "the incident screen opens")
        desk = app.desk
        incident = desk.book.get(app.screen.incident_id)
        assert incident is not None
        assert incident.severity == "P0"
        assert alert.id in incident.alerts
        assert incident.started == alert.fired_at  # timers count from the alert, not the key

        # `a` on the incident acknowledges the alert it came from too: the alert history,
        # the daily report and the banner then know someone is on it
        await pilot.press("a")
        await wait_for(pilot, lambda: incident.acknowledged_at is not None, 5.0,
                       "the incident is acknowledged")
        await wait_for(pilot, lambda: alert.state == AlertState.ACKNOWLEDGED, 5.0,
                       "its alert is acknowledged with it")
        assert alert.acked_by == str(desk.journal.actor)
        assert alert.ack_comment == f"with incident {incident.id}"
        # R while its alert still fires asks first, naming it (even below P1: the walk
        # resolved an incident while an alert of it was firing, unasked)
        from console.screens.prompt import Confirm

        await desk.severity(incident.id, "P2", "only the health endpoint")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 5.0, "asked first")
        assert f"Its alert is still firing: {alert.id}." in app.screen.question
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5.0, "back")
        assert incident.is_open
        app.demo.clear_all()


async def test_bell_rings_once_per_alert_that_starts_firing(tmp_path: Any) -> None:
    """`[console] bell = true`: one bell when a P0/P1 starts to fire, not one per repaint
    while it keeps firing, none once it is acknowledged; on any screen."""
    from console.app import OpsConsoleApp
    from console.engine.config.loader import load_config
    from tests.ui.apptools import http_config

    cfg = http_config(tmp_path / "c.toml", {"api": "http://127.0.0.1:9/health"},
                      interval="1s")
    cfg.write_text('[console]\nbell = true\nrefresh = "200ms"\n' + cfg.read_text())
    app: Any = OpsConsoleApp(settings=load_config(cfg), history=False)
    rings: list[float] = []
    app.bell = lambda: rings.append(1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        def firing() -> Any:
            return next((a for a in app.alerting.alerts.loud() if a.rule.name == "api-down"),
                        None) if app.alerting is not None else None

        await wait_for(pilot, firing, 15.0, "api-down fires (nothing listens on port 9)")
        await wait_for(pilot, lambda: len(rings) == 1, 3.0, "one bell")
        await pilot.press("question_mark")  # another screen: the bell is the app's
        await pilot.pause(1.0)  # five more repaints while it keeps firing
        assert len(rings) == 1
        alert = firing()
        app.alerting.alerts.ack(alert.rule.name, alert.target, by="test")
        await pilot.pause(0.6)
        assert firing() is None
        assert len(rings) == 1


async def test_acknowledging_an_alert_of_an_open_incident_acknowledges_the_incident() -> None:
    """A walk acknowledged the alert from the alerts list after opening its incident: the
    header said "ack 1m27s ✔" beside the Acknowledge step's "⚠ OVERDUE"."""
    app: Any = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        app.demo.inject("endpoint_hang")

        def api_down() -> Any:
            return next((a for a in app.alerting.alerts.current()
                         if a.rule.name == "api-down" and a.state == AlertState.FIRING), None)

        await wait_for(pilot, api_down, 25.0, "the P0 api-down alert fires")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), 3.0, "alerts open")
        alert = api_down()
        screen = app.screen
        for _ in range(10):
            if screen.selected() is not None and screen.selected().id == alert.id:
                break
            await pilot.press("j")
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5.0, "incident")
        incident = app.desk.book.get(app.screen.incident_id)
        assert incident.acknowledged_at is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), 5.0, "back")
        assert app.screen.selected().id == alert.id
        await pilot.press("a")
        await wait_for(pilot, lambda: incident.acknowledged_at is not None, 5.0,
                       "the incident is acknowledged with its alert")
        assert alert.state == AlertState.ACKNOWLEDGED
        step = incident.step("acknowledge")
        assert step is not None
        assert step.done_at == incident.acknowledged_at
        app.demo.clear_all()
