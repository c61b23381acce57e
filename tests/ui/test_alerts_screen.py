"""The Alerts screen through Pilot at 80x24: rows, why, acknowledge, silence, back."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import App
from textual.widgets import Input, OptionList, Static

from console.engine.alerting.lifecycle import AlertEngine, Alerts, AlertState
from console.engine.alerting.rules import RuleSet, TargetInfo
from console.engine.alerting.service import AlertService
from console.engine.config.loader import load_config_text
from console.engine.config.rules import Rule
from console.engine.paths import DataPaths
from console.engine.scheduler import Scheduler
from console.engine.storage.store import MetricStore
from console.screens.alerts import AlertsScreen, alert_line, episode_line, parse_silence
from tests.alerttools import T0, Clock, dead_api_config


@dataclass
class Service:
    """What the screen reads of an AlertService."""

    core: AlertEngine
    clock: Clock
    notifier: Any = None

    @property
    def alerts(self) -> Alerts:
        return self.core.alerts


def service(rules: list[Rule] | None = None) -> Service:
    """`api` down and slow for 30 s: api-down (P0) fires, slow (P1, `for` 5m) is pending
    (or `rules` on the same samples)."""
    clock = Clock()
    store = MetricStore()
    rules = rules or [
        Rule(name="api-down", expr="down", severity="P0", summary="API down",
             runbook="high-error-rate"),
        Rule(name="slow", expr="p95_ms > 2000", severity="P1", **{"for": "5m"}),
    ]
    core = AlertEngine(RuleSet(rules, [TargetInfo("api", "http", 10.0, "app")]), store,
                       clock=clock)
    for i in range(3):
        clock.t = T0 + i * 10
        store.record("api:up", clock.t, 0.0)
        store.record("api:p95_ms", clock.t, 2500.0)
        core.run()
    return Service(core, clock)


class Host(App[None]):
    def __init__(self, svc: Service) -> None:
        super().__init__()
        self.svc = svc
        self.clock = svc.clock

    def on_mount(self) -> None:
        self.push_screen(AlertsScreen(self.svc, user="ana"))


def rows(app: App[Any]) -> list[str]:
    ol = app.screen.query_one(OptionList)
    return [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]


async def test_the_keys_screen_says_what_a_rows_marks_mean() -> None:
    """A walk met ⚑ and ⤓ in the list and found them nowhere on `?`."""
    from console.screens.help import HelpScreen

    app = Host(service())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.push_screen(HelpScreen(app.screen))
        await pilot.pause()
        keys = str(app.screen.query_one("#help-keys", Static).render())
        assert keys.index("Acknowledge") < keys.index("a row's marks:")  # after the keys
        legend = keys[keys.index("a row's marks:"):]
        for mark, meaning in (("🔕", "silenced"), ("⤓", "held back by a worse alert"),
                              ("≈", "flapping"), ("⚑", "part of an open incident")):
            assert re.search(rf"^{mark} +{meaning}", legend, re.M), legend


async def test_g_and_shift_g_go_to_the_first_and_last_alert() -> None:
    """As on the board and in every table (and as the keys screen says): the list of alerts,
    like every list screen's (`ListScreen`), takes g/G. g did nothing here, so an operator
    who pressed g to reach the P0 on top opened an incident from the alert under the cursor."""
    app = Host(service())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        ol = app.screen.query_one(OptionList)
        last = ol.option_count - 1
        assert last >= 1
        for key, row in (("G", last), ("g", 0), ("j", 1), ("G", last), ("k", last - 1),
                         ("g", 0)):
            await pilot.press(key)
            assert ol.highlighted == row, f"after {key!r}"


async def test_rows_why_ack_silence_and_back() -> None:
    svc = service()
    app = Host(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, AlertsScreen)
        got = rows(app)
        assert got[0].startswith("✖ FIRING  P0 api-down")
        assert got[1].startswith("◌ pending P1 slow")
        assert all(len(r) <= 78 for r in got)
        why = str(app.screen.query_one("#alerts-why", Static).render())
        # what is wrong, why (the cause), then the rule and its state
        assert "P0 API down · api\ncause: up = 0 (== 0)\n" in why
        assert "rule: down · up = 0 (== 0)" in why
        assert "runbook high-error-rate (o: incident)" in why
        assert "detected in 20s" in why
        await pilot.press("j")  # the pending one explains how long until `for` is met
        why = str(app.screen.query_one("#alerts-why", Static).render())
        assert "3/3 failing samples; fires in 4m40s if it keeps failing" in why
        await pilot.press("k", "a")
        a = svc.alerts.get("api-down", "api")
        assert a is not None
        assert a.state == AlertState.ACKNOWLEDGED
        assert a.acked_by == "ana"
        assert rows(app)[0].startswith("✔ acked   P0 api-down")
        await until(pilot, lambda: "Alerts · 1 firing (1 acked) · 1 pending" in title(app))
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one(Input).value = "2h deploy in progress"
        await pilot.press("enter")
        await pilot.pause()
        (s,) = svc.alerts.silences(T0 + 30)
        assert (s.by, s.reason, s.ends_at - s.starts_at) == ("ana", "deploy in progress",
                                                            7200.0)
        assert [m.value for m in s.matchers] == ["api-down", "api"]
        app.screen.redraw()
        svc.alerts.tick(T0 + 31)  # silenced_by is decided as the lifecycle steps
        app.screen.redraw()
        assert rows(app)[0].endswith("🔕")
        silenced = rows(app)[-2:]  # listed under the alerts, with who, time left and why
        assert silenced[0] == "silences (1)"
        assert silenced[1].startswith('🔕 rule=api-down target=api')
        assert silenced[1].endswith(" ana         2h 00m left · deploy in progress")
        assert all(len(r) <= 78 for r in rows(app))
        assert "1 silences" in str(app.screen.query_one("#alerts-title", Static).render())
        await pilot.press("escape")
        assert not isinstance(app.screen, AlertsScreen)


async def test_empty_and_bad_silence_input() -> None:
    svc = service()
    app = Host(svc)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.pause()
        await pilot.press("s")
        await pilot.pause()
        app.screen.query_one(Input).value = "soon"
        await pilot.press("enter")
        await pilot.pause()
        assert svc.alerts.silences(T0 + 30) == []
        assert any("not a duration" in n.message for n in app._notifications)
    empty = Service(AlertEngine(RuleSet([], []), MetricStore(), clock=Clock()), Clock())
    app2 = Host(empty)
    async with app2.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert rows(app2) == ["no alerts: every rule is quiet"]
        await pilot.press("a", "s")  # nothing selected: nothing happens
        assert isinstance(app2.screen, AlertsScreen)


def test_parse_silence_and_line() -> None:
    assert parse_silence("90m maintenance of db") == (5400.0, "maintenance of db")
    for bad in ("2h", "x reason", "0s reason", "99999999999h forever"):
        try:
            parse_silence(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    assert parse_silence("90d a long migration") == (90 * 86400.0, "a long migration")
    try:  # "4166666666d 14h left" was accepted
        parse_silence("91d forever")
    except ValueError as exc:
        assert "at most 90d" in str(exc)  # noqa: PT017 - the message is the point
    else:
        raise AssertionError("91d accepted")
    svc = service()
    a = svc.alerts.get("api-down", "api")
    assert a is not None
    assert alert_line(a, T0 + 80) == f"✖ FIRING  P0 {'api-down':<24} {'api':<20}   1m00s"
    # acknowledged 40 s later: the age still counts from when it fired, not from the ack
    assert svc.alerts.ack("api-down", "api", "ana", now=T0 + 60)
    assert alert_line(a, T0 + 80) == f"✔ acked   P0 {'api-down':<24} {'api':<20}   1m00s"


def title(app: App[Any]) -> str:
    return str(app.screen.query_one("#alerts-title", Static).render())


def why(app: App[Any]) -> str:
    return str(app.screen.query_one("#alerts-why", Static).render())


async def test_recent_shows_ongoing_and_resolved_episodes_with_durations() -> None:
    svc = service()  # api-down fired at T0+20 (3rd failing sample); slow is only pending
    app = Host(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        svc.clock.t = T0 + 270
        await pilot.press("r")
        assert "Recent" in title(app)
        got = rows(app)
        assert len(got) == 1
        assert got[0].startswith("● ongoing 4m 10s   P0 api-down")
        assert "ongoing for 4m 10s" in why(app)
        assert "detected in 20s" in why(app)
        # it resolves (two good samples) and shows as a finished episode with its duration
        for t in (T0 + 300, T0 + 310):
            svc.clock.t = t
            svc.core.store.record("api:up", t, 1.0)
            svc.core.run()
        app.screen.redraw()
        got = rows(app)
        assert got[0].startswith("✔ 4m 50s           P0 api-down")
        assert all(len(r) <= 78 for r in got)
        detail = why(app)
        assert "resolved" in detail
        assert "after 4m 50s" in detail
        assert "episode 1" in detail
        await pilot.press("a")  # a finished episode has nothing to acknowledge
        a = svc.alerts.get("api-down", "api")
        assert a is not None
        assert a.state == AlertState.RESOLVED
        await pilot.press("r")
        assert "Recent" not in title(app)
        assert "P1 slow" in rows(app)[0]  # back to the current alerts


async def test_follower_is_labelled_forwards_actions_then_takes_over(tmp_path: Path) -> None:
    """Two real AlertServices on one data dir (the lease is per open file, so one process
    suffices): the second follows, its screen says who evaluates, its acknowledge and silence
    reach the owner, and once the owner stops it takes over the same state."""
    settings = load_config_text(dead_api_config())
    state = tmp_path / "alerts.json"
    owner = AlertService(Scheduler(settings), paths=DataPaths(state.parent), tick=0.1,
                         role="headless")
    await owner.start()
    follower = AlertService(Scheduler(settings), paths=DataPaths(state.parent), tick=0.1)
    await follower.start()
    try:
        assert follower.following
        now = time.time()
        owner.engine.store.record("api:up", now, 0.0)
        owner.run(now)  # fires and saves
        app = FollowerHost(follower)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await until(pilot, lambda: rows(app)[0].startswith("✖ FIRING  P0 api-down"))
            assert f"alerts evaluated by pid {os.getpid()} on " in title(app)
            assert "(headless) · a/s sent there" in title(app)
            # acknowledge: sent to the owner through the history file, applied on its tick,
            # saved, and seen here on the follower's next reload
            await pilot.press("a")
            await until(pilot, lambda: rows(app)[0].startswith("✔ acked   P0 api-down"))
            assert any("sent to the evaluator" in n.message for n in app._notifications)
            a = owner.alerts.get("api-down", "api")
            assert a is not None
            assert (a.state, a.acked_by) == (AlertState.ACKNOWLEDGED, "ana")
            await pilot.press("s")
            await pilot.pause()
            app.screen.query_one(Input).value = "30m db failover"
            await pilot.press("enter")
            await until(pilot, lambda: len(follower.alerts.silences()) == 1)
            (sil,) = owner.alerts.silences()
            assert (sil.by, sil.reason, sil.ends_at - sil.starts_at) == ("ana", "db failover",
                                                                        1800.0)
            assert len(owner._applied) == 2  # each request applied once
            await owner.stop()  # releases the lease: the follower takes over on its tick
            await until(pilot, lambda: follower.evaluating)
            await until(pilot, lambda: "⚑" not in title(app))
            a = follower.alerts.get("api-down", "api")
            assert a is not None
            assert a.state == AlertState.ACKNOWLEDGED
            assert a.incident == 1  # the same episode, carried over, not a new one
            assert len(follower.alerts.silences()) == 1  # requests are not applied twice
            follower.alerts.tick()
            assert follower.alerts.get("api-down", "api").acked_by == "ana"  # type: ignore[union-attr]
    finally:
        await owner.stop()
        await follower.stop()


class FollowerHost(App[None]):
    def __init__(self, svc: AlertService) -> None:
        super().__init__()
        self.svc = svc

    def on_mount(self) -> None:
        self.push_screen(AlertsScreen(self.svc, user="ana"))


async def until(pilot: Any, cond: Any, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def test_episode_line_fits_and_marks_flapping() -> None:
    ep = {"key": "k/t/1", "ongoing": False, "duration_s": 3 * 86400 + 7200,
          "severity": "P1", "rule": "r" * 40, "target": "t" * 40, "fired_at": T0,
          "flapping": True}
    line = episode_line(ep, T0 + 4 * 86400)
    assert len(line) <= 78
    assert line.startswith("✔ 3d 02h")
    assert line.endswith(" ≈")
    ep["rule"] = "[red]x[/]"
    assert "[red]x[/]" in episode_line(ep, T0)  # plain text, never markup


async def test_title_counts_what_waits_for_the_next_digest(tmp_path: Path) -> None:
    """A receiver batching P3 says how many notifications its next digest will carry."""
    from console.engine.alerting.notify import Notifier
    from console.engine.config.rules import Receiver
    from tests.engine.test_notify import note

    notifier = Notifier(tmp_path / "o.sqlite", [Receiver.model_validate(
        {"name": "slack-digest", "kind": "webhook", "url": "http://127.0.0.1:9/x",
         "digest": "1h"})])  # never started: nothing is sent, the rows wait
    assert notifier.enqueue([note(1, severity="P3"), note(2, severity="P3")]) == 2
    svc = service()
    svc.notifier = notifier
    app = Host(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        title = str(app.screen.query_one("#alerts-title", Static).render())
        assert "✉ in the next digest: slack-digest 2" in title


async def test_ack_with_comment_esc_does_not_acknowledge() -> None:
    """A asks what is being done: Esc leaves the alert firing, Enter on an empty line
    acknowledges without a comment; the hint is an example of a comment, not a silence."""
    svc = service()
    app = Host(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("A")
        await pilot.pause()
        field = app.screen.query_one(Input)
        assert "rolling back" in field.placeholder
        await pilot.press("escape")
        await pilot.pause()
        a = svc.alerts.get("api-down", "api")
        assert a is not None
        assert a.state == AlertState.FIRING
        await pilot.press("A")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert a.state == AlertState.ACKNOWLEDGED
        assert (a.acked_by, a.ack_comment) == ("ana", "")


async def test_without_colour_the_highlighted_alert_is_underlined_not_only_bold(
        monkeypatch: Any) -> None:
    """NO_COLOR: the list's highlight was bold only, like every FIRING row and inline code,
    so a walk at 3 a.m. could not tell which alert `a` or `o` would act on."""
    from themes import CSS_PATHS

    monkeypatch.setenv("NO_COLOR", "1")

    class Styled(Host):
        CSS_PATH = CSS_PATHS

    app = Styled(service())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.no_color
        ol = app.screen.query_one(OptionList)
        ol.focus()
        await pilot.pause()
        highlighted = ol.highlighted
        assert highlighted is not None
        want = str(ol.get_option_at_index(highlighted).prompt).split()[3]  # the rule's name
        other = str(ol.get_option_at_index(1 - highlighted).prompt).split()[3]
        styles: dict[str, bool] = {}
        for strip in app.screen._compositor.render_strips():  # noqa: SLF001
            for name in (want, other):
                if name in strip.text:
                    styles[name] = any(seg.style is not None and bool(seg.style.underline)
                                       for seg in strip if name in seg.text)
        assert styles == {want: True, other: False}


async def test_firing_rows_are_coloured_by_severity_and_pending_ones_muted() -> None:
    """P0 and P2 FIRING rows looked alike (a walk): the state and severity of a row now
    carry its urgency, in the theme's status colours (bold, which NO_COLOR keeps)."""
    from rich.color import Color

    from themes import THEME_VARIABLE_DEFAULTS

    class Themed(Host):
        def get_theme_variable_defaults(self) -> dict[str, str]:
            return dict(THEME_VARIABLE_DEFAULTS)

    app = Themed(service())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        heads = {}
        for strip in app.screen._compositor.render_strips():  # noqa: SLF001
            for seg in strip:
                for head in ("✖ FIRING  P0", "◌ pending P1"):
                    if seg.text.startswith(head):
                        heads[head] = seg.style
        crit = Color.parse(THEME_VARIABLE_DEFAULTS["status-crit"])
        firing, pending = heads["✖ FIRING  P0"], heads["◌ pending P1"]
        assert firing.bold
        assert firing.color.triplet == crit.triplet
        assert not pending.bold
        assert pending.color.triplet != crit.triplet


