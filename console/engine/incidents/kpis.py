"""The playbook's KPIs from events: per incident, and over a review period (the weekly review).

Per incident (`incident_kpis`), each from the events that happened, never from key presses,
and each against the playbook's target:

- detect: first failing sample of its alert → the alert firing (MTTD < 5 min);
- acknowledge: firing → the first acknowledgement, of the alert *or* of the incident,
  whichever came first (acknowledge step < 5 min);
- mitigate: firing → mitigated (mitigate step < 30 min);
- impact: first failing sample → its P0/P1 alerts resolved (all its alerts when it has
  none of those), i.e. the service recovered (MTTR < 30 min);
- resolve: firing → the incident resolved (P0/P1 < 2 h).

"Firing" is the earliest episode of the incident's alerts (an incident opened by hand counts
from its opening). Over a period (`compute`):

- MTTD, MTTA, MTTR: means of detect, acknowledge and resolve over the incidents that have
  them (MTTR over resolved incidents); mean impact beside them;
- acknowledged < 5 min: share of incidents that were acknowledged within 5 min, among those
  acknowledged or older than 5 min (a 1-minute-old incident is not yet a miss);
- P0/P1 resolved < 2 h: likewise among P0/P1 incidents resolved or older than 2 h;
- alert noise: share of incidents the operator marked false positive;
- uptime per target: percent of up samples in the window, from the metric store, with
  the span its samples cover when the store holds less than the window (`uptime_span_s`);
- alert MTTD/MTTA/MTTR (when the alert history is given): per alert episode fired in the
  window, first failing sample → firing, firing → first acknowledgement, firing → resolved.
  These measure the alerting itself, incident or not; the incident figures stay as above.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from console.engine.incidents.book import Incident, IncidentBook
from console.engine.incidents.timeline import incident_episodes
from console.engine.model import AlertEpisode
from console.engine.text.fmt import CHECK_GLYPH, format_age

# The playbook's targets ("Platform Health KPIs", "Monitoring Effectiveness").
TARGETS: dict[str, float] = {
    "mttd_s": 5 * 60,
    "mtta_s": 5 * 60,
    "mttr_s": 30 * 60,
    "ack_within_5m_pct": 95.0,
    "p0p1_resolved_within_2h_pct": 90.0,
    "false_positive_pct": 10.0,
    "uptime_pct": 99.9,
}
ACK_WINDOW = 5 * 60
RESOLVE_WINDOW = 2 * 3600


def acknowledged_at(inc: Incident) -> float | None:
    if inc.acknowledged_at is not None:
        return inc.acknowledged_at
    step = inc.step("acknowledge")
    return step.done_at if step is not None and step.timed else None


def _step_done(inc: Incident, step_id: str, action_at: float | None) -> float | None:
    if action_at is not None:
        return action_at
    step = inc.step(step_id)
    return step.done_at if step is not None and step.timed else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


@dataclass(frozen=True, slots=True)
class Measure:
    """One of an incident's times: from an event to another, against its target."""

    name: str  # detect | acknowledge | mitigate | impact | resolve
    label: str
    start: float | None
    end: float | None
    start_what: str
    end_what: str
    target: float | None  # seconds; None: the playbook sets none (for this severity)

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, self.end - self.start)

    @property
    def met(self) -> bool | None:
        s = self.seconds
        return None if s is None or self.target is None else s <= self.target

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "from": self.start, "to": self.end,
                "from_event": self.start_what, "to_event": self.end_what,
                "seconds": self.seconds, "target_s": self.target, "met": self.met}


def _target(inc: Incident, step_id: str, fallback: float | None) -> float | None:
    step = inc.step(step_id)
    if step is not None and step.timed:
        t = step.section.target_for(inc.severity)
        if t is not None:
            return t
    return fallback


URGENT = ("P0", "P1")


def impact_episodes(eps: Sequence[AlertEpisode]) -> list[AlertEpisode]:
    """The alerts whose resolution ends an incident's impact: its P0/P1 ones when it has
    any (the playbook's user-facing severities), else all. A walk's post-mortem said 5m04s
    of impact for a 2m42s outage: an attached P2 ("new error kind", over 5 min) resolved
    last."""
    urgent = [e for e in eps if e.get("severity") in URGENT]
    return urgent or list(eps)


