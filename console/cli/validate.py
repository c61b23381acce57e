"""`opsconsole validate`: every problem of a config and the playbooks, at once."""

from __future__ import annotations

import argparse
import re
from typing import Any

from console.cli.common import EXIT_OK, EXIT_PROBLEM, print_config_error


def cmd_validate(args: argparse.Namespace) -> int:
    from console.engine.config.loader import check_file
    from console.engine.config.locate import find_config
    from console.engine.errors import ConfigError

    try:
        path = find_config(getattr(args, "config", None))
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_PROBLEM
    from console.engine.incidents.playbooks import user_dir, validate_playbooks

    settings, issues = check_file(path)
    issues += validate_playbooks()  # playbooks: ours and the user's
    notes: list[str] = []
    if not issues:
        link_issues, notes = _links(path)
        issues += link_issues
    if issues:
        print_config_error(ConfigError(issues))
        return EXIT_PROBLEM
    print(f"{path}: valid")
    if settings is not None and not settings.targets:  # e.g. an empty file
        print(f"note: {path} has no targets: the console would have nothing to check")
    pb_dir = user_dir()
    if pb_dir.is_dir():
        print(f"{pb_dir}: playbooks valid")
    if getattr(args, "links", False):
        for note in notes:
            print(f"note: runbook link with nothing to open in this config: {note}")
    elif notes:
        print(f"note: {_links_summary(notes)}")
    return EXIT_OK


_METRIC = re.compile(r"no target reports the metric '([^']*)'$")
_TAB = re.compile(r"no target has a drill-down tab '([^']*)'$")


def _links_summary(notes: list[str]) -> str:
    """The shipped runbooks' links that find nothing in this config, in one line: what is
    missing (each link says so when followed; `--links` lists them one by one)."""
    metrics: dict[str, None] = {}
    tabs: dict[str, None] = {}
    other: dict[str, None] = {}
    for note in notes:
        reason = note.rsplit("': ", 1)[-1]
        if m := _METRIC.search(reason):
            metrics[m.group(1)] = None
        elif m := _TAB.search(reason):
            tabs[m.group(1)] = None
        else:
            other[reason] = None
    missing = list(other)
    if metrics:
        missing.append("no target reports " + ", ".join(metrics))
    if tabs:
        missing.append("no drill-down tab " + ", ".join(tabs))
    return (f"{len(notes)} links in the shipped runbooks have nothing to open in this config "
            f"({'; '.join(missing)}); each says so when followed, `validate --links` lists "
            "them")


def _links(path: Any) -> tuple[list[Any], list[str]]:
    """Runbook links against this config's targets: (issues, notes)."""
    from console.engine.config.loader import load_config
    from console.engine.incidents.links import check_links
    from console.engine.incidents.playbooks import builtin_dir, load_playbooks

    settings = load_config(path)
    playbooks = load_playbooks()
    return check_links(playbooks.by_name.values(), settings, builtin_dir=str(builtin_dir()))
