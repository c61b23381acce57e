"""A health check's components: what its body (terminus, Spring, IETF) says of each dependency.

The runbook link ``health`` and `c` on an HTTP target's detail view open it: one row per
component with its status as the service wrote it, whether it counts as core (a P1 when
down) and its message, from the latest check's ``details["health"]``. Plain content only:
the text comes from the service and is sanitised by the probe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from console.engine.details import HealthJson
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleScreen
from widgets.key_footer import KeyFooter

if TYPE_CHECKING:
    from console.engine.runtime import Runtime


def component_rows(health: HealthJson) -> list[str]:
    """One line per component: glyph, name, status, core or not, message (failing first)."""
    comps = [c for c in health.get("components") or [] if isinstance(c, dict)]
    comps.sort(key=lambda c: (not c.get("failing"), str(c.get("name"))))
    rows = []
    for c in comps:
        glyph = "✖" if c.get("failing") else "●"
        core = "" if c.get("core") is None else (" core" if c.get("core") else " other")
        msg = f" — {c['message']}" if c.get("message") else ""
        rows.append(one_line(f"{glyph} {c.get('name')} {str(c.get('status', '')).lower()}"
                             f"{core}{msg}", 300))
    return rows


class HealthScreen(ConsoleScreen[None]):
    """Esc goes back; the rows follow each check."""

    DEFAULT_CSS = """
    HealthScreen #health-head { height: auto; padding: 0 1; }
    HealthScreen #health-list { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="health_back")]

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self._seen: object = None

    def compose(self) -> ComposeResult:
        yield Static(Content(f"{self.target} · health components"), id="health-head")
        yield OptionList(id="health-list")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.console.refresh_screen()

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        last = runtime.scheduler.last_result(self.target)
        if last is self._seen:
            return
        self._seen = last
        health = last.details_of("http").get("health") if last is not None else None
        ol = self.query_one(OptionList)
        ol.clear_options()
        if not isinstance(health, dict):
            why = "no check yet" if last is None else (
                "the last answer was not a health body (terminus, Spring Boot or IETF "
                "health+json)" if last.error is None else one_line(last.error, 200))
            self.query_one("#health-head", Static).update(
                Content(f"{self.target} · health components · {why}"))
            # an empty list under a timeout read as "no components": say why there are none
            ol.add_options([Option(Content(
                "waiting for the first check" if last is None else
                "no components to show: the last check got no health body (see above); "
                "they come back with the next answer that has one"), disabled=True)])
            return
        rows = component_rows(health)
        failing = sum(1 for r in rows if r.startswith("✖"))
        self.query_one("#health-head", Static).update(Content(
            f"{self.target} · health {str(health.get('format'))} · status "
            f"{one_line(str(health.get('status')), 20)} · {len(rows)} components, "
            f"{failing} failing"))
        ol.add_options([Option(Content(r)) for r in rows]
                       or [Option(Content("no components in the body"), disabled=True)])
