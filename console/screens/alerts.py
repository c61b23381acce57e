"""Alerts: what fires, what is pending, what is silenced, and why; acknowledge and silence.

The screen reads an `AlertService` (``console.engine.alerting.service``) handed to it, so the app
decides where the service lives; it redraws once a second and whenever the service produced
notifications. Every row keeps a glyph and a word for its state, so it reads without colour.
`r` switches to Recent: open episodes ("ongoing 4m 10s") and the alert history's resolved
ones with their durations; the why-panel then tells the episode (fired, acknowledged, resolved,
peak, flapping). When another process owns alert evaluation (``alerts.lease``) the title says
which, and acknowledge/silence are sent to that process to apply (never applied to a copy
the owner would overwrite).
"""

from __future__ import annotations

import asyncio
import getpass
import time
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.engine.alerting.explain import episode_peak
from console.engine.alerting.history import describe_duration, ongoing
from console.engine.alerting.lifecycle import Alert, AlertState, Silence
from console.engine.lang.durations import parse_duration
from console.engine.model import AlertEpisode
from console.engine.text.fmt import ALERT_GLYPH, EPISODE_GLYPH, format_duration
from console.engine.text.sanitize import one_line
from console.screens.base import ListScreen
from console.screens.prompt import LinePrompt
from widgets.key_footer import KeyFooter

NEW_INCIDENT = "+new"  # the choice that opens a new incident (no incident id looks so)
HOLD_ORDER_S = 3.0  # seconds the rows keep their order after the cursor moves

GLYPH = {  # glyph and word, padded to one width
    state: f"{ALERT_GLYPH[state.value]} {word:<7}" for state, word in (
        (AlertState.FIRING, "FIRING"), (AlertState.ACKNOWLEDGED, "acked"),
        (AlertState.PENDING, "pending"), (AlertState.NODATA, "nodata"))
}


def unsaved_lines(unsaved: list[dict[str, str]], limit: int = 3) -> str:
    """Notifications only memory holds (the disk refused the outbox), with why: pending
    until sent, and until saved."""
    if not unsaved:
        return ""
    out = (f"\n⚠ {len(unsaved)} notification(s) kept in memory, not saved: "
           f"{one_line(unsaved[0]['reason'], 90)}")
    for u in unsaved[:limit]:
        state = "sent, not saved" if u["status"] == "sent" else "pending"
        out += f"\n  ✉ {one_line(u['receiver'], 16)}: {one_line(u['what'], 48)} · {state}"
    if len(unsaved) > limit:
        out += f"\n  … and {len(unsaved) - limit} more"
    return out


def alert_line(a: Alert, now: float, incident: str | None = None) -> str:
    """One row within 78 cells: state, severity, rule, target, age, silenced/held marks,
    and ⚑ when it is part of an open incident (`incident`)."""
    mark = ""
    if a.silenced_by:
        mark = " 🔕"
    elif a.inhibited_by:
        mark = " ⤓"
    elif a.flapping:
        mark = " ≈"
    # A firing alert's age counts from when it fired: an acknowledgement changes its
    # state, not how long the problem has lasted (`since` restarts at the ack).
    start = a.fired_at if a.firing and a.fired_at is not None else a.since
    age = format_duration(max(0.0, now - start)) if start is not None else ""
    return (f"{GLYPH.get(a.state, '  ' + a.state.value)} {a.rule.severity} "
            f"{one_line(a.rule.name, 24):<24} {one_line(a.target, 20):<20} {age:>7}{mark}"
            + (" ⚑" if incident else ""))


# The state and severity of a row, coloured by how urgent it is: P0 and P1 FIRING rows
# read like P2 ones (a walk), on any terminal. Theme variables, so 16 colours, NO_COLOR
# (bold stays) and the light themes follow.
_URGENCY = {"P0": "bold $status-crit", "P1": "bold $status-crit", "P2": "$status-warn",
            "P3": "$status-unknown"}


def alert_row(a: Alert, now: float, incident: str | None = None) -> Content:
    """`alert_line` with its state and severity styled: FIRING by severity, pending and
    no-data muted, acknowledged and silenced as they are."""
    line = alert_line(a, now, incident)
    head = len(f"{GLYPH.get(a.state, '  ' + a.state.value)} {a.rule.severity}")
    style = ""
    if a.state == AlertState.FIRING and not a.silenced_by:
        style = _URGENCY.get(a.rule.severity, "")
    elif a.state in (AlertState.PENDING, AlertState.NODATA):
        style = "$text-muted"
    if not style:
        return Content(line)
    return Content.assemble((line[:head], style), line[head:])


