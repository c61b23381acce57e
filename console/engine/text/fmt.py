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


def format_percent(value: float | None, decimals: int = 1) -> str:
    """`99.95 %`, or `-` where there was nothing to measure (None)."""
    return "-" if value is None else f"{value:.{decimals}f} %"


def format_utc(t: float, *, seconds: bool = False) -> str:
    """`2026-11-27 10:00 UTC`: a moment in messages read by people in several time zones."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC",
                         time.gmtime(t))
