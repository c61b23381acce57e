"""A two-column list of keys and what they do, for the `?` help screen."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from console.engine.text.sanitize import one_line

KeyRow = tuple[str, str]
"""(keys, description); a row with empty keys is a section heading."""


def rows_from_bindings(bindings: Iterable[Binding], heading: str = "") -> list[KeyRow]:
    """Rows for the bindings that have a description, keys joined as the footer shows them.

    Several bindings to one action (`up`, `k`) become one row: "↑ k  Up".
    """
    by_action: dict[str, tuple[list[str], str]] = {}
    for binding in bindings:
        if not binding.description:
            continue
        keys, _ = by_action.setdefault(binding.action, ([], binding.description))
        for key in binding.key.split(","):
            shown = binding.key_display or _KEY_NAMES.get(key.strip(), key.strip())
            if shown not in keys:
                keys.append(shown)
    rows: list[KeyRow] = [("", heading)] if heading else []
    rows.extend((" ".join(keys), description) for keys, description in by_action.values())
    return rows


_KEY_NAMES = {
    "up": "↑", "down": "↓", "left": "←", "right": "→", "enter": "Enter", "escape": "Esc",
    "tab": "Tab", "shift+tab": "Shift+Tab", "pageup": "PgUp", "pagedown": "PgDn",
    "home": "Home", "end": "End", "question_mark": "?", "slash": "/", "space": "Space",
}


class KeyHelp(Static):
    """Keys in an aligned, accented column; descriptions beside them; headings in bold.

    Plain `Text` throughout, so a description containing brackets shows as written.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {"key-help--key", "key-help--heading"}

    DEFAULT_CSS = """
    KeyHelp {
        height: auto;
        padding: 0 1;
        & > .key-help--key { color: $accent; text-style: bold; }
        & > .key-help--heading { color: $text; text-style: bold underline; }
        &:ansi > .key-help--key { color: ansi_bright_white; text-style: bold; }
    }
    """

    def __init__(
        self,
        rows: Iterable[KeyRow] = (),
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__("", markup=False, name=name, id=id, classes=classes)
        self._rows: list[KeyRow] = self._clean(rows)

    @property
    def rows(self) -> list[KeyRow]:
        return list(self._rows)

    def set_rows(self, rows: Iterable[KeyRow]) -> None:
        """Replace the rows shown."""
        self._rows = self._clean(rows)
        self.update(self._render_rows())

    @staticmethod
    def _clean(rows: Iterable[KeyRow]) -> list[KeyRow]:
        # Descriptions can come from config (panel titles, playbook steps): one line each,
        # no control characters, bounded.
        return [(one_line(keys, max_len=24), one_line(text, max_len=200)) for keys, text in rows]

    def on_mount(self) -> None:
        self.update(self._render_rows())

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if self.is_mounted:
            self.update(self._render_rows())

    def _render_rows(self) -> Text:
        key_style = self._component("key-help--key")
        heading_style = self._component("key-help--heading")
        width = max((cell_len(keys) for keys, _ in self._rows if keys), default=0)
        text = Text(end="")
        for index, (keys, description) in enumerate(self._rows):
            if index:
                text.append("\n")
            if not keys:
                if index:
                    text.append("\n")
                text.append(description, heading_style)
                continue
            text.append(keys + " " * (width - cell_len(keys)), key_style)
            text.append("  " + description)
        return text

    def _component(self, name: str) -> Style:
        try:
            return self.get_component_rich_style(name, partial=True)
        except KeyError:  # styles not applied yet (not mounted)
            return Style()
