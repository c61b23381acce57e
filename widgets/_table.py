"""A row-cursor DataTable with vim keys whose last column takes the width left over."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist


class FillTable(DataTable[Text]):
    """Base for our tables: row cursor, j/k/g/G, fixed column widths plus one fill column.

    Fixed widths let cells be rewritten with `update_cell(..., update_width=False)` without
    the columns jumping; the fill column (`FILL_COLUMN`, added last) is resized to what
    the other columns leave, so the table never needs a horizontal scrollbar at 80 cells.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "First", show=False),
        Binding("G", "scroll_bottom", "Last", show=False),
    ]

    DEFAULT_CSS = """
    FillTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
        scrollbar-gutter: stable;
        /* NO_COLOR under an ANSI theme drops every colour: mark the cursor by style. */
        &:nocolor > .datatable--header { text-style: bold underline; }
        &:nocolor > .datatable--cursor { text-style: reverse; }
        &:nocolor:focus > .datatable--cursor { text-style: bold reverse; }
    }
    """

    FILL_COLUMN: ClassVar[str] = "detail"
    FILL_MIN: ClassVar[int] = 12
    COLUMNS: ClassVar[tuple[tuple[str, str, int, bool], ...]] = ()
    """(key, header, width, right-aligned); the FILL_COLUMN's width is its minimum."""

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(
            cursor_type="row",
            show_row_labels=False,
            cell_padding=1,
            name=name,
            id=id,
            classes=classes,
            disabled=disabled,
        )

    def on_mount(self) -> None:
        for key, label, width, right in self.COLUMNS:
            self.add_column(Text(label, justify="right" if right else "left"), key=key,
                            width=width)
        self.fit_fill_column()

    def fit_fill_column(self) -> None:
        """Give the fill column the width left over (call after a resize)."""
        column = self.columns.get(self.FILL_COLUMN)  # type: ignore[call-overload]
        if column is None:
            return
        fixed = sum(width for key, _, width, _ in self.COLUMNS if key != self.FILL_COLUMN)
        padding = 2 * self.cell_padding * len(self.COLUMNS)
        width = max(self.FILL_MIN, self.scrollable_content_region.width - fixed - padding)
        if width == column.width:
            return
        column.width = width
        if self.row_count:
            # update_cell(update_width=True) is the public way to make the table re-measure
            # its virtual size after a column's width changed.
            try:
                row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
                value = self.get_cell(row_key, self.FILL_COLUMN)
            except CellDoesNotExist:
                return
            self.update_cell(row_key, self.FILL_COLUMN, value, update_width=True)

    @property
    def fill_width(self) -> int:
        """Current width of the fill column."""
        column = self.columns.get(self.FILL_COLUMN)  # type: ignore[call-overload]
        return column.width if column is not None else self.FILL_MIN

    def on_resize(self, event: events.Resize) -> None:
        self.fit_fill_column()
