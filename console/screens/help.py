"""`?`: every key of the screen underneath and of the app, in one list."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

EXTRA_KEYS = [
    ("↑ ↓ ← → / h j k l", "move the cursor"),
    ("g / G", "first / last row"),
    ("ctrl+p", "command palette (open a target, faults, theme…)"),
    ("Esc", "back / close"),
]


def binding_rows(screen: Any) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        desc = binding.description or binding.action.replace("_", " ")
        label = binding.key_display or screen.app.get_key_display(binding)
        if (label, desc) in seen or binding.system:
            continue
        seen.add((label, desc))  # type: ignore[arg-type]
        del key
        rows.append((label, desc))
    return rows


class HelpScreen(ModalScreen[None]):
    """A modal list of keys; Esc, q or ? closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="help_close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def __init__(self, below: Any) -> None:
        super().__init__()
        self.below = below  # the screen whose keys are listed (this modal's own are not)

    def compose(self) -> ComposeResult:
        rows = binding_rows(self.below)
        rows += EXTRA_KEYS
        width = max(len(k) for k, _ in rows) + 2
        text = "\n".join(f"{k:<{width}}{d}" for k, d in rows)
        with VerticalScroll(id="help-body"):
            yield Static(Content("Keys"), id="help-title")
            yield Static(Content(text), id="help-keys")