def _clock_time(t: float, now: float) -> str:
    """``14:02`` today, ``11-26 14:02`` before (local time, as operators read clocks)."""
    fmt = "%H:%M" if now - t < 20 * 3600 else "%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(t))


def episode_line(ep: AlertEpisode, now: float) -> str:
    """One Recent row within 78 cells: open or resolved, duration, severity, rule, target,
    when it fired, and ≈ if it flapped."""
    glyph = EPISODE_GLYPH[bool(ep.get("ongoing"))]
    flags = " ≈" if ep.get("flapping") else ""
    fired = float(ep.get("fired_at") or 0.0)
    return (f"{glyph} {describe_duration(ep):<16} {one_line(str(ep.get('severity', '')), 2):<2} "
            f"{one_line(str(ep.get('rule', '')), 20):<20} "
            f"{one_line(str(ep.get('target', '')), 16):<16} {_clock_time(fired, now):>11}{flags}")


def episode_detail(ep: AlertEpisode, now: float) -> list[str]:
    """The why-panel of a Recent row: the episode's timeline, peak and marks."""
    fired = float(ep.get("fired_at") or 0.0)
    lines = [f"{one_line(str(ep.get('severity', '')), 3)} "
             f"{one_line(str(ep.get('summary') or ep.get('rule', '')), 70)}"]
    parts = [f"fired {_clock_time(fired, now)}"]
    acked = ep.get("acknowledged_at")
    if isinstance(acked, int | float):
        parts.append(f"acknowledged by {one_line(str(ep.get('acknowledged_by') or '?'), 30)}"
                     f" after {format_duration(acked - fired, spaced=True)}")
    if ep.get("ongoing"):
        span = format_duration(float(ep.get("duration_s") or 0.0), spaced=True)
        parts.append(f"ongoing for {span}")
    else:
        parts.append(f"resolved {_clock_time(float(ep.get('resolved_at') or fired), now)}"
                     f" after {format_duration(float(ep.get('duration_s') or 0.0), spaced=True)}")
    lines.append(" · ".join(parts))
    marks = []
    peak = episode_peak(ep)
    if peak:
        marks.append(f"peak {peak}")
    if ep.get("flapping"):
        marks.append("flapped")
    if ep.get("silenced_by"):
        marks.append(f"silenced ({one_line(str(ep['silenced_by']), 20)})")
    detect = ep.get("detect_s")
    if isinstance(detect, int | float):
        marks.append(f"detected in {format_duration(detect, spaced=True)}")
    if marks:
        lines.append(" · ".join(marks))
    if ep.get("cause"):
        lines.append(f"cause: {one_line(str(ep['cause']), 200)}")
    lines.append(f"target {one_line(str(ep.get('target', '')), 40)} · "
                 f"episode {ep.get('incident', '?')}")
    return lines


def silence_line(s: Silence, now: float) -> str:
    """One row for an active silence: what it matches, who set it, time left, why."""
    what = " ".join(f"{m.name}{m.op}{m.value}" for m in s.matchers)
    text = (f"🔕 {one_line(what, 26):<26} {one_line(s.by, 10):<10} "
            f"{format_duration(max(0.0, s.ends_at - now), spaced=True):>7} left · {s.reason}")
    return one_line(text, 76)


MAX_SILENCE_S = 90 * 86400.0
"""A silence forgotten for longer hides a real outage: past this, change the rule."""


def parse_silence(text: str) -> tuple[float, str]:
    """`"2h deploy in progress"` → (7200.0, "deploy in progress"); raises ValueError."""
    head, _, reason = text.strip().partition(" ")
    seconds = parse_duration(head)
    if seconds <= 0:
        raise ValueError("the duration must be more than 0")
    if seconds > MAX_SILENCE_S:  # "99999999999h" read "4166666666d 14h left"
        raise ValueError("a silence lasts at most 90d; for longer, change or disable the rule")
    if not reason.strip():
        raise ValueError("say why after the duration, e.g. 2h deploy in progress")
    return seconds, reason.strip()


