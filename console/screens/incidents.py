"""Incidents: the list (open, or resolved to reopen), and one incident's checklist with step
countdowns, its KPIs from events, its timeline, and links that open the answer.

Every action goes through the journal (``IncidentDesk``) and the screen redraws from the
incident book once the entry is durable, so what the operator sees as done is on disk.
Actions that are hard to take back ask first (resolving a P0/P1, acknowledging a resolved
incident, reopening one); under ``--read-only`` none is taken, and the screen says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.engine.incidents.book import Incident, StepState
from console.engine.model import SEVERITIES, AlertEpisode
from console.engine.text.fmt import format_age
from console.engine.text.sanitize import one_line
from console.screens.base import (
    SCROLL_KEYS,
    ConsoleModal,
    ConsoleScreen,
    ListScreen,
    scroll_text,
)
from console.screens.prompt import Choose, Confirm, TextPrompt
from widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from console.app import OpsConsoleApp
    from console.engine.incidents.book import IncidentDesk
    from console.engine.runtime import Runtime

TICK = 0.5  # countdowns, and other consoles' actions (polled every 0.25 s), within 1 s


def status_routes(runtime: Any) -> list[str]:
    """The receivers that post a status update written here."""
    notifier = getattr(runtime, "notifier", None)
    return notifier.status_routes() if notifier is not None else []


def status_posted(routes: list[str]) -> str:
    """What became of a status update: which Slack routes post it, or that none does (the
    walk was told "posted by the Slack routes" by a console with no receiver at all)."""
    if routes:
        return f"status update journaled; posted to Slack by {', '.join(routes)}"
    return ("status update journaled, not posted: no Slack receiver has incident_channels "
            "or status_channel; tell people yourself, then check Communicate's items")


async def get_desk(app: OpsConsoleApp) -> IncidentDesk | None:
    """The runtime's incident desk, once the runtime has started; None when the journal
    cannot be opened (the runtime has said why)."""
    await app.runtime_ready.wait()
    return None if app.runtime is None else await app.runtime.open_desk()


def inline_markdown(text: str) -> Content:
    """Playbook text is Markdown: `code` and **bold** spans shown bold, the marks dropped.

    Only these two inline forms are rendered (a checklist line has no blocks); the text is
    never parsed as Textual markup, so a stray ``[b]`` stays literal.
    """
    parts: list[str | tuple[str, str]] = []
    i = 0
    while i < len(text):
        for mark in ("`", "**"):
            if text.startswith(mark, i):
                end = text.find(mark, i + len(mark))
                if end > i + len(mark):
                    parts.append((text[i + len(mark):end], "bold"))
                    i = end + len(mark)
                    break
        else:
            j = min((k for k in (text.find("`", i + 1), text.find("**", i + 1)) if k > 0),
                    default=len(text))
            parts.append(text[i:j])
            i = j
    return Content.assemble(*parts)


def sync_options(ol: OptionList, rows: list[tuple[str, str]],
                 shown: list[tuple[str, str]], *, markdown: bool = False) -> bool:
    """Make `ol` show `rows` (id, text), touching only what changed since `shown`.

    A countdown ticking changes one prompt per step; rebuilding the whole list twice a
    second would repaint every row and lose the scroll position. Returns True when the
    options were rebuilt (rows added, removed or reordered); the cursor stays on its id.
    """
    render = inline_markdown if markdown else Content
    if [r[0] for r in rows] == [r[0] for r in shown]:
        for i, (row, old) in enumerate(zip(rows, shown, strict=True)):
            if row[1] != old[1]:
                ol.replace_option_prompt_at_index(i, render(row[1]))
        return False
    keep_id = None
    if ol.highlighted is not None and ol.highlighted < ol.option_count:
        keep_id = ol.get_option_at_index(ol.highlighted).id
    ol.clear_options()
    ol.add_options([Option(render(text), id=oid) for oid, text in rows])
    ids = [oid for oid, _ in rows]
    if keep_id in ids:
        ol.highlighted = ids.index(keep_id)
    return True


def _now(screen: ConsoleScreen[None] | ConsoleModal[None]) -> float:
    return float(screen.console.clock())


# The playbook's severity table, for the severity chooser.
SEVERITY_HELP = {
    "P0": "Critical: production down, payments broken, database lost, data loss, breach "
          "(respond < 15 min)",
    "P1": "High: core feature broken, p95 > 2 s, errors > 5 %, CPU/memory > 80 % "
          "(respond < 30 min)",
    "P2": "Medium: non-critical feature degraded, performance below target (< 4 h)",
    "P3": "Low: informational, capacity planning (review daily)",
}


def kpi_line(inc: Incident, episodes: list[AlertEpisode], now: float) -> str:
    """``detect 5m02s ✖ · ack 2m45s ✔ · mitigate - · impact 5m10s ✔ · resolve -``: the
    incident's times from events, each marked against its target."""
    from console.engine.incidents.kpis import incident_kpis, measured

    parts = []
    short = {"acknowledge": "ack"}
    for m in incident_kpis(inc, episodes):
        s = m.seconds
        if s is None and m.start is not None and m.name != "detect" and not inc.is_open:
            s_text, mark = "not done", ""  # resolved without it: no clock runs any more
        elif s is None and m.start is not None and m.name != "detect":
            s_text, mark = f"{format_age(now - m.start)}…", ""
        else:
            s_text = measured(s)
            mark = {True: " ✔", False: " ✖", None: ""}[m.met]
        parts.append(f"{short.get(m.name, m.name)} {s_text}{mark}")
    return " · ".join(parts)


