"""A Prometheus target's breakdowns: per-endpoint and per-status-class tables, live.

Everything shown comes from the last check's `details["breakdowns"]` (console/engine/
breakdown.py). It is the database drill-down's table with other sections: the sections are
the target's breakdowns, found in the data (configured ones, or the "endpoints"/"status"
defaults), so the sort (`o` next column, `O` reverse, or a header click), the filter (`/`)
and the number keys come from DatabaseScreen; tab and shift+tab step through the tables.
Error % carries a glyph as well as a colour, against the playbook's target: under 0.5 % is
fine, over 5 % critical (the "elevated error rate" alert), so it reads in monochrome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from rich.style import Style
from textual.binding import Binding
from textual.color import Color, ColorParseError
from textual.content import Content
from textual.widgets import Static

from console.engine.details import BreakdownTable, PrometheusDetails, Row
from console.engine.text.fmt import NO_VALUE, PANEL_GLYPH, fmt_number
from console.engine.text.sanitize import one_line
from console.screens.database import DatabaseScreen, Extract
from widgets.record_table import Column

if TYPE_CHECKING:
    from console.engine.runtime import Runtime

ERROR_OK_PCT = 0.5  # playbook: "Error Rate: Target <0.5%"
ERROR_CRIT_PCT = 5.0  # playbook: "Error rate elevated (>5%)", the critical alert
_WAITING = ""  # the one section shown before any table arrived


def error_level(pct: float | None) -> str:
    """"ok" under the playbook's 0.5 % target, "crit" over 5 %, "warn" between."""
    if pct is None:
        return ""
    if pct < ERROR_OK_PCT:
        return "ok"
    return "crit" if pct > ERROR_CRIT_PCT else "warn"


def fmt_error_pct(value: Any) -> str:
    """`✓ 0.12`, `! 1.50`, `✖ 12.0`: the level's glyph, then the percentage."""
    if not isinstance(value, int | float):
        return NO_VALUE
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{PANEL_GLYPH[error_level(value)]} {value:.{digits}f}"  # as the panels mark it


def _pct(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, int | float) else NO_VALUE


def _label(value: Any) -> str:
    return NO_VALUE if value in (None, "") else str(value)


def _number(value: Any) -> str:
    return fmt_number(value) if isinstance(value, int | float) else NO_VALUE


HEADERS = {"status_class": "class"}
# (header, width, formatter) of the number columns; the first label takes the width left.
NUMBER_COLUMNS: dict[str, tuple[str, int, Any]] = {
    "requests": ("reqs", 7, _number),
    "rate_per_s": ("req/s", 7, _number),
    "share_pct": ("share%", 6, _pct),
    "error_pct": ("err %", 7, fmt_error_pct),
    "p50_ms": ("p50 ms", 6, _number),
    "p95_ms": ("p95 ms", 6, _number),
    "p99_ms": ("p99 ms", 6, _number),
}
LABEL_WIDTH = 10  # a second or third grouping label (the first one fills)


