"""The status board: one DataTable row per target, updated in place on every snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

from console.engine.model import Status
from console.engine.sanitize import one_line
from console.engine.views import TargetView

from ._format import STATUS_LABELS, STATUS_LEVEL, fmt_age, fmt_ms, fmt_pct
from ._table import FillTable

# (key, header, width, right-aligned). Fixed widths keep the columns still while values
# change (update_cell(..., update_width=False)); `detail` takes whatever width is left.
_COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("state", "state", 6, False),
    ("name", "name", 18, False),
    ("kind", "kind", 5, False),
    ("latency", "ms", 5, True),
    ("p95", "p95", 5, True),
    ("uptime", "up 1h", 5, True),
    ("since", "since", 6, True),
    ("detail", "detail", 12, False),
)
_KIND_SHORT = {"postgres": "pg", "postgresql": "pg", "prometheus": "prom"}
_BADGE = " ⚠insecure"

# One cell as plain data: (text, component-class suffix or "", right-aligned). Cells are
# compared by this signature so an unchanged cell is never rewritten.
_Cell = tuple[str, str, bool]
_Row = tuple[_Cell, ...]


def _matches(view: TargetView, needle: str) -> bool:
    if not needle:
        return True
    haystack = " ".join(
        (view.name, view.kind, view.group or "", *view.tags, view.status.value)
    ).lower()
    return needle in haystack


class StatusBoard(FillTable):
    """Targets with state, latency, p95, uptime, time in state and the latest reason.

    Feed it with `update_rows(views, now)` as often as snapshots arrive: rows are keyed by
    target name, only changed cells are rewritten, rows are added or removed only when a
    target appears, disappears or is filtered, and the cursor stays on its target. Remote
    text is sanitised and shown as `Text`, never parsed as markup.
    """

    COLUMNS = _COLUMNS
    STYLE_PREFIX = "status-board"
    STYLE_LEVELS = ("ok", "warn", "crit", "unknown", "insecure", "muted")

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "status-board--ok",
        "status-board--warn",
        "status-board--crit",
        "status-board--unknown",
        "status-board--insecure",
        "status-board--muted",
    }

    DEFAULT_CSS = """
    StatusBoard {
        & > .status-board--ok { color: $status-ok; }
        & > .status-board--warn { color: $status-warn; text-style: bold; }
        & > .status-board--crit { color: $status-crit; text-style: bold; }
        & > .status-board--unknown { color: $status-unknown; }
        & > .status-board--insecure { color: $status-warn; text-style: bold; }
        & > .status-board--muted { color: $text-muted; }
        &:ansi {
            & > .status-board--muted { color: ansi_default; text-style: dim; }
        }
        &:nocolor {
            & > .status-board--crit { text-style: bold reverse; }
        }
    }
    """

    filter_text: reactive[str] = reactive("", init=False)
    """Case-insensitive substring over name, kind, group, tags and status; "" shows all."""

    class TargetSelected(Message):
        """The user pressed Enter on (or clicked the highlighted) target row."""

        def __init__(self, name: str, board: StatusBoard | None = None) -> None:
            self.name = name
            self.board = board
            super().__init__()

        @property
        def control(self) -> StatusBoard | None:
            return self.board

    class TargetHighlighted(Message):
        """The cursor moved to another target (for a detail pane that follows it)."""

        def __init__(self, name: str, board: StatusBoard | None = None) -> None:
            self.name = name
            self.board = board
            super().__init__()

        @property
        def control(self) -> StatusBoard | None:
            return self.board

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
        self._order: list[str] = []
        self._shown: list[str] = []  # row keys in display order
        self._rows: dict[str, _Row] = {}  # signature of what each row currently shows
        self._texts: dict[str, tuple[Text, ...]] = {}  # the Text objects handed to the table
        self._now = 0.0
        self._last_highlighted: str | None = None

    # -- public API --------------------------------------------------------------------

    @property
    def selected_target(self) -> str | None:
        """The name of the target under the cursor, or None when the board is empty."""
        if not self._shown or not 0 <= self.cursor_row < len(self._shown):
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def current_target(self) -> str | None:
        """Same as `selected_target` (a method, for callers that expect one)."""
        return self.selected_target

    @property
    def shown_targets(self) -> list[str]:
        """Names of the rows currently shown, top to bottom (after filtering)."""
        return list(self._shown)

    def update_rows(self, views: Sequence[TargetView], now: float) -> None:
        """Show `views` in this order; `now` (epoch seconds) drives the "since" column.

        Cheap to call every second: only cells whose text or state changed are rewritten.
        """
        self._views = {view.name: view for view in views}
        self._order = list(self._views)
        self._now = now
        self._sync()

    def select_target(self, name: str) -> bool:
        """Move the cursor to `name`; False if it is not shown (unknown or filtered out)."""
        try:
            index = self.get_row_index(name)
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index)
        return True

    # -- rendering ---------------------------------------------------------------------

    def _signature(self, view: TargetView) -> _Row:
        level = STATUS_LEVEL.get(view.status, "unknown")
        last = view.last
        if last is not None and last.error:
            detail, detail_level = one_line(last.error), level
        elif last is not None and last.reasons:
            detail, detail_level = one_line("; ".join(last.reasons)), level
        else:
            detail, detail_level = one_line(view.address), "muted"
        if view.status is Status.UP and detail_level != "muted":
            detail_level = ""  # an up target's note is informational, not alarming
        kind = one_line(view.kind, max_len=20)
        since = self._now - view.since if view.since is not None else None
        return (
            (STATUS_LABELS.get(view.status, "? ????"), level, False),
            (one_line(view.name, max_len=120), "insecure" if view.insecure else "", False),
            # kind and since share the row's plain style so a repainted row is one
            # segment after the state (see FillTable.render_line): fewer escape bytes.
            (_KIND_SHORT.get(kind, kind), "", False),
            (fmt_ms(view.latency_ms), "", True),
            (fmt_ms(view.p95_ms), "", True),
            (fmt_pct(view.uptime_pct), "", True),
            (fmt_age(since), "", True),
            (detail, detail_level, False),
        )

    def _text(self, column: str, cell: _Cell) -> Text:
        text, level, right = cell
        if column == "name":
            # Keep the badge visible however long the name: shorten the name, not the badge.
            name_width = _COLUMNS[1][2] - (len(_BADGE) if level else 0)
            if len(text) > name_width:
                text = text[: max(name_width - 1, 1)] + "…"
            out = self.make_cell(text)
            if level:
                out.append(_BADGE, self.cell_style("insecure"))
            return out
        return self.make_cell(text, self.cell_style(level), right=right)

    def _sync(self) -> None:
        """Make the rows match the filtered views, touching as little as possible."""
        if not self.columns:
            return  # not mounted yet; on_mount's columns come first, then the next update
        needle = self.filter_text.strip().lower()
        wanted = [name for name in self._order if _matches(self._views[name], needle)]
        wanted_set = set(wanted)
        cursor_key = self.selected_target

        for key in [k for k in self._shown if k not in wanted_set]:
            self.remove_row(key)
            self._rows.pop(key, None)
            self._texts.pop(key, None)
        current = [k for k in self._shown if k in wanted_set]

        column_keys = [key for key, *_ in _COLUMNS]
        with self.cell_batch() as changed:
            for name in wanted:
                row = self._signature(self._views[name])
                previous = self._rows.get(name)
                if previous is None:
                    texts = tuple(self._text(c, cell)
                                  for c, cell in zip(column_keys, row, strict=True))
                    self.add_row(*texts, key=name)
                    current.append(name)
                elif previous != row:
                    texts_list = list(self._texts[name])
                    for index, (column, cell, old) in enumerate(
                        zip(column_keys, row, previous, strict=True)
                    ):
                        if cell != old:
                            texts_list[index] = self._text(column, cell)
                            self.update_cell(name, column, texts_list[index])
                            changed[name] = index
                    texts = tuple(texts_list)
                else:
                    continue
                self._rows[name] = row
                self._texts[name] = texts

        if current != wanted:
            self._reorder(wanted)
        self._shown = wanted

        if cursor_key is not None and cursor_key in wanted_set:
            index = wanted.index(cursor_key)
            if index != self.cursor_row:
                self.move_cursor(row=index)

    def _reorder(self, wanted: list[str]) -> None:
        """Put rows in `wanted` order: new rows are appended, so a filter change or a
        target added mid-list needs a sort. DataTable.sort only sees cell values, so the key
        maps the identity of each row's name Text (ours, unique per row) to its rank."""
        rank = {id(self._texts[name][1]): i for i, name in enumerate(wanted)}
        self.sort("name", key=lambda cell: rank.get(id(cell), len(rank)))

    def columns_added(self) -> None:
        self._sync()  # rows given to update_rows() before the board was mounted

    def restyle(self) -> None:
        """Rebuild every cell's Text after a theme or CSS change (styles are baked in)."""
        column_keys = [key for key, *_ in _COLUMNS]
        for name in self._shown:
            row = self._rows.get(name)
            if row is None:
                continue
            texts = tuple(self._text(c, cell) for c, cell in zip(column_keys, row, strict=True))
            for column, text in zip(column_keys, texts, strict=True):
                self.update_cell(name, column, text, update_width=False)
            self._texts[name] = texts
        if self._shown:
            self._reorder(self._shown)  # the name Texts were replaced; keep ranks valid

    # -- events and watchers -----------------------------------------------------------

    def watch_filter_text(self, filter_text: str) -> None:
        self._sync()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # One intent message for the screens instead of DataTable's generic one.
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.TargetSelected(event.row_key.value, self))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        name = event.row_key.value
        if name is not None and name != self._last_highlighted:
            self._last_highlighted = name
            self.post_message(self.TargetHighlighted(name, self))
