"""Number keys switch the overview between the dashboards (the config's, else the playbook's
ready-made ones); 0 shows every panel."""

from __future__ import annotations

from typing import Any

import pytest

from console.app import OpsConsoleApp
from console.engine.config.dashboards import READY_MADE
from console.engine.config.loader import load_config_text
from tests.ui.apptools import demo_app, screen_text, wait_for, wait_ready, wait_started
from tests.ui.snapshot_apps import CONFIG
from widgets.panel_grid import PanelGrid

pytestmark = pytest.mark.usefixtures("ui_env")


async def test_number_keys_switch_dashboards() -> None:
    app: Any = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_ready(pilot)
        settings = app.scheduler.settings
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
        boards = app.scheduler.settings.dashboards
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
        await wait_started(pilot)
        engine: Any = app.scheduler
        boards = engine.settings.dashboards
        # postgres, redis and three HTTP targets, no host and no business metric.
        assert [b.name for b in boards] == ["Application overview", "Database performance"]
        grid = app.screen.query_one(PanelGrid)
        every = [p.key for p in engine.settings.panels]
        own = [p.key for p in settings.panels]
        assert own
        assert every[:len(own)] == own
        assert len(every) > len(own)  # the ready-made boards' own panels come after
        # view 0 is the config's own panels; the ready-made ones are behind their numbers
        await wait_for(pilot, lambda: grid.shown_keys == own, 5.0, "the config's panels")
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


async def test_panels_off_screen_are_not_recomputed_until_they_scroll_in() -> None:
    """With more panels than fit, each refresh computes only those on screen; scrolling
    others in asks for fresh views at once, so no panel is ever shown with old data."""
    from console.engine.model import CheckResult, Status

    t = [1_800_000_000.0]
    targets = "".join(
        f'[[targets]]\nname = "svc{i:02d}"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n'
        f'interval = "1s"\n' for i in range(30))
    panels = "".join(
        f'[[panels]]\nid = "p{i:02d}"\ntitle = "svc{i:02d} latency"\ntarget = "svc{i:02d}"\n'
        f'metric = "latency_ms"\nunit = "ms"\n' for i in range(30))
    settings = load_config_text(
        # a slow repaint tick, so only the scroll itself can bring fresh views in time
        "[console]\nplaybook_dashboards = false\nrefresh = \"30s\"\n" + targets + panels,
        "<many panels>")
    app = OpsConsoleApp(settings=settings, history=False, poll=False, clock=lambda: t[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_started(pilot)
        engine: Any = app.scheduler
        grid = app.screen.query_one(PanelGrid)
        await wait_for(pilot, lambda: len(grid.shown_keys) == 30, 5.0, "every panel")

        def feed(ms: float) -> None:
            t[0] += 1.0
            for name, state in engine._states.items():
                engine.record(state, CheckResult(target=name, kind="http", status=Status.UP,
                                                 started_at=t[0], latency_ms=ms))

        def values() -> dict[str, float | None]:
            return {k: v.value for k, v in grid._views.items()}

        feed(11.0)
        app.refresh_screen()
        await pilot.pause()
        seen = grid.seen_keys()
        assert seen is not None
        assert 0 < len(seen) < 30  # 80x24 shows a few rows of panels, not 30
        assert {values()[k] for k in seen} == {11.0}
        feed(22.0)
        app.refresh_screen()
        await pilot.pause()
        now = values()
        assert {now[k] for k in seen} == {22.0}  # on screen: fresh
        assert 22.0 not in {now[k] for k in now if k not in seen}  # off screen: skipped
        grid.focus()
        await pilot.press("G")  # the last panel scrolls in: fresh at once, no refresh tick
        await wait_for(pilot, lambda: values()["p29"] == 22.0, 3.0, "p29 fresh on arrival")
        assert "p29" in (grid.seen_keys() or set())
