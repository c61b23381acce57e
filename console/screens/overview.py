"""The overview: a status board of every target and the live metric panels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.css.query import NoMatches
from textual.widgets import Input, Static

from console.engine.status import Status
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleScreen
from widgets.key_footer import KeyFooter
from widgets.panel_grid import PanelGrid
from widgets.status_board import StatusBoard

if TYPE_CHECKING:
    from console.engine.runtime import Runtime


def summary_line(views: list[Any], demo_faults: frozenset[str] | None,
                 dashboard: str | None = None, width: int = 0) -> Content:
    """The board's header: counts, the dashboard, the demo's faults. Within `width` it
    gives up "opsconsole · ", "demo ", "(f)" and the dashboard's name before the faults'
    names: at 80 columns on a dashboard a walk read "… · 1 DOWN · demo faults:" and no
    fault."""
    counts = dict.fromkeys(Status, 0)
    for v in views:
        counts[v.status] += 1
    parts = [f"{len(views)} targets", f"{counts[Status.UP]} up"]
    if counts[Status.DEGRADED]:
        parts.append(f"{counts[Status.DEGRADED]} degraded")
    if counts[Status.DOWN]:
        parts.append(f"{counts[Status.DOWN]} DOWN")
    if counts[Status.UNKNOWN]:
        parts.append(f"{counts[Status.UNKNOWN]} waiting")
    body = (f"[{dashboard}] · " if dashboard else "") + " · ".join(parts)
    faults = ""
    if demo_faults is not None:
        active = ", ".join(sorted(f.replace("_", " ") for f in demo_faults)) or "none"
        faults = f" · demo faults: {active} (f)"
    text = f"opsconsole · {body}{faults}"
    if width and len(text) > width:
        text = f"{body}{faults}"
        if len(text) > width:
            text = text.replace(" · demo faults: ", " · faults: ")
        if len(text) > width and text.endswith(" (f)"):
            text = text[:-4]  # the Keys screen and the footer say f still
        if len(text) > width and dashboard:  # then the dashboard's name: faults matter more
            text = text.replace(f"[{dashboard}] · ", "", 1)
    return Content(text)


def board_alerts(alerting: Any) -> dict[str, tuple[str, str]]:
    """Per target, its worst firing alert as the board's detail column says it: glyph,
    severity and the cause (the same words as the alert everywhere else)."""
    if alerting is None:
        return {}
    from console.engine.alerting.lifecycle import AlertState

    out: dict[str, tuple[str, str]] = {}
    for a in alerting.alerts.current():  # worst first
        if a.target in out or a.state not in (AlertState.FIRING, AlertState.ACKNOWLEDGED):
            continue
        acked = a.state == AlertState.ACKNOWLEDGED
        level = "warn" if acked or a.rule.severity in ("P2", "P3") else "crit"
        mark = "✔" if acked else "✖"
        out[a.target] = (f"{mark} {a.rule.severity} {a.cause or a.summary}", level)
    return out


def problem_lines(problems: list[str], width: int, most: int = 3) -> str | None:
    """The standing problems, one line each (a full disk fails several saves at once, and
    one long message must not push the others off the banner), at most `most` of them."""
    if not problems:
        return None
    if len(problems) == 1:
        return problems[0]  # alone, it may wrap onto the banner's three lines
    lines = [one_line(p, max_len=max(20, width - 2)) for p in problems[:most]]
    if len(problems) > most:
        lines.append(f"+{len(problems) - most} more")
    return "\n".join(lines)


DASHBOARD_KEYS = "Dashboard (0: all panels)"  # the number keys' description


class OverviewScreen(ConsoleScreen[None]):
    """Status board on top, metric panels below; `/` filters both."""

    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/", id="filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
        Binding("tab", "switch_focus", "Board/Panels", show=False, id="switch_focus"),
        Binding("enter", "open", "Open", id="open"),
        *[
            Binding(str(n), f"dashboard({n})", DASHBOARD_KEYS, show=False,
                    id=f"dashboard_{n}")
            for n in range(10)
        ],
    ]

    _title: Content | None = None
    _problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(Content("opsconsole · starting…"), id="title")
        yield Static("", id="alert-banner")
        yield Static("", id="banner")
        yield StatusBoard(id="board")
        yield PanelGrid(id="panels")
        yield KeyFooter()  # the filter box is mounted above it on the first `/`

    def on_mount(self) -> None:
        try:
            self.query_one("#banner", Static).display = False
            self.query_one(StatusBoard).focus()
        except NoMatches:  # the terminal went away while the first screen was composed
            return
        # After this screen's first paint, not before: the first frame must not wait on boot.
        self.call_after_refresh(self.set_timer, 0.02, self.console.start_boot)

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        engine = runtime.scheduler
        views = engine.snapshot(now)
        self.query_one(StatusBoard).update_rows(views, now, board_alerts(runtime.alerting))
        board_name, panels = self._dashboard_panels(engine)
        grid = self.query_one(PanelGrid)
        grid.update_panels(engine.panel_views(panels, now=now, seen=grid.seen_keys()))
        demo = self.console.demo
        title = summary_line(views, demo.active if demo is not None else None, board_name,
                             width=self.size.width)
        if title != self._title:  # an unchanged header costs nothing; layout=False skips relayout
            self._title = title
            self.query_one("#title", Static).update(title, layout=False)
        # standing problems: a rejected config edit, a save failing on a full disk…
        problem = problem_lines(list(runtime.problems.values()), self.size.width or 80)
        banner = self.query_one("#banner", Static)
        if banner.display != bool(problem):
            banner.display = bool(problem)
        if problem and problem != self._problem:
            banner.update(Content(problem))
        self._problem = problem

    dashboard = 0  # 0: every panel; n: the n-th dashboard (config's first, then ready-made)

    def _dashboard_panels(self, engine: Any) -> tuple[str | None, list[Any]]:
        settings = engine.settings
        boards = settings.dashboards
        if not 0 < self.dashboard <= len(boards):
            # the config's own panels; the ready-made boards' are behind their numbers
            own = [p for p in settings.panels if p.key in engine.own_panel_keys]
            return None, own or list(settings.panels)
        board = boards[self.dashboard - 1]
        by_key = {p.key: p for p in settings.panels}
        return board.name, [by_key[k] for k in board.panels if k in by_key]

    # -- keys ----------------------------------------------------------------------------------

    def help_rows(self, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The number keys as the dashboards there are: "0–4", not "0 1 2 … 9" (5–9 only
        said "no dashboard 5")."""
        engine = self.console.scheduler
        if engine is None:  # not started yet: how many there will be is not known
            return rows
        count = min(len(engine.settings.dashboards), 9)
        keys = f"0–{count}" if count else "0"
        desc = (f"Dashboard {'1' if count == 1 else f'1–{count}'} (0: all panels)" if count
                else "all panels")
        return [(keys, desc) if d == DASHBOARD_KEYS else (k, d) for k, d in rows]

    def action_dashboard(self, n: int) -> None:
        """Number keys switch dashboards (1…9: the config's, then the playbook's ready-made
        ones); 0 shows every panel. A missing number lists them all on one line."""
        engine = self.console.scheduler
        boards = engine.settings.dashboards if engine is not None else []
        if n and n > len(boards):
            listing = " · ".join(f"{i} {b.name}" for i, b in enumerate(boards, 1))
            self.notify(f"no dashboard {n}; " + (f"{listing} · 0 every panel" if listing
                                                  else "no dashboards: 0 every panel"),
                        timeout=5, markup=False)  # names are config text, not markup
            return
        self.dashboard = n
        self.console.refresh_screen()

    def _filter_box(self) -> Input | None:
        """The filter box, once `/` has been pressed; None before. It is not part of the
        first frame: mounting a hidden Input cost ~7 ms of the 80x24 first frame
        (bench_startup), for a box most sessions never open."""
        boxes = self.query("#filter").results(Input)
        return next(boxes, None)

    async def action_filter(self) -> None:
        box = self._filter_box()
        if box is None:
            box = Input(placeholder="filter targets and panels (Esc clears)", id="filter")
            await self.mount(box, before=self.query_one(KeyFooter))
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self._filter_box()
        if box is not None and (box.display or box.value):
            box.value = ""
            box.display = False
            self.query_one(StatusBoard).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one(StatusBoard).filter_text = event.value
        self.query_one(PanelGrid).filter_text = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(StatusBoard).focus()
        if not event.value:
            event.input.display = False

    def action_switch_focus(self) -> None:
        board, grid = self.query_one(StatusBoard), self.query_one(PanelGrid)
        (grid if board.has_focus else board).focus()

    def action_open(self) -> None:
        board = self.query_one(StatusBoard)
        name = board.current_target() if hasattr(board, "current_target") else None
        if name:
            self.console.open_target(name)

    def on_status_board_target_selected(self, message: Any) -> None:
        self.console.open_target(message.name)

    def on_panel_grid_panel_selected(self, message: Any) -> None:
        engine = self.console.scheduler
        if engine is None:
            return
        for panel in engine.settings.panels:
            if panel.key == message.key:  # its target's detail, charting the panel's metric
                self.console.open_target(panel.target, metric=panel.metric)
                return

    def on_panel_grid_viewport_moved(self, message: Any) -> None:
        # panels scrolled in were skipped while off screen: fetch fresh views at once
        self.console.refresh_screen()
