"""An incident's timeline and KPIs from events: alert episodes, journal actions, and the
notifications a real outbox sent — in the order they happened, not the order of key presses."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.notify import Notifier
from console.engine.config.rules import Receiver
from console.engine.incidents.book import IncidentBook, IncidentDesk
from console.engine.incidents.context import read_notifications, read_sources
from console.engine.incidents.kpis import compute, incident_kpis
from console.engine.incidents.playbooks import load_playbooks
from console.engine.incidents.postmortem import render
from console.engine.incidents.timeline import timeline
from console.engine.paths import DataPaths
from console.engine.storage.journal import Journal
from tests.engine.test_notify import Hits, receiver, until  # noqa: F401 - the fixture

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def episode(base: float = T0, **kw: Any) -> dict[str, Any]:
    """An alert-history record as the lifecycle writes it (`Alert.episode`)."""
    T0 = base  # noqa: N806 - the times below read as offsets from the firing
    ep = {"type": "episode", "key": "error-rate-high/api/4", "rule": "error-rate-high",
          "target": "api", "severity": "P1", "summary": "Elevated API error rate",
          "incident": 4, "fired_at": T0, "acknowledged_at": T0 + 165,
          "acknowledged_by": "ana", "resolved_at": T0 + 310, "duration_s": 310.0,
          "ongoing": False, "peak": 33.6, "detect_s": 20.0, "first_fail_at": T0 - 20,
          "cause": "error_pct 33.6 %, above 5.0 %; worst: /api/feed 41.0 %",
          "metric": "error_pct"}
    ep.update(kw)
    return ep


async def _incident(tmp_path: Path, clock: Clock, T0: float = T0  # noqa: N803
                    ) -> tuple[IncidentDesk, Any]:
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="bob@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    clock.t = T0 + 240  # the incident is opened after the alert was acked on its screen
    inc = await desk.open("API errors", "P1", alerts=["error-rate-high/api"],
                          runbook="high-error-rate", started=T0, detected=T0 - 20,
                          targets=["api"], episodes=["error-rate-high/api/4"])
    clock.t = T0 + 300
    await desk.acknowledge(inc.id)
    clock.t = T0 + 420
    await desk.mitigate(inc.id, "rolled back v1.5.2")
    clock.t = T0 + 1500
    await desk.resolve(inc.id)
    clock.t = T0 + 1560  # a late ack (a stale key press) lands after, in its own place
    await desk.acknowledge(inc.id)
    return desk, inc


async def test_kpis_follow_events_not_key_presses(tmp_path: Path) -> None:
    clock = Clock(T0)
    desk, inc = await _incident(tmp_path, clock)
    m = {x.name: x for x in incident_kpis(inc, [episode()])}
    assert m["detect"].seconds == 20  # first failing sample → firing
    assert m["acknowledge"].seconds == 165  # the alert's ack, before the incident's
    assert m["acknowledge"].end_what == "alert acknowledged by ana"
    assert m["mitigate"].seconds == 420
    assert m["impact"].seconds == 330  # the first failing sample → the alert resolved
    assert m["resolve"].seconds == 1500
    assert (m["detect"].met, m["acknowledge"].met, m["mitigate"].met, m["impact"].met,
            m["resolve"].met) == (True, True, True, True, True)
    # without the alert history, the incident's own events are used
    m2 = {x.name: x for x in incident_kpis(inc, [])}
    assert m2["acknowledge"].seconds == 300
    assert m2["impact"].seconds is None
    # the report's means are these
    k = compute(desk.book, since=86400, now=T0 + 3600, episodes=[episode()])
    assert (k.mttd_s, k.mtta_s, k.mttr_s, k.impact_s) == (20, 165, 1500, 330)
    await desk.journal.close()


async def test_timeline_merges_alerts_actions_and_sent_notifications(
        tmp_path: Path, receiver: tuple[str, Hits]) -> None:  # noqa: F811
    url, hits = receiver
    paths = DataPaths(tmp_path)
    # The outbox paces and stamps on the wall clock: the alert fired 100 s ago.
    T0 = time.time() - 100  # noqa: N806
    clock = Clock(T0)
    notifier = Notifier(paths.outbox, [Receiver.model_validate(
        {"name": "hook", "kind": "webhook", "url": f"{url}/ok"})])
    await notifier.start()
    try:
        firing = Notification(
            key="error-rate-high/api/firing/4", transition="firing", rule="error-rate-high",
            target="api", severity="P1", labels=(("service", "api"),),
            summary="Elevated API error rate", runbook="high-error-rate",
            expr="error_pct > 5", threshold="> 5", value=33.6, detail="error_pct = 33.6",
            at=T0, group="service=api", incident=4, cause=episode(T0)["cause"],
            action="find the failing part")
        other = Notification(**{**firing.to_json(), "labels": firing.labels,
                                "key": "error-rate-high/api/firing/3", "incident": 3})
        clock.t = T0 + 2
        notifier.enqueue([firing, other])
        await until(lambda: len(hits.got.get("ok", [])) == 2)
        await until(lambda: all(r["status"] == "sent"
                                for r in read_notifications(paths.outbox)))
    finally:
        await notifier.stop()
    # what the receiver got carries the cause and what to do
    body = next(b for _, k, b in hits.got["ok"] if k == firing.key)
    assert body["cause"] == firing.cause
    assert body["action"] == "find the failing part"
    desk, inc = await _incident(tmp_path, clock, T0)
    events = timeline(inc, [episode(T0), episode(T0, key="error-rate-high/api/3",
                                                 incident=3, fired_at=T0 - 86400,
                                                 resolved_at=T0 - 86000)],
                      read_notifications(paths.outbox))
    texts = [(e.ts - T0, e.actor, e.text) for e in events]
    assert [t for t, _, _ in texts] == sorted(t for t, _, _ in texts)
    assert texts[0] == (pytest.approx(-20), "alert error-rate-high",
                        "first failing sample on api (pending)")
    assert texts[1][0] == 0
    assert "P1 firing on api after 20s" in texts[1][2]
    assert texts[1][2].endswith(f"({episode(T0)['cause']})")  # a history without fired_*
    sent = [t for t in texts if t[2].startswith("firing notification sent to hook")]
    assert len(sent) == 1  # episode 4's, not episode 3's
    assert 0 < sent[0][0] < 300
    assert sent[0][1] == "hook"
    order = [t[2].split(":")[0] for t in texts]
    # on which target: a walk read "alert error-rate-high acknowledged" twice, one per target
    assert order.index("alert error-rate-high acknowledged on api") < order.index(
        "incident opened from alert error-rate-high/api (P1)")
    assert [t[2] for t in texts[-2:]] == ["incident resolved", "incident acknowledged"]
    # the post-mortem tells the same story
    _, sent_rows = read_sources(paths, now=T0 + 3600)
    md = render(inc, now=T0 + 3600, episodes=[episode(T0)], notifications=sent_rows)
    assert "- Notified: firing notification sent to hook (error-rate-high) at " in md
    assert "| Acknowledge | alert firing " in md
    assert "| alert acknowledged by ana " in md
    assert "| 2m45s | < 5 min | met |" in md
    assert "| Impact | first failing sample " in md
    assert "| 5m30s | < 30 min | met |" in md  # 20 s of detection included
    assert "The alert said: \"error_pct 33.6 %, above 5.0 %; worst: /api/feed 41.0 %\"" in md
    assert "- **Worst value:** error_pct 33.6 % (error-rate-high on api)" in md
    # an alert that saved its words at firing is quoted with them, in the summary and the
    # root cause, not with its last sample's (the walk read "0.1333/s" of the recovery)
    fired = {**episode(T0), "fired_cause": "error_pct 61.0 %, above 5.0 %",
             "fired_summary": "API error rate at 61 %"}
    md = render(inc, now=T0 + 3600, episodes=[fired], notifications=sent_rows)
    assert "The alert said: \"error_pct 61.0 %, above 5.0 %\"" in md
    assert "API error rate at 61 % on api (error_pct 61.0 %, above 5.0 %)" in md
    assert "33.6 %, above" not in md
    # a history that keeps the rule's condition: the summary and the worst value say the
    # worst in the rule's own terms. A walk's draft led with the first failing sample
    # ("errors_total +95.67 in 1 min" of ~3,800 a minute, "On 2026-12-08 More than…") and
    # gave "Worst value: errors_total 3866" beside a snapshot's counter "errors_total 8396"
    burst = {**episode(T0), "rule": "errors-burst", "metric": "errors_total", "peak": 3866.3,
             "expr": "increase(errors_total, 1m) > 10",
             "fired_summary": "More than 10 errors in 1 minute",
             "fired_cause": "errors_total +96 in 1 min, above 10"}
    md = render(inc, now=T0 + 3600, episodes=[burst], notifications=sent_rows)
    summary = md.split("## Summary", 1)[1].split("##", 1)[0]
    assert (": More than 10 errors in 1 minute on api (at worst errors_total +3866 in 1 min,"
            " above 10), from ") in summary
    assert re.search(r"On \d{4}-\d{2}-\d{2}: More than", summary), summary
    assert "- **Worst value:** errors_total +3866 in 1 min (errors-burst on api)" in md
    assert "The alert said: \"errors_total +96 in 1 min, above 10\"" in md  # at firing
    await desk.journal.close()


async def test_the_summary_leads_with_the_most_severe_alert(tmp_path: Path) -> None:
    """A P3 warning fired a minute before the P0 outage: the post-mortem's first sentence
    is about the outage, and the detection section still lists both in firing order."""
    clock = Clock(T0 + 240)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="bob@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    try:
        inc = await desk.open("API down", "P0", alerts=["cpu-high/api", "api-down/api"],
                              started=T0, targets=["api"])
        warn = episode(T0, key="cpu-high/api/7", rule="cpu-high", severity="P3",
                       summary="CPU above 80 % for 5 minutes", cause="cpu_pct 91 %")
        down = episode(T0 + 60, key="api-down/api/8", rule="api-down", severity="P0",
                       summary="API is down", cause="connection refused")
        md = render(inc, now=T0 + 3600, episodes=[down, warn])
    finally:
        await journal.close()
    summary = md[md.index("## Summary"):].split("\n")[2]
    assert summary.startswith("On ")
    assert "API is down on api (connection refused)" in summary
    detection = md[md.index("## Detection"):md.index("## Detection") + 400]
    assert detection.index("**cpu-high**") < detection.index("**api-down**")


def test_snapshot_values_with_units_and_no_nan() -> None:
    from console.engine.incidents.timeline import describe_snapshot

    assert describe_snapshot({"api:error_pct": 33.582089552238806, "api:p95_ms": 1570.0,
                              "db:db_size_bytes": 1.5e9, "api:latency_ms": "NaN",
                              "hooks:webhook_failures_per_s": 0.5}) == (
        "api:error_pct 33.6 %, api:p95_ms 1.57 s, db:db_size_bytes 1.5 GB, "
        "api:latency_ms —, hooks:webhook_failures_per_s 0.5/s")


@pytest.mark.parametrize(("reason", "ok"), [("payments affected", True)])
async def test_severity_changes_keep_who_and_why(tmp_path: Path, reason: str, ok: bool
                                                 ) -> None:
    clock = Clock(T0)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="ana@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    inc = await desk.open("checkout slow", "P2")
    clock.t += 60
    await desk.severity(inc.id, "P0", reason)
    assert inc.severity_changes == [{"ts": T0 + 60, "actor": "ana@bastion", "from": "P2",
                                     "to": "P0", "reason": reason}]
    md = render(inc, now=T0 + 120)
    assert "P0 (was P2 → P0; set to P0 by ana@bastion: payments affected)" in md
    assert ok
    await journal.close()


async def test_a_rule_whose_for_is_the_target_is_named_as_why_detection_missed(
        tmp_path: Path) -> None:
    """The playbook's latency rule waits `for` 5m, the MTTD target is 5 min: fired 0.4 s
    after those 5 minutes (the check's own time), the walk read "missed by 0s". The
    post-mortem says it missed by under a second, and that the rule's `for` is why."""
    clock = Clock(T0)
    desk, inc = await _incident(tmp_path, clock)
    try:
        slow = episode(T0, rule="latency-p95-slow",
                       detect_s=300.4, first_fail_at=T0 - 300.4, pending_for_s=300.0)
        md = render(inc, now=T0 + 3600, episodes=[slow])
        detect = next(line for line in md.splitlines() if line.startswith("| Detect |"))
        assert detect.endswith("| 5m00s | < 5 min | missed by under 1s |"), detect
        assert ("- latency-p95-slow waits `for` 5 min of failing samples before it fires, "
                "so it cannot detect within the target") in md
        quick = render(inc, now=T0 + 3600, episodes=[episode(T0, pending_for_s=0.0)])
        assert "waits `for`" not in quick  # a rule that can meet it is not blamed
    finally:
        await desk.journal.close()


async def test_with_several_alerts_the_post_mortem_names_which_fired_and_which_was_acked(
        tmp_path: Path) -> None:
    # A walk's draft read "alert firing 16:03:24 → alert acknowledged by root 16:04:39":
    # the firing was the P0's, the acknowledgement another alert's (the P0 waited 2m59s).
    clock = Clock(T0 + 200)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="bob@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    inc = await desk.open("Payments down", "P0", alerts=["dependency-down/api-health",
                                                         "payment-webhook-failures/pay"],
                          started=T0, targets=["api-health", "pay"],
                          episodes=["dependency-down/api-health/1",
                                    "payment-webhook-failures/pay/1"])
    eps = [episode(key="dependency-down/api-health/1", rule="dependency-down",
                   target="api-health", severity="P1", incident=inc.id, fired_at=T0,
                   first_fail_at=T0 - 2, detect_s=2.0, acknowledged_at=T0 + 179,
                   acknowledged_by="root", resolved_at=T0 + 400, summary="A dependency is down"),
           episode(key="payment-webhook-failures/pay/1", rule="payment-webhook-failures",
                   target="pay", severity="P0", incident=inc.id, fired_at=T0 + 58,
                   first_fail_at=T0 + 48, detect_s=10.0, acknowledged_at=T0 + 75,
                   acknowledged_by="root", resolved_at=T0 + 400,
                   summary="Stripe webhooks failing")]
    m = {x.name: x for x in incident_kpis(inc, eps)}
    assert m["acknowledge"].start_what == "alert firing (dependency-down)"
    assert m["acknowledge"].end_what == "alert payment-webhook-failures acknowledged by root"
    assert m["acknowledge"].seconds == 75
    md = render(inc, now=T0 + 500, episodes=eps)
    summary = md.split("## Summary", 1)[1].split("##", 1)[0]
    assert summary.split(" (")[0].endswith("Stripe webhooks failing on pay")  # the worst leads
    assert ("The first alert, dependency-down on api-health, fired 2s after the first "
            "failing sample.") in summary
    assert "(alert payment-webhook-failures acknowledged by root)" in summary
    assert "| Acknowledge | alert firing (dependency-down) " in md
    assert "| Status | open for 8m20s |" in md  # not "open (open) for"


