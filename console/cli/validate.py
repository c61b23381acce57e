"""`opsconsole validate`: every problem of a config and the playbooks, at once."""

from __future__ import annotations

import argparse
from typing import Any

from console.cli.common import EXIT_OK, EXIT_PROBLEM, print_config_error


def cmd_validate(args: argparse.Namespace) -> int:
    from console.engine.config.loader import validate_file
    from console.engine.config.locate import find_config
    from console.engine.errors import ConfigError

    try:
        path = find_config(getattr(args, "config", None))
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_PROBLEM
    from console.engine.incidents.playbooks import user_dir, validate_playbooks

    issues = validate_file(path) + validate_playbooks()  # playbooks: ours and the user's
    notes: list[str] = []
    if not issues:
        link_issues, notes = _links(path)
        issues += link_issues
    if issues:
        print_config_error(ConfigError(issues))
        return EXIT_PROBLEM
    print(f"{path}: valid")
    pb_dir = user_dir()
    if pb_dir.is_dir():
        print(f"{pb_dir}: playbooks valid")
    for note in notes:
        print(f"note: runbook link with nothing to open in this config: {note}")
    return EXIT_OK


def _links(path: Any) -> tuple[list[Any], list[str]]:
    """Runbook links against this config's targets: (issues, notes)."""
    from console.engine.config.loader import load_config
    from console.engine.incidents.links import check_links
    from console.engine.incidents.playbooks import builtin_dir, load_playbooks

    settings = load_config(path)
    playbooks = load_playbooks()
    return check_links(playbooks.by_name.values(), settings, builtin_dir=str(builtin_dir()))