class BreakdownScreen(DatabaseScreen):
    """tab / shift+tab or 1-5 switch table; o/O sort; / filter; Esc back."""

    BINDINGS = [
        Binding("tab", "step(1)", "Next table", id="bd_next"),
        Binding("shift+tab", "step(-1)", "Previous table", show=False, id="bd_previous"),
    ]

    def __init__(self, target: str, sort: str | None = None) -> None:
        """`sort` is the column each table is first sorted by (a runbook link's
        ``endpoints:p95_ms``), highest first; request rate by default."""
        super().__init__(target, "prometheus")
        self.initial_sort = sort
        self.sections = {_WAITING: ("waiting", lambda _d: [], (
            Column("route", "route", None, _label, False),
            *self._number_columns(["requests", "rate_per_s", "share_pct"])))}
        self.section = _WAITING
        self.sort_index = {_WAITING: 0}
        self.sort_reverse = {_WAITING: True}
        self._shapes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._styles: dict[str, Style] = {}
        self._problem = ""
        self._tables: dict[str, BreakdownTable] = {}

    def on_mount(self) -> None:
        # DatabaseScreen.on_mount runs after this one (Textual calls each class's handler),
        # so only what is ours here: colours follow the theme.
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())

    # -- columns and colours -----------------------------------------------------------------

    def _error_style(self, value: Any) -> Style:
        level = error_level(value if isinstance(value, int | float) else None)
        if not level:
            return Style()
        style = self._styles.get(level)
        if style is None:
            raw = self.app.get_css_variables().get(f"status-{level}", "")
            try:
                style = Style(color=Color.parse(raw).rich_color, bold=level == "crit")
            except ColorParseError:
                style = Style(bold=level == "crit")
            self._styles[level] = style
        return style

    def _restyle(self) -> None:
        self._styles.clear()
        if self.is_mounted:
            self._fill()

    def _number_columns(self, keys: list[str]) -> list[Column]:
        out = []
        for key in keys:
            if key in NUMBER_COLUMNS:
                header, width, fmt = NUMBER_COLUMNS[key]
                style = self._error_style if key == "error_pct" else None
                out.append(Column(key, header, width, fmt, True, style))
            else:  # a promql target's metric, named by the config
                header = one_line(key, 12)
                out.append(Column(key, header, max(7, len(header)), _number, True))
        return out

    def _columns(self, table: BreakdownTable) -> tuple[Column, ...]:
        by = [str(b) for b in table.get("by") or []]
        cols = [Column(label, one_line(HEADERS.get(label, label), 20),
                       None if i == 0 else LABEL_WIDTH, _label, False)
                for i, label in enumerate(by)]
        rest = [str(c) for c in table.get("columns") or [] if c not in by]
        return (*cols, *self._number_columns(rest))

    # -- data ----------------------------------------------------------------------------------

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        engine = runtime.scheduler
        changed, last = self._new_result(engine, now)
        if not changed:
            return
        if last is None:
            self._problem = "no check yet"
        elif last.error:
            # Keep the last tables on screen: a failed scrape says nothing about endpoints.
            self._problem = "last scrape failed: " + one_line(last.error, 200)
        else:
            self._problem = one_line(
                last.details_of("prometheus").get("breakdown_error") or "", 300)
            tables = last.breakdowns
            if tables is not None:
                self.show_tables(tables)
                return
            if not self._problem:
                self._problem = ("no breakdowns: configure [targets.breakdowns], or expose "
                                 "http_requests_total for the default ones")
        self._fill()

    def show_tables(self, tables: dict[str, BreakdownTable]) -> None:
        """Show these breakdown tables (a check's details["breakdowns"])."""
        self._tables = tables
        self._details = {"breakdowns": tables}
        shapes = {name: (tuple(t.get("by") or []), tuple(t.get("columns") or []))
                  for name, t in tables.items() if isinstance(t, dict)}
        if shapes and shapes != self._shapes:
            self._shapes = shapes
            sections = {}
            for name in shapes:
                cols = self._columns(tables[name])
                sections[name] = (one_line(name, 40), _extractor(name), cols)
                if name not in self.sort_index or self.sort_index[name] >= len(cols):
                    keys = [c.key for c in cols]
                    numbers = [i for i, c in enumerate(cols) if c.right]
                    first = self.initial_sort if self.initial_sort in keys else "rate_per_s"
                    self.sort_index[name] = (keys.index(first) if first in keys
                                             else numbers[0] if numbers else 0)
                    self.sort_reverse[name] = True
            old = self.sections.get(self.section)
            self.sections = sections
            if self.section not in sections:
                self.section = next(iter(sections))
            if old is None or old[2] != sections[self.section][2]:
                self._rebuild_columns()
        self._fill()

    def _info(self) -> Content:
        title, _, cols = self.sections[self.section]
        table = self._tables.get(self.section) or {}
        window = table.get("window_s")
        head = f"{self.target} · breakdowns"
        if isinstance(window, int | float):
            head += f" · over the last {window:.3g} s"
            total = table.get("total_rate_per_s")
            if isinstance(total, int | float):
                head += f" · {fmt_number(total)} req/s in all"
        tabs = "  ".join(
            (f"[{i}] {v[0].upper()}" if k == self.section else f"[{i}] {v[0]}")
            for i, (k, v) in enumerate(self.sections.items(), 1)) + "   tab: next"
        col = cols[self.sort_index[self.section]]
        line = (f"sorted by {col.label} {'↓' if self.sort_reverse[self.section] else '↑'}"
                + (f" · filter: {one_line(self.filter_text, 30)}" if self.filter_text else "")
                + f" · {len(self._rows)} rows")
        others = table.get("others")
        if isinstance(others, int) and others:
            rate = table.get("others_rate_per_s")
            line += f" · +{others} more" + (
                f" ({fmt_number(rate)} req/s)" if isinstance(rate, int | float) else "")
        lines = [head, tabs if self.section != _WAITING else "waiting for the first scrape",
                 line]
        for note in (table.get("note"), self._problem):
            if note:
                lines.append("note: " + one_line(note, 200))
        return Content("\n".join(lines))

    def _preview(self) -> None:
        """The cursor row's group in full (a long route is cut in its column)."""
        row = self.table.cursor_row
        text = ""
        if 0 <= row < len(self._rows):
            by = [c for c in self.sections[self.section][2] if not c.right]
            text = " · ".join(f"{c.key}={_label(self._rows[row].get(c.key))}" for c in by)
        self.query_one("#db-preview", Static).update(Content(one_line(text, 400)))

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # rows hold no query to copy, and no session to cancel or kill
        return action not in ("copy", "signal")

    def action_step(self, step: int) -> None:
        names = list(self.sections)
        if len(names) > 1:
            self.action_section((names.index(self.section) + step) % len(names))


def _extractor(name: str) -> Extract:
    def rows(details: Mapping[str, object]) -> list[Row]:
        tables = cast(PrometheusDetails, details).get("breakdowns") or {}  # see show_tables
        table = tables.get(name) or {}
        return [dict(r) for r in table.get("rows") or [] if isinstance(r, dict)]

    return rows
