"""`opsconsole rules test FILE`: replay rules on a synthetic series, like `promtool test rules`.

A test file is TOML:

    interval = "10s"              # spacing of the samples (default 10s)
    target = "api"                # the target the series belong to (default "test")
    kind = "http"                 # its kind, for rules that select kinds (default "http")

    [series]                      # metric = values in promtool's expanding notation
    up = "1 1 0x5 1x3"            # 1 1 0 0 0 0 0 0 1 1 1 1
    error_pct = "0+10x6 _x2 60"   # 0 10 20 … 60, two missing samples, 60

    [[rules]]                     # as in a config; without [[rules]] the shipped defaults
    name = "api-down"             # and --config's rules are used
    expr = "down"
    severity = "P0"

    eval_times = ["30s", "1m"]    # optional: evaluate only at these offsets (default: at
                                  # every sample)
    [[expect]]                    # optional: checked, and the command fails on a mismatch
    at = "50s"
    rule = "api-down"
    state = "firing"              # inactive pending firing resolved nodata

Everything runs on simulated time through the same `RuleSet` and `Alerts` as the console,
so what it prints is what the console would have done.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from console.engine.alerting.lifecycle import AlertEngine, AlertState, Notification
from console.engine.alerting.rules import RuleSet, TargetInfo
from console.engine.config.rules import AlertingSection, Rule, check_unique_names, default_rules
from console.engine.lang.durations import parse_duration
from console.engine.storage.store import MetricStore
from console.engine.text.fmt import format_duration

T0 = 1_700_000_000.0  # a multiple of every rollup width, so buckets line up with offsets
_ITEM = re.compile(
    r"^(?P<a>[-+]?(?:\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|nan|NaN|_|stale))"
    r"(?:(?P<sign>[-+])(?P<b>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?))?"
    r"(?:x(?P<n>\d+))?$"
)


def expand_series(text: str) -> list[float | None]:
    """promtool's expanding notation: `a+bxn` is a, a+b, …, a+n·b (n+1 values), `axn` is a
    repeated n+1 times, `_` a missing sample and `_xn` n missing ones; NaN is a poll
    without a value."""
    out: list[float | None] = []
    for item in text.split():
        m = _ITEM.match(item)
        if not m:
            raise ValueError(f"{item!r} is not a series value; write e.g. 1, 0+10x5, 1x3 or _")
        a, n = m.group("a"), m.group("n")
        if a in ("_", "stale"):
            if m.group("b"):
                raise ValueError(f"{item!r}: a missing sample has no increment")
            out += [None] * (int(n) if n else 1)
            continue
        start = float(a)
        if n is None:
            if m.group("b"):
                raise ValueError(f"{item!r}: give a count, e.g. {item}x5")
            out.append(start)
            continue
        step = float(m.group("b") or 0.0) * (-1.0 if m.group("sign") == "-" else 1.0)
        out += [start + k * step for k in range(int(n) + 1)]
        if len(out) > 1_000_000:
            raise ValueError("a series may have at most 1,000,000 samples")
    return out


@dataclass(frozen=True, slots=True)
class Expectation:
    at: float
    rule: str
    state: str


@dataclass(slots=True)
class RuleTest:
    interval: float
    target: str
    kind: str
    series: dict[str, list[float | None]]
    rules: list[Rule]
    eval_times: list[float] | None
    expects: list[Expectation]
    alerting: AlertingSection = field(
        default_factory=lambda: AlertingSection.model_validate({}))


def load_rule_test(path: Path, extra_rules: Sequence[Rule] = ()) -> RuleTest:
    """Read a test file; raises ValueError with a readable message."""
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return parse_rule_test(data, extra_rules)


def parse_rule_test(data: dict[str, Any], extra_rules: Sequence[Rule] = ()) -> RuleTest:
    known = {"interval", "target", "kind", "series", "rules", "eval_times", "expect",
             "alerting"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (keys: {', '.join(sorted(known))})")
    interval = parse_duration(data.get("interval", "10s"))
    if interval <= 0:
        raise ValueError("interval must be more than 0")
    series_raw = data.get("series")
    if not isinstance(series_raw, dict) or not series_raw:
        raise ValueError('add a [series] table, e.g. up = "1 1 0x5 1x3"')
    series: dict[str, list[float | None]] = {}
    for name, text in series_raw.items():
        if not isinstance(text, str):
            raise ValueError(f"series.{name}: write the values as a string, e.g. \"1 0 1\"")
        try:
            series[name] = expand_series(text)
        except ValueError as exc:
            raise ValueError(f"series.{name}: {exc}") from None
    try:
        if "rules" in data:
            rules = [Rule.model_validate(r) for r in data["rules"]]
        else:
            mine = {r.name for r in extra_rules}
            rules = [r for r in default_rules() if r.name not in mine] + list(extra_rules)
        check_unique_names(rules)
        alerting = AlertingSection.model_validate(data.get("alerting", {}))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"rules: {where}: {err['msg']}") from None
    evals = None
    if "eval_times" in data:
        evals = sorted(parse_duration(t) for t in data["eval_times"])
    expects = []
    names = {r.name for r in rules}
    for e in data.get("expect", []):
        state = str(e.get("state", ""))
        if state not in {s.value for s in AlertState}:
            raise ValueError(f"expect: unknown state {state!r} "
                             f"({', '.join(s.value for s in AlertState)})")
        if e.get("rule") not in names:
            raise ValueError(f"expect: unknown rule {e.get('rule')!r}")
        expects.append(Expectation(parse_duration(e.get("at", 0)), str(e["rule"]), state))
    return RuleTest(interval, str(data.get("target", "test")), str(data.get("kind", "http")),
                    series, rules, evals, expects, alerting)


@dataclass(frozen=True, slots=True)
class Step:
    """An alert's state change at an offset from the start of the series."""

    at: float
    rule: str
    target: str
    state: str
    detail: str