def resolve_lag(eps: Sequence[AlertEpisode]) -> tuple[str, float] | None:
    """The rule and window of the alert that resolved last (of `impact_episodes`), when
    that rule aggregates over a window: it resolved only once the window held no failure,
    so the service may have recovered up to that long before (the walk's post-mortem said
    "service recovered" at a 1 min average's end, 57 s after the down alert had
    resolved)."""
    done = [(r, e) for e in impact_episodes(eps)
            if (r := _num(e.get("resolved_at"))) is not None]
    if not done:
        return None
    last = max(done, key=lambda re_: re_[0])[1]
    window = _num(last.get("window_s"))
    return (str(last.get("rule")), window) if window else None


def incident_kpis(inc: Incident, episodes: Iterable[AlertEpisode] = ()) -> list[Measure]:
    """Detect, acknowledge, mitigate, impact and resolve of one incident, from events."""
    eps = incident_episodes(inc, episodes)
    fired = [(f, e) for e in eps if (f := _num(e.get("fired_at"))) is not None]
    origin = min(f for f, _ in fired) if fired else inc.started
    origin_what = "alert firing" if fired else "incident opened"
    # With several alerts, "alert firing" and "alert acknowledged" may be two different
    # alerts: name them, or a post-mortem reads as if the first alert was acknowledged
    # in 1m15s when another one was (and the first waited 2m59s).
    several = len(eps) > 1
    if fired and several:
        origin_what += f" ({min(fired, key=lambda fe: fe[0])[1].get('rule')})"
    firsts = []
    for e in eps:
        first = _num(e.get("first_fail_at"))
        if first is None and _num(e.get("detect_s")) is not None and _num(e.get("fired_at")):
            first = float(e.get("fired_at") or 0.0) - float(e.get("detect_s") or 0.0)
        if first is not None:
            firsts.append(first)
    if inc.detected is not None:
        firsts.append(inc.detected)
    first_fail = min(firsts) if firsts else None
    acks = [(a, f"alert {str(e.get('rule')) + ' ' if several else ''}acknowledged by "
                f"{e.get('acknowledged_by') or '?'}")
            for e in eps if (a := _num(e.get("acknowledged_at"))) is not None]
    inc_ack = acknowledged_at(inc)
    if inc_ack is not None:
        acks.append((inc_ack, "incident acknowledged"))
    ack = min(acks) if acks else (None, "not acknowledged")
    basis = impact_episodes(eps)
    resolved = [_num(e.get("resolved_at")) for e in basis]
    impact_end = (max(r for r in resolved if r is not None)
                  if basis and all(r is not None and not e.get("ongoing")
                                   for r, e in zip(resolved, basis, strict=True)) else None)
    lag = resolve_lag(eps) if impact_end is not None else None
    which = "P0/P1 alerts resolved" if len(basis) < len(eps) else "alert resolved"
    end_what = (f"{which} (service recovered)" if lag is None
                else f"{which} ({format_age(lag[1])} window)")
    urgent = 2 * 3600.0 if inc.severity in ("P0", "P1") else None
    return [
        Measure("detect", "Detect", first_fail, origin if first_fail is not None else None,
                "first failing sample", origin_what, TARGETS["mttd_s"]),
        Measure("acknowledge", "Acknowledge", origin, ack[0], origin_what, ack[1],
                _target(inc, "acknowledge", TARGETS["mtta_s"])),
        Measure("mitigate", "Mitigate", origin,
                _step_done(inc, "mitigate", inc.mitigated_at), origin_what, "mitigated",
                _target(inc, "mitigate", None)),
        # Users were affected from the first failing sample, not from the firing a rule's
        # `for` delays (5 min for the playbook's latency rule): a post-mortem summary that
        # said "46s" for a 5m46s outage, beside an Impact section that said 5m46s.
        Measure("impact", "Impact", (first_fail or origin) if eps else None, impact_end,
                "first failing sample" if first_fail is not None else origin_what,
                end_what, TARGETS["mttr_s"]),
        Measure("resolve", "Resolve", origin, inc.resolved_at, origin_what,
                "incident resolved", _target(inc, "resolve", urgent)),
    ]


