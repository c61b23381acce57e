"""The whole console driven by keys at 80x24: every key and screen, faults, hot reload.

Monitored services are real: the demo stack's servers, or HTTP servers from
tests/faultservers.py on 127.0.0.1. Waits are bounded loops of short pauses (apptools).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from textual.command import CommandInput, CommandList, CommandPalette
from textual.widgets import Input, OptionList, Static

import themes
from console.app import OpsConsoleApp
from console.engine.config.loader import load_config, load_config_text
from console.engine.model import Status
from console.engine.paths import DataPaths
from console.screens.detail import RANGES, DetailScreen
from console.screens.faults import FaultScreen
from console.screens.help import HelpScreen
from console.screens.overview import OverviewScreen
from tests.faultservers import Route, http_server, json_server
from tests.ui.apptools import (
    demo_app,
    http_config,
    row_in,
    screen_text,
    wait_for,
    wait_ready,
    wait_screen,
    wait_started,
)
from widgets.latency_chart import LatencyChart
from widgets.panel_grid import PanelGrid
from widgets.status_board import StatusBoard

pytestmark = pytest.mark.usefixtures("ui_env")

SIZE = (80, 24)
STATES = ("● up", "▲ degr", "✖ DOWN")


def _board(app: Any) -> StatusBoard:
    return app.screen.query_one("#board", StatusBoard)


def _grid(app: Any) -> PanelGrid:
    return app.screen.query_one("#panels", PanelGrid)


def _static_text(widget: Static) -> str:
    return str(widget.render())


async def _opened(pilot: Any, screen: type, selector: str) -> Any:
    """Wait until `screen` is on top and composed (a pushed screen mounts its widgets a
    moment later; a key pressed before that reaches a screen with nothing in it)."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, screen) and app.screen.query(selector),
                   5, f"{screen.__name__} open with {selector}")
    return app.screen


def _demo_names(app: Any) -> list[str]:
    """The targets the demo's own config declares (not what the engine happens to hold)."""
    return [t.name for t in load_config_text(app.demo.config_toml(), "<demo>").targets]


# -- overview, board cursor, detail and its ranges ----------------------------------------


async def test_board_shows_every_demo_target_and_keys_move_and_open() -> None:
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        assert isinstance(app.screen, OverviewScreen)
        names = _demo_names(app)
        assert names == ["api-health", "api-metrics", "frontend", "payments-webhook",
                         "api-logs", "this-host", "web-1"]
        board = _board(app)
        assert board.shown_targets == names
        assert board.has_focus
        text = await wait_screen(
            pilot, lambda t: all(any(label in row_in(t, name) for label in STATES)
                                 for name in names),
            "every demo target's row shows a state")
        assert f"{len(names)} targets" in text.splitlines()[0]
        # the config it runs, kept in its world for `opsconsole alerts --demo`
        from console.engine.config.loader import load_config

        kept = load_config(app.paths.demo_config)
        assert [t.name for t in kept.targets] == [t.name for t in app.runtime.settings.targets]

        last = len(names) - 1
        moves = [("j", 1), ("down", 2), ("k", 1), ("up", 0), ("G", last), ("g", 0),
                 ("end", last), ("home", 0), ("up", 0), ("j", 1)]
        for key, row in moves:
            await pilot.press(key)
            assert board.cursor_row == row, f"after {key!r}"
            assert board.selected_target == names[row]

        await pilot.press("enter")
        await _opened(pilot, DetailScreen, "#detail-info")
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        assert detail.target == "api-metrics"
        info = detail.query_one("#detail-info", Static)
        await wait_for(pilot, lambda: "range 5 min" in _static_text(info), 3, "detail info")
        assert _static_text(info).startswith("api-metrics · prometheus · http://127.0.0.1:")
        assert detail.range_index == 0
        for key, index in [("2", 1), ("3", 2), ("1", 0), ("r", 1), ("r", 2), ("r", 0),
                           ("3", 2)]:
            await pilot.press(key)
            assert detail.range_index == index, f"after {key!r}"
            assert f"range {RANGES[index][0]}" in _static_text(info)
        # m: the chart's next metric, through the series this console records for it
        metrics = detail.local_metrics()
        assert metrics[0] == "latency_ms"
        assert len(metrics) > 1
        assert detail.check_action("next_metric", ()) is True
        chart = detail.query_one(LatencyChart)
        await pilot.press("m")
        assert detail.metric == metrics[1]
        await wait_for(pilot, lambda: chart._title.startswith(metrics[1]), 3, "next chart")
        # round again: through every series recorded by then (a rate's series appears
        # with its second scrape, so the list may have grown since it was read above)
        for _ in range(len(detail.local_metrics())):
            if detail.metric == "latency_ms":
                break
            await pilot.press("m")
        assert detail.metric == "latency_ms"  # round again

        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        assert _board(app).has_focus
        assert _board(app).selected_target == "api-metrics"  # the cursor stayed put


