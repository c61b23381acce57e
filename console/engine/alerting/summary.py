"""The daily summary as people read it: Markdown (the email's text part and
`opsconsole report --format markdown`), HTML (the email's other part) and Slack blocks.

The summary itself is plain data (built by `console.engine.incidents.summary.build_summary`
from the incidents, alert history and metric store, plus `batched_section` here for the P3
notifications collected since the last one), so what is sent, stored in the outbox and
printed by `report --format json` is the same document; these functions only lay it out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.receivers.base import digest_counts, digest_entries, hhmm
from console.engine.text.fmt import format_duration, format_percent, format_utc
from console.engine.text.sanitize import one_line

VERSION = 1
_MARK = {True: "✔", False: "✖", None: "·"}


def bare_summary(start: float, end: float, *, goal_pct: float = 99.9) -> dict[str, Any]:
    """A summary with nothing measured: the document's shape, which
    `console.engine.incidents.summary.build_summary` fills in (and what a notifier with no
    source of incidents and metrics sends: the day's batched notifications, at least)."""
    import time

    from console.engine.alerting.receivers.base import iso

    return {
        "version": VERSION, "title": "opsconsole daily summary",
        "period": {"start": iso(start), "end": iso(end), "start_ts": start, "end_ts": end},
        "generated_at": iso(time.time()), "uptime_goal_pct": goal_pct, "uptime": [],
        "uptime_as_of": None,
        "alerts": {"total": 0, "by_severity": [
            {"severity": s, "episodes": 0, "acknowledged": 0, "unacknowledged": 0,
             "ongoing": 0, "mean_tta_s": None, "max_tta_s": None}
            for s in ("P0", "P1", "P2", "P3")]},
        "incidents": {"opened": 0, "open": [], "resolved": []},
        "kpis": [], "batched": batched_section([]), "quiet": True,
    }


def is_quiet(d: Mapping[str, Any]) -> bool:
    """Nothing fired, nothing opened or resolved, nothing batched."""
    inc = d["incidents"]
    return d["alerts"]["total"] == 0 and not inc["open"] and not inc["resolved"] \
        and inc["opened"] == 0 and d["batched"]["count"] == 0


def batched_section(notes: Sequence[Notification]) -> dict[str, Any]:
    """The P3 (digest severities) notifications collected since the last summary, folded
    per alert: what each is now and how it got there."""
    entries = digest_entries(notes)
    return {"count": len(notes), "counts": digest_counts(entries), "alerts": [
        {"rule": e.rule, "target": e.target, "severity": e.severity,
         "summary": one_line(e.summary, 200), "state": e.state,
         "detail": one_line(e.last.detail, 300), "history": e.history(),
         "first_at": e.notes[0].at, "last_at": e.last.at}
        for e in entries]}


def _dur(v: Any) -> str:
    """A measured span; from 1 s on, to the nearest second as `opsconsole report` and the
    post-mortem write it (truncated, the Markdown said MTTA 1m14s beside the text's 1m15s;
    with a tenth, the report's 9.7s beside the post-mortem's 10s)."""
    if v is None:
        return "-"
    v = float(v)
    return format_duration(round(v) if abs(v) >= 1 else v)


def _kpi_value(k: Mapping[str, Any]) -> str:
    v = k.get("value")
    return _dur(v) if k.get("unit") == "s" else format_percent(v)


def _kpi_target(k: Mapping[str, Any]) -> str:
    t = k.get("target")
    shown = _dur(t) if k.get("unit") == "s" else format_percent(t, 1)
    return f"{k.get('cmp', '<')} {shown}"


def _day(d: Mapping[str, Any]) -> str:
    return str(d["period"]["end"])[:10]


def summary_subject(d: Mapping[str, Any]) -> str:
    """`Daily summary 2026-11-27: quiet day, uptime ≥ 99.9 % everywhere` or the counts."""
    alerts = int(d["alerts"]["total"])
    opened = int(d["incidents"]["opened"])
    still = len(d["incidents"]["open"])
    missed = [u["target"] for u in d["uptime"] if u["met"] is False]
    parts = []
    if d.get("quiet"):
        parts.append("quiet day")
    else:
        parts.append(f"{alerts} alert{'s' if alerts != 1 else ''}")
        parts.append(f"{opened} incident{'s' if opened != 1 else ''}")
    if still:
        parts.append(f"{still} open")
    goal = format_percent(d.get("uptime_goal_pct", 99.9), 1)
    measured = [u for u in d["uptime"] if u["met"] is not None]
    if missed:
        parts.append(f"uptime below {goal}: {', '.join(missed[:3])}")
    elif measured:
        parts.append(f"uptime ≥ {goal} on {len(measured)} target"
                     f"{'s' if len(measured) != 1 else ''}")
    else:
        parts.append("no uptime measured")
    return f"Daily summary {_day(d)}: " + ", ".join(parts)


def _md_cell(text: object, limit: int = 120) -> str:
    return one_line(text, limit).replace("|", "\\|")


BEHIND_S = 5.0
"""Uptime measured up to longer ago than this before a report's end is said to be."""


def uptime_behind(d: Mapping[str, Any]) -> str | None:
    """What the uptime leaves out when its newest sample is older than the period's end
    (`opsconsole report` reads the history as a running console last saved it)."""
    as_of = d.get("uptime_as_of")
    end = d["period"]["end_ts"]
    if as_of is None or end - as_of <= BEHIND_S:
        return None
    return (f"Uptime measured up to {format_utc(as_of, seconds=True)}, "
            f"{format_duration(end - as_of)} before the end: the metric history as last saved "
            "(a running console saves it every minute).")


def summary_markdown(d: Mapping[str, Any]) -> str:
    """The summary as Markdown: readable as plain text, renderable anywhere."""
    p = d["period"]
    out = [f"# {_md_cell(summary_subject(d), 200)}", "",
           f"{format_utc(p['start_ts'])} → {format_utc(p['end_ts'])}", ""]
    out += ["## Uptime", "", "| | target | uptime | goal |", "|---|---|---:|---:|"]
    goal = format_percent(d.get("uptime_goal_pct", 99.9), 1)
    for u in d["uptime"]:
        out.append(f"| {_MARK[u['met']]} | {_md_cell(u['target'], 64)} | "
                   f"{format_percent(u['pct'], 3)} | ≥ {goal} |")
    if not d["uptime"]:
        out.append("| · | (no target reported) | - | |")
    if (behind := uptime_behind(d)) is not None:
        out += ["", f"_{behind}_"]
    out += ["", "## Alerts", ""]
    rows = d["alerts"]["by_severity"]
    if any(r["episodes"] for r in rows):
        out += ["| severity | fired | acknowledged | unacknowledged | still firing | "
                "mean time to acknowledge | longest to acknowledge |",
                "|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            out.append(f"| {r['severity']} | {r['episodes']} | {r['acknowledged']} | "
                       f"{r['unacknowledged']} | {r['ongoing']} | {_dur(r['mean_tta_s'])} | "
                       f"{_dur(r['max_tta_s'])} |")
    else:
        out.append("No alert fired.")
    inc = d["incidents"]
    out += ["", "## Incidents", ""]
    if inc["open"] or inc["resolved"]:
        out += ["| incident | severity | state | started | time to acknowledge | "
                "time to resolve | title |", "|---|---|---|---|---:|---:|---|"]
        for i in [*inc["open"], *inc["resolved"]]:
            out.append(f"| {_md_cell(i['id'], 40)} | {i['severity']} | {i['state']} | "
                       f"{format_utc(i['started'])} | {_dur(i['tta_s'])} | "
                       f"{_dur(i['ttr_s'])} | {_md_cell(i['title'], 80)} |")
    else:
        out.append("No incident open or resolved.")
    out += ["", "### KPIs against the playbook's targets", "",
            "| | KPI | value | target |", "|---|---|---:|---:|"]
    for k in d["kpis"]:
        out.append(f"| {_MARK[k['met']]} | {k['name']} | {_kpi_value(k)} | "
                   f"{_kpi_target(k)} |")
    b = d["batched"]
    out += ["", f"## Batched since the last summary ({b['count']})", ""]
    if b["alerts"]:
        out += ["| state | severity | alert | target | why | history |",
                "|---|---|---|---|---|---|"]
        for a in b["alerts"]:
            out.append(f"| {a['state']} | {a['severity']} | {_md_cell(a['summary'], 80)} | "
                       f"{_md_cell(a['target'], 40)} | {_md_cell(a['detail'], 100)} | "
                       f"{_md_cell(a['history'] or hhmm(a['last_at']), 80)} |")
    else:
        out.append("Nothing was batched.")
    return "\n".join(out) + "\n"


summary_text = summary_markdown  # the email's plain-text part is the Markdown


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    th = "".join(f'<th align="left">{html.escape(h)}</th>' for h in head)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                     for r in rows)
    return f'<table border="1" cellpadding="4" cellspacing="0">\n<tr>{th}</tr>\n{body}\n</table>'