async def test_the_timeline_shows_a_checked_item_without_its_markdown_ticks(
        tmp_path: Path) -> None:
    """"Update the `#incident` channel" showed its backticks on the timeline."""
    from console.engine.incidents.timeline import describe_entry

    clock = Clock(T0)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="bob@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    inc = await desk.open("API errors", "P1")
    step = inc.step("assess")
    assert step is not None
    [i] = [i for i, it in enumerate(step.section.items) if "#incident`" in it.text]
    await desk.check(inc.id, "assess", i)
    assert describe_entry(inc, inc.timeline[-1]) == (
        "checklist", "checked: Assess severity: Update the #incident channel with the "
                     "assessment")


async def test_an_earlier_episode_over_before_the_incident_is_not_its_origin(
        tmp_path: Path) -> None:
    """Redis stopped, came back, stopped again; an incident opened from the second firing
    and acknowledged 12 s later read "ack 1m44s": its clock started at the first episode,
    resolved before the incident began."""
    clock = Clock(T0 + 100)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="bob@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    inc = await desk.open("Redis down", "P1", alerts=["redis-down/cache"], started=T0 + 92,
                          episodes=["redis-down/cache/2"])
    first = episode(key="redis-down/cache/1", rule="redis-down", target="cache", incident=None,
                    fired_at=T0, first_fail_at=T0 - 2, detect_s=2.0, acknowledged_at=None,
                    acknowledged_by=None, resolved_at=T0 + 40)
    second = episode(key="redis-down/cache/2", rule="redis-down", target="cache",
                     incident=None, fired_at=T0 + 92, first_fail_at=T0 + 90, detect_s=2.0,
                     acknowledged_at=T0 + 104, acknowledged_by="ana", resolved_at=None,
                     ongoing=True)
    m = {x.name: x for x in incident_kpis(inc, [first, second])}
    assert m["acknowledge"].seconds == 12
    assert m["detect"].seconds == 2
    events = timeline(inc, [first, second], [])
    assert all(e.ts >= T0 + 90 for e in events), [(e.ts - T0, e.text) for e in events]


