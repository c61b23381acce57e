"""Alert rules: their config schema, a small condition language, and evaluation on the store.

A rule is a condition on one target's metric series (`<target>:<metric>` in the MetricStore),
written as one expression so a user can read it aloud and `opsconsole rules test` can replay
it on a synthetic series:

    p95_ms > 2000                            the latest sample
    mean(cpu_pct, 5m) > 80                   also max / min / sum over a window
    rate(errors_total, 1m) > 0.5             per-second increase of a counter
    increase(errors_total, 1m) > 10          increase of a counter over the window
    ratio(failed_total, payments_total, 5m) * 100 > 2    increase of a / increase of b
    ratio(used_bytes, max_bytes) > 0.8       latest a / latest b
    quantile(0.95, latency_ms, 5m) > 2000    exact over raw samples (rollups beyond)
    count(up == 0, 1m) > 3                   how many samples in the window match
    down                                     shorthand for `up == 0`
    absent(up, 3)                            no sample for 3 of the target's intervals

Evaluation never raises: a missing series, a NaN sample, a stale latest value (older than
`nodata_intervals` intervals) or an empty window gives the state "nodata", which the
lifecycle in `alerts.py` keeps apart from "ok" (a lost target must never look resolved).
"""

from __future__ import annotations

import fnmatch
import functools
import math
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from console.engine.config.rules import (
    Rule,
    default_rules,
)
from console.engine.lang.ruleexpr import (
    Expr,
    compare,
    parse_expr,
)
from console.engine.lang.serieskey import parse_series_key
from console.engine.text.fmt import fmt_number, format_duration, is_number

if TYPE_CHECKING:
    from console.engine.storage.store import MetricStore

EvalState = Literal["fail", "ok", "nodata"]


def detail_of(text: str, parts: tuple[str, str] | None, value: float | None) -> str:
    """A detail kept as `text`, or as `parts` around its value (see `Evaluation`)."""
    return text if parts is None else parts[0] + fmt_value(value) + parts[1]


def fmt_value(v: float | None) -> str:
    """A rule's value in its detail text: `no data` rather than a dash (it says why)."""
    return _fmt_number(v) if is_number(v) else "no data"


# Every evaluation writes its value into the alert's detail; most rules' values repeat
# (status 200, up 1, 0 errors), and formatting was ~3 % of all CPU at 1,000 targets.
_fmt_number = functools.lru_cache(maxsize=4096)(fmt_number)


@functools.lru_cache(maxsize=1024)
def _what(expr: Expr) -> str:
    """How an expression names what it measured in a detail: `p95(latency_ms, 5m)`
    (the same for every evaluation of a rule, so made once per rule, not per result)."""
    window = format_duration(expr.window or 0)
    fn = expr.fn
    if fn in ("mean", "max", "min", "sum", "rate", "increase"):
        return f"{fn}({expr.metric}, {window})"
    if fn == "quantile":
        return f"p{(expr.q or 0) * 100:g}({expr.metric}, {window})"
    if fn == "count":
        return f"count({expr.metric} {expr.match_op} {expr.match_value:g}, {window})"
    if fn == "ratio":
        return f"ratio({expr.metric}, {expr.metric2})"
    return expr.metric  # latest

# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """What rule selection and staleness need to know about a target."""

    name: str
    kind: str
    interval: float
    group: str | None = None


@dataclass(slots=True)
class Evaluation:
    """One rule on one target at one instant; `sample_t` is the newest sample it read.

    Not frozen, though nothing changes one after it is made: a frozen dataclass is built
    through `object.__setattr__` per field, ~1 us an evaluation, five per check result.

    The human detail of a value (`p95(latency_ms, 5m) = 12.3 (not > 2000)`) is kept as its
    fixed parts plus `value` and written out only when read (`detail`): formatting it on
    every evaluation was ~4.5 % of all CPU at 1,000 targets (py-spy), and almost no detail
    is ever read.
    """

    rule: Rule
    target: str
    state: EvalState
    value: float | None
    sample_t: float | None
    at: float
    detail_text: str  # the detail, unless `detail_parts` holds it unformatted
    labels: tuple[tuple[str, str], ...] = ()
    cause: str = ""  # what the probe saw, when failing (see `explain.cause_of`)
    detail_parts: tuple[str, str] | None = None  # (head, tail) around fmt_value(value)

    @property
    def detail(self) -> str:
        return detail_of(self.detail_text, self.detail_parts, self.value)

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.name, self.target)

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def selects(rule: Rule, target: TargetInfo) -> bool:
    if rule.kinds and target.kind not in rule.kinds:
        return False
    return not rule.targets or any(fnmatch.fnmatchcase(target.name, p) for p in rule.targets)


