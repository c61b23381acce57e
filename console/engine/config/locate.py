"""Where the config file is: `--config`, `$OPSCONSOLE_CONFIG`, or the user config directory.

Light on purpose (no pydantic): every command asks, including those that only read the
journal and need no more of the config than `[console] data_dir`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from console.engine.errors import ConfigError, ConfigIssue


def toml_loads(text: str) -> dict[str, Any]:
    """`tomllib.loads`, with nesting too deep for Python's stack (`x = [[[…]]]` 500 deep)
    a TOMLDecodeError like any other bad TOML: it was a RecursionError traceback from
    `validate`, `run --headless` and the console, and a reload ignored without a word."""
    try:
        return tomllib.loads(text)
    except RecursionError:
        raise tomllib.TOMLDecodeError("arrays or tables nested too deeply") from None

APP_NAME = "opsconsole"
ENV_CONFIG = "OPSCONSOLE_CONFIG"
START_HINT = "opsconsole demo --print-config > {path}   (or pass --config FILE)"


def default_config_path() -> Path:
    """`$OPSCONSOLE_CONFIG`, else `config.toml` in the user's config directory (platformdirs)."""
    override = os.environ.get(ENV_CONFIG)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME)) / "config.toml"


def find_config(cli_path: str | Path | None) -> Path:
    """The config file to use: an explicit path must exist; otherwise the default path.

    When there is none, the error tells the operator how to start rather than just "not found".
    """
    if cli_path is not None and str(cli_path) != "":
        path = Path(cli_path).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            what = "is a directory, not a file"
        elif path.exists():  # a FIFO, /dev/null, a socket: a watcher could never re-read it
            what = "is not a regular file"
        else:
            what = "does not exist"
        hint = "check the --config path" + ("" if path.exists() else (
            ", or start from the demo's: " + START_HINT.format(path=path).split("   ")[0]))
        raise ConfigError([ConfigIssue(
            file=str(path), line=None, key="", message=f"config file {what}", hint=hint)])
    path = default_config_path()
    if path.is_file():
        return path
    raise ConfigError([ConfigIssue(
        file=str(path), line=None, key="", message=f"no config file found at {path}",
        hint="start from the demo's: " + START_HINT.format(path=path),
    )])



def configured_data_dir(path: Path) -> str | None:
    """`[console] data_dir` of the config at `path`, read without validating the rest (None
    if unset or unreadable: the command that needs the whole config reports its problems)."""
    try:
        data = toml_loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    console = data.get("console")
    value = console.get("data_dir") if isinstance(console, dict) else None
    return value if isinstance(value, str) and value else None


def may_share_state(path: Path) -> bool:
    """False when the config at `path` certainly keeps its state in files (`[state] backend`
    unset or "files", or a file that is no readable TOML and so no valid config), read
    without validating the rest: a command that only reads the journal loads and validates
    the whole config (pydantic) only when it may name the shared state."""
    try:
        data = toml_loads(path.read_bytes().decode("utf-8-sig"))  # as the loader reads it
    except (OSError, ValueError):
        return False
    state = data.get("state", {})
    return not isinstance(state, dict) or state.get("backend", "files") != "files"
