"""The console's vocabulary: how durations, sizes, numbers, states and thresholds are written.

One module so the board, the drill-downs, the notifications, the post-mortem and the CLI say
the same thing the same way. Every function is total: None, NaN and infinities become
`NO_VALUE`, never an exception or "nan". Sizes are SI (1 MB = 1,000,000 bytes), as the
playbook, node_exporter and most dashboards write them.
"""

from __future__ import annotations

import math
from typing import TypeGuard

from console.engine.status import Status

NO_VALUE = "—"

# -- numbers -----------------------------------------------------------------------------------


def is_number(value: object) -> TypeGuard[float]:
    """A finite number (not None, NaN or ±inf, not a bool)."""
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


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


def fmt_count(value: float | None, digits: int = 0) -> str:
    """A count or measure with thousands separators: `12,345`, `1,234.5`."""
    if not is_number(value):
        return NO_VALUE
    return f"{value:,.{digits}f}"


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


# -- sizes -------------------------------------------------------------------------------------

_SI = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def format_bytes(value: float | None) -> str:
    """`512 B`, `10 kB`, `161.7 MB`, `2.3 GB`: SI units, one decimal unless it is zero."""
    if not is_number(value):
        return NO_VALUE
    for unit, factor in _SI:
        if abs(value) >= factor:
            return f"{value / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{value:.0f} B"


def format_value(value: float | None, unit: str) -> str:
    """A panel's value with its unit: bytes in SI units, `%` unspaced; a missing value keeps
    its unit (`— ms`), so the panel still says what it measures."""
    if is_number(value) and unit in ("B", "bytes"):
        return format_bytes(value)
    if is_number(value) and unit in ("B/s", "bytes/s"):
        return f"{format_bytes(value)}/s"
    number = fmt_number(value)
    if not unit:
        return number
    return f"{number}{unit}" if unit == "%" else f"{number} {unit}"


# -- durations ---------------------------------------------------------------------------------


def format_duration(seconds: float | None, *, spaced: bool = False) -> str:
    """A span of time: `450ms`, `1.5s`, `12s`, `3m05s`, `2h10m`, `3d04h`.

    ``spaced=True`` sets the second unit apart (`12m 03s`, `2h 05m`, `3d 04h`), easier to read
    in a column of episode lengths. Below ten seconds a fraction is kept (a 1.5 s timeout is
    not a 1 s one); sub-second spans are in milliseconds.
    """
    if not is_number(seconds):
        return NO_VALUE
    if seconds < 0:
        return "-" + format_duration(-seconds, spaced=spaced)
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    return _clock_span(int(seconds), " " if spaced else "")


def format_age(seconds: float | None) -> str:
    """Time since something, whole seconds, never negative (a clock step shows as 0s):
    `45s`, `3m05s`, `2h14m`, `3d02h`, `123d` — at most 6 cells."""
    if not is_number(seconds):
        return NO_VALUE
    s = int(max(seconds, 0.0))
    if s >= 100 * 86400:
        return f"{s // 86400}d"
    return _clock_span(s, "")


