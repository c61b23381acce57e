"""One-line text prompts (a note, a title, a silence) shared by the alerts and incidents screens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

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
    EMPTY: ClassVar[str | None] = None  # what Enter on an empty line answers (Esc: None)

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical(id=self.BODY_ID, classes="prompt-body"):
            yield Static(Content(self.label))
            yield Input(placeholder=self.PLACEHOLDER, id=self.INPUT_ID)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or self.EMPTY)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextPrompt(LinePrompt):
    """One line of text (a note, a title); Enter submits, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="prompt_cancel"),
    ]


class Confirm(ConsoleModal[bool]):
    """A yes/no question before an action that is hard to take back: y (or Enter) does it,
    n (or Esc) does not."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > #confirm-body { width: 70; height: auto; border: round $warning;
                              background: $surface; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm_yes"),
        Binding("enter", "answer(True)", "Yes", show=False),
        Binding("n", "answer(False)", "No", id="confirm_no"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-body"):
            yield Static(Content(self.question + "\n\ny: yes   n / Esc: no"), id="confirm-text")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class Choose(ConsoleModal[str | None]):
    """Pick one of a few choices (a severity, a runbook): Enter or its number picks it, Esc
    cancels. `choices` are (value, label) pairs; `current` starts highlighted."""

    DEFAULT_CSS = """
    Choose { align: center middle; }
    Choose > #choose-body { width: 76; height: auto; max-height: 90%; border: round $accent;
                            background: $surface; padding: 0 1; }
    Choose #choose-list { height: auto; max-height: 16; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="choose_cancel"),
        *[Binding(str(i), f"pick({i - 1})", "Pick by number", show=False)
          for i in range(1, 10)],
        # as in every list: a walk pressed j, saw no move, and Enter attached an alert to
        # the incident it had not chosen
        Binding("j", "move(1)", "Down", show=False),
        Binding("k", "move(-1)", "Up", show=False),
    ]

    def __init__(self, label: str, choices: Sequence[tuple[str, str]],
                 current: str | None = None) -> None:
        super().__init__()
        self.label = label
        self.choices = choices
        self.current = current

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList
        from textual.widgets.option_list import Option

        with Vertical(id="choose-body"):
            yield Static(Content(self.label))
            yield OptionList(*[Option(Content(f"{i}. {text}"), id=value)
                               for i, (value, text) in enumerate(self.choices, 1)],
                             id="choose-list")

    def on_mount(self) -> None:
        from textual.widgets import OptionList

        ol = self.query_one(OptionList)
        values = [v for v, _ in self.choices]
        ol.highlighted = values.index(self.current) if self.current in values else 0
        ol.focus()

    def on_option_list_option_selected(self, event: Any) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_move(self, step: int) -> None:
        from textual.widgets import OptionList

        ol = self.query_one(OptionList)
        if step > 0:
            ol.action_cursor_down()
        else:
            ol.action_cursor_up()

    def action_pick(self, index: int) -> None:
        if 0 <= index < len(self.choices):
            self.dismiss(self.choices[index][0])

    def action_cancel(self) -> None:
        self.dismiss(None)
