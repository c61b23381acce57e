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


NO_VALUE = "—"


def format_age(seconds: float | None) -> str:
    """An age or elapsed time; None (SQL NULL, never measured) is "no value", and a negative
    one (clock skew between a server and us) is shown as 0, never as "-0.0"."""
    if seconds is None or seconds != seconds:
        return NO_VALUE
    return format_duration(max(0.0, float(seconds)))


def format_bytes(value: float | None, *, signed: bool = False) -> str:
    """Bytes in binary units (1.5 MiB), as PostgreSQL's pg_size_pretty and Redis's INFO
    count them; `signed` puts + or − in front (growth)."""
    if value is None or value != value:
        return NO_VALUE
    sign = ("−" if value < 0 else "+") if signed else ("−" if value < 0 else "")
    size = abs(float(value))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{sign}{size:.0f} {unit}" if unit == "B" else f"{sign}{size:.1f} {unit}"
        size /= 1024
    return f"{sign}{size:.1f} TiB"  # pragma: no cover (the loop returns)
