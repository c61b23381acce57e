"""Rule language, selection and evaluation against a real MetricStore on simulated time."""

from __future__ import annotations

import math
import textwrap

import pytest

from console.engine.alerting.rules import RuleSet, TargetInfo, evaluate_expr
from console.engine.config.loader import check_text
from console.engine.config.rules import Rule, default_rules
from console.engine.lang.ruleexpr import Matcher, parse_expr, parse_matcher
from console.engine.storage.store import MetricStore

T0 = 1_800_000_000.0
API = TargetInfo("api", "http", 10.0, "app")


def store_with(series: dict[str, list[float]], step: float = 10.0) -> MetricStore:
    """Samples at T0, T0+step, ...; NaN stands for a poll without a value."""
    store = MetricStore()
    for name, values in series.items():
        for i, v in enumerate(values):
            store.record(f"api:{name}", T0 + i * step, v)
    return store


# (expression, series, now offset, expected state, expected value)
CASES = [
    ("p95_ms > 2000", {"p95_ms": [100, 2500]}, 10, "fail", 2500),
    ("p95_ms > 2000", {"p95_ms": [2500, 100]}, 10, "ok", 100),
    ("p95_ms > 2000", {"p95_ms": [2500, math.nan]}, 10, "nodata", None),
    ("p95_ms > 2000", {"p95_ms": [2500]}, 31, "nodata", None),  # older than 3 intervals
    ("p95_ms > 2000", {}, 10, "nodata", None),
    ("down", {"up": [1, 0]}, 10, "fail", 0),
    ("down", {"up": [0, 1]}, 10, "ok", 1),
    ("mean(cpu_pct, 1m) > 80", {"cpu_pct": [70, 90, 90, 90]}, 30, "fail", 85),
    ("max(cpu_pct, 20s) >= 90", {"cpu_pct": [95, 10, 50]}, 20, "ok", 50),
    ("min(cpu_pct, 1m) < 20", {"cpu_pct": [95, 10, 50]}, 20, "fail", 10),
    ("sum(cpu_pct, 1m) == 155", {"cpu_pct": [95, 10, 50]}, 20, "fail", 155),
    ("rate(errors_total, 1m) > 0.5", {"errors_total": [0, 10, 20]}, 20, "fail", 1.0),
    ("increase(errors_total, 1m) > 10", {"errors_total": [0, 3, 6]}, 20, "ok", 9.0),
    ("increase(errors_total, 1m) > 10", {"errors_total": [0, 30, 2]}, 20, "fail", 48.0),
    ("increase(errors_total, 1m) > 10", {"errors_total": list(range(0, 70, 10))}, 60, "fail",
     60.0),
    ("ratio(failed, total, 1m) * 100 > 2", {"failed": [0, 2, 3], "total": [0, 50, 100]}, 20,
     "fail", 3.0),
    ("ratio(failed, total, 1m) * 100 > 2", {"failed": [0, 0, 0], "total": [0, 0, 0]}, 20,
     "nodata", None),
    ("ratio(used, cap) > 0.8", {"used": [90], "cap": [100]}, 0, "fail", 0.9),
    ("ratio(used, cap) > 0.8", {"used": [90], "cap": [0]}, 0, "nodata", None),
    ("quantile(0.5, latency_ms, 1m) > 15", {"latency_ms": [10, 20, 30]}, 20, "fail", 20),
    ("quantile(0.95, latency_ms, 1m) > 2000", {"latency_ms": [math.nan, math.nan]}, 10,
     "nodata", None),
    ("count(up == 0, 1m) > 3", {"up": [0, 0, 1, 0, 0, 1]}, 50, "fail", 4),
    ("count(up == 0, 30s) > 3", {"up": [0, 0, 1, 0, 0, 1]}, 50, "ok", 2),
    ("absent(up, 3)", {"up": [1]}, 20, "ok", 20),
    ("absent(up, 3)", {"up": [1]}, 31, "fail", 31),
    ("absent(up, 3)", {}, 0, "fail", None),
    ("error_pct / 100 > 0.5", {"error_pct": [60]}, 0, "fail", 0.6),
]


@pytest.mark.parametrize(("text", "series", "at", "state", "value"), CASES)
def test_every_rule_shape(text: str, series: dict[str, list[float]], at: float, state: str,
                          value: float | None) -> None:
    store = store_with(series)
    got_state, got_value, _, detail = evaluate_expr(parse_expr(text), store, API, T0 + at)
    assert got_state == state, detail
    if value is None:
        assert got_value is None
    else:
        assert got_value == pytest.approx(value)
    assert detail  # always says why
    # a RuleSet's evaluation keeps a value's detail unformatted until read: it reads the same
    [ev] = RuleSet([Rule(name="r", expr=text, targets=["api"])], [API]).evaluate(store, T0 + at)
    assert (ev.state, ev.detail) == (state, detail)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("p95_ms", "comparison"),
        ("p95_ms >", "threshold"),
        ("mean(x 5m) > 1", "','"),
        ("mean(x, 5) > 1", "unit"),
        ("foo(x) > 1", "unknown function"),
        ("quantile(1.5, x, 5m) > 1", "outside 0..1"),
        ("absent(up, 0)", "at least 1"),
        ("absent(up) > 1", "the end"),
        ("x > 1 extra", "the end"),
        ("x / 0 > 1", "division by zero"),
        ("x > $", "cannot read"),
    ],
)
def test_parse_errors_are_readable(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=r".") as info:
        parse_expr(text)
    assert words in str(info.value)