async def test_a_restart_announces_only_alerts_that_fire_while_it_runs(
        tmp_path: Path, ui_env: None) -> None:
    """A walk restarted the console: a toast "P1 FIRING · api-health (+2 more)" announced
    alerts that had fired before it quit (one resolved seconds later). The banner shows
    those; a toast and the bell are for an alert that starts to fire while it runs. (Here
    the alert fires at a time before the runtime started, as a restored one did.)"""
    from console.app import OpsConsoleApp

    def toasts(app: Any) -> list[str]:
        return [n.title for n in app._notifications if "FIRING" in n.title]

    app = OpsConsoleApp(settings=load_config_text(dead_api_config(success_threshold=1)),
                        history=False, poll=False)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await until(pilot, lambda: app.alerting is not None and app._runtime_from)
        store = app.alerting.engine.store
        # before the runtime started, and fresh: `api` is checked every 10 s, so a sample
        # 30 s old would read as no data on the service's own tick
        before = app._runtime_from - 5
        store.record("api:up", before, 0.0)
        app.alerting.run(before)
        a = app.alerting.alerts.get("api-down", "api")
        assert a is not None
        assert (a.state, a.fired_at) == (AlertState.FIRING, before)
        for _ in range(2):  # two repaint ticks: on the banner, nothing to announce
            app.refresh_screen()
            await pilot.pause()
        assert app.alert_banner() is not None
        assert toasts(app) == []
        # it recovers, then fails again while this console runs: that one is news
        t = time.time()
        store.record("api:up", t, 1.0)
        app.alerting.run(t)
        app.refresh_screen()  # a repaint tick sees it resolved
        await pilot.pause()
        store.record("api:up", t + 1, 0.0)
        app.alerting.run(t + 1)
        assert (a.state, a.fired_at) == (AlertState.FIRING, t + 1)
        app.refresh_screen()
        await until(pilot, lambda: toasts(app) == ["P0 FIRING · api"])


