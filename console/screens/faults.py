"""Demo fault injection: toggle error spike, latency spike, dependency down, endpoint hang."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.screens.base import ConsoleModal


class FaultScreen(ConsoleModal[None]):
    """Enter (or the fault's number) toggles a fault; c clears all; Esc closes."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="faults_close"),
        Binding("c", "clear", "Clear all", id="faults_clear"),
        # Enter reaches the list first (its "select"); bound here too, so the Keys screen
        # says what it does (it listed no Enter, the walk found)
        Binding("enter", "toggle_highlighted", "Toggle the highlighted fault", show=False),
        Binding("1", "toggle_fault(0)", "Toggle by number", show=False),
        Binding("2", "toggle_fault(1)", "Toggle by number", show=False),
        Binding("3", "toggle_fault(2)", "Toggle by number", show=False),
        Binding("4", "toggle_fault(3)", "Toggle by number", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="faults-body"):
            yield Static(Content("Inject faults into the demo (Enter/1-4 toggle, c clear)"))
            yield OptionList(*self._options(), id="faults-list")

    def _options(self) -> list[Option]:
        from console.demo.stack import FAULTS, describe_fault

        active = self._active()
        return [
            Option(
                Content(f"{i}. [{'x' if f in active else ' '}] {f.replace('_', ' ')} — "
                        f"{describe_fault(f)}"),
                id=f,
            )
            for i, f in enumerate(FAULTS, 1)
        ]

    def _active(self) -> frozenset[str]:
        demo: Any = self.console.demo
        return demo.active if demo is not None else frozenset()

    def _redraw(self) -> None:
        ol = self.query_one(OptionList)
        highlighted = ol.highlighted
        ol.clear_options()
        ol.add_options(self._options())
        ol.highlighted = highlighted

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.console.toggle_fault(event.option.id)
            self._redraw()

    # Not `action_toggle`: that is Textual's own (DOMNode.action_toggle(attribute_name)),
    # which this overrode with another signature.
    def action_toggle_fault(self, index: int) -> None:
        from console.demo.stack import FAULTS

        if 0 <= index < len(FAULTS):
            self.console.toggle_fault(FAULTS[index])
            self._redraw()

    def action_toggle_highlighted(self) -> None:
        ol = self.query_one(OptionList)
        if ol.highlighted is not None:
            self.action_toggle_fault(ol.highlighted)

    def action_clear(self) -> None:
        self.console.clear_faults()
        self._redraw()

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()
