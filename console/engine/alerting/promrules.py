"""Rules in the ecosystem's format: Prometheus rule files in (`rules import`) and out (`export`).

**Import.** A Prometheus rule file (`groups[].rules[]` with `alert`, `expr`, `for`,
`keep_firing_for`, `labels`, `annotations`) becomes `[[rules]]`:

* natively (the file's series are the console's own metrics), when the expression is one
  the console evaluates on its own store: a plain metric, `avg/max/min/sum_over_time(m[w])`,
  `rate`/`increase(m[w])`,
  `quantile_over_time(q, m[w])`, `a / b`, `rate(a[w]) / rate(b[w])`, optionally `* k`,
  compared with a number, and `absent(m)`: `avg_over_time(cpu_pct[5m]) > 80` is
  `mean(cpu_pct, 5m) > 80`. Anything else (label matchers, aggregations, vector matching)
  is reported, with why;
* through a `promql` target (`--target NAME`: the series are that store's): every
  expression's left side becomes a metric of that target, evaluated by the store, and the
  rule compares it (`high_errors > 0.05`), one alert per series as Prometheus would; an
  expression with no comparison to a number (`absent(...)`, `a > b`, `x and y`) fires while
  it returns any series.

Imported rules keep Prometheus's semantics: `failure_threshold = success_threshold = 1`,
so `for` and `keep_firing_for` alone decide, counted as Prometheus counts them.

**Export.** The console's rules on `promql` targets become alerting rules over the targets'
PromQL (`promtool check rules` accepts the file). The console's consecutive-sample
thresholds become time: `for` is at least (failure_threshold − 1) × the target's interval and
`keep_firing_for` at least (success_threshold − 1) × it, which under regular sampling fires
and resolves at the same evaluations. Rules on the console's own probes (http, postgres…)
have no series in Prometheus and are reported as not exported.

**Severity.** `severity` labels map to the playbook's P0–P3: P0–P3 as they are, `critical`/
`page` → P0, `high`/`error` → P1, `warning`/`medium` → P2, `info`/`low`/`none` → P3.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.engine.config.rules import Rule, default_rules
from console.engine.lang.durations import parse_duration
from console.engine.lang.ruleexpr import Expr, parse_expr
from console.engine.model import Severity

__all__ = [
    "ImportResult",
    "export_rules",
    "import_rules",
    "import_toml",
    "severity_of",
    "split_comparison",
]

_SEVERITY_WORDS: dict[str, Severity] = {
    "p0": "P0", "p1": "P1", "p2": "P2", "p3": "P3",
    "critical": "P0", "page": "P0", "high": "P1", "error": "P1",
    "warning": "P2", "warn": "P2", "medium": "P2", "info": "P3", "low": "P3", "none": "P3",
}
_CMP = ("==", "!=", ">=", "<=", ">", "<")
_FLIP = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}
_NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"
_DUR = r"\d+(?:ms|s|m|h|d|w|y)(?:\d+(?:ms|s|m|h|d|w|y))*"
_NUMBER = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$")


def severity_of(labels: Mapping[str, str], default: Severity | None = None
                ) -> Severity | None:
    """The playbook severity a `severity` (or `priority`) label means; `default` if none."""
    for key in ("severity", "priority"):
        word = str(labels.get(key, "")).strip().lower()
        if word in _SEVERITY_WORDS:
            return _SEVERITY_WORDS[word]
    return default


# -- PromQL, as far as needed -----------------------------------------------------------------


def _tokens(expr: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of the top-level parts that matter here: comparison operators
    outside parentheses, brackets, braces and strings ("cmp"), and `bool` ("bool")."""
    out: list[tuple[int, int, str]] = []
    depth = 0
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = i + 1
            while j < n and expr[j] != c:
                j += 2 if expr[j] == "\\" else 1
            i = j + 1
            continue
        if c == "#":  # a comment runs to the end of the line
            while i < n and expr[i] != "\n":
                i += 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            two = expr[i:i + 2]
            if two in ("==", "!=", ">=", "<="):
                out.append((i, i + 2, "cmp"))
                i += 2
                continue
            if c in "<>":
                out.append((i, i + 1, "cmp"))
            elif expr.startswith("bool", i) and not (i and (expr[i - 1].isalnum()
                                                           or expr[i - 1] == "_")):
                out.append((i, i + 4, "bool"))
        i += 1
    return out


