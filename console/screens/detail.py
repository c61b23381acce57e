"""One target in depth: latency percentiles over 5 min / 1 h / 24 h and the last responses."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Footer, Static

from console.engine.text.fmt import format_duration
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleScreen
from widgets.latency_chart import LatencyChart
from widgets.response_log import ResponseLog

if TYPE_CHECKING:
    from console.engine.runtime import Runtime

RANGES: list[tuple[str, float]] = [("5 min", 300.0), ("1 h", 3600.0), ("24 h", 86400.0)]
CHART_POINTS = 120  # at most this many buckets per range
CHART_EVERY = 5.0  # seconds between chart redraws: plotext output is costly to repaint


def info_text(view: Any, now: float, span_label: str) -> Content:
    """The header lines of the detail view, as plain content (never markup)."""
    since = f" for {format_duration(now - view.since)}" if view.since else ""
    lat = "-" if view.latency_ms is None else f"{view.latency_ms:.1f} ms"
    p95 = "-" if view.p95_ms is None else f"{view.p95_ms:.1f} ms"
    up = "-" if view.uptime_pct is None else f"{view.uptime_pct:.2f} %"
    lines = [
        f"{view.name} · {view.kind} · {one_line(view.address, 120)}"
        + ("  ⚠ INSECURE: TLS not verified" if view.insecure else ""),
        f"state {view.status.value.upper()}{since} · latency {lat} · p95 (5 min) {p95} · "
        f"uptime (1 h) {up} · every {format_duration(view.interval)} · range {span_label}",
    ]
    last = view.last
    if last is not None and (last.error or last.reasons):
        lines.append("last problem: " + one_line(last.error or "; ".join(last.reasons), 300))
    return Content("\n".join(lines))


class DetailScreen(ConsoleScreen[None]):
    """Esc goes back; 1/2/3 or r switch the chart's range; d opens a database's drill-down,
    b a Prometheus target's breakdowns."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("1", "range(0)", "5 min", id="range_5m"),
        Binding("2", "range(1)", "1 h", id="range_1h"),
        Binding("3", "range(2)", "24 h", id="range_24h"),
        Binding("r", "next_range", "Range", id="next_range"),
        Binding("d", "database", "Database", id="database"),
        Binding("b", "breakdown", "Breakdown", id="breakdown"),
    ]

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.range_index = 0
        self._chart_at = 0.0
        self._results_seen = -1

    def compose(self) -> ComposeResult:
        yield Static("", id="alert-banner")
        yield Static(Content(self.target), id="detail-info")
        yield LatencyChart(id="chart")
        yield ResponseLog(id="responses")
        yield Footer()

    def on_mount(self) -> None:
        # After the first layout: the chart picks its time ticks from its drawn width, and
        # before layout that width is 0 (a 5 min chart got one tick until the next redraw).
        self.call_after_refresh(self.console.refresh_screen)
        self.query_one(ResponseLog).focus()

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        engine = runtime.scheduler
        found = engine.view(self.target, now)  # this target's row alone, exact
        views = [found] if found is not None else []
        if not views:
            self.query_one("#detail-info", Static).update(
                Content(f"{self.target}: no longer in the config")
            )
            return
        view = views[0]
        label, span = RANGES[self.range_index]
        self.query_one("#detail-info", Static).update(info_text(view, now, label))
        mono = time.monotonic()
        if mono - self._chart_at >= CHART_EVERY:
            self._chart_at = mono
            # Buckets at least 1.5 intervals wide, so each holds a check: narrower ones
            # alternate with empty ones and the lines fall apart into single dots.
            points = max(2, min(CHART_POINTS, int(span / (1.5 * view.interval))))
            hist = engine.store.history(f"{self.target}:latency_ms", span, points, now=now)
            self.query_one(LatencyChart).show_history(hist, label)
        if view.checks != self._results_seen:
            self._results_seen = view.checks
            self.query_one(ResponseLog).show_results(engine.results(self.target))

    def action_range(self, index: int) -> None:
        self.range_index = index
        self._chart_at = 0.0
        self.console.refresh_screen()

    def _kind(self) -> str | None:
        engine = self.console.scheduler
        try:
            return str(engine.settings.target(self.target).kind) if engine else None
        except KeyError:
            return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "database":  # only PostgreSQL and Redis targets have a drill-down
            return self._kind() in ("postgres", "redis")
        if action == "breakdown":  # per-endpoint / per-status tables of a metrics endpoint
            return self._kind() == "prometheus"
        return True

    def action_database(self) -> None:
        """A PostgreSQL target's sessions, locks, statements, tables and indexes; a Redis
        target's keyspace, slowlog, replication and persistence."""
        from console.screens.database import DatabaseScreen

        kind = self._kind()
        if kind in ("postgres", "redis"):
            self.app.push_screen(DatabaseScreen(self.target, kind))

    def action_breakdown(self) -> None:
        """A Prometheus target's per-endpoint and per-status-class tables."""
        from console.screens.breakdown import BreakdownScreen

        if self._kind() == "prometheus":
            self.app.push_screen(BreakdownScreen(self.target))

    def action_next_range(self) -> None:
        self.action_range((self.range_index + 1) % len(RANGES))
