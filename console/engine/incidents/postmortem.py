"""A post-mortem draft a person would send: written from events, with prompts where only people
know the answer.

Everything measurable is filled in from what happened — the alert history (first failing
sample, firing, acknowledged, resolved, the cause the alert gave), the incident journal
(actions, notes, severity changes with who and why, snapshots) and the notifications sent —
so the draft is ready within the playbook's 24 hours: a summary sentence, the impact window,
how it was detected, the response against the playbook's targets, the timeline, and root
cause and action items as prompts (the runbook's permanent fixes offered as candidates).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from console.engine.alerting.explain import episode_peak
from console.engine.incidents.book import Incident, StepState
from console.engine.incidents.kpis import (
    Measure,
    impact_episodes,
    incident_kpis,
    measured,
    resolve_lag,
)
from console.engine.incidents.timeline import incident_episodes, number, timeline
from console.engine.model import AlertEpisode
from console.engine.storage.fileio import atomic_write
from console.engine.text.fmt import format_age, format_metric, format_target
from console.engine.text.sanitize import one_line


def _fmt(fmt: str, ts: float) -> str:
    try:
        return time.strftime(fmt, time.gmtime(ts))
    except (OverflowError, OSError, ValueError):  # a timestamp no clock could have made
        return f"@{ts!r}"


def _at(ts: float | None) -> str:
    return "-" if ts is None else _fmt("%Y-%m-%d %H:%M:%S UTC", ts)


def _hms(ts: float) -> str:
    return _fmt("%H:%M:%S", ts)


def elapsed(seconds: float | None) -> str:
    """``4m10s``, ``1h02m``: a time in a table cell (``-`` when there is none)."""
    return "-" if seconds is None else measured(seconds)


def _signed(seconds: float) -> str:
    return ("−" if seconds < 0 else "+") + elapsed(abs(seconds))


def _md(text: Any, n: int = 500) -> str:
    """One line of operator text, safe inside a Markdown table or list item."""
    return one_line(str(text), n).replace("|", "\\|")


def _result(m: Measure) -> str:
    if m.seconds is None:
        return "not yet" if m.start is not None else "-"
    if m.target is None:
        return "done"
    if m.met:
        return "met"
    over = m.seconds - m.target
    return f"missed by {elapsed(over) if round(over) else 'under 1s'}"


def _partly(inc: Incident, step: StepState) -> str:
    """What was done of a step left undone: a bare "not done" beside the timeline's
    "severity confirmed P1" and a status update read as a contradiction."""
    done, total = step.progress(inc.severity)
    parts = [f"{done} of {total} items"] if done else []
    if step.id == "communicate" and (written := inc.status_updates):
        parts.append(f"status update written {_hms(written[0]['ts'])}, not posted")
    return f" ({'; '.join(parts)})" if parts else ""


def _severity_line(inc: Incident) -> str:
    sev = inc.severity
    if inc.severity_changes:
        path = " → ".join([inc.severity_changes[0]["from"]]
                          + [c["to"] for c in inc.severity_changes])
        # "P1 (was P0 → P1; set to P1 by ana: only the webhooks)": the walk read
        # "P1 (changed: P0 → P1: P1 by ana (…))" as garbled
        whys = "; ".join(
            f"set to {c['to']} by {_md(c.get('actor', '?'), 40)}"
            + (f": {_md(c['reason'], 200)}" if c.get("reason") else "")
            for c in inc.severity_changes)
        sev += f" (was {path}; {whys})"
    return sev


def summary_sentence(inc: Incident, eps: list[AlertEpisode],
                     kpis: dict[str, Measure], now: float) -> str:
    """One paragraph a reader gets the incident from."""
    day = _fmt("%Y-%m-%d", inc.started)
    impact = kpis["impact"]
    if eps:
        # The reader's first sentence names the worst alert (the most severe; the first
        # of those), not whichever warning happened to fire first.
        ep = min(eps, key=lambda e: (str(e.get("severity") or "P9"),
                                     float(e.get("fired_at") or 0.0)))
        said = ep.get("fired_summary") or ep.get("summary") or ep.get("rule")  # at firing
        what = f"{_md(said, 160)} on {_md(ep.get('target'), 60)}"
        # its worst value, in the words of its cause: the cause at firing was the first
        # failing sample ("errors_total +95.67 in 1 min" of a 3,800-a-minute outage)
        worst = episode_peak(ep, phrase=True, threshold=True)
        cause = f"at worst {worst}" if worst else \
            str(ep.get("fired_cause") or ep.get("cause") or "").split("; ", 1)[0]
        text = f"On {day}: {what}"  # "On 2026-12-08 More than 10 errors…" read as a typo
        if cause:
            text += f" ({_md(cause, 200)})"
        if impact.seconds is not None and impact.end is not None:
            text += (f", from {_hms(impact.start or inc.started)} to {_hms(impact.end)} UTC "
                     f"({elapsed(impact.seconds)}")
            if (lag := resolve_lag(eps)) is not None:  # see the Impact section
                text += f", its end up to {format_age(lag[1])} late: {_md(lag[0], 60)}'s window"
            text += ")"
        else:
            text += f", from {_hms(impact.start or inc.started)} UTC, still ongoing"
    else:
        how = (f"from the alert {_md(', '.join(inc.alerts), 120)}" if inc.alerts
               else "by hand")
        text = f"On {day} at {_hms(inc.started)} UTC an incident was opened {how}: " \
               f"{_md(inc.title, 160)}"
    text += "."
    det = kpis["detect"]
    if det.seconds is not None:
        first = min(eps, key=lambda e: float(e.get("fired_at") or 0.0)) if eps else None
        if first is None or len(eps) == 1 or first is ep:
            text += f" The alert fired {elapsed(det.seconds)} after the first failing sample."
        else:  # the detection is the first alert's, not the one named above
            text += (f" The first alert, {_md(first.get('rule'), 60)} on "
                     f"{_md(first.get('target'), 60)}, fired {elapsed(det.seconds)} after "
                     "the first failing sample.")
    ack = kpis["acknowledge"]
    if ack.seconds is not None:
        text += f" It was acknowledged after {elapsed(ack.seconds)} ({ack.end_what})"
        mit = kpis["mitigate"]
        if mit.seconds is not None:
            text += f", mitigated after {elapsed(mit.seconds)}"
        res = kpis["resolve"]
        text += f" and resolved after {elapsed(res.seconds)}." if res.seconds is not None \
            else "; it is not resolved yet."
    return text


def render(inc: Incident, *, now: float | None = None,
           episodes: Iterable[AlertEpisode] = (),
           notifications: Iterable[Mapping[str, Any]] = (),
           permanent_fixes: Iterable[str] = (),
           changes: Iterable[Mapping[str, Any]] = ()) -> str:
    """The draft, as Markdown. `episodes` from the alert history (and the evaluator's open
    ones), `notifications` from the outbox; `permanent_fixes` are the runbook's candidates
    for action items (its permanent-fix items not checked); `changes` the events journal
    (deploys on the timeline; recordings of the console that cover the incident)."""
    now = time.time() if now is None else now
    episodes = list(episodes)
    notifications = list(notifications)
    eps = list(incident_episodes(inc, episodes))
    kpis = {m.name: m for m in incident_kpis(inc, episodes)}
    changes = list(changes)
    events = timeline(inc, episodes, notifications, changes)
    origin = kpis["acknowledge"].start or inc.started
    out: list[str] = [
        f"# Post-mortem: {_md(inc.title, 200)}", "",
        f"_Draft by opsconsole from the incident journal and the alert history, "
        f"{_at(now)}. The facts below are filled in; replace every italic prompt before "
        "sending._", "",
        "## Summary", "", summary_sentence(inc, eps, kpis, now), "",
        "_In two or three sentences, for people who were not there: what users saw, why, "
        "and how it was fixed._", "",
    ]
    status = (f"resolved {_at(inc.resolved_at)}" if inc.resolved_at is not None
              else f"{'open' if inc.state == 'open' else f'open ({inc.state})'} for "
                   f"{elapsed(inc.age(now))}")
    if inc.reopened:
        status += f"; reopened {len(inc.reopened)}×"
    alerts = "; ".join(
        f"{_md(e.get('rule'), 60)} on {_md(e.get('target'), 60)} ({e.get('severity')})"
        for e in eps) or (", ".join(_md(a, 80) for a in inc.alerts) or "none (opened by hand)")
    out += [
        "| | |", "| --- | --- |",
        f"| Incident | {inc.id} |",
        f"| Severity | {_md(_severity_line(inc), 600)} |",
        f"| Started | {_at(inc.started)} |",
        f"| Status | {status} |",
        f"| Alerts | {alerts} |",
        f"| Targets | {_md(', '.join(inc.targets) or '-')} |",
        f"| Runbook | {_md(inc.runbook or '-', 80)} |",
        f"| Opened by / owner | {_md(inc.opened_by, 60)} / {_md(inc.owner, 60)} |",
        f"| False positive | {'yes' if inc.false_positive else 'no'} |",
        *(f"| Recording | `{_md(cmd, 400)}` |" for cmd in recordings_of(inc, changes)),
        "",
    ]
    # -- impact -------------------------------------------------------------------------
    impact = kpis["impact"]
    out += ["## Impact", ""]
    if eps:
        start = impact.start or inc.started  # the first failing sample, when known
        end = impact.end
        span = f"{elapsed(end - start)}" if end is not None else "still ongoing"
        out.append(f"- **Window:** {_at(start)} → {_at(end) if end else 'now'} ({span}), "
                   "from the first failing sample to the alert resolved")
        if end is not None and (lag := resolve_lag(eps)) is not None:
            last = "last P0/P1 alert" if len(impact_episodes(eps)) < len(eps) else "last alert"
            out.append(f"  ({_md(lag[0], 60)}, the {last} to resolve, is measured over "
                       f"{format_age(lag[1])}: the service recovered up to "
                       f"{format_age(lag[1])} before it resolved)")
        for e in eps:
            if worst := episode_peak(e, phrase=True):
                out.append(f"- **Worst value:** {_md(worst, 200)} "
                           f"({_md(e.get('rule'), 60)} on {_md(e.get('target'), 60)})")
    else:
        why = ("no alert history of its alerts to measure it" if inc.alerts
               else "opened by hand; no alert measured it")
        out.append(f"- **Window:** from {_at(inc.started)} ({why})")
    out += [f"- **Affected:** {_md(', '.join(inc.targets) or 'see the alerts', 200)}", "",
            "_Who was affected, for how long, how badly (users, payments, data)?_", ""]
    # -- detection ----------------------------------------------------------------------
    out += ["## Detection", ""]
    det = kpis["detect"]
    for e in eps:
        cause = str(e.get("fired_cause") or e.get("cause") or "")  # its words at firing
        line = (f"- **{_md(e.get('rule'), 60)}** ({e.get('severity')}) fired at "
                f"{_hms(float(e['fired_at']))} UTC on {_md(e.get('target'), 60)}")
        out.append(line + (f": {_md(cause, 300)}" if cause else ""))
    if not eps and inc.alerts:
        out.append(f"- Alerts: {_md(', '.join(inc.alerts), 300)}")
    if det.seconds is not None:
        out.append(f"- Detected {elapsed(det.seconds)} after the first failing sample "
                   f"(target < {format_target(det.target or 0)}: {_result(det)})")
        slow = [e for e in eps if det.met is False and det.target is not None
                and isinstance(e.get("pending_for_s"), int | float)
                and float(e["pending_for_s"]) >= det.target]
        if slow and len(slow) == len(eps):  # every alert of it waits longer than the target
            e = slow[0]
            wait = format_target(float(e["pending_for_s"]))
            out.append(f"- {_md(e.get('rule'), 60)} waits `for` {wait} of failing samples "
                       f"before it fires, so it cannot detect within the target: shorten "
                       f"its `for`, or add a faster rule for the same symptom")
    sent = [ev for ev in events if ev.kind == "notification"]
    if sent:
        out.append("- Notified: " + "; ".join(
            f"{_md(ev.text, 120)} at {_hms(ev.ts)}" for ev in sent[:10]))
    elif eps:
        out.append("- Notified: no notification recorded (no receiver configured, or sent "
                   "by another console)")
    out += ["", "_Did the alert find it before users did? If not, what alert is missing?_",
            ""]
    # -- response -----------------------------------------------------------------------
    out += ["## Response against the playbook's targets", "",
            "| Measure | From | To | Took | Target | Result |",
            "| --- | --- | --- | --- | --- | --- |"]
    for m in kpis.values():
        frm = f"{m.start_what} {_hms(m.start)}" if m.start is not None else "-"
        to = f"{_md(m.end_what, 80)} {_hms(m.end)}" if m.end is not None else "-"
        goal = f"< {format_target(m.target)}" if m.target is not None else "-"
        step = inc.step(m.name)
        if m.name == "resolve" and m.target is not None and step is not None \
                and step.section.target_for(inc.severity) is None:
            goal += " (P0/P1 KPI)"  # not the step's: its target is for P0 only
        out.append(f"| {m.label} | {frm} | {to} | {elapsed(m.seconds)} | {goal} | "
                   f"{_result(m)} |")
    out += ["", "| Step | Target | Done at | From start | Result |",
            "| --- | --- | --- | --- | --- |"]
    for step in inc.response_steps():
        target = step.section.target_for(inc.severity)
        # a target for other severities only says so: "-" beside the KPI table's "< 2h"
        # for a P1's Resolve read as a contradiction
        tgt = f"< {format_target(target)}" if target is not None else (
            f"- ({other})" if (other := step.section.describe_target()) else "-")
        status_ = inc.step_status(step, now)
        if step.done_at is not None:
            took = step.done_at - inc.started
            result = "on time" if status_ == "done" and target is not None else (
                f"late by {elapsed(took - target)}" if target is not None else "done")
            done = f"{_hms(step.done_at)} by {_md(step.done_by or '?', 60)}"
            frm = elapsed(took)
        else:
            result = ("OVERDUE" if status_ == "overdue" else "not done") + _partly(inc, step)
            done, frm = "-", "-"
        out.append(f"| {step.section.title} | {tgt} | {done} | {frm} | {result} |")
    # -- timeline -----------------------------------------------------------------------
    out += ["", "## Timeline (UTC)", ""]
    day = _fmt("%Y-%m-%d", inc.started)  # the summary names the day the incident began
    for ev in events:
        # a line carries its date when the UTC day changes, so 23:58 then 00:03 reads as
        # four minutes later, not as going back in time
        ev_day = _fmt("%Y-%m-%d", ev.ts)
        stamp = _hms(ev.ts) if ev_day == day else _fmt("%Y-%m-%d %H:%M:%S", ev.ts)
        day = ev_day
        out.append(f"- `{stamp}` ({_signed(ev.ts - origin)}) {_md(ev.actor, 80)}: "
                   f"{_md(ev.text, 600)}")
    # -- root cause and actions ---------------------------------------------------------
    out += ["", "## Root cause", ""]
    # in the words people were notified with (at firing), not those of its last sample
    causes = [str(c) for e in eps if (c := e.get("fired_cause") or e.get("cause"))]
    if causes:
        out.append("The alert said: " + "; ".join(f"\"{_md(c, 300)}\"" for c in causes))
        out.append("")
    out += ["_What failed, and why? Ask why until the answer is something you can change. "
            "Why was it not caught earlier?_", "",
            "## Action items", "", "| Action | Owner | Due |", "| --- | --- | --- |"]
    fixes = list(permanent_fixes)
    for fix in fixes[:6]:
        out.append(f"| _{_md(fix, 200)}? (the runbook's permanent fix)_ | _who_ | _when_ |")
    out += ["| _action_ | _who_ | _when_ |", ""]
    # -- snapshots and notes ------------------------------------------------------------
    out += ["## Metric snapshots", ""]
    if not inc.snapshots:
        out.append("(none taken)")
    for snap in inc.snapshots:
        label = f" {_md(snap['label'])}" if snap.get("label") else ""
        out += [f"### {_hms(snap['ts'])} ({_signed(snap['ts'] - origin)}){label}", "",
                "| Metric | Value |", "| --- | --- |"]
        for k, v in snap["values"].items():
            metric = str(k).rsplit(":", 1)[-1]
            shown = format_metric(metric, number(v))
            out.append(f"| {_md(k, 120)} | {_md(shown, 60)} |")
        out.append("")
    out += ["", "## Notes", ""]
    notes = [(n, None) for n in inc.notes] + [
        (n, s.section.title) for s in inc.steps for n in s.notes]
    notes.sort(key=lambda p: p[0].ts)
    out += [f"- `{_hms(n.ts)}` {_md(n.actor, 80)}{f' ({title})' if title else ''}: "
            f"{_md(n.text, 2000)}" for n, title in notes] or ["(none)"]
    runbook_steps = [s for s in inc.steps if not s.timed and s.checked]
    if runbook_steps:
        out += ["", "## Runbook items done", ""]
        for s in runbook_steps:
            for i in sorted(s.checked):
                out.append(f"- {s.playbook} / {s.section.title}: {_md(s.section.items[i].text)}")
    out += ["", "## Follow-up", "",
            "_When are the action items reviewed, and by whom?_", ""]
    return "\n".join(out)


def recordings_of(inc: Incident, changes: Iterable[Mapping[str, Any]]) -> list[str]:
    """`opsconsole replay FILE --at HH:MM:SS` for each recording (`--record`) that covers the
    incident's start: what the console showed then, replayed on the same screens."""
    import shlex

    spans: dict[str, list[float | None]] = {}
    for e in changes:
        if e.get("kind") != "recording" or not e.get("path"):
            continue
        ts = e.get("ts")
        span = spans.setdefault(str(e["path"]), [None, None])
        ended = e.get("ended")
        if isinstance(ended, int | float):
            span[1] = float(ended)
        elif isinstance(ts, int | float):
            span[0] = float(ts)
    out = []
    at = _fmt("%H:%M:%S", inc.started)
    for path, (start, end) in spans.items():
        if start is None or start > inc.started or (end is not None and end < inc.started):
            continue
        out.append(f"opsconsole replay {shlex.quote(path)} --at {at}")
    return out


