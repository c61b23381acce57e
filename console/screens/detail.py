"""One target in depth: latency percentiles over 5 min / 1 h / 24 h and the last responses."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Static

from console.engine.model import BREAKDOWN_KINDS, DATABASE_KINDS
from console.engine.text.fmt import format_duration, metric_unit
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleScreen
from widgets.key_footer import KeyFooter
from widgets.latency_chart import LatencyChart
from widgets.response_log import ResponseLog
from widgets.series_chart import SeriesChart

if TYPE_CHECKING:
    from console.engine.runtime import Runtime

RANGES: list[tuple[str, float]] = [("5 min", 300.0), ("1 h", 3600.0), ("24 h", 86400.0)]
CHART_POINTS = 120  # at most this many buckets per range
CHART_EVERY = 5.0  # seconds between chart redraws: plotext output is costly to repaint
REMOTE_POINTS_MAX = 1000  # a remote chart's points (its step follows from the span)


def remote_chart(metric: str, span_label: str, data: dict[str, Any]
                 ) -> tuple[list[tuple[str, Any, Any]], str]:
    """(lines, title) of a remote store's answer for `SeriesChart.show_series`: the title
    says the step, how many series there were, and any error or warning, as plain text."""
    if data.get("error"):
        return [], f"{metric} {span_label}: {one_line(data['error'], 100)}"
    series = data.get("series") or []
    lines = [(str(s["key"]), s["t"], s["v"]) for s in series]
    title = f"{metric} {span_label} · step {format_duration(float(data.get('step') or 0))}"
    total = int(data.get("total") or len(series))
    if total > 3:
        title += f" · top 3 of {total}"
    if data.get("warnings"):
        title += " · ⚠ " + one_line(data["warnings"][0], 60)
    return lines, title


def info_text(view: Any, now: float, span_label: str,
              alerts: list[str] | None = None) -> Content:
    """The header lines of the detail view, as plain content (never markup); `alerts` are
    the lines of this target's firing alerts (cause and what to do)."""
    since = f" for {format_duration(now - view.since)}" if view.since else ""
    lat = "-" if view.latency_ms is None else f"{view.latency_ms:.1f} ms"
    p95 = "-" if view.p95_ms is None else f"{view.p95_ms:.1f} ms"
    # "100.00%" as fmt_pct writes uptime: with a space the line broke between the two
    up = "-" if view.uptime_pct is None else f"{view.uptime_pct:.2f}%"
    lines = [
        f"{view.name} · {view.kind} · {one_line(view.address, 120)}"
        + ("  ⚠ INSECURE: TLS not verified" if view.insecure else ""),
        f"state {view.status.value.upper()}{since} · latency {lat} · p95 (5 min) {p95} · "
        f"uptime (1 h) {up} · every {format_duration(view.interval)} · range {span_label}",
    ]
    last = view.last
    if last is not None and (last.error or last.reasons):
        lines.append("last problem: " + one_line(last.error or "; ".join(last.reasons), 300))
    if last is not None:  # a remote store: which engine, and what it says about its answers
        engine = last.details_of("promql").get("engine")
        if engine:
            lines.append(f"answered by {one_line(engine, 60)}")
        for note in last.notes:
            lines.append("note: " + one_line(note, 300))
    for line in alerts or []:
        lines.append(one_line(line, 400))
    health = last.details_of("http").get("health") if last is not None else None
    if health is not None and health.get("components"):
        parts = [f"{one_line(str(c.get('name')), 30)} "
                 f"{c.get('status', '').upper() if c.get('failing') else c.get('status')}"
                 for c in health.get("components") or [] if isinstance(c, dict)]
        lines.append("health: " + one_line(" · ".join(parts), 300) + " (c: components)")
    return Content("\n".join(lines))


def alert_lines(alerting: Any, target: str) -> list[str]:
    """This target's firing (or acknowledged) alerts, worst first: severity, summary, cause
    and what to do, as every other view says them."""
    if alerting is None:
        return []
    from console.engine.alerting.lifecycle import AlertState

    out = []
    for a in alerting.alerts.current():
        if a.target == target and a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED):
            mark = "✖" if a.state == AlertState.FIRING else "✔ acked"
            out.append(f"{mark} {a.rule.severity} {a.text()}")
    return out


