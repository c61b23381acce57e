"""`?`: every key of the screen underneath and of the app, in one list."""

from __future__ import annotations

import functools
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

from console.screens.base import SCROLL_KEYS, ConsoleModal, scroll_text

EXTRA_KEYS = [
    ("↑ ↓ ← → / h j k l", "move the cursor"),
    ("g / G", "first / last row"),
    ("ctrl+p", "command palette (open a target, faults, theme…)"),
    ("Esc", "back / close"),
]


@functools.cache
def _textual_defaults(cls: type) -> frozenset[Binding]:
    """The bindings Textual's own base classes declare for `cls` (ours compare unequal)."""
    found: set[Binding] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("textual."):
            found.update(Binding.make_bindings(klass.__dict__.get("BINDINGS", [])))
    return frozenset(found)


def binding_rows(screen: Screen[Any]) -> list[tuple[str, str]]:
    """One row per thing a key does on `screen`, its keys together ("↑ k  Up").

    Textual's inherited defaults (scroll left/right on a board that never scrolls
    sideways, copy, focus previous, ctrl+q beside q) are left out: listed one key per row
    they pushed the app's own keys (Keys, Faults, Theme) below the bottom of 80x24.
    """
    rows: dict[str, list[str]] = {}
    for active in screen.active_bindings.values():
        binding = active.binding
        if binding.system or binding in _textual_defaults(type(active.node)):
            continue
        if binding.action == "command_palette":  # listed, with what it offers, in EXTRA_KEYS
            continue
        desc = binding.description or binding.action.replace("_", " ")
        label = binding.key_display or screen.app.get_key_display(binding)
        labels = rows.setdefault(desc, [])
        if label not in labels:
            labels.append(label)
    return [(" ".join(labels), desc) for desc, labels in rows.items()]


class HelpScreen(ConsoleModal[None]):
    """A modal list of keys; Esc, q or ? closes it.

    Opaque: the list covers the whole screen, so Textual's translucent modal background
    (the screen below, dimmed, re-rendered on every repaint) was work nobody saw — at
    160x40 about 4 ms of each frame of this screen (bench/bench_tui_keys.py).
    """

    DEFAULT_CSS = """
    HelpScreen {
        background: $background;
        &:ansi { background: ansi_default; }
    }
    """

    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="help_close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
        *SCROLL_KEYS,
    ]

    def action_scroll(self, how: str) -> None:
        scroll_text(self.query_one("#help-body", VerticalScroll), how)

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
