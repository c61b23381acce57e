"""Any few series against time (a remote store's range query), drawn like the latency chart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from console.engine.text.sanitize import one_line
from widgets.latency_chart import LatencyChart, _runs, _tick_labels

MAX_LINES = 3  # one per chart colour the themes define ($chart-1..3)


class SeriesChart(LatencyChart):
    """Up to three labelled lines (the largest by their last value) with the latency chart's
    theme colours, ticks and gaps; `show_series` takes plain arrays, so the screen decides
    where they come from (a `promql` target's query_range)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lines: list[tuple[str, np.ndarray, np.ndarray]] = []
        self._title = ""
        self._y_from_zero = True

    def show_series(self, lines: Sequence[tuple[str, Any, Any]], title: str) -> None:
        """Draw `lines` as (label, t epoch seconds, values; NaN for gaps) under `title`.
        Only the MAX_LINES largest are drawn; the title should say how many there were."""
        prepared = []
        for label, t, v in lines:
            t_arr = np.asarray(t, dtype=float).ravel()
            v_arr = np.asarray(v, dtype=float).ravel()
            n = min(len(t_arr), len(v_arr))
            prepared.append((one_line(label, 60), t_arr[:n], v_arr[:n]))
        prepared.sort(key=lambda x: -_last(x[2]))
        prepared = prepared[:MAX_LINES]
        title = one_line(title, 120)
        y_from_zero = not any(np.nanmin(v) < 0 for _, _, v in prepared
                              if np.isfinite(v).any())
        if (title == self._title and y_from_zero == self._y_from_zero
                and len(prepared) == len(self._lines)
                and all(a[0] == b[0] and np.array_equal(a[1], b[1])
                        and np.array_equal(a[2], b[2], equal_nan=True)
                        for a, b in zip(prepared, self._lines, strict=True))):
            return
        self._lines = prepared
        self._title = title
        self._y_from_zero = y_from_zero
        ts = [t for _, t, _ in prepared if len(t)]
        self._hist = {"t": np.concatenate(ts) if ts else np.empty(0)}
        self._span_label = title
        self._draw()
        self.refresh()

    def _draw(self) -> None:
        if not self._lines:
            super()._draw()
            return
        plt = self.plt
        plt.clear_figure()
        drawn = False
        for (label, x, y), colour in zip(self._lines, self._colours, strict=False):
            good = np.isfinite(x) & np.isfinite(y)
            labelled = False
            for run in _runs(np.where(good, y, np.nan)):
                xs, ys = x[run].tolist(), y[run].tolist()
                if len(xs) == 1:
                    plt.scatter(xs, ys, color=colour, marker="dot",
                                label=None if labelled else label)
                else:
                    plt.plot(xs, ys, color=colour, marker="braille",
                             label=None if labelled else label)
                labelled = drawn = True
        self._has_data = drawn
        if not drawn:
            return
        t = self._hist["t"]
        finite_t = t[np.isfinite(t)]
        start, end = float(finite_t.min()), float(finite_t.max())
        if end - start < 1:
            start, end = start - 30, end + 30
        plt.xlim(start, end)
        ticks, labels = _tick_labels(start, end, max(self.size.width // 10, 2))
        plt.xticks(ticks, labels)
        if self._y_from_zero:
            plt.ylim(0, None)
        plt.title(self._title)
        ys = [y[np.isfinite(y)] for _, _, y in self._lines]
        finite = np.concatenate(ys) if ys else np.empty(0)
        self._draw_markers(start, end, float(finite.max()) if len(finite) else 0.0)


def _last(v: np.ndarray) -> float:
    finite = v[np.isfinite(v)]
    return float(finite[-1]) if len(finite) else -np.inf
