"""Small, total formatters shared by the widgets (numbers, durations, state glyphs)."""

from __future__ import annotations

import math
from typing import TypeGuard

from console.engine.model import Status

# Glyph AND word, so a state reads on a monochrome terminal and under NO_COLOR.
STATUS_LABELS: dict[Status, str] = {
    Status.UP: "● up",
    Status.DEGRADED: "▲ degr",
    Status.DOWN: "✖ DOWN",
    Status.UNKNOWN: "… wait",
}
# Component-class suffix per status (`status-board--ok` ...), mapped onto $status-* variables.
STATUS_LEVEL: dict[Status, str] = {
    Status.UP: "ok",
    Status.DEGRADED: "warn",
    Status.DOWN: "crit",
    Status.UNKNOWN: "unknown",
}

PANEL_STATE_LABELS: dict[str, str] = {
    "ok": "✓ ok",
    "warn": "! warn",
    "crit": "✖ crit",
    "nodata": "· n/a",
}
PANEL_STATE_LEVEL: dict[str, str] = {
    "ok": "ok",
    "warn": "warn",
    "crit": "crit",
    "nodata": "unknown",
}

SPARK_BARS = "▁▂▃▄▅▆▇█"
NO_VALUE = "—"


def is_number(value: object) -> TypeGuard[float]:
    """A finite number (not None, NaN or ±inf)."""
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def fmt_number(value: float | None) -> str:
    """A compact number: 4 significant digits, k/M/G suffixes from 10 000.

    Digits are truncated, not rounded, so 99.995 % shows as 99.99, never as 100.
    """
    if not is_number(value):
        return NO_VALUE
    magnitude = abs(value)
    if magnitude >= 1e11:
        return f"{value:.2g}"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if magnitude >= limit:
            return fmt_number(value / (limit if suffix != "k" else 1e3)) + suffix
    if magnitude == 0:
        return "0"
    if magnitude < 1e-3:
        return f"{value:.3g}"
    decimals = max(0, 4 - (math.floor(math.log10(magnitude)) + 1))
    scale = 10**decimals
    truncated = math.trunc(round(value * scale, 6)) / scale
    text = f"{truncated:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_ms(value: float | None) -> str:
    """Milliseconds for a 5-cell column: `3.4`, `182`, `12345`, `123k`."""
    if not is_number(value):
        return NO_VALUE
    if value < 10:
        return f"{max(value, 0.0):.1f}"
    if value < 99_999.5:
        return f"{value:.0f}"
    return f"{min(value / 1000, 999):.0f}k"


def fmt_pct(value: float | None) -> str:
    """Uptime: one decimal, truncated so 99.97 % never shows as 100 %."""
    if not is_number(value):
        return NO_VALUE
    if value >= 100:
        return "100%"
    return f"{math.floor(max(value, 0.0) * 10) / 10:.1f}%"


def fmt_age(seconds: float | None) -> str:
    """Time since something, at most 6 cells: `45s`, `3m05s`, `2h14m`, `3d02h`."""
    if not is_number(seconds):
        return NO_VALUE
    s = int(max(seconds, 0.0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    days = s // 86400
    if days < 100:
        return f"{days}d{s % 86400 // 3600:02d}h"
    return f"{days}d"


def sparkline(values: tuple[float, ...] | list[float], width: int) -> str:
    """The last `width` values as block characters scaled to their own min..max.

    NaN/None (gaps) become spaces; a flat series sits on the lowest bar. Exactly `width`
    cells are returned (padded on the left while history is short) so callers can cache
    and diff by string.
    """
    if width <= 0:
        return ""
    tail = list(values[-width:])
    finite = [v for v in tail if is_number(v)]
    if not finite:
        return " " * width
    low, high = min(finite), max(finite)
    span = high - low
    top = len(SPARK_BARS) - 1
    chars = []
    for v in tail:
        if not is_number(v):
            chars.append(" ")
        elif span <= 0:
            chars.append(SPARK_BARS[0])
        else:
            chars.append(SPARK_BARS[min(top, int((v - low) / span * top + 0.5))])
    return " " * (width - len(chars)) + "".join(chars)