class DetailScreen(ConsoleScreen[None]):
    """Esc goes back; 1/2/3 or r switch the chart's range; m its metric; d opens a
    database's drill-down, b a Prometheus target's breakdowns."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="back"),
        Binding("1", "range(0)", "5 min", id="range_5m"),
        Binding("2", "range(1)", "1 h", id="range_1h"),
        Binding("3", "range(2)", "24 h", id="range_24h"),
        Binding("r", "next_range", "Range", id="next_range"),
        Binding("d", "database", "Database", id="database"),
        Binding("b", "breakdown", "Breakdown", id="breakdown"),
        Binding("m", "next_metric", "Metric", id="next_metric"),
        Binding("c", "components", "Components", id="components"),
    ]

    def __init__(self, target: str, metric: str | None = None) -> None:
        super().__init__()
        self.target = target
        self.metric = metric or "latency_ms"  # what the chart shows (a runbook's chart:)
        self.range_index = 0
        self._chart_at = 0.0
        self._results_seen = -1
        self.metric_index = 0  # a promql target: which of its metrics the chart shows
        self.remote: dict[str, Any] | None = None  # the store's last answer for the chart
        self._metrics: list[str] = []  # local_metrics(), as of the store's generation:
        self._metrics_gen = -1

    def compose(self) -> ComposeResult:
        yield Static("", id="alert-banner")
        yield Static(Content(self.target), id="detail-info")
        # A promql target's chart is its store's range query of one metric; the others
        # chart the console's own latency history.
        yield SeriesChart(id="chart") if self._kind() == "promql" else LatencyChart(id="chart")
        yield ResponseLog(id="responses")
        yield KeyFooter()

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
        self.query_one("#detail-info", Static).update(
            info_text(view, now, label, alert_lines(runtime.alerting, self.target)))
        mono = time.monotonic()
        if view.kind == "promql":
            span = RANGES[self.range_index][1]
            # A remote chart is asked again once a step has passed (at least CHART_EVERY).
            if mono - self._chart_at >= max(CHART_EVERY, span / REMOTE_POINTS_MAX):
                self._chart_at = mono
                self._fetch_remote(runtime, label, span, now)
        elif mono - self._chart_at >= CHART_EVERY:
            self._chart_at = mono
            # Buckets at least 1.5 intervals wide, so each holds a check: narrower ones
            # alternate with empty ones and the lines fall apart into single dots.
            points = max(2, min(CHART_POINTS, int(span / (1.5 * view.interval))))
            hist = engine.store.history(f"{self.target}:{self.metric}", span, points, now=now)
            unit = metric_unit(self.metric)
            title = "latency ms" if self.metric == "latency_ms" else (
                f"{self.metric} {unit}" if unit else self.metric)
            # Another metric's buckets of a sample or two: one line (p50/p95/p99 of one or
            # two samples are that line three times); latency keeps its percentiles.
            single = self.metric != "latency_ms" and span / points <= 2 * view.interval
            self.query_one(LatencyChart).show_history(hist, label, title, single=single)
        self._show_deploys(runtime, view, span, now)
        if view.checks != self._results_seen:
            self._results_seen = view.checks
            self.query_one(ResponseLog).show_results(engine.results(self.target))

    def _show_deploys(self, runtime: Runtime, view: Any, span: float, now: float) -> None:
        """This service's deploys in the chart's span, as markers (labelled by version)."""
        services = [self.target] + ([view.group] if view.group else [])
        deploys = runtime.deploys(now - span, now, services)
        markers = [(float(e["ts"]), str(e.get("version") or e.get("kind") or "deploy"))
                   for e in deploys]
        for chart in self.query(LatencyChart):  # SeriesChart is one too
            chart.show_markers(markers)

    def metrics(self) -> list[str]:
        engine = self.console.scheduler
        try:
            target = engine.settings.target(self.target) if engine else None
        except KeyError:
            return []
        return list(getattr(target, "metrics", {}) or {})

    def _fetch_remote(self, runtime: Runtime, label: str, span: float, now: float) -> None:
        """Ask the target's store for the chart (query_range, one point per braille dot of
        the chart's width) in a worker: a slow store never holds up the screen."""
        names = self.metrics()
        if not names:
            return
        metric = names[self.metric_index % len(names)]
        charts = self.query(SeriesChart)
        if not charts:  # the target became a promql one after this screen opened
            return
        chart = charts.first()
        points = max(2, min(REMOTE_POINTS_MAX, 2 * max(chart.size.width - 8, 20)))

        async def fetch() -> None:
            data = await runtime.scheduler.remote_history(self.target, metric, span, points,
                                                         now)
            if data is None or not self.is_mounted:
                return
            self.remote = {"metric": metric, **data}
            for chart in self.query(SeriesChart):
                chart.show_series(*remote_chart(metric, label, data))

        self.run_worker(fetch(), group="remote-chart", exclusive=True, exit_on_error=False)

    def local_metrics(self) -> list[str]:
        """The series this console records for the target (latency first): what `m` cycles
        the chart through, for a target whose history is the console's own."""
        engine = self.console.scheduler
        if engine is None:
            return []
        store = engine.store
        if self._metrics_gen != store.generation:
            prefix = f"{self.target}:"
            names = [s[len(prefix):] for s in store.series() if s.startswith(prefix)]
            self._metrics = sorted(names, key=lambda m: m != "latency_ms")  # stable
            self._metrics_gen = store.generation
        return self._metrics

    def action_next_metric(self) -> None:
        """`m`: the chart's next metric (a promql target's, or the series this console
        records for the target: the walk found a panel's chart and no way to another)."""
        if self._kind() == "promql":
            self.metric_index += 1
        else:
            names = self.local_metrics()
            if not names:
                return
            at = names.index(self.metric) if self.metric in names else -1
            self.metric = names[(at + 1) % len(names)]
        self._chart_at = 0.0
        self.console.refresh_screen()

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
            return self._kind() in DATABASE_KINDS
        if action == "breakdown":  # per-endpoint / per-status tables of a metrics endpoint
            return self._kind() in BREAKDOWN_KINDS
        if action == "next_metric":  # the chart shows one metric at a time
            return self._kind() == "promql" or len(self.local_metrics()) > 1
        if action == "components":  # a health body's components
            return self._kind() == "http"
        return True

    def action_components(self) -> None:
        """The health body's components (terminus, Spring, IETF): status and message."""
        from console.screens.health import HealthScreen

        if self._kind() == "http":
            self.app.push_screen(HealthScreen(self.target))

    def action_database(self) -> None:
        """A PostgreSQL target's sessions, locks, statements, tables and indexes; a Redis
        target's keyspace, slowlog, replication and persistence."""
        from console.screens.database import DatabaseScreen

        kind = self._kind()
        if kind in DATABASE_KINDS:
            self.app.push_screen(DatabaseScreen(self.target, kind))

    def action_breakdown(self) -> None:
        """A Prometheus target's per-endpoint and per-status-class tables."""
        from console.screens.breakdown import BreakdownScreen

        if self._kind() in BREAKDOWN_KINDS:
            self.app.push_screen(BreakdownScreen(self.target))

    def action_next_range(self) -> None:
        self.action_range((self.range_index + 1) % len(RANGES))