class SilencePrompt(LinePrompt):
    """Duration and reason for a silence on one line; Enter submits, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="silence_cancel"),
    ]
    BODY_ID = "silence-body"
    INPUT_ID = "silence-input"
    PLACEHOLDER = "2h deploy in progress"


class AckPrompt(SilencePrompt):
    """What is being done, for an acknowledgement: Enter acknowledges (with or without a
    comment), Esc does not acknowledge at all."""

    PLACEHOLDER = "e.g. rolling back v1.5.2 (Enter alone: no comment)"
    EMPTY = ""  # Enter on an empty line acknowledges without a comment


def shared(service: Any) -> bool:
    """Whether acknowledgements and silences go through the shared state (postgres
    backend): then they are requests to the evaluator, this console's own included, so
    every console sees who did what, and why."""
    return bool(getattr(service, "shared", False))


def evaluator_elsewhere(service: Any) -> str | None:
    """Who evaluates alerts when it is another process (then we only show its state)."""
    label = getattr(service, "owner_label", None)
    return label() if callable(label) else None


def forward(screen: Screen[Any], service: Any, what: str, action: str, **fields: Any) -> None:
    """A follower does not change alert state itself (the owner would overwrite it): the
    request goes to the owner through the alert history and shows once applied."""
    owner = evaluator_elsewhere(service) or "another console"
    request = getattr(service, "request", None)
    if not callable(request):
        screen.notify(f"read-only: {owner}; {what} there", severity="warning", markup=False)
        return

    async def send() -> None:
        try:
            await asyncio.to_thread(request, action, **fields)
        except (OSError, RuntimeError) as exc:
            screen.notify(f"could not ask the evaluator to {what}: {exc}", severity="error",
                          markup=False)
            return
        screen.notify(f"{what}: sent to the evaluator ({owner}); shows here once applied",
                      markup=False)

    screen.run_worker(send(), group="alerts-forward", exit_on_error=False)


def acknowledge(screen: Screen[Any], service: Any, a: Alert, user: str, *, comment: str = "",
                now: float) -> None:
    """Acknowledge `a` as this console can, and say so: here when it evaluates, else as a
    request to the evaluator (a follower; every console with the shared state). From the
    alerts screen's `a`, and from an incident's `a` for the alerts it was opened from."""
    if (evaluator_elsewhere(service) is not None or shared(service)) \
            and a.state == AlertState.FIRING:
        forward(screen, service, "acknowledge", "ack", rule=a.rule.name, target=a.target,
                incident=a.incident, by=user, comment=comment)
        return
    if service.alerts.ack(a.rule.name, a.target, user, comment=comment, now=now):
        screen.notify(f"acknowledged {a.id}", markup=False)
    else:
        screen.notify(f"{a.id} is {a.state.value}: only a firing alert can be acknowledged",
                      severity="warning", markup=False)


class AlertsScreen(ListScreen[None]):
    """Current alerts, worst first, with the highlighted one explained below the list."""

    SHOWS_ALERT_CAUSES = True

    DEFAULT_CSS = """
    AlertsScreen #alerts-title { height: auto; padding: 0 1; text-style: bold; }
    AlertsScreen #alerts-list { height: 1fr; min-height: 3; }  /* rows at 40x12 too */
    AlertsScreen #alerts-why { height: auto; max-height: 9; padding: 0 1;
                               border-top: solid $primary; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="alerts_back"),
        Binding("a", "ack", "Acknowledge", id="alerts_ack"),
        Binding("A", "ack_comment", "Ack with comment", show=False, id="alerts_ack_comment"),
        Binding("s", "silence", "Silence", id="alerts_silence"),
        Binding("o", "open_incident", "Open incident", id="alerts_incident"),
        Binding("r", "toggle_recent", "Recent", id="alerts_recent"),
        Binding("m", "team_alerts", "Team alerts", id="alerts_team"),
    ]

    def __init__(self, service: Any, *, user: str | None = None) -> None:
        super().__init__()
        self.service = service
        self.user = user or _user()
        self._version = -1
        self.recent_view = False
        self._episodes: dict[str, AlertEpisode] = {}
        # The rows keep their order for HOLD_ORDER_S after the operator moves the cursor:
        # a walk pressed j j towards an alert while a pending one started to fire and moved
        # up, and o opened an incident from the alert above it (with its runbook).
        self._order: list[str] = []
        self._moved_at = -HOLD_ORDER_S
        self._set_highlight: str | None = None  # the row redraw highlighted itself

    def compose(self) -> ComposeResult:
        yield Static(Content("Alerts"), id="alerts-title")
        yield OptionList(id="alerts-list")
        yield Static(Content(""), id="alerts-why")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw, name="alerts-tick")
        self.redraw()

    def _now(self) -> float:
        return float(self.service.core.clock())

    def help_rows(self, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The keys, then what a row's marks mean (a walk asked what ⚑ and ⤓ were)."""
        return [*rows, ("", "a row's marks:"), ("🔕", "silenced"),
                ("⤓", "held back by a worse alert (inhibited)"), ("≈", "flapping"),
                ("⚑", "part of an open incident (o: go there)")]

    def current(self) -> list[Alert]:
        return list(self.service.alerts.current())

    def recent(self, now: float) -> list[AlertEpisode]:
        """Open episodes, then resolved ones newest first (the service's history if it has
        one, else what the lifecycle still holds in memory)."""
        fn = getattr(self.service, "recent", None)
        if callable(fn):
            return list(fn(now))
        alerts = self.service.alerts
        closed = sorted(alerts.closed, key=lambda e: float(e["resolved_at"]), reverse=True)
        return ongoing(alerts.alerts(), now) + closed

    def _highlighted_id(self) -> str | None:
        ol = self.query_one(OptionList)
        if ol.highlighted is None or ol.option_count == 0:
            return None
        return ol.get_option_at_index(ol.highlighted).id

    def selected(self) -> Alert | None:
        """The highlighted alert; in Recent, the alert of a highlighted open episode."""
        oid = self._highlighted_id()
        if oid is None:
            return None
        if self.recent_view:
            ep = self._episodes.get(oid)
            if ep is None or not ep.get("ongoing"):
                return None
            return self.service.alerts.get(ep.get("rule"), ep.get("target"))
        for a in self.current():
            if a.id == oid:
                return a
        return None

    def selected_episode(self) -> AlertEpisode | None:
        oid = self._highlighted_id()
        return self._episodes.get(oid) if oid is not None and self.recent_view else None

    def read_only(self) -> str | None:
        return evaluator_elsewhere(self.service)

    def _incident_of(self, a: Alert) -> str | None:
        """The id of the open incident this firing of `a` is part of (None outside the
        console app, or before its journal is open)."""
        runtime = getattr(self.app, "runtime", None)
        desk = getattr(runtime, "desk", None)
        if desk is None or a.fired_at is None:
            return None
        inc = desk.incident_of(a)
        return None if inc is None else str(inc.id)

    def action_toggle_recent(self) -> None:
        self.recent_view = not self.recent_view
        self.query_one(OptionList).highlighted = None
        self.redraw()

    def redraw(self) -> None:
        now = self._now()
        alerts = self.current()
        firing_n = sum(a.firing for a in alerts)
        acked = sum(a.state == AlertState.ACKNOWLEDGED for a in alerts)
        # "4 firing" where 3 were acknowledged read as four nobody had taken
        firing = f"{firing_n} firing" + (f" ({acked} acked)" if acked else "")
        pending = sum(a.state == AlertState.PENDING for a in alerts)
        silences = self.service.alerts.silences(now)
        if self.recent_view:
            title = (f"Alerts · Recent · {firing} · {pending} pending"
                     " · ● ongoing ✔ resolved ≈ flapped · r current")
        else:
            title = (f"Alerts · {firing} · {pending} pending · {len(silences)} silences"
                     " · a ack · s silence · o incident · r recent")
        mttd = self.service.alerts.mttd()
        if mttd is not None:
            title += f" · MTTD {format_duration(mttd)}"
        owner = self.read_only()
        if owner is not None:
            title += f"\n⚑ {one_line(owner, 64)} · a/s sent there"
        remote = self._remote()
        team = remote.summary() if remote is not None else None
        if team:  # the team's Alertmanager / Prometheus alerts: their own screen (m)
            title += f"\n⇄ {one_line(team, 100)} · m team alerts"
        notifier = getattr(self.service, "notifier", None)
        if notifier is not None:
            health = notifier.health()
            for h in health:
                if h.failing or h.dropped or h.failed:
                    title += (f"\n⚠ channel {h.name}: "
                              f"{one_line(h.last_error or 'dropped', 60)}"
                              f" · {h.pending} waiting · {h.dropped} dropped"
                              + (f" · {h.failed} refused" if h.failed else ""))
            title += unsaved_lines(notifier.unsaved())
            digests = [f"{one_line(h.name, 20)} {h.collected}" for h in health if h.collected]
            if digests:  # batched (P3) notifications waiting for their period's digest
                title += "\n✉ in the next digest: " + " · ".join(digests)
        self.query_one("#alerts-title", Static).update(Content(title))
        ol = self.query_one(OptionList)
        keep_id = self._highlighted_id()
        ol.clear_options()
        if self.recent_view:
            self._draw_recent(ol, now, keep_id)
        else:
            if self._order and time.monotonic() - self._moved_at < HOLD_ORDER_S:
                held = {aid: i for i, aid in enumerate(self._order)}  # new ones after, worst
                alerts.sort(key=lambda a: held.get(a.id, len(held)))  # first (a stable sort)
            self._order = [a.id for a in alerts]
            if alerts:
                ol.add_options([Option(alert_row(a, now, self._incident_of(a)), id=a.id)
                                for a in alerts])
            else:
                ol.add_option(Option(Content("no alerts: every rule is quiet"), disabled=True))
            active = [x for x in silences if x.active(now)]
            if active:  # shown, not selectable: what is held back, by whom, until when
                ol.add_option(Option(Content(f"silences ({len(active)})"), disabled=True))
                ol.add_options([Option(Content(silence_line(x, now)), disabled=True)
                                for x in active])
            if alerts:
                ids = [a.id for a in alerts]
                at = ids.index(keep_id) if keep_id in ids else 0
                self._set_highlight = ids[at]
                ol.highlighted = at
        self._explain(now)

    def _draw_recent(self, ol: OptionList, now: float, keep_id: str | None) -> None:
        episodes = self.recent(now)
        self._episodes = {}
        opts = []
        for ep in episodes:
            oid = f"{'o' if ep.get('ongoing') else 'r'}:{ep.get('key')}"
            if oid in self._episodes:
                continue
            self._episodes[oid] = ep
            opts.append(Option(Content(episode_line(ep, now)), id=oid))
        if opts:
            ol.add_options(opts)
            ids = list(self._episodes)
            ol.highlighted = ids.index(keep_id) if keep_id in ids else 0
        else:
            ol.add_option(Option(Content("no alert has fired in the last 30 days"),
                                 disabled=True))

    def _explain(self, now: float) -> None:
        why = self.query_one("#alerts-why", Static)
        if self.recent_view:
            ep = self.selected_episode()
            why.update(Content("\n".join(episode_detail(ep, now)) if ep else ""))
            return
        a = self.selected()
        if a is None:
            why.update(Content(""))
            return
        # What is wrong, why (as the probe saw it), what to do: the words of every channel.
        lines = [f"{a.rule.severity} {one_line(a.summary, 60)} · {one_line(a.target, 30)}"]
        if a.cause:
            lines.append(f"cause: {one_line(a.cause, 220)}")
        if a.action:
            lines.append(f"do: {one_line(a.action, 220)}")
        lines.append(f"rule: {one_line(a.rule.expr, 50)} · {one_line(a.why(now), 150)}")
        tail = []
        incident = self._incident_of(a)
        if incident is not None:  # the walk could not tell which alerts were in one
            tail.append(f"⚑ in {incident} (o: go there)")
        elif a.rule.runbook:
            tail.append(f"runbook {one_line(a.rule.runbook, 40)} (o: incident)")
        if a.detect_s is not None:
            tail.append(f"detected in {format_duration(a.detect_s)}")
        if tail:
            lines.append(" · ".join(tail))
        if a.acked_by:  # who took it, and what they are doing (every console sees it)
            note = f": {one_line(a.ack_comment, 120)}" if a.ack_comment else ""
            lines.append(f"acknowledged by {one_line(a.acked_by, 40)}{note}")
        why.update(Content("\n".join(lines)))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id != self._set_highlight:  # the operator moved, not a redraw
            self._moved_at = time.monotonic()
            self._set_highlight = event.option.id
        self._explain(self._now())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "team_alerts":  # only with an Alertmanager or Prometheus to read
            return self._remote() is not None
        return True

    def _remote(self) -> Any:
        """The runtime's reader of the team's Alertmanagers and Prometheus servers."""
        runtime = getattr(self.app, "runtime", None)
        return getattr(runtime, "remote", None)

    def action_team_alerts(self) -> None:
        remote = self._remote()
        if remote is None:
            self.notify("no team alerts: add [[alerting.alertmanagers]] or a promql target "
                        "(alerts = true) to the config", severity="warning", markup=False)
            return
        from console.screens.remote_alerts import RemoteAlertsScreen

        self.app.push_screen(RemoteAlertsScreen(remote, user=self.user))

    async def action_open_incident(self) -> None:
        """One key from a firing alert to an incident: its severity, summary, runbook and
        target; the incident's timers start when the alert fired. An alert already in an
        open incident goes to it; with incidents open, `o` asks whether this alert is part
        of one of them (attached: one problem, one incident) or a new problem."""
        a = self.selected()
        if a is None or self.refuse_if_read_only("open an incident"):
            return
        if a.fired_at is None:
            self.notify(f"{a.id} is {a.state.value}: only a firing alert opens an incident",
                        markup=False)
            return
        from console.screens.incidents import IncidentScreen, get_desk
        from console.screens.prompt import Choose

        desk = await get_desk(self.console)
        if desk is None:
            self.notify("the incident journal is not available", severity="error")
            return
        incident = desk.incident_of(a)
        if incident is not None:
            self.app.push_screen(IncidentScreen(incident.id))
            return
        open_now = desk.book.open_incidents()
        if not open_now:
            incident = await desk.open_from_alert(a)
            self.app.push_screen(IncidentScreen(incident.id))
            return
        now = self._now()
        choices = [(inc.id, f"{inc.id} {inc.severity} {format_duration(now - inc.started):>6}"
                            f" · {one_line(inc.title, 30)}") for inc in open_now[:8]]
        choices.append((NEW_INCIDENT, "a new incident: another problem"))

        async def chosen(value: str | None) -> None:
            if value is None:  # Esc: nothing opened, nothing attached
                return
            if value == NEW_INCIDENT:
                opened = await desk.open_from_alert(a)
            else:
                await desk.attach_alert(value, a)
                opened = desk.book.incidents[value]
                # an incident someone acknowledged takes the alert with it: the banner kept
                # paging for an attached alert until its incident's `a` was pressed again
                taken = opened.acknowledged_at is not None and a.state == AlertState.FIRING
                if taken:
                    acknowledge(self, self.service, a, self.user, now=self._now(),
                                comment=f"with incident {value}")
                self.notify(f"{a.id} attached to {value}"
                            + (", acknowledged with it" if taken else ""),
                            markup=False, timeout=3)
            self.app.push_screen(IncidentScreen(opened.id))

        n = len(open_now)
        self.app.push_screen(Choose(
            f"{one_line(a.id, 50)} fires while {n} incident{'s are' if n > 1 else ' is'} "
            "open. Part of one? Enter attaches it to the one picked; Esc: nothing.",
            choices, current=open_now[0].id), chosen)

    def action_ack(self, comment: str = "") -> None:
        a = self.selected()
        if a is None or self.refuse_if_read_only("acknowledge"):
            return
        # its open incident is acknowledged with it, by the runtime (`Runtime._ack_incident_of`)
        acknowledge(self, self.service, a, self.user, comment=comment, now=self._now())
        self.redraw()

    def action_ack_comment(self) -> None:
        """A: acknowledge with a comment (what is being done), shown to every console."""
        a = self.selected()
        if a is None or self.refuse_if_read_only("acknowledge"):
            return
        def done(text: str | None) -> None:
            if text is not None:  # None: Esc, not acknowledged
                self.action_ack(text)

        self.app.push_screen(AckPrompt(f"Acknowledge {a.id}: what are you doing about it?"),
                             done)

    def action_silence(self) -> None:
        a = self.selected()
        if a is None or self.refuse_if_read_only("silence"):
            return

        def done(text: str | None) -> None:
            if not text:
                return
            matchers = [f'rule="{a.rule.name}"', f'target="{a.target}"']
            if self.read_only() is not None or shared(self.service):
                try:
                    seconds, reason = parse_silence(text)
                except ValueError as exc:
                    self.notify(str(exc), severity="error", markup=False)
                    return
                forward(self, self.service, "silence", "silence", matchers=matchers,
                        duration=seconds, by=self.user, reason=reason)
                return
            try:
                seconds, reason = parse_silence(text)
                s = self.service.alerts.silence(
                    matchers, duration=seconds,
                    by=self.user, reason=reason, now=self._now())
            except ValueError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return
            self.notify(f"silenced {a.id} for {format_duration(seconds)} ({s.id})",
                        markup=False)
            self.redraw()

        self.app.push_screen(
            SilencePrompt(f"Silence {a.id}: duration and reason, e.g. 2h deploy in progress"),
            done)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "operator"
