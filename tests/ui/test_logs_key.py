"""The app's `L` key opens the Logs screen on the config's log target."""

from __future__ import annotations

from pathlib import Path

from console.engine.config.schema import Settings
from console.screens.logs import LogsScreen
from tests.ui.test_logs_screen import rec, rows


async def test_app_opens_logs_with_capital_l(tmp_path: Path) -> None:
    from console.app import OpsConsoleApp
    from tests.ui.apptools import wait_for, wait_started

    p = tmp_path / "combined.log"
    p.write_text("")
    settings = Settings.model_validate({"targets": [
        {"name": "api-logs", "kind": "log", "path": str(p), "interval": "1s"},
        {"name": "this-host", "kind": "host", "interval": "2s"}]})
    app = OpsConsoleApp(settings=settings, history=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_started(pilot)
        with p.open("a") as f:
            f.write(rec("error", "Gemini API failed"))
        await pilot.press("L")
        await wait_for(pilot, lambda: isinstance(app.screen, LogsScreen), 5, "Logs screen")
        await wait_for(pilot, lambda: any("Gemini API failed" in r for r in rows(app)), 8,
                       "the line written after start is listed")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, LogsScreen)
