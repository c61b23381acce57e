"""The playbook's ready-made dashboards: which panels appear for which targets, with which
thresholds, and how they merge with a config's own dashboards, in the Scheduler and on reload."""

from __future__ import annotations

from typing import Any

from console.engine.config.dashboards import (
    APPLICATION,
    BUSINESS,
    DATABASE,
    HOST_METRICS,
    INFRASTRUCTURE,
    POSTGRES_USED,
    READY_MADE,
    REDIS_USED,
    is_business_metric,
    playbook_dashboards,
    query_metrics,
    with_playbook_dashboards,
)
from console.engine.config.loader import load_config_text
from console.engine.config.schema import HostTarget, Panel, Settings
from console.engine.model import Status
from console.engine.probes.catalog import REDIS_METRICS
from console.engine.probes.host import HostProbe
from console.engine.probes.postgres import METRICS as PG_METRICS
from console.engine.probes.postgres import SLOW_METRICS as PG_SLOW
from console.engine.scheduler import Scheduler, panel_state

# Addresses on port 9 (discard): these tests only build settings, nothing is contacted.
APP = """
[[targets]]
name = "api-metrics"
kind = "prometheus"
url = "http://127.0.0.1:9/metrics"
[targets.metrics]
requests_per_s = 'rate(http_requests_total)'
error_pct = 'ratio(http_requests_total{status=~"5.."}, http_requests_total) * 100'
p50_ms = 'histogram_quantile(0.5, http_request_duration_seconds) * 1000'
p95_ms = 'histogram_quantile(0.95, http_request_duration_seconds) * 1000'
p99_ms = 'histogram_quantile(0.99, http_request_duration_seconds) * 1000'
db_query_ms = 'ratio(db_query_duration_seconds_sum, db_query_duration_seconds_count) * 1000'
websockets = 'websocket_connections'
active_users = 'active_users'
signals_per_min = 'rate(signals_posted_total) * 60'
revenue_per_h = 'rate(revenue_cents_total) * 36'
payment_failed_pct = 'ratio(payments_total{result="failed"}, payments_total) * 100'
queue_depth = 'jobs_waiting'

[[targets]]
name = "api-health"
kind = "http"
url = "http://127.0.0.1:9/health"
slow = "300ms"

[[targets]]
name = "frontend"
kind = "http"
url = "http://127.0.0.1:9/"
"""
DATA = """
[[targets]]
name = "db"
kind = "postgres"
dsn = "postgresql://monitor@127.0.0.1:9/app"
[targets.queries]
active_competitions = "SELECT count(*) FROM competitions WHERE status = 'active'"
signups_today = "SELECT count(*) AS total, count(*) FILTER (WHERE paid) AS paid FROM users"

[[targets]]
name = "cache"
kind = "redis"
url = "redis://127.0.0.1:9/0"
"""
HOST = """
[[targets]]
name = "this-host"
kind = "host"
"""


def settings(*parts: str, extra: str = "") -> Settings:
    return load_config_text("".join(parts) + extra, "<test>")


def boards(s: Settings) -> dict[str, list[Panel]]:
    by_key = {p.key: p for p in s.panels}
    return {d.name: [by_key[k] for k in d.panels] for d in s.dashboards}


def series(panels: list[Panel]) -> list[tuple[str, str]]:
    return [(p.target, p.metric) for p in panels]


def limits(panels: list[Panel], target: str, metric: str) -> tuple[Any, Any, bool]:
    p = next(p for p in panels if (p.target, p.metric) == (target, metric))
    return p.warn, p.crit, p.lower_is_better