# -- filter, focus switching and the panel grid ---------------------------------------------


def _expected_panels(app: Any, needle: str) -> list[str]:
    return [p.key for p in app.scheduler.panel_views()
            if needle in " ".join((p.key, p.title, p.target, p.metric, p.state)).lower()]


async def test_filter_tab_and_panel_grid_keys() -> None:
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot, results=False)
        board, grid = _board(app), _grid(app)
        names = _demo_names(app)
        all_panels = [p.key for p in app.settings.panels]
        await wait_for(pilot, lambda: grid.shown_keys == all_panels, 3, "panels shown")
        assert not app.screen.query("#filter")  # mounted on the first `/`, not before

        await pilot.press("slash")
        box = app.screen.query_one("#filter", Input)
        assert box.display
        assert box.has_focus
        await pilot.press(*"front")
        assert box.value == "front"
        assert board.shown_targets == ["frontend"]
        assert grid.shown_keys == _expected_panels(app, "front") == ["frontend-latency"]
        text = await wait_screen(
            pilot, lambda t: " frontend " in t and " api-health " not in t, "filtered board")
        for hidden in ("api-health", "api-metrics", "payments-webhook"):
            assert f" {hidden} " not in text, f"{hidden} still shown:\n{text}"
        assert "Frontend response" in text
        assert "Request rate" not in text

        await pilot.press("escape")  # clears the filter, hides it, gives the board focus
        assert box.value == ""
        assert not box.display
        assert board.has_focus
        assert board.shown_targets == names
        assert grid.shown_keys == all_panels
        await wait_screen(pilot, lambda t: all(f" {name} " in t for name in names),
                          "every target back on the board")

        # Enter in the filter keeps the filter and gives the board the keys back.
        await pilot.press("slash", *"PAY", "enter")
        assert board.has_focus
        assert box.display
        assert box.value == "PAY"
        assert board.shown_targets == ["payments-webhook"]
        assert grid.shown_keys == _expected_panels(app, "pay")
        await pilot.press("escape")
        assert board.shown_targets == names
        assert not box.display

        await pilot.press("tab")
        assert grid.has_focus
        assert not board.has_focus
        await pilot.press("tab")
        assert board.has_focus
        await pilot.press("tab")
        assert grid.has_focus

        # The grid's cursor stayed on a panel it had while the filter showed only those.
        assert grid.cursor_key in _expected_panels(app, "pay")
        await pilot.press("g")
        assert grid.columns == 2  # 80 columns hold two panels side by side
        moves = [("right", 1), ("left", 0), ("l", 1), ("h", 0), ("down", 2), ("j", 4),
                 ("k", 2), ("up", 0), ("G", len(all_panels) - 1), ("g", 0), ("l", 1),
                 ("j", 3)]
        for key, index in moves:
            await pilot.press(key)
            assert grid.cursor_key == all_panels[index], f"after {key!r}"

        key = grid.cursor_key
        panel = next(p for p in app.settings.panels if p.key == key)
        await pilot.press("enter")
        await _opened(pilot, DetailScreen, "#detail-info")
        assert app.screen.target == panel.target
        # charting the panel's metric, not its target's probe latency (the walk opened
        # "Active users" and read the scrape's latency)
        assert app.screen.metric == panel.metric
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        assert grid.has_focus
        assert grid.cursor_key == key

        # A panel of another target opens that target.
        await pilot.press("G", "enter")
        await _opened(pilot, DetailScreen, "#detail-info")
        last = app.settings.panels[-1]
        assert last.target != panel.target
        assert app.screen.target == last.target
        assert app.screen.metric == last.metric
        await pilot.press("escape")


