"""opsconsole's themes, app-specific CSS variables, stylesheet paths and the theme choice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App, InvalidThemeError
from textual.theme import BUILTIN_THEMES, Theme

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "ANSI_THEMES",
    "CSS_PATHS",
    "CYCLE",
    "DEFAULT_THEME",
    "THEMES",
    "THEME_VARIABLE_DEFAULTS",
    "OWN_THEMES",
    "activate_theme",
    "pick_theme",
    "preselect_theme",
    "register_themes",
]

DEFAULT_THEME = "opsconsole-dark"
ANSI_DARK = "ansi-dark"
ANSI_LIGHT = "ansi-light"

# Fallbacks for every theme that does not set them (Textual's built-ins such as nord): the
# App returns this from `get_theme_variable_defaults()`. A variable used in CSS but defined
# nowhere makes the whole stylesheet fail to parse at start-up, so every variable our CSS
# uses must be here. Values must be literal colours (a `$ref` is not resolved here).
THEME_VARIABLE_DEFAULTS: dict[str, str] = {
    "status-ok": "#3FB950",
    "status-warn": "#D29922",
    "status-crit": "#F85149",
    "status-unknown": "#8B949E",
    "chart-1": "#58A6FF",  # p50
    "chart-2": "#D29922",  # p95
    "chart-3": "#DB61A2",  # p99
}

_DARK = Theme(
    name="opsconsole-dark",
    primary="#4C8DF6",
    secondary="#7AA2F7",
    accent="#E0AF68",
    warning="#D29922",
    error="#F85149",
    success="#3FB950",
    foreground="#D6DCE4",
    # Surfaces far enough apart that they stay distinct when an SSH session without
    # COLORTERM degrades truecolour to the 256-colour grey ramp (lilbee PR #697).
    background="#0E1116",
    surface="#161B22",
    panel="#222A35",
    dark=True,
    variables={
        **THEME_VARIABLE_DEFAULTS,
        "block-cursor-text-style": "bold",
        "footer-key-foreground": "#E0AF68",
    },
)

_LIGHT = Theme(
    name="opsconsole-light",
    primary="#0969DA",
    secondary="#54AEFF",
    accent="#8250DF",
    warning="#9A6700",
    error="#CF222E",
    success="#1A7F37",
    foreground="#1F2328",
    background="#F6F8FA",
    surface="#FFFFFF",
    panel="#E6EAEF",
    dark=False,
    variables={
        "status-ok": "#1A7F37",
        "status-warn": "#9A6700",
        "status-crit": "#CF222E",
        "status-unknown": "#6E7781",
        "chart-1": "#0969DA",
        "chart-2": "#BF8700",
        "chart-3": "#8250DF",
        "block-cursor-text-style": "bold",
    },
)

THEMES: list[Theme] = [_DARK, _LIGHT]
"""Our own truecolour themes; `opsconsole-dark` is the default."""

# Textual's ANSI themes (8.2.5+, PR #6513) emit the terminal's own 16 colours. We register
# copies under the same names that add our variables in ANSI colours, so `--theme ansi-dark`
# and TEXTUAL_THEME=ansi-dark keep working and states still use the terminal's palette.
ANSI_THEMES: list[Theme] = [
    replace(
        BUILTIN_THEMES[ANSI_DARK],
        variables={
            **BUILTIN_THEMES[ANSI_DARK].variables,
            "status-ok": "ansi_green",
            "status-warn": "ansi_yellow",
            "status-crit": "ansi_bright_red",
            "status-unknown": "ansi_bright_black",
            "chart-1": "ansi_cyan",
            "chart-2": "ansi_yellow",
            "chart-3": "ansi_magenta",
        },
    ),
    replace(
        BUILTIN_THEMES[ANSI_LIGHT],
        variables={
            **BUILTIN_THEMES[ANSI_LIGHT].variables,
            "status-ok": "ansi_green",
            "status-warn": "ansi_magenta",  # yellow is unreadable on most light palettes
            "status-crit": "ansi_red",
            "status-unknown": "ansi_bright_black",
            "chart-1": "ansi_blue",
            "chart-2": "ansi_magenta",
            "chart-3": "ansi_red",
        },
    ),
]
"""Textual's `ansi-dark` / `ansi-light`, extended with our variables."""

OWN_THEMES: dict[str, Theme] = {t.name: t for t in (*THEMES, *ANSI_THEMES)}
"""Every theme of ours by name. An App that adds these to its `available_themes` property
(ours over Textual's of the same name) has them from `App.__init__` on, so the stylesheet
is built from the chosen theme's variables once and never re-parsed before the first frame
(see `activate_theme`)."""

CYCLE: list[str] = [*(t.name for t in THEMES), *(t.name for t in ANSI_THEMES)]
"""The order the `T` key steps through: ours, then the terminal-palette ones."""

CSS_PATHS: list[Path] = [Path(__file__).resolve().parent / "opsconsole.tcss"]
"""App-level stylesheets, absolute so they load whichever module defines the App."""


