"""Per-label breakdowns of request counters between two scrapes: per endpoint, per status class.

A breakdown groups the series of a request counter by some labels (say `route`) and gives,
per group, the requests between the previous scrape and this one, their rate, share, error
percentage and, from a latency histogram, p50/p95/p99. The arithmetic is promexpr's, done per
group: increases per series with counter resets and new series counted from zero, rates over
the time between the two scrapes, quantiles with Prometheus's `histogram_quantile`
interpolation (promexpr.bucket_quantile) over each group's summed bucket increases.

`status_class` is a pseudo-label ("2xx", "4xx", "5xx") made from a `status` or `code` label,
because exporters label the code and operators read classes.

With one scrape only (`check --once`) there is no window: the table then shows the totals
since the exporter started (`window_s` is None and rates are None), which still ranks
endpoints and gives lifetime error percentages and quantiles.

Costs: one dict() of the labels and a few lookups per series, ~1 µs each; the probe runs this
on its parse thread for large scrapes (figures in tests/engine/test_breakdown.py).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from console.engine.details import BreakdownTable, Row
from console.engine.lang.promexpr import (
    LabelKey,
    Matcher,
    Scrape,
    ScrapeCancelledError,
    Selector,
    StopFlag,
    bucket_quantile,
    parse_expr,
)
from console.engine.text.sanitize import one_line

__all__ = [
    "CONVENTIONAL_NAMES",
    "BreakdownSpec",
    "compile_breakdowns",
    "compute_breakdown",
    "compute_breakdowns",
    "default_breakdowns",
    "status_class",
]

STATUS_CLASS = "status_class"
STATUS_LABELS = ("status", "code")
ROUTE_LABELS = ("route", "path", "handler")
QUANTILES: tuple[tuple[float, str], ...] = ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms"))
NUMBER_COLUMNS = ("requests", "rate_per_s", "share_pct", "error_pct", "p50_ms", "p95_ms",
                  "p99_ms")
REQUESTS = "http_requests_total"
DURATION = "http_request_duration_seconds"
CONVENTIONAL_NAMES = frozenset({REQUESTS, DURATION + "_bucket"})
DEFAULT_TOP = 20
_LABEL_SCAN = 500  # series looked at to learn a family's label names (defaults only)
_CHECK_EVERY = 4096  # series between two looks at the cancel flag


@dataclass(frozen=True, slots=True)
class BreakdownSpec:
    """One compiled breakdown: what to group by and which series give the numbers."""

    name: str
    by: tuple[str, ...]
    requests: Selector
    errors: Selector | None = None
    duration: Selector | None = None  # a histogram in seconds; its `_bucket` series are read
    top: int = DEFAULT_TOP
    default: bool = False  # made up from conventional names, not configured

    @property
    def columns(self) -> list[str]:
        cols = [*self.by, "requests", "rate_per_s", "share_pct"]
        if self.errors is not None:
            cols.append("error_pct")
        if self.duration is not None:
            cols += [c for _, c in QUANTILES]
        return cols

    def sample_names(self) -> frozenset[str]:
        names = {self.requests.name}
        if self.errors is not None:
            names.add(self.errors.name)
        if self.duration is not None:
            names.add(_bucket_name(self.duration.name))
        return frozenset(names)


def _selector(text: str) -> Selector:
    expr = parse_expr(text)
    if expr.kind != "value" or expr.scale != 1.0:
        raise ValueError(f"not a plain selector: {text!r}")
    return expr.selectors[0]


def compile_breakdowns(config: Mapping[str, Any]) -> dict[str, BreakdownSpec]:
    """Specs from a target's `breakdowns` (settings.Breakdown objects, already validated)."""
    return {
        name: BreakdownSpec(
            name=name, by=tuple(b.by), requests=_selector(b.requests),
            errors=None if b.errors is None else _selector(b.errors),
            duration=None if b.duration is None else _selector(b.duration),
            top=int(b.top),
        )
        for name, b in config.items()
    }


def sample_names(specs: Iterable[BreakdownSpec]) -> frozenset[str]:
    """Every sample name the specs read (for parse_scrape's `keep`)."""
    out: set[str] = set()
    for s in specs:
        out |= s.sample_names()
    return frozenset(out)


def _label_names(series: Mapping[LabelKey, float]) -> set[str]:
    names: set[str] = set()
    for i, key in enumerate(series):
        if i >= _LABEL_SCAN:
            break
        names.update(k for k, _ in key)
    return names


