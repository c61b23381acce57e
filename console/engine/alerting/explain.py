"""Why an alert fires, in the words of what the probe saw: the cause line every view shares.

A rule says *that* something is wrong (`down`, `error_pct > 5`); the operator needs *what*:
the failing conditions with their actual values, the health body's failing components and
their messages (``redis: down — connect ECONNREFUSED 10.0.3.7:6379``), the driver's error for
a database, the log messages that matched, the worst endpoints of a Prometheus breakdown.
`cause_of` builds that line from the rule, its evaluation and the target's latest check
result; the board, the detail view, the alerts screen, ``alerts --json`` and every
notification show the same text. Everything it reads is already sanitised and redacted
(`CheckResult`'s promise); the result is one line.
"""

from __future__ import annotations

from console.engine.lang.ruleexpr import Expr, compare, parse_expr
from console.engine.model import AlertEpisode, CheckResult
from console.engine.text.fmt import format_metric, format_target
from console.engine.text.sanitize import one_line

__all__ = ["COMPONENT_METRICS", "cause_of", "describe_value", "episode_peak"]

MAX_CAUSE = 300
COMPONENT_METRICS = {
    "components_down": None,  # any failing component
    "core_components_down": True,
    "other_components_down": False,
}
_LOG_ERROR_METRICS = ("errors_total", "errors_per_s", "error_pct")
_OP_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below",
             "==": "equal to", "!=": "not"}


def _show(expr: Expr, v: float) -> str:
    """A value of `expr`'s quantity, with its unit where the metric's name implies one."""
    if expr.fn == "increase":
        # a count, extrapolated over the window as Prometheus does: "+95.67 in 1 min" read
        # as a fraction of an error; whole numbers from 10 on
        return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2g}"
    if expr.fn in ("rate", "count", "ratio"):
        return f"{v:.4g}"
    return format_metric(expr.metric, v)


def episode_peak(ep: AlertEpisode, *, phrase: bool = False, threshold: bool = False) -> str:
    """An episode's worst value in its rule's own terms: ``+3866`` / ``33.6 %`` for a list,
    with `phrase` as its cause says it (``errors_total +3866 in 1 min``; with `threshold`,
    ``…, above 10``). A bare number read as another figure: "peak 5.3678" of a percentage,
    "errors_total 3866" (an increase) beside a snapshot's counter 8396. "" when it has none;
    a record without its rule's condition (an older history) gets the number, with the
    unit its metric implies (and "" when a threshold was asked for: it has none to say)."""
    peak = ep.get("peak")
    if not isinstance(peak, int | float):
        return ""
    metric = ep.get("metric")
    metric = metric if isinstance(metric, str) else ""
    text = ep.get("expr")
    if isinstance(text, str):
        try:
            expr = parse_expr(text)
        except ValueError:
            pass
        else:
            if phrase:
                return describe_value(expr, float(peak), threshold=threshold)
            shown = _show(expr, float(peak))
            return f"+{shown}" if expr.fn == "increase" and peak >= 0 else shown
    if threshold:
        return ""
    shown = format_metric(metric, float(peak)) if metric else f"{peak:g}"
    return f"{metric} {shown}" if phrase and metric else shown


def describe_value(expr: Expr, value: float | None, *, threshold: bool = True) -> str:
    """``p95_ms 2.41 s, above 2.00 s``, ``errors_total +426 in 1 min, above 10``: the rule's
    quantity, with units, against its threshold (without it: `threshold` False)."""
    m, fn = expr.metric, expr.fn
    if fn == "absent":
        return f"no {m} sample for {expr.intervals} intervals"
    span = format_target(expr.window or 0)

    def show(v: float) -> str:
        return _show(expr, v)

    v = "no data" if value is None else show(value)
    what = {
        "latest": f"{m} {v}",
        "mean": f"{m} averaging {v} over {span}",
        "max": f"{m} peaking at {v} over {span}",
        "min": f"{m} as low as {v} over {span}",
        "sum": f"{m} summing to {v} over {span}",
        "rate": f"{m} rising {v}/s over {span}",
        "increase": f"{m} +{v} in {span}",
        "quantile": f"p{(expr.q or 0) * 100:g} of {m} {v} over {span}",
        "count": f"{v} samples of {m} {expr.match_op} {expr.match_value or 0:g} in {span}",
        "ratio": f"{m}/{expr.metric2} {v}",
    }.get(fn, f"{m} {v}")
    if not threshold:
        return what
    return f"{what}, {_OP_WORDS.get(expr.op, expr.op)} {show(expr.threshold)}"