def labels_for(rule: Rule, target: TargetInfo, suffix: str = "") -> dict[str, str]:
    """The alert's labels; `suffix` (`{instance="web-1"}`) names one series of a `promql`
    target's labelled metric, whose labels join (never overriding rule, target, severity)."""
    labels = {"service": target.group or target.name}
    if suffix:
        labels.update(parse_series_key(suffix))
    labels.update(rule.labels)
    labels.update({"rule": rule.name, "target": target.name + suffix,
                   "severity": rule.severity})
    return labels


def evaluate_expr(
    expr: Expr, store: MetricStore, target: TargetInfo, now: float, nodata_intervals: int = 3,
    suffix: str = "",
) -> tuple[EvalState, float | None, float | None, str]:
    """(state, value, newest sample time, human detail) of one condition on one target (on
    one labelled series of it with `suffix`: `cpu_pct{instance="web-1"}`)."""
    state, value, sample_t, text, parts = _evaluate(expr, store, target, now,
                                                    nodata_intervals, suffix)
    return state, value, sample_t, detail_of(text, parts, value)


def _evaluate(
    expr: Expr, store: MetricStore, target: TargetInfo, now: float, nodata_intervals: int,
    suffix: str,
) -> tuple[EvalState, float | None, float | None, str, tuple[str, str] | None]:
    """`evaluate_expr` with a value's detail as its parts, not yet formatted."""
    series = f"{target.name}:{expr.metric}{suffix}"
    latest = store.latest(series)
    sample_t = latest[0] if latest is not None else None
    if expr.fn == "absent":
        age = None if latest is None else now - latest[0]
        limit = expr.intervals * target.interval if expr.intervals else 0.0
        missing = age is None or age > limit
        detail = (f"{expr.metric}: no sample ever" if age is None
                  else f"{expr.metric}: last sample {format_duration(max(age, 0.0))} ago")
        # One observation per interval however often rules run, so absent()'s consecutive
        # count means intervals, not evaluation rounds.
        slot = math.floor(now / target.interval) * target.interval if target.interval else now
        return ("fail" if missing else "ok"), age, slot, detail, None

    stale_after = nodata_intervals * target.interval
    if latest is None:
        return "nodata", None, None, f"{expr.metric}: no such series yet", None
    if now - latest[0] > stale_after:
        return "nodata", None, sample_t, (
            f"{expr.metric}: last sample {format_duration(now - latest[0])} ago"), None

    value: float | None
    fn = expr.fn
    if fn == "latest":
        value = latest[1]
    elif fn == "mean":
        value = store.mean(series, expr.window or 0.0, now=now)
    elif fn in ("max", "min", "sum"):
        _, v = store.values(series, expr.window or 0.0, now=now)
        v = v[~np.isnan(v)]
        value = None if len(v) == 0 else float({"max": v.max, "min": v.min, "sum": v.sum}[fn]())
    elif fn in ("rate", "increase"):
        r = store.rate(series, expr.window or 0.0, now=now)
        value = r
        if r is not None and fn == "increase":
            # Like Prometheus, extrapolate past the first and last samples by at most one
            # step, never to the whole window: three samples in 20 s are not a minute's worth.
            t, _ = store.values(series, expr.window or 0.0, now=now)
            span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
            step = span / (len(t) - 1) if len(t) > 1 else 0.0
            value = r * min(expr.window or 0.0, span + step)
    elif fn == "quantile":
        qs = store.quantiles(series, expr.window or 0.0, (expr.q or 0.0,), now=now)
        value = None if not qs else qs[expr.q or 0.0]
    elif fn == "count":
        _, v = store.values(series, expr.window or 0.0, now=now)
        v = v[~np.isnan(v)]
        if len(v) == 0:
            value = None
        else:
            value = float(sum(compare(float(x), expr.match_op or "==", expr.match_value or 0.0)
                              for x in v))
    else:  # ratio
        series2 = f"{target.name}:{expr.metric2}{suffix}"
        if expr.window is None:
            l2 = store.latest(series2)
            if l2 is None or now - l2[0] > stale_after:
                return "nodata", None, sample_t, f"{expr.metric2}: no recent sample", None
            value = None if l2[1] == 0 or math.isnan(l2[1]) else latest[1] / l2[1]
        else:
            a = store.rate(series, expr.window, now=now)
            b = store.rate(series2, expr.window, now=now)
            value = None if a is None or b is None or b == 0 else a / b
    if value is None or math.isnan(value):
        return "nodata", None, sample_t, f"{_what(expr)}: no data in the window", None
    value = value * expr.scale
    ok = not compare(value, expr.op, expr.threshold)
    head, ok_tail, fail_tail = _detail_parts(expr)
    return ("ok" if ok else "fail"), value, sample_t, "", (head, ok_tail if ok else fail_tail)


