"""`opsconsole rules import FILE` and `opsconsole rules export`: Prometheus rule files.

Import prints `[[rules]]` (and, with `--target`, the promql target's metrics) to paste into a
config, and says on stderr which alerts it could not take and why; export writes a rule
file `promtool check rules` accepts and says which rules have no Prometheus equivalent.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from console.cli.common import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEM


def add_parsers(rules_sub: Any) -> None:
    """`rules import` and `rules export` under `opsconsole rules`."""
    imp = rules_sub.add_parser(
        "import", help="read a Prometheus rule file into [[rules]] (printed as TOML); "
        "alerts the console cannot evaluate are reported")
    imp.add_argument("file", metavar="FILE", help="a Prometheus rule file (YAML), - for stdin")
    imp.add_argument("--target", metavar="NAME",
                     help="evaluate expressions the console cannot through this promql "
                     "target (their left side becomes a metric of it)")
    imp.add_argument("--url", metavar="URL",
                     help="with --target: also print that target, querying this URL")
    imp.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                     help="avoid the rule names this config already has")
    imp.add_argument("--output", "-o", metavar="FILE", help="write the TOML here (default "
                     "stdout)")
    exp = rules_sub.add_parser(
        "export", help="write the config's rules on promql targets as a Prometheus rule "
        "file (promtool check rules accepts it)")
    exp.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
    exp.add_argument("--defaults", action="store_true",
                     help="also the shipped default rules (unless the config turns them off)")
    exp.add_argument("--output", "-o", metavar="FILE", help="write here (default stdout)")


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def cmd_import(args: argparse.Namespace) -> int:
    from console.cli.common import load_or_report
    from console.engine.alerting.promrules import import_rules, import_toml, load_rule_file

    existing: list[str] = []
    if getattr(args, "config", None):
        loaded = load_or_report(args)
        if loaded is None:
            return EXIT_CONFIG
        existing = [r.name for r in loaded[0].rules]
    if args.url and not args.target:
        print("opsconsole rules import: --url needs --target", file=sys.stderr)
        return EXIT_CONFIG
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        doc = load_rule_file(text)
        result = import_rules(doc, target=args.target, existing=existing)
    except OSError as exc:
        print(f"opsconsole rules import: cannot read {args.file}: {exc.strerror or exc}",
              file=sys.stderr)
        return EXIT_CONFIG
    except ValueError as exc:
        print(f"opsconsole rules import: {args.file}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _write(import_toml(result, target=args.target, url=args.url), args.output)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for skip in result.skipped:
        print(f"not imported: {skip}", file=sys.stderr)
    print(f"imported {len(result.rules)} rule(s), {len(result.skipped)} not imported",
          file=sys.stderr)
    return EXIT_PROBLEM if result.skipped else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from console.cli.common import load_or_report
    from console.engine.alerting.promrules import dump_rule_file, export_rules

    loaded = load_or_report(args)
    if loaded is None:
        return EXIT_CONFIG
    settings = loaded[0]
    defaults = args.defaults and settings.alerting.default_rules
    doc, skipped = export_rules(settings, defaults=defaults)
    _write(dump_rule_file(doc), args.output)
    for skip in skipped:
        print(f"not exported: {skip}", file=sys.stderr)
    n = len(doc["groups"][0]["rules"])
    print(f"exported {n} alerting rule(s), {len(skipped)} not exported", file=sys.stderr)
    return EXIT_OK