def test_matchers() -> None:
    labels = {"service": "app", "severity": "P1"}
    assert parse_matcher('service="app"').matches(labels)
    assert not parse_matcher("service!=app").matches(labels)
    assert parse_matcher('severity=~"P[01]"').matches(labels)
    assert parse_matcher('severity!~"P[23]"').matches(labels)
    assert parse_matcher("target=").matches(labels)  # absent label reads as empty
    assert parse_matcher("a = b") == Matcher("a", "=", "b")
    with pytest.raises(ValueError, match="not a matcher"):
        parse_matcher("=x")
    with pytest.raises(ValueError, match="regular expression"):
        parse_matcher('x=~"("')


def test_selection_explicit_vs_implicit() -> None:
    store = store_with({"up": [1], "p95_ms": [10]})
    rules = [
        Rule(name="implicit-cpu", expr="cpu_pct > 80"),
        Rule(name="explicit-cpu", expr="cpu_pct > 80", targets=["ap*"]),
        Rule(name="pg-only", expr="down", kinds=["postgres"]),
        Rule(name="p95", expr="p95_ms > 1"),
        Rule(name="off", expr="down", enabled=False),
    ]
    rs = RuleSet(rules, [API, TargetInfo("db", "postgres", 5.0)])
    got = {(e.rule.name, e.target): e.state for e in rs.evaluate(store, T0)}
    assert got == {("explicit-cpu", "api"): "nodata", ("pg-only", "db"): "nodata",
                   ("p95", "api"): "fail"}
    assert [r.name for r in rs.unmatched(store)] == ["implicit-cpu"]
    ev = next(e for e in rs.evaluate(store, T0) if e.rule.name == "p95")
    assert ev.label_dict() == {"service": "app", "rule": "p95", "target": "api",
                               "severity": "P2"}
    # The set remembers which series exist; one that appears later (a host starts
    # reporting cpu_pct) brings its rule in, and a dropped one takes it out again.
    store.record("api:cpu_pct", T0, 95.0)
    assert rs.unmatched(store) == []
    assert {(e.rule.name, e.state) for e in rs.evaluate(store, T0, target="api")} >= {
        ("implicit-cpu", "fail")}
    store.drop("api:cpu_pct")
    assert [r.name for r in rs.unmatched(store)] == ["implicit-cpu"]


def test_default_rules_reproduce_the_playbook() -> None:
    rules = {r.name: r for r in default_rules()}
    want = {
        "api-5xx-majority": ("P0", "error_pct > 50"),
        "database-unreachable": ("P0", "down"),
        "payment-webhooks-down": ("P0", "down"),
        "error-rate-high": ("P1", "error_pct > 5"),
        "latency-p95-slow": ("P1", "p95_ms > 2000"),
        "cpu-high": ("P1", "cpu_pct > 80"),
        "memory-high": ("P1", "memory_pct > 80"),
        "errors-burst": ("P1", "increase(errors_total, 1m) > 10"),
        "redis-hit-rate-low": ("P2", "mean(hit_rate_pct, 5m) < 70"),
        "failed-payment-rate": ("P1", "mean(payment_failed_pct, 5m) > 2"),
        # the severity table's rest (issue 10): degraded dependencies, performance below
        # its target
        "dependency-down": ("P1", "core_components_down > 0"),
        "dependency-degraded": ("P2", "other_components_down > 0"),
        "latency-p95-above-target": ("P2", "p95_ms > 200"),
        "target-down": ("P1", "down"),
        "no-data": ("P2", "absent(up, 3)"),
        "database-pool-exhausted": ("P0", "pool_usage_pct >= 100"),
        "database-wraparound-risk": ("P0", "wraparound_pct > 50"),
        "database-pool-high": ("P1", "pool_usage_pct > 80"),
        "database-long-transaction": ("P1", "long_transactions > 0"),
        "redis-memory-full": ("P1", "memory_noeviction_pct > 90"),
    }
    for name, (sev, expr) in want.items():
        assert (rules[name].severity, rules[name].expr) == (sev, expr), name
    assert rules["latency-p95-slow"].for_ == 300.0
    assert rules["latency-p95-above-target"].for_ == 600.0
    assert "latency-p95-above-target" in rules["latency-p95-slow"].inhibits
    assert {"dependency-down", "dependency-degraded"} <= set(rules["api-down"].inhibits)
    assert rules["cpu-high"].for_ == 300.0
    assert "error-rate-high" in rules["api-down"].inhibits
    # Redis memory is judged by eviction policy (redis-memory-full), not by memory-high.
    assert rules["memory-high"].kinds == ["host"]
    assert rules["redis-memory-full"].kinds == []  # only where memory_noeviction_pct exists


