"""The playbook's four ready-made dashboards, built from the targets a config has.

The monitoring playbook lays out four Grafana dashboards (Application overview, Database
performance, Business metrics, Infrastructure) and gives targets for their numbers (p95 <
200 ms, error rate < 0.5 %, …). A config that declares no dashboards of those names gets them
here, each panel carrying the playbook's target as its `warn` and the alert level as its
`crit`, so a fresh config is useful at once and every number reads against its goal.

Only series a target can report get a panel: an HTTP target's round trip, the PostgreSQL,
Redis and host probes' own metrics, a prometheus target's derived `metrics` whose names
follow the usual conventions (`p95_ms`, `error_pct`, `active_users`, `revenue_per_h`, …) and
a PostgreSQL target's custom `queries`. A dashboard with no panel is left out.

Merging (`with_playbook_dashboards`, applied by the Scheduler so the TUI, hot reload and the
headless commands all see the same boards): the config's dashboards come first and keep their
numbers; a ready-made one is added after them unless the config has a dashboard of that name;
`[console] playbook_dashboards = false` turns them all off. A config panel showing the same
series with thresholds of its own is reused (the operator's thresholds win); every generated
panel gets a key no config panel uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from console.engine.config.schema import (
    Dashboard,
    HttpTarget,
    Panel,
    PostgresTarget,
    PrometheusTarget,
    RedisTarget,
    Settings,
    TargetBase,
)

__all__ = [
    "APPLICATION",
    "BUSINESS",
    "DATABASE",
    "INFRASTRUCTURE",
    "READY_MADE",
    "HOST_METRICS",
    "LIGHTHOUSE_METRICS",
    "is_business_metric",
    "playbook_dashboards",
    "query_metrics",
    "with_playbook_dashboards",
]

APPLICATION = "Application overview"
DATABASE = "Database performance"
BUSINESS = "Business metrics"
INFRASTRUCTURE = "Infrastructure"
READY_MADE = (APPLICATION, DATABASE, BUSINESS, INFRASTRUCTURE)

# What a host target reports (probes/host.py; a remote node_exporter host reports the same).
HOST_METRICS = frozenset({
    "cpu_pct", "memory_pct", "disk_used_pct", "load1", "memory_used_bytes",
    "memory_total_bytes", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
    "net_rx_bytes_per_s", "net_tx_bytes_per_s",
})
# The PostgreSQL and Redis metrics the boards use (a test checks them against the probes).
POSTGRES_USED = frozenset({
    "latency_ms", "pool_usage_pct", "slow_queries", "cache_hit_pct", "xact_per_s",
    "db_size_bytes", "db_growth_bytes_per_day",
})
REDIS_USED = frozenset({"latency_ms", "hit_rate_pct", "used_memory_bytes", "evicted_per_s"})


@dataclass(frozen=True, slots=True)
class _Spec:
    """One kind of panel: the metric (exact name or a naming convention) and its targets."""

    names: str  # a regular expression matched against the whole metric name
    title: str
    unit: str = ""
    warn: float | None = None
    crit: float | None = None
    lower_is_better: bool = True

    def matches(self, metric: str) -> bool:
        return re.fullmatch(self.names, metric, re.IGNORECASE) is not None


# Application overview, from a prometheus target's derived metrics (playbook: "Backend
# Metrics" targets as warn, the P1 alert levels as crit).
_APP_PROM = (
    _Spec(r"(http_)?(requests?|req)(_per_s|_per_sec|_rate|_rps)|rps", "Request rate", "req/s"),
    _Spec(r"(http_)?(error|errors|5xx)(_rate)?_pct|error_rate", "Error rate", "%", 0.5, 5.0),
    _Spec(r"(latency_)?p50(_latency)?_ms", "Latency p50", "ms", 100.0, 1000.0),
    _Spec(r"(latency_)?p95(_latency)?_ms", "Latency p95", "ms", 200.0, 2000.0),
    _Spec(r"(latency_)?p99(_latency)?_ms", "Latency p99", "ms", 500.0, 2000.0),
    _Spec(r"active_users|users_active|online_users", "Active users"),
    _Spec(r"websockets?|websocket_connections|ws_connections", "WebSocket connections"),
)
# Application overview, frontend (playbook "Frontend Metrics": Lighthouse score > 90, FCP <
# 1.5 s, TTI < 3 s, CLS < 0.1) from a lighthouse target; LCP and TBT at Lighthouse's own
# "good" limits (2.5 s, 200 ms). warn is the target, crit Lighthouse's "poor" line.
LIGHTHOUSE_METRICS = ("performance_score", "fcp_ms", "lcp_ms", "tti_ms", "tbt_ms", "cls")
_APP_LIGHTHOUSE = (
    _Spec("performance_score", "Lighthouse performance", "", 90.0, 50.0,
          lower_is_better=False),
    _Spec("fcp_ms", "First Contentful Paint", "ms", 1500.0, 3000.0),
    _Spec("lcp_ms", "Largest Contentful Paint", "ms", 2500.0, 4000.0),
    _Spec("tti_ms", "Time to Interactive", "ms", 3000.0, 7300.0),
    _Spec("tbt_ms", "Total Blocking Time", "ms", 200.0, 600.0),
    _Spec("cls", "Cumulative Layout Shift", "", 0.1, 0.25),
)
_DB_PROM = (
    _Spec(r"db_query(_time|_avg)?_ms|query_time_ms", "DB query time (avg)", "ms", 50.0, 500.0),
)
_DB_POSTGRES = (
    _Spec("latency_ms", "PostgreSQL round trip", "ms", 100.0, 1000.0),
    _Spec("pool_usage_pct", "Connection pool usage", "%", 80.0, 95.0),
    _Spec("slow_queries", "Slow queries (running)", "", 1.0, 5.0),
    _Spec("cache_hit_pct", "Cache hit ratio", "%", 99.0, 95.0, lower_is_better=False),
    _Spec("xact_per_s", "Transactions", "/s"),
    _Spec("db_size_bytes", "Database size", "B"),
    _Spec("db_growth_bytes_per_day", "Database growth", "B/day"),
)
_DB_REDIS = (
    _Spec("latency_ms", "Redis round trip", "ms", 20.0, 200.0),
    _Spec("hit_rate_pct", "Redis hit rate", "%", 80.0, 70.0, lower_is_better=False),
    _Spec("used_memory_bytes", "Redis memory", "B"),
    _Spec("evicted_per_s", "Redis evictions", "/s"),
)
_INFRA = (
    _Spec("cpu_pct", "CPU", "%", 70.0, 80.0),
    _Spec("memory_pct", "Memory", "%", 70.0, 80.0),
    _Spec("disk_used_pct", "Disk used", "%", 80.0, 90.0),
    _Spec("disk_read_bytes_per_s", "Disk read", "B/s"),
    _Spec("disk_write_bytes_per_s", "Disk write", "B/s"),
    _Spec("net_rx_bytes_per_s", "Network in", "B/s"),
    _Spec("net_tx_bytes_per_s", "Network out", "B/s"),
)
# Business conventions (playbook "Business Metrics"): a name with one of these words.
_BUSINESS_WORDS = frozenset({
    "signal", "signals", "competition", "competitions", "revenue", "subscription",
    "subscriptions", "subscribers", "churn", "arpu", "payment", "payments", "conversion",
    "conversions", "signup", "signups", "dau", "mau", "streams", "orders", "checkouts",
})
_BUSINESS_NAMES = re.compile(r"(active|new|daily|monthly)_users(_\w+)?", re.IGNORECASE)
# Thresholds the playbook gives for business numbers: "Failed Payment Rate: Alert if >2%".
_BUSINESS_LIMITS = (
    (re.compile(r"(payments?_failed|failed_payments?|payments?_failure)(_rate)?_pct", re.I),
     1.0, 2.0),
)
_UNIT_SUFFIXES = (
    ("_pct", "%"), ("_per_s", "/s"), ("_per_min", "/min"), ("_per_h", "/h"),
    ("_per_day", "/day"), ("_ms", "ms"), ("_bytes", "B"),
)


def is_business_metric(name: str) -> bool:
    """True for names following the playbook's business conventions (signals_posted_24h,
    active_users, revenue_today, new_subscriptions, payment_failed_pct, …)."""
    words = set(name.lower().replace(".", "_").split("_"))
    return bool(words & _BUSINESS_WORDS) or _BUSINESS_NAMES.fullmatch(name) is not None


def _business_spec(metric: str) -> _Spec:
    last = metric.rsplit(".", 1)[-1]
    unit = next((u for suffix, u in _UNIT_SUFFIXES if last.endswith(suffix)), "")
    warn = crit = None
    for pattern, w, c in _BUSINESS_LIMITS:
        if pattern.fullmatch(last):
            warn, crit = w, c
    return _Spec(re.escape(metric), _humanize(metric), unit, warn, crit)


def _humanize(metric: str) -> str:
    text = metric.replace(".", " ").replace("_", " ")
    for word, short in ((" pct", " %"), (" per s", " /s"), (" per min", " /min"),
                        (" per h", " /h"), (" per day", " /day"), (" ms", "")):
        if text.endswith(word):
            text = text[: -len(word)] + short
    return text[:1].upper() + text[1:]


_SELECT_LIST = re.compile(r"^\s*select\s+(?:distinct\s+)?(?P<cols>.*?)\s+from\s", re.I | re.S)
# `expr AS x`, or `expr x` right after a complete term (not `a + b`, not `CASE ... END`)
_ALIAS = re.compile(r'(?:\bas\s+|(?<=[\w)"\'])\s+)"?(?P<a>[A-Za-z_][A-Za-z0-9_]*)"?\s*$', re.I)
_NOT_ALIASES = frozenset({"end", "null", "true", "false", "asc", "desc"})
_BARE_COLUMN = re.compile(r'^(?:\w+\.)?"?(?P<a>[A-Za-z_][A-Za-z0-9_]*)"?$')
_CALL = re.compile(r"^(?P<a>[A-Za-z_][A-Za-z0-9_]*)\s*\(.*\)$", re.S)  # named after the function


def query_metrics(name: str, sql: str) -> list[str]:
    """The metric names a custom query reports: `name` for one column, `name.col` for each
    column of a one-row result (as probes/postgres.py names them).

    Read from the outer SELECT list: it splits at top-level commas and takes each item's
    alias (`AS x`), bare column or function name (`count(*)` is `count`); when that is not
    certain, `name` alone.
    """
    m = _SELECT_LIST.match(sql)
    cols = m["cols"] if m else None
    if cols is None and not re.match(r"^\s*with\b", sql, re.I):
        cols = re.sub(r"^\s*select\s+", "", sql, flags=re.I)  # SELECT without FROM
    if cols is None:
        return [name]
    items: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(cols):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(cols[start:i])
            start = i + 1
    items.append(cols[start:])
    if len(items) == 1:
        return [name]
    out = []
    for item in items:
        item = item.strip()
        a = _BARE_COLUMN.match(item) or _CALL.match(item) or _ALIAS.search(item)
        if a is None or a["a"].lower() in _NOT_ALIASES:
            return [name]
        out.append(f"{name}.{a['a']}")
    return out


def _reportable(target: TargetBase) -> list[str]:
    """The metric names a target can report, as far as its config tells."""
    if isinstance(target, PrometheusTarget):
        return list(target.metrics)
    if isinstance(target, PostgresTarget):
        found = list(POSTGRES_USED)
        for name, sql in target.queries.items():
            found += query_metrics(name, sql)
        return found
    if isinstance(target, RedisTarget):
        return list(REDIS_USED)
    if getattr(target, "kind", None) == "host":
        return sorted(HOST_METRICS)
    if isinstance(target, HttpTarget):
        return ["latency_ms"]
    if getattr(target, "kind", None) == "lighthouse":
        return list(LIGHTHOUSE_METRICS)
    return []


class _Builder:
    """Hands out panel keys: a thresholded config panel of the same series, else a new one."""

    def __init__(self, settings: Settings) -> None:
        self.taken = {p.key for p in settings.panels}
        self.reuse = {(p.target, p.metric): p.key for p in settings.panels
                      if p.warn is not None or p.crit is not None}
        self.made: dict[tuple[str, str], str] = {}
        self.panels: list[Panel] = []

    def key(self, target: str, metric: str, spec: _Spec, title: str) -> str:
        series = (target, metric)
        if series in self.reuse:
            return self.reuse[series]
        if series in self.made:
            return self.made[series]
        base = "pb-" + re.sub(r"[^a-z0-9]+", "-", f"{target}-{metric}".lower()).strip("-")
        key, n = base, 2
        while key in self.taken:
            key, n = f"{base}-{n}", n + 1
        self.taken.add(key)
        self.made[series] = key
        self.panels.append(Panel(
            id=key, title=title, target=target, metric=metric, unit=spec.unit,
            warn=spec.warn, crit=spec.crit, lower_is_better=spec.lower_is_better,
        ))
        return key


def _board(
    build: _Builder, targets: Iterable[TargetBase],
    specs_of: Callable[[TargetBase], Iterable[_Spec]],
    title_of: Callable[[TargetBase, _Spec, bool], str],
) -> list[str]:
    """Panel keys for every (target, spec, metric) that applies, target by target."""
    rows: list[tuple[TargetBase, _Spec, str]] = []
    for t in targets:
        metrics = _reportable(t)
        for spec in specs_of(t):
            rows += [(t, spec, m) for m in metrics if spec.matches(m)]
    names = {getattr(t, "name", "") for t, _, _ in rows}
    many = len(names) > 1
    keys: list[str] = []
    for t, spec, metric in rows:
        key = build.key(t.name, metric, spec, title_of(t, spec, many))
        if key not in keys:
            keys.append(key)
    return keys


def _qualified(t: TargetBase, spec: _Spec, many: bool) -> str:
    return f"{spec.title} · {t.name}" if many else spec.title


def playbook_dashboards(settings: Settings) -> tuple[list[Panel], list[Dashboard]]:
    """The four playbook dashboards for `settings`' targets, and the panels they add.

    Returns only new panels (keys unused by the config); a dashboard may also name a config
    panel that shows the same series with thresholds of its own. Dashboards with no panel
    are left out. Does not look at `playbook_dashboards` or at the config's dashboards; see
    `with_playbook_dashboards` for the merge.
    """
    build = _Builder(settings)
    targets = list(settings.targets)
    prom = [t for t in targets if isinstance(t, PrometheusTarget)]
    http = [t for t in targets if isinstance(t, HttpTarget)]

    def http_spec(t: TargetBase) -> list[_Spec]:
        slow = getattr(t, "slow", None)
        warn = slow * 1000.0 if slow else 200.0
        return [_Spec("latency_ms", "response", "ms", warn, 2000.0 if warn < 2000 else None)]

    app = _board(build, prom, lambda t: _APP_PROM, _qualified)
    app += _board(build, http, http_spec, lambda t, s, m: f"{t.name} {s.title}")
    app += _board(build, [t for t in targets if getattr(t, "kind", None) == "lighthouse"],
                  lambda t: _APP_LIGHTHOUSE, _qualified)

    db = _board(build, [t for t in targets if isinstance(t, PostgresTarget)],
                lambda t: _DB_POSTGRES, _qualified)
    db += _board(build, prom, lambda t: _DB_PROM, _qualified)
    db += _board(build, [t for t in targets if isinstance(t, RedisTarget)],
                 lambda t: _DB_REDIS, _qualified)

    def business_specs(t: TargetBase) -> list[_Spec]:
        metrics = _reportable(t)
        if isinstance(t, PostgresTarget):  # every custom query is a business number
            custom = [m for n, sql in t.queries.items() for m in query_metrics(n, sql)]
            return [_business_spec(m) for m in custom]
        return [_business_spec(m) for m in metrics if is_business_metric(m)]

    sources = [t for t in targets if isinstance(t, PrometheusTarget | PostgresTarget)]
    business = _board(build, sources, business_specs, _qualified)
    infra = _board(build, [t for t in targets if getattr(t, "kind", None) == "host"],
                   lambda t: _INFRA, _qualified)

    boards = [Dashboard(name=name, panels=keys) for name, keys in (
        (APPLICATION, app), (DATABASE, db), (BUSINESS, business), (INFRASTRUCTURE, infra),
    ) if keys]
    used = {k for b in boards for k in b.panels}
    return [p for p in build.panels if p.key in used], boards


def with_playbook_dashboards(settings: Settings) -> Settings:
    """`settings` with the ready-made dashboards merged in (see the module docstring).

    Idempotent: a second pass finds every ready-made name taken and changes nothing.
    """
    if not settings.console.playbook_dashboards:
        return settings
    own = {d.name.casefold() for d in settings.dashboards}
    if all(name.casefold() in own for name in READY_MADE):
        return settings
    panels, boards = playbook_dashboards(settings)
    boards = [b for b in boards if b.name.casefold() not in own]
    if not boards:
        return settings
    used = {k for b in boards for k in b.panels}
    return settings.model_copy(update={
        "panels": [*settings.panels, *(p for p in panels if p.key in used)],
        "dashboards": [*settings.dashboards, *boards],
    })
