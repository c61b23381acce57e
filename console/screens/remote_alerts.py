"""Team alerts: the alerts of the team's Alertmanagers and Prometheus servers, beside the console's.

Reached with `m` from the Alerts screen. Rows read without colour (a glyph and a word per
state): Alertmanager's active / silenced / inhibited / acked, Prometheus's firing / pending
with the rule's `for`. The same keys as for the console's own alerts: `a` acknowledges (an
`ACK!` silence in the alert's Alertmanager, extended while it fires), `s` silences for a
duration with a comment, `o` opens an incident (severity and runbook from the alert's labels),
`x` expires the highlighted silence, `r` shows Prometheus's rules. Every action runs in a
worker, so a slow Alertmanager never freezes the screen; its outcome is a notification.
Remote text (labels, annotations, comments) is shown as plain content only.
"""

from __future__ import annotations

import getpass
import time
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.engine.text.fmt import ALERT_GLYPH, format_duration
from console.engine.text.sanitize import one_line
from console.screens.alerts import SilencePrompt, parse_silence
from console.screens.base import ConsoleScreen
from widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from console.engine.alerting.alertmanager import AMSilence
    from console.engine.alerting.remote import RemoteAlert, RemoteAlerts, RemoteRule
    from console.engine.runtime import Runtime

_GLYPH = {"active": ALERT_GLYPH["firing"], "firing": ALERT_GLYPH["firing"],
          "acked": ALERT_GLYPH["acknowledged"], "pending": ALERT_GLYPH["pending"],
          "silenced": "🔕", "inhibited": "⤓", "unprocessed": "…"}


def _where(a: RemoteAlert) -> str:
    return (a.labels.get("instance") or a.labels.get("target") or a.labels.get("service")
            or a.labels.get("job") or a.origin)


def remote_line(a: RemoteAlert, now: float) -> str:
    """One row within 78 cells: glyph and state, severity, alert name, where, which
    Alertmanager (am) or Prometheus (prom) holds it, age."""
    shown = a.display_state()
    age = format_duration(max(0.0, now - a.since)) if a.since is not None else ""
    src = f"{'am' if a.kind == 'alertmanager' else 'prom'} {a.origin}"
    return (f"{_GLYPH.get(shown, '?')} {shown:<9} {a.severity or '--':<2} "
            f"{one_line(a.name, 24):<24} {one_line(_where(a), 16):<16} "
            f"{one_line(src, 11):<11} {age:>6}")


def silence_row(cluster: str, s: AMSilence, now: float) -> str:
    what = " ".join(m.describe() for m in s.matchers if m.name != "alertname") or "*"
    name = next((m.value for m in s.matchers if m.name == "alertname"), "")
    left = format_duration(max(0.0, (s.ends_at or now) - now), spaced=True)
    mark = "ACK" if s.ack else "🔕"
    return one_line(f"{mark} {one_line(name or what, 24):<24} {one_line(s.created_by, 10):<10} "
                    f"{left:>8} left · {one_line(s.comment, 30)} ({cluster})", 76)


def rule_line(r: RemoteRule) -> str:
    glyph = {"firing": ALERT_GLYPH["firing"], "pending": ALERT_GLYPH["pending"]}.get(
        r.state, " ")
    health = "" if r.health in ("ok", "") else f" ⚠ {r.health}"
    return one_line(f"{glyph} {r.state:<8} {one_line(r.name, 28):<28} for "
                    f"{format_duration(r.for_s) if r.for_s else '0s':>6} "
                    f"{r.alerts:>3} alerts{health}", 76)


