"""Playbooks as data: ours match the monitoring playbook, user files override, errors located."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.engine.errors import ConfigError
from console.engine.incidents.playbooks import load_playbooks, validate_playbooks


def test_shipped_playbooks_follow_the_monitoring_playbook(tmp_path: Path) -> None:
    pbs = load_playbooks(tmp_path / "none")
    assert sorted(pbs.by_name) == [
        "high-error-rate", "incident-response", "monthly-capacity-planning",
        "payment-processing-failure", "slow-performance", "weekly-health-check"]
    resp = pbs.response_for("P0")
    assert resp is not None
    assert [s.id for s in resp.sections] == [
        "acknowledge", "assess", "communicate", "mitigate", "resolve", "postmortem"]
    targets = {s.id: s.target_for("P0") for s in resp.sections}
    assert targets == {"acknowledge": 300, "assess": 600, "communicate": 900,
                       "mitigate": 1800, "resolve": 7200, "postmortem": 86400}
    # "< 2 h for P0": a P2's resolve step has no target
    assert resp.section("resolve").target_for("P2") is None  # type: ignore[union-attr]
    assert resp.section("resolve").describe_target() == "< 2 h for P0"  # type: ignore[union-attr]
    # the last hour's errors, not the whole file's (a walk got 2,311 lines in 3 groups)
    assess = resp.section("assess")
    assert assess is not None
    assert assess.items[0].link == "logs:errors-by-message?window=1h"
    comm = resp.section("communicate")
    assert comm is not None
    assert len(comm.items_for("P0")) == 3
    assert len(comm.items_for("P1")) == 2  # "notify affected users if P0"
    for name in ("high-error-rate", "slow-performance", "payment-processing-failure"):
        rb = pbs.get(name)
        assert rb is not None
        assert rb.kind == "runbook"
        assert [s.id for s in rb.sections] == [
            "symptoms", "investigation", "quick_fix", "permanent_fix"]
        assert all(s.items for s in rb.sections)
    slow = pbs.get("slow-performance")
    assert slow is not None
    links = [it.link for it in slow.section("investigation").items]  # type: ignore[union-attr]
    # each investigation step opens the screen that answers it
    assert links == ["https://pagespeed.web.dev/", "db:statements", "chart:hit_rate_pct",
                     "endpoints:p95_ms"]
    for name in ("high-error-rate", "slow-performance", "payment-processing-failure"):
        assert pbs.get(name).action  # type: ignore[union-attr]  # every alert's what-to-do
    weekly = pbs.get("weekly-health-check")
    assert weekly is not None
    assert weekly.kind == "review"
    assert len(weekly.sections[1].items) == 4
    assert pbs.get("monthly-capacity-planning").kind == "review"  # type: ignore[union-attr]


def test_selection_by_severity_runbook_link_and_alert(tmp_path: Path) -> None:
    pbs = load_playbooks(tmp_path)
    assert pbs.runbook("high-error-rate").name == "high-error-rate"  # type: ignore[union-attr]
    rb = pbs.runbook("https://wiki.example.com/runbooks/slow-performance.md")
    assert rb is not None
    assert rb.name == "slow-performance"
    rb = pbs.runbook("payment-webhook-failures")  # a rule name listed in its alerts
    assert rb is not None
    assert rb.name == "payment-processing-failure"
    assert pbs.runbook("nonexistent") is None
    assert pbs.runbook("incident-response") is None  # not a runbook
    chosen = pbs.select(severity="P0", runbook="high-error-rate", alerts=["latency-p95-slow"])
    assert [p.name for p in chosen] == ["incident-response", "high-error-rate",
                                        "slow-performance"]


def test_user_playbooks_override_and_add(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(
        'name = "incident-response"\ntitle = "Our response"\nkind = "response"\n'
        '[[sections]]\nid = "acknowledge"\ntitle = "Ack"\ntarget = "2m"\nitems = ["page back"]\n'
    )
    (tmp_path / "p0.toml").write_text(
        'name = "p0-response"\ntitle = "P0 war room"\nkind = "response"\n'
        'severities = ["P0"]\n[[sections]]\nid = "war_room"\ntitle = "Open the war room"\n'
        'target = "1m"\n'
    )
    pbs = load_playbooks(tmp_path)
    assert pbs.overridden == ["incident-response"]
    resp = pbs.response_for("P1")
    assert resp is not None
    assert resp.title == "Our response"
    assert resp.sections[0].target_for("P1") == 120
    assert resp.source.endswith("mine.toml")
    assert pbs.response_for("P0").name == "p0-response"  # type: ignore[union-attr]
    assert pbs.get("high-error-rate") is not None  # the rest of ours stays


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(
        'name = "bad"\ntitle = "Bad"\nkind = "checklist"\n'
        '[[sections]]\nid = "a"\ntitle = "A"\ntarget = "soon"\n'
        'items = ["ok", { text = "x", colour = "red" }]\n'
        '[[sections]]\nid = "a"\ntitle = "again"\n'
    )
    (tmp_path / "broken.toml").write_text('name = "x\n')
    with pytest.raises(ConfigError) as info:
        load_playbooks(tmp_path)
    text = [i.format() for i in info.value.issues]
    assert any("bad.toml:3: kind:" in t for t in text), text
    assert any("bad.toml:7: sections[0].target: 'soon' is not a duration" in t
               for t in text), text
    assert any("bad.toml:8: sections[0].items[1].colour: Extra inputs" in t for t in text), text
    assert any("broken.toml: not valid TOML" in t for t in text), text
    assert validate_playbooks(tmp_path) == info.value.issues
    assert validate_playbooks(tmp_path / "absent") == []