def permanent_fixes(inc: Incident) -> list[str]:
    """The runbook's permanent-fix items not yet checked: candidates for action items."""
    out = []
    for s in inc.steps:
        if not s.timed and s.id in ("permanent_fix", "permanent-fix"):
            out += [it.text for i, it in s.items(inc.severity) if i not in s.checked]
    return out


def write_draft(path: Path, text: str) -> tuple[str, bool]:
    """Write the draft `text` to `path` unless someone edited the file since the last draft
    written there; return (what the file holds now, whether it was edited and kept).

    A draft is written again on every `P`, so a draft made mid-incident takes in what
    happened since (it used to be written once, and stayed stale). Beside it,
    `.<name>.draft-sha256` keeps the hash of the last draft; a file that differs from it,
    or that has no such mark (hand-made, or from an older console), is someone's and is
    never overwritten. Raises OSError."""
    edited = edited_draft(path)
    if edited is not None:
        return edited, True
    mark = _mark(path)
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, data)  # then its mark: a failure between leaves the file kept
    atomic_write(mark, hashlib.sha256(data).hexdigest().encode("ascii"))
    return text, False


def _mark(path: Path) -> Path:
    return path.with_name(f".{path.name}.draft-sha256")


def edited_draft(path: Path) -> str | None:
    """The post-mortem at `path` when someone edited it after its last draft (see
    `write_draft`), else None (no file, or still the draft as written). Raises OSError."""
    try:
        current = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        last = _mark(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        last = ""
    if hashlib.sha256(current).hexdigest() == last:
        return None
    return current.decode("utf-8", errors="replace")