def test_every_target_kind_gets_its_boards_with_playbook_thresholds() -> None:
    s = with_playbook_dashboards(settings(APP, DATA, HOST))
    got = boards(s)
    assert list(got) == list(READY_MADE)

    app = got[APPLICATION]
    assert series(app) == [
        ("api-metrics", "requests_per_s"), ("api-metrics", "error_pct"),
        ("api-metrics", "p50_ms"), ("api-metrics", "p95_ms"), ("api-metrics", "p99_ms"),
        ("api-metrics", "active_users"), ("api-metrics", "websockets"),
        ("api-health", "latency_ms"), ("frontend", "latency_ms"),
    ]
    assert limits(app, "api-metrics", "error_pct") == (0.5, 5.0, True)
    assert limits(app, "api-metrics", "p95_ms") == (200.0, 2000.0, True)
    assert limits(app, "api-metrics", "p99_ms")[:2] == (500.0, 2000.0)
    assert limits(app, "api-health", "latency_ms")[:2] == (300.0, 2000.0)  # its `slow`
    assert limits(app, "frontend", "latency_ms")[:2] == (200.0, 2000.0)  # the p95 target
    assert [p.title for p in app][-2:] == ["api-health response", "frontend response"]

    db = got[DATABASE]
    assert ("api-metrics", "db_query_ms") in series(db)
    assert limits(db, "api-metrics", "db_query_ms")[:2] == (50.0, 500.0)
    assert {m for t, m in series(db) if t == "db"} == POSTGRES_USED
    assert limits(db, "db", "pool_usage_pct") == (80.0, 95.0, True)
    assert {m for t, m in series(db) if t == "cache"} == REDIS_USED
    assert limits(db, "cache", "hit_rate_pct") == (80.0, 70.0, False)

    business = got[BUSINESS]
    assert series(business) == [
        ("api-metrics", "active_users"), ("api-metrics", "signals_per_min"),
        ("api-metrics", "revenue_per_h"), ("api-metrics", "payment_failed_pct"),
        ("db", "active_competitions"), ("db", "signups_today.total"),
        ("db", "signups_today.paid"),
    ]
    assert limits(business, "api-metrics", "payment_failed_pct")[:2] == (1.0, 2.0)
    units = {p.metric: p.unit for p in business}
    assert (units["payment_failed_pct"], units["revenue_per_h"]) == ("%", "/h")
    # A metric in two boards is one panel.
    assert next(p for p in app if p.metric == "active_users") is business[0]

    infra = got[INFRASTRUCTURE]
    assert {m for _, m in series(infra)} == {
        "cpu_pct", "memory_pct", "disk_used_pct", "disk_read_bytes_per_s",
        "disk_write_bytes_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s"}
    assert limits(infra, "this-host", "cpu_pct")[:2] == (70.0, 80.0)
    assert limits(infra, "this-host", "memory_pct")[:2] == (70.0, 80.0)

    # Nothing for a metric no convention knows (queue_depth), and the result is valid.
    assert all(p.metric != "queue_depth" for p in s.panels)
    assert Settings.model_validate(s.model_dump(exclude_unset=True)) == s


def test_only_what_the_targets_report_and_empty_boards_left_out() -> None:
    http_only = with_playbook_dashboards(settings(
        '[[targets]]\nname = "web"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n'))
    assert [d.name for d in http_only.dashboards] == [APPLICATION]
    assert series(boards(http_only)[APPLICATION]) == [("web", "latency_ms")]

    hosts = with_playbook_dashboards(settings(
        HOST, '[[targets]]\nname = "db-host"\nkind = "host"\n'))
    assert [d.name for d in hosts.dashboards] == [INFRASTRUCTURE]
    infra = boards(hosts)[INFRASTRUCTURE]
    assert {t for t, _ in series(infra)} == {"this-host", "db-host"}
    # Two hosts: titles name them; keys differ per host.
    assert "CPU · this-host" in {p.title for p in infra}
    assert len({p.key for p in infra}) == len(infra) == 14

    assert with_playbook_dashboards(Settings()).dashboards == []

    # A remote host (node_exporter at `url`) reports the same names: it is on the board too.
    remote = with_playbook_dashboards(settings(
        HOST, '[[targets]]\nname = "db-node"\nkind = "host"\n'
        'url = "http://127.0.0.1:9/metrics"\n'))
    assert {t for t, _ in series(boards(remote)[INFRASTRUCTURE])} == {"this-host", "db-node"}


def test_config_dashboards_first_same_name_wins_and_opt_out() -> None:
    own = """
[[panels]]
id = "p95"
title = "My p95"
target = "api-metrics"
metric = "p95_ms"
warn = 300.0

[[dashboards]]
name = "Mine"
panels = ["p95"]

[[dashboards]]
name = "infrastructure"
panels = []
"""
    s = with_playbook_dashboards(settings(APP, HOST, extra=own))
    names = [d.name for d in s.dashboards]
    # Mine keeps number 1 and "infrastructure" number 2; the playbook's follow, minus the
    # one the config already names (case-insensitively), and Database/Business only because
    # the prometheus target reports db and business numbers.
    assert names == ["Mine", "infrastructure", APPLICATION, DATABASE, BUSINESS]
    assert s.dashboards[1].panels == []
    assert all(p.target != "this-host" for p in s.panels)  # Infrastructure was not built
    # The config's thresholded p95 panel is reused, not duplicated.
    assert "p95" in s.dashboards[2].panels
    assert sum(1 for p in s.panels if p.metric == "p95_ms") == 1

    off = settings(APP, HOST, extra="[console]\nplaybook_dashboards = false\n")
    assert with_playbook_dashboards(off) is off
    assert Scheduler(off).settings.dashboards == []


