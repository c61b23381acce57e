"""KeyFooter: the keys of the screen it is on, rebuilt only when those keys change.

A small app of two screens, each with a KeyFooter, driven by Pilot. What is asserted is
which keys the footer shows (its FooterKey children) and whether those children are the
same widgets after a bindings refresh that changed nothing (no recompose).
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from tests.ui.apptools import wait_for
from widgets import KeyFooter


class Spot(Static, can_focus=True):
    """Something to move the focus to (a focus change publishes the screen's bindings)."""


class CountingFooter(KeyFooter):
    """A KeyFooter that counts its composes (each one replaces every key widget)."""

    composes = 0

    def compose(self) -> ComposeResult:
        self.composes += 1
        yield from super().compose()


class Board(Screen[None]):
    BINDINGS = [Binding("a", "alpha", "Alpha"), Binding("b", "beta", "Beta")]
    beta_shown = True

    def compose(self) -> ComposeResult:
        yield Spot("one", id="one")
        yield Spot("two", id="two")
        yield CountingFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.beta_shown if action == "beta" else True

    def action_alpha(self) -> None:
        pass

    def action_beta(self) -> None:
        pass


class Other(Screen[None]):
    BINDINGS = [Binding("c", "gamma", "Gamma"), Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Static("other")
        yield CountingFooter()

    def action_gamma(self) -> None:
        pass


class FooterApp(App[None]):
    ENABLE_COMMAND_PALETTE = False

    def on_mount(self) -> None:
        self.push_screen(Board())


def keys(screen: Screen[Any]) -> list[tuple[str, str]]:
    """The (key, description) pairs the screen's footer shows; none before it is mounted."""
    return [(k.key, k.description) for footer in screen.query(KeyFooter)
            for k in footer.query(FooterKey)]


async def settled(pilot: Any, footer: KeyFooter) -> None:
    """Until every callback queued after a refresh so far has run (a recompose the
    footer scheduled runs, and is awaited, before this marker)."""
    done = asyncio.Event()
    footer.call_after_refresh(done.set)
    await wait_for(pilot, done.is_set, 10.0, "the screen's queued callbacks ran")


async def test_footer_keys_follow_the_screen_and_its_bindings() -> None:
    app = FooterApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, Board)
                       and keys(app.screen) == [("a", "Alpha"), ("b", "Beta")], 10.0,
                       "the board's footer shows a and b")
        board = app.screen

        app.push_screen(Other())
        await wait_for(pilot, lambda: isinstance(app.screen, Other)
                       and keys(app.screen) == [("c", "Gamma"), ("escape", "Back")], 10.0,
                       "the other screen's footer shows its own keys")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is board
                       and keys(board) == [("a", "Alpha"), ("b", "Beta")], 10.0,
                       "back on the board, its footer shows a and b again")

        assert isinstance(board, Board)
        board.beta_shown = False
        board.refresh_bindings()
        await wait_for(pilot, lambda: keys(board) == [("a", "Alpha")], 10.0,
                       "the footer drops b once check_action hides it")
        board.beta_shown = True
        board.refresh_bindings()
        await wait_for(pilot, lambda: keys(board) == [("a", "Alpha"), ("b", "Beta")], 10.0,
                       "the footer shows b again")


async def test_footer_does_not_recompose_when_the_keys_are_the_same() -> None:
    app = FooterApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, Board)
                       and keys(app.screen) == [("a", "Alpha"), ("b", "Beta")], 10.0,
                       "the board's footer shows a and b")
        board = app.screen
        footer = board.query_one(CountingFooter)
        await settled(pilot, footer)
        widgets = list(footer.query(FooterKey))
        composes = footer.composes

        for _ in range(3):  # what focus changes and refresh_bindings() publish
            board.refresh_bindings()
        board.query_one("#two", Spot).focus()
        await pilot.pause()
        board.query_one("#one", Spot).focus()
        await settled(pilot, footer)

        assert footer.composes == composes
        assert list(footer.query(FooterKey)) == widgets
        assert keys(board) == [("a", "Alpha"), ("b", "Beta")]

        board.beta_shown = False  # a real change still recomposes, once
        for _ in range(3):
            board.refresh_bindings()
        await settled(pilot, footer)
        assert footer.composes == composes + 1
        assert keys(board) == [("a", "Alpha")]


class Crowded(Screen[None]):
    """More keys than 80 columns hold (the incident screen's case)."""

    BINDINGS = [Binding(k, f"noop('{k}')", d) for k, d in (
        ("escape", "Back"), ("a", "Acknowledge"), ("s", "Silence"), ("o", "Open incident"),
        ("r", "Recent"), ("m", "Mitigated"), ("R", "Resolved"), ("P", "Post-mortem"),
        ("t", "Timeline"), ("n", "Note"))] + [
        Binding("question_mark", "help", "Keys", key_display="?")]

    def compose(self) -> ComposeResult:
        yield Static("crowded")
        yield KeyFooter()

    def action_noop(self, key: str) -> None:
        pass


class CrowdedApp(App[None]):
    def on_mount(self) -> None:
        self.push_screen(Crowded())


def shown(footer: KeyFooter) -> list[FooterKey]:
    return [k for k in footer.query(FooterKey) if k.display]


async def test_keys_that_do_not_fit_are_left_out_whole_and_help_stays() -> None:
    app = CrowdedApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, Crowded)
                       and len(app.screen.query(FooterKey)) > 0, 10.0, "the footer has keys")
        footer = app.screen.query_one(KeyFooter)
        await settled(pilot, footer)
        await pilot.pause()
        visible = shown(footer)
        names = [k.description for k in visible]
        assert names[-1] == "Keys"  # the key that lists every other one
        assert names[:3] == ["Back", "Acknowledge", "Silence"]  # in order, from the left
        assert "Note" not in names  # something had to go
        assert not [k for k in visible if k.has_class("-command-palette")]
        right = footer.region.right
        assert all(k.region.right <= right for k in visible), [
            (k.description, k.region) for k in visible]  # nothing clipped mid-word
        await pilot.resize_terminal(160, 24)
        await wait_for(pilot, lambda: not footer.is_attached or "Note" in [
            k.description for k in shown(app.screen.query_one(KeyFooter))], 10.0,
            "at 160 columns every key fits")
        wide = app.screen.query_one(KeyFooter)
        assert any(k.has_class("-command-palette") for k in wide.query(FooterKey))