def _window_lags(expr: Expr, result: CheckResult) -> str:
    """``now 0/s, within the threshold: the 1 min figure lags`` when the newest sample is
    back on the good side of a windowed mean/max/min that still fails: a walk saw a P0 fire
    15 s after its fault cleared ("averaging 1.833/s over 1 min, above 0/s") with nothing
    to tell a figure still catching up from a fault still there."""
    if expr.fn not in ("mean", "max", "min") or not expr.window:
        return ""
    now = result.metrics.get(expr.metric)
    if not isinstance(now, int | float) or now != now:  # absent or NaN
        return ""
    if compare(now * expr.scale, expr.op, expr.threshold):
        return ""  # the newest sample fails too: nothing is lagging
    return (f"now {format_metric(expr.metric, now)}, within the threshold: the "
            f"{format_target(expr.window)} figure lags")


def _probe_said(result: CheckResult) -> str:
    if result.error:
        return result.error
    return "; ".join(result.reasons)


def _components(result: CheckResult, core: bool | None) -> str:
    health = result.details_of("http").get("health")
    if health is None:
        return ""
    parts = []
    for c in health.get("components") or []:
        if not c.get("failing"):
            continue
        if core is not None and c.get("core", True) != core:
            continue
        text = f"{c.get('name')}: {c.get('status', '').lower()}"
        if c.get("message"):
            text += f" — {c.get('message')}"
        parts.append(text)
    return "; ".join(parts)


def _breakdown_worst(result: CheckResult, column: str, unit: str) -> str:
    """The two worst groups of a per-endpoint table by `column` (error_pct, p95_ms)."""
    tables = result.breakdowns
    if not tables:
        return ""
    for table in tables.values():
        if "status_class" in (table.get("by") or []):
            continue
        rows = [r for r in table.get("rows") or []
                if isinstance(r.get(column), int | float) and (r.get("rate_per_s") or 0) > 0]
        if not rows:
            continue
        rows.sort(key=lambda r: -float(r[column]))
        by = [str(b) for b in table.get("by") or []]
        shown = []
        for r in rows[:2]:
            label = " ".join(str(r.get(b, "")) for b in by)
            shown.append(f"{label} {format_metric(unit, float(r[column]))}")
        return "worst: " + ", ".join(shown)
    return ""


def _log_messages(result: CheckResult, metric: str) -> str:
    if metric == "new_error_kinds_total":
        new = result.details_of("log").get("new_errors")
        if new:
            return "first seen: " + ", ".join(f'"{one_line(str(m), 80)}"' for m in new[:2])
        return ""
    recent = result.details_of("log").get("recent_errors")
    if not recent:
        return ""
    parts = []
    for r in recent[:3]:
        n = r.get("count", 1)
        parts.append(f'"{one_line(str(r.get("message", "")), 60)}"'
                     + (f" ×{n}" if n > 1 else ""))
    return "errors: " + ", ".join(parts) if parts else ""


def cause_of(expr: Expr, value: float | None, result: CheckResult | None,
             detail: str = "") -> str:
    """The cause of a failing evaluation, as one line; `detail` (the rule's own) if the
    probe said nothing more."""
    metric = expr.metric
    parts: list[str] = []
    if expr.fn == "absent":
        parts.append(detail or describe_value(expr, value))
    elif metric == "up" or (metric == "status" and result is not None):
        said = _probe_said(result) if result is not None else ""
        parts.append(said or detail)
    elif metric in COMPONENT_METRICS:
        said = _components(result, COMPONENT_METRICS[metric]) if result is not None else ""
        parts.append(said or detail)
    else:
        parts.append(describe_value(expr, value))
        if result is not None and (lag := _window_lags(expr, result)):
            parts.append(lag)
        if result is not None:
            extra = ""
            if result.kind == "log" and (metric in _LOG_ERROR_METRICS
                                         or metric == "new_error_kinds_total"):
                extra = _log_messages(result, metric)
            elif "error" in metric and metric.endswith("_pct"):
                extra = _breakdown_worst(result, "error_pct", "error_pct")
            elif metric.startswith("p") and metric.endswith("_ms") and metric[1:3].isdigit():
                extra = _breakdown_worst(result, metric, metric)
            elif result.kind in ("postgres", "redis") and result.error:
                extra = result.error
            if extra:
                parts.append(extra)
    return one_line("; ".join(p for p in parts if p), MAX_CAUSE)
