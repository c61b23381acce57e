"""The presentational widgets and themes, each mounted in a tiny app at 80x24 (or 160x40).

What is asserted is what the widget shows (its rendered lines and cells), what it posts
(messages), and what it repaints (refresh regions, bytes of a terminal update): no mocks
of anything the console monitors, since widgets take plain data.
"""

from __future__ import annotations

import io
import math
import random
import re
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from rich.color import ColorType
from rich.console import Console
from textual._compositor import CompositorUpdate  # measuring what reaches the terminal
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Sparkline, Static

from console.engine.model import CheckResult, ResponseInfo, Status
from console.engine.text.sanitize import one_line
from console.engine.views import PanelView, TargetView
from themes import (
    ANSI_THEMES,
    CSS_PATHS,
    CYCLE,
    THEME_VARIABLE_DEFAULTS,
    THEMES,
    activate_theme,
    pick_theme,
    preselect_theme,
    register_themes,
)
from widgets import KeyHelp, LatencyChart, PanelGrid, ResponseLog, StatusBoard, rows_from_bindings
from widgets._format import SPARK_BARS, sparkline
from widgets.response_log import ResultTable

NOW = 1_700_000_000.0

# The bad-input corpus (RELIABILITY-NOTES 5.1/5.2): markup that must show literally, escape
# sequences that must never reach the terminal, and a 1 MB string.
MARKUP = ["[/", "[/]", "a[/b]c", "[b", "[WIP]", "[red]pwn", "[@click=app.quit]x[/]", "[[/]]",
          "x \\", "[bold][/]", "[link=https://evil.example]ok[/link]", "\\["]
ESCAPES = ["\x1b]52;c;aGk=\x1b\\", "\x1b[2J", "\x9b31m", "\x1b]0;title\x07", "a\x1b[Hb"]
HUGE = "[b" + "x" * (1 << 20)
CORPUS = [*MARKUP, *ESCAPES, HUGE]


def _controls(text: str) -> list[str]:
    """ESC and C1 characters in rendered text (must be none)."""
    return [ch for ch in text if ch == "\x1b" or 0x80 <= ord(ch) <= 0x9F]


class WidgetApp(App[None]):
    """Our themes, variables and stylesheet around whatever widgets a test gives it."""

    CSS_PATH = CSS_PATHS

    def __init__(self, *widgets: Widget, theme: str = "opsconsole-dark") -> None:
        preselect_theme(self, theme)
        super().__init__()
        register_themes(self)
        activate_theme(self, theme)
        self._test_widgets = widgets
        self.messages: list[Message] = []
        self.terminal_bytes = 0
        self.frames = 0
        self._console = Console(file=io.StringIO(), color_system="truecolor",
                                force_terminal=True, width=400)

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(THEME_VARIABLE_DEFAULTS)

    def compose(self) -> ComposeResult:
        yield from self._test_widgets

    def on_status_board_target_selected(self, message: StatusBoard.TargetSelected) -> None:
        self.messages.append(message)

    def on_status_board_target_highlighted(self, message: StatusBoard.TargetHighlighted) -> None:
        self.messages.append(message)

    def on_panel_grid_panel_selected(self, message: PanelGrid.PanelSelected) -> None:
        self.messages.append(message)

    def on_panel_grid_panel_highlighted(self, message: PanelGrid.PanelHighlighted) -> None:
        self.messages.append(message)

    def on_response_log_result_highlighted(self, message: ResponseLog.ResultHighlighted) -> None:
        self.messages.append(message)

    def _display(self, screen: Any, renderable: Any) -> None:
        # Headless apps write nothing; render each update as a truecolour terminal would
        # receive it to count the bytes (private hook: the only place updates pass through).
        if isinstance(renderable, CompositorUpdate):
            self.terminal_bytes += len(renderable.render_segments(self._console).encode())
            self.frames += 1
        super()._display(screen, renderable)


def lines(widget: Widget) -> list[str]:
    """What the widget shows, line by line (its own rendering, not the whole screen)."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


def screen_lines(app: App[Any]) -> list[str]:
    """The whole screen as text (for composite widgets with children)."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def target(
    name: str,
    status: Status = Status.UP,
    *,
    error: str | None = None,
    reasons: tuple[str, ...] = (),
    latency: float | None = 12.3,
    insecure: bool = False,
    since: float | None = None,
    kind: str = "http",
    group: str | None = "web",
    tags: tuple[str, ...] = (),
    address: str = "",
) -> TargetView:
    last = CheckResult(name, kind, status, NOW, latency, error=error, reasons=reasons)
    return TargetView(
        name=name, kind=kind, group=group, tags=tags,
        address=address or f"https://{name}.example/health", insecure=insecure,
        interval=10.0, status=status, since=since, last=last, latency_ms=latency,
        uptime_pct=99.97, p95_ms=182.0, spark=(1.0, 2.0), checks=10, failures=0,
    )


def panel(
    key: str,
    value: float | None = 182.0,
    *,
    state: str = "ok",
    spark: Iterable[float] = (),
    title: str | None = None,
    metric: str = "p95",
    unit: str = "ms",
    warn: float | None = 200.0,
    crit: float | None = 500.0,
    lower_is_better: bool = True,
) -> PanelView:
    return PanelView(key=key, title=title if title is not None else f"{key} latency",
                     target=f"target-{key}", metric=metric, unit=unit, value=value,
                     spark=tuple(spark), state=state, warn=warn, crit=crit,
                     lower_is_better=lower_is_better)


