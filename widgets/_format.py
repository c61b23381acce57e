"""The widgets' own rendering helper: sparklines in block characters.

Every other piece of formatting (numbers, durations, sizes, state glyphs, thresholds) is
the console's one vocabulary, `console.engine.text.fmt`.
"""

from __future__ import annotations

from console.engine.text.fmt import is_number

SPARK_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: tuple[float, ...] | list[float], width: int,
              marks: tuple[float | None, ...] = ()) -> str:
    """The last `width` values as block characters scaled to their own min..max, widened
    to take in `marks` (the panel's target): healthy noise far below it stays low. Scaled
    to their own range alone, an error rate's 0.25 % blips under its target were drawn
    full height and read as an outage.

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
    for mark in marks:
        if mark is not None and is_number(mark):
            low, high = min(low, mark), max(high, mark)
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
