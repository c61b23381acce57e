"""A sortable, filterable table of records: the drill-downs' and the breakdowns' one table.

Records are plain dicts; each `Column` says which key it shows, how to write it (a function
into the console's vocabulary) and whether it is a number (right-aligned). The table keeps
the sort column, the direction and the filter; the screen owning it only hands it records.
Every cell is plain content (`Text`, never markup) cut to one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from console.engine.text.fmt import fmt_count, is_number
from console.engine.text.sanitize import one_line


def fmt_plain(value: Any, digits: int = 0) -> str:
    """A number with separators; text (a pid's state, a name) as it is."""
    return fmt_count(value, digits) if value is None or is_number(value) else str(value)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None  # None: the fill column, whatever the others leave
    fmt: Callable[[Any], str] = fmt_plain
    right: bool = True
    style: Callable[[Any], Style | str] | None = None  # e.g. a threshold colour per value
    # a name too long for its cell keeps its end ("opst…_orders"), where names sharing a
    # prefix differ: cut at the end, six tables read "opst_18912_…" at 80 columns
    keep_end: bool = False


def fit_text(text: str, width: int, *, keep_end: bool = False) -> str:
    """`text` in `width` cells; with `keep_end`, an ellipsis replaces its middle (a third
    of the room for the start, the rest for the end), else the cell's own ellipsis cuts
    its end. Cell widths as `len` (names and queries are ASCII in practice; a wider text
    is still cut by the cell)."""
    if not keep_end or len(text) <= width or width < 5:
        return text
    head = (width - 1) // 3
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def sort_key(value: Any) -> tuple[int, Any]:
    """Missing values last; numbers by value, the rest as text."""
    if value is None:
        return (2, 0)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, list):
        return (1, ",".join(map(str, value)))
    return (1, str(value).lower())


class RecordTable(DataTable[Text]):
    """Records as rows: `configure` the columns and order, `show` the records; a click on a
    header sorts by it (again: reverses), `filter_text` keeps rows whose cells contain it."""

    class SortChanged(Message):
        """The user sorted by a header: the owner may remember it per section."""

        def __init__(self, table: RecordTable, index: int, reverse: bool) -> None:
            super().__init__()
            self.table = table
            self.index = index
            self.reverse = reverse

    def __init__(self, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(cursor_type="row", zebra_stripes=False, id=id)
        self.columns_spec: tuple[Column, ...] = ()
        self.sort_index = 0
        self.sort_reverse = False
        self.filter_text = ""
        self.records: list[dict[str, Any]] = []  # shown, in order
        self._source: list[dict[str, Any]] = []
        self._fitted = 0
        self._fill = 12

    def configure(self, columns: Sequence[Column], sort_index: int, reverse: bool) -> None:
        """New columns (another section): widths fitted to the table's width."""
        self.columns_spec = tuple(columns)
        self.sort_index = min(sort_index, max(len(columns) - 1, 0))
        self.sort_reverse = reverse
        self._fit()

    def _fit(self) -> None:
        self.clear(columns=True)
        # DataTable pads each cell by one on both sides; 2 more for the vertical scrollbar.
        width = self.size.width or self.app.size.width or 80
        fixed = sum((c.width or 0) + 2 for c in self.columns_spec) + 2
        fill = max(12, width - fixed - 2)
        self._fitted = width
        self._fill = fill
        for c in self.columns_spec:
            self.add_column(Text(c.label, justify="right" if c.right else "left"),
                            key=c.key, width=c.width or fill)

    def show(self, records: Sequence[dict[str, Any]] | None = None) -> None:
        """Show `records` (or the last ones again, after a sort or a filter), the cursor kept
        on its row number."""
        if records is not None:
            self._source = list(records)
        cols = self.columns_spec
        rows = list(self._source)
        if self.filter_text:
            needle = self.filter_text.lower()
            rows = [r for r in rows
                    if any(needle in c.fmt(r.get(c.key)).lower() for c in cols)]
        if cols:
            col = cols[self.sort_index]
            rows.sort(key=lambda r: sort_key(r.get(col.key)), reverse=self.sort_reverse)
            if self.sort_reverse:  # keep missing values last either way
                rows.sort(key=lambda r: r.get(col.key) is None)
        keep = self.cursor_row
        self.clear()
        for i, r in enumerate(rows):
            self.add_row(*(Text(fit_text(one_line(c.fmt(r.get(c.key)), 1000),
                                         c.width or self._fill, keep_end=c.keep_end),
                                no_wrap=True,
                                overflow="ellipsis", justify="right" if c.right else "left",
                                style=c.style(r.get(c.key)) if c.style else "")
                           for c in cols), key=str(i))
        self.records = rows
        if rows:
            self.move_cursor(row=min(keep, len(rows) - 1), animate=False)

    def sort_next(self, step: int = 1) -> None:
        if self.columns_spec:
            self.sort_index = (self.sort_index + step) % len(self.columns_spec)
            self.show()

    def reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.show()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self.show()

    @property
    def current(self) -> dict[str, Any] | None:
        """The record under the cursor."""
        row = self.cursor_row
        return self.records[row] if 0 <= row < len(self.records) else None

    def on_resize(self) -> None:
        if self.columns_spec and self.size.width != self._fitted:
            self._fit()
            self.show()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        keys = [c.key for c in self.columns_spec]
        index = keys.index(str(event.column_key.value))
        if index == self.sort_index:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_index = index
        self.show()
        self.post_message(self.SortChanged(self, self.sort_index, self.sort_reverse))