def result(
    offset: float,
    status: Status = Status.UP,
    *,
    error: str | None = None,
    reasons: tuple[str, ...] = (),
    code: int | None = 200,
    body: str = '{"status": "ok"}',
    reason: str = "OK",
    final_url: str = "https://api.example/health",
) -> CheckResult:
    response = ResponseInfo(status_code=code, reason=reason, http_version="HTTP/1.1",
                            body_excerpt=body, body_bytes=len(body), final_url=final_url)
    return CheckResult("api", "http", status, NOW + offset, 10.0 + offset, error=error,
                       reasons=reasons, response=response)


# ---------------------------------------------------------------------------------- themes


def test_pick_theme_order() -> None:
    # explicit request > TEXTUAL_THEME > 16-colour terminal > opsconsole-dark
    assert pick_theme("opsconsole-light", {"TEXTUAL_THEME": "nord", "TERM": "linux"}) == (
        "opsconsole-light")
    assert pick_theme(None, {"TEXTUAL_THEME": "nord", "TERM": "linux"}) == "nord"
    assert pick_theme(None, {"TERM": "linux"}) == "ansi-dark"
    assert pick_theme(None, {"TERM": "xterm"}) == "ansi-dark"
    assert pick_theme(None, {"TERM": "xterm-256color"}) == "opsconsole-dark"
    assert pick_theme(None, {"TERM": "xterm", "COLORTERM": "truecolor"}) == "opsconsole-dark"
    assert pick_theme(None, {"TERM": "xterm", "TEXTUAL_COLOR_SYSTEM": "truecolor"}) == (
        "opsconsole-dark")
    assert pick_theme(None, {"TERM": "xterm-256color", "OPSCONSOLE_ANSI": "1"}) == "ansi-dark"
    assert pick_theme(None, {"TERM": "linux", "OPSCONSOLE_ANSI": "0"}) == "opsconsole-dark"
    assert pick_theme(None, {"TERM": "xterm", "COLORFGBG": "0;15"}) == "ansi-light"
    assert pick_theme(None, {}) == "opsconsole-dark"
    # comma-separated fallbacks as TEXTUAL_THEME allows; unknown names are skipped, not raised
    assert pick_theme("no-such,opsconsole-light", {}) == "opsconsole-light"
    assert pick_theme("no-such", {"TEXTUAL_THEME": "also-not"}) == "opsconsole-dark"
    assert pick_theme("mine", {}, available=["mine"]) == "mine"


def test_every_theme_defines_our_variables() -> None:
    for theme in (*THEMES, *ANSI_THEMES):
        missing = set(THEME_VARIABLE_DEFAULTS) - set(theme.variables)
        assert not missing, (theme.name, missing)
    assert [t.name for t in THEMES] == ["opsconsole-dark", "opsconsole-light"]
    assert {t.name for t in ANSI_THEMES} == {"ansi-dark", "ansi-light"}
    assert all(t.ansi for t in ANSI_THEMES)
    assert all(path.is_file() for path in CSS_PATHS)
    assert CYCLE == ["opsconsole-dark", "opsconsole-light", "ansi-dark", "ansi-light"]


def _all_widgets() -> list[Widget]:
    return [
        Static("banner", id="banner"),
        Input(placeholder="filter", id="filter"),
        StatusBoard(id="board"),
        PanelGrid(id="panels"),
        Static("info", id="detail-info"),
        LatencyChart(id="chart"),
        ResponseLog(id="responses"),
        KeyHelp([("?", "help")]),
    ]


