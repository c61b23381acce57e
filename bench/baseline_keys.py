"""Baseline for key press → screen change: a bare Textual app whose `?` pushes a "Keys"
screen and Escape pops it (`bench_tui_keys.py` drives it through tmux exactly as it drives
the console), so the figure separates what tmux, the terminal and Textual take from what
the console adds."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static


class KeysScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Static("Keys")
        yield Static("? this screen  Escape back  q quit")


class BoardApp(App[None]):
    """A board-like list of rows ("svc-0000" on top) with a Footer; `?` opens Keys."""

    BINDINGS = [("q", "quit", "Quit"), Binding("question_mark", "keys", "Keys", key_display="?")]

    def compose(self) -> ComposeResult:
        yield Static("\n".join(f" ● up   svc-{i:04d}" for i in range(30)))
        yield Footer()

    def action_keys(self) -> None:
        self.push_screen(KeysScreen())


if __name__ == "__main__":
    BoardApp().run()