# -- help, fault menu and what injected faults do to the board ------------------------------


def _help_text(app: Any) -> str:
    assert isinstance(app.screen, HelpScreen)
    return _static_text(app.screen.query_one("#help-keys", Static))


async def test_help_lists_the_keys_of_the_screen_below() -> None:
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot, results=False)
        await pilot.press("question_mark")
        await _opened(pilot, HelpScreen, "#help-keys")
        keys = _help_text(app)
        for word in ("Filter", "Board/Panels", "Open", "Quit", "Keys", "Faults",
                     "command palette"):
            assert word in keys, f"{word!r} missing from help:\n{keys}"
        assert "5 min" not in keys  # the detail screen's keys are not the overview's
        # the number keys as the dashboards there are (the demo's four ready-made ones)
        boards = len(app.scheduler.settings.dashboards)
        assert boards == 4
        assert re.search(r"^0–4 +Dashboard 1–4 \(0: all panels\)$", keys, re.M), keys
        assert "9" not in keys
        assert "Scroll Left" not in keys  # Textual's inert defaults are left out
        # Esc clears the filter here: the "Esc back / close" every screen has is left out
        assert "back / close" not in keys
        words = ("Filter", "Quit", "Keys", "Faults", "Theme", "command palette")
        await wait_screen(pilot, lambda t: all(w in t for w in words),  # fits at 80x24
                          "the whole key list on screen, the app's keys included")
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)

        await pilot.press("enter")
        await _opened(pilot, DetailScreen, "#detail-info")
        await pilot.press("question_mark")
        await _opened(pilot, HelpScreen, "#help-keys")
        keys = _help_text(app)
        for word in ("Back", "5 min", "1 h", "24 h", "Range", "Quit", "Faults"):
            assert word in keys, f"{word!r} missing from the detail help:\n{keys}"
        assert "Filter" not in keys
        await pilot.press("question_mark")  # ? closes it too
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)


def _menu_text(app: Any) -> str:
    menu = app.screen.query_one("#faults-list", OptionList)
    return "\n".join(str(menu.get_option_at_index(i).prompt) for i in range(menu.option_count))


async def test_fault_menu_toggles_and_clears_demo_faults() -> None:
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot, results=False)
        await pilot.press("f")
        await _opened(pilot, FaultScreen, "#faults-list")
        assert app.demo.active == frozenset()
        assert "2. [ ] latency spike" in _menu_text(app)
        await pilot.press("2")
        assert app.demo.active == {"latency_spike"}
        assert "2. [x] latency spike" in _menu_text(app)
        await pilot.press("1")
        assert app.demo.active == {"latency_spike", "error_spike"}
        await pilot.press("2")
        assert app.demo.active == {"error_spike"}
        await pilot.press("c")
        assert app.demo.active == frozenset()
        assert "[x]" not in _menu_text(app)
        await pilot.press("j", "j", "enter")  # Enter on the highlighted fault toggles it
        assert app.demo.active == {"dependency_down"}
        await pilot.press("c", "question_mark")  # its keys, over it (a modal took no `?`)
        await _opened(pilot, HelpScreen, "#help-keys")
        keys = str(app.screen.query_one("#help-keys", Static).render())
        assert "Clear all" in keys
        assert re.search(r"^⏎ +Toggle the highlighted fault$", keys, re.M), keys
        assert re.search(r"^1 2 3 4 +Toggle by number$", keys, re.M), keys
        await pilot.press("escape")
        await _opened(pilot, FaultScreen, "#faults-list")
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        assert app.demo.active == frozenset()
        await wait_screen(pilot, lambda t: "demo faults: none" in t, "header shows no faults")