def summary_html(d: Mapping[str, Any]) -> str:
    """The summary as an HTML page (the email's HTML part)."""
    p = d["period"]
    goal = format_percent(d.get("uptime_goal_pct", 99.9), 1)
    parts = [f"<h1>{html.escape(summary_subject(d))}</h1>",
             f"<p>{html.escape(format_utc(p['start_ts']))} → "
             f"{html.escape(format_utc(p['end_ts']))}</p>", "<h2>Uptime</h2>",
             _table(["", "target", "uptime", "goal"],
                    [[_MARK[u["met"]], one_line(u["target"], 64), format_percent(u["pct"], 3),
                      f"≥ {goal}"] for u in d["uptime"]])]
    if (behind := uptime_behind(d)) is not None:
        parts.append(f"<p><i>{html.escape(behind)}</i></p>")
    parts.append("<h2>Alerts</h2>")
    rows = d["alerts"]["by_severity"]
    parts.append(_table(
        ["severity", "fired", "acknowledged", "unacknowledged", "still firing",
         "mean time to acknowledge", "longest to acknowledge"],
        [[r["severity"], r["episodes"], r["acknowledged"], r["unacknowledged"], r["ongoing"],
          _dur(r["mean_tta_s"]), _dur(r["max_tta_s"])] for r in rows])
        if any(r["episodes"] for r in rows) else "<p>No alert fired.</p>")
    inc = d["incidents"]
    parts.append("<h2>Incidents</h2>")
    parts.append(_table(["incident", "severity", "state", "started", "time to acknowledge",
                         "time to resolve", "title"],
                        [[i["id"], i["severity"], i["state"], format_utc(i["started"]),
                          _dur(i["tta_s"]), _dur(i["ttr_s"]), one_line(i["title"], 120)]
                         for i in [*inc["open"], *inc["resolved"]]])
                 if inc["open"] or inc["resolved"] else "<p>No incident open or resolved.</p>")
    parts.append("<h3>KPIs against the playbook's targets</h3>")
    parts.append(_table(["", "KPI", "value", "target"],
                        [[_MARK[k["met"]], k["name"], _kpi_value(k), _kpi_target(k)]
                         for k in d["kpis"]]))
    b = d["batched"]
    parts.append(f"<h2>Batched since the last summary ({b['count']})</h2>")
    parts.append(_table(["state", "severity", "alert", "target", "why", "history"],
                        [[a["state"], a["severity"], a["summary"], a["target"], a["detail"],
                          a["history"] or hhmm(a["last_at"])] for a in b["alerts"]])
                 if b["alerts"] else "<p>Nothing was batched.</p>")
    title = html.escape(summary_subject(d))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
            '</head>\n<body style="font-family: sans-serif">\n' + "\n".join(parts)
            + "\n</body></html>\n")


