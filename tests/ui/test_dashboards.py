"""Number keys switch the overview between the dashboards (the config's, else the playbook's
ready-made ones); 0 shows every panel."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import OpsConsoleApp
from console.engine.config import load_config_text
from console.engine.dashboards import READY_MADE
from tests.ui.apptools import demo_app, screen_text, wait_for, wait_ready
from tests.ui.snapshot_apps import CONFIG
from widgets.panel_grid import PanelGrid

pytestmark = pytest.mark.usefixtures("ui_env")


async def test_number_keys_switch_dashboards() -> None:
    app: Any = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        settings = app.engine.settings
        assert len(settings.dashboards) >= 2, "the demo config defines dashboards"
        grid = app.screen.query_one(PanelGrid)
        every = [p.key for p in settings.panels]
        await wait_for(pilot, lambda: grid.shown_keys == every, 5.0, "all panels at start")

        for n, board in enumerate(settings.dashboards[:2], 1):
            await pilot.press(str(n))
            await wait_for(pilot, lambda b=board: grid.shown_keys == list(b.panels), 5.0,
                           f"dashboard {n} ({board.name}) shown")
            assert f"[{board.name}]" in screen_text(app).splitlines()[0]

        await pilot.press("9")  # no such dashboard: nothing changes
        await pilot.pause(0.2)
        assert grid.shown_keys == list(settings.dashboards[1].panels)

        await pilot.press("0")
        await wait_for(pilot, lambda: grid.shown_keys == every, 5.0, "every panel again")


async def test_number_keys_reach_the_four_playbook_dashboards_and_list_them() -> None:
    app: Any = demo_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await wait_ready(pilot, results=False)
        boards = app.engine.settings.dashboards
        assert tuple(b.name for b in boards) == READY_MADE
        grid = app.screen.query_one(PanelGrid)
        for n, board in enumerate(boards, 1):
            await pilot.press(str(n))
            await wait_for(pilot, lambda b=board: grid.shown_keys == list(b.panels), 5.0,
                           f"dashboard {n} ({board.name}) shown")
            await wait_for(pilot, lambda b=board: f"[{b.name}]" in screen_text(app), 5.0,
                           f"the title names {board.name}")
        await pilot.press("5")  # missing: a one-line list of every dashboard
        await pilot.pause()
        messages = [str(n.message) for n in app._notifications]
        assert ("no dashboard 5; 1 Application overview · 2 Database performance · "
                "3 Business metrics · 4 Infrastructure · 0 every panel") in messages, messages
        assert grid.shown_keys == list(boards[3].panels)  # unchanged


async def test_a_config_without_dashboards_gets_the_ready_made_ones_on_number_keys() -> None:
    settings = load_config_text(CONFIG, "<no dashboards>")
    assert settings.dashboards == []
    app = OpsConsoleApp(settings=settings, history=False, poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None, 15.0, "engine started")
        engine: Any = app.engine
        boards = engine.settings.dashboards
        # postgres, redis and three HTTP targets, no host and no business metric.
        assert [b.name for b in boards] == ["Application overview", "Database performance"]
        grid = app.screen.query_one(PanelGrid)
        every = [p.key for p in engine.settings.panels]
        assert every[:len(settings.panels)] == [p.key for p in settings.panels]
        await wait_for(pilot, lambda: grid.shown_keys == every, 5.0, "every panel at start")
        await pilot.press("2")
        db = boards[1]
        await wait_for(pilot, lambda: grid.shown_keys == list(db.panels), 5.0, "Database")
        by_key = {p.key: p for p in engine.settings.panels}
        shown = [by_key[k] for k in grid.shown_keys]
        assert {(p.target, p.metric) for p in shown} >= {
            ("postgres", "latency_ms"), ("postgres", "pool_usage_pct"),
            ("redis", "hit_rate_pct")}
        pool = next(p for p in shown if p.metric == "pool_usage_pct")
        assert (pool.warn, pool.crit) == (80.0, 95.0)
        await wait_for(pilot, lambda: "[Database performance]" in screen_text(app), 5.0,
                       "title")
        text = screen_text(app)
        assert "Connection pool usage" in text
        assert "· n/a" in text  # nothing polled: each panel says so in words, not colour alone
        await pilot.press("1")
        await wait_for(pilot, lambda: grid.shown_keys == list(boards[0].panels), 5.0, "App")