def step_line(inc: Incident, step: StepState, now: float, is_next: bool) -> str:
    """A step's header: title, target, and its countdown or outcome."""
    status = inc.step_status(step, now)
    done, total = step.progress(inc.severity)
    mark = "▶" if is_next else " "
    target = step.section.describe_target(inc.severity)
    head = f"{mark} {step.section.title}" + (f" ({target})" if target else "")
    if status == "overdue":
        tail = f"⚠ OVERDUE by {format_age(now - (inc.due(step) or now))}"
    elif status in ("late", "done"):
        from console.engine.incidents.kpis import measured  # rounded, as the header's

        tail = f"✔ done +{measured((step.done_at or 0) - inc.started)}" + (
            " (late)" if status == "late" else "")
        if total and done < total:  # done by its action, not by its items: say which
            # ("Communicate 0/3 ✔ done" read as a contradiction)
            done = total = 0
            tail += f" ({_DONE_BY.get(step.id, 'by hand')})"
    elif not inc.still_running(step):  # resolved without it: no countdown to a due time
        tail = "not done"
    else:
        left = inc.remaining(step, now)
        tail = f"due in {format_age(left)}" if left is not None else ""
    if step.id == "postmortem" and status not in ("late", "done") \
            and inc.postmortem_drafted_at is not None:
        tail = "draft written: edit it, then P" + (f" · {tail}" if tail else "")
    count = f"{done}/{total}" if total else ""
    return "  ".join(x for x in (head, count, tail) if x)


# The action that completes a response step whatever its items say (book._STEP_OF_ACTION).
_DONE_BY = {"acknowledge": "acknowledged", "communicate": "status update",
            "mitigate": "mitigated", "resolve": "resolved", "postmortem": "post-mortem"}


def _age(inc: Incident, now: float) -> str:
    """A resolved incident's age is a measured span, rounded as the post-mortem and the
    step rows write it (the header said "age 1m18s" beside "resolve 1m19s ✔"); an open
    one's is a running clock."""
    if inc.resolved_at is not None:
        from console.engine.incidents.kpis import measured

        return measured(inc.age(now))
    return format_age(inc.age(now))


def incident_line(inc: Incident, now: float) -> str:
    """One row of the list, within 76 cells: severity, title, age, steps done, overdue."""
    done, total = inc.progress()
    over = len(inc.overdue(now))
    flag = f" ⚠ {over} overdue" if over else ""
    # 32 cells with the longest flag and step count (72 in all); what the flag leaves, the
    # title takes ("Stripe webhooks failing (paymen…" beside 40 empty columns)
    width = 32 + len(" ⚠ 9 overdue") - len(flag)
    title = one_line(inc.title, width)
    return (f"{inc.severity} {title:<{width}} age {_age(inc, now):>6} "
            f"{done}/{total}{flag} · {inc.id.removeprefix('INC-')[-9:]}")


