"""The footer of every screen: Textual's `Footer`, rebuilt only when its keys change.

The stock `Footer` removes and mounts all its key widgets again on every
`bindings_updated_signal` of its screen, and a screen publishes that signal on every focus
change and on every `refresh_bindings()`, whether or not the keys shown changed: the
overview recomposed its footer three times before its first frame, the same keys each time.
`KeyFooter` compares what the keys would be with what it shows and recomposes only on a
difference.

It also fits its keys to its width. The stock footer is one row that clips at the screen's
edge, so at 80 columns the Alerts screen ended `q Qu` and the incident screen `R Re`. Below
`WIDE` columns it leaves the command palette's key (`^p`, 12 columns) to the Keys screen,
which lists it; whatever still does not fit is left out whole, from the right, and `? Keys`
(the help key, which lists every key) always stays. The roomy style stays: two spaces
between keys read apart on a monochrome terminal, where the key's colour does not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

if TYPE_CHECKING:
    from textual.screen import Screen

KeysShown = tuple[Any, ...]
"""Everything `Footer.compose` reads to draw the keys: equal values, equal footer."""

WIDE = 100
"""From this many columns the footer shows the command palette's key."""

HELP_ACTION = "help"
"""The key that lists every key (`?`): never left out."""


class KeyFooter(Footer):
    """A `Footer` that recomposes only when the keys it would show differ from its own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:  # the keys for the terminal's width from the first frame (no recompose)
            narrow = self.app.size.width < WIDE
        except RuntimeError:  # made outside a running app (textual NoActiveAppError)
            narrow = False
        self.set_reactive(Footer.show_command_palette, not narrow)
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
        self.call_after_refresh(self.fit)

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < WIDE
        if narrow == self.show_command_palette:
            self.show_command_palette = not narrow
            if self._ready:
                self.refresh(recompose=True)
                return
        self.fit()

    def fit(self) -> None:
        """Show the keys, in order, while they fit; the help key always."""
        width = self.size.width
        keys = list(self.query_children(FooterKey))
        if not width or not keys:
            return
        room = width
        for k in keys:
            if k.has_class("-command-palette"):
                room -= _width(k)
        helps = [k for k in keys if k.action == HELP_ACTION]
        room -= sum(_width(k) for k in helps)
        full = False
        for k in keys:
            if k.has_class("-command-palette") or k in helps:
                continue
            w = _width(k)
            full = full or w > room
            if not full:
                room -= w
            if k.display == full:
                k.display = not full

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._ready = True
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            if self._pending:
                return  # the recompose already scheduled will read the keys as they are then
            if self._shown is not None and self.keys_shown() == self._shown:
                return  # the same keys: Footer would remove and mount the same widgets again
            self._pending = True
        super().bindings_changed(screen)


def _width(key: FooterKey) -> int:
    """Columns a key takes: its text (with the paddings its style draws) and its margins."""
    return key.render().cell_len + key.styles.margin.width
