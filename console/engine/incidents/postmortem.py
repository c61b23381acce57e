"""A Markdown post-mortem draft written from an incident's journal entries.

Everything measurable is filled in (timeline, time to each step against its target, alerts,
metric snapshots, notes); what only people know (root cause, impact, action items) is left
as sections to fill, so the draft is ready within the playbook's 24 hours.
"""

from __future__ import annotations

import time
from typing import Any

from console.engine.incidents.book import (
    ACKNOWLEDGE,
    CHECK,
    FALSE_POSITIVE,
    HANDOVER,
    MITIGATE,
    NOTE,
    OPEN,
    POSTMORTEM,
    RESOLVE,
    SEVERITY,
    SNAPSHOT,
    UNCHECK,
    Incident,
)
from console.engine.text.fmt import format_age, format_target
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


def _md(text: Any, n: int = 500) -> str:
    """One line of operator text, safe inside a Markdown table or list item."""
    return one_line(str(text), n).replace("|", "\\|")


def _item_text(inc: Incident, e: dict[str, Any]) -> str:
    step = inc.step(str(e.get("section")), e.get("playbook"))
    item = e.get("item")
    if step is None or not isinstance(item, int) or not 0 <= item < len(step.section.items):
        return f"{e.get('section')}#{item}"
    return f"{step.section.title}: {step.section.items[item].text}"


def describe_entry(inc: Incident, e: dict[str, Any]) -> str:
    """A timeline line for one entry."""
    t = e.get("type")
    if t == OPEN:
        raw = e.get("alerts")
        alerts = ", ".join(str(a) for a in raw if a is not None) if isinstance(
            raw, list) else ""
        alerts = alerts or "none"
        return f"opened ({e.get('severity')}) \"{_md(e.get('title'))}\"; alerts: {_md(alerts)}"
    if t == CHECK:
        return f"checked: {_md(_item_text(inc, e))}"
    if t == UNCHECK:
        return f"unchecked: {_md(_item_text(inc, e))}"
    if t == NOTE:
        where = f" (on {e['section']})" if e.get("section") else ""
        return f"note{where}: {_md(e.get('text'))}"
    if t == SEVERITY:
        return f"severity changed to {e.get('severity')}"
    if t == SNAPSHOT:
        return f"metric snapshot{(' ' + _md(e['label'])) if e.get('label') else ''}"
    if t == HANDOVER:
        return f"handed over to {_md(e.get('to'))}" + (
            f": {_md(e['text'])}" if e.get("text") else "")
    if t == ACKNOWLEDGE:
        return "acknowledged"
    if t == MITIGATE:
        return "mitigated" + (f": {_md(e['text'])}" if e.get("text") else "")
    if t == RESOLVE:
        fp = " (false positive)" if e.get("false_positive") else ""
        return "resolved" + fp + (f": {_md(e['text'])}" if e.get("text") else "")
    if t == FALSE_POSITIVE:
        return "marked false positive" if e.get("value", True) else "unmarked false positive"
    if t == POSTMORTEM:
        return "post-mortem written"
    return _md(str(t))


def render(inc: Incident, *, now: float | None = None) -> str:
    """The draft, as Markdown."""
    now = time.time() if now is None else now
    out: list[str] = [f"# Post-mortem: {_md(inc.title, 200)}", ""]
    status = (f"resolved {_at(inc.resolved_at)} after {format_age(inc.age(now))}"
              if inc.resolved_at is not None else f"open for {format_age(inc.age(now))}")
    sev = inc.severity
    if inc.severity_changes:
        path = " → ".join([inc.severity_changes[0]["from"]]
                          + [c["to"] for c in inc.severity_changes])
        sev += f" (changed: {path})"
    out += [
        f"- **Incident:** {inc.id}",
        f"- **Severity:** {sev}",
        f"- **Started:** {_at(inc.started)}",
    ]
    if inc.detected is not None:
        out.append(f"- **First failing sample:** {_at(inc.detected)} "
                   f"({format_age(inc.started - inc.detected)} before the incident started)")
    out += [
        f"- **Status:** {status}",
        f"- **Targets:** {_md(', '.join(inc.targets) or '-')}",
        f"- **Opened by:** {_md(inc.opened_by)}; **owner:** {_md(inc.owner)}",
        f"- **False positive:** {'yes' if inc.false_positive else 'no'}",
        "",
        "## Alerts",
        "",
    ]
    out += [f"- {_md(a)}" for a in inc.alerts] or ["- (opened by hand)"]
    out += ["", "## Response against targets", "",
            "| Step | Target | Done at | From start | Result |",
            "| --- | --- | --- | --- | --- |"]
    for step in inc.response_steps():
        target = step.section.target_for(inc.severity)
        tgt = f"< {format_target(target)}" if target is not None else "-"
        status_ = inc.step_status(step, now)
        if step.done_at is not None:
            took = step.done_at - inc.started
            result = "on time" if status_ == "done" and target is not None else (
                f"late by {format_age(took - target)}" if target is not None else "done")
            done = f"{_hms(step.done_at)} by {_md(step.done_by or '?', 60)}"
            frm = format_age(took)
        else:
            result = "OVERDUE" if status_ == "overdue" else "not done"
            done, frm = "-", "-"
        out.append(f"| {step.section.title} | {tgt} | {done} | {frm} | {result} |")
    out += ["", "## Timeline", ""]
    for e in inc.timeline:
        ts = e.get("ts")
        ts_f = float(ts) if isinstance(ts, int | float) else inc.started
        out.append(f"- `{_hms(ts_f)}` (+{format_age(ts_f - inc.started)}) "
                   f"{_md(e.get('actor', '?'), 80)}: {describe_entry(inc, e)}")
    out += ["", "## Metric snapshots", ""]
    if not inc.snapshots:
        out.append("(none taken)")
    for snap in inc.snapshots:
        label = f" {_md(snap['label'])}" if snap.get("label") else ""
        out += [f"### {_hms(snap['ts'])} (+{format_age(snap['ts'] - inc.started)}){label}", "",
                "| Metric | Value |", "| --- | --- |"]
        out += [f"| {_md(k, 120)} | {_md(v, 60)} |" for k, v in snap["values"].items()]
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
    out += [
        "", "## Root cause", "", "_To fill in: what failed, and why._",
        "", "## Impact", "", "_To fill in: who was affected, for how long, how badly._",
        "", "## What went well / what went badly", "", "_To fill in._",
        "", "## Action items", "", "- [ ] _owner — action — due date_",
        "", "## Follow-up", "", "_To fill in: when the action items are reviewed._", "",
    ]
    return "\n".join(out)
