"""Baseline for the 100-panel benchmark: 100 plain Textual `Sparkline`s updated at 1 Hz.

This is the naive way to build the console's panel grid (one widget per series, each bar
coloured on a gradient), and what the architecture notes measured at 11.5 % of a core and
105 KB/s. `bench_tui.py` runs it at the same terminal size in the same run as the console.
"""

from __future__ import annotations

import random
import sys

from textual.app import App, ComposeResult
from textual.containers import Grid
from textual.widgets import Footer, Sparkline, Static

PANELS = 100
POINTS = 60  # one minute of 1 Hz samples per series


class SparklinesApp(App[None]):
    """A title line, a 5×20 grid of sparklines, a footer; every series gets a new point each
    second."""

    BINDINGS = [("q", "quit", "Quit")]
    CSS = """
    #grid { grid-size: 5 20; grid-gutter: 1 2; height: 1fr; }
    """

    def __init__(self, seed: int = 1) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.series = [[self.rng.uniform(5, 50) for _ in range(POINTS)] for _ in range(PANELS)]

    def compose(self) -> ComposeResult:
        yield Static(f"baseline · {PANELS} sparklines")
        with Grid(id="grid"):
            for i, data in enumerate(self.series):
                yield Sparkline(list(data), id=f"s{i}")
        yield Footer()

    def on_mount(self) -> None:
        self.sparks = list(self.query(Sparkline))
        self.set_interval(1.0, self.tick)

    def tick(self) -> None:
        with self.batch_update():
            for spark, data in zip(self.sparks, self.series, strict=True):
                data.append(self.rng.uniform(5, 50))
                del data[0]
                spark.data = list(data)


if __name__ == "__main__":
    SparklinesApp(seed=int(sys.argv[1]) if len(sys.argv) > 1 else 1).run()