@pytest.mark.parametrize(
    ("key", "fault", "state", "label"),
    [("3", "dependency_down", Status.DEGRADED, "▲ degr"),
     ("4", "endpoint_hang", Status.DOWN, "✖ DOWN")],
)
async def test_injected_fault_shows_on_the_board_within_an_interval(
    key: str, fault: str, state: Status, label: str
) -> None:
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot)
        target = app.settings.target("api-health")
        await wait_screen(pilot, lambda t: "● up" in row_in(t, "api-health"), "api-health up")
        await pilot.press("f")
        await _opened(pilot, FaultScreen, "#faults-list")
        await pilot.press(key, "escape")
        assert app.demo.active == {fault}
        injected = time.monotonic()

        def shown() -> bool:
            views = {v.name: v for v in app.scheduler.snapshot()}
            return (views["api-health"].status is state
                    and _board(app).cell_text("api-health", "state") == label)

        # One interval until the next check starts, plus its timeout for a hang, plus
        # the 1 s repaint tick and slack for a loaded machine.
        bound = target.interval + target.timeout + 3.0
        await wait_for(pilot, shown, bound, f"api-health {state} after {fault}")
        took = time.monotonic() - injected
        text = await wait_screen(pilot, lambda t: label in row_in(t, "api-health"),
                                 f"{label} on api-health's row")
        if fault == "dependency_down":
            assert "body.status" in _board(app).cell_text("api-health", "detail")
        else:
            assert "timed out" in _board(app).cell_text("api-health", "detail")
        assert f"demo faults: {fault.replace('_', ' ')}" in text
        print(f"{fault}: api-health {state} on the board {took:.2f} s after injection")


# -- command palette, theme key, quit ---------------------------------------------------------


@pytest.mark.parametrize("name", themes.CYCLE)
async def test_the_chosen_theme_styles_the_first_frame_without_a_second_parse(
        name: str) -> None:
    """Our themes are known from App.__init__ on, so the stylesheet is built from the chosen
    theme's variables and not parsed again (a re-parse cost ~7 ms of the first frame)."""
    app = OpsConsoleApp(settings=None, demo=True, demo_port=0, demo_local=False,
                        history=False, theme_name=name)
    theme = themes.OWN_THEMES[name]
    assert app.theme == name
    assert app.current_theme is theme
    for key, value in theme.variables.items():  # e.g. ansi-dark's status-crit, ours only
        assert app.theme_variables[key] == value
    # App.refresh_css (a theme change) is what sets a stylesheet's variables again
    stylesheet = app.stylesheet
    reset: list[dict[str, str]] = []
    set_variables = stylesheet.set_variables

    def counted(variables: dict[str, str]) -> None:
        reset.append(variables)
        set_variables(variables)

    stylesheet.set_variables = counted  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await wait_screen(pilot, lambda t: "opsconsole" in t, "the first frame")
        assert app.stylesheet is stylesheet
        assert reset == []


async def test_palette_runs_a_fault_command_theme_key_cycles_and_q_quits() -> None:
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_ready(pilot, results=False)
        await pilot.press("ctrl+p")
        await _opened(pilot, CommandPalette, "CommandInput")
        palette = app.screen
        await pilot.press(*"toggle error spike")
        assert palette.query_one(CommandInput).value == "toggle error spike"
        results = palette.query_one(CommandList)

        def first_is_ours() -> bool:
            return results.option_count > 0 and "Fault: toggle error spike" in str(
                results.get_option_at_index(0).prompt)

        await wait_for(pilot, first_is_ours, 5, "the palette found the fault command")
        assert app.demo.active == frozenset()
        # Enter highlights the best hit, and runs it at once when it is the only one; with
        # several hits (the other faults match fuzzily) a second Enter runs the highlighted.
        await pilot.press("enter")
        if app.demo.active != {"error_spike"} and isinstance(app.screen, CommandPalette):
            assert "Fault: toggle error spike" in str(
                results.get_option_at_index(results.highlighted or 0).prompt)
            await pilot.press("enter")
        await wait_for(pilot, lambda: app.demo.active == {"error_spike"}, 3,
                       "error spike injected from the palette")
        assert isinstance(app.screen, OverviewScreen)  # the palette closed

        # Theme: T steps through ours, then the terminal-palette (ANSI) ones, and wraps.
        assert app.theme == themes.DEFAULT_THEME
        seen = [app.theme]
        for _ in themes.CYCLE:
            await pilot.press("T")
            seen.append(app.theme)
        assert seen == [*themes.CYCLE, themes.CYCLE[0]]
        assert app.current_theme.ansi is False
        await wait_screen(pilot, lambda t: " api-health " in t, "drawing after the themes")

        await pilot.press("q")  # the error spike's P1 fires unacknowledged: q asks first
        await wait_for(pilot, lambda: not app.is_running or "Quit anyway?" in screen_text(app),
                       5, "q quits or asks")
        if app.is_running:
            await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, 5, "q quits")
    assert app.return_code == 0
    assert app.demo is not None
    assert not app.scheduler._running