class KpiScreen(ConsoleModal[None]):
    """The playbook's KPIs over the last 7 days (as ``opsconsole report``); Esc closes."""

    DEFAULT_CSS = """
    KpiScreen { align: center middle; }
    KpiScreen #kpi-body { width: 76; height: auto; max-height: 100%; border: round $accent;
                          background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Close", id="kpis_close"),
                Binding("K", "dismiss", "Close", show=False), *SCROLL_KEYS]
    HINT = "Esc closes · j/k, space/b, g/G scroll · ? keys"

    def action_scroll(self, how: str) -> None:
        scroll_text(self.query_one("#kpi-body", VerticalScroll), how)

    def __init__(self, desk: IncidentDesk, since: float = 7 * 86400) -> None:
        super().__init__()
        self.desk = desk
        self.since = since

    def compose(self) -> ComposeResult:
        from console.engine.incidents.kpis import compute, format_text

        engine = self.console.scheduler
        runtime = self.console.runtime
        now = _now(self)
        # with the alert episodes, as `opsconsole report` reads them: without, the mean
        # impact was always "—" and MTTD and MTTA came from incident actions alone
        k = compute(self.desk.book, since=self.since, now=now,
                    store=engine.store if engine is not None else None,
                    episodes=runtime.episodes(now) if runtime is not None else None)
        with VerticalScroll(id="kpi-body"):
            # the box covers the footer: what closes it is said inside
            yield Static(Content(format_text(k).rstrip() + "\n\n" + self.HINT), id="kpi-text")


class IncidentListScreen(ListScreen[None]):
    """Open incidents, most severe first (r: resolved ones, newest first, to look back or
    reopen); Enter opens one, o opens a new one by hand."""

    DEFAULT_CSS = """
    IncidentListScreen #incidents-title { height: auto; padding: 0 1; text-style: bold; }
    IncidentListScreen #incidents-list { height: 1fr; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="incidents_back"),
        Binding("enter", "open_selected", "Open", id="incidents_open", show=False),
        Binding("o", "new", "New incident", id="incidents_new"),
        Binding("r", "toggle_resolved", "Open/resolved", id="incidents_resolved"),
        Binding("K", "kpis", "KPIs", id="incidents_kpis"),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Content("Incidents · loading the journal…"), id="incidents-title")
        yield OptionList(id="incidents-list")
        yield KeyFooter()

    desk: Any = None
    show_resolved = False
    _shown: list[tuple[str, str]] = []  # replaced on each redraw, never mutated

    async def on_mount(self) -> None:
        self.desk = await get_desk(self.console)
        if self.desk is None:
            self.query_one("#incidents-title", Static).update(
                Content("Incidents · the journal cannot be opened (see the message)"))
            return
        self.set_interval(TICK, self.redraw, name="incidents-tick")
        self.redraw()

    def redraw(self) -> None:
        desk = getattr(self, "desk", None)
        if desk is None:
            return
        now = _now(self)
        if self.show_resolved:
            incs = sorted((i for i in desk.book.incidents.values() if not i.is_open),
                          key=lambda i: i.resolved_at or 0.0, reverse=True)
            title = f"Incidents · {len(incs)} resolved · Enter open (O reopens) · r open ones"
        else:
            incs = desk.book.open_incidents()
            title = f"Incidents · {len(incs)} open · o new · Enter open · r resolved"
        if self.console.read_only:
            title += " · READ-ONLY"
        degraded = desk.journal.degraded
        if degraded:
            title += f"\n⚠ JOURNAL DEGRADED: {desk.journal.pending} action(s) only in memory · " \
                     f"{degraded}"
        self.query_one("#incidents-title", Static).update(Content(title))
        ol = self.query_one(OptionList)
        empty = ("no resolved incident" if self.show_resolved
                 else "no open incident (o: open one by hand)")
        rows = [(i.id, incident_line(i, now)) for i in incs] if incs else [("-none-", empty)]
        sync_options(ol, rows, self._shown)
        self._shown = rows
        if ol.highlighted is None and ol.option_count:
            ol.highlighted = 0

    def _selected(self) -> str | None:
        ol = self.query_one(OptionList)
        if ol.highlighted is None:
            return None
        oid = ol.get_option_at_index(ol.highlighted).id
        return None if oid in (None, "-none-") else oid

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id and event.option.id != "-none-":
            self.app.push_screen(IncidentScreen(event.option.id))

    def action_open_selected(self) -> None:
        iid = self._selected()
        if iid is not None:
            self.app.push_screen(IncidentScreen(iid))

    def action_kpis(self) -> None:
        if self.desk is not None:
            self.app.push_screen(KpiScreen(self.desk))

    def action_toggle_resolved(self) -> None:
        self.show_resolved = not self.show_resolved
        self.query_one(OptionList).highlighted = None
        self.redraw()

    def action_new(self) -> None:
        if self.desk is None or self.refuse_if_read_only("open an incident"):
            return
        async def opened(title: str | None) -> None:
            if not title:
                return
            inc = await self.desk.open(title, "P1")
            self.redraw()
            self.app.push_screen(IncidentScreen(inc.id))

        self.app.push_screen(TextPrompt("New incident: title (severity P1, s changes it)"),
                             opened)


