"""One-line text prompts (a note, a title, a silence) shared by the alerts and incidents screens."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Input, Static

from console.screens.base import ConsoleModal


class LinePrompt(ConsoleModal[str | None]):
    """A label and one Input; Enter dismisses with the stripped text (None if blank).

    Subclasses give the Esc binding (each with its own id, which a keymap refers to),
    the widget ids and the placeholder; the look and behaviour are this class's.
    """

    DEFAULT_CSS = """
    LinePrompt { align: center middle; }
    LinePrompt > .prompt-body { width: 70; height: auto; border: round $accent;
                                background: $surface; padding: 0 1; }
    """

    BODY_ID: ClassVar[str] = "prompt-body"
    INPUT_ID: ClassVar[str] = "prompt-input"
    PLACEHOLDER: ClassVar[str] = ""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical(id=self.BODY_ID, classes="prompt-body"):
            yield Static(Content(self.label))
            yield Input(placeholder=self.PLACEHOLDER, id=self.INPUT_ID)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextPrompt(LinePrompt):
    """One line of text (a note, a title); Enter submits, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="prompt_cancel"),
    ]
