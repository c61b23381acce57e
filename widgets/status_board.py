"""The status board: one line per target, drawn with the Line API and repainted per changed row.

Why not a DataTable (the first version was one): DataTable.update_cell invalidates every
cached cell of the table, so each changed row re-renders all its cells through Rich's
layout engine, and it repaints the whole widget. With 20 targets polled every second that
measured ~25 ms of CPU per second for the board alone. Here a row is a cached Strip built
from plain strings, rebuilt only when its text changes, and repainted as one region from
the left edge to its last changed cell (where Textual starts writing a line anyway).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size, Spacing
from textual.reactive import reactive
from textual.strip import Strip

from console.engine.status import Status
from console.engine.text.fmt import STATUS_LABELS, STATUS_LEVEL, fmt_ms, fmt_pct, format_age
from console.engine.text.sanitize import one_line

from ._lines import LineWidget, OwnedMessage

if TYPE_CHECKING:  # types only: the first frame needs no engine views (console.engine.status)
    from console.engine.views import TargetView

# (key, header, width, right-aligned). Each column is drawn one cell wider, starting with a
# separator space; `detail` takes whatever width is left (at least DETAIL_MIN).
COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("state", "state", 6, False),
    ("name", "name", 18, False),
    ("kind", "kind", 5, False),
    ("latency", "ms", 5, True),
    ("p95", "p95", 5, True),
    ("uptime", "up 1h", 5, True),
    ("since", "since", 6, True),
    ("detail", "detail", 12, False),
)
COLUMN_KEYS = tuple(key for key, *_ in COLUMNS)
DETAIL_MIN = 12
_KIND_SHORT = {"postgres": "pg", "postgresql": "pg", "prometheus": "prom", "promql": "pql"}
_BADGE = " ⚠insecure"
_LEVELS = ("ok", "warn", "crit", "unknown", "insecure", "muted")
_STYLE_NAMES = ("base", "header", "cursor", *_LEVELS)

# One cell as plain data: (text, level). A row's cells are compared as a tuple, so an
# unchanged row is never rebuilt and an unchanged cell never repainted.
_Cell = tuple[str, str]
_Row = tuple[_Cell, ...]


def _matches(view: TargetView, needle: str) -> bool:
    if not needle:
        return True
    haystack = " ".join(
        (view.name, view.kind, view.group or "", *view.tags, view.status.value)
    ).lower()
    return needle in haystack


def _fit(text: str, width: int, right: bool) -> str:
    """`text` in exactly `width` cells: cropped with an ellipsis, padded left or right."""
    if width <= 0:
        return ""
    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…"
    pad = width - cell_len(text)
    return " " * pad + text if right else text + " " * pad


class _TargetMessage(OwnedMessage):
    def __init__(self, name: str, board: StatusBoard | None = None) -> None:
        self.name = name
        self.board = board
        super().__init__(board)


class StatusBoard(LineWidget, can_focus=True):
    """Targets with state, latency, p95, uptime, time in state and the latest reason.

    Feed it with `update_rows(views, now)` as often as snapshots arrive: rows are keyed by
    target name, only rows whose text changed are rebuilt and repainted, rows come and go
    only when a target appears, disappears or is filtered, and the cursor stays on its
    target. Remote text is sanitised and drawn as plain segments, never parsed as markup.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Open", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
    ]

    STYLE_PREFIX = "status-board"
    STYLE_NAMES = _STYLE_NAMES
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"status-board--{name}" for name in _STYLE_NAMES}

    DEFAULT_CSS = """
    StatusBoard {
        height: 1fr;
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
        & > .status-board--base { color: $foreground; }
        & > .status-board--header { background: $panel; color: $foreground; text-style: bold; }
        & > .status-board--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .status-board--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .status-board--ok { color: $status-ok; }
        & > .status-board--warn { color: $status-warn; text-style: bold; }
        & > .status-board--crit { color: $status-crit; text-style: bold; }
        & > .status-board--unknown { color: $status-unknown; }
        & > .status-board--insecure { color: $status-warn; text-style: bold; }
        & > .status-board--muted { color: $text-muted; }
        &:ansi {
            background: ansi_default;
            & > .status-board--header { background: ansi_bright_blue; color: ansi_default; }
            & > .status-board--muted { color: ansi_default; text-style: dim; }
        }
        &:nocolor {
            & > .status-board--header { text-style: bold underline; }
            & > .status-board--cursor { text-style: reverse; }
            &:focus > .status-board--cursor { text-style: bold reverse; }
            & > .status-board--crit { text-style: bold reverse; }
        }
    }
    """

    filter_text: reactive[str] = reactive("", init=False)
    """Case-insensitive substring over name, kind, group, tags and status; "" shows all."""

    class TargetSelected(_TargetMessage):
        """The user pressed Enter on (or clicked the highlighted) target row."""

    class TargetHighlighted(_TargetMessage):
        """The cursor moved to another target (for a detail pane that follows it)."""

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._views: dict[str, TargetView] = {}
        self._alerts: dict[str, tuple[str, str]] = {}  # target -> (alert line, level)
        self._order: list[str] = []
        # what shown rows currently say: those on screen, and any drawn since the last update
        # (`_row` works out the others when they are drawn or asked about)
        self._rows: dict[str, _Row] = {}
        self._strips: dict[tuple[str, bool], Strip] = {}  # (name, cursor) -> drawn row
        self._header: Strip | None = None
        self._now = 0.0
        self._cursor_name: str | None = None
        self._last_highlighted: str | None = None
        self._width = 0
        self._widths: list[int] = [width + 1 for _, _, width, _ in COLUMNS]
        self._edges: list[int] = []
        self._set_widths(sum(self._widths))

    # -- public API --------------------------------------------------------------------

    @property
    def selected_target(self) -> str | None:
        """The name of the target under the cursor, or None when the board is empty."""
        return self._current()

    def current_target(self) -> str | None:
        """Same as `selected_target` (a method, for callers that expect one)."""
        return self.selected_target

    @property
    def cursor_row(self) -> int:
        """Index of the cursor's row among the rows shown."""
        return self._cursor

    @property
    def shown_targets(self) -> list[str]:
        """Names of the rows currently shown, top to bottom (after filtering)."""
        return list(self._shown)

    def cell_text(self, name: str, column: str) -> str:
        """What a cell says (without padding): for callers and tests that read the board."""
        if name not in self._index:
            raise KeyError(name)
        text, level = self._row(name)[COLUMN_KEYS.index(column)]
        return text + (_BADGE if column == "name" and level == "insecure" else "")

    def update_rows(self, views: Sequence[TargetView], now: float,
                    alerts: Mapping[str, tuple[str, str]] | None = None) -> None:
        """Show `views` in this order; `now` (epoch seconds) drives the "since" column.

        `alerts` maps a target to the line of its worst firing alert and a level ("crit",
        "warn"): the detail column then says that (the alert's cause, as everywhere else)
        instead of the last check's reasons. Cheap to call every second: only rows whose
        text changed are rebuilt, and each is repainted up to its last changed cell.
        """
        self._alerts = dict(alerts or {})
        self._views = {view.name: view for view in views}
        self._order = list(self._views)
        self._now = now
        self._sync()

    def select_target(self, name: str) -> bool:
        """Move the cursor to `name`; False if it is not shown (unknown or filtered out)."""
        return self._select_key(name)

    # -- rows --------------------------------------------------------------------------

    def _signature(self, view: TargetView) -> _Row:
        level = STATUS_LEVEL.get(view.status, "unknown")
        last = view.last
        alert = self._alerts.get(view.name)
        if alert is not None:
            detail, detail_level = one_line(alert[0]), alert[1]
        elif last is not None and last.error:
            detail, detail_level = one_line(last.error), level
        elif last is not None and last.reasons:
            detail, detail_level = one_line("; ".join(last.reasons)), level
        else:
            detail, detail_level = one_line(view.address), "muted"
        if view.status is Status.UP and detail_level != "muted" and alert is None:
            detail_level = ""  # an up target's note is informational, not alarming
        kind = one_line(view.kind, max_len=20)
        since = self._now - view.since if view.since is not None else None
        return (
            (STATUS_LABELS.get(view.status, "? ????"), level),
            (one_line(view.name, max_len=120), "insecure" if view.insecure else ""),
            # kind, numbers and since share the row's plain style, so a repainted row is
            # a few segments, not one escape sequence per cell.
            (_KIND_SHORT.get(kind, kind), ""),
            (fmt_ms(view.latency_ms), ""),
            (fmt_ms(view.p95_ms), ""),
            (fmt_pct(view.uptime_pct), ""),
            (format_age(since), ""),
            (detail, detail_level),
        )

    def _row(self, name: str) -> _Row:
        """What a shown row says, worked out when first drawn or asked about."""
        row = self._rows.get(name)
        if row is None:
            row = self._rows[name] = self._signature(self._views[name])
        return row

    def _sync(self) -> None:
        """Make the rows match the filtered views, repainting as little as possible.

        Only the rows on screen are worked out here: the "since" column moves every second
        on every row, and at 1,000 targets building every row's text each second was ~20 ms
        of the UI's loop (py-spy). Off-screen rows are forgotten and built when drawn.
        """
        needle = self.filter_text.strip().lower()
        wanted = [name for name in self._order if _matches(self._views[name], needle)]
        keep = self.selected_target

        if wanted != self._shown:
            self._shown = wanted
            self._index = {name: i for i, name in enumerate(wanted)}
            self._rows = {}
            self._strips.clear()
            if keep in self._index:
                self._cursor = self._index[keep]
            self._cursor = max(0, min(self._cursor, len(wanted) - 1))
            self.virtual_size = Size(self._width, len(wanted) + 1)
            self.refresh()
            self._cursor_moved()
            return

        top = self.scroll_offset.y
        on_screen = range(max(0, top), min(len(wanted), top + self._page_rows()))
        old_rows, self._rows = self._rows, {}
        strips, self._strips = self._strips, {}
        for index in on_screen:
            name = wanted[index]
            new = self._rows[name] = self._signature(self._views[name])
            old = old_rows.get(name)
            if old is None:
                self._refresh_row(index)
            elif new == old:
                for cursor in (False, True):  # still what it says: keep what was drawn
                    strip = strips.get((name, cursor))
                    if strip is not None:
                        self._strips[(name, cursor)] = strip
            else:
                last = max(c for c, (a, b) in enumerate(zip(new, old, strict=True)) if a != b)
                self._refresh_row(index, self._edges[last])

    def _page_rows(self) -> int:
        """How many rows the board shows at once (below its header)."""
        return max(0, self.scrollable_content_region.height - 1)

    def _refresh_row(self, index: int, right: int | None = None) -> None:
        y = index + 1 - self.scroll_offset.y
        if 1 <= y < self.scrollable_content_region.height:  # off-screen rows cost nothing
            self.refresh(Region(0, y, right if right is not None else self._width, 1))

    # -- drawing -----------------------------------------------------------------------

    def _set_widths(self, width: int) -> None:
        fixed = sum(w + 1 for key, _, w, _ in COLUMNS if key != "detail")
        self._widths = [w + 1 for key, _, w, _ in COLUMNS if key != "detail"]
        self._widths.append(max(DETAIL_MIN + 1, width - fixed))
        self._edges = []
        x = 0
        for column_width in self._widths:
            x += column_width
            self._edges.append(x)
        self._width = max(width, x)

    def _drop_strips(self) -> None:
        self._strips.clear()
        self._header = None

    def _draw_row(self, name: str, cursor: bool) -> Strip:
        strip = self._strips.get((name, cursor))
        if strip is not None:
            return strip
        row = self._row(name)
        base = self._style("cursor" if cursor else "base")
        segments: list[Segment] = []
        for (key, _, _, right), (text, level), width in zip(
            COLUMNS, row, self._widths, strict=True
        ):
            if key == "name" and level == "insecure":
                # Keep the badge visible however long the name: shorten the name instead.
                room = width - 1 - len(_BADGE)
                segments.append(Segment(" " + _fit(text, room, False), base))
                segments.append(Segment(_BADGE, self._cell_style(base, "insecure", cursor)))
            elif right:
                segments.append(Segment(_fit(text, width, True), base))
            else:
                segments.append(Segment(" " + _fit(text, width - 1, False),
                                        self._cell_style(base, level, cursor)))
        strip = Strip(segments, self._width).simplify()
        self._strips[(name, cursor)] = strip
        return strip

    def _cell_style(self, base: Style, level: str, cursor: bool) -> Style:
        if not level:
            return base
        colour = self._style(level)
        if cursor:
            # The cursor's colours win (as DataTable does); keep the level's emphasis.
            return base + Style(bold=colour.bold or None, reverse=colour.reverse or None)
        return base + Style(color=colour.color, bold=colour.bold or None, dim=colour.dim or None,
                            reverse=colour.reverse or None)

    def _draw_header(self) -> Strip:
        if self._header is None:
            style = self._style("header")
            cells = [(" " + _fit(label, width - 1, False)) if not right
                     else _fit(label, width, True)
                     for (_, label, _, right), width in zip(COLUMNS, self._widths, strict=True)]
            self._header = Strip([Segment("".join(cells), style)], self._width)
        return self._header

    def render_line(self, y: int) -> Strip:
        if y == 0:
            return self._draw_header()
        index = y - 1 + self.scroll_offset.y
        if not 0 <= index < len(self._shown):
            return Strip.blank(self._width, self._style("base"))
        name = self._shown[index]
        return self._draw_row(name, index == self._cursor)

    # -- cursor ------------------------------------------------------------------------

    def _move_cursor(self, index: int) -> None:
        if not self._shown:
            return
        index = max(0, min(index, len(self._shown) - 1))
        if index != self._cursor:
            previous, self._cursor = self._cursor, index
            self._refresh_row(previous)
            self._refresh_row(index)
        self._scroll_to_cursor()
        self._cursor_moved()

    def _scroll_to_cursor(self) -> None:
        region = Region(0, self._cursor + 1, self._width, 1)
        self.scroll_to_region(region, spacing=Spacing(1, 0, 0, 0), animate=False, force=True,
                              immediate=True)

    def _cursor_moved(self) -> None:
        name = self.selected_target
        if name is not None and name != self._last_highlighted:
            self._last_highlighted = name
            self.post_message(self.TargetHighlighted(name, self))

    # -- events, watchers and actions ---------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        width = self.scrollable_content_region.width
        if width != self._width:
            self._set_widths(width)
            self._drop_strips()
            self.virtual_size = Size(self._width, len(self._shown) + 1)
            self.refresh()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = offset.y - 1 + self.scroll_offset.y
        if not 0 <= index < len(self._shown):
            return
        self._click(index)

    def watch_filter_text(self, filter_text: str) -> None:
        self._sync()

    def action_select(self) -> None:
        name = self.selected_target
        if name is not None:
            self.post_message(self.TargetSelected(name, self))

    def action_cursor_up(self) -> None:
        self._move_cursor(self._cursor - 1)

    def action_cursor_down(self) -> None:
        self._move_cursor(self._cursor + 1)

    def _page(self) -> int:
        return max(1, self._page_rows())

    def action_page_up(self) -> None:
        self._move_cursor(self._cursor - self._page())

    def action_page_down(self) -> None:
        self._move_cursor(self._cursor + self._page())