RECHECK_FRACTION = 60
"""A windowed rule that read "ok" is re-evaluated on results at most every window / 60."""


def recheck_after(expr: Expr, interval: float) -> float:
    """How long a windowed rule's "ok" holds before a check result evaluates it again (0:
    every result).

    One new sample moves a figure over a window by about one sample's share of it: a
    5-minute p95 over 300 samples is not worth recomputing on every 1 s result (with the
    default rules on HTTP targets at 1 s, it was 32 of the 75 us the rules cost per result,
    measured in-process; 1,000 such targets: 565 -> 545 us of CPU per check). So a
    windowed rule that read "ok" is evaluated again after window / 60 (5 s for 5 m; never
    less than the target's interval, so a 1 m window is evaluated on every 1 s result). Only
    "ok" waits: a failing or no-data evaluation is repeated on every result, so a pending
    alert's `for`, its firing and its resolution keep their timing; a breach shows at most
    window / 60 late (Prometheus evaluates every rule once per evaluation interval, 1 m by
    default). Instant rules (latest value, `absent`, `ratio` without a window) never wait.
    """
    if expr.window is None or expr.fn == "absent":
        return 0.0
    gap = expr.window / RECHECK_FRACTION
    return gap if gap > interval else 0.0


def _newest(store: MetricStore, series: str, now: float) -> float:
    """When `series` was last sampled (`now` if never): what `absent()` on a metric a result
    just reported is judged as of."""
    latest = store.latest(series)
    return latest[0] if latest is not None else now


_PARTS: dict[int, tuple[Expr, str, str, str]] = {}


def _detail_parts(expr: Expr) -> tuple[str, str, str]:
    """The fixed parts of a value's detail, `p95(latency_ms, 5m) = ` and ` (> 2000)` /
    ` (not > 2000)`, made once per expression. Kept by identity (the entry holds the
    expression, so its id is not reused): an lru_cache keyed by the `Expr` hashed its 12
    fields on every evaluation (0.6 % of all CPU at 1,000 targets in py-spy)."""
    got = _PARTS.get(id(expr))
    if got is None or got[0] is not expr:
        if len(_PARTS) > 4096:
            _PARTS.clear()
        cond = f"{expr.op} {expr.threshold:g})"
        got = _PARTS[id(expr)] = (expr, f"{_what(expr)} = ", f" (not {cond}", f" ({cond}")
    return got[1], got[2], got[3]


