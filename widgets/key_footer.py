"""The footer of every screen: Textual's `Footer`, rebuilt only when its keys change.

The stock `Footer` removes and mounts all its key widgets again on every
`bindings_updated_signal` of its screen, and a screen publishes that signal on every focus
change and on every `refresh_bindings()`, whether or not the keys shown changed: the
overview recomposed its footer three times before its first frame, the same keys each time.
`KeyFooter` compares what the keys would be with what it shows and recomposes only on a
difference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.widgets import Footer

if TYPE_CHECKING:
    from textual.screen import Screen

KeysShown = tuple[Any, ...]
"""Everything `Footer.compose` reads to draw the keys: equal values, equal footer."""


class KeyFooter(Footer):
    """A `Footer` that recomposes only when the keys it would show differ from its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready = False  # bindings_changed has been called (Footer then shows keys)
        self._shown: KeysShown | None = None  # what the current children were composed from
        self._pending = False  # a recompose is scheduled; it will read the keys then

    def keys_shown(self) -> KeysShown:
        """What `Footer.compose` would draw now: the shown bindings, their display, state
        and group, and the command palette's key."""
        app = self.app
        rows: list[Any] = []
        for _node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if binding.show:
                group = binding.group
                rows.append((binding.key, app.get_key_display(binding), binding.description,
                             binding.action, enabled, tooltip,
                             None if group is None else (group.description, group.compact)))
        return (tuple(rows), self.show_command_palette, app.ENABLE_COMMAND_PALETTE,
                app.COMMAND_PALETTE_BINDING, self.combine_groups)

    def compose(self) -> ComposeResult:
        self._pending = False
        if self._ready:
            self._shown = self.keys_shown()
        yield from super().compose()

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._ready = True
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            if self._pending:
                return  # the recompose already scheduled will read the keys as they are then
            if self._shown is not None and self.keys_shown() == self._shown:
                return  # the same keys: Footer would remove and mount the same widgets again
            self._pending = True
        super().bindings_changed(screen)