def split_comparison(expr: str) -> tuple[str, str, float] | None:
    """`left op number` for an expression that is one top-level comparison with a number
    (`x > 0.5`, `0.5 < x`); None for anything else (no comparison, two, vector vs vector,
    `bool`, set operators)."""
    parts = _tokens(expr)
    if any(kind == "bool" for *_, kind in parts):
        return None
    cmps = [(a, b) for a, b, kind in parts if kind == "cmp"]
    if len(cmps) != 1:
        return None
    a, b = cmps[0]
    left, op, right = expr[:a].strip(), expr[a:b], expr[b:].strip()
    if re.search(r"\b(and|or|unless|on|ignoring|group_left|group_right)\b",
                 _without_strings(left + " " + right)):
        return None
    if _NUMBER.match(right) and left:
        return left, op, float(right)
    if _NUMBER.match(left) and right:
        return right, _FLIP[op], float(left)
    return None


def _without_strings(text: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', text)


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, c in enumerate(text):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def native_condition(left: str, op: str, threshold: float) -> str | None:
    """The console's own expression for `left op threshold`, if it reads the same."""
    scale = 1.0
    body = _strip_parens(left)
    m = re.match(r"^(.*?)\s*\*\s*([-+]?\d+(?:\.\d+)?)$", body, re.S)
    if m:
        body, scale = _strip_parens(m.group(1)), float(m.group(2))
    name, dur = _NAME, _DUR
    fn: str | None = None
    patterns: list[tuple[str, str]] = [
        (rf"^({name})$", "{0}"),
        (rf"^(avg|max|min|sum)_over_time\(\s*({name})\s*\[({dur})\]\s*\)$", "{f}({1}, {2})"),
        (rf"^(rate|increase)\(\s*({name})\s*\[({dur})\]\s*\)$", "{0}({1}, {2})"),
        (rf"^quantile_over_time\(\s*(\d*\.?\d+)\s*,\s*({name})\s*\[({dur})\]\s*\)$",
         "quantile({0}, {1}, {2})"),
        (rf"^(?:rate|increase)\(\s*({name})\s*\[({dur})\]\s*\)\s*/\s*"
         rf"(?:rate|increase)\(\s*({name})\s*\[\2\]\s*\)$", "ratio({0}, {2}, {1})"),
        (rf"^({name})\s*/\s*({name})$", "ratio({0}, {1})"),
    ]
    for pattern, form in patterns:
        m = re.match(pattern, body)
        if m:
            groups = list(m.groups())
            f = {"avg": "mean"}.get(groups[0], groups[0])
            fn = form.format(*groups, f=f)
            break
    if fn is None:
        return None
    text = fn + (f" * {scale:g}" if scale != 1.0 else "") + f" {op} {threshold:g}"
    try:
        parse_expr(text)
    except ValueError:
        return None
    return text


# -- import -----------------------------------------------------------------------------------


@dataclass(slots=True)
class ImportResult:
    """What an import made: rule tables (as a config writes them), metrics for the promql
    target (with --target), and every alert it could not take, with why."""

    rules: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _rule_name(alert: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", alert).strip("-")[:60] or "alert"
    name, i = base, 2
    while name in taken:
        name = f"{base[:58]}-{i}"
        i += 1
    taken.add(name)
    return name


def _metric_name(alert: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", alert).strip("_").lower()[:40] or "alert"
    if not re.match(r"[A-Za-z_]", base):
        base = "a_" + base
    name, i = base, 2
    while name in taken:
        name = f"{base[:38]}_{i}"
        i += 1
    taken.add(name)
    return name


def import_rules(doc: Any, *, target: str | None = None,
                 existing: Iterable[str] = ()) -> ImportResult:
    """A parsed Prometheus rule file (`yaml.safe_load`) as console rules; ValueError if it
    is not a rule file at all. `existing` are rule names already in the config."""
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise ValueError("not a Prometheus rule file: it needs a top-level `groups:` list")
    out = ImportResult()
    names = set(existing)
    metric_names: set[str] = set()
    for g in doc["groups"]:
        if not isinstance(g, dict):
            raise ValueError("each entry of `groups:` must be a mapping with name and rules")
        group = str(g.get("name", "?"))
        for r in g.get("rules") or []:
            if not isinstance(r, dict):
                continue
            if "record" in r:
                out.skipped.append(f"{group}/{r.get('record')}: a recording rule (record it "
                                   "in Prometheus; a promql target can read its series)")
                continue
            alert = str(r.get("alert", "")).strip()
            expr = str(r.get("expr", "")).strip()
            where = f"{group}/{alert or '?'}"
            if not alert or not expr:
                out.skipped.append(f"{where}: needs both alert and expr")
                continue
            labels = {str(k): str(v) for k, v in (r.get("labels") or {}).items()}
            annotations = {str(k): str(v) for k, v in (r.get("annotations") or {}).items()}
            table: dict[str, Any] = {"name": _rule_name(alert, names)}
            try:
                for key in ("for", "keep_firing_for"):
                    if r.get(key) not in (None, "", "0s", 0):
                        value = str(r[key])
                        parse_duration(value)
                        table[key] = value
            except ValueError as exc:
                out.skipped.append(f"{where}: {exc}")
                names.discard(table["name"])
                continue
            split = split_comparison(expr)
            condition: str | None = None
            if target is None:  # the series are the console's own: translate, or report
                condition = native_condition(*split) if split else None
                if split is None:
                    m = re.match(rf"^absent\(\s*({_NAME})\s*\)$", _strip_parens(expr))
                    condition = f"absent({m.group(1)}, 3)" if m else None
                if condition is None:
                    why = ("label matchers, aggregations or vector matching" if split
                           else "no comparison with a number")
                    out.skipped.append(f"{where}: the console cannot evaluate {expr!r} on its "
                                       f"own ({why}); import with --target NAME to have a "
                                       "promql target's store evaluate it")
                    names.discard(table["name"])
                    continue
            else:  # the series are the store's: it evaluates, the rule compares
                metric = _metric_name(alert, metric_names)
                if split:
                    left, op, threshold = split
                    out.metrics[metric] = left
                    condition = f"{metric} {op} {threshold:g}"
                else:
                    # Prometheus fires while the expression returns series: count them
                    out.metrics[metric] = f"count({expr}) or vector(0)"
                    condition = f"{metric} > 0"
                    out.notes.append(f"{where}: no comparison with a number: one alert while "
                                     "the expression returns any series (not one per series)")
                table["targets"] = [target]
            table["expr"] = condition
            table["severity"] = severity_of(labels, "P2")
            if "severity" not in labels:
                out.notes.append(f"{where}: no severity label; imported as P2")
            table["failure_threshold"] = 1
            table["success_threshold"] = 1
            summary = annotations.get("summary") or annotations.get("description")
            if summary:
                table["summary"] = summary[:300]
            runbook = (labels.get("runbook") or annotations.get("runbook")
                       or annotations.get("runbook_url"))
            if runbook:
                table["runbook"] = runbook[:300]
            extra = {k: v for k, v in labels.items()
                     if k not in ("severity", "runbook", "rule", "target")}
            if extra:
                table["labels"] = extra
            Rule.model_validate(table)  # what the config loader will check
            out.rules.append(table)
    return out


def import_toml(result: ImportResult, *, target: str | None = None,
                url: str | None = None) -> str:
    """The import as config text: a promql target (with --url) or the metrics to add to
    it, then the `[[rules]]`."""
    import tomli_w

    chunks: list[str] = []
    if result.metrics and target is not None:
        if url is not None:
            head = tomli_w.dumps({"name": target, "kind": "promql", "url": url})
            chunks.append("[[targets]]\n" + head + "\n[targets.metrics]\n"
                          + tomli_w.dumps(result.metrics))
        else:
            chunks.append(f"# add these to the [targets.metrics] of the promql target "
                          f"{target!r}:\n" + "".join(
                              "# " + line + "\n"
                              for line in tomli_w.dumps(result.metrics).splitlines()))
    for table in result.rules:
        labels = table.get("labels")
        plain = {k: v for k, v in table.items() if k != "labels"}
        text = "[[rules]]\n" + tomli_w.dumps(plain)
        if labels:
            text += "\n[rules.labels]\n" + tomli_w.dumps(labels)
        chunks.append(text)
    return "\n".join(chunks)


# -- export -----------------------------------------------------------------------------------


def _promql_for(expr: Expr, metrics: Mapping[str, str], interval: float) -> str | None:
    """The PromQL of a console condition on a promql target whose metrics are `metrics`."""
    def q(name: str | None) -> str | None:
        return None if name is None or name not in metrics else f"({metrics[name]})"

    a = q(expr.metric)
    if a is None:
        return None
    w = _prom_duration(expr.window) if expr.window else None
    fn = expr.fn
    if fn == "absent":
        span = _prom_duration((expr.intervals or 1) * interval)
        return f"absent_over_time({a}[{span}:])"
    if fn == "latest":
        body = a
    elif fn in ("mean", "avg", "max", "min", "sum"):
        name = {"mean": "avg", "avg": "avg"}.get(fn, fn)
        body = f"{name}_over_time({a}[{w}:])"
    elif fn in ("rate", "increase"):
        body = f"{fn}({a}[{w}:])"
    elif fn == "quantile":
        body = f"quantile_over_time({expr.q:g}, {a}[{w}:])"
    elif fn == "count":
        body = f"count_over_time(({a} {expr.match_op} {expr.match_value:g})[{w}:])"
    elif fn == "ratio":
        b = q(expr.metric2)
        if b is None:
            return None
        body = f"{a} / {b}" if expr.window is None else (
            f"increase({a}[{w}:]) / increase({b}[{w}:])")
    else:
        return None
    if expr.scale != 1.0:
        body = f"({body}) * {expr.scale:g}"
    return f"{body} {expr.op} {expr.threshold:g}"


def export_rules(settings: Any, *, defaults: bool = False
                 ) -> tuple[dict[str, Any], list[str]]:
    """(rule file as data, what was not exported and why) for the config's rules (and the
    shipped defaults with `defaults`), one alerting rule per rule and promql target."""
    from console.engine.alerting.rules import TargetInfo, selects

    rules: list[Rule] = [r for r in getattr(settings, "rules", []) if r.enabled]
    if defaults:
        own = {r.name for r in rules}
        rules = [r for r in default_rules() if r.name not in own] + rules
    targets = list(getattr(settings, "targets", []))
    skipped: list[str] = []
    out: list[dict[str, Any]] = []
    for rule in rules:
        expr = parse_expr(rule.expr)
        chosen = [t for t in targets
                  if selects(rule, TargetInfo(t.name, t.kind, t.interval, t.group))]
        promql = [t for t in chosen if t.kind == "promql"]
        others = [t.name for t in chosen if t.kind != "promql"]
        if others and rule.explicit:
            skipped.append(f"{rule.name} on {', '.join(others)}: the console's own probe "
                           "results, not series Prometheus has")
        written = 0
        for t in promql:
            promql_expr = _promql_for(expr, t.metrics, t.interval)
            if promql_expr is None:
                if rule.explicit:
                    skipped.append(f"{rule.name} on {t.name}: {', '.join(expr.series)} is not "
                                   "one of the target's metrics")
                continue
            for_ = max(rule.for_, (rule.failure_threshold - 1) * t.interval)
            keep = max(rule.keep_firing_for, (rule.success_threshold - 1) * t.interval)
            item: dict[str, Any] = {"alert": rule.name, "expr": promql_expr}
            if for_:
                item["for"] = _prom_duration(for_)
            if keep:
                item["keep_firing_for"] = _prom_duration(keep)
            labels = {**rule.labels, "severity": rule.severity, "target": t.name}
            if rule.runbook:
                labels["runbook"] = rule.runbook
            item["labels"] = labels
            annotations = {"summary": rule.summary or rule.name,
                           "console_expr": rule.expr}
            item["annotations"] = annotations
            out.append(item)
            written += 1
        if not written and not rule.explicit and not promql:
            skipped.append(f"{rule.name}: applies to no promql target")
    return {"groups": [{"name": "opsconsole", "rules": out}]}, skipped


def _prom_duration(seconds: float) -> str:
    """Prometheus duration syntax (`1m30s`, whole milliseconds at most)."""
    ms = int(round(seconds * 1000))
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000),
                       ("ms", 1)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts) or "0s"


def dump_rule_file(doc: Mapping[str, Any]) -> str:
    """YAML text of a rule file (block style, keys in the order given)."""
    import yaml

    return str(yaml.safe_dump(dict(doc), sort_keys=False, allow_unicode=True,
                              default_flow_style=False, width=1000))


MAX_YAML_NODES = 1_000_000
"""A rule file may expand (aliases counted in full) to this many YAML nodes: a walk's
"billion laughs" file (nine levels of nine aliases) took 46 s and 3.1 GB before."""


def _expanded(node: Any, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for once every alias is expanded (memoised: a shared
    node is counted from its memo, so this costs the file's size, not the expansion's)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    value = node.value
    n = 1
    if isinstance(value, list):
        for item in value:
            if isinstance(item, tuple):  # a mapping's (key, value)
                n += _expanded(item[0], sizes) + _expanded(item[1], sizes)
            else:
                n += _expanded(item, sizes)
            if n > MAX_YAML_NODES:
                break
    sizes[id(node)] = n
    return n


def load_rule_file(text: str) -> Any:
    """A rule file's YAML as data (safe types only); ValueError with the line for a syntax
    error, and for a file whose aliases expand past MAX_YAML_NODES."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded(node, {}) > MAX_YAML_NODES:
            raise ValueError(f"the YAML expands past {MAX_YAML_NODES:,} nodes through its "
                             "aliases (&anchor/*alias): not a rule file")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ValueError("not a rule file: the YAML is nested too deeply") from None
    finally:
        loader.dispose()

