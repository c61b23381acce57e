"""Snapshots the engine hands to the UI and the headless commands (plain data, no Textual)."""

from __future__ import annotations

from dataclasses import dataclass

from console.engine.model import CheckResult, Status


@dataclass(frozen=True, slots=True)
class TargetView:
    """One row of the status board: everything known about a target right now."""

    name: str
    kind: str
    group: str | None
    tags: tuple[str, ...]
    address: str  # URL or DSN, redacted
    insecure: bool
    interval: float
    status: Status
    since: float | None  # epoch seconds of the last status change
    last: CheckResult | None
    latency_ms: float | None
    uptime_pct: float | None  # over the last hour
    p95_ms: float | None  # over the last 5 minutes
    spark: tuple[float, ...]  # recent latency, oldest first, NaN for gaps
    checks: int
    failures: int

    def to_json(self) -> dict[str, object]:
        base: dict[str, object] = (
            self.last.to_json()
            if self.last
            else {"name": self.name, "kind": self.kind, "status": self.status.value,
                  "latency_ms": None, "error": None, "reasons": [], "metrics": {}}
        )
        base["status"] = self.status.value
        base.update(
            group=self.group, tags=list(self.tags), address=self.address,
            insecure=self.insecure, since=self.since, uptime_pct=self.uptime_pct,
            p95_ms=self.p95_ms,
        )
        return base


@dataclass(frozen=True, slots=True)
class PanelView:
    """One metric panel: current value, recent history and its state against thresholds."""

    key: str
    title: str
    target: str
    metric: str
    unit: str
    value: float | None
    spark: tuple[float, ...]
    state: str  # "ok" | "warn" | "crit" | "nodata"
    warn: float | None
    crit: float | None
    lower_is_better: bool = True