class RuleSet:
    """Compiled rules plus the targets they may apply to; evaluates them against a store."""

    def __init__(self, rules: Iterable[Rule], targets: Iterable[TargetInfo]) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.targets = list(targets)
        self._exprs = {r.name: parse_expr(r.expr) for r in self.rules}
        # Which rules may apply to which target is fixed for a RuleSet (a reload builds a new
        # one), so it is worked out once here, not per result: a result of one target then
        # costs its own rules, not a scan of every rule against every target.
        self._selected = self._select()
        self._generation = -1
        # Per target, the pairs that apply (valid for one store generation) and each pair's
        # labels: both were rebuilt on every check result (f-strings, dicts, sorts).
        self._pairs: dict[str | None, list[tuple[Rule, TargetInfo]]] = {}
        self._store: MetricStore | None = None
        self._labels: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = {}
        # one tuple per distinct (name, value) label: `("severity", "P1")` is the same object
        # in every target's labels, not a copy per rule and target
        self._label_pairs: dict[tuple[str, str], tuple[str, str]] = {}
        # "target:metric" -> the label suffixes of its series (promql targets' labelled
        # metrics), rebuilt when the store's generation changes
        self._labelled: dict[str, list[str]] | None = None
        self._any_labelled = any(t.kind == "promql" for t in self.targets)
        # (rule, series) -> until when a windowed rule that read "ok" is not re-evaluated on
        # a result (see `evaluate`)
        self._ok_until: dict[tuple[str, str], float] = {}

    def _select(self) -> dict[str, tuple[TargetInfo, list[tuple[Rule, Expr]]]]:
        """Per target, the rules that may apply to it, in rule order. Targets the same rules
        select (most targets of one kind) share one list: a (rule, target, expression) tuple
        per rule and target was 1.3 KB a target at 1,000 targets (`bench/_memprobe.py`)."""
        names: dict[str, list[int]] = {t.name: [] for t in self.targets}
        for i, rule in enumerate(self.rules):
            for t in self.targets:
                if selects(rule, t):
                    names[t.name].append(i)
        shared: dict[tuple[int, ...], list[tuple[Rule, Expr]]] = {}
        out = {}
        for t in self.targets:
            key = tuple(names[t.name])
            sel = shared.get(key)
            if sel is None:
                sel = shared[key] = [(self.rules[i], self._exprs[self.rules[i].name])
                                     for i in key]
            out[t.name] = (t, sel)
        return out

    @classmethod
    def from_settings(cls, settings: object,
                      advice: Callable[[Rule], str] | None = None) -> RuleSet:
        """Rules of a Settings: the config's own, plus the shipped defaults unless disabled.

        `advice` gives a rule without its own `action` the one line of "what to do" of its
        runbook (the runtime passes the playbooks' lookup; the engine cannot import them).
        """
        rules: list[Rule] = list(getattr(settings, "rules", []))
        alerting = getattr(settings, "alerting", None)
        if alerting is None or alerting.default_rules:
            own = {r.name for r in rules}
            rules = [r for r in default_rules() if r.name not in own] + rules
        if advice is not None:
            rules = [r if r.action else r.model_copy(update={"action": advice(r)})
                     for r in rules]
        targets = [TargetInfo(t.name, t.kind, t.interval, t.group)
                   for t in getattr(settings, "targets", [])]
        return cls(rules, targets)

    def expr(self, rule: Rule) -> Expr:
        return self._exprs[rule.name]

    def pairs(self, store: MetricStore, target: str | None = None
              ) -> list[tuple[Rule, TargetInfo]]:
        """(rule, target) pairs that apply now.

        A rule that names its targets (or kinds) applies to each of them whatever the store
        holds, so a missing series shows as "nodata". A rule that names none applies only to
        targets that have reported its metric: a playbook rule on `cpu_pct` stays quiet on a
        target that never reports CPU (see `unmatched()` for such rules).
        """
        # Which series exist changes only when the store's generation does, so the answer
        # is kept until then instead of asked of the store (under its lock) every time.
        self._sync(store)
        cached = self._pairs.get(target)
        if cached is not None:
            return cached
        if target is None:
            # every target, in rule order (as listed by `opsconsole alerts`)
            order = {r.name: i for i, r in enumerate(self.rules)}
            chosen = sorted(((r, t, e) for t, sel in self._selected.values() for r, e in sel),
                            key=lambda x: order[x[0].name])
        else:
            got = self._selected.get(target)
            chosen = [] if got is None else [(r, got[0], e) for r, e in got[1]]
        # store.has() answers for this call only: kept between calls they held a string per
        # series of every target (1.7 KB a target at 1,000 targets, `bench/_memprobe.py`),
        # while the pairs they decide are kept anyway
        has: dict[str, bool] = {}
        labelled = self._labelled or {}
        out = []
        for rule, t, expr in chosen:
            if not (rule.explicit or expr.fn == "absent"):
                series = f"{t.name}:{expr.metric}"
                there = has.get(series)
                if there is None:
                    there = has[series] = store.has(series) or series in labelled
                if not there:
                    continue
            out.append((rule, t))
        self._pairs[target] = out
        return out

    def labels(self, rule: Rule, target: TargetInfo, suffix: str = ""
               ) -> tuple[tuple[str, str], ...]:
        """`labels_for` as a sorted tuple, worked out once per (rule, target, series)."""
        key = (rule.name, target.name, suffix)
        got = self._labels.get(key)
        if got is None:
            if len(self._labels) > 100_000:  # labelled promql series come and go
                self._labels.clear()
            pairs = self._label_pairs
            if len(pairs) > 100_000:
                pairs.clear()
            got = self._labels[key] = tuple(
                pairs.setdefault(kv, kv) for kv in sorted(labels_for(rule, target, suffix).items()))
        return got

    def _sync(self, store: MetricStore) -> None:
        """Forget what the store had when its set of series changed."""
        if store.generation == self._generation and store is self._store:
            return
        self._generation = store.generation
        self._store = store
        self._pairs.clear()
        self._labelled = None
        if self._any_labelled:
            prefixes = tuple(f"{t.name}:" for t in self.targets if t.kind == "promql")
            index: dict[str, list[str]] = {}
            for name in store.series():
                head, brace, _ = name.partition("{")
                if brace and head.startswith(prefixes):
                    index.setdefault(head, []).append(name[len(head):])
            self._labelled = index

    def suffixes(self, store: MetricStore, target: TargetInfo, metric: str) -> list[str]:
        """The series a rule on `metric` of `target` is evaluated on: "" (the metric
        itself) and/or one label suffix per labelled series of a promql target."""
        if target.kind != "promql":
            return [""]
        self._sync(store)
        key = f"{target.name}:{metric}"
        found = (self._labelled or {}).get(key)
        if not found:
            return [""]
        return ([""] if store.has(key) else []) + sorted(found)

    def unmatched(self, store: MetricStore) -> list[Rule]:
        """Rules that apply to no target yet (their metric does not exist anywhere)."""
        used = {r.name for r, _ in self.pairs(store)}
        return [r for r in self.rules if r.name not in used]

    def evaluate(
        self, store: MetricStore, now: float, *, target: str | None = None,
        skip: Container[str] = (), present: Container[str] = (),
    ) -> list[Evaluation]:
        """Every applicable (rule, target) pair, or one target's; `skip` names targets to
        leave out (the periodic tick skips those a check result evaluated moments ago);
        `present` names metrics the target reported just now: `absent()` on one of them is
        judged as of its newest sample (a result that just arrived is not silence, however
        long the console took to handle it: a stalled loop made its sample look old)."""
        out = []
        exprs = self._exprs
        ok_until = self._ok_until
        for rule, t in self.pairs(store, target):
            if t.name in skip:
                continue
            expr = exprs[rule.name]
            reported = expr.fn == "absent" and expr.metric in present
            # A windowed rule that read "ok" waits `recheck_after` before a result evaluates
            # it again (the tick's full round evaluates it whatever the wait, and what it
            # reads counts: a failure there ends the wait).
            gap = recheck_after(expr, t.interval)
            wait = gap and target is not None
            if t.kind != "promql":  # one series, the metric itself (see `suffixes`)
                if wait and ok_until.get((rule.name, t.name), 0.0) > now:
                    continue
                at = _newest(store, f"{t.name}:{expr.metric}", now) if reported else now
                state, value, sample_t, text, parts = _evaluate(
                    expr, store, t, at, rule.nodata_intervals, "")
                if gap:
                    self._note_ok(rule.name, t.name, state, now + gap)
                out.append(Evaluation(rule, t.name, state, value, sample_t, now, text,
                                      self.labels(rule, t), "", parts))
                continue
            for suffix in self.suffixes(store, t, expr.metric):
                series = t.name + suffix
                if wait and ok_until.get((rule.name, series), 0.0) > now:
                    continue
                at = _newest(store, f"{t.name}:{expr.metric}{suffix}", now) \
                    if reported else now
                state, value, sample_t, text, parts = _evaluate(
                    expr, store, t, at, rule.nodata_intervals, suffix)
                if gap:
                    self._note_ok(rule.name, series, state, now + gap)
                out.append(Evaluation(rule, series, state, value, sample_t, now,
                                      text, self.labels(rule, t, suffix), "", parts))
        return out

    def _note_ok(self, rule: str, series: str, state: EvalState, until: float) -> None:
        """Remember until when an "ok" windowed evaluation holds; forget any other."""
        key = (rule, series)
        if state == "ok":
            if len(self._ok_until) > 100_000:  # labelled promql series come and go
                self._ok_until.clear()
            self._ok_until[key] = until
        else:
            self._ok_until.pop(key, None)
