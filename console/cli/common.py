"""What every sub-command shares: exit codes, loading the config, reporting its problems."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.engine.config.schema import Settings

EXIT_OK, EXIT_PROBLEM, EXIT_CONFIG = 0, 1, 2


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
    from console.engine.config.loader import find_config, load_config

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


