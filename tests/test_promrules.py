"""`opsconsole rules import/export` and keep_firing_for, checked with Prometheus's own promtool.

`promtool check rules` must accept every export; `promtool test rules` must agree with the
console's replay (`rules test`) at every evaluation for `for` and `keep_firing_for`, for an
exported rule and for an imported one.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from console.engine.alerting.promrules import (
    dump_rule_file,
    export_rules,
    import_rules,
    load_rule_file,
    severity_of,
    split_comparison,
)
from console.engine.alerting.ruletest import parse_rule_test, run_rule_test
from console.engine.config.loader import check_text
from tests.promservers import PROMTOOL
from tests.test_cli import run

CONFIG = textwrap.dedent("""\
    [[targets]]
    name = "remote"
    kind = "promql"
    url = "http://127.0.0.1:9"
    interval = "10s"
    [targets.metrics]
    cpu = 'avg by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m])) * 100'
    errors = 'sum(rate(http_requests_total{status=~"5.."}[1m]))'
    requests = 'sum(rate(http_requests_total[1m]))'
    up = 'min(up{job="api"})'

    [[targets]]
    name = "api"
    kind = "http"
    url = "http://127.0.0.1:9/health"

    [[rules]]
    name = "cpu-hot"
    expr = "mean(cpu, 5m) > 80"
    severity = "P1"
    targets = ["remote"]
    for = "5m"
    summary = "CPU above 80 % for 5 min"
    runbook = "slow-performance"

    [[rules]]
    name = "error-ratio"
    expr = "ratio(errors, requests, 5m) * 100 > 5"
    severity = "P0"
    targets = ["remote"]
    keep_firing_for = "10m"
    labels = { team = "payments" }

    [[rules]]
    name = "store-down"
    expr = "up == 0"
    severity = "P0"
    kinds = ["promql"]
    failure_threshold = 3
    success_threshold = 2

    [[rules]]
    name = "remote-absent"
    expr = "absent(cpu, 3)"
    targets = ["remote"]

    [[rules]]
    name = "api-down"
    expr = "down"
    severity = "P0"
    targets = ["api"]

    [alerting]
    default_rules = false
    """)


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_export_is_accepted_by_promtool(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    out = run("rules", "export", "--config", str(config), "-o", str(tmp_path / "rules.yml"))
    assert out.returncode == 0, out.stderr
    check = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 4 rules found" in check.stdout  # promtool's own count
    assert "not exported: api-down on api: the console's own probe results" in out.stderr
    doc = load_rule_file((tmp_path / "rules.yml").read_text())
    rules = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    assert set(rules) == {"cpu-hot", "error-ratio", "store-down", "remote-absent"}
    assert rules["cpu-hot"]["for"] == "5m"
    assert rules["cpu-hot"]["labels"] == {"severity": "P1", "target": "remote",
                                          "runbook": "slow-performance"}
    # consecutive samples become time: 3 failing samples 10 s apart = 20 s, 2 good = 10 s
    assert rules["store-down"]["for"] == "20s"
    assert rules["store-down"]["keep_firing_for"] == "10s"
    assert rules["error-ratio"]["keep_firing_for"] == "10m"
    assert rules["error-ratio"]["labels"]["team"] == "payments"


def test_import_native_and_through_a_promql_target(tmp_path: Path) -> None:
    rule_file = tmp_path / "team.rules.yml"
    rule_file.write_text(textwrap.dedent("""\
        groups:
          - name: node
            rules:
              - record: job:up:sum
                expr: sum by (job) (up)
              - alert: HighCPU
                expr: avg_over_time(cpu_pct[5m]) > 80
                for: 10m
                keep_firing_for: 5m
                labels: {severity: warning, team: infra}
                annotations: {summary: "CPU high", runbook_url: "https://wiki/cpu"}
              - alert: ErrorRatio
                expr: rate(errors_total[5m]) / rate(requests_total[5m]) * 100 > 2
                labels: {severity: critical}
              - alert: TargetMissing
                expr: absent(up)
              - alert: InstanceDown
                expr: up{job="node"} == 0
                for: 2m
                labels: {severity: critical, runbook: target-down}
              - alert: DiskFull
                expr: predict_linear(node_filesystem_free_bytes[6h], 86400) < 0
        """))
    native = run("rules", "import", str(rule_file))
    assert native.returncode == 1, native.stderr  # some could not be taken
    rules = {r["name"]: r for r in tomllib.loads(native.stdout)["rules"]}
    assert rules["HighCPU"]["expr"] == "mean(cpu_pct, 5m) > 80"
    assert rules["HighCPU"]["severity"] == "P2"
    assert (rules["HighCPU"]["for"], rules["HighCPU"]["keep_firing_for"]) == ("10m", "5m")
    assert rules["HighCPU"]["runbook"] == "https://wiki/cpu"
    assert rules["HighCPU"]["labels"] == {"team": "infra"}
    assert rules["ErrorRatio"]["expr"] == "ratio(errors_total, requests_total, 5m) * 100 > 2"
    assert rules["ErrorRatio"]["severity"] == "P0"
    assert rules["TargetMissing"]["expr"] == "absent(up, 3)"
    assert "InstanceDown" not in rules
    assert "not imported: node/job:up:sum: a recording rule" in native.stderr
    assert "node/InstanceDown: the console cannot evaluate" in native.stderr
    assert "--target NAME" in native.stderr

    via = run("rules", "import", str(rule_file), "--target", "prom",
              "--url", "http://prometheus:9090")
    assert via.returncode == 1  # the recording rule still is not an alert
    doc = tomllib.loads(via.stdout)
    [target] = doc["targets"]
    assert target["kind"] == "promql"
    assert target["metrics"] == {  # the store evaluates every expression
        "highcpu": "avg_over_time(cpu_pct[5m])",
        "errorratio": "rate(errors_total[5m]) / rate(requests_total[5m]) * 100",
        "targetmissing": "count(absent(up)) or vector(0)",
        "instancedown": 'up{job="node"}',
        "diskfull": "predict_linear(node_filesystem_free_bytes[6h], 86400)"}
    rules = {r["name"]: r for r in doc["rules"]}
    assert rules["TargetMissing"]["expr"] == "targetmissing > 0"
    assert "TargetMissing: no comparison with a number: one alert" in via.stderr
    assert rules["InstanceDown"] == {
        "name": "InstanceDown", "for": "2m", "targets": ["prom"], "expr": "instancedown == 0",
        "severity": "P0", "failure_threshold": 1, "success_threshold": 1,
        "runbook": "target-down"}
    assert rules["DiskFull"]["expr"] == "diskfull < 0"
    # what it printed is a config the console loads
    settings, issues = check_text(via.stdout)
    assert issues == []
    assert settings is not None
    assert len(settings.rules) == 5


def test_import_reports_a_broken_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules: [\n")
    out = run("rules", "import", str(bad))
    assert out.returncode == 2
    assert "not valid YAML (line" in out.stderr
    bad.write_text("alerts: []\n")
    out = run("rules", "import", str(bad))
    assert out.returncode == 2
    assert "needs a top-level `groups:` list" in out.stderr
    out = run("rules", "import", str(tmp_path / "missing.yml"))
    assert out.returncode == 2
    assert "cannot read" in out.stderr


def test_round_trip_export_then_import_keeps_the_promql() -> None:
    from console.engine.config.loader import load_config_text

    settings = load_config_text(CONFIG)
    doc, _ = export_rules(settings)
    again = import_rules(load_rule_file(dump_rule_file(doc)), target="remote")
    exported = {r["alert"]: r for r in doc["groups"][0]["rules"]}
    for table in again.rules:
        metric, op, threshold = table["expr"].split()
        left, op2, value = split_comparison(exported[table["name"]]["expr"]) or ("", "", 0)
        if metric in again.metrics and again.metrics[metric].startswith("count("):
            continue  # absent_over_time: fires while it returns series
        assert again.metrics[metric] == left
        assert (op, float(threshold)) == (op2, value)


def test_severity_words() -> None:
    assert [severity_of({"severity": s}) for s in ("critical", "P1", "warning", "info")] == [
        "P0", "P1", "P2", "P3"]
    assert severity_of({}) is None
    assert severity_of({"priority": "high"}) == "P1"


def test_split_comparison_only_at_top_level() -> None:
    assert split_comparison('sum(rate(x{a=">"}[5m])) > 0.5') == (
        'sum(rate(x{a=">"}[5m]))', ">", 0.5)
    assert split_comparison("0.5 < x") == ("x", ">", 0.5)
    assert split_comparison("x > bool 1") is None
    assert split_comparison("a > b") is None
    assert split_comparison("a > 1 and b > 2") is None
    assert split_comparison("absent(x)") is None


# -- keep_firing_for and for: the console's replay against promtool test rules -------------------


def _agrees_with_promtool(tmp_path: Path, series: str, rule: dict[str, Any], alert: dict[str,
                          Any], end: float) -> list[str]:
    """States the console's `rules test` replay gives at every 10 s, checked by promtool
    test rules against Prometheus's own evaluation of `alert`; returns the console's."""
    test = parse_rule_test({"interval": "10s", "target": "remote", "kind": "promql",
                            "series": {"x": series}, "rules": [rule]})
    report = run_rule_test(test)
    state = "inactive"
    states = []
    changes = {s.at: s.state for s in report.steps}
    times = [k * 10.0 for k in range(int(end // 10) + 1)]
    for t in times:
        state = changes.get(t, state)
        states.append(state)
    (tmp_path / "rules.yml").write_text(json.dumps(
        {"groups": [{"name": "g", "interval": "10s", "rules": [alert]}]}))
    cases = [{"eval_time": f"{int(t)}s", "alertname": alert["alert"],
              "exp_alerts": [{"exp_labels": {"job": "t"}}] if s == "firing" else []}
             for t, s in zip(times, states, strict=True)]
    (tmp_path / "test.yml").write_text(json.dumps({
        "rule_files": ["rules.yml"], "evaluation_interval": "10s",
        "tests": [{"interval": "10s",
                   "input_series": [{"series": 'x{job="t"}', "values": series}],
                   "alert_rule_test": cases}]}))
    result = promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return states


def test_for_and_keep_firing_for_fire_and_resolve_when_prometheus_does(tmp_path: Path) -> None:
    series = "0 1x5 0x12"
    states = _agrees_with_promtool(
        tmp_path, series,
        {"name": "hot", "expr": "x > 0.5", "for": "20s", "keep_firing_for": "60s",
         "failure_threshold": 1, "success_threshold": 1},
        {"alert": "hot", "expr": "x > 0.5", "for": "20s", "keep_firing_for": "60s"},
        end=170)
    # it did fire and resolve inside the window (the comparison is not vacuous)
    assert "firing" in states
    assert states[-1] == "resolved"


def test_an_exported_rule_fires_and_resolves_when_prometheus_does(tmp_path: Path) -> None:
    """Default thresholds (3 failing, 2 good samples) exported as for/keep_firing_for."""
    from console.engine.config.loader import load_config_text

    settings = load_config_text(textwrap.dedent("""\
        [[targets]]
        name = "remote"
        kind = "promql"
        url = "http://127.0.0.1:9"
        interval = "10s"
        metrics = { x = "x" }
        [[rules]]
        name = "hot"
        expr = "x > 0.5"
        targets = ["remote"]
        keep_firing_for = "30s"
        [alerting]
        default_rules = false
        """))
    doc, _ = export_rules(settings)
    [exported] = doc["groups"][0]["rules"]
    exported["expr"] = "x > 0.5"  # the metric's PromQL is `(x)`; promtool reads both alike
    rule = settings.rules[0].model_dump(by_alias=True, exclude_defaults=True)
    states = _agrees_with_promtool(tmp_path, "0 1x6 0 1 0x10", rule,
                                   {k: v for k, v in exported.items()
                                    if k not in ("labels", "annotations")}, end=190)
    assert "firing" in states
    assert states[-1] == "resolved"


def test_a_rule_file_whose_aliases_explode_is_refused_at_once() -> None:
    """A "billion laughs" file (nine levels of nine aliases) took 46 s and 3.1 GB in
    `rules import`; anchors that expand modestly still load."""
    from console.engine.alerting.promrules import MAX_YAML_NODES, load_rule_file

    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    bomb = "\n".join([*levels, "groups: [*i]"]) + "\n"
    with pytest.raises(ValueError, match=f"expands past {MAX_YAML_NODES:,} nodes"):
        load_rule_file(bomb)
    shared = ("common: &labels {team: payments}\n"
              "groups:\n- name: g\n  rules:\n"
              "  - {alert: A, expr: up == 0, labels: *labels}\n"
              "  - {alert: B, expr: up == 0, labels: *labels}\n")
    doc = load_rule_file(shared)
    assert [r["labels"] for r in doc["groups"][0]["rules"]] == [{"team": "payments"}] * 2
    assert load_rule_file("") is None
    with pytest.raises(ValueError, match=r"not valid YAML \(line 3\)"):
        load_rule_file("groups:\n  - [unclosed\n")
