"""`opsconsole validate`: every problem of a config and the playbooks, at once."""

from __future__ import annotations

import argparse

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
    if issues:
        print_config_error(ConfigError(issues))
        return EXIT_PROBLEM
    print(f"{path}: valid")
    pb_dir = user_dir()
    if pb_dir.is_dir():
        print(f"{pb_dir}: playbooks valid")
    return EXIT_OK


