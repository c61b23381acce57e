"""What the screens share: the typed App they run in, and through it the runtime."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast

from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen

if TYPE_CHECKING:
    from console.app import OpsConsoleApp

ResultT = TypeVar("ResultT")


def console_app(node: DOMNode) -> OpsConsoleApp:
    """The running `OpsConsoleApp`, typed (screens and widgets only ever run inside it)."""
    return cast("OpsConsoleApp", node.app)


class ConsoleScreen(Screen[ResultT]):
    """A full screen of the console."""

    @property
    def console(self) -> OpsConsoleApp:
        return console_app(self)


class ConsoleModal(ModalScreen[ResultT]):
    """A dialog over another screen of the console."""

    @property
    def console(self) -> OpsConsoleApp:
        return console_app(self)