async def test_a_screen_shown_again_is_refreshed_at_once(tmp_path: Path) -> None:
    """Esc back to the board shows it as of now, not as it was left (the walk saw cleared
    faults still "firing" until the next repaint): here the repaint is a minute away, so
    only the return can have refreshed it."""
    async with json_server() as srv:
        path = http_config(tmp_path / "config.toml", {"api": srv.url("/health")},
                           extra='\n[console]\nrefresh = "60s"\n')
        app = OpsConsoleApp(settings=load_config(path), history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_started(pilot)
            overview = app.screen
            assert isinstance(overview, OverviewScreen)
            calls: list[float] = []
            real = overview.refresh_data

            def counted(runtime: Any, now: float) -> None:
                calls.append(now)
                real(runtime, now)

            overview.refresh_data = counted  # type: ignore[method-assign]
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "help")
            assert calls == []
            # left for longer than three repaint intervals (here: as if for 3 x 60 s):
            # refreshed as soon as it is back; left for less, the tick does it as usual
            overview.refreshed_at -= 181
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is overview, 5, "back on the board")
            await wait_for(pilot, lambda: len(calls) == 1, 5, "refreshed on its return")
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "help")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is overview, 5, "back on the board")
            await pilot.pause()
            await pilot.pause()
            assert len(calls) == 1  # back within the interval: no extra refresh


async def test_fault_key_without_demo_only_notifies(tmp_path: Path) -> None:
    async with json_server() as srv:
        path = http_config(tmp_path / "config.toml", {"api": srv.url("/health")})
        app = OpsConsoleApp(settings=load_config(path), history=False)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_started(pilot)
            await pilot.press("f")
            assert isinstance(app.screen, OverviewScreen)
            messages = [n.message for n in app._notifications]
            assert any("only into the demo" in m for m in messages), messages
            await wait_screen(pilot, lambda t: "faults can be injected only into" in t,
                              "the toast is on screen")
            # And the palette offers no fault commands outside the demo.
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert "Keys help" in titles
            assert "Open api" in titles
            assert not any(t.startswith("Fault:") for t in titles)


# -- config hot reload, seen from the UI ------------------------------------------------------

RELOAD_S = 8.0  # the watcher acts on a file that read the same at two 1 s polls, + repaint