def _clock_span(s: int, sep: str) -> str:
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{sep}{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{sep}{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{sep}{(s % 86400) // 3600:02d}h"


def format_target(seconds: float) -> str:
    """A time target as the playbook writes it: `90 s`, `5 min`, `2 h`."""
    s = round(seconds)
    if s % 3600 == 0 and s >= 3600:
        return f"{s // 3600} h"
    if s % 60 == 0 and s >= 60:
        return f"{s // 60} min"
    return f"{s} s"


# -- states ------------------------------------------------------------------------------------

# Glyph AND word, so a state reads on a monochrome terminal and under NO_COLOR.
STATUS_GLYPH: dict[str, str] = {"up": "●", "degraded": "▲", "down": "✖", "unknown": "…"}
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
PANEL_GLYPH: dict[str, str] = {"ok": "✓", "warn": "!", "crit": "✖", "nodata": "·"}
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
ALERT_GLYPH: dict[str, str] = {
    "firing": "✖", "acknowledged": "✔", "pending": "◌", "nodata": "?", "resolved": "✔",
    "inactive": " ",
}
EPISODE_GLYPH = {True: "●", False: "✔"}  # ongoing, resolved
CHECK_GLYPH: dict[bool | None, str] = {True: "✔", False: "✖", None: "·"}  # met a target?
INCIDENT_GLYPH = "⚑"


def status_glyph(status: str) -> str:
    return STATUS_GLYPH.get(status, "?")


# -- thresholds --------------------------------------------------------------------------------


def threshold_text(warn: float | None, crit: float | None, lower_is_better: bool, *,
                   with_crit: bool = True) -> str:
    """What a panel is judged against: `< 200 (crit ≥ 2000)`, or `> 99 (crit ≤ 95)` when
    higher is better; `with_crit=False` gives the target alone (`< 200`), for narrow
    panels. Both forms come from here so the TUI and `opsconsole panels` agree."""
    good, bad = ("<", "≥") if lower_is_better else (">", "≤")
    parts = []
    if is_number(warn):
        parts.append(f"{good} {fmt_number(warn)}")
    if is_number(crit) and (with_crit or not parts):
        text = f"crit {bad} {fmt_number(crit)}" if with_crit else f"{good} {fmt_number(crit)}"
        parts.append(f"({text})" if parts else text)
    return " ".join(parts)


# -- a metric's value, by its name ---------------------------------------------------------


def format_ms(ms: float | None) -> str:
    """A latency with its unit, to a useful precision: `0.8 ms`, `182 ms`, `1.57 s`."""
    if not is_number(ms):
        return NO_VALUE
    if abs(ms) < 10:
        return f"{ms:.1f} ms"
    if abs(ms) < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    return f"{s:.2f} s" if abs(s) < 10 else f"{s:.1f} s"


# A metric's unit follows from its name (the conventions the probes and configs use).
_RATE_SUFFIXES = (("_per_s", "/s"), ("_per_min", "/min"), ("_per_h", "/h"),
                  ("_per_day", "/day"))


def metric_unit(metric: str) -> str:
    """The unit a metric's name implies, for a chart's axis: ``error_pct`` → `%`,
    ``webhook_failures_per_s`` → `/s`, ``p95_ms`` → `ms`; "" when the name implies none."""
    name = metric.lower()
    for suffix, unit in (("_ms", "ms"), ("_pct", "%"), ("_percent", "%"), *_RATE_SUFFIXES,
                         ("_bytes", "bytes"), ("_seconds", "s"), ("_s", "s")):
        if name.endswith(suffix):
            return unit
    return ""


def format_metric(metric: str, value: float | None) -> str:
    """A metric's value with the unit its name implies, for alert causes, snapshots and the
    post-mortem: ``p95_ms`` 1570 → `1.57 s`, ``error_pct`` 33.58 → `33.6 %`,
    ``used_memory_bytes`` → `1.2 GB`, ``webhook_failures_per_s`` 0.5 → `0.5/s`; other
    names get a plain number."""
    if not is_number(value):
        return NO_VALUE
    name = metric.lower()
    if name.endswith("_ms"):
        return format_ms(value)
    if name.endswith(("_pct", "_percent")):
        return f"{value:.1f} %" if abs(value) >= 0.1 or value == 0 else f"{value:.2g} %"
    for suffix, unit in _RATE_SUFFIXES:
        if name.endswith(suffix):
            if name.removesuffix(suffix).endswith("_bytes"):
                return format_bytes(value) + unit
            return fmt_number(value) + unit
    if name.endswith("_bytes"):
        return format_bytes(value)
    if name.endswith(("_s", "_seconds")):
        return format_duration(value) if value >= 1 else format_ms(value * 1000)
    return fmt_number(value)


# -- messages to people ------------------------------------------------------------------------


def format_percent(value: float | None, decimals: int = 1) -> str:
    """`99.950 %` with the decimals asked for (an uptime against 99.9 % needs three), or
    `NO_VALUE` where there was nothing to measure."""
    if not is_number(value):
        return NO_VALUE
    return f"{value:.{decimals}f} %"


def format_utc(t: float, *, seconds: bool = False) -> str:
    """`2026-11-27 10:00 UTC`: a moment in messages read by people in several time zones."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC",
                         time.gmtime(t))
