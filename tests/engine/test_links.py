"""Runbook links: the grammar, resolution against a running config, and `validate`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from console.cli import main
from console.engine.config.loader import load_config_text
from console.engine.errors import ConfigError
from console.engine.incidents.links import (
    DB_TABS,
    Destination,
    LinkTarget,
    check_links,
    parse_link,
    resolve,
)
from console.engine.incidents.playbooks import builtin_dir, load_playbooks

TARGETS = [LinkTarget("api-health", "http"), LinkTarget("api-metrics", "prometheus"),
           LinkTarget("api-logs", "log"), LinkTarget("postgres", "postgres"),
           LinkTarget("redis", "redis"), LinkTarget("payments-webhook", "http")]
SERIES = {"api-metrics:p95_ms", "api-metrics:error_pct", "redis:hit_rate_pct",
          "api-health:latency_ms", "payments-webhook:latency_ms"}


def reports(target: str, metric: str) -> bool:
    return f"{target}:{metric}" in SERIES


@pytest.mark.parametrize(("link", "dest"), [
    ("chart:p95_ms", Destination("detail", "api-metrics", metric="p95_ms")),
    ("metric:error_pct", Destination("detail", "api-metrics", metric="error_pct")),
    ("target:redis", Destination("detail", "redis")),
    ("kind:postgres", Destination("detail", "postgres")),
    ("logs:stripe-failed?window=1h",
     Destination("logs", "api-logs", query="stripe-failed", window=3600.0)),
    ("logs:level=error responseTime>1000", Destination("logs", "api-logs",
                                                       query="level=error responseTime>1000")),
    ("db:statements", Destination("database", "postgres", tab="statements")),
    ("db:slowlog", Destination("database", "redis", tab="slowlog")),
    ("endpoints:p95_ms", Destination("endpoints", "api-metrics", sort="p95_ms")),
    ("endpoints", Destination("endpoints", "api-metrics")),
    ("health", Destination("health", "api-health")),
    ("health?target=payments-webhook", Destination("health", "payments-webhook")),
    ("https://dashboard.stripe.com/webhooks",
     Destination("url", url="https://dashboard.stripe.com/webhooks")),
])
def test_every_view_resolves_to_its_screen(link: str, dest: Destination) -> None:
    assert resolve(parse_link(link), TARGETS, reports) == dest


def test_the_incidents_own_target_comes_first() -> None:
    link = parse_link("chart:latency_ms")
    assert resolve(link, TARGETS, reports).target == "api-health"
    assert resolve(link, TARGETS, reports, prefer=["payments-webhook"]).target == \
        "payments-webhook"


@pytest.mark.parametrize(("link", "why"), [
    ("", "an empty link"),
    ("graph:p95_ms", "unknown view 'graph'"),
    ("chart:", "needs a value"),
    ("db:sessionz", "no drill-down tab 'sessionz'"),
    ("endpoints:speed", "no endpoint column 'speed'"),
    ("logs:errors?window=soon", "window=soon"),
    ("logs:errors?since=1h", "unknown parameter 'since'"),
    ("chart:p95_ms?window=1h", "window= applies to logs: links only"),
    ("logs:level=", "logs:level="),
    ("https://exa mple.com", "a URL has no spaces"),
])
def test_bad_links_say_what_is_wrong(link: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_link(link)


@pytest.mark.parametrize(("link", "why"), [
    ("chart:p59_ms", "no target reports the metric 'p59_ms'"),
    ("target:payments", "no target 'payments' in the config"),
    ("db:statements?target=redis", "target 'redis' (redis) has a drill-down tab"),
    ("health?target=api-logs", "target 'api-logs' (log) is an HTTP health check"),
])
def test_links_that_lead_nowhere_say_why(link: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        resolve(parse_link(link), TARGETS, reports)


def test_db_tabs_are_the_drill_down_screens_sections() -> None:
    from console.screens.database import REDIS_SECTIONS, SECTIONS

    assert {"postgres": tuple(SECTIONS), "redis": tuple(REDIS_SECTIONS)} == DB_TABS


def test_a_playbook_with_a_broken_link_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        'name = "mine"\ntitle = "Mine"\nkind = "runbook"\n[[sections]]\nid = "a"\n'
        'title = "A"\nitems = [{ text = "x", link = "graph:p95_ms" }]\n')
    with pytest.raises(ConfigError) as err:
        load_playbooks(tmp_path)
    (issue,) = err.value.issues
    assert issue.file.endswith("mine.toml")
    assert "unknown view 'graph'" in issue.message


DEMO_LIKE = """
[[targets]]
name = "api"
kind = "http"
url = "http://127.0.0.1:9/health"

[[targets]]
name = "metrics"
kind = "prometheus"
url = "http://127.0.0.1:9/metrics"
[targets.metrics]
error_pct = 'ratio(http_requests_total{status=~"5.."}, http_requests_total) * 100'
"""


def test_check_links_errors_for_the_users_playbooks_notes_for_ours(tmp_path: Path) -> None:
    settings = load_config_text(DEMO_LIKE)
    (tmp_path / "mine.toml").write_text(
        'name = "mine"\ntitle = "Mine"\nkind = "runbook"\n[[sections]]\nid = "a"\n'
        'title = "A"\nitems = [{ text = "x", link = "chart:p59_ms" },\n'
        '  { text = "y", link = "chart:error_pct?target=nope" },\n'
        '  { text = "z", link = "chart:error_pct" }]\n')
    pbs = load_playbooks(tmp_path)
    issues, notes = check_links(pbs.by_name.values(), settings, builtin_dir=str(builtin_dir()))
    texts = [i.message for i in issues]  # type: ignore[attr-defined]
    assert texts == ["'chart:p59_ms': no target reports the metric 'p59_ms'",
                     "'chart:error_pct?target=nope': no target 'nope' in the config"]
    assert all(i.key.startswith("sections.a.items[") for i in issues)  # type: ignore[attr-defined]
    # the shipped runbooks' links to what this config lacks are notes, not errors
    assert any("db:statements" in n for n in notes)


def test_validate_reports_a_link_naming_a_missing_target(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(DEMO_LIKE)
    books = tmp_path / "playbooks"
    books.mkdir()
    monkeypatch.setenv("OPSCONSOLE_CONFIG", str(cfg))  # the playbooks dir is beside it
    assert main(["validate", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert f"{cfg}: valid" in out
    assert "note: runbook link with nothing to open in this config: " not in out
    # one line says what the config lacks; --links lists each link
    [summary] = [line for line in out.splitlines() if line.startswith("note: ")]
    assert "links in the shipped runbooks have nothing to open in this config" in summary
    assert "`validate --links` lists them" in summary
    assert main(["validate", "--config", str(cfg), "--links"]) == 0
    out = capsys.readouterr().out
    assert "note: runbook link with nothing to open in this config: " in out
    (books / "pay.toml").write_text(
        'name = "pay"\ntitle = "Pay"\nkind = "runbook"\n[[sections]]\nid = "s"\n'
        'title = "S"\nitems = [{ text = "webhooks", link = "target:payments" }]\n')
    assert main(["validate", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "sections.s.items[0].link: 'target:payments': no target 'payments' in the " \
           "config" in err