class IncidentScreen(ListScreen[None]):
    """One incident: steps with countdowns, the next one marked ▶, overdue ones flagged."""

    DEFAULT_CSS = """
    IncidentScreen #incident-head { height: auto; padding: 0 1; }
    IncidentScreen #incident-steps { height: 1fr; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="incident_back"),
        Binding("space", "check_item", "Check", id="incident_check"),
        Binding("n", "note", "Note", id="incident_note"),
        Binding("s", "severity", "Severity", id="incident_severity"),
        Binding("a", "acknowledge", "Ack", id="incident_ack"),
        Binding("m", "mitigate", "Mitigated", id="incident_mitigate"),
        Binding("R", "resolve", "Resolve", id="incident_resolve"),
        Binding("O", "reopen", "Reopen", show=False, id="incident_reopen"),
        Binding("t", "timeline", "Timeline", id="incident_timeline"),
        Binding("b", "runbook", "Runbook", show=False, id="incident_runbook"),
        Binding("v", "snapshot", "Snapshot", id="incident_snapshot"),
        Binding("h", "handover", "Hand over", id="incident_handover"),
        Binding("c", "claim", "Claim", show=False, id="incident_claim"),
        Binding("u", "status_update", "Status update", id="incident_status"),
        Binding("F", "false_positive", "False positive", show=False, id="incident_fp"),
        Binding("P", "postmortem", "Post-mortem", id="incident_postmortem"),
        Binding("enter", "follow_link", "Go to", show=False, id="incident_link"),
    ]

    def __init__(self, incident_id: str) -> None:
        super().__init__()
        self.incident_id = incident_id
        self.desk: Any = None
        self._shown: list[tuple[str, str]] = []
        self._leads: dict[str, bool] = {}  # link -> it leads somewhere (see `_leads_to`)
        self._leads_key: object = None

    def _leads_to(self, link: str, prefer: list[str]) -> bool:
        """The link opens something in this console: a walk without PostgreSQL saw
        "⏎ db:tables" on a step, pressed Enter and read "nothing to open". Kept until the
        targets or the series change (resolving reads every target's view)."""
        engine = self.console.scheduler
        if engine is None:
            return True  # starting: Enter says so
        key = (id(engine), id(engine.settings), engine.store.generation, tuple(prefer))
        if key != self._leads_key:
            self._leads, self._leads_key = {}, key
        if link not in self._leads:
            self._leads[link] = not isinstance(destination_of(engine, link, prefer), str)
        return self._leads[link]

    def compose(self) -> ComposeResult:
        yield Static(Content(self.incident_id), id="incident-head")
        yield OptionList(id="incident-steps")
        yield KeyFooter()

    async def on_mount(self) -> None:
        self.desk = await get_desk(self.console)
        if self.desk is not None:
            self.set_interval(TICK, self.redraw, name="incident-tick")
            self.redraw()

    @property
    def incident(self) -> Incident | None:
        return None if self.desk is None else self.desk.book.get(self.incident_id)

    def rows(self, inc: Incident, now: float) -> list[tuple[str, str]]:
        """(option id, text): a header per step, then its items."""
        out: list[tuple[str, str]] = []
        nxt = inc.next_step()
        current_pb = None
        for step in inc.steps:
            if step.playbook != current_pb:
                current_pb = step.playbook
                pb = self.desk.book.playbooks.get(step.playbook)
                out.append((f"pb|{step.playbook}",
                            f"── {pb.title if pb else step.playbook} ──"))
            out.append((f"step|{step.playbook}|{step.id}",
                        step_line(inc, step, now, step is nxt) if step.timed
                        else f"  {step.section.title}"))
            for i, item in step.items(inc.severity):
                box = "[x]" if i in step.checked else "[ ]"
                link = ""
                if item.link:
                    link = (f"  ⏎ {item.link}" if self._leads_to(item.link, inc.targets)
                            else f"  · {item.link} (not in this console)")
                out.append((f"item|{step.playbook}|{step.id}|{i}",
                            f"    {box} {one_line(item.text, 200)}{link}"))
            for note in step.notes[-3:]:
                out.append((f"note|{step.playbook}|{step.id}|{note.ts}",
                            f"    ✎ {one_line(note.text, 200)} — {one_line(note.actor, 40)}"))
        for note in inc.notes[-5:]:
            out.append((f"tnote|{note.ts}",
                        f"✎ {one_line(note.text, 200)} — {one_line(note.actor, 40)}"))
        return out

    def head_text(self, inc: Incident, now: float) -> str:
        state = inc.state.upper() if inc.state in ("open", "resolved") else inc.state
        over = inc.overdue(now)
        runtime = self.console.runtime
        episodes = runtime.episodes(now) if runtime is not None else []
        lines = [
            f"{inc.severity} · {one_line(inc.title, 60)} · {state} · "
            f"age {_age(inc, now)} · owner {one_line(inc.owner, 30)}",
            f"{inc.id} · alerts: {one_line(', '.join(inc.alerts) or 'none', 50)}"
            + f" · runbook {one_line(inc.runbook or 'none (b)', 30)}"
            + (f" · ⚠ {len(over)} step(s) overdue" if over else ""),
            kpi_line(inc, episodes, now),
        ]
        if self.console.read_only:
            lines.append("READ-ONLY: actions are off (--read-only)")
        degraded = self.desk.journal.degraded
        if degraded:
            lines.append(f"⚠ JOURNAL DEGRADED: {self.desk.journal.pending} action(s) only "
                         f"in memory · {degraded}")
        return "\n".join(lines)

    def redraw(self) -> None:
        inc = self.incident
        if inc is None:
            return
        now = _now(self)
        self.query_one("#incident-head", Static).update(Content(self.head_text(inc, now)))
        ol = self.query_one(OptionList)
        rows = self.rows(inc, now)
        sync_options(ol, rows, self._shown, markdown=True)
        self._shown = rows
        if ol.highlighted is None:  # start on the next step's first item
            nxt = inc.next_step()
            target = f"step|{nxt.playbook}|{nxt.id}" if nxt else None
            ids = [oid for oid, _ in rows]
            ol.highlighted = ids.index(target) + 1 if target in ids else 0

    def _cursor(self) -> list[str]:
        ol = self.query_one(OptionList)
        if ol.highlighted is None:
            return []
        return str(ol.get_option_at_index(ol.highlighted).id or "").split("|")

    def _refused(self, what: str) -> bool:
        return self.incident is None or self.refuse_if_read_only(what)

    async def action_check_item(self) -> None:
        inc, cur = self.incident, self._cursor()
        if inc is None or len(cur) != 4 or cur[0] != "item":
            return
        if self._refused("check an item"):
            return
        _, pb, section, idx = cur
        step = inc.step(section, pb)
        checked = step is not None and int(idx) in step.checked
        await self.desk.check(inc.id, section, int(idx), checked=not checked, playbook=pb)
        self.redraw()

    def action_note(self) -> None:
        inc, cur = self.incident, self._cursor()
        if inc is None or self._refused("add a note"):
            return
        section = cur[2] if len(cur) >= 3 and cur[0] in ("item", "step", "note") else None
        pb = cur[1] if section else None
        where = f"on {section}" if section else "on the timeline"

        async def add(text: str | None) -> None:
            if text:
                await self.desk.note(inc.id, text, section=section, playbook=pb)
                self.redraw()

        self.app.push_screen(TextPrompt(f"Note {where}:"), add)

    def action_severity(self) -> None:
        """Choose the severity from the playbook's table, then say why (both journaled)."""
        inc = self.incident
        if inc is None or self._refused("change the severity"):
            return
        choices = [(s, f"{s} {SEVERITY_HELP[s]}") for s in SEVERITIES]

        async def chosen(sev: str | None) -> None:
            if sev is None:
                return
            same = sev == inc.severity  # confirmed: "Determine if P0, P1 or P2" is done too

            async def why(reason: str | None) -> None:
                if reason is None:
                    self.notify("severity unchanged: say why it "
                                f"{'is ' + sev if same else 'changes'}", timeout=4)
                    return
                await self.desk.severity(inc.id, sev, reason)
                self.notify(f"severity {sev}{' confirmed' if same else ''}", timeout=2)
                self.redraw()

            ask = (f"Why {sev}? (confirms it, for the post-mortem)" if same
                   else f"Why {inc.severity} → {sev}? (for the post-mortem)")
            self.app.push_screen(TextPrompt(ask), why)

        self.app.push_screen(Choose(f"Severity of {inc.id} (now {inc.severity}):", choices,
                                    current=inc.severity), chosen)

    def action_runbook(self) -> None:
        """Attach a runbook to the incident, or change it (a manual incident has none)."""
        inc = self.incident
        if inc is None or self._refused("change the runbook"):
            return
        books = self.desk.book.playbooks.of_kind("runbook")
        choices = [(p.name, f"{p.title} — {p.description}") for p in books]

        async def chosen(name: str | None) -> None:
            if name and name != inc.runbook:
                await self.desk.attach_runbook(inc.id, name)
                self.notify(f"runbook {name}", timeout=3)
                self.redraw()

        self.app.push_screen(Choose(f"Runbook for {inc.id} (now {inc.runbook or 'none'}):",
                                    choices, current=inc.runbook), chosen)

    def action_acknowledge(self) -> None:
        inc = self.incident
        if inc is None or self._refused("acknowledge"):
            return

        already = inc.acknowledged_at is not None

        async def go(yes: bool | None = True) -> None:
            if yes:
                if not already:  # once: each press journaled another "acknowledged"
                    await self.desk.acknowledge(self.incident_id)
                n = self._ack_alerts(inc)  # alerts attached since are taken with it
                if already:
                    self.notify(f"{inc.id} was acknowledged already"
                                + (f"; {n} more alert(s) acknowledged with it" if n else ""),
                                timeout=3)
                self.redraw()

        if not inc.is_open:  # a late ack would land after "resolved" on the timeline
            self.app.push_screen(Confirm(f"{inc.id} is resolved. Acknowledge it anyway?"),
                                 go)
            return
        self.run_worker(go(), group="incident-action", exit_on_error=False)

    def _ack_alerts(self, inc: Incident) -> int:
        """The firing alerts the incident was opened from are acknowledged with it: an
        incident's `a` left them unacknowledged in the alert history and the daily report,
        and the banner kept paging, while the on-call was on it. Returns how many."""
        from console.engine.alerting.lifecycle import AlertState
        from console.screens.alerts import acknowledge

        service = self.console.alerting
        if service is None:
            return 0
        keys = set(inc.episodes)  # rule/target/episode: this firing, not a later one
        ids = set(inc.alerts)
        n = 0
        for a in service.alerts.alerts():
            if a.state == AlertState.FIRING and (
                    f"{a.id}/{a.incident}" in keys if keys else a.id in ids):
                acknowledge(self, service, a, str(self.desk.journal.actor), now=_now(self),
                            comment=f"with incident {inc.id}")
                n += 1
        return n

    async def action_mitigate(self) -> None:
        if not self._refused("mark mitigated"):
            await self.desk.mitigate(self.incident_id)
            self.redraw()

    def action_resolve(self) -> None:
        inc = self.incident
        if inc is None or self._refused("resolve"):
            return
        if not inc.is_open:
            self.notify(f"{inc.id} is already resolved (O reopens it)", timeout=3)
            return

        async def go(yes: bool | None = True) -> None:
            if yes:
                await self.desk.resolve(self.incident_id)
                self.redraw()

        firing = self._alerts_still_firing(inc)
        if inc.severity in ("P0", "P1") or firing:  # a P2 with an alert still firing too
            n = firing.count(", ") + 1
            more = (f"\n{'Its alert is' if n == 1 else f'{n} of its alerts are'} still "
                    f"firing: {firing}." if firing else "")
            self.app.push_screen(Confirm(f"Resolve {inc.severity} incident {inc.id} "
                                         f"\"{one_line(inc.title, 50)}\"?{more}"), go)
            return
        self.run_worker(go(), group="incident-action", exit_on_error=False)

    def _alerts_still_firing(self, inc: Incident) -> str:
        alerting = self.console.alerting
        if alerting is None:
            return ""
        live = [a.id for a in alerting.alerts.current()
                if a.id in inc.alerts and a.state.value in ("firing", "acknowledged")]
        return ", ".join(live)

    def action_reopen(self) -> None:
        inc = self.incident
        if inc is None or self._refused("reopen"):
            return
        if inc.is_open:
            self.notify(f"{inc.id} is open", timeout=2)
            return

        async def why(reason: str | None) -> None:
            if reason is not None:
                await self.desk.reopen(inc.id, reason)
                self.notify(f"{inc.id} reopened", timeout=3)
                self.redraw()

        self.app.push_screen(TextPrompt(f"Reopen {inc.id}: why? (Esc: keep it resolved)"),
                             why)

    def action_timeline(self) -> None:
        """The incident's story, from events: alerts, actions, notes, notifications."""
        inc = self.incident
        if inc is not None:
            self.app.push_screen(TimelineScreen(inc.id))

    async def action_snapshot(self) -> None:
        """Attach the current values of the metrics its alerts and runbook name (its
        targets' other metrics after them, all bounded) to the timeline."""
        inc = self.incident
        engine = self.console.scheduler
        if inc is None or engine is None:
            self.notify("no metrics yet", timeout=3)
            return
        if self._refused("take a snapshot"):
            return
        values = snapshot_values(engine, inc.targets, named_metrics(self.console, inc))
        await self.desk.snapshot(inc.id, values, label=f"{len(values)} series")
        self.notify(f"snapshot of {len(values)} series attached", timeout=3)
        self.redraw()

    def action_handover(self) -> None:
        inc = self.incident
        if inc is None or self._refused("hand over"):
            return

        async def hand(to: str | None) -> None:
            if to:
                await self.desk.handover(inc.id, to)
                self.redraw()

        self.app.push_screen(TextPrompt("Hand over to (user@host or name):"), hand)

    async def action_claim(self) -> None:
        """c: this operator owns the incident now (on every console sharing the state)."""
        inc = self.incident
        if inc is None or self._refused("claim"):
            return
        await self.desk.claim(inc.id)
        self.notify(f"{inc.id} is yours ({self.desk.journal.actor})", markup=False, timeout=3)
        self.redraw()

    def action_status_update(self) -> None:
        """The playbook's Step 3: journaled, then posted by the notifier (the incident
        channel; for a user-facing incident the general one too)."""
        inc = self.incident
        if inc is None or self._refused("post a status update"):
            return

        async def post(text: str | None) -> None:
            if text:
                routes = status_routes(self.console.runtime)
                await self.desk.status_update(inc.id, text, routes=routes)
                self.notify(status_posted(routes), timeout=6, markup=False)
                self.redraw()

        self.app.push_screen(TextPrompt("Status update (incident channel; general channel "
                                        "too when user-facing):"), post)

    async def action_false_positive(self) -> None:
        inc = self.incident
        if inc is not None and not self._refused("mark a false positive"):
            await self.desk.mark_false_positive(inc.id, not inc.false_positive)
            self.notify("marked false positive" if inc.false_positive
                        else "no longer a false positive", timeout=3)
            self.redraw()

    async def action_postmortem(self) -> None:
        """Write the post-mortem draft next to the journal and show the file. The draft is
        written again on every `P` (with what happened since) until someone edits the file:
        then it is kept as they left it, and the post-mortem step is done (a draft is
        prompts, not a post-mortem)."""
        inc = self.incident
        if inc is None or self._refused("write the post-mortem"):
            return
        from console.engine.incidents.postmortem import write_draft

        path = self.desk.journal.path.parent / "postmortems" / f"{inc.id}.md"
        try:
            shown, edited = await asyncio.to_thread(write_draft, path, await self._draft(inc))
            if edited and inc.postmortem_at is None:
                await self.desk.postmortem_done(inc.id)
            elif not edited and inc.postmortem_drafted_at is None:
                await self.desk.postmortem_drafted(inc.id)
        except OSError as exc:
            self.notify(f"cannot write the draft: {exc}", severity="error", markup=False)
            return
        if edited:
            self.notify(f"{path.name} was edited after its draft: kept as it is; the "
                        "post-mortem step is done", markup=False, timeout=5)
        else:
            self.notify(f"draft written to {path}: fill in its prompts, then P again marks "
                        "the post-mortem done", markup=False, timeout=8)
        self.redraw()
        # read it here, whole (the file is the one to edit and send)
        from console.screens.document import DocumentScreen

        self.app.push_screen(DocumentScreen(f"Post-mortem {inc.id} · {path}", shown))

    async def _draft(self, inc: Incident) -> str:
        from console.engine.incidents.postmortem import permanent_fixes, render

        now = _now(self)
        runtime = self.console.runtime
        episodes, sent = await runtime.incident_sources(now) if runtime else ([], [])
        changes = runtime.events.recent(0) if runtime and runtime.events else []
        return render(inc, now=now, episodes=episodes, notifications=sent,
                      permanent_fixes=permanent_fixes(inc), changes=changes)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_follow_link()

    def action_follow_link(self) -> None:
        """Enter on an item with a link opens the screen that answers it, with its context
        (a chart, the logs with a query, a drill-down tab, the endpoints, an external page)."""
        inc, cur = self.incident, self._cursor()
        if inc is None or len(cur) != 4 or cur[0] != "item":
            return
        step = inc.step(cur[2], cur[1])
        if step is None:
            return
        link = step.section.items[int(cur[3])].link
        if not link:
            return
        dest = destination_of(self.console.scheduler, link, inc.targets)
        if isinstance(dest, str):
            self.notify(f"nothing to open for {link}: {dest}", markup=False, timeout=5)
            return
        self.console.open_destination(dest)


def named_metrics(app: Any, inc: Incident) -> list[str]:
    """The metrics the incident's alerts watch and its runbook charts: a snapshot's first
    values (what the post-mortem will be asked about)."""
    from console.engine.incidents.links import parse_link
    from console.engine.lang.ruleexpr import parse_expr

    out: list[str] = []
    alerting = app.alerting
    rules = {r.name: r for r in alerting.ruleset.rules} if alerting is not None else {}
    for alert_id in inc.alerts:
        rule = rules.get(alert_id.split("/", 1)[0])
        if rule is not None:
            with contextlib.suppress(ValueError):
                expr = parse_expr(rule.expr)
                out += [m for m in expr.series if m not in out]
    for step in inc.steps:
        for item in step.section.items:
            if item.link:
                with contextlib.suppress(ValueError):
                    link = parse_link(item.link)
                    if link.view in ("chart", "metric") and link.arg not in out:
                        out.append(link.arg)
    return out


def snapshot_values(engine: Any, targets: list[str], metrics: Sequence[str] = (),
                    limit: int = 40) -> dict[str, float]:
    """Latest values: first the named `metrics` (on the incident's targets, else on any
    target reporting them), then the rest of `targets`' series; bounded in count."""
    store = engine.store
    all_series = sorted(store.series())
    names = set(targets) if targets else set(engine.names())
    chosen: list[str] = []
    for metric in metrics:
        mine = [s for s in all_series if s.endswith(f":{metric}")
                and s.split(":", 1)[0] in names]
        chosen += mine or [s for s in all_series if s.endswith(f":{metric}")]
    chosen += [s for s in all_series if s.split(":", 1)[0] in names
               and not s.endswith(":status")]
    out: dict[str, float] = {}
    for series in chosen:
        if series in out:
            continue
        latest = store.latest(series)
        if latest is not None and math.isfinite(latest[1]):  # NaN: no value (e.g. down)
            out[series] = latest[1]
        if len(out) >= limit:
            break
    return out


def destination_of(engine: Any, link: str, prefer: list[str]) -> Any:
    """Where a runbook link leads in the running console (a `Destination`), or why it
    leads nowhere (a string)."""
    from console.engine.incidents.links import LinkTarget, config_metrics, parse_link, resolve

    if engine is None:
        return "the console is starting"
    try:
        parsed = parse_link(link)
    except ValueError as exc:
        return str(exc)
    targets = [LinkTarget(v.name, v.kind) for v in engine.snapshot()]
    series = set(engine.store.series())
    try:  # a target that has reported the metric first...
        return resolve(parsed, targets, lambda t, m: f"{t}:{m}" in series, prefer)
    except ValueError as exc:
        first = str(exc)
    # ...else one that can (Redis reports its hit rate only once it has had lookups):
    # the chart opens and says "no data yet" rather than the link saying nothing.
    known = {t.name: config_metrics(t) for t in engine.settings.targets}
    try:
        return resolve(parsed, targets, lambda t, m: m in known.get(t, ()), prefer)
    except ValueError:
        return first


class TimelineScreen(ListScreen[None]):
    """An incident's timeline from events, oldest first; times relative to its alert firing."""

    DEFAULT_CSS = """
    TimelineScreen #timeline-head { height: auto; padding: 0 1; }
    TimelineScreen #timeline-list { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="timeline_back")]

    def __init__(self, incident_id: str) -> None:
        super().__init__()
        self.incident_id = incident_id
        self._key: object = None
        self._shown: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield Static(Content(self.incident_id), id="timeline-head")
        yield OptionList(id="timeline-list")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.console.refresh_screen()

    def events(self, now: float) -> list[Any]:
        from console.engine.incidents.timeline import timeline

        runtime = self.console.runtime
        desk = self.console.desk
        inc = desk.book.get(self.incident_id) if desk is not None else None
        if runtime is None or inc is None:
            return []
        changes = runtime.events.recent(inc.started - 3600) if runtime.events else []
        return timeline(inc, runtime.episodes(now), changes=changes)

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        desk = runtime.desk
        inc = desk.book.get(self.incident_id) if desk is not None else None
        if inc is None:
            return
        events = self.events(now)
        key = (len(inc.timeline), tuple((e.ts, e.text) for e in events))
        if key == self._key:
            return
        self._key = key
        from console.engine.incidents.kpis import incident_kpis, measured

        origin = next((m.start for m in incident_kpis(inc, runtime.episodes(now))
                       if m.name == "acknowledge"), inc.started) or inc.started
        self.query_one("#timeline-head", Static).update(Content(
            f"{inc.severity} · {one_line(inc.title, 50)} · timeline ({len(events)} events) · "
            f"times from the alert firing"))
        ol = self.query_one(OptionList)
        if not events:
            ol.clear_options()
            ol.add_option(Option(Content("no events yet"), disabled=True))
            self._shown = []
            return
        rows: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for ev in events:
            rel = ev.ts - origin
            sign = "−" if rel < 0 else "+"
            # an id per event, so the cursor and the scroll stay put while the list
            # refreshes (a rebuild put them back on the first row every 2 s)
            oid = f"{ev.ts!r}|{ev.actor}"
            seen[oid] = n = seen.get(oid, 0) + 1
            rows.append((f"{oid}|{n}", one_line(
                # the actor whole, column or not: "alert payment-web…" named two alerts
                # rounded as the post-mortem's timeline (+11s here beside its +12s)
                f"{sign}{measured(abs(rel)):>6} {one_line(ev.actor, 60):<18} {ev.text}",
                360)))
        if not self._shown:
            ol.clear_options()  # "no events yet"
        sync_options(ol, rows, self._shown)
        self._shown = rows
