"""Latency percentiles (p50/p95/p99) against time, drawn with this widget's own plotext figure."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from plotext._dict import themes as _plotext_themes
from rich.align import Align
from rich.text import Text
from textual.app import RenderResult
from textual.color import Color, ColorParseError
from textual.theme import Theme
from textual_plotext import PlotextPlot

from console.engine.text.sanitize import one_line

# (series key, theme variable, fallback variable every Textual theme defines)
_SERIES = (
    ("p50", "chart-1", "primary"),
    ("p95", "chart-2", "warning"),
    ("p99", "chart-3", "error"),
)
_TICK_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
# Textual ANSI colour names -> plotext's 16 colour names (plotext calls yellow "orange").
_ANSI_TO_PLOTEXT = {
    "black": "black", "red": "red", "green": "green", "yellow": "orange", "blue": "blue",
    "magenta": "magenta", "cyan": "cyan", "white": "gray+",
    "bright_black": "gray", "bright_red": "red+", "bright_green": "green+",
    "bright_yellow": "orange+", "bright_blue": "blue+", "bright_magenta": "magenta+",
    "bright_cyan": "cyan+", "bright_white": "white", "default": "default",
}


def _runs(values: np.ndarray) -> list[slice]:
    """Slices of consecutive finite values: plotext would draw straight across NaN gaps."""
    finite = np.isfinite(values)
    if not finite.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.view(np.int8), [0]))))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _tick_labels(start: float, end: float, max_ticks: int) -> tuple[list[float], list[str]]:
    """Ticks on round local-clock times (every 1, 2, 5, 10, 15, 30 min, 1, 2, 3, 6, 12 h,
    1 day), as many as fit, labelled HH:MM."""
    span = max(end - start, 1.0)
    step = _TICK_STEPS[-1]
    for candidate in _TICK_STEPS:
        if span / candidate <= max(max_ticks, 2):
            step = candidate
            break
    offset = time.localtime(start).tm_gmtoff  # align to the local clock, not to UTC
    first = float(math.ceil((start + offset) / step) * step - offset)
    ticks: list[float] = [first + i * step for i in range(int((end - first) // step) + 1)]
    if not ticks:
        ticks = [start]
    return ticks, [time.strftime("%H:%M", time.localtime(t)) for t in ticks]


class LatencyChart(PlotextPlot):
    """p50/p95/p99 lines for one target over a span (5 min, 1 h, 24 h...).

    Uses textual-plotext's per-widget figure (`self.plt`), never plotext's module-global
    one, so several charts and threads cannot draw into each other. Follows the app
    theme: truecolour themes get the theme's `$chart-1..3` colours on `$surface`; ANSI
    themes get the terminal's own 16 colours on its default background.
    """

    DEFAULT_CSS = """
    LatencyChart {
        height: 1fr;
        min-height: 6;
        background: $surface;
        color: $text-muted;
        &:ansi { background: ansi_default; color: ansi_default; }
    }
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        # Not "auto": we register our own plotext theme per app theme (see _apply_theme),
        # so textual-plotext's auto registration (which parses ANSI colours as RGB) is off.
        self.set_reactive(PlotextPlot.theme, "clear")
        self._hist: dict[str, np.ndarray] = {}
        self._span_label = ""
        self._title = "latency ms"
        self._single = False
        self._has_data = False
        self._colours: list[Any] = ["default"] * len(_SERIES)
        # (epoch seconds, label): deploys of this service, drawn as vertical lines
        self._markers: tuple[tuple[float, str], ...] = ()

    # -- public API --------------------------------------------------------------------

    def show_history(self, hist: Mapping[str, Any], span_label: str,
                     title: str = "latency ms", *, single: bool = False) -> None:
        """Draw `hist` ('t' epoch seconds and 'p50'/'p95'/'p99' in ms, NaN for gaps).

        Missing keys, ragged lengths and all-NaN data are fine: with nothing finite the
        chart says "no data yet". Redraws only when the data or the label changed. `title`
        names what is charted (another metric than latency: its p50/p95/p99 per bucket);
        `single`: one line, no legend (buckets of a sample or two, where p50/p95/p99 are
        the same line three times: the walk read a legend of three over one line).
        """
        if single != self._single:
            self._single, self._hist = single, {}
        arrays = {key: np.asarray(hist.get(key, ()), dtype=float).ravel()
                  for key in ("t", *(series for series, _, _ in _SERIES))}
        label = one_line(span_label, max_len=40)
        title = one_line(title, max_len=40)
        if title != self._title:
            self._title, self._hist = title, {}
        if label == self._span_label and self._hist and all(
            np.array_equal(arrays[key], self._hist[key], equal_nan=True) for key in arrays
        ):
            return
        self._hist = arrays
        self._span_label = label
        self._draw()
        self.refresh()

    def show_markers(self, markers: Sequence[tuple[float, str]]) -> None:
        """Mark moments on the time axis (a deploy: a vertical line labelled with its
        version); those outside the drawn span are left out. Labels are plain text."""
        clean = tuple((float(t), one_line(label, 16)) for t, label in markers)
        if clean == self._markers:
            return
        self._markers = clean
        if self._hist:
            self._draw()
            self.refresh()

    @property
    def markers(self) -> tuple[tuple[float, str], ...]:
        return self._markers

    @property
    def has_data(self) -> bool:
        """True when the last history had at least one finite point to draw."""
        return self._has_data

    # -- drawing -----------------------------------------------------------------------

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        t = self._hist.get("t", np.empty(0))
        drawn = False
        for (key, _, _), colour in zip(_SERIES, self._colours, strict=True):
            if self._single and key != _SERIES[0][0]:
                break
            legend = None if self._single else key
            values = self._hist.get(key, np.empty(0))
            n = min(len(t), len(values))
            x, y = t[:n], values[:n]
            good = np.isfinite(x) & np.isfinite(y)
            labelled = False
            for run in _runs(np.where(good, y, np.nan)):
                xs, ys = x[run].tolist(), y[run].tolist()
                if len(xs) == 1:
                    plt.scatter(xs, ys, color=colour, marker="dot",
                                label=None if labelled else legend)
                else:
                    plt.plot(xs, ys, color=colour, marker="braille",
                             label=None if labelled else legend)
                labelled = drawn = True
        self._has_data = drawn
        if not drawn:
            return
        finite_t = t[np.isfinite(t)]
        start, end = float(finite_t.min()), float(finite_t.max())
        if end - start < 1:
            start, end = start - 30, end + 30  # one instant: give it some width
        plt.xlim(start, end)
        ticks, labels = _tick_labels(start, end, max(self.size.width // 10, 2))
        plt.xticks(ticks, labels)
        plt.ylim(0, None)
        plt.title(f"{self._title}  {self._span_label}".strip())
        self._draw_markers(start, end, float(np.nanmax(self._finite_values()) or 0.0))

    def _finite_values(self) -> np.ndarray:
        values = [self._hist.get(key, np.empty(0))
                  for key, _, _ in (_SERIES[:1] if self._single else _SERIES)]
        joined = np.concatenate(values) if values else np.empty(0)
        finite = joined[np.isfinite(joined)]
        return finite if len(finite) else np.zeros(1)

    def _draw_markers(self, start: float, end: float, top: float) -> None:
        """Deploys inside [start, end]: a vertical line each, its label at the top."""
        plt = self.plt
        for t, label in self._markers:
            if start <= t <= end:
                plt.vertical_line(t, color=self._marker_colour)
                if label:
                    plt.text(f"▼{label}", t, top, color=self._marker_colour)

    @property
    def _marker_colour(self) -> Any:
        return self._colours[1] if len(self._colours) > 1 else "default"

    def on_resize(self) -> None:
        # plotext sizes the plot at render time, but the time ticks were chosen for the old
        # width: draw again so a narrower chart gets fewer labels, a wider one more.
        if self._hist:
            self._draw()
            self.refresh()

    def render(self) -> RenderResult:
        if not self._has_data:
            what = "" if self._title == "latency ms" else f"{self._title}: "
            message = Text(f"{what}no data yet  {self._span_label}".strip(), style="italic")
            return Align.center(message, vertical="middle", height=max(self.size.height, 1))
        return super().render()

    # -- theme -------------------------------------------------------------------------

    def on_mount(self) -> None:
        # PlotextPlot.on_mount runs too (Textual calls every class's handler): its own
        # subscription is a no-op while our theme is not "auto".
        self.app.theme_changed_signal.subscribe(self, self._on_theme_changed)
        self._apply_theme(self.app.current_theme)

    def _on_theme_changed(self, theme: Theme) -> None:
        self._apply_theme(theme)

    def _variable(self, name: str, fallback: str) -> str:
        variables = self.app.theme_variables
        return variables.get(name) or variables.get(fallback) or "default"

    def _apply_theme(self, theme: Theme) -> None:
        """Pick colours for the new theme, register a plotext theme for it, redraw."""
        if theme.ansi:
            # With an ANSI theme `Color.parse("ansi_default").rgb` is meaningless: use the
            # terminal's own colours (plotext names) on its default background.
            self._colours = [self._ansi_colour(self._variable(var, fb)) for _, var, fb in _SERIES]
            self.theme = "clear"
        else:
            self._colours = [self._rgb(self._variable(var, fb)) for _, var, fb in _SERIES]
            surface = self._rgb(self._variable("surface", "background"))
            muted = self._rgb(self._variable("foreground", "text"))
            name = f"opsconsole-chart-{theme.name}"
            _plotext_themes[name] = [surface, surface, muted, "default",
                                     [*self._colours, *(["default"] * 14)]]
            # the ignore below: textual-plotext types `theme` as its built-in names; plotext also
            # takes a registered one
            self.theme = name  # type: ignore[assignment]
        if self._hist:
            self._draw()
        self.refresh()

    @staticmethod
    def _rgb(value: str) -> tuple[int, int, int] | str:
        try:
            colour = Color.parse(value)
        except ColorParseError:
            return "default"
        if colour.ansi is not None:
            return "default"
        return colour.rgb

    @staticmethod
    def _ansi_colour(value: str) -> str:
        name = value.strip().lower()
        name = name.removeprefix("ansi_")
        return _ANSI_TO_PLOTEXT.get(name, "default")