async def test_config_edits_apply_live_and_a_broken_edit_keeps_the_last_good(
    tmp_path: Path,
) -> None:
    async with json_server() as srv:
        targets = {"api": srv.url("/api"), "web": srv.url("/web")}
        path = http_config(tmp_path / "config.toml", targets)
        app = OpsConsoleApp(settings=load_config(path), config_path=path, history=False)
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(pilot)
            board = _board(app)
            banner = app.screen.query_one("#banner", Static)
            assert board.shown_targets == ["api", "web"]
            assert not banner.display
            await wait_for(pilot, lambda: app.runtime.watcher is not None, 5, "watcher started")

            http_config(path, {**targets, "cache": srv.url("/cache")})
            took = await wait_for(
                pilot, lambda: board.shown_targets == ["api", "web", "cache"]
                and board.cell_text("cache", "state") == "● up",
                RELOAD_S, "the added target is on the board and up")
            await wait_screen(pilot, lambda t: " cache " in t and "3 targets · 3 up" in t,
                              "the added target on screen")
            assert any(r.path == "/cache" for r in srv.requests)  # really polled
            print(f"added target on the board {took:.2f} s after the edit")

            good = path.read_text()
            path.write_text(good.replace('interval = "1s"', 'interval = "soon"', 1))
            await wait_for(pilot, lambda: app.config_problem is not None and banner.display,
                           RELOAD_S, "the broken edit is reported in the banner")
            problem = app.config_problem
            assert problem.startswith("config edit rejected, last good config kept:")
            assert "interval" in problem
            shown = _static_text(banner)
            assert shown == problem
            await wait_screen(pilot, lambda t: "config edit rejected" in t, "banner on screen")
            # a P0/P1's banner shown meanwhile sits above it, not over it (both were docked
            # on top: the walk's firing P1 was hidden under the rejected edit's text)
            alert = app.screen.query_one("#alert-banner", Static)
            app.alert_banner = lambda room=None: "✖ P1 Target down · web"  # type: ignore
            app.refresh_screen()
            await wait_screen(pilot, lambda t: "✖ P1 Target down" in t
                              and "config edit rejected" in t, "both banners on screen")
            assert alert.region.bottom <= banner.region.y
            del app.alert_banner
            assert app.scheduler.names() == ["api", "web", "cache"]  # unchanged
            assert board.shown_targets == ["api", "web", "cache"]
            assert app.settings.target("api").interval == 1.0

            path.write_text(good)
            await wait_for(pilot, lambda: app.config_problem is None and not banner.display,
                           RELOAD_S, "the fixed config clears the banner")
            await wait_screen(pilot, lambda t: "config edit rejected" not in t, "banner gone")
            assert board.shown_targets == ["api", "web", "cache"]


