"""The Alerts screen on the postgres state backend (Pilot, 80x24, a real PostgreSQL): an
acknowledgement with a comment made on one console is applied by the evaluator and shown,
with who and why, on the other console's screen too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.app import App
from textual.widgets import Input, Static

from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths
from console.engine.runtime import Runtime
from console.screens.alerts import AlertsScreen
from tests.statedb import StateDb, state_db_fixture  # noqa: F401
from tests.stateharness import console_config


class Host(App[None]):
    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.rt = runtime

    def on_mount(self) -> None:
        self.push_screen(AlertsScreen(self.rt.alerting, user=self.rt.operator))


async def until(pilot: Any, cond: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def test_an_ack_with_a_comment_shows_on_every_console(
        state_db: StateDb, http_url: str, tmp_path: Path) -> None:
    rts = []
    for name in ("ann@b1", "bob@b2"):
        text = console_config(http_url + "/broken", state_db.config(), tmp_path / name)
        rt = Runtime(load_config_text(text), DataPaths(tmp_path / name), history=False,
                     operator=name)
        await rt.start()
        rts.append(rt)
    ann, bob = rts
    try:
        app = Host(bob)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            def row(rt: Runtime) -> Any:
                return rt.alerting.alerts.get("api-down", "api")  # type: ignore[union-attr]

            await until(pilot, lambda: all(row(rt) is not None and row(rt).state.value ==
                                           "firing" for rt in rts))
            screen = app.screen
            assert isinstance(screen, AlertsScreen)
            await until(pilot, lambda: screen.selected() is not None)  # (redrawn each second)
            await pilot.press("A")
            await pilot.pause()
            app.screen.query_one(Input).value = "draining the bad node"
            await pilot.press("enter")
            for rt in rts:  # applied by whichever evaluates, seen by both
                await until(pilot, lambda rt=rt: row(rt).state.value == "acknowledged"
                            and row(rt).acked_by == "bob@b2"
                            and row(rt).ack_comment == "draining the bad node")
            why = app.screen.query_one("#alerts-why", Static)
            await until(pilot, lambda: "acknowledged by bob@b2: draining the bad node" in
                        str(why.render()))
            assert any("sent to the evaluator" in n.message for n in app._notifications)
    finally:
        for rt in rts:
            await rt.stop()
    (req,) = await state_db.afetch("SELECT actor, body->>'comment' AS comment FROM "
                                   "{s}.events WHERE kind = 'alert.request'")
    assert (req["actor"], req["comment"]) == ("bob@b2", "draining the bad node")
    assert ann.alerting is not None
