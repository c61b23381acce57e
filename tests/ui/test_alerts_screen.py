"""The Alerts screen through Pilot at 80x24: rows, why, acknowledge, silence, back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import App
from textual.widgets import Input, OptionList, Static

from console.engine.alerts import AlertEngine, Alerts, AlertState
from console.engine.rules import Rule, RuleSet, TargetInfo
from console.engine.store import MetricStore
from console.screens.alerts import AlertsScreen, alert_line, parse_silence

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@dataclass
class Service:
    """What the screen reads of an AlertService."""

    core: AlertEngine
    clock: Clock
    notifier: Any = None

    @property
    def alerts(self) -> Alerts:
        return self.core.alerts


def service() -> Service:
    clock = Clock()
    store = MetricStore()
    rules = [
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
        assert "why: up = 0 (== 0)" in why
        assert "runbook: high-error-rate" in why
        assert "detected in 20s" in why
        await pilot.press("j")  # the pending one explains how long until `for` is met
        why = str(app.screen.query_one("#alerts-why", Static).render())
        assert "3/3 failing samples; `for` met in 4m40s" in why
        await pilot.press("k", "a")
        a = svc.alerts.get("api-down", "api")
        assert a is not None
        assert a.state == AlertState.ACKNOWLEDGED
        assert a.acked_by == "ana"
        assert rows(app)[0].startswith("✔ acked   P0 api-down")
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
    for bad in ("2h", "x reason", "0s reason"):
        try:
            parse_silence(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
    svc = service()
    a = svc.alerts.get("api-down", "api")
    assert a is not None
    assert alert_line(a, T0 + 80) == f"✖ FIRING  P0 {'api-down':<24} {'api':<20}   1m00s"
