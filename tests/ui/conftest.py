"""Fixtures for the app-level UI tests: an environment that cannot change what the app draws."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def ui_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Pin what the console reads from the environment, for stable tests and snapshots.

    Theme choice reads NO_COLOR, TEXTUAL_THEME, COLORTERM and TERM (a 16-colour TERM would
    pick an ANSI theme); times on screen are local times, so TZ is pinned to UTC; any file
    the console might write goes under the test's own directory.
    """
    for name in ("NO_COLOR", "TEXTUAL_THEME", "OPSCONSOLE_ANSI", "TEXTUAL_COLOR_SYSTEM",
                 "COLORFGBG", "OPSCONSOLE_CONFIG", "TEXTUAL_ANIMATIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLORTERM", "truecolor")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("OPSCONSOLE_DATA_DIR", str(tmp_path / "opsdata"))
    for xdg in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(xdg, str(tmp_path / xdg.lower()))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