def explain(a: RemoteAlert, now: float) -> list[str]:
    """The detail lines of a remote alert: summary, where it comes from, labels, state."""
    lines = [f"{a.severity or '--'} {one_line(a.summary, 70)}",
             f"from {a.source}" + (f" · on replicas {', '.join(str(i + 1) for i in a.replicas)}"
                                   if a.replicas else "")]
    labels = " ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
    lines.append("labels: " + one_line(labels, 150))
    state = [a.display_state()]
    if a.since is not None:
        state.append(f"since {format_duration(max(0.0, now - a.since))}")
    if a.for_s:
        state.append(f"rule `for` {format_duration(a.for_s)}")
    if a.acked_by:
        state.append(f"acknowledged by {one_line(a.acked_by, 30)}")
    elif a.silenced_by:
        state.append(f"silenced ({one_line(', '.join(s[:8] for s in a.silenced_by), 40)})")
    if a.inhibited_by:
        state.append("inhibited")
    if a.value:
        state.append(f"value {one_line(a.value, 20)}")
    lines.append(" · ".join(state))
    if a.runbook:
        lines.append(f"runbook: {one_line(a.runbook, 60)}")
    return lines


class RemoteAlertsScreen(ConsoleScreen[None]):
    """The team's alerts, worst first; a ack, s silence, x expire, o incident, r rules."""

    DEFAULT_CSS = """
    RemoteAlertsScreen #remote-title { height: auto; padding: 0 1; text-style: bold; }
    RemoteAlertsScreen #remote-list { height: 1fr; }
    RemoteAlertsScreen #remote-why { height: auto; max-height: 8; padding: 0 1;
                                     border-top: solid $primary; }
    """

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="remote_back"),
        Binding("a", "ack", "Acknowledge", id="remote_ack"),
        Binding("s", "silence", "Silence", id="remote_silence"),
        Binding("x", "expire", "Expire silence", id="remote_expire"),
        Binding("o", "open_incident", "Open incident", id="remote_incident"),
        Binding("r", "toggle_rules", "Rules", id="remote_rules"),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, remote: RemoteAlerts, *, user: str | None = None) -> None:
        super().__init__()
        self.remote = remote
        self.user = user or _user()
        self.rules_view = False
        self._version = -1
        self._rows: dict[str, Any] = {}  # option id -> RemoteAlert | (cluster, silence)

    def compose(self) -> ComposeResult:
        yield Static(Content("Team alerts"), id="remote-title")
        yield OptionList(id="remote-list")
        yield Static(Content(""), id="remote-why")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw, name="remote-tick")
        self.redraw()

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        if self.remote.version != self._version:
            self.redraw()

    def _now(self) -> float:
        return float(self.remote.clock())

    def _highlighted(self) -> str | None:
        ol = self.query_one(OptionList)
        if ol.highlighted is None or ol.option_count == 0:
            return None
        return ol.get_option_at_index(ol.highlighted).id

    def highlight(self, option_id: str) -> None:
        """Move the cursor to a row by its id (an alert's id, `silence:<cluster>:<id>`)."""
        ol = self.query_one(OptionList)
        ol.highlighted = ol.get_option_index(option_id)

    def selected(self) -> RemoteAlert | None:
        oid = self._highlighted()
        row = self._rows.get(oid) if oid else None
        return None if row is None or isinstance(row, tuple) else row

    def selected_silence(self) -> tuple[str, AMSilence] | None:
        oid = self._highlighted()
        row = self._rows.get(oid) if oid else None
        return row if isinstance(row, tuple) else None

    def redraw(self) -> None:
        self._version = self.remote.version
        now = self._now()
        alerts = self.remote.alerts()
        title = "Team alerts"
        summary = self.remote.summary()
        if summary:
            title += " · " + one_line(summary, 120)
        title += ("\nr alerts · Esc back" if self.rules_view else
                  "\na ack · s silence · x expire silence · o incident · r rules · Esc back")
        for source, errors in sorted(self.remote.errors.items()):
            for e in errors[:3]:
                title += f"\n⚠ {one_line(source, 30)}: {one_line(e, 110)}"
        self.query_one("#remote-title", Static).update(Content(title))
        ol = self.query_one(OptionList)
        keep = self._highlighted()
        was_at = ol.highlighted or 0
        ol.clear_options()
        self._rows = {}
        options: list[Option] = []
        if self.rules_view:
            for i, r in enumerate(self.remote.rules()):
                options.append(Option(Content(rule_line(r)), id=f"rule:{i}"))
                self._rows[f"rule:{i}"] = None
            if not options:
                options.append(Option(Content("no alerting rules read from any Prometheus"),
                                      disabled=True))
        else:
            for a in alerts:
                options.append(Option(Content(remote_line(a, now)), id=a.id))
                self._rows[a.id] = a
            if not alerts:
                options.append(Option(Content("no alerts in the team's Alertmanagers or "
                                              "Prometheus servers"), disabled=True))
            silences = self.remote.silences()
            if silences:
                options.append(Option(Content(f"silences ({len(silences)}) · x expires the "
                                              "highlighted one"), disabled=True))
                for cluster, s in silences:
                    oid = f"silence:{cluster}:{s.id}"
                    options.append(Option(Content(silence_row(cluster, s, now)), id=oid))
                    self._rows[oid] = (cluster, s)
        ol.add_options(options)
        rows = [i for i, o in enumerate(options) if o.id is not None and not o.disabled]
        if rows:
            # the same row; if it went (a silence expired, an alert resolved), the row now
            # in its place, not the top of the list
            ol.highlighted = next(
                (i for i in rows if options[i].id == keep),
                next((i for i in rows if i >= was_at), rows[-1]))
        self._explain(now)

    def _explain(self, now: float) -> None:
        why = self.query_one("#remote-why", Static)
        a = self.selected()
        if a is not None:
            why.update(Content("\n".join(explain(a, now))))
            return
        sil = self.selected_silence()
        if sil is not None:
            cluster, s = sil
            why.update(Content("\n".join([
                f"silence {s.id} in Alertmanager {one_line(cluster, 30)} ({s.state})",
                "matches " + one_line(" ".join(m.describe() for m in s.matchers), 150),
                f"by {one_line(s.created_by, 40)}: {one_line(s.comment, 100)}"])))
            return
        why.update(Content(""))

    def on_option_list_option_highlighted(self, _: OptionList.OptionHighlighted) -> None:
        self._explain(self._now())

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_toggle_rules(self) -> None:
        self.rules_view = not self.rules_view
        self.query_one(OptionList).highlighted = None
        self.redraw()

    # -- actions (each in a worker: Alertmanager may be slow) ------------------------------

    def _run(self, what: str, job: Any) -> None:
        from console.engine.alerting.remote import RemoteError

        async def run() -> None:
            try:
                text = await job
            except RemoteError as exc:
                self.notify(f"{what}: {exc}", severity="warning", markup=False)
                return
            self.notify(text, markup=False)
            self.redraw()

        self.run_worker(run(), group="remote-action", exit_on_error=False)

    def action_ack(self) -> None:
        a = self.selected()
        if a is not None:
            self._run("acknowledge", self.remote.ack(a.id, self.user))

    def action_silence(self) -> None:
        a = self.selected()
        if a is None:
            return

        def done(text: str | None) -> None:
            if not text:
                return
            try:
                seconds, reason = parse_silence(text)
            except ValueError as exc:
                self.notify(str(exc), severity="error", markup=False)
                return
            self._run("silence", self.remote.silence(a.id, seconds, reason, self.user))

        self.app.push_screen(SilencePrompt(
            f"Silence {one_line(a.name, 40)} in Alertmanager: duration and comment, "
            "e.g. 2h deploy in progress"), done)

    def action_expire(self) -> None:
        sil = self.selected_silence()
        if sil is None:
            self.notify("highlight a silence (below the alerts) to expire it",
                        severity="warning")
            return
        cluster, s = sil
        self._run("expire", self.remote.expire(cluster, s.id))

    async def action_open_incident(self) -> None:
        """One key from a firing remote alert to an incident, as from a console alert."""
        a = self.selected()
        if a is None:
            return
        if not a.firing:
            self.notify(f"{a.name} is {a.state}: only a firing alert opens an incident",
                        markup=False)
            return
        from console.screens.incidents import IncidentScreen, get_desk

        desk = await get_desk(self.console)
        if desk is None:
            self.notify("the incident journal is not available", severity="error")
            return
        fields = a.incident_fields()
        fields["started"] = min(fields["started"] or time.time(), time.time())
        incident = await desk.open(**fields)
        self.app.push_screen(IncidentScreen(incident.id))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "operator"