@pytest.mark.parametrize(
    "theme", ["opsconsole-dark", "opsconsole-light", "ansi-dark", "ansi-light", "nord"]
)
async def test_stylesheet_parses_and_widgets_render_in_every_theme(theme: str) -> None:
    app = WidgetApp(*_all_widgets(), theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == theme
        for name in THEME_VARIABLE_DEFAULTS:
            assert name in app.theme_variables
        app.query_one(StatusBoard).update_rows([target("api"), target("db", Status.DOWN)], NOW)
        app.query_one(PanelGrid).update_panels([panel("p1"), panel("p2", state="crit")])
        await pilot.pause()
        text = "\n".join(screen_lines(app))
        assert "● up" in text
        assert "✖ DOWN" in text
        assert "✖ crit" in text


async def test_ansi_theme_colours_come_from_the_terminal_palette() -> None:
    board = StatusBoard()
    app = WidgetApp(board, theme="ansi-dark")
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme_variables["status-crit"] == "ansi_bright_red"
        # db is not under the cursor (whose colours win on its row, as in a DataTable)
        board.update_rows([target("api"), target("db", Status.DOWN)], NOW)
        await pilot.pause()

        def state_colour() -> Any:
            (segment,) = [seg for seg in board.render_line(2) if "DOWN" in seg.text]
            return segment.style.color if segment.style else None

        assert state_colour().type is ColorType.STANDARD  # a native ANSI colour
        # switching to a truecolour theme restyles the rows already drawn
        app.theme = "opsconsole-dark"
        await pilot.pause()
        await pilot.pause()
        assert state_colour().type is ColorType.TRUECOLOR


@pytest.mark.parametrize(
    ("theme", "filter_name"),
    [("ansi-dark", "NoColor"), ("opsconsole-dark", "Monochrome")],
)
async def test_no_color_keeps_the_board_readable(
    monkeypatch: pytest.MonkeyPatch, theme: str, filter_name: str
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    board = StatusBoard()
    grid = PanelGrid()
    app = WidgetApp(board, grid, theme=theme)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.no_color
        # preselect_theme made Textual choose the right filter for the theme
        assert filter_name in [type(f).__name__ for f in app._filters]
        board.update_rows([target("api"), target("db", Status.DOWN)], NOW)
        grid.update_panels([panel("p1", state="warn")])
        await pilot.pause()
        strips = app.screen._compositor.render_strips()
        text = "\n".join(strip.text for strip in strips)
        assert "✖ DOWN" in text
        assert "! warn" in text
        # never an invisible line: no segment has the same foreground and background
        for strip in strips:
            for segment in strip:
                style = segment.style
                visible = segment.text.strip() and style and style.color and style.bgcolor
                if visible and style.color.type is not ColorType.DEFAULT:
                    assert style.color != style.bgcolor, repr(segment)


# ------------------------------------------------------------------------------ StatusBoard


async def test_data_given_before_mounting_is_shown() -> None:
    board, grid, log, chart = StatusBoard(), PanelGrid(), ResponseLog(), LatencyChart()
    board.update_rows([target("early")], NOW)
    grid.update_panels([panel("early-panel")])
    log.show_results([result(0, error="early error")])
    chart.show_history(_history(), "5 min")
    app = WidgetApp(board, grid, log, chart)
    async with app.run_test(size=(80, 50)) as pilot:
        await pilot.pause()
        assert board.shown_targets == ["early"]
        assert "early-panel latency" in lines(grid)[0]
        assert log.results[0].error == "early error"
        assert chart.has_data


async def test_board_shows_state_glyphs_words_and_numbers() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 24)) as pilot:
        board.update_rows([
            target("api", latency=3.4),
            target("cache", Status.DEGRADED, reasons=("latency > 300 ms",), insecure=True),
            target("db", Status.DOWN, error="connection refused", since=NOW - 185,
                   kind="postgres"),
            target("queue", Status.UNKNOWN, latency=None),
        ], NOW)
        await pilot.pause()
        assert board.shown_targets == ["api", "cache", "db", "queue"]
        def cell(name: str, column: str) -> str:
            return board.cell_text(name, column)

        states = [cell(name, "state") for name in board.shown_targets]
        assert states == ["● up", "▲ degr", "✖ DOWN", "… wait"]
        assert cell("api", "latency") == "3.4"
        assert cell("queue", "latency") == "—"
        assert cell("api", "uptime") == "99.9%"  # 99.97 never shows as 100
        assert cell("db", "since") == "3m05s"
        assert cell("db", "kind") == "pg"
        assert cell("db", "detail") == "connection refused"
        assert cell("cache", "detail") == "latency > 300 ms"
        assert cell("api", "detail") == "https://api.example/health"
        shown = lines(board)
        assert shown[0].split() == ["state", "name", "kind", "ms", "p95", "up", "1h", "since",
                                    "detail"]
        assert "⚠insecure" in shown[2]
        assert "✖ DOWN" in shown[3]
        assert "connection refused" in shown[3]
        width = board.scrollable_content_region.width  # the scrollbar gutter is beside it
        assert {len(line) for line in shown} == {width}


async def test_board_insecure_badge_survives_a_long_name() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 24)) as pilot:
        board.update_rows([target("a-very-long-target-name-for-payments", insecure=True)], NOW)
        await pilot.pause()
        assert "⚠insecure" in lines(board)[1]


async def test_board_updates_cells_in_place() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 24)) as pilot:
        views = [target("api"), target("db"), target("cache")]
        board.update_rows(views, NOW)
        await pilot.pause()
        repaints: list[tuple[Region, ...]] = []
        original_refresh = board.refresh

        def refresh_spy(*regions: Region, **kwargs: Any) -> Any:
            repaints.append(regions)
            return original_refresh(*regions, **kwargs)

        board.refresh = refresh_spy  # type: ignore[method-assign]

        board.update_rows(views, NOW)  # nothing changed: nothing repainted
        assert repaints == []
        board.update_rows([target("api"), target("db", latency=99.0), target("cache")], NOW)
        assert board.cell_text("db", "latency") == "99"
        # not the whole table: the db row (header + second row), up to the latency column
        assert repaints == [(Region(0, 2, 7 + 19 + 6 + 6, 1),)]
        await pilot.pause()
        assert " 99 " in screen_lines(app)[2]  # the compositor repainted that line


async def test_board_builds_only_the_rows_on_screen_and_scrolled_rows_are_current() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 12)) as pilot:
        names = [f"svc-{i:03d}" for i in range(200)]
        board.update_rows([target(n) for n in names], NOW)
        await pilot.pause()
        page = board.size.height - 1  # rows below the header
        calls: list[str] = []
        original = board._signature

        def counting(view: Any) -> Any:
            calls.append(view.name)
            return original(view)

        board._signature = counting  # type: ignore[method-assign]
        # every row's data moves (a second later, every "since" does): only the page on
        # screen is worked out, not 200 rows
        board.update_rows([target(n, latency=7.0) for n in names], NOW + 1)
        assert sorted(calls) == names[:page]
        # a row scrolled into view shows the latest data, not what it said before
        await pilot.press("G")
        await pilot.pause()
        assert board.selected_target == "svc-199"
        last = lines(board)[-1]
        assert "svc-199" in last
        assert " 7.0 " in last
        assert board.cell_text("svc-150", "latency") == "7.0"


async def test_board_cursor_follows_its_target_through_membership_changes() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 24)) as pilot:
        board.update_rows([target("a"), target("b"), target("c"), target("d")], NOW)
        await pilot.pause()
        board.select_target("c")
        await pilot.pause()
        assert board.selected_target == "c"
        board.update_rows([target("b"), target("c"), target("d")], NOW)  # "a" went away
        await pilot.pause()
        assert board.selected_target == "c"
        assert board.cursor_row == 1
        assert board.current_target() == "c"
        board.update_rows([target("new"), target("b"), target("c"), target("d")], NOW)
        await pilot.pause()
        assert board.shown_targets == ["new", "b", "c", "d"]  # the given order, not appended
        assert board.selected_target == "c"
        assert [line.split()[2] for line in lines(board)[1:5]] == ["new", "b", "c", "d"]


