"""A grid of metric panels drawn with the Line API, repainting only the cells that changed.

Why not one `Sparkline` widget per panel: 100 of them at 1 Hz measured 11.5 % of a core and
105 KB/s of terminal output (every bar its own gradient colour, every widget repainted). Here
one widget draws every panel from cached strips, and an update repaints only the lines whose
text changed. Textual writes a dirty line from the widget's left edge to the end of the dirty
span (`ChopsUpdate.render_segments`), and two spans on one line are both written from that
edge, so each dirty line is refreshed as ONE region `[0, last changed cell]`. Off-screen
panels cost nothing: the compositor clips regions to what is visible.

Bytes, not CPU, are the hard part: Textual writes a full escape sequence per segment, and a
sparkline bar is 3 bytes of UTF-8. So value and sparkline lines are one segment per panel
(neighbours of the same style merge into one), and a sparkline whose only change is new bars
is repainted at most every `spark_interval` seconds (default 2 s, staggered by row); values
and states always repaint at once. Measured at 160x40 with 100 panels all changing each
second: ~5.6 KB per update (8.5 KB with `spark_interval=0`); 100 Sparklines: ~150 KB.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Region, Size
from textual.reactive import reactive
from textual.strip import Strip

from console.engine.text.fmt import (
    PANEL_STATE_LABELS,
    PANEL_STATE_LEVEL,
    format_value,
    is_number,
    threshold_text,
)
from console.engine.text.sanitize import one_line

from ._format import sparkline
from ._lines import LineWidget, OwnedMessage

if TYPE_CHECKING:  # types only: the first frame needs no engine views (console.engine.status)
    from console.engine.views import PanelView

PANEL_WIDTH = 38
"""Minimum cells per panel (edge + content + gap): 2 columns at 80, 4 at 160."""
PANEL_HEIGHT = 3
"""Lines per panel: title + state, value + threshold, sparkline."""
SPARK_INTERVAL = 2.0
"""Default seconds between repaints of a sparkline whose only change is new bars."""
_SPARK_SLACK = 0.25  # updates arrive with jitter; 1.9 s after the last paint counts as 2 s

_EDGE_CURSOR = "▌"
_STYLE_NAMES = (
    "base", "edge-cursor", "title", "title-cursor",
    "value", "ok", "warn", "crit", "unknown", "spark",
)

# A line's signature: everything its rendering depends on (width, cursor, text, state or
# level). Equal signature, equal strip, so comparing signatures is the whole diff.
_LineSig = tuple[int, bool, str, str]


def _threshold(view: PanelView) -> str:
    """`(< 200)`, or `(> 99.9)` when higher is better: the target alone, as the panel is
    narrow (`opsconsole panels` adds the critical level from the same function)."""
    text = threshold_text(view.warn, view.crit, view.lower_is_better, with_crit=False)
    return f"({text})" if text else ""


def _changed_extent(old_sig: _LineSig, new_sig: _LineSig, old: Strip, new: Strip) -> int:
    """Cells from the panel's left edge up to and including its last changed cell.

    Textual writes a dirty line from the widget's left edge to the end of the dirty span,
    so stopping at the last changed cell (a value's digits, not the threshold after them)
    saves bytes on every update. Only when the styles are the same by construction (same
    width, cursor and level) and every character is one cell wide; otherwise the panel.
    """
    width = new_sig[0]
    if old_sig[0] != width or old_sig[1] != new_sig[1] or old_sig[3] != new_sig[3]:
        return width
    before, after = old.text, new.text
    if len(before) != width or len(after) != width:
        return width  # wide characters: positions are not indexes
    for index in range(width - 1, -1, -1):
        if before[index] != after[index]:
            return index + 1
    return 0


def _matches(view: PanelView, needle: str) -> bool:
    if not needle:
        return True
    haystack = " ".join((view.key, view.title, view.target, view.metric, view.state)).lower()
    return needle in haystack


class _PanelMessage(OwnedMessage):
    def __init__(self, key: str, grid: PanelGrid | None = None) -> None:
        self.key = key
        self.grid = grid
        super().__init__(grid)


class PanelGrid(LineWidget, can_focus=True):
    """Metric panels reflowed to the width; arrows or h/j/k/l move, Enter opens a panel.

    Feed it with `update_panels(views)`: panels whose rendered text is unchanged are not
    repainted, changed lines are repainted only up to their last changed cell, and
    nothing is mounted, recomposed or animated.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select", "Open", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("left,h", "cursor_left", "Left", show=False),
        Binding("right,l", "cursor_right", "Right", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
    ]

    STYLE_PREFIX = "panel-grid"
    STYLE_NAMES = _STYLE_NAMES
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"panel-grid--{name}" for name in _STYLE_NAMES}

    DEFAULT_CSS = """
    PanelGrid {
        height: 1fr;
        background: $surface;
        color: $foreground;
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
        & > .panel-grid--base { color: $foreground; }
        & > .panel-grid--edge-cursor { color: $accent; }
        & > .panel-grid--title { background: $panel; color: $foreground; text-style: bold; }
        & > .panel-grid--title-cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: bold;
        }
        &:focus > .panel-grid--title-cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: bold;
        }
        & > .panel-grid--ok { color: $status-ok; }
        & > .panel-grid--warn { color: $status-warn; text-style: bold; }
        & > .panel-grid--crit { color: $status-crit; text-style: bold; }
        & > .panel-grid--unknown { color: $status-unknown; }
        & > .panel-grid--value { color: $foreground; }
        & > .panel-grid--spark { color: $chart-1; }
        &:ansi {
            background: ansi_default;
            & > .panel-grid--edge-cursor { color: ansi_bright_white; }
            & > .panel-grid--title { background: ansi_default; text-style: bold underline; }
            & > .panel-grid--title-cursor { text-style: bold reverse; }
            & > .panel-grid--value { color: ansi_default; }
        }
        &:nocolor {
            & > .panel-grid--title { text-style: bold underline; }
            & > .panel-grid--title-cursor { text-style: bold reverse; }
            & > .panel-grid--crit { text-style: bold reverse; }
        }
    }
    """

    filter_text: reactive[str] = reactive("", init=False)
    """Case-insensitive substring over key, title, target, metric and state; "" shows all."""

    class PanelSelected(_PanelMessage):
        """The user pressed Enter on (or clicked the highlighted) panel."""

    class PanelHighlighted(_PanelMessage):
        """The cursor moved to another panel."""

    class ViewportMoved(OwnedMessage):
        """Other panels came into view (scroll or resize): their data may be old, since
        `seen_keys` let the owner skip panels off screen. Ask for fresh views now."""

    def __init__(
        self,
        *,
        spark_interval: float = SPARK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        """`spark_interval`: least seconds between repaints of a sparkline whose state,
        width and cursor are unchanged (0 = on every update). Values, states and the
        cursor always repaint at once. `clock` is injectable for tests."""
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._spark_interval = max(0.0, spark_interval)
        self._clock = clock
        self._spark_painted: dict[str, float] = {}
        self._views: dict[str, PanelView] = {}
        self._order: list[str] = []
        self._cursor_key: str | None = None
        self._columns = 1
        self._column_widths = [PANEL_WIDTH]
        self._column_x = [0]
        self._width = 0
        self._sigs: dict[str, list[_LineSig]] = {}
        self._strips: dict[str, list[Strip]] = {}
        self._line_cache: dict[int, Strip] = {}
        self._viewport = (-1, -1)  # panel rows on screen when last told (see ViewportMoved)

    # -- public API --------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        """Key of the panel under the cursor, or None when no panel is shown."""
        return self._current()

    @property
    def shown_keys(self) -> list[str]:
        """Keys of the panels shown (after filtering), in reading order."""
        return list(self._shown)

    @property
    def columns(self) -> int:
        """Panels per row at the current width."""
        return self._columns

    def seen_keys(self) -> set[str] | None:
        """Keys of the panels on screen now (and the cursor's), or None before the first
        layout. Panels outside it are not drawn, so their views need not be fresh."""
        height = self.scrollable_content_region.height
        if not self._shown or height <= 0:
            return None
        first, last = self._seen_rows()
        columns = self._columns
        keys = set(self._shown[first * columns : (last + 1) * columns])
        if self._cursor_key is not None:
            keys.add(self._cursor_key)
        return keys

    def _seen_rows(self) -> tuple[int, int]:
        scroll_y = self.scroll_offset.y
        height = max(self.scrollable_content_region.height, 1)
        return scroll_y // PANEL_HEIGHT, (scroll_y + height - 1) // PANEL_HEIGHT

    def _check_viewport(self) -> None:
        rows = self._seen_rows()
        if rows != self._viewport:
            self._viewport = rows
            self.post_message(self.ViewportMoved(self))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._check_viewport()

    def update_panels(self, views: Sequence[PanelView]) -> None:
        """Show `views` in this order, repainting only what changed since the last call."""
        old_order = self._order
        self._views = {view.key: view for view in views}
        self._order = list(self._views)
        visible = self._filtered()
        if self._order != old_order or visible != self._shown:
            self._relayout(visible)
            return
        self._repaint_changed()

    def select_panel(self, key: str) -> bool:
        """Move the cursor to `key`; False if it is not shown."""
        return self._select_key(key)

    # -- layout and caches ---------------------------------------------------------------

    def _filtered(self) -> list[str]:
        needle = self.filter_text.strip().lower()
        return [key for key in self._order if _matches(self._views[key], needle)]

    def _relayout(self, visible: list[str] | None = None) -> None:
        """Recompute columns, positions and the virtual size, then repaint everything.

        Only for membership, order, filter, width or style changes: never on a value update.
        """
        if visible is not None:
            self._shown = visible
        self._index = {key: i for i, key in enumerate(self._shown)}
        # Before the first layout the region is empty; lay out one minimal column until
        # the Resize that follows reflows it.
        width = max(self.scrollable_content_region.width, 8)
        self._width = width
        columns = max(1, width // PANEL_WIDTH)
        self._columns = columns
        # Spread the spare cells over the columns so panels tile the width exactly: a
        # filler strip would cost one more styled segment on every written line.
        base, spare = divmod(width, columns)
        self._column_widths = [base + (1 if c < spare else 0) for c in range(columns)]
        self._column_x = [sum(self._column_widths[:c]) for c in range(columns)]
        self._drop_strips()
        if self._cursor_key in self._index:
            self._cursor = self._index[self._cursor_key]
        else:
            self._cursor = max(0, min(self._cursor, len(self._shown) - 1))
        self._cursor_key = self.cursor_key
        self.virtual_size = Size(width, self._rows() * PANEL_HEIGHT)
        self.refresh()

    def _rows(self) -> int:
        return -(-len(self._shown) // self._columns)

    def _drop_strips(self) -> None:
        self._sigs.clear()
        self._strips.clear()
        self._line_cache.clear()

    def _signatures(self, view: PanelView, index: int) -> list[_LineSig]:
        width = self._column_widths[index % self._columns]
        cursor = index == self._cursor
        level = PANEL_STATE_LEVEL.get(view.state, "unknown")
        value_text = format_value(view.value, one_line(view.unit, max_len=16))
        metric = one_line(view.metric, max_len=40)
        threshold = _threshold(view)
        text = " ".join(part for part in (metric, value_text) if part)
        if threshold:
            text = f"{text}  {threshold}"
        return [
            (width, cursor, one_line(view.title, max_len=80), view.state),
            (width, cursor, text, level if is_number(view.value) else "unknown"),
            # One style for every sparkline: state is told by the label and the value, so a
            # state flip does not force a repaint, and neighbouring sparklines merge into one
            # segment (one escape sequence per written line).
            # scaled to take in the target shown beside it (the critical level too would
            # flatten a latency's normal swing under a 2 s line into one bar)
            (width, cursor, sparkline(view.spark, width - 3,
                                      (view.warn if view.warn is not None else view.crit,)),
             "spark"),
        ]

    def _render_panel_line(self, line: int, sig: _LineSig) -> Strip:
        """One line of one panel: an edge cell, the content, a trailing gap cell.

        Lines 1 and 2 are ONE segment (edge, content and gap share a style) unless the
        panel has the cursor, and Strip.simplify() then merges neighbouring panels of the
        same state, so a typical written line carries one escape sequence, not twelve.
        """
        width, cursor, text, level = sig
        content = width - 2
        segments: list[Segment] = []
        if cursor:
            segments.append(Segment(_EDGE_CURSOR, self._style("edge-cursor")))
        if line == 0:
            title_style = self._style("title-cursor" if cursor else "title")
            label = PANEL_STATE_LABELS.get(str(level), PANEL_STATE_LABELS["nodata"])
            colour = self._style(PANEL_STATE_LEVEL.get(str(level), "unknown")).color
            room = max(content - cell_len(label) - 1, 0)
            title = str(text)
            if cell_len(title) > room > 1:
                title = set_cell_size(title, room - 1) + "…"
            head = ("" if cursor else " ") + set_cell_size(title, room) + " "
            segments.append(Segment(head, title_style))
            segments.append(Segment(set_cell_size(label, content - room - 1),
                                    title_style + Style(color=colour)))
            segments.append(Segment(" ", self._style("base")))
        else:
            if line == 1:
                style = self._style("value" if level == "ok" else str(level))
                body = set_cell_size(str(text), content)
            else:
                style = self._style("spark")
                body = " " + str(text)
            segments.append(Segment(("" if cursor else " ") + body + " ", style))
        return Strip(segments, width).simplify()

    def _panel_strips(self, key: str) -> list[Strip]:
        strips = self._strips.get(key)
        if strips is None:
            index = self._index[key]
            sigs = self._signatures(self._views[key], index)
            strips = [self._render_panel_line(n, sig) for n, sig in enumerate(sigs)]
            self._sigs[key] = sigs
            self._strips[key] = strips
            # Odd rows start half an interval later, so paced sparkline repaints alternate
            # between rows instead of all landing on the same update.
            row = index // self._columns
            self._spark_painted[key] = self._clock() - (row % 2) * self._spark_interval / 2
        return strips

    def _render_virtual_line(self, y: int) -> Strip:
        cached = self._line_cache.get(y)
        if cached is not None:
            return cached
        row, line = divmod(y, PANEL_HEIGHT)
        start = row * self._columns
        keys = self._shown[start : start + self._columns]
        strips = [self._panel_strips(key)[line] for key in keys]
        used = sum(self._column_widths[: len(keys)])
        if used < self._width:
            strips.append(Strip.blank(self._width - used, self._style("base")))
        strip = Strip.join(strips).simplify()
        self._line_cache[y] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        virtual_y = y + self.scroll_offset.y
        if not 0 <= virtual_y < self._rows() * PANEL_HEIGHT:
            return Strip.blank(self._width, self._style("base"))
        return self._render_virtual_line(virtual_y)

    def _repaint_changed(self) -> None:
        """Diff every shown panel's line signatures; re-render and refresh what differs.

        Per virtual line, one refresh region from x=0 to the right edge of the rightmost
        changed panel (see the module docstring for why not one region per panel). Panels
        scrolled out of view are only invalidated, and rendered again when they are seen.
        """
        dirty: dict[int, int] = {}  # virtual y -> right edge of the rightmost change
        columns = self._columns
        now = self._clock()
        spark_due = self._spark_interval - _SPARK_SLACK
        scroll_y = self.scroll_offset.y
        height = self.scrollable_content_region.height
        first_row = scroll_y // PANEL_HEIGHT
        last_row = (scroll_y + height - 1) // PANEL_HEIGHT
        for index, key in enumerate(self._shown):
            old = self._sigs.get(key)
            if old is None:
                continue  # not rendered since the last invalidation: nothing to repaint
            row, column = divmod(index, columns)
            if not first_row <= row <= last_row:
                del self._sigs[key], self._strips[key]
                for line in range(PANEL_HEIGHT):
                    self._line_cache.pop(row * PANEL_HEIGHT + line, None)
                continue
            sigs = self._signatures(self._views[key], index)
            if sigs == old:
                continue
            strips = self._strips[key]
            x = self._column_x[column]
            painted = list(old)
            for line in range(PANEL_HEIGHT):
                new_sig = sigs[line]
                if new_sig == old[line]:
                    continue
                if line == 2 and new_sig[:2] == old[2][:2] and new_sig[3] == old[2][3]:
                    # Only the bars moved: repaint at most every spark_interval seconds.
                    if now - self._spark_painted.get(key, now) < spark_due:
                        continue
                    self._spark_painted[key] = now
                new = self._render_panel_line(line, new_sig)
                right = x + _changed_extent(old[line], new_sig, strips[line], new)
                strips[line] = new
                painted[line] = new_sig
                y = row * PANEL_HEIGHT + line
                dirty[y] = max(dirty.get(y, 0), right)
            self._sigs[key] = painted
        regions = []
        for y, right in dirty.items():
            self._line_cache.pop(y, None)
            if scroll_y <= y < scroll_y + height:
                regions.append(Region(0, y - scroll_y, right, 1))
        if regions:
            self.refresh(*regions)

    # -- cursor ------------------------------------------------------------------------

    def _move_cursor(self, index: int) -> None:
        if not self._shown:
            return
        index = max(0, min(index, len(self._shown) - 1))
        if index != self._cursor:
            self._cursor = index
            self._cursor_key = self.cursor_key
            self._repaint_changed()  # the cursor flag is part of each line's signature
            if self._cursor_key is not None:
                self.post_message(self.PanelHighlighted(self._cursor_key, self))
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        row, column = divmod(self._cursor, self._columns)
        region = Region(self._column_x[column], row * PANEL_HEIGHT,
                        self._column_widths[column], PANEL_HEIGHT)
        self.scroll_to_region(region, animate=False, force=True, immediate=True)

    # -- events, watchers and actions ---------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        if self.scrollable_content_region.width != self._width:
            self._relayout()
        self._check_viewport()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or not self._shown:
            return
        row = (offset.y + self.scroll_offset.y) // PANEL_HEIGHT
        column = sum(1 for x in self._column_x[1:] if offset.x >= x)
        index = row * self._columns + column
        if index >= len(self._shown):
            return
        self._click(index)

    def watch_filter_text(self, filter_text: str) -> None:
        visible = self._filtered()
        if visible != self._shown:
            self._relayout(visible)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.PanelSelected(key, self))

    def action_cursor_up(self) -> None:
        if self._cursor >= self._columns:
            self._move_cursor(self._cursor - self._columns)

    def action_cursor_down(self) -> None:
        if self._cursor + self._columns < len(self._shown):
            self._move_cursor(self._cursor + self._columns)
        elif self._cursor // self._columns < (len(self._shown) - 1) // self._columns:
            self._move_cursor(len(self._shown) - 1)  # short last row: land on its end

    def action_cursor_left(self) -> None:
        if self._cursor % self._columns:  # within the row, like the arrows in a table
            self._move_cursor(self._cursor - 1)

    def action_cursor_right(self) -> None:
        if self._cursor % self._columns < self._columns - 1:
            self._move_cursor(self._cursor + 1)

    def _page_panels(self) -> int:
        rows = max(1, self.scrollable_content_region.height // PANEL_HEIGHT)
        return rows * self._columns

    def action_page_up(self) -> None:
        self._move_cursor(self._cursor - self._page_panels())

    def action_page_down(self) -> None:
        self._move_cursor(self._cursor + self._page_panels())
