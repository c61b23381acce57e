"""Presentational widgets: plain data in, user intent out as messages; no I/O.

Imported lazily (`from widgets import PanelGrid` loads only panel_grid), so a screen that
needs no chart does not pay for importing plotext and numpy at start-up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .key_footer import KeyFooter
    from .key_help import KeyHelp, rows_from_bindings
    from .latency_chart import LatencyChart
    from .panel_grid import PanelGrid
    from .response_log import ResponseLog
    from .series_chart import SeriesChart
    from .status_board import StatusBoard

_WHERE = {
    "KeyFooter": "key_footer",
    "KeyHelp": "key_help",
    "rows_from_bindings": "key_help",
    "LatencyChart": "latency_chart",
    "PanelGrid": "panel_grid",
    "ResponseLog": "response_log",
    "SeriesChart": "series_chart",
    "StatusBoard": "status_board",
}

__all__ = [
    "KeyFooter",
    "KeyHelp",
    "LatencyChart",
    "PanelGrid",
    "ResponseLog",
    "SeriesChart",
    "StatusBoard",
    "rows_from_bindings",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