@dataclass(slots=True)
class RuleTestReport:
    steps: list[Step] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    fired: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [{"at": s.at, "rule": s.rule, "target": s.target, "state": s.state,
                       "detail": s.detail} for s in self.steps],
            "notifications": [dict(n.to_json(), at=n.at - T0) for n in self.notifications],
            "failures": self.failures,
        }


def run_rule_test(test: RuleTest) -> RuleTestReport:
    """Replay the series into a fresh store and the lifecycle; collect what would happen."""
    n = max(len(v) for v in test.series.values())
    store = MetricStore(raw_capacity=max(3600, n + 1))
    target = TargetInfo(test.target, test.kind, test.interval)
    engine = AlertEngine(RuleSet(test.rules, [target]), store, test.alerting, clock=lambda: T0)
    times = test.eval_times if test.eval_times is not None else [
        k * test.interval for k in range(n)]
    report = RuleTestReport(duration=(n - 1) * test.interval)
    states: dict[tuple[str, str], str] = {}
    expects = sorted(test.expects, key=lambda e: e.at)
    k = 0  # next sample index to record

    def record_until(offset: float) -> None:
        nonlocal k
        while k < n and k * test.interval <= offset + 1e-9:
            t = T0 + k * test.interval
            for metric, values in test.series.items():
                if k < len(values) and values[k] is not None:
                    v = values[k]
                    assert v is not None
                    store.record(f"{test.target}:{metric}", t, v)
            k += 1

    for offset in times:
        record_until(offset)
        report.notifications += engine.run(T0 + offset)
        for a in engine.alerts.alerts():
            if states.get(a.key, "inactive") != a.state.value:
                states[a.key] = a.state.value
                report.steps.append(Step(offset, a.rule.name, a.target, a.state.value, a.detail))
                if a.state == AlertState.FIRING and a.fired_at == T0 + offset:
                    report.fired.setdefault(a.rule.name, []).append((offset, a.detect_s))
        while expects and expects[0].at <= offset + 1e-9:
            e = expects.pop(0)
            got = states.get((e.rule, test.target), "inactive")
            if got != e.state:
                report.failures.append(
                    f"at {format_duration(e.at)}: {e.rule} expected {e.state}, got {got}")
    for e in expects:
        report.failures.append(f"at {format_duration(e.at)}: {e.rule}: no evaluation at or "
                               "before that time (after the last eval time)")
    return report


def _offset(s: float) -> str:
    return "+" + ("0s" if s == 0 else format_duration(s))


def format_report(test: RuleTest, report: RuleTestReport) -> str:
    """Human text: per rule, each state change with its offset and why, then a verdict."""
    lines: list[str] = []
    by_rule: dict[str, list[Step]] = {}
    for s in report.steps:
        by_rule.setdefault(s.rule, []).append(s)
    for rule in test.rules:
        steps = by_rule.get(rule.name)
        if not steps:
            continue
        lines.append(f"{rule.name} ({rule.severity})  {rule.expr}")
        for s in steps:
            lines.append(f"  {_offset(s.at):>9}  {s.state:<12} {s.detail}")
        fired = report.fired.get(rule.name, [])
        if fired:
            parts = [f"{_offset(at)}" + ("" if d is None else f" (detected in "
                                         f"{format_duration(d)})") for at, d in fired]
            lines.append(f"  would have fired at {', '.join(parts)}")
        else:
            lines.append("  would not have fired")
    quiet = [r.name for r in test.rules if r.name not in by_rule]
    if quiet:
        lines.append(f"never left inactive: {', '.join(quiet)}")
    if report.notifications:
        lines.append("notifications:")
        for n in report.notifications:
            lines.append(f"  {_offset(n.at - T0):>9}  {n.transition:<12} {n.key}")
    else:
        lines.append("notifications: none")
    for f in report.failures:
        lines.append(f"FAIL {f}")
    if test.expects:
        lines.append("all expectations met" if not report.failures
                     else f"{len(report.failures)} expectation(s) not met")
    return "\n".join(lines)
