"""Incidents rebuilt purely from journal entries, with step due times from an injectable clock.

Nothing about an incident lives anywhere but the journal: the state shown is a fold over its
entries in file order, so a restart (or another console on the same journal) rebuilds exactly
the same incidents, and the post-mortem and KPIs read the same history the screen showed.
Times come from the entries' ``ts`` and from the clock passed in, so timers and overdue flags
are tested in milliseconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, cast

from console.engine.incidents.playbooks import Playbook, Playbooks, Section
from console.engine.model import SEVERITIES, IncidentEntry

# Entry types (the journal's ``type``); every one carries ``incident``.
OPEN = "incident.open"
CHECK = "incident.check"
UNCHECK = "incident.uncheck"
NOTE = "incident.note"
SEVERITY = "incident.severity"
SNAPSHOT = "incident.snapshot"
HANDOVER = "incident.handover"
ACKNOWLEDGE = "incident.acknowledge"
MITIGATE = "incident.mitigate"
RESOLVE = "incident.resolve"
FALSE_POSITIVE = "incident.false_positive"
POSTMORTEM = "incident.postmortem"
RUNBOOK = "incident.runbook"
REOPEN = "incident.reopen"
STATUS = "incident.status"  # a status update for the people affected (playbook Step 3)
CHANNEL = "incident.channel"  # the incident's chat channel exists (playbook Step 1)
ALERT = "incident.alert"  # another firing alert is part of the incident (a second symptom)
TYPES = (OPEN, CHECK, UNCHECK, NOTE, SEVERITY, SNAPSHOT, HANDOVER, ACKNOWLEDGE, MITIGATE,
         RESOLVE, FALSE_POSITIVE, POSTMORTEM, RUNBOOK, REOPEN, STATUS, CHANNEL, ALERT)

# An action completes a response step by itself, whatever its items say. The playbook step
# each action completes: acknowledging is the Acknowledge step, the first status update a
# Slack route posts (Step 3: "post a status update") is the Communicate step, and so on.
_STEP_OF_ACTION = {ACKNOWLEDGE: "acknowledge", STATUS: "communicate", MITIGATE: "mitigate",
                   RESOLVE: "resolve", POSTMORTEM: "postmortem"}


def new_incident_id(now: float) -> str:
    """``INC-20250120-1432-3fa9``: sortable, readable aloud, unique across consoles."""
    return time.strftime("INC-%Y%m%d-%H%M", time.gmtime(now)) + "-" + os.urandom(2).hex()


@dataclass(slots=True)
class Mark:
    ts: float
    actor: str


@dataclass(slots=True)
class Note:
    ts: float
    actor: str
    text: str
    section: str | None = None
    playbook: str | None = None


@dataclass(slots=True)
class StepState:
    """One section of one playbook inside an incident: its checks, notes, due time."""

    playbook: str
    section: Section
    timed: bool  # a response step (counts against its target) rather than a runbook list
    checked: dict[int, Mark] = field(default_factory=dict)
    done_at: float | None = None
    done_by: str | None = None
    notes: list[Note] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.section.id

    def items(self, severity: str | None) -> list[tuple[int, Any]]:
        return self.section.items_for(severity)

    def progress(self, severity: str | None) -> tuple[int, int]:
        idx = [i for i, _ in self.items(severity)]
        return sum(1 for i in idx if i in self.checked), len(idx)


# What the book folds out of the entries, for the post-mortem, KPIs and the screens.
SeverityChange = TypedDict("SeverityChange", {"ts": float, "actor": str, "from": str,
                                              "to": str, "reason": str})
Handover = TypedDict("Handover", {"ts": float, "from": str, "to": str, "actor": str,
                                  "text": str})


class Snapshot(TypedDict):
    ts: float
    actor: str
    values: dict[str, float | None]  # series -> value
    label: str


class Reopening(TypedDict):
    ts: float
    actor: str
    resolved_at: float  # when it had been resolved
    reason: str


class StatusUpdate(TypedDict):
    ts: float
    actor: str
    text: str
    user_facing: bool | None  # None: decided by the severity
    posted: bool  # a Slack route posts it (the receivers the writing console had)


@dataclass(slots=True)
class Incident:
    """The current state of one incident, as its journal entries left it."""

    id: str
    title: str
    severity: str
    started: float
    opened_by: str
    alerts: list[str] = field(default_factory=list)
    episodes: list[str] = field(default_factory=list)  # alert history keys rule/target/n
    runbook: str | None = None  # the runbook it works through (attachable, changeable)
    targets: list[str] = field(default_factory=list)  # whose metrics a snapshot takes
    detected: float | None = None  # first failing sample of the alert, if known
    owner: str = ""
    acknowledged_at: float | None = None
    mitigated_at: float | None = None
    resolved_at: float | None = None
    postmortem_at: float | None = None  # written: its draft edited by someone
    postmortem_drafted_at: float | None = None  # the console's draft, with its prompts
    false_positive: bool = False
    playbooks: list[str] = field(default_factory=list)
    steps: list[StepState] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)  # on the timeline, not on a step
    snapshots: list[Snapshot] = field(default_factory=list)
    handovers: list[Handover] = field(default_factory=list)
    severity_changes: list[SeverityChange] = field(default_factory=list)
    reopened: list[Reopening] = field(default_factory=list)
    status_updates: list[StatusUpdate] = field(default_factory=list)
    channel: str = ""  # the incident channel's name, once created
    timeline: list[IncidentEntry] = field(default_factory=list)  # every entry, in order

    # -- derived -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def state(self) -> str:
        """Where the response is: ``open``, ``acknowledged``, ``mitigated`` or ``resolved``."""
        return ("resolved" if not self.is_open else
                "mitigated" if self.mitigated_at is not None else
                "acknowledged" if self.acknowledged_at is not None else "open")

    def response_steps(self) -> list[StepState]:
        return [s for s in self.steps if s.timed]

    def step(self, section: str, playbook: str | None = None) -> StepState | None:
        for s in self.steps:
            if s.id == section and (playbook is None or s.playbook == playbook):
                return s
        return None

    def due(self, step: StepState) -> float | None:
        """When `step` is due: the incident's start plus its target for the current severity."""
        if not step.timed:
            return None
        target = step.section.target_for(self.severity)
        return None if target is None else self.started + target

    def remaining(self, step: StepState, now: float) -> float | None:
        """Seconds left before `step` is due (negative once past), None without a target."""
        due = self.due(step)
        return None if due is None else due - now

    def step_status(self, step: StepState, now: float) -> str:
        """``done``, ``late`` (done after its due time), ``overdue``, or ``pending``."""
        due = self.due(step)
        if step.done_at is not None:
            return "late" if due is not None and step.done_at > due else "done"
        if due is not None and now > due and self.still_running(step):
            return "overdue"
        return "pending"

    def still_running(self, step: StepState) -> bool:
        """Whether `step` still counts down: once resolved, only the post-mortem can fall
        due (the others are done or were not done, nothing more)."""
        return self.is_open or step.id == "postmortem"

    def overdue(self, now: float) -> list[StepState]:
        return [s for s in self.response_steps() if self.step_status(s, now) == "overdue"]

    def next_step(self) -> StepState | None:
        """The first response step not yet done that still counts down: the one the screen
        highlights (the post-mortem, once resolved)."""
        return next((s for s in self.response_steps()
                     if s.done_at is None and self.still_running(s)), None)

    def progress(self) -> tuple[int, int]:
        """Response steps done / all response steps."""
        steps = self.response_steps()
        return sum(1 for s in steps if s.done_at is not None), len(steps)

    def age(self, now: float) -> float:
        return (self.resolved_at if self.resolved_at is not None else now) - self.started


