"""What the screens share: the typed App they run in, and through it the runtime.

Every full screen carries the alert banner (`#alert-banner`, docked on top): a P0/P1 that
starts firing shows on whatever screen is open until it is acknowledged. Screens that place
it themselves (the overview, under its title) yield it in `compose`; the others get it here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

from textual import events
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

if TYPE_CHECKING:
    from console.app import OpsConsoleApp

ResultT = TypeVar("ResultT")
BANNER_ID = "alert-banner"


def console_app(node: DOMNode) -> OpsConsoleApp:
    """The running `OpsConsoleApp`, typed (screens and widgets only ever run inside it)."""
    return cast("OpsConsoleApp", node.app)


class ConsoleScreen(Screen[ResultT]):
    """A full screen of the console."""

    @property
    def console(self) -> OpsConsoleApp:
        return console_app(self)

    def refuse_if_read_only(self, what: str) -> bool:
        """True, after saying so, when the console is `--read-only` (every action key asks
        this before acting)."""
        refuse = getattr(self.app, "refuse_if_read_only", None)  # a test may host us alone
        return bool(refuse(what)) if refuse is not None else False

    def _on_mount(self, event: events.Mount) -> None:
        # Runs besides a subclass's own on_mount (Textual calls each class's handler).
        if not self.query(f"#{BANNER_ID}"):
            self.mount(Static("", id=BANNER_ID), before=0 if self.children else None)
        refresh = getattr(self.app, "refresh_banner", None)  # a test may host a screen alone
        if refresh is not None:
            self.call_after_refresh(refresh)


class ConsoleModal(ModalScreen[ResultT]):
    """A dialog over another screen of the console."""

    @property
    def console(self) -> OpsConsoleApp:
        return console_app(self)