def default_breakdowns(scrape: Scrape) -> dict[str, BreakdownSpec]:
    """"endpoints" and "status" when the scrape has the conventional `http_requests_total`
    (by route, path or handler, whichever it carries, with 5xx as errors; by status class),
    with p50/p95/p99 from `http_request_duration_seconds` when it carries the same label."""
    requests = scrape.get(REQUESTS)
    if not requests:
        return {}
    names = _label_names(requests)
    route = next((label for label in ROUTE_LABELS if label in names), None)
    status = next((label for label in STATUS_LABELS if label in names), None)
    hist_names = _label_names(scrape.get(DURATION + "_bucket"))
    sel = Selector(REQUESTS)
    errors = None
    if status is not None:
        errors = Selector(REQUESTS, (Matcher(status, "=~", "5..", re.compile("5..")),))
    specs: dict[str, BreakdownSpec] = {}
    if route is not None:
        dur = Selector(DURATION) if route in hist_names else None
        specs["endpoints"] = BreakdownSpec("endpoints", (route,), sel, errors, dur,
                                           default=True)
    if status is not None:
        dur = Selector(DURATION) if status in hist_names else None
        # No error % here: a 5xx row would read "100 % errors" at any volume; the share
        # column says how much of the traffic each class is.
        specs["status"] = BreakdownSpec("status", (STATUS_CLASS,), sel, None, dur,
                                        default=True)
    return specs


# -- computing --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def status_class(code: str) -> str:
    """"200" -> "2xx"; an empty code stays empty (label absent); anything else is "other"."""
    if len(code) == 3 and code.isdigit() and code[0] in "12345":
        return code[0] + "xx"
    return "other" if code else ""


