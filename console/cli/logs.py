"""`opsconsole logs QUERY`: run a log query (filter or built-in) over a file, without the UI."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_OK, EXIT_NONE, EXIT_CONFIG = 0, 1, 2


class _LogsParser(argparse.ArgumentParser):
    """The `logs` parser: its description lists the built-in queries, read from the log
    query module only when the help is shown (building the parser runs for every command)."""

    def format_help(self) -> str:
        if self.description is None:
            from console.engine.logs.query import BUILTIN

            builtins = "; ".join(f"{k}: {b.about}" for k, b in BUILTIN.items())
            self.description = (
                "QUERY is terms that must all hold: field=value, field!=value, "
                "field>n, field<n, and bare words (substring of the message or line); quote "
                "it in the shell. Built-in queries: " + builtins + ". Exit 0 when something "
                "matched, 1 when nothing did, 2 on a bad query, config or file.")
        return super().format_help()


def add_parser(sub: Any) -> None:
    """Add `logs` to the main parser's subcommands."""
    p = sub.add_parser(
        "logs", help="search a JSON-lines log file (filter language or a built-in query)")
    p.__class__ = _LogsParser  # the subparsers' class is the main parser's, for every command
    p.add_argument("query", nargs="+", metavar="QUERY", help="filter terms or a built-in name")
    p.add_argument("--file", "-f", metavar="PATH", help="the log file to search")
    p.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                   help="take the file from this config's log target")
    p.add_argument("--target", "-t", metavar="NAME",
                   help="the config's log target (default: its only one)")
    p.add_argument("--since", metavar="DURATION",
                   help="only lines with a timestamp this recent, e.g. 15m, 1h, 2d")
    p.add_argument("--limit", type=int, default=200,
                   help="print at most this many (the latest) matching lines (default 200)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _fail(msg: str) -> int:
    print(f"opsconsole logs: {msg}", file=sys.stderr)
    return EXIT_CONFIG


def _demo_log(args: argparse.Namespace) -> tuple[str, float | None]:
    """`--demo`: the log the running demo writes (in the demo's data directory) and the
    slow_ms of the demo's log target (its config template, read without the demo stack)."""
    import tomllib
    from importlib import resources

    from console.cli.common import data_paths

    template = resources.files("console.demo").joinpath("config", "log-target.toml")
    target = tomllib.loads(template.read_text("utf-8"))["targets"][0]
    return str(data_paths(args).demo_log), target.get("slow_ms")


def _resolve(args: argparse.Namespace) -> tuple[str, float | None] | str:
    """The file to search and the target's slow_ms, or an error message."""
    if getattr(args, "demo_world", False):
        if args.file or getattr(args, "config", None) or args.target:
            return "give --demo, or --file or --config/--target, not both"
        return _demo_log(args)
    if args.file:
        if getattr(args, "config", None) or args.target:
            return "give --file, or --config/--target, not both"
        return args.file, None
    from console.cli.common import load_settings, print_config_error
    from console.engine.config.schema import LogTarget
    from console.engine.errors import ConfigError

    try:
        settings, path = load_settings(args)
    except ConfigError as exc:
        print_config_error(exc)
        return "no usable config; or give --file PATH"
    logs = [t for t in settings.targets if isinstance(t, LogTarget)]
    if args.target:
        match = [t for t in logs if t.name == args.target]
        if not match:
            names = ", ".join(t.name for t in logs) or "none"
            return f"{path} has no log target {args.target!r} (log targets: {names})"
        target = match[0]
    elif len(logs) == 1:
        target = logs[0]
    else:
        names = ", ".join(t.name for t in logs)
        return (f"{path} has {len(logs)} log targets; choose one with --target "
                f"({names})" if logs else f"{path} has no log target; give --file PATH")
    return target.path, target.slow_ms


def cmd_logs(args: argparse.Namespace) -> int:
    import orjson

    from console.engine.lang.durations import parse_duration
    from console.engine.logs.query import parse_query, search_file
    from console.engine.text.sanitize import one_line

    where = _resolve(args)
    if isinstance(where, str):
        return _fail(where)
    path, slow_ms = where
    try:
        since = parse_duration(args.since) if args.since else None
        query = parse_query(args.query, since=since, slow_ms=slow_ms)
    except ValueError as exc:
        return _fail(str(exc))
    if args.limit < 1:
        return _fail("--limit must be at least 1")
    try:
        res = search_file(path, query, limit=args.limit)
    except OSError as exc:
        return _fail(f"cannot read {path}: {exc.strerror or exc}")
    out = sys.stdout
    try:
        if args.json:
            out.buffer.write(orjson.dumps({"file": path, **res.to_json()},
                                          option=orjson.OPT_INDENT_2) + b"\n")
        elif query.group_by:
            for key, n in res.sorted_groups():
                out.write(f"{n:>8}  {one_line(key, 300)}\n")
        else:
            for line in res.matches:
                out.write(one_line(line.raw, 4000) + "\n")
        out.flush()
    except BrokenPipeError:
        return EXIT_OK if res.matched else EXIT_NONE
    if not args.json:
        shown = "" if query.group_by or res.matched <= len(res.matches) else \
            f" (the latest {len(res.matches)} shown)"
        print(f"{res.matched} matching of {res.scanned} lines{shown}; "
              f"{res.non_json} not JSON", file=sys.stderr)
    return EXIT_OK if res.matched else EXIT_NONE
