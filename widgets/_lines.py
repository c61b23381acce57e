"""What the Line-API widgets (status board, panel grid) share: styles, cursor, messages."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from textual.geometry import Region
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget


class OwnedMessage(Message):
    """A message whose `control` is the widget that posted it, so `@on(Msg, "#id")` works.

    Subclasses stay nested in their widget: Textual derives the handler name
    (`on_status_board_target_selected`) from the nested class's qualified name.
    """

    def __init__(self, owner: Widget | None) -> None:
        self._owner = owner
        super().__init__()

    @property
    def control(self) -> Widget | None:
        return self._owner


class LineWidget(ScrollView):
    """A ScrollView drawn from cached strips, with a cursor over `_shown` keys.

    Subclasses name their component classes (`STYLE_PREFIX--name` for each STYLE_NAMES),
    drop their cached strips in `_drop_strips` and move the cursor in `_move_cursor`.
    """

    STYLE_PREFIX: ClassVar[str] = ""
    STYLE_NAMES: ClassVar[tuple[str, ...]] = ()

    _style_generation = 0  # a class default: Textual may restyle us during __init__

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._shown: list[str] = []  # keys in display order (after filtering)
        self._index: dict[str, int] = {}
        self._cursor = 0
        self._styles: dict[str, Style] = {}
        self._style_key: tuple[object, ...] = ()

    # -- cursor ------------------------------------------------------------------------

    def _current(self) -> str | None:
        """The key under the cursor, or None when nothing is shown."""
        if not self._shown:
            return None
        return self._shown[min(self._cursor, len(self._shown) - 1)]

    def _select_key(self, key: str) -> bool:
        """Move the cursor to `key`; False if it is not shown (unknown or filtered out)."""
        index = self._index.get(key)
        if index is None:
            return False
        self._move_cursor(index)
        return True

    def _move_cursor(self, index: int) -> None:
        raise NotImplementedError

    def _click(self, index: int) -> None:
        """A click on the highlighted item opens it; on another one, moves there."""
        if index == self._cursor:
            self.action_select()
        else:
            self._move_cursor(index)

    def action_select(self) -> None:
        raise NotImplementedError

    def action_first(self) -> None:
        self._move_cursor(0)

    def action_last(self) -> None:
        self._move_cursor(len(self._shown) - 1)

    # -- styles ------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self.get_component_rich_style(f"{self.STYLE_PREFIX}--{name}")
            self._styles[name] = style
        return style

    def _drop_strips(self) -> None:
        """Forget every cached strip: the styles they were drawn with changed."""

    def _check_styles(self) -> None:
        """Drop every cached strip when a component style changed (theme, focus, CSS).

        Checked once per render pass rather than in notify_style_update, which Textual
        calls before it updates component-class styles (and not at all when only those
        changed, e.g. `&:focus > .panel-grid--title-cursor`).
        """
        # Comparing every component style costs ~0.1 ms per frame (refresh() empties
        # Textual's style cache); do it only when something they depend on may have moved.
        key = (self.app.theme, self.app.no_color, self.get_pseudo_class_state(),
               self._style_generation)
        if key == self._style_key:
            return
        self._style_key = key
        fresh = {name: self.get_component_rich_style(f"{self.STYLE_PREFIX}--{name}")
                 for name in self.STYLE_NAMES}
        if fresh != self._styles:
            had_styles = bool(self._styles)
            self._styles = fresh
            self._drop_strips()
            if had_styles:
                self.refresh()  # lines outside this pass were drawn with the old styles

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_generation += 1  # CSS changed (e.g. live reload): compare next render

    def render_lines(self, crop: Region) -> list[Strip]:
        self._check_styles()
        return super().render_lines(crop)
