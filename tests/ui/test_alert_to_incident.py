"""From a firing alert to an incident with one key, as the operator does it at 3 a.m."""

from __future__ import annotations

from typing import Any

import pytest

from console.engine.alerts import AlertState
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
        desk = app.incident_desk
        incident = desk.book.get(app.screen.incident_id)
        assert incident is not None
        assert incident.severity == "P0"
        assert alert.id in incident.alerts
        assert incident.started == alert.fired_at  # timers count from the alert, not the key
        app.demo.clear_all()
