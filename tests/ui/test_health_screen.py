"""The health components screen when the last check brought no body (a timeout, a refused
connection): the list says why it is empty instead of showing nothing."""

from __future__ import annotations

import socket
import time
from typing import Any

from textual.app import App
from textual.widgets import OptionList, Static

from console.engine.config.schema import Settings
from console.engine.scheduler import Scheduler
from console.screens.health import HealthScreen
from tests.ui.apptools import wait_for


class Host(App[None]):
    def __init__(self, engine: Scheduler) -> None:
        super().__init__()
        self.engine = engine
        self.runtime = type("R", (), {"scheduler": engine})()

    def refresh_screen(self) -> None:  # what OpsConsoleApp's repaint does for this screen
        screen = self.screen
        if isinstance(screen, HealthScreen):
            screen.refresh_data(self.runtime, time.time())  # type: ignore[arg-type]

    def on_mount(self) -> None:
        self.push_screen(HealthScreen("api"))


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: the connection is refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_no_body_says_why_the_list_is_empty() -> None:
    engine = Scheduler(Settings.model_validate({"targets": [
        {"name": "api", "kind": "http", "url": f"http://127.0.0.1:{closed_port()}/health"}]}))
    await engine.start(poll=False)
    try:
        await engine.check_once()
        last = engine.last_result("api")
        assert last is not None
        assert last.error
        app = Host(engine)
        async with app.run_test(size=(80, 24)) as pilot:
            def rows() -> list[str]:
                ol: Any = app.screen.query_one(OptionList)
                return [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]

            await wait_for(pilot, lambda: isinstance(app.screen, HealthScreen) and bool(rows()),
                           10.0, "the health screen shows a row")
            head = str(app.screen.query_one("#health-head", Static).render())
            assert head.startswith("api · health components · ")
            assert rows() == ["no components to show: the last check got no health body (see "
                              "above); they come back with the next answer that has one"]
    finally:
        await engine.stop()