async def test_an_episode_before_the_one_an_incident_recorded_is_not_its_own(
        tmp_path: Path) -> None:
    """A walk attached an alert that had fired before the incident, which moved its start
    back; the draft then took in an earlier episode of another of its alerts, one from the
    incident before (its ack, its cause, the alert listed twice). A re-fire after the
    recorded episode, while the incident is open, is still its own."""
    from console.engine.incidents.timeline import incident_episodes

    clock = Clock(T0 + 600)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="bob@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    try:
        inc = await desk.open("API errors", "P1", alerts=["errors-burst/logs", "new-kind/logs"],
                              started=T0, targets=["logs"],
                              episodes=["errors-burst/logs/2", "new-kind/logs/1"])
        before = episode(key="errors-burst/logs/1", rule="errors-burst", target="logs",
                         incident=1, fired_at=T0 + 2, resolved_at=T0 + 140,
                         acknowledged_at=T0 + 110)
        own = episode(key="errors-burst/logs/2", rule="errors-burst", target="logs",
                      incident=2, fired_at=T0 + 230, resolved_at=T0 + 400)
        again = episode(key="errors-burst/logs/3", rule="errors-burst", target="logs",
                        incident=3, fired_at=T0 + 450, resolved_at=T0 + 500)
        kind = episode(key="new-kind/logs/1", rule="new-kind", target="logs", incident=1,
                       fired_at=T0, resolved_at=T0 + 560)
        got = incident_episodes(inc, [before, own, again, kind])
        assert [e["key"] for e in got] == ["new-kind/logs/1", "errors-burst/logs/2",
                                           "errors-burst/logs/3"]
    finally:
        await desk.journal.close()


