"""Immutable results that flow from probes to the store, the UI and the headless commands."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, TypedDict

# The playbook's severities, most urgent first.
Severity = Literal["P0", "P1", "P2", "P3"]
SEVERITIES: tuple[Severity, ...] = ("P0", "P1", "P2", "P3")


class AlertEpisode(TypedDict, total=False):
    """One firing episode of one alert, as the alert history keeps it and every reader gets
    it: the Alerts screen, `alerts --history`, the incident timeline, KPIs, post-mortems,
    the daily summary and the shared state. Written as JSON, so every field is optional to
    a reader of an older file."""

    type: Literal["episode"]
    key: str  # "<rule>/<target>/<incident number>"
    rule: str
    target: str
    severity: Severity
    summary: str
    incident: int
    fired_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    duration_s: float
    ongoing: bool
    peak: float | None
    flapping: bool
    silenced_by: str | None
    detect_s: float | None
    first_fail_at: float | None
    labels: dict[str, str]
    cause: str
    metric: str


# What a target can be; `console.engine.config.schema.TARGET_KINDS` maps each to its schema.
TargetKind = Literal["http", "postgres", "redis", "prometheus", "promql", "log", "host",
                     "heartbeat", "lighthouse"]


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


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """What came back over the network, already sanitised and truncated for display."""

    status_code: int | None = None
    reason: str = ""
    http_version: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body_excerpt: str = ""
    body_bytes: int = 0
    truncated: bool = False
    final_url: str = ""
    redirects: int = 0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one target.

    `error` and every text field are sanitised (no control characters) and redacted (no
    secrets), so any consumer may show them; they are still plain text, never markup.
    `reasons` lists why a target is degraded or down (failed conditions), for the detail view.
    """

    target: str
    kind: str
    status: Status
    started_at: float  # wall-clock epoch seconds
    latency_ms: float | None
    error: str | None = None
    reasons: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    response: ResponseInfo | None = None
    # Structured drill-down data (e.g. a database's sessions, top statements, tables): plain
    # JSON types only, text already sanitised and redacted. Shown by the UI and `check --json`.
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.target,
            "kind": self.kind,
            "status": self.status.value,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "error": self.error,
            "reasons": list(self.reasons),
            "checked_at": self.started_at,
            "metrics": self.metrics,
            **({"details": self.details} if self.details else {}),
        }
