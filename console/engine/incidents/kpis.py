"""The playbook's KPIs from the journal and the metric history: the weekly review in one call.

Definitions (each documented in the output so the numbers can be checked by hand):

- MTTD: mean of (incident start − first alert firing), over incidents that recorded it;
- MTTA: mean of (acknowledged − start); "acknowledged" is the acknowledge action, or the
  acknowledge step completed by checking its items;
- MTTR: mean of (resolved − start) over resolved incidents;
- acknowledged < 5 min: share of incidents that were acknowledged within 5 min, among those
  acknowledged or older than 5 min (a 1-minute-old incident is not yet a miss);
- P0/P1 resolved < 2 h: likewise among P0/P1 incidents resolved or older than 2 h;
- alert noise: share of incidents the operator marked false positive;
- uptime per target: percent of up samples in the window, from the metric store;
- alert MTTD/MTTA/MTTR (when the alert history is given): per alert episode fired in the
  window, first failing sample → firing, firing → first acknowledgement, firing → resolved.
  These measure the alerting itself, incident or not; the incident figures stay as above.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from console.engine.incidents.book import Incident, IncidentBook
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
    alert_episodes: int = 0
    alert_mttd_s: float | None = None
    alert_mtta_s: float | None = None
    alert_mttr_s: float | None = None
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
            store: Any = None, episodes: Iterable[Mapping[str, Any]] | None = None) -> Kpis:
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
    k.mttd_s = _mean([i.started - i.detected for i in incs if i.detected is not None])
    acks = [(i, acknowledged_at(i)) for i in incs]
    k.mtta_s = _mean([a - i.started for i, a in acks if a is not None])
    k.mttr_s = _mean([i.resolved_at - i.started for i in incs if i.resolved_at is not None])
    judged = [(i, a) for i, a in acks if a is not None or now - i.started > ACK_WINDOW]
    k.ack_within_5m_pct = _pct(
        sum(1 for i, a in judged if a is not None and a - i.started <= ACK_WINDOW), len(judged))
    urgent = [i for i in incs if i.severity in ("P0", "P1")
              and (i.resolved_at is not None or now - i.started > RESOLVE_WINDOW)]
    k.p0p1_resolved_within_2h_pct = _pct(
        sum(1 for i in urgent
            if i.resolved_at is not None and i.resolved_at - i.started <= RESOLVE_WINDOW),
        len(urgent))
    k.false_positive_pct = _pct(sum(1 for i in incs if i.false_positive), len(incs))
    if episodes is not None:
        eps = [e for e in episodes if isinstance(e.get("fired_at"), int | float)
               and lo <= e["fired_at"] <= now]
        k.alert_episodes = len(eps)

        def since_fired(field_name: str) -> float | None:
            return _mean([e[field_name] - e["fired_at"] for e in eps
                          if isinstance(e.get(field_name), int | float)])

        k.alert_mttd_s = _mean([e["detect_s"] for e in eps
                                if isinstance(e.get("detect_s"), int | float)])
        k.alert_mtta_s = since_fired("acknowledged_at")
        k.alert_mttr_s = since_fired("resolved_at")
    if store is not None:
        for series in sorted(store.series()):
            if series.endswith(":up"):
                k.uptime_pct[series.removesuffix(":up")] = store.uptime(series, since, now=now)
    return k


def _p(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} %"


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
        ("MTTD (detect)", format_age(k.mttd_s), f"< {format_age(t['mttd_s'])}", "mttd_s"),
        ("MTTA (acknowledge)", format_age(k.mtta_s), f"< {format_age(t['mtta_s'])}", "mtta_s"),
        ("MTTR (resolve)", format_age(k.mttr_s), f"< {format_age(t['mttr_s'])}", "mttr_s"),
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
            lines.append(f"{m} {label:<30} {format_age(v):>10} {'< ' + format_age(t[key]):>10}")
    if k.uptime_pct:
        lines.append("")
        lines.append("uptime per target")
        for name, v in k.uptime_pct.items():
            m = mark[met[f"uptime_pct:{name}"]]
            target = f"> {t['uptime_pct']:g} %"
            lines.append(f"{m} {name:<30} {_p(v):>10} {target:>10}")
    return "\n".join(lines) + "\n"
