"""Recent deploys next to a metric: the High-error-rate runbook's "recent deploy?".

The runbook link ``deploys:error_pct?window=1h`` opens it: the metric's chart over the window
with each deploy of the target's service marked on it, and one row per deploy with the
metric's mean over the 5 minutes before and after it, so a deploy that moved the error rate
stands out. Event texts are plain content (they came from a pipeline or a webhook).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.engine.text.fmt import format_duration, format_metric, format_utc
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleScreen
from widgets.key_footer import KeyFooter
from widgets.latency_chart import LatencyChart

if TYPE_CHECKING:
    from console.engine.runtime import Runtime

AROUND = 300.0  # the metric's mean this long before and after a deploy


def deploy_rows(deploys: list[dict[str, Any]], mean: Any, metric: str, now: float) -> list[str]:
    """One line per deploy, newest first: when, the metric before → after (`mean(at, span)`:
    its mean over (at - span, at]), what, by whom."""
    rows = []
    for e in sorted(deploys, key=lambda e: float(e["ts"]), reverse=True):
        ts = float(e["ts"])
        before = mean(ts, AROUND)  # (ts - 5 min, ts]
        end = min(ts + AROUND, now)
        after = mean(end, max(end - ts, 1.0))  # (ts, ts + 5 min]: from just after it
        what = " ".join(one_line(str(x), 40) for x in (e.get("kind"), e.get("service"),
                                                        e.get("version")) if x)
        rows.append(one_line(
            f"{format_utc(ts)} ({format_duration(now - ts)} ago) · {metric} "
            f"{format_metric(metric, before)} → {format_metric(metric, after)} · {what}: "
            f"{e.get('text', '')} · by {e.get('actor', '?')}", 400))
    return rows


class DeploysScreen(ConsoleScreen[None]):
    """Esc goes back; follows new deploys and samples."""

    DEFAULT_CSS = """
    DeploysScreen #deploys-head { height: auto; padding: 0 1; }
    DeploysScreen #deploys-chart { height: 1fr; }
    DeploysScreen #deploys-list { height: auto; max-height: 12; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="deploys_back")]

    def __init__(self, target: str, metric: str = "error_pct", window: float = 3600.0) -> None:
        super().__init__()
        self.target = target
        self.metric = metric
        self.window = window
        self._key: object = None

    def compose(self) -> ComposeResult:
        yield Static("", id="alert-banner")
        yield Static(Content(f"deploys · {self.target} {self.metric}"), id="deploys-head")
        yield LatencyChart(id="deploys-chart")
        yield OptionList(id="deploys-list")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.call_after_refresh(self.console.refresh_screen)

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        engine = runtime.scheduler
        store = engine.store
        series = f"{self.target}:{self.metric}"
        try:
            group = engine.settings.target(self.target).group
        except KeyError:
            group = None
        services = [self.target] + ([group] if group else [])
        deploys = runtime.deploys(now - self.window, now, services)
        latest = store.latest(series)
        key = (len(deploys), latest, int(now // 5))
        if key == self._key:
            return
        self._key = key

        def mean(at: float, span: float) -> float | None:
            """The metric's mean over (at - span, at]."""
            return store.mean(series, span, now=at)

        span = format_duration(self.window)
        current = format_metric(self.metric, latest[1]) if latest else "no data"
        head = (f"{len(deploys)} deploy{'s' if len(deploys) != 1 else ''} in the last {span}"
                f" · {self.target} {self.metric} now {current}")
        if not deploys:
            head += " · no recent deploy: look elsewhere (errors by message, dependencies)"
        self.query_one("#deploys-head", Static).update(Content(head))
        hist = store.history(series, self.window, 120, now=now)
        chart = self.query_one(LatencyChart)
        chart.show_markers([(float(e["ts"]), str(e.get("version") or e.get("kind")))
                            for e in deploys])
        # Did a deploy move the metric? One line (each bucket's median) beside the markers
        # reads that; latency keeps its percentiles. The walk read a p50/p95/p99 legend
        # over error_pct here and took it for a mislabelled chart.
        single = self.metric != "latency_ms"
        chart.show_history(hist, f"last {span}", self.metric, single=single)
        ol = self.query_one(OptionList)
        ol.clear_options()
        rows = deploy_rows(deploys, mean, self.metric, now)
        ol.add_options([Option(Content(r)) for r in rows]
                       or [Option(Content(f"no deploy of {', '.join(services)} recorded "
                                          f"(opsconsole event TEXT --kind deploy)"),
                                  disabled=True)])
