"""Suite-wide guard: no test writes into the real user's config or data directories."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """History, journal, alert state and config default to a per-run temporary folder.

    Tests that need their own folder still set OPSCONSOLE_DATA_DIR themselves (monkeypatch
    wins over this); this only catches the ones that forget.
    """
    root: Path = tmp_path_factory.mktemp("userdirs")
    saved = {k: os.environ.get(k) for k in ("OPSCONSOLE_DATA_DIR", "XDG_DATA_HOME",
                                            "XDG_CONFIG_HOME", "XDG_STATE_HOME")}
    os.environ["OPSCONSOLE_DATA_DIR"] = str(root / "data")
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        os.environ[name] = str(root / name.lower())
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
