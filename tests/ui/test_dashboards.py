"""Number keys switch the overview between the config's dashboards; 0 shows every panel."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.apptools import demo_app, screen_text, wait_for, wait_ready
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