def preselect_theme(app: App[Any], name: str) -> None:
    """Make `name` the theme Textual starts with. Call it BEFORE `super().__init__()`.

    Textual picks its NO_COLOR filter once, in `App.__init__`, from the theme current at
    that moment: `NoColor` (terminal default colours) for an ANSI theme, else `Monochrome`
    (greys). An ANSI theme chosen only after `__init__` keeps `Monochrome`, which turns the
    ANSI palette into black on black: measured here, every line of the board became
    unreadable under NO_COLOR with `ansi-dark`. Our ANSI themes share Textual's built-in
    names, so they are known before `register_themes` runs.
    """
    app.set_reactive(App.theme, name)


def register_themes(app: App[Any]) -> None:
    """Register our themes and the extended ANSI themes on `app`.

    Call it in `App.__init__` (after `super().__init__()`) and before assigning `app.theme`:
    assigning a name that is not registered raises `InvalidThemeError`.
    """
    for theme in (*THEMES, *ANSI_THEMES):
        app.register_theme(theme)


def activate_theme(app: App[Any], name: str) -> str:
    """Make `name` the current theme (after `register_themes`); returns the name used.

    An unknown name falls back to `opsconsole-dark` instead of raising. When `name` is
    already current (see `preselect_theme`) and the stylesheet's variables already come
    from our copy of it (an App whose `available_themes` includes `OWN_THEMES`), nothing
    is done. Otherwise the theme is re-applied, so the variables come from our registered
    copy, not from the built-in it replaced: at the price of a second parse of every
    stylesheet and a restyle of every widget (~7 ms of an 80x24 first frame).
    """
    if name not in app.available_themes:
        name = DEFAULT_THEME
    try:
        if app.theme == name:
            built_from = dict(app.theme_variables)
            if built_from != app.get_css_variables():
                app.mutate_reactive(App.theme)
        else:
            app.theme = name
    except InvalidThemeError:
        app.theme = DEFAULT_THEME
        name = DEFAULT_THEME
    return name


_TRUTHY = frozenset({"1", "true", "yes", "on"})
_FALSY = frozenset({"0", "false", "no", "off"})
# TERM values that promise no more than the 8/16 ANSI colours when COLORTERM is not set.
_SIXTEEN_COLOUR_TERMS = frozenset(
    {"linux", "xterm", "xterm-color", "xterm-16color", "vt100", "vt102", "vt220", "ansi",
     "screen", "screen-16color", "tmux", "tmux-16color", "rxvt", "rxvt-unicode", "cons25",
     "putty", "putty-16color", "dumb", "cygwin", "konsole-16color"}
)


def _known_names() -> set[str]:
    return {*BUILTIN_THEMES, *(t.name for t in THEMES), *(t.name for t in ANSI_THEMES)}


def _first_available(spec: str | None, available: set[str]) -> str | None:
    """First name of a comma-separated list that is a known theme (TEXTUAL_THEME's syntax)."""
    for token in (spec or "").split(","):
        name = token.strip()
        if name and name in available:
            return name
    return None


def _few_colours(env: Mapping[str, str]) -> bool:
    """True when the terminal can only be trusted with the 16 ANSI colours."""
    flag = env.get("OPSCONSOLE_ANSI", "").strip().lower()
    if flag in _TRUTHY:
        return True
    if flag in _FALSY:
        return False
    system = env.get("TEXTUAL_COLOR_SYSTEM", "").strip().lower()
    if system == "standard":
        return True
    if system in {"256", "truecolor", "windows"} or env.get("COLORTERM", "").strip():
        return False
    term = env.get("TERM", "").strip().lower()
    if not term or any(deep in term for deep in ("256", "truecolor", "direct", "24bit")):
        return False
    return term in _SIXTEEN_COLOUR_TERMS


def _light_background(env: Mapping[str, str]) -> bool:
    """Read COLORFGBG ("fg;bg", set by rxvt, Konsole, iTerm2...) for a light background."""
    bg = env.get("COLORFGBG", "").rsplit(";", 1)[-1].strip()
    return bg in {"7", "15"}


def pick_theme(
    requested: str | None,
    env: Mapping[str, str],
    *,
    available: Iterable[str] | None = None,
) -> str:
    """Choose the theme name to start with.

    Order: an explicit request (`--theme`), then TEXTUAL_THEME (both may be comma-separated
    fallback lists), then an ANSI theme when the terminal has at most 16 colours (COLORTERM
    unset and a 16-colour TERM, or OPSCONSOLE_ANSI=1), then `opsconsole-dark`. Unknown names
    are skipped rather than raised, so a typo never stops the console from starting; pass
    `available=app.available_themes` to accept themes registered by others. NO_COLOR needs
    nothing here: Textual applies its monochrome filter on top of whichever theme is chosen.
    """
    names = set(available) if available is not None else _known_names()
    for spec in (requested, env.get("TEXTUAL_THEME")):
        if chosen := _first_available(spec, names):
            return chosen
    if _few_colours(env):
        return ANSI_LIGHT if _light_background(env) else ANSI_DARK
    return DEFAULT_THEME
