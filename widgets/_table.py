"""A row-cursor DataTable with vim keys whose last column takes the width left over."""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist


@lru_cache(maxsize=1024)
def _look(style: Style | None) -> Style | None:
    """What a style draws (colours and attributes), without meta or links."""
    return None if style is None else style.clear_meta_and_links()


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

    STYLE_PREFIX: ClassVar[str] = ""
    """Component classes `<prefix>--<level>` baked into cell Texts (see `cell_style`)."""
    STYLE_LEVELS: ClassVar[tuple[str, ...]] = ()

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
            # No DataTable padding: every column is one cell wider and its cells start with
            # a space (see make_cell), one separator instead of two: at 80 columns that is
            # 8 more cells for the detail column.
            cell_padding=0,
            name=name,
            id=id,
            classes=classes,
            disabled=disabled,
        )
        self._cell_styles: dict[str, Style] = {}

    def render_line(self, y: int) -> Strip:
        # DataTable gives every cell its own segment (its style carries row/column meta for
        # mouse clicks, so Strip.simplify cannot merge them), and Textual writes a full
        # escape sequence per segment. Neighbours that look the same are merged, keeping
        # the first one's meta: the row is right, and the column does not matter to a row
        # cursor. About half the bytes of a repainted row.
        strip = super().render_line(y)
        merged: list[Segment] = []
        for segment in strip:
            if (
                merged
                and not segment.control
                and not merged[-1].control
                and _look(merged[-1].style) == _look(segment.style)
            ):
                previous = merged[-1]
                merged[-1] = Segment(previous.text + segment.text, previous.style)
            else:
                merged.append(segment)
        return Strip(merged, strip.cell_length)

    def on_mount(self) -> None:
        for key, label, width, right in self.COLUMNS:
            self.add_column(self.make_cell(label, right=right), key=key, width=width + 1)
        self.fit_fill_column()
        self._cell_styles = self._fresh_styles()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._check_styles())
        self.columns_added()

    def columns_added(self) -> None:
        """Called once the columns exist (data given before mounting can be shown now)."""

    # -- styles baked into cells ---------------------------------------------------------

    @staticmethod
    def make_cell(text: str, style: Style | None = None, *, right: bool = False) -> Text:
        """A one-line cell: plain Text (never markup), a leading separator space, an
        ellipsis when it does not fit."""
        return Text(text if right else " " + text, style=style or "", no_wrap=True,
                    overflow="ellipsis", justify="right" if right else "left", end="")

    def cell_style(self, level: str) -> Style:
        """The colour/attributes of `<STYLE_PREFIX>--<level>`, for a cell's Text."""
        if not level:
            return Style()
        style = self._cell_styles.get(level)
        if style is None:
            style = self._foreground(level)
            self._cell_styles[level] = style
        return style

    def _foreground(self, level: str) -> Style:
        """A component's colour and text style without its background.

        Not `partial=True`: that leaves a translucent colour such as `$text-muted`
        unblended (it came out pure white). The full style blends it over our
        background; dropping the background keeps the cursor row's highlight visible.
        """
        full = self.get_component_rich_style(f"{self.STYLE_PREFIX}--{level}")
        return Style(color=full.color, bold=full.bold, dim=full.dim, italic=full.italic,
                     underline=full.underline, reverse=full.reverse, strike=full.strike)

    def _fresh_styles(self) -> dict[str, Style]:
        return {level: self._foreground(level) for level in self.STYLE_LEVELS}

    def _check_styles(self) -> None:
        if not self.is_mounted:
            return
        fresh = self._fresh_styles()
        if fresh != self._cell_styles:
            self._cell_styles = fresh
            self.restyle()

    def restyle(self) -> None:
        """Rebuild the cells after their component styles changed (theme, CSS reload)."""

    def notify_style_update(self) -> None:
        super().notify_style_update()
        # Textual calls this BEFORE it refreshes component-class styles (Stylesheet.apply:
        # replace_rules, then _process_component_classes), so compare them a moment later.
        # A theme change is also caught through theme_changed_signal (see on_mount).
        if self.is_mounted:
            self.call_later(self._check_styles)

    def fit_fill_column(self) -> None:
        """Give the fill column the width left over (call after a resize)."""
        # the ignore below: DataTable.columns is keyed by ColumnKey, which compares equal to its str
        column = self.columns.get(self.FILL_COLUMN)  # type: ignore[call-overload]
        if column is None:
            return
        fixed = sum(width + 1 for key, _, width, _ in self.COLUMNS if key != self.FILL_COLUMN)
        width = max(self.FILL_MIN + 1, self.scrollable_content_region.width - fixed)
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
        """Current width of the fill column's text (without its separator space)."""
        # the ignore below: as in fit_fill_column
        column = self.columns.get(self.FILL_COLUMN)  # type: ignore[call-overload]
        return column.width - 1 if column is not None else self.FILL_MIN

    def on_resize(self, event: events.Resize) -> None:
        self.fit_fill_column()
