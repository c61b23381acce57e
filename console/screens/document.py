"""A text to read whole inside the console: the post-mortem draft `P` writes.

The walk had to leave the console to read the post-mortem it had just written (a toast gave
its path, wrapped mid-name). The text is shown as it is in the file (Markdown source, never
parsed as markup), scrolled by the keys every list takes; the file stays the one to edit
and send.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from console.engine.text.sanitize import one_line
from console.screens.base import SCROLL_KEYS, ConsoleScreen, scroll_text
from widgets.key_footer import KeyFooter


class DocumentScreen(ConsoleScreen[None]):
    """`title` and `text`, scrollable: j/k or arrows a line, space/b or PgDn/PgUp a page,
    g/G or Home/End the ends (the arrows and Page keys are the scroll container's); Esc
    back."""

    DEFAULT_CSS = """
    DocumentScreen #document-head { height: auto; padding: 0 1; text-style: bold; }
    DocumentScreen #document-body { height: 1fr; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back", id="document_back"), *SCROLL_KEYS]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static(Content(one_line(self.title_text, 300)), id="document-head")
        with VerticalScroll(id="document-body", can_focus=True):
            yield Static(Content(self.text), id="document-text")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#document-body", VerticalScroll).focus()

    def action_scroll(self, how: str) -> None:
        scroll_text(self.query_one("#document-body", VerticalScroll), how)
