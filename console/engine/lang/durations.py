"""Parse human durations ("500ms", "5s", "2m", "1h") and sizes ("1MB") used in config and CLI.

Their formatting, like every other piece of the console's vocabulary, is in
`console.engine.text.fmt`.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DUR_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_FACTOR = {
    None: 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}


def parse_duration(value: str | int | float) -> float:
    """Seconds from a number (seconds) or a string with a unit; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s, 500ms or 2m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration; write e.g. 5s, 500ms, 2m or 1h")
    return float(m.group(1)) * _DUR_FACTOR[m.group(2)]


def parse_size(value: str | int) -> int:
    """Bytes from a number or a string such as 1MB or 512KiB; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1MB")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size; write e.g. 1MB or 512KiB")
    unit = m.group(2).lower() if m.group(2) else None
    return int(float(m.group(1)) * _SIZE_FACTOR[unit])
