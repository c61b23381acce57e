"""What the screens share: the typed App they run in, and through it the runtime.

Every full screen carries the alert banner (`#alert-banner`, docked on top): a P0/P1 that
starts firing shows on whatever screen is open until it is acknowledged. Screens that place
it themselves (the overview, under its title) yield it in `compose`; the others get it here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import events
from textual.binding import Binding, BindingType
from textual.containers import ScrollableContainer
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import OptionList, Static

if TYPE_CHECKING:
    from console.app import OpsConsoleApp

ResultT = TypeVar("ResultT")
BANNER_ID = "alert-banner"


def console_app(node: DOMNode) -> OpsConsoleApp:
    """The running `OpsConsoleApp`, typed (screens and widgets only ever run inside it)."""
    return cast("OpsConsoleApp", node.app)


class ConsoleScreen(Screen[ResultT]):
    """A full screen of the console."""

    # A screen that shows the firing alerts' causes itself: the "FIRING" toast is withdrawn
    # while it is open (the toast said the same, over the half of the screen saying it).
    SHOWS_ALERT_CAUSES: ClassVar[bool] = False
    refreshed_at = 0.0  # monotonic time of its last refresh by the app (`refresh_if_stale`)

    @property
    def console(self) -> OpsConsoleApp:
        return console_app(self)

    def help_rows(self, rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The Keys screen's rows for this screen (keys, what they do), as it may say them
        better than its bindings do; as they are by default."""
        return rows

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

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Back on a screen (Esc from another): its data as of now, not as of when it was
        # left; the walk saw a board of cleared faults "firing" until the next repaint.
        if not self.is_mounted:
            return  # its first mount refreshes it
        refresh = getattr(self.app, "refresh_if_stale", None)  # a test may host us alone
        if refresh is not None:
            self.call_after_refresh(refresh)


class ListScreen(ConsoleScreen[ResultT]):
    """A screen whose rows are its `OptionList`: j/k, and g/G for the first and last row, as
    the tables (`FillTable`) and the keys screen have them. Home and End are the list's own."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "cursor_first", "First", show=False),
        Binding("G", "cursor_last", "Last", show=False),
    ]

    def action_cursor_down(self) -> None:
        self.query_one(OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(OptionList).action_cursor_up()

    def action_cursor_first(self) -> None:
        self.query_one(OptionList).action_first()

    def action_cursor_last(self) -> None:
        self.query_one(OptionList).action_last()


class ConsoleModal(ModalScreen[ResultT]):
    """A dialog over another screen of the console."""

    # A modal screen does not pass keys on to the app: `?` did nothing on the faults menu.
    # (In a dialog's text field `?` is typed, as any other character.)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "app.help", "Keys", key_display="?", show=False)]

    @property
    def console(self) -> OpsConsoleApp:
        return console_app(self)


# The keys that scroll a text to read (the keys screen, the KPIs, the post-mortem), as the
# lists move: j/k, g/G, and space/b for a page. A screen using them has `action_scroll`
# (`scroll_text` on its scrolling container does the rest).
SCROLL_KEYS: list[BindingType] = [
    Binding("j", "scroll('down')", "Down", show=False),
    Binding("k", "scroll('up')", "Up", show=False),
    Binding("space", "scroll('page_down')", "Page down", show=False),
    Binding("b", "scroll('page_up')", "Page up", show=False),
    Binding("g", "scroll('home')", "First", show=False),
    Binding("G", "scroll('end')", "Last", show=False),
]


def scroll_text(body: ScrollableContainer, how: str) -> None:
    """Scroll `body` as SCROLL_KEYS ask: down, up, page_down, page_up, home or end."""
    {"down": body.scroll_down, "up": body.scroll_up, "page_down": body.scroll_page_down,
     "page_up": body.scroll_page_up, "home": body.scroll_home,
     "end": body.scroll_end}[how](animate=False)