def _group_of(labels: dict[str, str], by: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for label in by:
        value = labels.get(label)
        if value is None and label == STATUS_CLASS:
            code = labels.get("status") or labels.get("code") or ""
            value = status_class(code)
        out.append(value or "")
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def _labels_of(key: LabelKey) -> dict[str, str]:
    """A series' labels as a dict (shared: read it, never change it). Scrapes repeat their
    label sets, so each is built once, not once per scrape and table."""
    return dict(key)


@functools.lru_cache(maxsize=65536)
def _group_for(key: LabelKey, by: tuple[str, ...]) -> tuple[str, ...]:
    return _group_of(_labels_of(key), by)


@functools.lru_cache(maxsize=65536)
def _bucket_of(key: LabelKey, by: tuple[str, ...]) -> tuple[tuple[str, ...], float] | None:
    """(group, upper bound) of a histogram bucket series; None without a numeric `le`."""
    le = _labels_of(key).get("le")
    if le is None:
        return None
    try:
        bound = float(le)
    except ValueError:
        return None
    return _group_of(_labels_of(key), by), bound


def _tick(i: int, cancel: StopFlag | None) -> None:
    if cancel is not None and not i % _CHECK_EVERY and cancel.is_set():
        raise ScrapeCancelledError


def _bucket_name(name: str) -> str:
    return name if name.endswith("_bucket") else name + "_bucket"


class _Pass:
    """The work one set of tables shares, done once: per-series increases of a sample name,
    the series a selector matches, each series' group for a `by`. The default "endpoints"
    and "status" tables read the same counter twice (requests, 5xx errors), so this halves
    the cost on a large scrape."""

    def __init__(self, cur: Scrape, prev: Scrape | None, cancel: StopFlag | None) -> None:
        self.cur = cur
        self.prev = prev
        self.cancel = cancel
        self._incs: dict[str, dict[LabelKey, float]] = {}
        self._selected: dict[str, list[tuple[LabelKey, float]]] = {}
        self._groups: dict[tuple[str, ...], dict[LabelKey, tuple[str, ...]]] = {}

    def increases(self, name: str) -> dict[LabelKey, float]:
        """Per series: the increase since the previous scrape, resets and new series counted
        from zero (as promexpr and Prometheus do); the value itself with no previous scrape."""
        incs = self._incs.get(name)
        if incs is None:
            series = self.cur.get(name)
            old = self.prev.get(name) if self.prev is not None else {}
            incs = {}
            for i, (key, value) in enumerate(series.items()):
                _tick(i, self.cancel)
                before = old.get(key)
                incs[key] = value if before is None or value < before else value - before
            self._incs[name] = incs
        return incs

    def select(self, sel: Selector, name: str | None = None) -> list[tuple[LabelKey, float]]:
        """(series, increase) of every series of `name` (default: the selector's) matching."""
        name = name or sel.name
        cache_key = f"{name}\0{sel}"
        found = self._selected.get(cache_key)
        if found is None:
            incs = self.increases(name)
            matchers = sel.matchers
            if not matchers:
                found = list(incs.items())
            else:
                # Label values repeat (a handful of status codes over 100k series): each
                # matcher's verdict is remembered per value, so a regex runs a few times.
                memos: list[dict[str, bool]] = [{} for _ in matchers]
                pairs = list(zip(matchers, memos, strict=True))
                found = []
                for i, (key, inc) in enumerate(incs.items()):
                    _tick(i, self.cancel)
                    labels = _labels_of(key)
                    for m, memo in pairs:
                        value = labels.get(m.label, "")
                        hit = memo.get(value)
                        if hit is None:
                            hit = memo[value] = m.matches({m.label: value})
                        if not hit:
                            break
                    else:
                        found.append((key, inc))
            self._selected[cache_key] = found
        return found

    def grouped(self, sel: Selector, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """Per group, the sum of its series' increases (each series' group is remembered for
        the next table grouping by the same labels; this loop is the hot one)."""
        groups = self._groups.setdefault(by, {})
        known = groups.get
        out: dict[tuple[str, ...], float] = {}
        total = out.get
        cancel = self.cancel
        for i, (key, inc) in enumerate(self.select(sel)):
            if cancel is not None and not i & 4095 and cancel.is_set():
                raise ScrapeCancelledError
            g = known(key)
            if g is None:
                g = groups[key] = _group_for(key, by)
            out[g] = total(g, 0.0) + inc
        return out

    def buckets(self, sel: Selector, by: tuple[str, ...]) -> dict[tuple[str, ...],
                                                                 dict[float, float]]:
        """Per group, per upper bound, the summed increase of a histogram's buckets."""
        out: dict[tuple[str, ...], dict[float, float]] = {}
        for i, (key, inc) in enumerate(self.select(sel, _bucket_name(sel.name))):
            _tick(i, self.cancel)
            found = _bucket_of(key, by)
            if found is None:
                continue
            group, bound = found
            per_le = out.setdefault(group, {})
            per_le[bound] = per_le.get(bound, 0.0) + inc
        return out


def _round(value: float | None, digits: int) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def compute_breakdown(
    spec: BreakdownSpec, cur: Scrape, prev: Scrape | None, cancel: StopFlag | None = None,
    *, shared: _Pass | None = None,
) -> BreakdownTable:
    """One table, plain JSON: rows sorted by rate (requests) descending, cut at `top`.

    Label values are remote text and come out through `one_line`. With no previous scrape
    the numbers are totals since the exporter started and the rates are None.
    """
    window = None if prev is None else cur.at - prev.at
    if window is not None and window <= 0:
        window, prev = None, None
    work = shared if shared is not None and shared.prev is prev else _Pass(cur, prev, cancel)
    requests = work.grouped(spec.requests, spec.by)
    errors = work.grouped(spec.errors, spec.by) if spec.errors is not None else None
    ranked = sorted(requests.items(), key=lambda kv: (-kv[1], kv[0]))
    kept, dropped = ranked[: spec.top], ranked[spec.top :]
    total = sum(requests.values())
    buckets = work.buckets(spec.duration, spec.by) if spec.duration is not None else None

    def rate(n: float) -> float | None:
        return None if window is None else n / window

    rows: list[Row] = []
    for group, n in kept:
        row: Row = {
            label: one_line(v, 200) for label, v in zip(spec.by, group, strict=True)}
        row["requests"] = _round(n, 3)
        row["rate_per_s"] = _round(rate(n), 4)
        row["share_pct"] = _round(n / total * 100.0, 3) if total > 0 else None
        if errors is not None:
            row["error_pct"] = (_round(errors.get(group, 0.0) / n * 100.0, 3)
                                if n > 0 else None)
        if buckets is not None:
            per_le = buckets.get(group)
            for q, column in QUANTILES:
                value = bucket_quantile(q, list(per_le.items())) if per_le else math.nan
                row[column] = _round(value * 1000.0, 3)
        rows.append(row)
    others = sum(n for _, n in dropped)
    table: BreakdownTable = {
        "by": list(spec.by),
        "columns": spec.columns,
        "rows": rows,
        "others": len(dropped),
        "others_requests": _round(others, 3),
        "others_rate_per_s": _round(rate(others), 4),
        "groups": len(requests),
        "total_rate_per_s": _round(rate(total), 4),
        "window_s": _round(window, 3),
        "requests": str(spec.requests),
        "errors": None if spec.errors is None else str(spec.errors),
        "duration": None if spec.duration is None else str(spec.duration),
        "default": spec.default,
    }
    if not cur.get(spec.requests.name):
        table["note"] = one_line(f"no series {spec.requests.name} in this scrape", 200)
    elif window is None:
        table["note"] = "one scrape so far: totals since the exporter started, no rates"
    return table


def compute_breakdowns(
    specs: Mapping[str, BreakdownSpec], cur: Scrape, prev: Scrape | None,
    cancel: StopFlag | None = None,
) -> dict[str, BreakdownTable]:
    """Every table, by breakdown name (the value of CheckResult.details["breakdowns"])."""
    if prev is not None and cur.at - prev.at <= 0:
        prev = None
    shared = _Pass(cur, prev, cancel)
    return {name: compute_breakdown(spec, cur, prev, cancel, shared=shared)
            for name, spec in specs.items()}