async def test_board_filter_hides_rows_and_restores_order() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 24)) as pilot:
        views = [
            target("api", tags=("edge",)),
            target("db", Status.DOWN, kind="postgres", group="data"),
            target("cache", kind="redis", group="data"),
            target("web"),
        ]
        board.update_rows(views, NOW)
        await pilot.pause()
        board.select_target("web")
        board.filter_text = "data"  # group
        await pilot.pause()
        assert board.shown_targets == ["db", "cache"]
        board.filter_text = "DOWN"  # status, case-insensitive
        assert board.shown_targets == ["db"]
        board.filter_text = "edge"  # tag
        assert board.shown_targets == ["api"]
        board.filter_text = "redis"  # kind
        assert board.shown_targets == ["cache"]
        board.filter_text = "[WIP]"  # markup-looking input is a plain substring
        assert board.shown_targets == []
        board.filter_text = ""
        await pilot.pause()
        assert board.shown_targets == ["api", "db", "cache", "web"]
        assert [line.split()[2] for line in lines(board)[1:5]] == ["api", "db", "cache", "web"]


async def test_board_vim_keys_and_enter_post_target_messages() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 24)) as pilot:
        board.update_rows([target(name) for name in ("a", "b", "c", "d")], NOW)
        board.focus()
        await pilot.pause()
        await pilot.press("j", "j")
        assert board.selected_target == "c"
        await pilot.press("k")
        assert board.selected_target == "b"
        await pilot.press("G")
        assert board.selected_target == "d"
        await pilot.press("g")
        assert board.selected_target == "a"
        await pilot.press("down", "enter")
        await pilot.pause()
        selected = [m for m in app.messages if isinstance(m, StatusBoard.TargetSelected)]
        assert [m.name for m in selected] == ["b"]
        assert selected[0].control is board
        highlighted = [m.name for m in app.messages
                       if isinstance(m, StatusBoard.TargetHighlighted)]
        assert highlighted[-4:] == ["b", "d", "a", "b"]


async def test_board_click_selects_a_row_anywhere_in_it() -> None:
    # Cells that look alike are merged into one segment (fewer escape bytes): a click on
    # any of them must still land on its row.
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(80, 24)) as pilot:
        board.update_rows([target(name) for name in ("a", "b", "c")], NOW)
        await pilot.pause()
        await pilot.click(StatusBoard, offset=(45, 3))  # the uptime column of row "c"
        assert board.selected_target == "c"
        await pilot.click(StatusBoard, offset=(2, 2))
        assert board.selected_target == "b"
        await pilot.click(StatusBoard, offset=(2, 2))  # again: open it
        await pilot.pause()
        selected = [m.name for m in app.messages if isinstance(m, StatusBoard.TargetSelected)]
        assert selected == ["b"]


async def test_board_renders_the_bad_input_corpus_literally() -> None:
    board = StatusBoard()
    app = WidgetApp(board)
    async with app.run_test(size=(160, 40)) as pilot:
        views = [target(text, Status.DOWN, error=text, reasons=(text,), group=text, tags=(text,),
                        kind=text[:30]) for text in CORPUS]
        started = time.perf_counter()
        board.update_rows(views, NOW)
        await pilot.pause()
        assert time.perf_counter() - started < 5
        for text in CORPUS:
            detail = board.cell_text(text, "detail")
            assert detail == one_line(text)
            assert not _controls(detail)
            if text in MARKUP:
                assert detail == text  # brackets and backslashes kept, nothing dropped
        rendered = []
        for _ in range(3):  # the corpus is taller than the screen: read every page
            rendered += lines(board)
            await pilot.press("pagedown")
        for line in rendered:
            assert not _controls(line)
        joined = "\n".join(rendered)
        for text in MARKUP:
            assert text[:20] in joined


# -------------------------------------------------------------------------------- PanelGrid


def _ramp(n: int = 60) -> list[float]:
    return [float(i % 8) for i in range(n)]


async def test_grid_reflows_two_columns_at_80_and_four_at_160() -> None:
    for size, columns in (((80, 24), 2), ((160, 40), 4)):
        grid = PanelGrid(spark_interval=0)
        app = WidgetApp(grid)
        async with app.run_test(size=size) as pilot:
            grid.update_panels([panel(f"p{i}", spark=_ramp()) for i in range(10)])
            await pilot.pause()
            assert grid.columns == columns
            first = lines(grid)[:3]
            assert first[0].count("latency") == columns
            assert first[1].count("p95 182 ms  (< 200)") == columns