class IncidentBook:
    """Every incident, folded from journal entries; feed it with :meth:`apply`.

    `playbooks` supplies each incident's checklist (the names are recorded in the open entry,
    so a replay uses the same ones). Entries are taken once each, by ``id``.
    """

    def __init__(self, playbooks: Playbooks, *, clock: Callable[[], float] = time.time) -> None:
        self.playbooks = playbooks
        self.clock = clock
        self.incidents: dict[str, Incident] = {}
        self.problems: list[str] = []  # entries that could not be applied, for the operator
        self._seen: set[str] = set()

    @classmethod
    def from_entries(cls, playbooks: Playbooks, entries: Iterable[Mapping[str, Any]], *,
                     clock: Callable[[], float] = time.time) -> IncidentBook:
        book = cls(playbooks, clock=clock)
        book.apply_all(entries)
        return book

    # -- queries -----------------------------------------------------------------------------

    def open_incidents(self) -> list[Incident]:
        """Open incidents, most severe first, then oldest first."""
        rank: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
        return sorted((i for i in self.incidents.values() if i.is_open),
                      key=lambda i: (rank.get(i.severity, 9), i.started))

    def get(self, incident_id: str) -> Incident | None:
        inc = self.incidents.get(incident_id)
        if inc is None:  # a unique prefix will do on the command line
            hits = [i for k, i in self.incidents.items() if k.startswith(incident_id)]
            inc = hits[0] if len(hits) == 1 else None
        return inc

    def overdue(self, now: float | None = None) -> list[tuple[Incident, StepState]]:
        now = self.clock() if now is None else now
        return [(i, s) for i in self.open_incidents() for s in i.overdue(now)]

    # -- folding -----------------------------------------------------------------------------

    def apply_all(self, entries: Iterable[Mapping[str, Any]]) -> None:
        for e in entries:
            self.apply(e)

    def replay(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Fold `entries` again from nothing: a shared journal whose order changed (actions
        taken while its database was away, ordered once it is back)."""
        self.incidents.clear()
        self.problems.clear()
        self._seen.clear()
        self.apply_all(entries)

    def apply(self, entry: Mapping[str, Any]) -> Incident | None:
        """Fold one entry in; entries of other types or unknown incidents are ignored.

        Never raises: a journal written by another version (or by hand) must not stop the
        console from showing the rest.
        """
        try:
            return self._apply(entry)
        except Exception as exc:
            self.problems.append(f"{entry.get('incident')!r}: {entry.get('type')!r} "
                                 f"not applied: {exc!r}"[:300])
            return None

    def _apply(self, raw: Mapping[str, Any]) -> Incident | None:
        # JSON from a journal (this console's, another's, an older version's): the shape of
        # an IncidentEntry, each field checked where it is used.
        entry = cast(IncidentEntry, dict(raw))
        rid = entry.get("id")
        if isinstance(rid, str):
            if rid in self._seen:
                return None
            self._seen.add(rid)
        etype = entry.get("type")
        iid = entry.get("incident")
        if not isinstance(etype, str) or not etype.startswith("incident.") or \
                not isinstance(iid, str):
            return None
        ts = _num(entry.get("ts"), self.clock())
        actor = str(entry.get("actor") or "?")
        if etype == OPEN:
            if iid in self.incidents:
                self.problems.append(f"{iid}: opened twice; the second open is ignored")
                return None
            return self._open(iid, entry, ts, actor)
        inc = self.incidents.get(iid)
        if inc is None:
            self.problems.append(f"{iid}: {etype} for an incident never opened")
            return None
        inc.timeline.append(entry)
        handler = getattr(self, "_on_" + etype.removeprefix("incident."), None)
        if handler is not None:
            handler(inc, entry, ts, actor)
        return inc

    def _open(self, iid: str, e: IncidentEntry, ts: float, actor: str) -> Incident:
        severity = str(e.get("severity") or "P2")
        if severity not in SEVERITIES:
            severity = "P2"
        alerts = _strs(e.get("alerts"))
        names = e.get("playbooks")
        if isinstance(names, list) and names:
            pbs = [p for p in (self.playbooks.get(str(n)) for n in names) if p is not None]
        else:
            pbs = self.playbooks.select(severity=severity, runbook=_str(e.get("runbook")),
                                        alerts=alerts)
        runbook = next((p.name for p in pbs if p.kind == "runbook"), None)
        inc = Incident(
            id=iid, title=str(e.get("title") or iid), severity=severity,
            started=_num(e.get("started"), ts), opened_by=actor, alerts=alerts,
            episodes=_strs(e.get("episodes")), runbook=runbook,
            detected=_num(e.get("detected"), None), owner=actor,
            playbooks=[p.name for p in pbs],
            targets=_strs(e.get("targets")),
        )
        for pb in pbs:
            inc.steps.extend(_steps_of(pb))
        acked = _num(e.get("acknowledged"), None)
        if acked is not None:  # its alert was acknowledged before the incident was opened
            self._action(inc, "acknowledged_at", ACKNOWLEDGE, acked,
                         str(e.get("acknowledged_by") or actor))
        inc.timeline.append(e)
        self.incidents[iid] = inc
        return inc

    def _step_for(self, inc: Incident, e: IncidentEntry) -> StepState | None:
        section = _str(e.get("section"))
        return None if section is None else inc.step(section, _str(e.get("playbook")))

    def _on_check(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        step, item = self._step_for(inc, e), e.get("item")
        if step is None or not isinstance(item, int) or not 0 <= item < len(step.section.items):
            self.problems.append(f"{inc.id}: check of an unknown item {e.get('section')!r}"
                                 f"/{item!r}")
            return
        step.checked.setdefault(item, Mark(ts, actor))
        done, total = step.progress(inc.severity)
        if total and done == total and step.done_at is None:
            step.done_at, step.done_by = ts, actor

    def _on_uncheck(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        step, item = self._step_for(inc, e), e.get("item")
        if step is None or not isinstance(item, int):
            return
        step.checked.pop(item, None)
        if step.done_at is not None and not self._done_by_action(inc, step):
            step.done_at = step.done_by = None

    @staticmethod
    def _done_by_action(inc: Incident, step: StepState) -> bool:
        at = {"acknowledge": inc.acknowledged_at, "mitigate": inc.mitigated_at,
              "resolve": inc.resolved_at, "postmortem": inc.postmortem_at,
              "communicate": next((u["ts"] for u in inc.status_updates if u["posted"]),
                                  None)}
        return step.timed and at.get(step.id) is not None

    def _on_note(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        note = Note(ts, actor, str(e.get("text") or ""), _str(e.get("section")),
                    _str(e.get("playbook")))
        step = self._step_for(inc, e)
        (step.notes if step is not None else inc.notes).append(note)

    def _on_severity(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        sev = _str(e.get("severity"))
        if sev in SEVERITIES:
            if sev != inc.severity:  # else confirmed as it is: the items below are checked
                inc.severity_changes.append({"ts": ts, "actor": actor, "from": inc.severity,
                                             "to": sev, "reason": str(e.get("reason") or "")})
                inc.severity = sev
            for step in inc.steps:  # items limited to a severity may complete a step now
                for i, item in enumerate(step.section.items):  # "Determine if P0, P1…"
                    if item.done_by == "severity":
                        step.checked.setdefault(i, Mark(ts, actor))
                done, total = step.progress(sev)
                if step.done_at is None and total and done == total:
                    step.done_at, step.done_by = ts, actor

    def _on_snapshot(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        values = e.get("values")
        inc.snapshots.append({"ts": ts, "actor": actor,
                              "values": dict(values) if isinstance(values, Mapping) else {},
                              "label": str(e.get("label") or "")})

    def _on_handover(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        to = str(e.get("to") or "?")
        inc.handovers.append({"ts": ts, "from": inc.owner, "to": to, "actor": actor,
                              "text": str(e.get("text") or "")})
        inc.owner = to

    def _action(self, inc: Incident, attr: str | None, etype: str, ts: float,
                actor: str) -> None:
        if attr is not None and getattr(inc, attr) is None:
            setattr(inc, attr, ts)
        step = inc.step(_STEP_OF_ACTION[etype])
        if step is not None and step.timed and step.done_at is None:
            step.done_at, step.done_by = ts, actor

    def _on_acknowledge(self, inc: Incident, e: IncidentEntry, ts: float,
                        actor: str) -> None:
        self._action(inc, "acknowledged_at", ACKNOWLEDGE, ts, actor)

    def _on_mitigate(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        self._action(inc, "mitigated_at", MITIGATE, ts, actor)

    def _on_resolve(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        self._action(inc, "resolved_at", RESOLVE, ts, actor)
        if e.get("false_positive") is True:
            inc.false_positive = True

    def _on_false_positive(self, inc: Incident, e: IncidentEntry, ts: float,
                           actor: str) -> None:
        inc.false_positive = e.get("value", True) is not False

    def _on_postmortem(self, inc: Incident, e: IncidentEntry, ts: float,
                       actor: str) -> None:
        """A draft written (``draft``) leaves the step open: a walk's "6/6" stood beside a
        file of italic prompts. The post-mortem is written once someone edited the draft
        (an entry without ``draft``, as every entry before drafts were told apart)."""
        if e.get("draft") is True:
            if inc.postmortem_drafted_at is None:
                inc.postmortem_drafted_at = ts
            return
        self._action(inc, "postmortem_at", POSTMORTEM, ts, actor)

    def _on_runbook(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        """Attach a runbook, or change it: its steps replace the previous runbook's (the
        response steps stay); the previous runbook's checks stay in the timeline."""
        pb = self.playbooks.get(str(e.get("runbook") or ""))
        if pb is None or pb.kind != "runbook":
            self.problems.append(f"{inc.id}: runbook {e.get('runbook')!r} unknown; kept "
                                 f"{inc.runbook or 'none'}")
            return
        old = {p for p in inc.playbooks if (q := self.playbooks.get(p)) is None
               or q.kind == "runbook"}
        inc.steps = [s for s in inc.steps if s.playbook not in old] + _steps_of(pb)
        inc.playbooks = [p for p in inc.playbooks if p not in old] + [pb.name]
        inc.runbook = pb.name

    def _on_reopen(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        """A resolved incident is open again (the problem came back, or it was resolved by
        mistake); the resolve step is due again."""
        if inc.resolved_at is None:
            return
        inc.reopened.append({"ts": ts, "actor": actor, "resolved_at": inc.resolved_at,
                             "reason": str(e.get("reason") or "")})
        inc.resolved_at = None
        step = inc.step("resolve")
        if step is not None and step.timed:
            done, total = step.progress(inc.severity)
            if not (total and done == total):
                step.done_at = step.done_by = None

    def _on_status(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        uf = e.get("user_facing")
        # People were told only if a route posts it: one written where no Slack receiver
        # posts it leaves the step to its items (the walk saw "Communicate ✔ done" for an
        # update the console had said it did not send)
        routes = e.get("routes")
        posted = isinstance(routes, list) and bool(routes)
        inc.status_updates.append({"ts": ts, "actor": actor, "text": str(e.get("text") or ""),
                                   "user_facing": uf if isinstance(uf, bool) else None,
                                   "posted": posted})
        if posted:
            self._action(inc, None, STATUS, ts, actor)

    def _on_channel(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        inc.channel = str(e.get("name") or inc.channel)

    def _on_alert(self, inc: Incident, e: IncidentEntry, ts: float, actor: str) -> None:
        for have, key in ((inc.alerts, "alert"), (inc.episodes, "episode"),
                          (inc.targets, "target")):
            value = _str(e.get(key))
            if value and value not in have:
                have.append(value)
        # An alert of the problem that fired (or failed) first moves its start: every
        # clock of the incident then counts from the same moment (the walk read "ack 41s"
        # in the header, from that alert, beside "Acknowledge done +32s" from the other).
        started, detected = _num(e.get("started"), None), _num(e.get("detected"), None)
        if started is not None and started < inc.started:
            inc.started = started
        if detected is not None and (inc.detected is None or detected < inc.detected):
            inc.detected = detected


def _first_failure(alert: Any) -> float | None:
    """An alert's first failing sample (its detection), from its own field or its time to
    detect: an incident opened from it, or attached to one, detects from there."""
    if alert.first_fail_at is not None:
        return float(alert.first_fail_at)
    if alert.detect_s is not None and alert.fired_at is not None:
        return float(alert.fired_at - alert.detect_s)
    return None


def _steps_of(pb: Playbook) -> list[StepState]:
    return [StepState(pb.name, s, timed=pb.kind == "response") for s in pb.sections]


def _num(v: Any, default: Any) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool):
        with contextlib.suppress(OverflowError):
            f = float(v)
            if math.isfinite(f):
                return f
    return default


def _strs(v: Any) -> list[str]:
    return [str(x) for x in v if x is not None] if isinstance(v, list) else []


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


# -- writing: the actions, as journal entries ------------------------------------------------


class IncidentDesk:
    """The operator's actions on incidents: each is a journal entry, applied once durable.

    The book is fed from the journal (own and other consoles' entries alike). An entry the
    journal could only keep in memory (degraded disk) is applied at once all the same, so the
    screen never hides an action; the book takes it only once when it reaches the file.
    """

    def __init__(self, journal: Any, book: IncidentBook) -> None:
        self.journal = journal
        self.book = book
        self._listeners: list[Callable[[list[IncidentEntry]], None]] = []
        book.apply_all(journal.entries)
        journal.subscribe(book.apply_all)

    def listen(self, callback: Callable[[list[IncidentEntry]], None]) -> None:
        """`callback([entry])` after each action taken here, durable or only in memory (a
        full disk): what must reach people, such as a status update, does not wait for
        the disk. Entries from other consoles arrive through the journal's subscription."""
        self._listeners.append(callback)

    async def _do(self, etype: str, incident: str, data: IncidentEntry | None = None) -> Any:
        entry: IncidentEntry = {"type": etype, "incident": incident, **(data or {})}
        rec = await self.journal.append(entry)
        self.book.apply_all(self.journal.poll())
        self.book.apply(rec.entry)  # a no-op when the poll already took it
        for cb in list(self._listeners):
            cb([rec.entry])
        return rec

    async def open(self, title: str, severity: str = "P1", *, alerts: Sequence[str] = (),
                   runbook: str | None = None, detected: float | None = None,
                   started: float | None = None, targets: Sequence[str] = (),
                   episodes: Sequence[str] = (),
                   acknowledged: tuple[float, str] | None = None) -> Incident:
        """Open an incident by hand (or from an alert: see :meth:`open_from_alert`);
        `acknowledged` (when, by whom): it was acknowledged before it was opened."""
        now = self.book.clock()
        start = now if started is None else min(started, now)
        iid = new_incident_id(start)
        pbs = self.book.playbooks.select(severity=severity, runbook=runbook, alerts=alerts)
        data: IncidentEntry = {"title": title, "severity": severity, "alerts": list(alerts),
                               "started": start, "playbooks": [p.name for p in pbs]}
        if runbook:
            data["runbook"] = runbook
        if detected is not None:
            data["detected"] = detected
        if targets:
            data["targets"] = list(targets)
        if episodes:
            data["episodes"] = list(episodes)
        if acknowledged is not None:
            data["acknowledged"], data["acknowledged_by"] = acknowledged
        await self._do(OPEN, iid, data)
        return self.book.incidents[iid]

    async def open_from_alert(self, alert: Any, *, title: str | None = None) -> Incident:
        """One key on a firing alert: its severity, summary, runbook and target; an alert
        acknowledged already makes the incident acknowledged then, by the same person.

        The incident starts when the alert fired (the playbook's "acknowledge < 5 min" counts
        from the alert, not from the key press); ``detected`` is its first failing sample,
        so MTTD is the alert's own time to detect.
        """
        rule = alert.rule
        summary = alert.summary
        detected = _first_failure(alert)
        acked = alert.ep_acked_at
        return await self.open(
            title or f"{summary} ({alert.target})", rule.severity,
            alerts=[alert.id], runbook=rule.runbook or rule.name,
            detected=detected, started=alert.fired_at, targets=[alert.target],
            episodes=[f"{alert.id}/{alert.incident}"],
            acknowledged=None if acked is None else (acked, alert.ep_acked_by or "?"))

    async def attach_alert(self, incident: str, alert: Any) -> None:
        """Another firing alert is part of an open incident's problem (the second symptom of
        one cause): its episode joins the incident's, so the timeline, the post-mortem's
        alerts and root cause, and MTTD count it; no second incident to close. When it
        fired before the incident's start, the incident starts then."""
        data: IncidentEntry = {"alert": alert.id, "target": alert.target,
                               "episode": f"{alert.id}/{alert.incident}"}
        if alert.fired_at is not None:
            data["started"] = alert.fired_at
        detected = _first_failure(alert)
        if detected is not None:
            data["detected"] = detected
        await self._do(ALERT, incident, data)

    def incident_of(self, alert: Any) -> Incident | None:
        """The open incident that holds this firing episode of the alert, if one does."""
        episode = f"{alert.id}/{alert.incident}"
        return next((inc for inc in self.book.open_incidents() if episode in inc.episodes),
                    None)

    async def check(self, incident: str, section: str, item: int, *, checked: bool = True,
                    playbook: str | None = None) -> None:
        await self._do(CHECK if checked else UNCHECK, incident,
                       {"section": section, "item": item, "playbook": playbook})

    async def note(self, incident: str, text: str, *, section: str | None = None,
                   playbook: str | None = None) -> None:
        await self._do(NOTE, incident, {"text": text, "section": section, "playbook": playbook})

    async def severity(self, incident: str, severity: str, reason: str = "") -> None:
        """Set the severity (chosen, with why: the post-mortem shows each change). The
        severity it has already is a confirmation: journaled as one, it checks "Determine
        if P0, P1 or P2" as a change does (choosing the same one used to do nothing)."""
        data: IncidentEntry = {"severity": severity, "reason": reason}
        inc = self.book.get(incident)
        if inc is not None and inc.severity == severity:
            data["confirmed"] = True
        await self._do(SEVERITY, incident, data)

    async def attach_runbook(self, incident: str, runbook: str) -> None:
        """Attach (or change) the runbook an incident works through."""
        await self._do(RUNBOOK, incident, {"runbook": runbook})

    async def reopen(self, incident: str, reason: str = "") -> None:
        await self._do(REOPEN, incident, {"reason": reason})

    async def snapshot(self, incident: str, values: Mapping[str, float | None],
                       label: str = "") -> None:
        await self._do(SNAPSHOT, incident, {"values": dict(values), "label": label})

    async def handover(self, incident: str, to: str, text: str = "") -> None:
        await self._do(HANDOVER, incident, {"to": to, "text": text})

    async def claim(self, incident: str) -> None:
        """Take the incident: its owner becomes whoever acts here (the journal's actor), on
        every console sharing the journal."""
        await self._do(HANDOVER, incident, {"to": str(self.journal.actor), "text": "claimed"})

    async def acknowledge(self, incident: str) -> None:
        await self._do(ACKNOWLEDGE, incident)

    async def mitigate(self, incident: str, text: str = "") -> None:
        await self._do(MITIGATE, incident, {"text": text})

    async def resolve(self, incident: str, *, false_positive: bool = False,
                      text: str = "") -> None:
        await self._do(RESOLVE, incident, {"false_positive": false_positive, "text": text})

    async def mark_false_positive(self, incident: str, value: bool = True) -> None:
        await self._do(FALSE_POSITIVE, incident, {"value": value})

    async def postmortem_done(self, incident: str) -> None:
        """The post-mortem is written (its draft was edited): the step is done."""
        await self._do(POSTMORTEM, incident)

    async def postmortem_drafted(self, incident: str) -> None:
        """The console wrote the draft; the step stays open until someone fills it in."""
        await self._do(POSTMORTEM, incident, {"draft": True})

    async def status_update(self, incident: str, text: str, *,
                            user_facing: bool | None = None,
                            routes: Sequence[str] = ()) -> None:
        """A status update (playbook Step 3), journaled; the notifier posts it to the
        incident channel and, for a user-facing incident, the general one (`user_facing`
        None: decided by the incident's severity, per Slack route)."""
        data: IncidentEntry = {"text": text, "routes": list(routes)}
        if user_facing is not None:
            data["user_facing"] = user_facing
        await self._do(STATUS, incident, data)

    async def channel(self, incident: str, name: str, channel_id: str = "") -> None:
        """The incident channel was created (recorded once, by the notifying console)."""
        inc = self.book.incidents.get(incident)
        if inc is not None and inc.channel == name:
            return
        await self._do(CHANNEL, incident, {"name": name, "channel_id": channel_id})
