"""A target's state: the one engine type the first frame's widgets need.

Kept apart from `console.engine.model` (which re-exports it) so the status board and the
overview can be imported for the first frame without the model's dataclasses and their
details (~5 ms of an 80x24 first frame, bench_startup).
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """A target's state; ordered from best to worst by `rank`."""

    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"  # no result yet

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def value_for_uptime(self) -> float:
        """1 for up, 0.5 for degraded (answering), 0 for down; NaN would mean no data."""
        return {Status.UP: 1.0, Status.DEGRADED: 1.0, Status.DOWN: 0.0}.get(self, float("nan"))


_RANK = {Status.UP: 0, Status.DEGRADED: 1, Status.DOWN: 2, Status.UNKNOWN: 3}
