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

from console.screens.base import SCROLL_KEYS, ConsoleModal, ConsoleScreen, scroll_text

# Keys every screen has (a list's cursor, the palette, Esc) as (key, label) pairs: a row
# shows only the keys the screen does not bind to something of its own (listed above it),
# so the incident screen's `h` (Hand over) is not also "move the cursor".
EXTRA_KEYS: list[tuple[tuple[tuple[str, str], ...], str]] = [
    ((("up", "↑"), ("down", "↓"), ("left", "←"), ("right", "→"), ("h", "h"), ("j", "j"),
      ("k", "k"), ("l", "l")), "move the cursor"),
    ((("g", "g"), ("G", "G")), "first / last row"),
    ((("ctrl+p", "ctrl+p"),), "command palette (open a target, faults, theme…)"),
    ((("escape", "Esc"),), "back / close"),
]


def extra_rows(own: set[str]) -> list[tuple[str, str]]:
    """EXTRA_KEYS without the keys in `own` (a row left with none is left out)."""
    out = []
    for keys, desc in EXTRA_KEYS:
        labels = [label for key, label in keys if key not in own]
        if labels:
            out.append((" ".join(labels), desc))
    return out


@functools.cache
def _textual_defaults(cls: type) -> frozenset[Binding]:
    """The bindings Textual's own base classes declare for `cls` (ours compare unequal)."""
    found: set[Binding] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("textual."):
            found.update(Binding.make_bindings(klass.__dict__.get("BINDINGS", [])))
    return frozenset(found)


def _screen_own(screen: Screen[Any]) -> dict[str, Binding]:
    """The screen's own bindings (its classes' BINDINGS, not Textual's), by key."""
    own: dict[str, Binding] = {}
    for klass in reversed(type(screen).__mro__):
        if not klass.__module__.startswith("textual."):
            for b in Binding.make_bindings(klass.__dict__.get("BINDINGS", [])):
                own[b.key] = b
    return own


def binding_rows(screen: Screen[Any], own: set[str] | None = None) -> list[tuple[str, str]]:
    """One row per thing a key does on `screen`, its keys together ("↑ k  Up"); the keys
    listed are added to `own`.

    Textual's inherited defaults (scroll left/right on a board that never scrolls
    sideways, copy, focus previous, ctrl+q beside q) are left out: listed one key per row
    they pushed the app's own keys (Keys, Faults, Theme) below the bottom of 80x24. Where
    such a default of the focused widget takes a key the screen binds too (Enter on a list:
    "select", which the screen answers), the screen's binding says what the key does.
    """
    rows: dict[str, list[str]] = {}
    screen_own = _screen_own(screen)
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if binding.system or binding in _textual_defaults(type(active.node)):
            mine = screen_own.get(key)
            if mine is None or mine.system:
                continue
            binding = mine
        if binding.action == "command_palette":  # listed, with what it offers, in EXTRA_KEYS
            continue
        if own is not None:
            own.add(key)
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
        own: set[str] = set()
        rows = binding_rows(self.below, own)
        if isinstance(self.below, ConsoleScreen):
            rows = self.below.help_rows(rows)
        rows += extra_rows(own)
        width = max(len(k) for k, _ in rows) + 2
        text = "\n".join(f"{k:<{width}}{d}" for k, d in rows)
        with VerticalScroll(id="help-body"):
            yield Static(Content("Keys"), id="help-title")
            yield Static(Content(text), id="help-keys")