def test_generated_keys_never_collide_and_merging_twice_changes_nothing() -> None:
    taken = """
[[panels]]
id = "pb-api-metrics-p95-ms"
title = "Taken key"
target = "api-metrics"
metric = "requests_per_s"

[[panels]]
title = "pb api metrics error pct"
target = "frontend"
"""
    base = settings(APP, extra=taken)
    s = with_playbook_dashboards(base)
    keys = [p.key for p in s.panels]
    assert len(keys) == len(set(keys))
    assert s.panels[:2] == base.panels  # the config's panels first, untouched
    p95 = next(p for p in s.panels[2:] if p.metric == "p95_ms")
    assert p95.key == "pb-api-metrics-p95-ms-2"
    err = next(p for p in s.panels[2:] if p.metric == "error_pct")
    assert err.key == "pb-api-metrics-error-pct-2"
    # An unthresholded config panel of the same series does not stand in for the playbook's.
    req = [p for p in s.panels if p.metric == "requests_per_s"]
    assert len(req) == 2
    assert with_playbook_dashboards(s) == s
    new_panels, new_boards = playbook_dashboards(base)
    assert {p.key for p in new_panels}.isdisjoint(p.key for p in base.panels)
    assert {k for b in new_boards for k in b.panels} <= {p.key for p in s.panels}


def test_business_conventions_and_custom_query_columns() -> None:
    for name in ("signals_posted_24h", "active_users", "active_competitions", "revenue_today",
                 "new_subscriptions", "payment_failed_pct", "dau", "churn_pct"):
        assert is_business_metric(name), name
    for name in ("p95_ms", "requests_per_s", "error_pct", "websockets", "queue_depth",
                 "cpu_pct"):
        assert not is_business_metric(name), name
    assert query_metrics("n", "SELECT count(*) FROM t") == ["n"]
    assert query_metrics("n", "select 42") == ["n"]
    assert query_metrics("r", "SELECT count(*), sum(cents) AS revenue, max(x) m FROM t") == [
        "r.count", "r.revenue", "r.m"]
    assert query_metrics("r", "SELECT coalesce(sum(a), 0) AS s, b FROM t WHERE f(x, y)") == [
        "r.s", "r.b"]
    assert query_metrics("w", "WITH a AS (SELECT 1 AS x, 2 AS y) SELECT * FROM a") == ["w"]
    assert query_metrics("q", "SELECT a + b, c FROM t") == ["q"]  # unsure: the name alone


def test_boards_use_only_metrics_the_probes_report() -> None:
    assert set(PG_METRICS) | set(PG_SLOW) >= POSTGRES_USED
    assert set(REDIS_METRICS) >= REDIS_USED


async def test_host_metrics_match_what_the_host_probe_reports() -> None:
    result = await HostProbe(HostTarget(name="h")).check()
    assert result.status == Status.UP, result.error
    assert set(result.metrics) - {"latency_ms"} == HOST_METRICS


def test_higher_is_better_thresholds_read_the_right_way() -> None:
    s = with_playbook_dashboards(settings(DATA))
    hit = next(p for p in s.panels if p.metric == "hit_rate_pct")
    assert [panel_state(v, hit) for v in (95.0, 75.0, 65.0, None)] == [
        "ok", "warn", "crit", "nodata"]
    pool = next(p for p in s.panels if p.metric == "pool_usage_pct")
    assert [panel_state(v, pool) for v in (10.0, 85.0, 96.0)] == ["ok", "warn", "crit"]


async def test_engine_merges_at_start_and_on_hot_reload() -> None:
    first = settings(HOST)
    engine = Scheduler(first)
    try:
        await engine.start(poll=False)
        assert [d.name for d in engine.settings.dashboards] == [INFRASTRUCTURE]
        # A reload adds a redis target: Database performance appears, Infrastructure stays 1.
        await engine.apply(settings(HOST, DATA))
        assert [d.name for d in engine.settings.dashboards] == [
            DATABASE, BUSINESS, INFRASTRUCTURE]
        keys = {p.key for p in engine.settings.panels}
        assert all(k in keys for d in engine.settings.dashboards for k in d.panels)
        # The panels of a ready-made board have values once their target reports.
        await engine.check_once()
        views = engine.panel_views(
            [p for p in engine.settings.panels if p.target == "this-host"])
        assert {v.metric for v in views if v.value is not None} >= {
            "cpu_pct", "memory_pct", "disk_used_pct"}
        assert all(v.state in ("ok", "warn", "crit") for v in views if v.value is not None)
        # A reload that turns them off leaves only the config's (none).
        await engine.apply(settings(HOST, extra="[console]\nplaybook_dashboards = false\n"))
        assert engine.settings.dashboards == []
        assert engine.settings.panels == []
    finally:
        await engine.stop()
