"""An incident's story from what happened: alert events, operator actions, notes, notifications.

The journal holds what people did; the alert history holds what the alerts did (first
failing sample, firing, acknowledged, resolved: one episode record each); the outbox holds
what was sent to whom. `timeline` merges the three by time, so the incident screen, the
post-mortem and the KPIs tell the same story, in the order it happened and not in the order
keys were pressed. Snapshots are shown with units (`format_metric`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from console.engine.incidents.book import (
    ACKNOWLEDGE,
    ALERT,
    CHANNEL,
    CHECK,
    FALSE_POSITIVE,
    HANDOVER,
    MITIGATE,
    NOTE,
    OPEN,
    POSTMORTEM,
    REOPEN,
    RESOLVE,
    RUNBOOK,
    SEVERITY,
    SNAPSHOT,
    STATUS,
    UNCHECK,
    Incident,
)
from console.engine.model import AlertEpisode, IncidentEntry
from console.engine.text.fmt import format_duration, format_metric
from console.engine.text.sanitize import one_line

__all__ = ["Event", "change_events", "describe_snapshot", "incident_episodes", "timeline"]

SLACK = 120.0  # an episode of the incident's alerts firing this long before it still counts
CHANGES_BEFORE = 3600.0  # deploys and other changes this long before the incident are shown


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the story: when, what kind, who (or which system), what."""

    ts: float
    kind: str  # alert | action | note | notification | snapshot | checklist | change
    actor: str
    text: str


