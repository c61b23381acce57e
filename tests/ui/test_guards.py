"""Guarded actions: what is hard to take back asks first, resolved incidents can be found and
reopened, and `--read-only` looks without acting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, OptionList, Static

from console.app import OpsConsoleApp
from console.engine.config.loader import load_config
from console.screens.alerts import AlertsScreen
from console.screens.incidents import IncidentListScreen, IncidentScreen
from console.screens.prompt import Choose, Confirm
from tests.ui.apptools import http_config, screen_text, wait_for

pytestmark = pytest.mark.usefixtures("ui_env")


class Clock:
    def __init__(self) -> None:
        self.t = 1_750_000_000.0

    def __call__(self) -> float:
        return self.t


def _app(tmp_path: Path, clock: Any = None, **kw: Any) -> OpsConsoleApp:
    cfg = http_config(tmp_path / "config.toml", {"api": "http://127.0.0.1:9/health"})
    return OpsConsoleApp(settings=load_config(cfg), history=False, poll=False,
                         clock=clock or Clock(), **kw)


async def _desk(pilot: Any) -> Any:
    app = pilot.app
    await wait_for(pilot, lambda: app.desk is not None, 10, "the incident desk")
    return app.desk


async def _type(pilot: Any, text: str) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.focused, Input), 5, "a focused prompt")
    app.screen.query_one(Input).value = text
    await pilot.press("enter")


async def test_resolved_incidents_are_listed_and_reopened(tmp_path: Path) -> None:
    clock = Clock()
    app = _app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        desk = await _desk(pilot)
        inc = await desk.open("checkout errors", "P2")
        clock.t += 600
        await desk.resolve(inc.id)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentListScreen)
                       and app.screen.desk is not None, 5, "the list")
        app.screen.redraw()  # type: ignore[attr-defined]
        await pilot.pause()
        assert "no open incident" in screen_text(app)
        await pilot.press("r")  # the resolved ones, to look back or reopen
        await wait_for(pilot, lambda: "checkout errors" in screen_text(app), 5, "resolved")
        assert "1 resolved" in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                       and app.screen.incident is not None, 5, "the incident")
        # acknowledging a resolved incident asks first (it would land after "resolved")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 5, "a question")
        assert "is resolved" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "back")
        assert inc.acknowledged_at is None
        # O reopens it, saying why; the journal keeps both
        clock.t += 60
        await pilot.press("O")
        await _type(pilot, "errors are back after the deploy")
        await wait_for(pilot, lambda: inc.is_open, 5, "reopened")
        assert inc.reopened[0]["reason"] == "errors are back after the deploy"
        assert inc.reopened[0]["resolved_at"] == clock.t - 60
        assert inc.step_status(inc.step("resolve"), clock()) == "pending"
        types = [e["type"] for e in inc.timeline]
        assert types[-2:] == ["incident.resolve", "incident.reopen"]
        # resolving again: a P2 does not ask
        await pilot.press("R")
        await wait_for(pilot, lambda: not inc.is_open, 5, "resolved again")
        assert inc.resolved_at == clock.t


async def test_resolving_a_p1_asks_and_no_keeps_it_open(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        desk = await _desk(pilot)
        inc = await desk.open("API down", "P1")
        app.push_screen(IncidentScreen(inc.id))
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                       and app.screen.incident is not None, 5, "the incident")
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 5, "a question")
        assert 'Resolve P1 incident' in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "back")
        assert inc.is_open
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 5, "asked again")
        await pilot.press("y")
        await wait_for(pilot, lambda: not inc.is_open, 5, "resolved")


async def test_quit_with_a_p0_open_asks_and_yes_quits(tmp_path: Path) -> None:
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await _desk(pilot)
        await pilot.press("q")  # nothing open: q quits at once...
        await wait_for(pilot, lambda: app._exit, 5, "the app exits")
    # ...(run_test ended by that q); a second app with a P0 open asks first
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        desk = await _desk(pilot)
        await desk.open("payments down", "P0")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 5, "a question")
        assert "1 P0 incident open" in app.screen.question  # type: ignore[attr-defined]
        assert not app._exit
        await pilot.press("y")
        await wait_for(pilot, lambda: app._exit, 5, "the app exits")


async def test_quit_asks_while_a_p1_incident_waits_for_acknowledgement(
        tmp_path: Path) -> None:
    """A walk quit with q beside an unacknowledged P1 incident (and its P1s firing): no
    question, and alerting stopped with the console. Acknowledged, q quits at once."""
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        desk = await _desk(pilot)
        await desk.open("slow search", "P2")  # a P2 waits as it may: no question for it
        inc = await desk.open("checkout errors", "P1")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, Confirm), 5, "a question")
        question = app.screen.question  # type: ignore[attr-defined]
        assert question == f"P1 incident {inc.id} is open, unacknowledged. Quit anyway?"
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, Confirm), 5, "answered")
        assert not app._exit
        await desk.acknowledge(inc.id)
        await pilot.press("q")
        await wait_for(pilot, lambda: app._exit, 5, "the app exits")


async def test_read_only_console_looks_but_never_acts(tmp_path: Path) -> None:
    clock = Clock()
    app = _app(tmp_path, clock, read_only=True)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        desk = await _desk(pilot)
        assert app.runtime is not None
        assert app.runtime.read_only is True  # database actions (issue 11) read this too
        inc = await desk.open("seen from the viewer's console", "P1")
        entries = len(desk.journal.entries)
        # the incident list offers no new incident
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentListScreen)
                       and app.screen.desk is not None, 5, "the list")
        app.screen.redraw()  # type: ignore[attr-defined]
        await pilot.pause()
        assert "READ-ONLY" in screen_text(app)
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, IncidentListScreen)  # no title prompt
        # an incident: every action key says read-only and changes nothing
        app.push_screen(IncidentScreen(inc.id))
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                       and app.screen.incident is not None, 5, "the incident")
        ol = app.screen.query_one(OptionList)
        ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
        ol.highlighted = ids.index("item|incident-response|acknowledge|0")
        for key in ("space", "n", "s", "a", "m", "R", "v", "h", "F", "P", "b", "u", "O"):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, IncidentScreen), key  # no prompt, no question
        assert len(desk.journal.entries) == entries
        assert inc.is_open
        assert inc.acknowledged_at is None
        assert any("read-only console" in n.message for n in app._notifications)
        assert "READ-ONLY" in screen_text(app)
        # alerts: acknowledge, silence and open-incident are refused too
        app.scheduler.store.record("api:up", clock(), 0.0)
        await pilot.press("escape", "escape")
        for _ in range(3):
            clock.t += 5
            await app.scheduler.check_once()
        await wait_for(pilot, lambda: any(a.state.value == "firing"
                                          for a in app.alerting.alerts.current()), 5,
                       "api-down fires (nothing listens on port 9)")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), 5, "alerts")
        await pilot.press("a", "s", "o")
        await pilot.pause()
        assert isinstance(app.screen, AlertsScreen)
        assert all(a.state.value != "acknowledged" for a in app.alerting.alerts.current())
        assert not app.alerting.alerts.silences()
        # and no faults (in the demo): the key is refused before it looks for one
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, AlertsScreen)


async def test_j_and_k_move_in_a_choice_as_in_every_list(tmp_path: Path) -> None:
    """A walk pressed j in "Part of one?", saw no move, and Enter attached the alert to the
    incident it had not chosen."""
    app = _app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        got: list[str | None] = []
        choices = [("INC-1", "INC-1 P0 API down"), ("new", "a new incident")]
        app.push_screen(Choose("Part of one?", choices, current="INC-1"), got.append)
        await wait_for(pilot, lambda: isinstance(app.screen, Choose)
                       and bool(app.screen.query(OptionList)), 5, "the choice")
        ol = app.screen.query_one(OptionList)
        await pilot.press("j")
        assert ol.highlighted == 1
        await pilot.press("k", "j")
        assert ol.highlighted == 1
        # its Keys, by name: a walk read "1 pick(0) / 2 pick(1) … j move(1)" there
        from console.screens.help import HelpScreen

        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen)
                       and bool(app.screen.query("#help-keys")), 5, "its keys")
        keys = str(app.screen.query_one("#help-keys", Static).render())
        assert "pick(" not in keys, keys
        assert "move(" not in keys, keys
        rows = {line.split("  ")[-1].strip(): line.split("  ")[0].strip()
                for line in keys.splitlines()}
        assert rows.get("Down") == "j", keys
        assert rows.get("Pick by number", "").startswith("1 2 3"), keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, Choose), 5, "the choice again")
        assert app.screen.query_one(OptionList).highlighted == 1
        await pilot.press("enter")
        await wait_for(pilot, lambda: got != [], 5, "a choice made")
        assert got == ["new"]
