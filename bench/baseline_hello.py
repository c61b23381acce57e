"""Baseline for launch→first frame: the smallest useful Textual app (a Static and a Footer).

`bench_startup.py` launches it exactly as it launches the console, so the ratio shows what the
console adds on top of importing and starting Textual itself on this machine.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.widgets import Footer, Static


class HelloApp(App[None]):
    """Static "hello" on top, the Footer below; `q` quits."""

    BINDINGS = [("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Static("hello")
        yield Footer()


if __name__ == "__main__":
    HelloApp().run()