async def test_an_impact_ended_by_a_windowed_alert_says_recovery_came_up_to_a_window_earlier(
        tmp_path: Path) -> None:
    """A walk: dependency down resolved at 21:39:06; the 1 min average of webhook failures
    resolved at 21:40:03, and the post-mortem called that "service recovered"."""
    clock = Clock(T0 + 300)
    journal = Journal(tmp_path / "journal.jsonl", clock=clock, actor="bob@bastion")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
    try:
        inc = await desk.open("Payments down", "P0", alerts=["dependency-down/api-health",
                                                             "payment-webhook-failures/pay"],
                              started=T0, targets=["api-health", "pay"],
                              episodes=["dependency-down/api-health/1",
                                        "payment-webhook-failures/pay/1"])
        down = episode(key="dependency-down/api-health/1", rule="dependency-down",
                       target="api-health", incident=inc.id, fired_at=T0, resolved_at=T0 + 110,
                       window_s=None)
        avg = episode(key="payment-webhook-failures/pay/1", rule="payment-webhook-failures",
                      target="pay", incident=inc.id, fired_at=T0 + 10, resolved_at=T0 + 167,
                      window_s=60.0)
        m = {x.name: x for x in incident_kpis(inc, [down, avg])}
        assert m["impact"].end == T0 + 167
        assert m["impact"].end_what == "alert resolved (1m00s window)"
        md = render(inc, now=T0 + 600, episodes=[down, avg])
        assert ("  (payment-webhook-failures, the last alert to resolve, is measured over "
                "1m00s: the service recovered up to 1m00s before it resolved)") in md
        summary = md.split("## Summary", 1)[1].split("##", 1)[0]
        assert "(3m07s, its end up to 1m00s late: payment-webhook-failures's window)" in summary
        # the last to resolve is an instant rule: nothing to add
        late_down = {**down, "resolved_at": T0 + 170}
        m = {x.name: x for x in incident_kpis(inc, [late_down, avg])}
        assert m["impact"].end_what == "alert resolved (service recovered)"
        md = render(inc, now=T0 + 600, episodes=[late_down, avg])
        assert "the last alert to resolve" not in md
        assert "late:" not in md
        # a P2 attached to it ("new error kind", over 5 min) that resolves last does not
        # stretch the impact: a walk's draft said 5m04s for a 2m42s outage
        new_kind = episode(key="new-error-kind/logs/1", rule="new-error-kind", target="logs",
                           severity="P2", incident=inc.id, fired_at=T0 + 20,
                           resolved_at=T0 + 320, window_s=300.0)
        inc = await desk.open("Payments down", "P0", alerts=[
            "dependency-down/api-health", "payment-webhook-failures/pay", "new-error-kind/logs"],
            started=T0, targets=["api-health", "pay", "logs"], episodes=[
                "dependency-down/api-health/1", "payment-webhook-failures/pay/1",
                "new-error-kind/logs/1"])
        m = {x.name: x for x in incident_kpis(inc, [down, avg, new_kind])}
        assert m["impact"].end == T0 + 167
        assert m["impact"].end_what == "P0/P1 alerts resolved (1m00s window)"
        md = render(inc, now=T0 + 600, episodes=[down, avg, new_kind])
        assert "(payment-webhook-failures, the last P0/P1 alert to resolve, is measured " \
            "over 1m00s" in md
        # one still firing among the P0/P1s: still ongoing, whatever the P2 did
        m = {x.name: x for x in incident_kpis(
            inc, [down, {**avg, "resolved_at": None, "ongoing": True}, new_kind])}
        assert m["impact"].end is None
        # an incident of P2s only is measured by them
        m = {x.name: x for x in incident_kpis(inc, [new_kind])}
        assert m["impact"].end == T0 + 320
        assert m["impact"].end_what == "alert resolved (5m00s window)"
    finally:
        await desk.journal.close()