async def test_a_history_save_failing_on_a_full_disk_is_shown_and_the_console_runs_on(
    tmp_path: Path,
) -> None:
    """It ended the TUI: the 5-minute save raised into Textual's timer."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = await asyncio.to_thread(
        subprocess.run, ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True, text=True, timeout=10)
    assert mount.returncode == 0, f"cannot mount a small tmpfs: {mount.stderr}"
    try:
        async with json_server() as srv:
            path = http_config(tmp_path / "config.toml", {"api": srv.url("/api")})
            app = OpsConsoleApp(settings=load_config(path), paths=DataPaths(disk))
            async with app.run_test(size=SIZE) as pilot:
                await wait_ready(pilot)
                with contextlib.suppress(OSError):
                    (disk / "filler").write_bytes(b"\0" * 16 * 1024 * 1024)
                app.runtime.store.record("api:extra", time.time(), 1.0)  # something to save
                assert not await app.runtime.save_history()
                await wait_screen(pilot, lambda t: "metric history not saved" in t,
                                  "the failed save on the overview's banner")
                assert app.is_running
                (disk / "filler").unlink()
                assert await app.runtime.save_history()
                await wait_screen(pilot, lambda t: "metric history not saved" not in t,
                                  "the banner clears once a save works again")
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(disk)],
                                capture_output=True, timeout=10)


# -- remote text is literal -------------------------------------------------------------------

MARKUP = "[red]pwn[/] [@click=app.quit]x[/] [/"
ESCAPES = "\x1b[2J\x1b]52;c;aGk=\x07\x1b]0;title\x07\x9b31m"


def _controls(text: str) -> list[str]:
    return [ch for ch in text if ch == "\x1b" or 0x80 <= ord(ch) <= 0x9F]


async def test_remote_markup_and_escapes_show_literally(tmp_path: Path) -> None:
    body = ('{"status": "ok", "note": "' + MARKUP + ESCAPES + ' [link=https://evil.example]'
            'ok[/link] end"}').encode()
    routes = {
        # Markup in the reason phrase (it lands in the reasons) and escapes in the body.
        "/status": Route(500, body, (("Content-Type", "application/json"),),
                         reason=MARKUP + " \x1b[2J"),
        # Markup in a JSON value a condition quotes back.
        "/cond": Route(200, {"note": MARKUP}),
    }
    async with http_server(routes) as srv:
        path = http_config(tmp_path / "config.toml",
                           {"status-evil": srv.url("/status"), "cond-evil": srv.url("/cond")})
        text = path.read_text().replace(
            f'url = "{srv.url("/cond")}"',
            f'url = "{srv.url("/cond")}"\ndown_unless = [\'body.note == "fine"\']')
        path.write_text(text)
        app = OpsConsoleApp(settings=load_config(path), history=False)
        # 160 columns so the board's detail column holds the whole reason.
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_ready(pilot)
            board = _board(app)
            cond_text = f'body.note is "{MARKUP}", expected == "fine"'
            text = await wait_screen(
                pilot, lambda t: f"status 500 {MARKUP}" in row_in(t, "status-evil")
                and cond_text in row_in(t, "cond-evil"), "both reasons, literally")
            assert "✖ DOWN" in row_in(text, "status-evil")
            assert board.cell_text("cond-evil", "detail").startswith(f'body.note is "{MARKUP}"')
            assert _controls(text) == []

            await pilot.press("enter")
            await _opened(pilot, DetailScreen, "#detail-info")
            info = app.screen.query_one("#detail-info", Static)
            await wait_for(pilot, lambda: "last problem" in _static_text(info), 3, "problem")
            assert f"last problem: status 500 {MARKUP}" in _static_text(info)
            detail = await wait_screen(
                pilot, lambda t: "[link=https://evil.example]ok[/link]" in t,
                "the body excerpt, literally")
            assert f"last problem: status 500 {MARKUP}" in detail
            assert f"HTTP/1.1 500 {MARKUP}" in detail  # the reason phrase, escape dropped
            assert f'"note": "{MARKUP}' in detail
            assert _controls(detail) == []
            # Clicking where `[@click=app.quit]` is written does nothing: it is only text.
            line = next(i for i, t in enumerate(_static_text(info).splitlines())
                        if "@click" in t)
            column = _static_text(info).splitlines()[line].index("@click")
            await pilot.click("#detail-info", offset=(column + 1, line))
            await pilot.pause(0.2)
            assert app.is_running
            assert isinstance(app.screen, DetailScreen)

            await pilot.press("escape", "j", "enter")
            await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen)
                           and app.screen.target == "cond-evil", 3, "second detail")
            text = await wait_screen(
                pilot, lambda t: f'"note": "{MARKUP}"' in t
                and f'last problem: body.note is "{MARKUP}"' in t, "the JSON body, literally")
            assert _controls(text) == []
            await pilot.press("escape")
            assert app.is_running
            assert isinstance(app.screen, OverviewScreen)


def test_the_header_gives_up_its_name_before_the_demos_faults() -> None:
    """At 80 columns on a dashboard a walk read "… · 1 DOWN · demo faults:" and no fault:
    within the width, "opsconsole · " goes first, then "demo ", then "(f)"."""
    from console.screens.overview import summary_line

    views = [SimpleNamespace(status=Status.UP)] * 11 + [SimpleNamespace(status=Status.DOWN)]
    faults = frozenset({"error_spike"})
    wide = str(summary_line(views, faults, "Performance", width=120))
    assert wide == ("opsconsole · [Performance] · 12 targets · 11 up · 1 DOWN · "
                    "demo faults: error spike (f)")
    at80 = str(summary_line(views, faults, "Performance", width=80))
    assert at80 == "[Performance] · 12 targets · 11 up · 1 DOWN · demo faults: error spike (f)"
    two = str(summary_line(views, faults | {"latency_spike"}, "Performance", width=80))
    assert two == ("[Performance] · 12 targets · 11 up · 1 DOWN · faults: error spike, "
                   "latency spike")
    assert len(two) <= 80
    # a long dashboard name with degraded and DOWN targets: the name goes too
    views = [*views[:-2], SimpleNamespace(status=Status.DEGRADED), views[-1]]
    long = str(summary_line(views, frozenset({"dependency_down"}), "Database performance",
                            width=80))
    assert long == "12 targets · 10 up · 1 degraded · 1 DOWN · faults: dependency down"
