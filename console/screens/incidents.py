"""Incidents: the list of open incidents and one incident's checklist with step countdowns.

Every action goes through the journal (``IncidentDesk``) and the screen redraws from the
incident book once the entry is durable, so what the operator sees as done is on disk. The
desk is created on first use (``i``) and lives on the app.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from console.engine.incidents.book import Incident, StepState
from console.engine.model import SEVERITIES
from console.engine.text.fmt import format_age
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleModal, ConsoleScreen
from console.screens.prompt import TextPrompt

if TYPE_CHECKING:
    from console.app import OpsConsoleApp
    from console.engine.incidents.book import IncidentDesk

TICK = 0.5  # countdowns, and other consoles' actions (polled every 0.25 s), within 1 s


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


def step_line(inc: Incident, step: StepState, now: float, is_next: bool) -> str:
    """A step's header: title, target, and its countdown or outcome."""
    status = inc.step_status(step, now)
    done, total = step.progress(inc.severity)
    mark = "▶" if is_next else " "
    target = step.section.describe_target(inc.severity)
    head = f"{mark} {step.section.title}" + (f" ({target})" if target else "")
    if status == "overdue":
        tail = f"⚠ OVERDUE by {format_age(now - (inc.due(step) or now))}"
    elif status == "late":
        tail = f"✔ done +{format_age((step.done_at or 0) - inc.started)} (late)"
    elif status == "done":
        tail = f"✔ done +{format_age((step.done_at or 0) - inc.started)}"
    else:
        left = inc.remaining(step, now)
        tail = f"due in {format_age(left)}" if left is not None else ""
    count = f"{done}/{total}" if total else ""
    return f"{head}  {count}  {tail}".rstrip()


def incident_line(inc: Incident, now: float) -> str:
    """One row of the list, within 76 cells: severity, title, age, steps done, overdue."""
    done, total = inc.progress()
    over = len(inc.overdue(now))
    flag = f" ⚠ {over} overdue" if over else ""
    title = one_line(inc.title, 28)
    return (f"{inc.severity} {title:<28} age {format_age(inc.age(now)):>6} "
            f"{done}/{total}{flag} · {inc.id.removeprefix('INC-')[-9:]}")