def slack_blocks(d: Mapping[str, Any], r: Any = None) -> dict[str, Any]:
    """The summary as one Block Kit message (≤ 50 blocks; long lists are cut with a count)."""
    from console.engine.alerting.receivers.slack import escape, plain

    def section(text: str) -> dict[str, Any]:
        return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}

    subject = summary_subject(d)
    goal = format_percent(d.get("uptime_goal_pct", 99.9), 1)
    uptime = "\n".join(f"{_MARK[u['met']]} `{escape(u['target'], 64)}` "
                       f"{format_percent(u['pct'], 3)}" for u in d["uptime"][:40])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": plain(subject, 150)}},
        section(f"*Uptime* (goal ≥ {goal})\n{uptime or '_no target reported_'}"),
    ]
    rows = [r for r in d["alerts"]["by_severity"] if r["episodes"]]
    blocks.append(section("*Alerts*\n" + ("\n".join(
        f"{r['severity']}: {r['episodes']} fired, {r['acknowledged']} acknowledged "
        f"(mean {_dur(r['mean_tta_s'])}), {r['ongoing']} still firing" for r in rows)
        or "_No alert fired._")))
    inc = d["incidents"]
    lines = [f"{i['severity']} {i['state']} `{escape(i['id'], 40)}` {escape(i['title'], 100)}"
             for i in [*inc["open"], *inc["resolved"]][:20]]
    blocks.append(section("*Incidents*\n" + ("\n".join(lines) or "_None._")))
    blocks.append({"type": "section", "fields": [
        {"type": "mrkdwn", "text": f"{_MARK[k['met']]} *{k['name']}*\n{_kpi_value(k)} "
                                   f"({_kpi_target(k)})"} for k in d["kpis"]][:10]})
    b = d["batched"]
    batched = "\n".join(f"{a['state']} {a['severity']} {escape(a['summary'], 100)} — "
                        f"`{escape(a['target'], 40)}`" for a in b["alerts"][:30])
    if len(b["alerts"]) > 30:
        batched += f"\n…and {len(b['alerts']) - 30} more"
    blocks.append(section(f"*Batched since the last summary* ({b['count']})\n"
                          + (batched or "_Nothing was batched._")))
    return {"text": escape(subject, 300), "blocks": blocks}
