"""The daily summary's data: uptime per target against 99.9 %, alerts by severity with time
to acknowledge, open and resolved incidents with the playbook's KPIs, quiet day or not.

One builder for the summary the notifier sends at `summary_at` and for
`opsconsole report --format email|markdown|json`, so both say the same thing. The P3
notifications batched since the last summary are added by the caller
(`console.engine.alerting.summary.batched_section`): the outbox holds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from console.engine.alerting.summary import bare_summary, is_quiet
from console.engine.incidents.book import IncidentBook
from console.engine.incidents.kpis import TARGETS, acknowledged_at, compute
from console.engine.model import SEVERITIES, AlertEpisode

_KPIS = (  # (name, Kpis attribute, unit, better when the value is "<" or ">" the target)
    ("MTTD (detect)", "mttd_s", "s", "<"),
    ("MTTA (acknowledge)", "mtta_s", "s", "<"),
    ("MTTR (resolve)", "mttr_s", "s", "<"),
    ("acknowledged < 5 min", "ack_within_5m_pct", "%", ">"),
    ("P0/P1 resolved < 2 h", "p0p1_resolved_within_2h_pct", "%", ">"),
    ("alert noise (false positives)", "false_positive_pct", "%", "<"),
)


def _alerts(episodes: Iterable[AlertEpisode], start: float, end: float
            ) -> dict[str, Any]:
    """Alert episodes that fired in the period, by severity, with time to acknowledge."""
    rows = []
    total = 0
    eps = [e for e in episodes if isinstance(e.get("fired_at"), int | float)
           and start <= float(e["fired_at"]) <= end]
    for sev in SEVERITIES:
        mine = [e for e in eps if e.get("severity") == sev]
        total += len(mine)
        ttas = [float(acked) - float(e["fired_at"]) for e in mine
                if isinstance(acked := e.get("acknowledged_at"), int | float)]
        rows.append({"severity": sev, "episodes": len(mine), "acknowledged": len(ttas),
                     "unacknowledged": len(mine) - len(ttas),
                     "ongoing": sum(1 for e in mine if e.get("ongoing")),
                     "mean_tta_s": sum(ttas) / len(ttas) if ttas else None,
                     "max_tta_s": max(ttas) if ttas else None})
    return {"total": total, "by_severity": rows}


def _incident_row(inc: Any, now: float) -> dict[str, Any]:
    ack = acknowledged_at(inc)
    return {"id": inc.id, "title": inc.title, "severity": inc.severity, "state": inc.state,
            "started": inc.started, "resolved_at": inc.resolved_at,
            "tta_s": None if ack is None else ack - inc.started,
            "ttr_s": None if inc.resolved_at is None else inc.resolved_at - inc.started,
            "age_s": inc.age(now)}


def build_summary(book: IncidentBook | None, *, start: float, end: float, store: Any = None,
                  episodes: Sequence[AlertEpisode] = (), targets: Sequence[str] = (),
                  batched: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary of `[start, end]` as plain data (the JSON `report --format json` prints).

    `episodes`: alert episodes (the alert history, plus ongoing ones when running);
    `targets`: every configured target, so one that reported nothing shows as "no data"
    rather than missing; `batched`: `batched_section()` of the P3s collected.
    """
    d = bare_summary(start, end, goal_pct=TARGETS["uptime_pct"])
    window = max(1.0, end - start)
    uptime: dict[str, float | None] = dict.fromkeys(targets)
    newest: float | None = None
    if store is not None:
        for series in sorted(store.series()):
            if series.endswith(":up"):
                uptime[series.removesuffix(":up")] = store.uptime(series, window, now=end)
                if (last := store.latest(series)) is not None:
                    newest = last[0] if newest is None else max(newest, last[0])
    # The newest sample measured: `opsconsole report` reads the history a running console
    # saves every minute, so its uptime can be a minute behind the board's (a walk read
    # 36 % in the report beside the board's 50 % during an outage).
    d["uptime_as_of"] = newest
    goal = d["uptime_goal_pct"]
    d["uptime"] = [{"target": t, "pct": v, "goal_pct": goal,
                    "met": None if v is None else v >= goal} for t, v in sorted(uptime.items())]
    k = compute(book, since=window, now=end, episodes=episodes) if book is not None else None
    met = k.met() if k is not None else {}
    d["kpis"] = [{"name": name, "key": attr, "value": getattr(k, attr, None), "unit": unit,
                  "target": TARGETS[attr], "cmp": cmp, "met": met.get(attr)}
                 for name, attr, unit, cmp in _KPIS]
    if book is not None and k is not None:
        inc = d["incidents"]
        inc["opened"] = k.incidents
        for i in sorted(book.incidents.values(), key=lambda i: i.started):
            if i.is_open and i.started <= end:
                inc["open"].append(_incident_row(i, end))
            elif i.resolved_at is not None and start <= i.resolved_at <= end:
                inc["resolved"].append(_incident_row(i, end))
    d["alerts"] = _alerts(episodes, start, end)
    if batched is not None:
        d["batched"] = dict(batched)
    d["quiet"] = is_quiet(d)
    return d