@dataclass(slots=True)
class Kpis:
    """The numbers of one review period; None where there was nothing to measure."""

    since: float
    until: float
    incidents: int = 0
    open: int = 0
    resolved: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    mttd_s: float | None = None
    mtta_s: float | None = None
    mttr_s: float | None = None
    ack_within_5m_pct: float | None = None
    p0p1_resolved_within_2h_pct: float | None = None
    false_positive_pct: float | None = None
    uptime_pct: dict[str, float | None] = field(default_factory=dict)
    # per target whose samples cover less than the period: the seconds they do cover
    uptime_span_s: dict[str, float] = field(default_factory=dict)
    # how long before `now` the newest uptime sample is: `report` reads the history a
    # running console saves every minute (a walk's report said 36 % beside the board's 50 %)
    uptime_behind_s: float | None = None
    alert_episodes: int = 0
    alert_mttd_s: float | None = None
    alert_mtta_s: float | None = None
    alert_mttr_s: float | None = None
    impact_s: float | None = None  # mean time from firing to the alert resolved
    targets: dict[str, float] = field(default_factory=lambda: dict(TARGETS))

    def met(self) -> dict[str, bool | None]:
        """Whether each KPI meets the playbook's target (None: no data)."""
        def below(v: float | None, t: float) -> bool | None:
            return None if v is None else v < t

        def above(v: float | None, t: float) -> bool | None:
            return None if v is None else v > t

        t = self.targets
        out: dict[str, bool | None] = {
            "mttd_s": below(self.mttd_s, t["mttd_s"]),
            "mtta_s": below(self.mtta_s, t["mtta_s"]),
            "mttr_s": below(self.mttr_s, t["mttr_s"]),
            "impact_s": below(self.impact_s, t["mttr_s"]),
            "ack_within_5m_pct": above(self.ack_within_5m_pct, t["ack_within_5m_pct"]),
            "p0p1_resolved_within_2h_pct": above(self.p0p1_resolved_within_2h_pct,
                                                 t["p0p1_resolved_within_2h_pct"]),
            "false_positive_pct": below(self.false_positive_pct, t["false_positive_pct"]),
        }
        for name, v in self.uptime_pct.items():
            out[f"uptime_pct:{name}"] = None if v is None else v >= t["uptime_pct"]
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met()
        return d


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _pct(hits: int, n: int) -> float | None:
    return 100.0 * hits / n if n else None


def compute(book: IncidentBook, *, since: float, now: float | None = None,
            store: Any = None, episodes: Iterable[AlertEpisode] | None = None) -> Kpis:
    """KPIs over incidents started in ``[now − since, now]``; uptime from `store` if given;
    alert MTTD/MTTA/MTTR from alert-history `episodes` (``alert_history.read_episodes``)."""
    now = time.time() if now is None else now
    lo = now - since
    incs = [i for i in book.incidents.values() if lo <= i.started <= now]
    k = Kpis(since=lo, until=now, incidents=len(incs))
    k.open = sum(1 for i in incs if i.is_open)
    k.resolved = len(incs) - k.open
    for i in incs:
        k.by_severity[i.severity] = k.by_severity.get(i.severity, 0) + 1
    k.alerts = sum(len(i.alerts) for i in incs)
    all_eps = list(episodes) if episodes is not None else []
    per = {i.id: {m.name: m for m in incident_kpis(i, all_eps)} for i in incs}

    def secs(name: str) -> list[float]:
        return [s for m in per.values() if (s := m[name].seconds) is not None]

    k.mttd_s = _mean(secs("detect"))
    k.mtta_s = _mean(secs("acknowledge"))
    k.mttr_s = _mean(secs("resolve"))
    k.impact_s = _mean(secs("impact"))
    judged = [per[i.id]["acknowledge"] for i in incs
              if per[i.id]["acknowledge"].seconds is not None
              or now - (per[i.id]["acknowledge"].start or i.started) > ACK_WINDOW]
    k.ack_within_5m_pct = _pct(
        sum(1 for m in judged if m.seconds is not None and m.seconds <= ACK_WINDOW),
        len(judged))
    urgent = [per[i.id]["resolve"] for i in incs if i.severity in ("P0", "P1")
              and (i.resolved_at is not None or now - i.started > RESOLVE_WINDOW)]
    k.p0p1_resolved_within_2h_pct = _pct(
        sum(1 for m in urgent if m.seconds is not None and m.seconds <= RESOLVE_WINDOW),
        len(urgent))
    k.false_positive_pct = _pct(sum(1 for i in incs if i.false_positive), len(incs))
    if episodes is not None:
        eps = [e for e in all_eps if isinstance(e.get("fired_at"), int | float)
               and lo <= e["fired_at"] <= now]
        k.alert_episodes = len(eps)

        def since_fired(field_name: str) -> float | None:
            return _mean([float(value) - e["fired_at"] for e in eps
                          if isinstance(value := cast("Mapping[str, Any]", e).get(field_name),
                                        int | float)])

        k.alert_mttd_s = _mean([detect for e in eps
                                if isinstance(detect := e.get("detect_s"), int | float)])
        k.alert_mtta_s = since_fired("acknowledged_at")
        k.alert_mttr_s = since_fired("resolved_at")
    if store is not None:
        for series in sorted(store.series()):
            if series.endswith(":up"):
                name = series.removesuffix(":up")
                k.uptime_pct[name] = store.uptime(series, since, now=now)
                last = store.latest(series)
                held = store.held_from(series)
                if held is not None and held > lo:
                    # what the figure measured: up to the newest sample, not to now (a
                    # history saved 31 s ago read "over 4m20s" beside the console's 3m49s)
                    end = min(now, last[0]) if last is not None else now
                    k.uptime_span_s[name] = max(end - held, 0.0)
                if last is not None:
                    behind = max(now - last[0], 0.0)
                    if k.uptime_behind_s is None or behind < k.uptime_behind_s:
                        k.uptime_behind_s = behind
    return k


