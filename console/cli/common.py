"""What every sub-command shares: exit codes, loading the config, reporting its problems."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.engine.config.schema import Settings
    from console.engine.paths import DataPaths

EXIT_OK, EXIT_PROBLEM, EXIT_CONFIG = 0, 1, 2
EXIT_PIPE = 141
"""What the shell reports for a program ended by SIGPIPE (128 + 13): `opsconsole paths | head`
exits as `cat` would when its reader goes away."""


def stdout_gone() -> None:
    """Point standard output at /dev/null once its reader has gone (a closed pipe, a hung-up
    terminal), so that nothing written later, nor Python's flush at exit, raises again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout already closed or not a file: nothing to flush
        pass


def print_config_error(exc: Exception) -> None:
    from console.engine.errors import ConfigError

    if isinstance(exc, ConfigError):
        n = len(exc.issues)
        print(f"opsconsole: the config has {n} problem{'s' if n != 1 else ''}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue.format()}", file=sys.stderr)
    else:
        print(f"opsconsole: {exc}", file=sys.stderr)


def load_settings(args: argparse.Namespace) -> tuple[Settings, Path]:
    from console.engine.config.loader import load_config
    from console.engine.config.locate import find_config

    path = find_config(getattr(args, "config", None))
    return load_config(path), path


def load_or_report(args: argparse.Namespace) -> tuple[Settings, Path] | None:
    """`load_settings`, or None once the config's problems are printed: the caller exits
    EXIT_CONFIG, so every command reports a bad config the same way."""
    from console.engine.errors import ConfigError

    try:
        return load_settings(args)
    except ConfigError as exc:
        print_config_error(exc)
        return None



def data_paths(args: argparse.Namespace, settings: Settings | None = None) -> DataPaths:
    """The data directory, by the one documented order: `--data-dir`, `[console] data_dir`,
    `$OPSCONSOLE_DATA_DIR`, the platform default. Without `settings`, the config file's
    `data_dir` is read on its own (no validation: a command that only reads the journal
    should not need the whole config to be valid, nor pay for validating it)."""
    paths = _data_paths(args, settings)
    problem = paths.unusable()
    if problem is not None:  # every command said something else, or a traceback
        print(f"opsconsole: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    # `--demo`: the demo's own world inside it (where `opsconsole demo` keeps its incidents)
    return paths.demo() if getattr(args, "demo_world", False) else paths


def demo_not_run(command: str, root: Path) -> str:
    """What `COMMAND --demo` says when no demo ran in this data directory: an error, not an
    empty answer (`incidents --demo` said "no open incidents" while a demo started with
    `--data-dir` had one open)."""
    return (f"opsconsole {command} --demo: the demo has not run in {root} (start it with "
            "`opsconsole demo`; for a demo started with --data-dir DIR, add --data-dir DIR)")


def heartbeat_pings(args: argparse.Namespace, settings: Settings) -> Path | None:
    """Where `opsconsole ping` and the listener leave check-ins, for a one-shot command's
    heartbeat targets (None when it has none): without it they read as never checked in."""
    if not any(t.kind == "heartbeat" for t in settings.targets):
        return None
    return data_paths(args, settings).pings


def _data_paths(args: argparse.Namespace, settings: Settings | None) -> DataPaths:
    from console.engine.paths import DataPaths, resolve_data_dir

    flag = getattr(args, "data_dir", None)
    if flag or settings is not None:
        return resolve_data_dir(flag, settings)
    from console.engine.config.locate import configured_data_dir, find_config
    from console.engine.errors import ConfigError

    try:
        configured = configured_data_dir(find_config(getattr(args, "config", None)))
    except ConfigError:
        configured = None  # no config file: the environment or the default decides
    if configured:
        return DataPaths(Path(configured).expanduser(), "[console] data_dir")
    return resolve_data_dir(None, None)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """`--config` and `--data-dir`, accepted before or after any sub-command."""
    have = parser._option_string_actions  # argparse has no public "has option"
    if "--config" not in have:
        parser.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                            help="config file (TOML)")
    if "--data-dir" not in have:
        parser.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                            help="where the console keeps its journal, alert state, "
                            "outbox and history (see `opsconsole paths`)")
