"""Incidents folded from the journal: checklists, due times and overdue flags in simulated time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from console.engine.incidents.book import TYPES, IncidentBook, IncidentDesk
from console.engine.incidents.playbooks import load_playbooks
from console.engine.incidents.postmortem import render
from console.engine.model import SEVERITIES
from console.engine.storage.journal import Journal


class Clock:
    def __init__(self, t: float = 1_750_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


async def _desk(path: Path, clock: Clock, actor: str = "alice@bastion") -> IncidentDesk:
    j = Journal(path, clock=clock, actor=actor)
    await asyncio.to_thread(j.open)
    pbs = load_playbooks(path.parent / "no-user-playbooks")
    return IncidentDesk(j, IncidentBook(pbs, clock=clock))


async def reread(path: Path, desk: IncidentDesk, clock: Clock, iid: str
                 ) -> tuple[Any, IncidentBook]:
    """The incident `iid` (and its book) folded afresh from the journal file alone."""
    journal = Journal(path)
    await asyncio.to_thread(journal.open)
    book = IncidentBook.from_entries(desk.book.playbooks, journal.entries, clock=clock)
    await journal.close()
    again = book.get(iid)
    assert again is not None
    return again, book


async def test_a_status_update_is_the_communicate_step(tmp_path: Path) -> None:
    """Playbook Step 3 is "post a status update": posting one from the console completes the
    step, on time or late against its 15 min, in the checklist and in the post-mortem (the
    walk found it still "not done" after an update was posted)."""
    clock = Clock()
    t0 = clock.t
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("API slow", "P1")
        comm = inc.step("communicate")
        assert comm is not None
        assert comm.done_at is None
        clock.advance(120)
        # written where no Slack route posts it: nobody was told, the step waits
        await desk.status_update(inc.id, "Looking into it")
        assert comm.done_at is None
        assert inc.status_updates[0]["posted"] is False
        # the draft says what was done of it, not a bare "not done" beside the timeline's
        # status update; and the Resolve step's target, for P0 only, is named as such
        rows = {line.split("|")[1].strip(): line
                for line in render(inc, now=clock()).splitlines()
                if line.startswith("| ") and line.count("|") == 6}
        stamp = time.strftime("%H:%M:%S", time.gmtime(t0 + 120))
        assert rows["Communicate"].endswith(
            f"| - | - | not done (status update written {stamp}, not posted) |")
        assert rows["Resolve"] == "| Resolve | - (< 2 h for P0) | - | - | not done |"
        # the measures' Resolve has the KPI's < 2 h for P0/P1, and says so
        [measure] = [line for line in render(inc, now=clock()).splitlines()
                     if line.startswith("| Resolve |") and line.count("|") == 7]
        assert "| < 2 h (P0/P1 KPI) |" in measure, measure
        clock.advance(120)
        await desk.status_update(inc.id, "Investigating slow API responses", routes=["slack"])
        assert comm.done_at == t0 + 240
        assert comm.done_by == "alice@bastion"
        assert inc.step_status(comm, clock()) == "done"
        clock.advance(600)
        await desk.status_update(inc.id, "Mitigated: rolled back", routes=["slack"])
        assert comm.done_at == t0 + 240  # the first update is when people were told
        # unchecking an item does not undo what the update did
        await desk.check(inc.id, "communicate", 0)
        await desk.check(inc.id, "communicate", 0, checked=False)
        assert comm.done_at == t0 + 240
        await desk.resolve(inc.id)
        report = render(inc, now=clock())
        row = next(line for line in report.splitlines() if line.startswith("| Communicate |"))
        assert "on time" in row, row
        assert "alice@bastion" in row, row
        # the same from the journal alone
        again, _ = await reread(tmp_path / "j.jsonl", desk, clock, inc.id)
        assert again.step("communicate").done_at == t0 + 240  # type: ignore[union-attr]
    finally:
        await desk.journal.close()


async def test_setting_the_severity_checks_determine_the_severity(tmp_path: Path) -> None:
    """`s` with why is the playbook's "Determine if P0, P1 or P2": the second walk set it
    and read "Assess severity 1/4 OVERDUE" and "not done" in the post-mortem."""
    clock = Clock()
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("Checkout failing", "P0")
        assess = inc.step("assess")
        assert assess is not None
        [(i, item)] = [(i, it) for i, it in assess.items("P0") if it.done_by == "severity"]
        assert item.text == "Determine if P0, P1 or P2"
        assert i not in assess.checked
        clock.advance(90)
        await desk.severity(inc.id, "P1", "only card payments")
        assert assess.checked[i].ts == clock()
        assert assess.progress("P1") == (1, 4)
    finally:
        await desk.journal.close()


async def test_confirming_the_severity_it_has_checks_determine_the_severity(
        tmp_path: Path) -> None:
    """A walk chose P0 for a P0 incident: nothing happened, "Determine if P0, P1 or P2"
    stayed open and the timeline said nothing. The same severity is a confirmation."""
    from console.engine.incidents.postmortem import render
    from console.engine.incidents.timeline import describe_entry

    clock = Clock()
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("Checkout failing", "P0")
        assess = inc.step("assess")
        assert assess is not None
        [(i, _)] = [(i, it) for i, it in assess.items("P0") if it.done_by == "severity"]
        clock.advance(60)
        await desk.severity(inc.id, "P0", "every payment fails")
        assert assess.checked[i].ts == clock()
        assert inc.severity == "P0"
        assert inc.severity_changes == []  # confirmed, not changed
        assert describe_entry(inc, inc.timeline[-1])[1] == \
            "severity confirmed P0: every payment fails"
        assert "| Severity | P0 |" in render(inc, now=clock())
        again, _ = await reread(tmp_path / "j.jsonl", desk, clock, inc.id)
        assert again.step("assess").checked[i].ts == clock()  # type: ignore[union-attr]
    finally:
        await desk.journal.close()


async def test_incident_lifecycle_due_times_and_overdue(tmp_path: Path) -> None:
    clock = Clock()
    t0 = clock.t
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("API 5xx storm", "P0", alerts=["api-5xx-majority"],
                              runbook="high-error-rate")
        assert inc.playbooks == ["incident-response", "high-error-rate"]
        ack = inc.step("acknowledge")
        assert ack is not None
        assert inc.due(ack) == t0 + 300
        assert inc.next_step() is ack
        assert inc.step_status(ack, clock()) == "pending"
        assert inc.remaining(ack, clock()) == 300
        clock.advance(299)
        assert inc.overdue(clock()) == []
        clock.advance(2)  # 5 min 1 s: acknowledge is overdue, assess not yet
        assert [s.id for s in inc.overdue(clock())] == ["acknowledge"]
        assert desk.book.overdue() == [(inc, ack)]
        await desk.acknowledge(inc.id)
        assert inc.acknowledged_at == t0 + 301
        assert inc.step_status(ack, clock()) == "late"
        assert inc.next_step() is inc.step("assess")
        # check every assess item: the step is done when the last one is checked
        assess = inc.step("assess")
        assert assess is not None
        for i, _item in assess.items("P0"):
            clock.advance(30)
            await desk.check(inc.id, "assess", i)
        assert assess.done_at == t0 + 301 + 120
        assert inc.step_status(assess, clock()) == "done"
        await desk.check(inc.id, "assess", 0, checked=False)
        assert assess.done_at is None
        assert assess.progress("P0") == (3, 4)
        await desk.check(inc.id, "assess", 0)
        await desk.note(inc.id, "rolled back v1.5.2", section="mitigate")
        await desk.note(inc.id, "customers notified via status page")
        await desk.snapshot(inc.id, {"api:error_pct": 62.5, "api:p95_ms": 840.0}, "at ack")
        await desk.handover(inc.id, "bob@bastion", "going off shift")
        # the runbook's own lists are there too, without due times
        inv = inc.step("investigation", "high-error-rate")
        assert inv is not None
        assert inc.due(inv) is None
        # communicate: P0 has three items; P1 two. Downgrading to P1 with two checked
        # completes it, and moves resolve's target (P0 only) away.
        await desk.check(inc.id, "communicate", 0)
        await desk.check(inc.id, "communicate", 1)
        comm = inc.step("communicate")
        assert comm is not None
        assert comm.done_at is None
        clock.advance(60)
        await desk.severity(inc.id, "P1")
        assert comm.done_at == clock()
        resolve = inc.step("resolve")
        assert resolve is not None
        assert inc.due(resolve) is None
        await desk.severity(inc.id, "P0")
        assert inc.due(resolve) == t0 + 7200
        clock.t = t0 + 1801  # mitigate (30 min) is overdue now
        assert "mitigate" in [s.id for s in inc.overdue(clock())]
        await desk.mitigate(inc.id)
        clock.t = t0 + 3600
        await desk.resolve(inc.id)
        assert not inc.is_open
        assert inc.resolved_at == t0 + 3600
        assert inc.step_status(resolve, clock()) == "done"
        assert inc.overdue(clock()) == []  # resolved: only the post-mortem can fall due
        clock.t = t0 + 86401
        assert [s.id for s in inc.overdue(clock())] == ["postmortem"]
        assert desk.book.open_incidents() == []
        # everything came from the journal: a fresh book from the file is identical
        again, book2 = await reread(tmp_path / "j.jsonl", desk, clock, inc.id)
        assert again.owner == "bob@bastion"
        assert again.severity == "P0"
        assert [c["to"] for c in again.severity_changes] == ["P1", "P0"]
        assert again.snapshots[0]["values"] == {"api:error_pct": 62.5, "api:p95_ms": 840.0}
        assert again.step("mitigate").notes[0].text == "rolled back v1.5.2"  # type: ignore[union-attr]
        assert again.notes[0].text == "customers notified via status page"
        assert [s.done_at for s in again.steps] == [s.done_at for s in inc.steps]
        assert again.resolved_at == inc.resolved_at
        assert book2.problems == []
    finally:
        await desk.journal.close()


async def test_a_timeline_across_midnight_names_the_new_day(tmp_path: Path) -> None:
    """Opened at 23:58 UTC, resolved at 00:10: the post-mortem's timeline must not read as
    going back in time, so the first line of the new day carries its date."""
    clock = Clock(1_764_892_680.0)  # 2025-12-04 23:58:00 UTC
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("API 5xx storm", "P1")
        clock.advance(60)
        await desk.acknowledge(inc.id)  # 23:59:00
        clock.advance(120)
        await desk.note(inc.id, "rolled back")  # 00:01:00, the next day
        clock.advance(540)
        await desk.resolve(inc.id)  # 00:10:00
        md = render(inc, now=clock())
    finally:
        await desk.journal.close()
    assert "On 2025-12-04 at 23:58:00 UTC" in md
    story = md[md.index("## Timeline (UTC)"):md.index("## Root cause")]
    stamps = [line[3:line.index("`", 3)] for line in story.splitlines()
              if line.startswith("- `")]
    assert stamps[:2] == ["23:58:00", "23:59:00"]
    assert "2025-12-05 00:01:00" in stamps
    after = stamps[stamps.index("2025-12-05 00:01:00") + 1:]
    assert after
    assert all(len(s) == 8 for s in after)  # the same day again: time only


async def test_several_open_incidents_and_a_second_console(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "j.jsonl"
    alice = await _desk(path, clock, "alice@bastion")
    bob = await _desk(path, clock, "bob@bastion")
    try:
        a = await alice.open("Slow feed", "P2", alerts=["latency-p95-slow"])
        clock.advance(10)
        b = await alice.open("Payments failing", "P0", alerts=["payment-webhook-failures"])
        assert b.playbooks == ["incident-response", "payment-processing-failure"]
        assert a.playbooks == ["incident-response", "slow-performance"]
        assert [i.id for i in alice.book.open_incidents()] == [b.id, a.id]  # P0 first
        bob.journal.poll()  # what follow() does every 250 ms
        assert sorted(bob.book.incidents) == sorted([a.id, b.id])
        await bob.acknowledge(b.id)
        alice.journal.poll()
        got = alice.book.get(b.id)
        assert got is not None
        assert got.acknowledged_at == clock()
        assert got.timeline[-1]["actor"] == "bob@bastion"
    finally:
        await alice.journal.close()
        await bob.journal.close()


def test_bad_entries_are_reported_not_raised(tmp_path: Path) -> None:
    pbs = load_playbooks(tmp_path)
    book = IncidentBook.from_entries(pbs, [
        {"id": "1", "type": "incident.check", "incident": "nope", "section": "assess",
         "item": 0, "ts": 1.0},
        {"id": "2", "type": "incident.open", "incident": "X", "severity": "P9", "ts": 2.0,
         "title": None, "alerts": None},
        {"id": "3", "type": "incident.check", "incident": "X", "section": "assess",
         "item": 99, "ts": 3.0},
        {"id": "3", "type": "incident.resolve", "incident": "X", "ts": 4.0},  # repeat id
        {"id": "4", "type": "incident.open", "incident": "X", "ts": 5.0},
        {"id": "5", "type": "note", "text": "not an incident entry"},
        {"id": "6", "type": "incident.resolve", "incident": "X", "ts": "later"},
    ], clock=lambda: 100.0)
    x = book.get("X")
    assert x is not None
    assert x.severity == "P2"
    assert x.title == "X"
    assert x.resolved_at == 100.0
    assert len(book.problems) == 3


async def test_open_from_a_firing_alert(tmp_path: Path) -> None:
    from console.engine.alerting.lifecycle import Alert
    from console.engine.config.rules import Rule

    clock = Clock()
    t0 = clock.t
    rule = Rule.model_validate({"name": "api-5xx-majority", "expr": "error_pct > 50",
                                "severity": "P0", "runbook": "high-error-rate",
                                "summary": "API returning 5xx errors"})
    alert = Alert(rule=rule, target="api", labels={})
    alert.first_fail_at, alert.fired_at = t0 - 200, t0 - 90  # fired 90 s before the key
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open_from_alert(alert)
        assert inc.title == "API returning 5xx errors (api)"
        assert inc.severity == "P0"
        assert inc.alerts == ["api-5xx-majority/api"]
        assert inc.targets == ["api"]
        assert inc.playbooks == ["incident-response", "high-error-rate"]
        assert inc.started == t0 - 90  # timers count from the alert, not the key press
        assert inc.detected == t0 - 200
        ack = inc.step("acknowledge")
        assert ack is not None
        assert inc.remaining(ack, clock()) == 210
        assert inc.acknowledged_at is None
        # acknowledged on the alerts screen first, then opened: the incident is
        # acknowledged then, by the same person (the walk saw "ack 19s ✔" in the header
        # beside "Acknowledge 0/3 due in 4m32s")
        alert.ep_acked_at, alert.ep_acked_by = t0 - 30, "ana@bastion"
        acked = await desk.open_from_alert(alert)
        step = acked.step("acknowledge")
        assert step is not None
        assert acked.acknowledged_at == t0 - 30
        assert (step.done_at, step.done_by) == (t0 - 30, "ana@bastion")
        assert acked.step_status(step, clock()) == "done"
    finally:
        await desk.journal.close()



async def test_a_second_alert_joins_the_open_incident(tmp_path: Path) -> None:
    """Redis down fires on the API's health and on the webhooks: one problem, so the second
    alert is attached to the incident the first one opened, not a second incident. Its
    episode is then the incident's (timeline, post-mortem), and asking again finds it."""
    from console.engine.alerting.lifecycle import Alert
    from console.engine.config.rules import Rule
    from console.engine.incidents.timeline import describe_entry

    clock = Clock()
    t0 = clock.t

    def firing(name: str, target: str, severity: str, fired: float) -> Alert:
        rule = Rule.model_validate({"name": name, "expr": "down", "severity": severity,
                                    "summary": f"{name} fires"})
        a = Alert(rule=rule, target=target, labels={})
        a.first_fail_at, a.fired_at = fired - 30, fired
        return a

    first = firing("payment-webhooks-down", "payments-webhook", "P0", t0 - 60)
    second = firing("dependency-down", "api-health", "P1", t0)
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open_from_alert(first)
        assert desk.incident_of(first) is inc
        assert desk.incident_of(second) is None
        await desk.attach_alert(inc.id, second)
        assert desk.incident_of(second) is inc
        assert inc.alerts == ["payment-webhooks-down/payments-webhook",
                              "dependency-down/api-health"]
        assert inc.targets == ["payments-webhook", "api-health"]
        assert inc.episodes == [f"{first.id}/{first.incident}", f"{second.id}/{second.incident}"]
        await desk.attach_alert(inc.id, second)  # twice: still once
        assert len(inc.alerts) == 2
        kind, text = describe_entry(inc, inc.timeline[-1])
        assert (kind, text) == ("action", "alert dependency-down/api-health attached "
                                          "(api-health)")
        assert inc.started == t0 - 60  # the incident's clock is the first alert's
        # one that fired earlier (found later) moves it: every clock counts from it
        earlier = firing("failed-payment-rate", "api-metrics", "P1", t0 - 90)
        await desk.attach_alert(inc.id, earlier)
        assert inc.started == t0 - 90
        assert inc.detected == t0 - 120
        ack = inc.step("acknowledge")
        assert ack is not None
        assert inc.due(ack) == t0 - 90 + 300
        await desk.resolve(inc.id)
        assert desk.incident_of(first) is None  # resolved: a new firing opens a new one
        report = render(inc, now=clock())
        assert "dependency-down/api-health" in report
    finally:
        await desk.journal.close()