async def test_rows_keep_their_order_while_the_operator_moves() -> None:
    """A walk pressed j j towards an alert while a pending one started to fire and moved up
    the list: o opened an incident from the alert above it, with that one's runbook. The
    rows keep their order for a few seconds after the cursor moves; left alone, the list
    is worst first again at once."""
    from console.screens.alerts import HOLD_ORDER_S

    def build() -> Service:
        return service([Rule(name="a-slow", expr="p95_ms > 2000", severity="P1",
                             **{"for": "1m"}),
                        Rule(name="b-down", expr="down", severity="P1")])

    def fire_a(svc: Service) -> None:  # a-slow's `for` is met: it fires, and sorts first
        for i in range(3, 9):
            svc.clock.t = T0 + i * 10
            svc.core.store.record("api:up", svc.clock.t, 0.0)
            svc.core.store.record("api:p95_ms", svc.clock.t, 2500.0)
            svc.core.run()
        assert svc.alerts.get("a-slow", "api").state == AlertState.FIRING  # type: ignore[union-attr]

    svc = build()
    app = Host(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, AlertsScreen)
        assert [r.split()[3] for r in rows(app)] == ["b-down", "a-slow"]
        await pilot.press("j")  # the operator moves to a-slow...
        fire_a(svc)  # ...which fires and would sort first
        screen.redraw()
        await pilot.pause()
        assert [r.split()[3] for r in rows(app)] == ["b-down", "a-slow"]  # held
        ol = screen.query_one(OptionList)
        assert ol.get_option_at_index(ol.highlighted or 0).id == "a-slow/api"
        screen._moved_at -= HOLD_ORDER_S  # a few seconds without a key
        screen.redraw()
        await pilot.pause()
        assert [r.split()[3] for r in rows(app)] == ["a-slow", "b-down"]
        assert ol.get_option_at_index(ol.highlighted or 0).id == "a-slow/api"  # kept
    # nobody moved: worst first at once, redraw after redraw
    svc = build()
    app = Host(svc)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, AlertsScreen)
        for _ in range(2):
            screen.redraw()
            await pilot.pause()
        fire_a(svc)
        screen.redraw()
        await pilot.pause()
        assert [r.split()[3] for r in rows(app)] == ["a-slow", "b-down"]
