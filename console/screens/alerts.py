"""Alerts: what fires, what is pending, what is silenced, and why; acknowledge and silence.

The screen reads an `AlertService` (``console.engine.alerting``) handed to it, so the app
decides where the service lives; it redraws once a second and whenever the service produced
notifications. Every row keeps a glyph and a word for its state, so it reads without colour.
"""

from __future__ import annotations

import getpass
import time
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from console.engine.alerts import Alert, AlertState
from console.engine.durations import format_duration, parse_duration
from console.engine.sanitize import one_line
from console.screens.prompt import LinePrompt

GLYPH = {
    AlertState.FIRING: "✖ FIRING ",
    AlertState.ACKNOWLEDGED: "✔ acked  ",
    AlertState.PENDING: "◌ pending",
    AlertState.NODATA: "? nodata ",
}


def alert_line(a: Alert, now: float) -> str:
    """One row within 78 cells: state, severity, rule, target, age, silenced/held marks."""
    mark = ""
    if a.silenced_by:
        mark = " 🔕"
    elif a.inhibited_by:
        mark = " ⤓"
    elif a.flapping:
        mark = " ≈"
    age = format_duration(max(0.0, now - a.since)) if a.since is not None else ""
    return (f"{GLYPH.get(a.state, '  ' + a.state.value)} {a.rule.severity} "
            f"{one_line(a.rule.name, 24):<24} {one_line(a.target, 20):<20} {age:>7}{mark}")


def parse_silence(text: str) -> tuple[float, str]:
    """`"2h deploy in progress"` → (7200.0, "deploy in progress"); raises ValueError."""
    head, _, reason = text.strip().partition(" ")
    seconds = parse_duration(head)
    if seconds <= 0:
        raise ValueError("the duration must be more than 0")
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


class AlertsScreen(Screen[None]):
    """Current alerts, worst first, with the highlighted one explained below the list."""

    DEFAULT_CSS = """
    AlertsScreen #alerts-title { height: auto; padding: 0 1; text-style: bold; }
    AlertsScreen #alerts-list { height: 1fr; }
    AlertsScreen #alerts-why { height: auto; max-height: 8; padding: 0 1;
                               border-top: solid $primary; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="alerts_back"),
        Binding("a", "ack", "Acknowledge", id="alerts_ack"),
        Binding("s", "silence", "Silence", id="alerts_silence"),
        Binding("o", "open_incident", "Open incident", id="alerts_incident"),
        Binding("j", "cursor_down", show=False),
        Binding("k", "cursor_up", show=False),
    ]

    def __init__(self, service: Any, *, user: str | None = None) -> None:
        super().__init__()
        self.service = service
        self.user = user or _user()
        self._version = -1

    def compose(self) -> ComposeResult:
        yield Static(Content("Alerts"), id="alerts-title")
        yield OptionList(id="alerts-list")
        yield Static(Content(""), id="alerts-why")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw, name="alerts-tick")
        self.redraw()

    def _now(self) -> float:
        clock = getattr(self.app, "clock", None) or getattr(self.service, "clock", None)
        return float(clock()) if callable(clock) else time.time()

    def current(self) -> list[Alert]:
        return list(self.service.alerts.current())

    def selected(self) -> Alert | None:
        ol = self.query_one(OptionList)
        if ol.highlighted is None or ol.option_count == 0:
            return None
        opt = ol.get_option_at_index(ol.highlighted)
        for a in self.current():
            if a.id == opt.id:
                return a
        return None

    def redraw(self) -> None:
        now = self._now()
        alerts = self.current()
        firing = sum(a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED) for a in alerts)
        pending = sum(a.state == AlertState.PENDING for a in alerts)
        silences = self.service.alerts.silences(now)
        title = (f"Alerts · {firing} firing · {pending} pending · {len(silences)} silences"
                 " · a acknowledge · s silence · o incident")
        mttd = self.service.alerts.mttd()
        if mttd is not None:
            title += f" · MTTD {format_duration(mttd)}"
        notifier = getattr(self.service, "notifier", None)
        if notifier is not None:
            bad = [h for h in notifier.health() if h.failing or h.dropped]
            for h in bad:
                title += (f"\n⚠ channel {h.name}: {one_line(h.last_error or 'dropped', 60)}"
                          f" · {h.pending} waiting · {h.dropped} dropped")
        self.query_one("#alerts-title", Static).update(Content(title))
        ol = self.query_one(OptionList)
        keep = ol.highlighted
        keep_id = None
        if keep is not None and ol.option_count:
            keep_id = ol.get_option_at_index(keep).id
        ol.clear_options()
        if alerts:
            ol.add_options([Option(Content(alert_line(a, now)), id=a.id) for a in alerts])
            ids = [a.id for a in alerts]
            ol.highlighted = ids.index(keep_id) if keep_id in ids else 0
        else:
            ol.add_option(Option(Content("no alerts: every rule is quiet"), disabled=True))
        self._explain(now)

    def _explain(self, now: float) -> None:
        a = self.selected()
        why = self.query_one("#alerts-why", Static)
        if a is None:
            why.update(Content(""))
            return
        lines = [f"{a.rule.severity} {one_line(a.rule.summary or a.rule.name, 70)}",
                 f"rule: {one_line(a.rule.expr, 70)}",
                 f"why: {one_line(a.why(now), 160)}"]
        if a.rule.runbook:
            lines.append(f"runbook: {one_line(a.rule.runbook, 60)}")
        if a.detect_s is not None:
            lines.append(f"detected in {format_duration(a.detect_s)}")
        why.update(Content("\n".join(lines)))

    def on_option_list_option_highlighted(self, _: OptionList.OptionHighlighted) -> None:
        self._explain(self._now())

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    async def action_open_incident(self) -> None:
        """One key from a firing alert to an incident: its severity, summary, runbook and
        target; the incident's timers start when the alert fired."""
        a = self.selected()
        if a is None:
            return
        if a.fired_at is None:
            self.notify(f"{a.id} is {a.state.value}: only a firing alert opens an incident",
                        markup=False)
            return
        from console.screens.incidents import IncidentScreen, get_desk

        desk = await get_desk(self.app)
        if desk is None:
            self.notify("the incident journal is not available", severity="error")
            return
        incident = await desk.open_from_alert(a)
        self.app.push_screen(IncidentScreen(incident.id))

    def action_ack(self) -> None:
        a = self.selected()
        if a is None:
            return
        ok = self.service.alerts.ack(a.rule.name, a.target, self.user, now=self._now())
        if ok:
            self.notify(f"acknowledged {a.id}", markup=False)
        else:
            self.notify(f"{a.id} is {a.state.value}: only a firing alert can be acknowledged",
                        severity="warning", markup=False)
        self.redraw()

    def action_silence(self) -> None:
        a = self.selected()
        if a is None:
            return

        def done(text: str | None) -> None:
            if not text:
                return
            try:
                seconds, reason = parse_silence(text)
                s = self.service.alerts.silence(
                    [f'rule="{a.rule.name}"', f'target="{a.target}"'], duration=seconds,
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
