"""Helpers for the app-level UI tests: bounded waits, what the screen shows, small configs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot

from console.app import OpsConsoleApp
from console.engine.model import Status

# Every wait below is a loop of short pauses, bounded in time (and so in count): a test
# waits only as long as the app needs, and a broken app fails instead of hanging.
STEP = 0.1
# A bound on a hang, not a speed: on a 2-core machine running two test workers beside other
# work, boot (imports on a thread, probes, the journal) measured over 15 s once.
ENGINE_READY_S = 60.0


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], object], within: float, what: str
) -> float:
    """Pause in 0.1 s steps until `predicate()` is true; return the seconds it took.

    Fails with `what` (and the screen as text) when `within` seconds pass first.
    """
    start = time.monotonic()
    for _ in range(int(within / STEP) + 2):
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            break
        await pilot.pause(STEP)
    if predicate():
        return time.monotonic() - start
    raise AssertionError(
        f"not within {within:g} s: {what}\nscreen:\n{screen_text(pilot.app)}"
    )


async def wait_started(pilot: Pilot[Any]) -> float:
    """Until the app's runtime has started (its scheduler knows the targets)."""
    app: Any = pilot.app
    return await wait_for(pilot, lambda: app.scheduler is not None and app.scheduler.names(),
                          ENGINE_READY_S, "engine started")


def screen_text(app: App[Any]) -> str:
    """The active screen as plain text, one line per terminal row (what a person reads)."""
    return "\n".join(strip.text.rstrip() for strip in app.screen._compositor.render_strips())


def demo_app() -> OpsConsoleApp:
    """The console on its built-in demo stack, on free ports, without local databases."""
    return OpsConsoleApp(
        settings=None, demo=True, demo_port=0, demo_local=False, history=False
    )


async def wait_ready(pilot: Pilot[Any], *, results: bool = True) -> float:
    """Wait until the engine runs and every target is on the board; with `results`, until
    every target has reported once and the board shows it (tests of keys alone need not)."""
    app: Any = pilot.app

    def ready() -> bool:
        engine = app.scheduler
        if engine is None:
            return False
        views = engine.snapshot()
        if not views or (results and any(v.status is Status.UNKNOWN for v in views)):
            return False
        boards = app.screen.query("#board")
        if not boards or boards.first().shown_targets != [v.name for v in views]:
            return False
        board = boards.first()  # the board repaints on the app's refresh tick: wait for it
        return not results or all(board.cell_text(v.name, "state") != "… wait" for v in views)

    return await wait_for(pilot, ready, ENGINE_READY_S, "engine started, first results in")


def http_config(path: Path, targets: dict[str, str], *, interval: str = "1s",
                extra: str = "") -> Path:
    """Write a config of HTTP targets {name: url} (plus `extra` TOML) to `path`."""
    blocks = [
        f'[[targets]]\nname = "{name}"\nkind = "http"\nurl = "{url}"\n'
        f'interval = "{interval}"\ntimeout = "1s"\n'
        for name, url in targets.items()
    ]
    path.write_text("\n".join(blocks) + extra, encoding="utf-8")
    return path


async def wait_screen(
    pilot: Pilot[Any], check: Callable[[str], object], what: str, within: float = 3.0
) -> str:
    """Wait until the screen, as text, passes `check`; return that text.

    The screen repaints a moment after the state it shows has changed, so what is on it is
    read in a loop, never once right after a state change.
    """
    seen = [""]

    def passes() -> object:
        seen[0] = screen_text(pilot.app)
        return check(seen[0])

    await wait_for(pilot, passes, within, what)
    return seen[0]


def row_in(text: str, name: str) -> str:
    """The line of `text` that shows target `name` on the board, or "" if none does."""
    return next((line for line in text.splitlines() if f" {name} " in line), "")
