"""The console's vocabulary: how durations, sizes, rates, states and thresholds are written.

One module so the board, the drill-downs, the notifications and the CLI say the same thing
the same way.
"""

from __future__ import annotations


def format_duration(seconds: float, *, spaced: bool = False) -> str:
    """Short human form: 450ms, 12s, 3m05s, 2h10m, 3d4h.

    ``spaced=True`` is the Alerts screen's episode-length style, easier to read in a column:
    the second unit is set apart and always two digits (12m 03s, 2h 05m, 3d 04h).
    """
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    s = int(seconds)
    sep = " " if spaced else ""
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{sep}{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{sep}{(s % 3600) // 60:02d}m"
    hours = (s % 86400) // 3600
    return f"{s // 86400}d {hours:02d}h" if spaced else f"{s // 86400}d{hours}h"


def format_ms(ms: float) -> str:
    """A latency with its unit, to a useful precision: 0.8 ms, 182 ms, 1.57 s, 12.3 s."""
    if ms != ms:  # NaN
        return "no data"
    if abs(ms) < 10:
        return f"{ms:.1f} ms"
    if abs(ms) < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    return f"{s:.2f} s" if abs(s) < 10 else f"{s:.1f} s"


def format_size(n: float) -> str:
    """Bytes in binary units: 512 B, 1.5 KiB, 3.2 GiB."""
    if n != n:
        return "no data"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


def format_number(v: float) -> str:
    """A plain number to four significant digits (33.58, 0.25, 1200)."""
    if v != v:
        return "no data"
    return f"{v:.4g}"


# A metric's unit follows from its name (the conventions the probes and configs use).
_RATE_SUFFIXES = (("_per_s", "/s"), ("_per_min", "/min"), ("_per_h", "/h"),
                  ("_per_day", "/day"))


def format_metric(metric: str, value: float) -> str:
    """A metric's value with the unit its name implies: ``p95_ms`` 1570 → ``1.57 s``,
    ``error_pct`` 33.58 → ``33.6 %``, ``used_memory_bytes`` → ``1.2 GiB``,
    ``webhook_failures_per_s`` → ``0.5/s``; other names get a plain number."""
    if value != value:
        return "no data"
    name = metric.lower()
    if name.endswith("_ms") or name == "latency":
        return format_ms(value)
    if name.endswith("_pct") or name.endswith("_percent"):
        return f"{value:.1f} %" if abs(value) >= 0.1 or value == 0 else f"{value:.2g} %"
    for suffix, unit in _RATE_SUFFIXES:
        if name.endswith(suffix):
            base = name.removesuffix(suffix)
            if base.endswith("_bytes"):
                return format_size(value) + unit
            return format_number(value) + unit
    if name.endswith("_bytes"):
        return format_size(value)
    if name.endswith("_s") or name.endswith("_seconds"):
        return format_duration(value) if value >= 1 else format_ms(value * 1000)
    return format_number(value)


def format_window(seconds: float) -> str:
    """A rule's window as people say it: 90 s, 1 min, 5 min, 2 h, 1 d."""
    s = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    return f"{s} s"