def measured(seconds: float | None) -> str:
    """A measured duration as the post-mortem writes it: to the nearest second (8.6 s is
    9s there; `format_age` alone truncates, and the incident header said 8s beside it)."""
    return format_age(None if seconds is None else round(seconds))


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f} %"  # as `measured` says nothing


def format_text(k: Kpis) -> str:
    """The report as the weekly review reads it: value, target, and whether it is met."""
    met = k.met()
    mark: Mapping[bool | None, str] = CHECK_GLYPH
    sev = ", ".join(f"{s} {n}" for s, n in sorted(k.by_severity.items())) or "none"
    days = (k.until - k.since) / 86400
    lines = [
        f"opsconsole report: last {days:g} days "
        f"({time.strftime('%Y-%m-%d %H:%M', time.gmtime(k.since))} → "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(k.until))} UTC)",
        f"incidents {k.incidents} ({sev}); open {k.open}, resolved {k.resolved}; "
        f"alerts {k.alerts}",
        "",
        f"{'KPI':<32} {'value':>10} {'target':>10}",
    ]
    t = k.targets
    rows = [
        ("MTTD (detect)", measured(k.mttd_s), f"< {format_age(t['mttd_s'])}", "mttd_s"),
        ("MTTA (acknowledge)", measured(k.mtta_s), f"< {format_age(t['mtta_s'])}", "mtta_s"),
        ("MTTR (resolve)", measured(k.mttr_s), f"< {format_age(t['mttr_s'])}", "mttr_s"),
        ("mean impact (to recovery)", measured(k.impact_s),
         f"< {format_age(t['mttr_s'])}", "impact_s"),
        ("acknowledged < 5 min", _p(k.ack_within_5m_pct),
         f"> {t['ack_within_5m_pct']:g} %", "ack_within_5m_pct"),
        ("P0/P1 resolved < 2 h", _p(k.p0p1_resolved_within_2h_pct),
         f"> {t['p0p1_resolved_within_2h_pct']:g} %", "p0p1_resolved_within_2h_pct"),
        ("alert noise (false positives)", _p(k.false_positive_pct),
         f"< {t['false_positive_pct']:g} %", "false_positive_pct"),
    ]
    for label, value, target, key in rows:
        lines.append(f"{mark[met[key]]} {label:<30} {value:>10} {target:>10}")
    if k.alert_episodes:
        lines.append("")
        lines.append(f"alerting, from the alert history ({k.alert_episodes} episodes)")
        for label, v, key in (("MTTD (first failure → firing)", k.alert_mttd_s, "mttd_s"),
                              ("MTTA (firing → acknowledged)", k.alert_mtta_s, "mtta_s"),
                              ("MTTR (firing → resolved)", k.alert_mttr_s, "mttr_s")):
            m = mark[None if v is None else v < t[key]]
            lines.append(f"{m} {label:<30} {measured(v):>10} {'< ' + format_age(t[key]):>10}")
    if k.uptime_pct:
        lines.append("")
        lines.append("uptime per target" + (" ('over': only that much of the period is held)"
                                            if k.uptime_span_s else ""))
        for name, v in k.uptime_pct.items():
            m = mark[met[f"uptime_pct:{name}"]]
            target = f"> {t['uptime_pct']:g} %"
            span = k.uptime_span_s.get(name)
            lines.append(f"{m} {name:<30} {_p(v):>10} {target:>10}"
                         + (f"  over {format_age(span)}" if span is not None else ""))
        from console.engine.alerting.summary import BEHIND_S

        if k.uptime_behind_s is not None and k.uptime_behind_s > BEHIND_S:
            lines.append(f"  measured up to {format_age(k.uptime_behind_s)} ago: the metric "
                         "history as last saved (a running console saves it every minute)")
    return "\n".join(lines) + "\n"