def _f(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def incident_episodes(inc: Incident, episodes: Iterable[AlertEpisode]
                      ) -> list[AlertEpisode]:
    """The alert episodes of this incident: those it recorded (opened from an alert), and
    episodes of its alerts that fired while it was open; oldest first."""
    keys = set(inc.episodes)
    ids = set(inc.alerts)
    # per alert, the first episode the incident recorded: an earlier one is not its own,
    # even in its window. A walk attached an alert firing since before, which moved the
    # start back, and the draft took in an episode of the same alert from the incident
    # before (its ack, its cause, "errors-burst" listed twice).
    first: dict[str, int] = {}
    for k in keys:
        alert, _, n = k.rpartition("/")
        if n.isdigit():
            first[alert] = min(first.get(alert, int(n)), int(n))
    end = inc.resolved_at if inc.resolved_at is not None else float("inf")
    out: dict[str, AlertEpisode] = {}
    for ep in episodes:
        key = str(ep.get("key", ""))
        fired = _f(ep.get("fired_at"))
        resolved = _f(ep.get("resolved_at"))
        alert = f"{ep.get('rule')}/{ep.get('target')}"
        seq = ep.get("incident")  # the alert's episode number, as in its key
        earlier = (alert in first and isinstance(seq, int) and not isinstance(seq, bool)
                   and seq < first[alert])
        # an earlier episode of the same alert, over before the incident began, is not
        # this incident's: a walk's Redis stopped twice, and the first (resolved) episode
        # made "ack 1m44s" of an ack 12 s after the second fired
        mine = key in keys or (
            alert in ids and fired is not None and not earlier
            and inc.started - SLACK <= fired <= end
            and (resolved is None or resolved >= inc.started))
        if mine and (key not in out or ep.get("ongoing") is False):
            out[key] = ep
    return sorted(out.values(), key=lambda e: _f(e.get("fired_at")) or 0.0)


def describe_snapshot(values: Mapping[str, Any], limit: int = 8) -> str:
    """``api-metrics error_pct 33.6 %, p95_ms 182 ms``: values with their units."""
    parts = []
    for series, v in list(values.items())[:limit]:
        metric = str(series).rsplit(":", 1)[-1]
        shown = format_metric(metric, number(v))
        parts.append(f"{one_line(str(series), 60)} {shown}")
    more = len(values) - limit
    return ", ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _step_item(inc: Incident, e: IncidentEntry) -> str:
    step = inc.step(str(e.get("section")), e.get("playbook"))
    item = e.get("item")
    if step is None or not isinstance(item, int) or not 0 <= item < len(step.section.items):
        return f"{e.get('section')}#{item}"
    # the playbook's inline code marks (`#incident`) are Markdown, not words: the timeline
    # showed "Update the `#incident` channel" as typed
    return f"{step.section.title}: {step.section.items[item].text.replace('`', '')}"


def describe_entry(inc: Incident, e: IncidentEntry) -> tuple[str, str]:
    """(kind, text) of one journal entry on the timeline."""
    t = e.get("type")
    text = one_line(str(e.get("text") or ""), 300)
    if t == OPEN:
        how = "from alert " + ", ".join(_strs(e.get("alerts"))) if e.get("alerts") else "by hand"
        return "action", (f"incident opened {how} ({e.get('severity')}): "
                          f"{one_line(str(e.get('title')), 120)}")
    if t in (CHECK, UNCHECK):
        return "checklist", ("checked: " if t == CHECK else "unchecked: ") + \
            one_line(_step_item(inc, e), 200)
    if t == NOTE:
        where = f" (on {e['section']})" if e.get("section") else ""
        return "note", f"note{where}: {text}"
    if t == SEVERITY:
        why = one_line(str(e.get("reason") or ""), 200)
        did = "confirmed" if e.get("confirmed") else "set to"
        return "action", f"severity {did} {e.get('severity')}" + (f": {why}" if why else "")
    if t == SNAPSHOT:
        values = e.get("values")
        return "snapshot", "snapshot: " + describe_snapshot(
            values if isinstance(values, Mapping) else {})
    if t == HANDOVER:
        return "action", f"handed over to {one_line(str(e.get('to')), 60)}" + (
            f": {text}" if text else "")
    if t == ACKNOWLEDGE:
        return "action", "incident acknowledged"
    if t == MITIGATE:
        return "action", "mitigated" + (f": {text}" if text else "")
    if t == RESOLVE:
        fp = " (false positive)" if e.get("false_positive") else ""
        return "action", "incident resolved" + fp + (f": {text}" if text else "")
    if t == REOPEN:
        why = one_line(str(e.get("reason") or ""), 200)
        return "action", "incident reopened" + (f": {why}" if why else "")
    if t == RUNBOOK:
        return "action", f"runbook set to {one_line(str(e.get('runbook')), 60)}"
    if t == FALSE_POSITIVE:
        return "action", ("marked false positive" if e.get("value", True)
                          else "unmarked false positive")
    if t == POSTMORTEM:
        return "action", ("post-mortem draft written" if e.get("draft") is True
                          else "post-mortem written (its draft edited)")
    if t == STATUS:
        who = " (user-facing)" if e.get("user_facing") else ""
        routes = e.get("routes")
        unsent = " — not posted: no Slack route" if isinstance(routes, list) and not routes \
            else ""
        return "action", f"status update{who}: {text}{unsent}"
    if t == CHANNEL:
        return "action", f"incident channel {one_line(str(e.get('name') or ''), 80)} created"
    if t == ALERT:
        return "action", (f"alert {one_line(str(e.get('alert') or ''), 80)} attached "
                          f"({one_line(str(e.get('target') or ''), 60)})")
    return "action", one_line(str(t), 60)


def number(v: Any) -> float | None:
    """A snapshot value as a number: the journal writes NaN/±Inf as text."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _strs(v: Any) -> list[str]:
    return [str(x) for x in v if x is not None] if isinstance(v, list) else []


def _episode_events(ep: AlertEpisode) -> list[Event]:
    rule, target = str(ep.get("rule")), str(ep.get("target"))
    who = f"alert {rule}"
    out: list[Event] = []
    fired = _f(ep.get("fired_at"))
    first = _f(ep.get("first_fail_at"))
    if first is None and fired is not None and _f(ep.get("detect_s")) is not None:
        first = fired - float(ep.get("detect_s") or 0.0)
    # What it said when it fired, not its words now: an ongoing episode's cause and
    # summary follow the latest sample, and the timeline must not rewrite the past
    # (a history written before these keys has only the last words).
    cause = one_line(str(ep.get("fired_cause") or ep.get("cause") or ""), 200)
    summary = ep.get("fired_summary") or ep.get("summary") or rule
    if first is not None:
        out.append(Event(first, "alert", who, f"first failing sample on {target} (pending)"))
    if fired is not None:
        detect = "" if first is None else f" after {format_duration(max(0.0, fired - first))}"
        out.append(Event(fired, "alert", who, f"{ep.get('severity')} firing on {target}"
                         f"{detect}: {one_line(str(summary), 120)}"
                         + (f" ({cause})" if cause else "")))
    acked = _f(ep.get("acknowledged_at"))
    if acked is not None:
        out.append(Event(acked, "alert", str(ep.get("acknowledged_by") or "?"),
                         f"alert {rule} acknowledged on {target}"))  # which one, of two
    resolved = _f(ep.get("resolved_at"))
    if resolved is not None and not ep.get("ongoing"):
        span = "" if fired is None else f" after {format_duration(max(0.0, resolved - fired))}"
        out.append(Event(resolved, "alert", who, f"resolved on {target}{span}"))
    return out


def _notification_events(episodes: Sequence[AlertEpisode],
                         notifications: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Outbox rows (key ``rule/target/transition/seq``) of these episodes that were sent."""
    wanted = {}
    for ep in episodes:
        wanted[(str(ep.get("rule")), str(ep.get("target")))] = str(ep.get("incident"))
    out = []
    for row in notifications:
        parts = str(row.get("key", "")).split("/")
        if len(parts) < 4:
            continue
        rule, target, transition, seq = "/".join(parts[:-3]), parts[-3], parts[-2], parts[-1]
        if wanted.get((rule, target)) != seq.split(".")[0]:
            continue
        sent = _f(row.get("sent_at"))
        status = str(row.get("status", ""))
        when = sent if sent is not None else _f(row.get("created"))
        if when is None:
            continue
        what = "sent" if status == "sent" else status or "queued"
        out.append(Event(when, "notification", str(row.get("receiver", "?")),
                         f"{transition} notification {what} to {row.get('receiver')}"
                         f" ({rule})"))
    return out


def change_events(inc: Incident, changes: Iterable[Mapping[str, Any]]) -> list[Event]:
    """Deploys, rollbacks and other recorded changes (the events journal, not webhook alerts
    nor recordings) from an hour before the incident to its end: the runbook's first
    question is "recent deploy?"."""
    end = inc.resolved_at if inc.resolved_at is not None else float("inf")
    out = []
    for e in changes:
        ts = _f(e.get("ts"))
        if ts is None or e.get("kind") in ("alert", "recording"):
            continue
        if inc.started - CHANGES_BEFORE <= ts <= end:
            head = " ".join(one_line(str(x), 64) for x in (e.get("kind"), e.get("service"),
                                                            e.get("version")) if x)
            out.append(Event(ts, "change", one_line(str(e.get("actor") or "?"), 60),
                             f"{head}: {one_line(str(e.get('text') or ''), 300)}"))
    return out


def timeline(inc: Incident, episodes: Iterable[AlertEpisode] = (),
             notifications: Iterable[Mapping[str, Any]] = (),
             changes: Iterable[Mapping[str, Any]] = ()) -> list[Event]:
    """The incident's events in time order (ties keep the order they were recorded);
    `changes` are recorded events (deploys...), shown from an hour before it."""
    eps = incident_episodes(inc, episodes)
    events: list[Event] = []
    for ep in eps:
        events += _episode_events(ep)
    for e in inc.timeline:
        ts = _f(e.get("ts"))
        if ts is None:
            continue
        kind, text = describe_entry(inc, e)
        events.append(Event(ts, kind, str(e.get("actor") or "?"), text))
    events += _notification_events(eps, notifications)
    events += change_events(inc, changes)
    return sorted(events, key=lambda ev: ev.ts)
