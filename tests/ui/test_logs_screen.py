"""The Logs screen through Pilot at 80x24, on a real Scheduler following a real log file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from textual.app import App
from textual.widgets import Input, OptionList, Static

from console.engine.config.schema import Settings
from console.engine.scheduler import Scheduler
from console.screens.logs import LineDetail, LogsScreen


def rec(level: str, message: str, **kw: Any) -> str:
    t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 5))
    return json.dumps({"level": level, "message": message, "timestamp": t, **kw}) + "\n"


class Host(App[None]):
    def __init__(self, engine: Scheduler) -> None:
        super().__init__()
        self.engine = engine

    def on_mount(self) -> None:
        self.push_screen(LogsScreen(self.engine, ["api-logs"]))


def rows(app: App[Any]) -> list[str]:
    ol = app.screen.query_one(OptionList)
    return [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]


def title(app: App[Any]) -> str:
    return str(app.screen.query_one("#logs-title", Static).render())


async def test_builtin_keys_filter_and_json(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    p.write_text("")
    engine = Scheduler(Settings.model_validate({"targets": [
        {"name": "api-logs", "kind": "log", "path": str(p)}]}))
    await engine.start(poll=False)
    try:
        with p.open("a") as f:
            f.write(rec("info", "GET /api/signals", responseTime=120))
            f.write(rec("error", "Gemini API failed", requestId="abc-123"))
            f.write(rec("error", "Gemini API failed", requestId="abc-124"))
            f.write(rec("warn", "GET /api/slow", responseTime=1800))
            f.write(rec("error", "stripe.webhook.failed\x1b]52;c;Zm9v\x07 evil"))
            f.write("plain text \x1b[2J crash\n")
        await engine.check_once()
        app = Host(engine)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, LogsScreen)
            got = rows(app)
            assert len(got) == 6
            assert "\x1b" not in "".join(got)  # escape sequences never reach the terminal
            assert "1 not JSON" in title(app)
            await pilot.press("e")
            assert [r.split(" ", 2)[2] for r in rows(app)][:2] == ["Gemini API failed"] * 2
            await pilot.press("m")
            assert rows(app)[0].split() == ["2", "Gemini", "API", "failed"]
            await pilot.press("home", "enter")  # the first group's lines, same window
            await pilot.pause()
            assert [r.split(" ", 2)[2] for r in rows(app)] == ["Gemini API failed"] * 2
            assert "level=error message=Gemini API failed" in title(app)
            await pilot.press("escape")  # back to the groups, not out of the screen
            await pilot.pause()
            assert isinstance(app.screen, LogsScreen)
            assert rows(app)[0].split() == ["2", "Gemini", "API", "failed"]
            await pilot.press("s")
            assert len(rows(app)) == 1
            assert "GET /api/slow (1800 ms)" in rows(app)[0]
            await pilot.press("w")
            assert len(rows(app)) == 1
            assert "stripe.webhook.failed" in rows(app)[0]
            await pilot.press("slash")
            await pilot.pause()
            box = app.screen.query_one(Input)
            box.value = "level=error requestId=abc-124"
            await pilot.press("enter")
            await pilot.pause()
            assert len(rows(app)) == 1
            await pilot.press("enter")  # the line's JSON
            await pilot.pause()
            assert isinstance(app.screen, LineDetail)
            body = str(app.screen.query_one("#line-json", Static).render())
            assert '"requestId": "abc-124"' in body
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, LogsScreen)
            await pilot.press("slash")
            await pilot.pause()
            app.screen.query_one(Input).value = "responseTime>fast"
            await pilot.press("enter")
            await pilot.pause()
            assert len(rows(app)) == 1  # the bad filter is reported, the old one kept
            await pilot.press("escape", "escape")  # close the box, then clear the filter
            await pilot.pause()
            assert len(rows(app)) == 6
            with p.open("a") as f:  # following live
                f.write(rec("info", "new line"))
            await engine.check_once()
            app.screen.redraw()
            assert rows(app)[-1].endswith("new line")
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, LogsScreen)
    finally:
        await engine.stop()



def test_a_window_longer_than_the_lines_held_says_what_they_cover() -> None:
    """A runbook's "errors in the last hour" on a busy log: the screen holds 2,000 lines,
    which here span 12 minutes; the title says so instead of implying a whole hour."""
    from console.engine.logs.query import parse_query
    from console.engine.logs.tail import LogLine
    from console.screens.logs import window_label

    now = 1_800_000_000.0
    q = parse_query("level=error", since=3600.0)
    busy = [LogLine(raw="x", record=None, ts=now - 720 + i * 0.36) for i in range(2000)]
    assert window_label(q, busy, now, 2000) == (
        "query: level=error (last 1 h; the 2000 lines held cover 12 min: "
        "`opsconsole logs` reads the whole file)")
    assert window_label(q, busy, now, 2000, demo=True).endswith(  # the demo's own log
        "`opsconsole logs --demo` reads the whole file)")
    # the ring not full: every line of the window is held, nothing to add
    assert window_label(q, busy[:500], now, 2000) == "query: level=error (last 1 h)"
    # a quiet log whose held lines reach back past the window: nothing to add either
    quiet = [LogLine(raw="x", record=None, ts=now - 7200 + i * 3.6) for i in range(2000)]
    assert window_label(q, quiet, now, 2000) == "query: level=error (last 1 h)"
    assert window_label(None, busy, now, 2000) == "all lines"
    assert window_label(parse_query("level=error"), busy, now, 2000) == "query: level=error"


async def test_a_window_the_held_lines_miss_is_searched_in_the_file(tmp_path: Path) -> None:
    """A runbook's `logs:stripe-failed?window=1h` on the demo showed 11 s of lines: the
    errors of the incident's start were in the file, not in the 2,000 lines held. The
    screen now searches the file for such a window, as `opsconsole logs` does."""
    from console.engine.probes.log import RING
    from tests.ui.apptools import wait_for

    def at(ago: float, level: str, message: str) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - ago))
        return json.dumps({"level": level, "message": message, "timestamp": t}) + "\n"

    p = tmp_path / "combined.log"
    p.write_text("")
    engine = Scheduler(Settings.model_validate({"targets": [
        {"name": "api-logs", "kind": "log", "path": str(p)}]}))
    await engine.start(poll=False)
    try:
        await engine.check_once()  # following from here, as a console started earlier
        with p.open("a") as f:
            for i in range(300):  # the incident's start, 30 min ago
                f.write(at(1800 - i, "error", f"stripe.webhook.failed #{i}"))
            for i in range(RING):  # then a busy, healthy log: the last 20 s fill the ring
                f.write(at(20 - i * 20 / RING, "info", "GET /api/feed"))
        await engine.check_once()
        app = Host(engine)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, LogsScreen)
            await pilot.press("e")  # errors, last hour
            await wait_for(pilot, lambda: len(rows(app)) == 300, 10, "the file's errors")
            assert rows(app)[0].endswith("stripe.webhook.failed #0")
            assert "(last 1 h, from the file)" in title(app)
            assert f"300 of {300 + RING} lines of the file" in title(app)
            await pilot.press("m")  # by message: counted in the file, as the playbook's
            await wait_for(pilot, lambda: "(the whole file)" in title(app), 10, "grouped")
            assert f"300 in 300 groups of {300 + RING} lines of the file" in title(app)
            await pilot.press("c")  # all lines: the held ones, live
            await pilot.pause()
            assert len(rows(app)) == 500
            assert "lines of the file" not in title(app)
    finally:
        await engine.stop()