class KpiScreen(ConsoleModal[None]):
    """The playbook's KPIs over the last 7 days (as ``opsconsole report``); Esc closes."""

    DEFAULT_CSS = """
    KpiScreen { align: center middle; }
    KpiScreen #kpi-body { width: 76; height: auto; max-height: 100%; border: round $accent;
                          background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "dismiss", "Close", id="kpis_close"),
                Binding("K", "dismiss", "Close", show=False)]

    def __init__(self, desk: Any, since: float = 7 * 86400) -> None:
        super().__init__()
        self.desk = desk
        self.since = since

    def compose(self) -> ComposeResult:
        from console.engine.incidents.kpis import compute, format_text

        engine = self.console.scheduler
        k = compute(self.desk.book, since=self.since, now=_now(self),
                    store=engine.store if engine is not None else None)
        with VerticalScroll(id="kpi-body"):
            yield Static(Content(format_text(k).rstrip()), id="kpi-text")


class IncidentListScreen(ConsoleScreen[None]):
    """Open incidents, most severe first; Enter opens one, o opens a new one by hand."""

    DEFAULT_CSS = """
    IncidentListScreen #incidents-title { height: auto; padding: 0 1; text-style: bold; }
    IncidentListScreen #incidents-list { height: 1fr; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="incidents_back"),
        Binding("enter", "open_selected", "Open", id="incidents_open", show=False),
        Binding("o", "new", "New incident", id="incidents_new"),
        Binding("K", "kpis", "KPIs", id="incidents_kpis"),
        Binding("j", "cursor_down", show=False),
        Binding("k", "cursor_up", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Static(Content("Incidents · loading the journal…"), id="incidents-title")
        yield OptionList(id="incidents-list")
        yield Footer()

    desk: Any = None
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
        incs = desk.book.open_incidents()
        degraded = desk.journal.degraded
        title = f"Incidents · {len(incs)} open · o new · Enter open"
        if degraded:
            title += f"\n⚠ JOURNAL DEGRADED: {desk.journal.pending} action(s) only in memory · " \
                     f"{degraded}"
        self.query_one("#incidents-title", Static).update(Content(title))
        ol = self.query_one(OptionList)
        rows = ([(i.id, incident_line(i, now)) for i in incs] if incs
                else [("-none-", "no open incident (o: open one by hand)")])
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

    def action_new(self) -> None:
        if self.desk is None:
            return
        async def opened(title: str | None) -> None:
            if not title:
                return
            inc = await self.desk.open(title, "P1")
            self.redraw()
            self.app.push_screen(IncidentScreen(inc.id))

        self.app.push_screen(TextPrompt("New incident: title (severity P1, s changes it)"),
                             opened)

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()


class IncidentScreen(ConsoleScreen[None]):
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
        Binding("v", "snapshot", "Snapshot", id="incident_snapshot"),
        Binding("h", "handover", "Hand over", id="incident_handover"),
        Binding("F", "false_positive", "False positive", show=False, id="incident_fp"),
        Binding("P", "postmortem", "Post-mortem", show=False, id="incident_postmortem"),
        Binding("enter", "follow_link", "Go to", show=False, id="incident_link"),
        Binding("j", "cursor_down", show=False),
        Binding("k", "cursor_up", show=False),
    ]

    def __init__(self, incident_id: str) -> None:
        super().__init__()
        self.incident_id = incident_id
        self.desk: Any = None
        self._shown: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield Static(Content(self.incident_id), id="incident-head")
        yield OptionList(id="incident-steps")
        yield Footer()

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
                link = f"  → {item.link}" if item.link else ""
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
        lines = [
            f"{inc.severity} · {one_line(inc.title, 60)} · {state} · "
            f"age {format_age(inc.age(now))} · owner {one_line(inc.owner, 30)}",
            f"{inc.id} · alerts: {one_line(', '.join(inc.alerts) or 'none', 60)}"
            + (f" · ⚠ {len(over)} step(s) overdue" if over else ""),
        ]
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

    async def action_check_item(self) -> None:
        inc, cur = self.incident, self._cursor()
        if inc is None or len(cur) != 4 or cur[0] != "item":
            return
        _, pb, section, idx = cur
        step = inc.step(section, pb)
        checked = step is not None and int(idx) in step.checked
        await self.desk.check(inc.id, section, int(idx), checked=not checked, playbook=pb)
        self.redraw()

    def action_note(self) -> None:
        inc, cur = self.incident, self._cursor()
        if inc is None:
            return
        section = cur[2] if len(cur) >= 3 and cur[0] in ("item", "step", "note") else None
        pb = cur[1] if section else None
        where = f"on {section}" if section else "on the timeline"

        async def add(text: str | None) -> None:
            if text:
                await self.desk.note(inc.id, text, section=section, playbook=pb)
                self.redraw()

        self.app.push_screen(TextPrompt(f"Note {where}:"), add)

    async def action_severity(self) -> None:
        inc = self.incident
        if inc is None:
            return
        nxt = SEVERITIES[(SEVERITIES.index(inc.severity) + 1) % len(SEVERITIES)]
        await self.desk.severity(inc.id, nxt)
        self.notify(f"severity {nxt}", timeout=2)
        self.redraw()

    async def action_acknowledge(self) -> None:
        if self.incident is not None:
            await self.desk.acknowledge(self.incident_id)
            self.redraw()

    async def action_mitigate(self) -> None:
        if self.incident is not None:
            await self.desk.mitigate(self.incident_id)
            self.redraw()

    async def action_resolve(self) -> None:
        if self.incident is not None:
            await self.desk.resolve(self.incident_id)
            self.redraw()

    async def action_snapshot(self) -> None:
        """Attach the current values of the incident's targets' metrics (all targets' when
        the incident names none) to the timeline."""
        inc = self.incident
        engine = self.console.scheduler
        if inc is None or engine is None:
            self.notify("no metrics yet", timeout=3)
            return
        values = snapshot_values(engine, inc.targets)
        await self.desk.snapshot(inc.id, values, label=f"{len(values)} series")
        self.notify(f"snapshot of {len(values)} series attached", timeout=3)
        self.redraw()

    def action_handover(self) -> None:
        inc = self.incident
        if inc is None:
            return

        async def hand(to: str | None) -> None:
            if to:
                await self.desk.handover(inc.id, to)
                self.redraw()

        self.app.push_screen(TextPrompt("Hand over to (user@host or name):"), hand)

    async def action_false_positive(self) -> None:
        inc = self.incident
        if inc is not None:
            await self.desk.mark_false_positive(inc.id, not inc.false_positive)
            self.notify("marked false positive" if inc.false_positive
                        else "no longer a false positive", timeout=3)
            self.redraw()

    async def action_postmortem(self) -> None:
        """Write the post-mortem draft next to the journal and tick the post-mortem step."""
        inc = self.incident
        if inc is None:
            return
        from console.engine.incidents.postmortem import render

        path = self.desk.journal.path.parent / "postmortems" / f"{inc.id}.md"
        text = render(inc, now=_now(self))

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():  # never overwrite what someone already filled in
                path.write_text(text, encoding="utf-8")

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            self.notify(f"cannot write the draft: {exc}", severity="error", markup=False)
            return
        await self.desk.postmortem_done(inc.id)
        self.notify(f"post-mortem draft: {path}", markup=False, timeout=8)
        self.redraw()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_follow_link()

    def action_follow_link(self) -> None:
        """Enter on an item with a link opens the view that answers it (a target's detail)."""
        inc, cur = self.incident, self._cursor()
        if inc is None or len(cur) != 4 or cur[0] != "item":
            return
        step = inc.step(cur[2], cur[1])
        if step is None:
            return
        link = step.section.items[int(cur[3])].link
        engine = self.console.scheduler
        target = resolve_link(link, engine, inc.targets) if link else None
        if target is None:
            if link:
                self.notify(f"nothing to open for {link}", timeout=3)
            return
        self.console.open_target(target)

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()


def snapshot_values(engine: Any, targets: list[str], limit: int = 60) -> dict[str, float]:
    """Latest value of every series of `targets` (or of every target), bounded in count."""
    names = set(targets) if targets else set(engine.names())
    out: dict[str, float] = {}
    store = engine.store
    for series in sorted(store.series()):
        if series.split(":", 1)[0] in names and not series.endswith(":status"):
            latest = store.latest(series)
            if latest is not None:
                out[series] = latest[1]
            if len(out) >= limit:
                break
    return out


def resolve_link(link: str, engine: Any, prefer: list[str]) -> str | None:
    """The target a playbook link points at: ``target:NAME``, ``kind:KIND`` (the incident's
    own target of that kind first) or ``metric:NAME`` (a target reporting it)."""
    if engine is None or ":" not in link:
        return None
    kind, _, value = link.partition(":")
    views = engine.snapshot()
    names = [v.name for v in views]
    if kind == "target":
        return value if value in names else None
    if kind == "kind":
        hits = [v.name for v in views if v.kind == value]
    elif kind == "metric":
        series = set(engine.store.series())
        hits = [n for n in names if f"{n}:{value}" in series]
    else:
        return None
    for name in prefer:
        if name in hits:
            return name
    return hits[0] if hits else None