_any = st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.text(max_size=8),
                 st.floats(allow_nan=False, allow_infinity=False),
                 st.lists(st.text(max_size=5), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
_entry = st.fixed_dictionaries(
    {"type": st.sampled_from([*TYPES, "note", "incident.bogus"]),
     "incident": st.sampled_from(["A", "B", None, 3]),
     "ts": st.one_of(st.floats(0, 1e10), st.text(max_size=3)),
     "id": st.text(max_size=4)},
    optional={"section": st.sampled_from(["acknowledge", "assess", "resolve", "symptoms",
                                          "nope", None, 1]),
              "playbook": st.sampled_from(["incident-response", "high-error-rate", None, 2]),
              "item": _any, "severity": st.sampled_from([*SEVERITIES, "P9", None, 0]),
              "alerts": _any, "playbooks": _any, "started": _any, "detected": _any,
              "values": _any, "to": _any, "text": _any, "value": _any, "runbook": _any,
              "targets": _any, "false_positive": _any},
)

_PBS = load_playbooks(Path("/nonexistent"))


@settings(max_examples=200, deadline=None, derandomize=True)  # explored with 4000 locally
@given(st.lists(_entry, max_size=40))
def test_folding_never_raises_on_any_entries(entries: list[dict[str, Any]]) -> None:
    book = IncidentBook.from_entries(_PBS, entries, clock=lambda: 5.0)
    # the handlers cope themselves; apply()'s last-resort catch is not what saved them
    assert not [p for p in book.problems if "not applied" in p], book.problems
    for inc in book.incidents.values():
        inc.overdue(1e10)
        inc.next_step()
        inc.progress()
        assert inc.severity in SEVERITIES
        render(inc, now=1e10)  # the post-mortem of whatever came out


@pytest.mark.parametrize("started", [6.8e16, -6.8e16, 1e300])
def test_a_post_mortem_of_an_impossible_start_time_does_not_raise(started: float) -> None:
    """Found by the property test above once the post-mortem named recordings: a journal
    entry from a broken clock (or a hostile console) must still fold and render."""
    entries = [{"type": "incident.open", "incident": "inc-1", "title": "t", "severity": "P1",
                "started": started, "ts": 5.0}]
    book = IncidentBook.from_entries(_PBS, entries, clock=lambda: 5.0)
    (inc,) = book.incidents.values()
    assert "# " in render(inc, now=1e10)