async def test_grid_panel_shows_title_state_value_threshold_and_sparkline() -> None:
    grid = PanelGrid(spark_interval=0)
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        spark = [100.0, 200.0, float("nan"), 500.0]
        grid.update_panels([
            panel("a", 182.0, spark=spark),
            panel("b", 312.5, state="warn"),
            panel("c", 999.0, state="crit"),
            panel("d", None, state="nodata"),
            panel("e", 99.95, metric="uptime", unit="%", warn=99.9, crit=99.0,
                  lower_is_better=False),
        ])
        await pilot.pause()
        shown = lines(grid)
        assert "a latency" in shown[0]
        assert "✓ ok" in shown[0]
        assert "b latency" in shown[0]
        assert "! warn" in shown[0]
        assert "p95 182 ms  (< 200)" in shown[1]
        assert "p95 312.5 ms  (< 200)" in shown[1]
        assert "✖ crit" in shown[3]
        assert "· n/a" in shown[3]
        assert "p95 — ms" in shown[4]
        # higher is better (crit below warn); digits truncated, never rounded up to 100
        assert "uptime 99.95%  (> 99.9)" in shown[7]
        bars = shown[2][: grid.size.width // 2].lstrip("▌").strip()
        assert bars == "▁▃ █"  # scaled to its min..max and its thresholds; NaN is a gap
        assert set(shown[2]) <= set(SPARK_BARS) | {" ", "▌"}


def test_a_sparkline_takes_in_its_thresholds() -> None:
    """A walk read an error rate's healthy 0.25 % blips, drawn full height under a 5 %
    line, as an outage: scaled to take in the thresholds, they stay at the bottom."""
    noise = [0.1, 0.25, 0.0, 0.25]
    assert sparkline(noise, 4) == "▄█▁█"  # its own range: every blip a spike
    assert sparkline(noise, 4, (5.0, 10.0)) == "▁▁▁▁"
    assert sparkline([0.0, 6.0, 12.0], 3, (5.0, 10.0)) == "▁▅█"  # past them: its own top
    assert sparkline([95.0, 99.0], 2, (80.0, None)) == "▇█"  # a floor below it (hit rate)


async def test_grid_repaints_only_the_changed_line_of_the_changed_panel() -> None:
    grid = PanelGrid(spark_interval=0)
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        views = [panel(f"p{i}", 100.0 + i, spark=_ramp(), warn=None, crit=None)
                 for i in range(6)]
        grid.update_panels(views)
        await pilot.pause()
        regions: list[tuple[Region, ...]] = []
        original = grid.refresh

        def spy(*args: Any, **kwargs: Any) -> Any:
            regions.append(args)
            return original(*args, **kwargs)

        grid.refresh = spy  # type: ignore[method-assign]

        grid.update_panels(views)  # identical: nothing is repainted
        assert regions == []

        changed = list(views)
        # row 1, right column: value only
        changed[3] = panel("p3", 187.0, spark=_ramp(), warn=None, crit=None)
        grid.update_panels(changed)
        assert len(regions) == 1
        assert len(regions[0]) == 1
        (region,) = regions[0]
        assert region.height == 1
        assert region.y == 1 * 3 + 1  # that panel's value line, nothing else
        half = grid.size.width // 2
        # from the left edge (that is where Textual starts writing a line) to just past
        # the changed digits, not to the end of the panel
        assert half < region.right < half + 12
        await pilot.pause()
        assert "p95 187 ms" in lines(grid)[4]

        regions.clear()
        # bars only, left panel
        changed[0] = panel("p0", 100.0, spark=[*_ramp(), 3.0], warn=None, crit=None)
        grid.update_panels(changed)
        assert len(regions) == 1
        (region,) = regions[0]
        assert (region.y, region.height) == (2, 1)
        assert region.right <= half


async def test_grid_sparkline_repaints_are_paced() -> None:
    clock = [100.0]
    grid = PanelGrid(spark_interval=2.0, clock=lambda: clock[0])
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        data = _ramp()
        grid.update_panels([panel("p0", 1.0, spark=data, warn=None, crit=None)])
        await pilot.pause()
        before = lines(grid)[2]
        clock[0] += 1.0
        data = [*data[1:], 7.0]
        grid.update_panels([panel("p0", 2.0, spark=data, warn=None, crit=None)])
        await pilot.pause()
        assert "p95 2 ms" in lines(grid)[1]  # the value is live
        assert lines(grid)[2] == before  # the bars wait for the interval
        clock[0] += 1.0
        data = [*data[1:], 0.0]
        grid.update_panels([panel("p0", 3.0, spark=data, warn=None, crit=None)])
        await pilot.pause()
        assert lines(grid)[2] != before


async def test_grid_keys_move_the_cursor_and_enter_selects() -> None:
    grid = PanelGrid()
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        grid.update_panels([panel(f"p{i}") for i in range(5)])  # 2 columns: 3 rows
        grid.focus()
        await pilot.pause()
        assert grid.cursor_key == "p0"
        assert lines(grid)[0].startswith("▌")  # the highlighted panel's edge
        await pilot.press("l")
        assert grid.cursor_key == "p1"
        await pilot.press("j")
        assert grid.cursor_key == "p3"
        await pilot.press("down")  # short last row: lands on its end
        assert grid.cursor_key == "p4"
        await pilot.press("k", "h")  # h at the row's start stays: no wrap to the row above
        assert grid.cursor_key == "p2"
        await pilot.press("G")
        assert grid.cursor_key == "p4"
        await pilot.press("g", "right", "enter")
        await pilot.pause()
        selected = [m for m in app.messages if isinstance(m, PanelGrid.PanelSelected)]
        assert [m.key for m in selected] == ["p1"]
        assert selected[0].control is grid
        shown = lines(grid)
        assert not shown[0].startswith("▌")
        assert "▌" in shown[0]  # now on the right-hand panel


async def test_grid_click_moves_the_cursor_then_selects() -> None:
    grid = PanelGrid()
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        grid.update_panels([panel(f"p{i}") for i in range(4)])
        await pilot.pause()
        x = grid.size.width // 2 + 5  # right-hand column, second row
        await pilot.click(PanelGrid, offset=(x, 4))
        assert grid.cursor_key == "p3"
        assert not [m for m in app.messages if isinstance(m, PanelGrid.PanelSelected)]
        await pilot.click(PanelGrid, offset=(x, 4))
        await pilot.pause()
        selected = [m.key for m in app.messages if isinstance(m, PanelGrid.PanelSelected)]
        assert selected == ["p3"]


async def test_grid_restyles_when_the_theme_changes() -> None:
    grid = PanelGrid()
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        grid.update_panels([panel("p0", state="crit"), panel("p1", state="crit")])
        await pilot.pause()

        def label_colour() -> Any:
            strip = grid.render_line(0)
            (segment,) = [seg for seg in strip if "crit" in seg.text][-1:]
            return segment.style.color if segment.style else None

        assert label_colour().type is ColorType.TRUECOLOR
        app.theme = "ansi-dark"
        await pilot.pause()
        await pilot.pause()
        assert label_colour().type is ColorType.STANDARD


async def test_grid_filter_hides_panels_and_keeps_the_cursor() -> None:
    grid = PanelGrid()
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        grid.update_panels([panel("api-p95"), panel("db-conns", state="crit"), panel("api-err")])
        await pilot.pause()
        grid.select_panel("api-err")
        grid.filter_text = "api"
        await pilot.pause()
        assert grid.shown_keys == ["api-p95", "api-err"]
        assert grid.cursor_key == "api-err"
        grid.filter_text = "crit"
        assert grid.shown_keys == ["db-conns"]
        grid.filter_text = ""
        assert grid.shown_keys == ["api-p95", "db-conns", "api-err"]
        assert grid.cursor_key == "db-conns"


async def test_grid_off_screen_panels_are_not_repainted() -> None:
    grid = PanelGrid(spark_interval=0)
    app = WidgetApp(grid)
    async with app.run_test(size=(80, 24)) as pilot:
        views = [panel(f"p{i}", float(i), spark=_ramp()) for i in range(100)]
        grid.update_panels(views)
        await pilot.pause()
        calls: list[Any] = []
        original = grid.refresh
        grid.refresh = lambda *a, **k: (calls.append(a), original(*a, **k))[1]  # type: ignore[method-assign]
        views[99] = panel("p99", 1234.0, spark=[*_ramp(), 1.0])
        grid.update_panels(views)
        assert calls == []


async def test_grid_renders_the_bad_input_corpus_literally() -> None:
    grid = PanelGrid()
    app = WidgetApp(grid)
    async with app.run_test(size=(160, 40)) as pilot:
        grid.update_panels([panel(f"k{i}", title=text, metric=text[:30], unit=text[:8])
                            for i, text in enumerate(CORPUS)])
        await pilot.pause()
        shown = []
        for _ in range(3):
            shown += lines(grid)
            await pilot.press("pagedown")
        for line in shown:
            assert not _controls(line)
        joined = "\n".join(shown)
        for text in MARKUP:
            assert text[:20] in joined  # titles longer than a panel end in "…"


async def test_grid_100_panels_at_160x40_stay_inside_the_terminal_budget() -> None:
    """100 panels, every value changing once a second: bytes and CPU per update.

    Budget (issue): <= 8 KB/s to the terminal and <= 4 % of a core at 1 Hz. Measured here,
    100 plain Textual Sparklines write ~150 KB per update in the same harness.
    """
    clock = [0.0]
    grid = PanelGrid(clock=lambda: clock[0])
    app = WidgetApp(grid)
    rng = random.Random(7)
    series = [[100.0 + rng.gauss(0, 5) for _ in range(60)] for _ in range(100)]

    def views() -> list[PanelView]:
        return [panel(f"p{i}", s[-1], spark=s, title=f"api-{i} p95", warn=1000, crit=2000)
                for i, s in enumerate(series)]

    async with app.run_test(size=(160, 40)) as pilot:
        grid.update_panels(views())
        await pilot.pause()
        app.terminal_bytes = app.frames = 0
        cpu = time.process_time()
        updates = 10
        for _ in range(updates):
            clock[0] += 1.0
            for s in series:
                s.append(max(1.0, s[-1] + rng.gauss(0, 5)))
                del s[0]
            grid.update_panels(views())
            await pilot.pause()
        cpu = (time.process_time() - cpu) / updates
        per_update = app.terminal_bytes / updates
        assert app.frames >= updates
        print(f"grid: {per_update:.0f} B/update, {cpu * 1000:.1f} ms CPU/update")
        assert per_update <= 8000, per_update
        # CPU is printed, not asserted: speed targets belong to bench/bench_tui.py, where they
        # are compared with a baseline measured in the same run (a timed test is flaky on a
        # loaded machine: 56 ms was seen once against 11-18 ms alone).


async def test_plain_sparklines_cost_far_more_than_the_grid() -> None:
    """The baseline the budget is about, measured in the same harness (one update)."""
    sparks = [Sparkline([float(i % 5) for i in range(30)]) for _ in range(100)]
    app = WidgetApp(*sparks)
    app.CSS = "Screen { layout: grid; grid-size: 4; grid-rows: 1; } Sparkline { height: 1; }"
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause()
        app.terminal_bytes = 0
        for spark in sparks:
            spark.data = [float((i * 7) % 5) for i in range(30)]
        await pilot.pause()
        print(f"100 Sparklines: {app.terminal_bytes} B/update")
        assert app.terminal_bytes > 40_000


# ------------------------------------------------------------------------------ LatencyChart


def _history(n: int = 60, step: float = 5.0) -> dict[str, np.ndarray]:
    t = NOW + np.arange(n) * step
    p50 = 50 + 10 * np.sin(np.arange(n) / 5)
    return {"t": t, "p50": p50, "p95": p50 * 2, "p99": p50 * 3}


async def test_chart_says_no_data_yet_without_finite_points() -> None:
    chart = LatencyChart()
    app = WidgetApp(chart)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "no data yet" in "\n".join(lines(chart))
        nan = np.full(10, np.nan)
        chart.show_history({"t": NOW + np.arange(10.0), "p50": nan, "p95": nan, "p99": nan},
                           "5 min")
        await pilot.pause()
        assert not chart.has_data
        assert "no data yet  5 min" in "\n".join(lines(chart))
        chart.show_history({}, "1 h")
        await pilot.pause()
        assert "no data yet  1 h" in "\n".join(lines(chart))


async def test_chart_draws_percentiles_with_clock_labels() -> None:
    chart = LatencyChart()
    app = WidgetApp(chart)
    async with app.run_test(size=(80, 24)) as pilot:
        hist = _history()
        hist["p95"][10:20] = np.nan  # a gap
        hist["p99"] = hist["p99"][:30]  # ragged
        chart.show_history(hist, "5 min")
        await pilot.pause()
        assert chart.has_data
        text = "\n".join(lines(chart))
        assert "latency ms  5 min" in text
        for name in ("p50", "p95", "p99"):
            assert name in text
        first_tick = math.ceil(NOW / 60) * 60  # ticks on whole minutes (local clock)
        assert time.strftime("%H:%M", time.localtime(first_tick)) in text
        assert any("\u2800" < ch <= "\u28ff" for ch in text)  # braille lines were drawn


async def test_a_single_line_chart_has_no_legend_of_three() -> None:
    """Another metric, a sample or two per bucket: one line and no "p50 p95 p99" legend
    (the walk read three names over one line); its unit is in the title."""
    from console.engine.text.fmt import metric_unit

    chart = LatencyChart()
    app = WidgetApp(chart)
    async with app.run_test(size=(80, 24)) as pilot:
        hist = _history()
        chart.show_history(hist, "5 min", f"error_pct {metric_unit('error_pct')}",
                           single=True)
        await pilot.pause()
        text = "\n".join(lines(chart))
        assert "error_pct %  5 min" in text
        assert chart.has_data
        for name in ("p50", "p95", "p99"):
            assert name not in text
        top = [ln for ln in text.splitlines() if "┤" in ln][0]
        assert float(top.split("┤")[0]) < 70  # scaled to the one line (p99 reaches 180)
        chart.show_history(hist, "1 h", "error_pct %")  # buckets of many samples: three
        await pilot.pause()
        text = "\n".join(lines(chart))
        assert all(name in text for name in ("p50", "p95", "p99"))
    assert [metric_unit(m) for m in ("p95_ms", "webhook_failures_per_s", "active_users",
                                     "used_memory_bytes")] == ["ms", "/s", "", "bytes"]


async def test_chart_picks_its_time_ticks_again_after_a_resize() -> None:
    chart = LatencyChart()
    app = WidgetApp(chart)
    hist = _history(720, 5.0)  # an hour: room for a label every 5 min at full width

    def labels() -> set[str]:
        return set(re.findall(r"\b\d\d:\d\d\b", "\n".join(lines(chart))))

    async with app.run_test(size=(160, 24)) as pilot:
        chart.show_history(hist, "1 h")
        await pilot.pause()
        wide = labels()
        await pilot.resize_terminal(50, 24)
        await pilot.pause()
        await pilot.pause()
        narrow = labels()
        # 50 cells leave room for 5 labels: an hour gets one every 15 min, not the wide
        # chart's 5-minute ticks thinned out by plotext wherever they happen to collide
        assert narrow
        assert all(int(x[-2:]) % 15 == 0 for x in narrow)
        assert len(narrow) < len(wide)
        await pilot.resize_terminal(160, 24)
        await pilot.pause()
        await pilot.pause()
        assert labels() == wide


async def test_chart_follows_the_theme_and_owns_its_figure() -> None:
    chart, other = LatencyChart(), LatencyChart()
    app = WidgetApp(chart, other)
    async with app.run_test(size=(80, 40)) as pilot:
        chart.show_history(_history(), "5 min")
        other.show_history(_history(30, 60.0), "1 h")
        await pilot.pause()
        assert chart.plt is not other.plt
        rgb = app.theme_variables["chart-1"].lstrip("#").lower()
        colours = {seg.style.color.triplet.hex.lstrip("#").lower()
                   for y in range(chart.size.height) for seg in chart.render_line(y)
                   if seg.style and seg.style.color and seg.style.color.triplet}
        assert rgb in colours  # p50 in the theme's $chart-1
        app.theme = "ansi-dark"
        await pilot.pause()
        await pilot.pause()
        kinds = {seg.style.color.type for y in range(chart.size.height)
                 for seg in chart.render_line(y) if seg.style and seg.style.color}
        assert ColorType.STANDARD in kinds  # the terminal's own palette
        assert ColorType.TRUECOLOR not in kinds


async def test_chart_span_label_is_plain_text() -> None:
    chart = LatencyChart()
    app = WidgetApp(chart)
    async with app.run_test(size=(100, 14)) as pilot:
        for text in CORPUS:
            chart.show_history(_history(), text)
            await pilot.pause()
            shown = lines(chart)
            assert not any(_controls(line) for line in shown)
            if text in MARKUP and len(text) < 20:
                assert text in "\n".join(shown)


# ------------------------------------------------------------------------------ ResponseLog


async def test_response_log_lists_newest_first_with_the_highlighted_response() -> None:
    log = ResponseLog()
    app = WidgetApp(log)
    async with app.run_test(size=(80, 24)) as pilot:
        log.show_results([
            result(0),
            result(10, Status.DOWN, error="connection reset", code=None),
            result(20, Status.DEGRADED, reasons=("latency 512 ms > 300 ms",),
                   body='{"status": "error",\n "info": {"db": "down"}}',
                   reason="Service Unavailable", code=503),
        ])
        await pilot.pause()
        table = log.table
        def cell(row: int, column: int) -> str:
            return table.get_row_at(row)[column].plain.strip()

        assert [cell(i, 1) for i in range(3)] == ["▲ degr", "✖ DOWN", "● up"]
        assert cell(0, 3) == "503"
        assert cell(1, 3) == "—"
        assert cell(0, 4) == "latency 512 ms > 300 ms"
        assert cell(1, 4) == "connection reset"
        assert cell(2, 0) == time.strftime("%H:%M:%S", time.localtime(NOW))
        text = "\n".join(screen_lines(app))
        assert "HTTP/1.1 503 Service Unavailable" in text
        assert '"info": {"db": "down"}}' in text  # the body keeps its lines
        table.focus()
        await pilot.press("j")
        await pilot.pause()
        assert log.selected_result is not None
        assert log.selected_result.error == "connection reset"
        assert "error: connection reset" in "\n".join(screen_lines(app))
        highlighted = [m for m in app.messages if isinstance(m, ResponseLog.ResultHighlighted)]
        assert highlighted[-1].index == 1
        await pilot.press("enter")  # hides the response pane
        await pilot.pause()
        assert "error: connection reset" not in "\n".join(screen_lines(app))


async def test_response_log_click_selects_a_row_anywhere_in_it() -> None:
    log = ResponseLog()
    app = WidgetApp(log)
    async with app.run_test(size=(80, 24)) as pilot:
        log.show_results([result(i) for i in range(3)])
        await pilot.pause()
        await pilot.click(ResultTable, offset=(30, 3))  # merged cells of the oldest row
        await pilot.pause()
        assert log.selected_result is not None
        assert log.selected_result.started_at == NOW


async def test_response_log_is_cheap_when_unchanged_and_keeps_the_cursor() -> None:
    log = ResponseLog(max_results=3)
    app = WidgetApp(log)
    async with app.run_test(size=(80, 24)) as pilot:
        results = [result(i) for i in range(5)]
        log.show_results(results)
        await pilot.pause()
        assert len(log.results) == 3
        table = log.table
        table.move_cursor(row=1)
        await pilot.pause()
        kept = log.selected_result
        clears: list[int] = []
        original = table.clear
        table.clear = lambda *a, **k: (clears.append(1), original(*a, **k))[1]  # type: ignore[method-assign]
        log.show_results(results)
        log.show_results(list(results))
        assert clears == []
        log.show_results([*results, result(5)])  # a new check arrives on top
        await pilot.pause()
        assert clears == [1]
        assert log.selected_result is kept


async def test_response_log_renders_the_bad_input_corpus_literally() -> None:
    log = ResponseLog()
    app = WidgetApp(log)
    async with app.run_test(size=(160, 40)) as pilot:
        log.show_results([result(i, Status.DOWN, error=text, reasons=(text,), body=text,
                                 reason=text[:40], final_url=text)
                          for i, text in enumerate(CORPUS)])
        await pilot.pause()
        table = log.table
        table.focus()
        details = [table.get_row_at(i)[4].plain[1:] for i in range(len(CORPUS))]
        for text in MARKUP:
            assert text in details
        for _ in range(len(CORPUS)):
            for line in screen_lines(app):
                assert not _controls(line)
            await pilot.press("j")
        await pilot.press("g")
        await pilot.pause()
        # the newest row is the 1 MB body: shown cropped, safely, without an exception
        assert log.selected_result is not None
        assert log.selected_result.error == HUGE


# ---------------------------------------------------------------------------------- KeyHelp


async def test_key_help_aligns_keys_and_shows_descriptions_literally() -> None:
    rows = rows_from_bindings(PanelGrid.BINDINGS, "Panels")
    assert ("↑ k", "Up") in rows
    assert rows[0] == ("", "Panels")
    help_ = KeyHelp([*rows, ("/", "[WIP] filter [red]x"), ("ctrl+p", "palette")])
    app = WidgetApp(help_)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        shown = lines(help_)
        assert shown[0].strip() == "Panels"
        assert any(line.strip() == "↑ k     Up" for line in shown)
        assert any("/       [WIP] filter [red]x" in line for line in shown)
        help_.set_rows([("q", text) for text in CORPUS])
        await pilot.pause()
        shown = lines(help_)
        assert not any(_controls(line) for line in shown)


async def test_record_table_keeps_the_end_of_names_that_share_a_prefix() -> None:
    """The Tables section at 80 columns read `opst_18912_…` six times: the names differ
    at their end, which the cell's ellipsis cut."""
    from console.screens.database import SECTIONS
    from widgets.record_table import RecordTable, fit_text

    assert fit_text("opst_18912_order_items", 12, keep_end=True) == "ops…er_items"
    assert fit_text("opst_18912_orders", 12) == "opst_18912_orders"  # the cell cuts it
    assert fit_text("users", 12, keep_end=True) == "users"
    names = ["opst_18912_orders", "opst_18912_order_items", "opst_18912_users",
             "opst_18912_payments", "opst_18912_sessions", "opst_18912_events"]
    table = RecordTable()

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield table

    async with Host().run_test(size=(80, 24)) as pilot:
        _, _, columns = SECTIONS["tables"]
        table.configure(columns, 0, False)
        table.show([{"table": n, "total_bytes": 8192 * (i + 1)} for i, n in enumerate(names)])
        await pilot.pause()
        shown = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert len(set(shown)) == len(names), shown
        assert all(len(s) <= 12 for s in shown), shown
        assert {s.split("…")[-1] for s in shown} >= {"2_orders", "er_items", "12_users"}