def test_config_rules_replace_defaults_and_validate_with_lines() -> None:
    text = textwrap.dedent("""\
        [[targets]]
        name = "api"
        kind = "http"
        url = "http://127.0.0.1:9/health"

        [[rules]]
        name = "error-rate-high"
        severity = "P2"
        expr = "error_pct > 10"
        for = "2m"
        """)
    settings, issues = check_text(text, "c.toml")
    assert issues == []
    assert settings is not None
    rs = RuleSet.from_settings(settings)
    mine = [r for r in rs.rules if r.name == "error-rate-high"]
    assert len(mine) == 1
    assert mine[0].severity == "P2"
    assert mine[0].for_ == 120.0
    assert len(rs.rules) == len(default_rules())

    bad = text.replace('"error_pct > 10"', '"error_pct >> 10"').replace('"2m"', '"soon"')
    bad += '\n[alerting]\nflap_low = 60\nflap_high = 40\n'
    _, issues = check_text(bad, "c.toml")
    got = [(i.line, i.key.split(".")[-1]) for i in issues]
    assert (9, "expr") in got
    assert (10, "for") in got
    assert any(i.key == "alerting.flap_low" and i.line == 13 for i in issues), issues


def test_duplicate_rule_names_rejected() -> None:
    text = '[[rules]]\nname = "a"\nexpr = "down"\n[[rules]]\nname = "a"\nexpr = "down"\n'
    _, issues = check_text(text, "c.toml")
    assert issues
    assert "unique" in issues[0].message


def test_an_ok_windowed_rule_waits_a_sixtieth_of_its_window_before_a_result_rechecks_it(
) -> None:
    """Per result, a 5 m quantile that read "ok" is evaluated again only after 5 s; a failing
    one, and an instant rule, on every result; a full round (the tick) always."""
    fast = TargetInfo("api", "http", 1.0, "app")
    rules = [Rule(name="p95", expr="quantile(0.95, latency_ms, 5m) > 100", targets=["api"]),
             Rule(name="down", expr="down", targets=["api"])]
    ruleset = RuleSet(rules, [fast])
    store = MetricStore()

    def result(t: float, latency: float) -> set[str]:
        store.record("api:latency_ms", T0 + t, latency)
        store.record("api:up", T0 + t, 1.0)
        return {ev.rule.name for ev in ruleset.evaluate(store, T0 + t, target="api")}

    assert result(0, 10) == {"p95", "down"}  # ok: holds for 300 / 60 = 5 s
    for t in range(1, 5):
        assert result(t, 10) == {"down"}
    assert result(5, 10) == {"p95", "down"}
    # a breach shows at the next recheck, then every result evaluates it while it fails
    assert result(6, 5000) == {"down"}
    assert result(10, 5000) == {"p95", "down"}
    assert [ev.state for ev in ruleset.evaluate(store, T0 + 10, target="api")
            if ev.rule.name == "p95"] == ["fail"]
    assert result(11, 5000) == {"p95", "down"}
    # once fast samples bring p95 back under 100, it waits again (evaluated until then)
    t = 12
    while True:
        assert result(t, 10) == {"p95", "down"}  # failing: evaluated on every result
        p95 = (store.quantiles("api:latency_ms", 300, (0.95,), now=T0 + t) or {})[0.95]
        if p95 <= 100:
            break  # read "ok" just now
        t += 1
    assert result(t + 1, 10) == {"down"}
    # the tick's full round evaluates it whatever the wait; a failure it reads ends the wait
    assert {ev.rule.name for ev in ruleset.evaluate(store, T0 + t + 1)} == {"p95", "down"}
    for k in range(1, 40):  # a burst of slow answers within the wait (until t + 5)
        store.record("api:latency_ms", T0 + t + 1 + k / 40, 5000)
    assert [ev.state for ev in ruleset.evaluate(store, T0 + t + 2)
            if ev.rule.name == "p95"] == ["fail"]
    assert result(t + 3, 5000) == {"p95", "down"}
    # a 10 s target's 5 m window is evaluated on every result (5 s is less than its interval)
    slow = TargetInfo("api", "http", 10.0, "app")
    ruleset = RuleSet(rules, [slow])
    assert result(t + 10, 10) == result(t + 20, 10) == {"p95", "down"}
