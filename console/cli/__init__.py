"""The `opsconsole` command: the TUI, the demo, and the headless `check`/`panels`/`validate`.

Imports stay lazy so `opsconsole --help` and the headless commands start fast and the TUI's
first frame is not held up by modules it does not need yet.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from console.cli.common import add_common_flags

ALL = "*"
"""`build_parser`'s default: every command's parser (for --help, and whenever in doubt)."""

def command_of(argv: Sequence[str], parser: argparse.ArgumentParser | None = None
               ) -> str | None:
    """The command `argv` runs (None: the console itself), or ALL when that cannot be told
    for sure without the full parser: help asked, an unknown or abbreviated word."""
    # the global options that take a value, read off their parser (`_global_parser()`
    # unless given): the token after one is its value, not a command
    actions = (parser or _global_parser())._actions
    valued = {s for a in actions if a.nargs != 0 for s in a.option_strings}
    it = iter(argv)
    for tok in it:
        if tok in ("-h", "--help"):
            return ALL
        if tok in valued:
            next(it, None)
            continue
        if tok.startswith("-"):
            continue
        return tok if tok in COMMANDS else ALL
    return None


def _global_parser() -> argparse.ArgumentParser:
    """The parser of the options before a command (the console's own)."""
    parser = argparse.ArgumentParser(
        prog="opsconsole",
        description="Keyboard-driven operations console. Without a command, opens the console "
        "on your config (--config FILE, else the user config directory).",
    )
    parser.add_argument("--config", "-c", metavar="FILE", help="config file (TOML)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the console keeps its journal, alert state, outbox and "
                        "history (default: [console] data_dir, $OPSCONSOLE_DATA_DIR, or the "
                        "user data directory; `opsconsole paths` shows it)")
    parser.add_argument("--theme", help="opsconsole-dark, opsconsole-light, or an ANSI theme")
    parser.add_argument("--no-history", action="store_true",
                        help="do not load or save metric history")
    parser.add_argument("--read-only", action="store_true",
                        help="look, never act: no acknowledge, silence, incident action or "
                        "fault (for a viewer, as k9s --readonly)")
    parser.add_argument("--record", metavar="FILE",
                        help="write what the console receives (results, alerts, events) to "
                        "FILE (.gz, .zst: compressed) for `opsconsole replay`")
    return parser


def build_parser(command: str | None = ALL, parser: argparse.ArgumentParser | None = None
                 ) -> argparse.ArgumentParser:
    """The command line's parser; with `command`, only that command's sub-parser (a dozen
    sub-commands and the modules that add them were ~20 ms of every run, and of the TUI's
    first frame). `parser`: the `_global_parser()` to add the commands to."""

    def want(*names: str) -> bool:
        return command == ALL or command in names

    parser = parser or _global_parser()
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    if want("demo"):
        demo = sub.add_parser("demo", help="run the console on a built-in simulated stack")
        demo.add_argument("--print-config", action="store_true",
                          help="print the demo's config (a starting point) and exit")
        demo.add_argument("--no-local", action="store_true",
                          help="do not add the machine's PostgreSQL and Redis")
        demo.add_argument("--port", type=int, default=None,
                          help="first port of the demo stack (API; frontend +1, payments +2); "
                          "default $OPSCONSOLE_DEMO_PORT, else 18780 or free ones when taken")
        demo.add_argument("--theme", default=argparse.SUPPRESS)
        demo.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS)

    if want("validate"):
        val = sub.add_parser("validate", help="check a config file and report every error")
        val.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
        val.add_argument("--links", action="store_true",
                         help="list each shipped runbook link that has nothing to open here")

    if want("check"):
        from console.cli.check import add_target_flags

        check = sub.add_parser("check", help="check targets without the UI")
        check.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
        check.add_argument("--once", action="store_true", help="check each target once and exit")
        check.add_argument("--json", action="store_true", help="machine-readable output")
        add_target_flags(check)

    if want("panels"):
        pan = sub.add_parser("panels", help="every panel's value against its target, after one "
                             "round of checks (a second for rates)")
        pan.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
        pan.add_argument("--dashboard", "-d", metavar="N|NAME",
                         help="one dashboard, by its number key (0: every panel) or its name")
        pan.add_argument("--json", action="store_true", help="machine-readable output")

    if want("watch"):
        from console.cli.check import add_target_flags

        watch = sub.add_parser("watch",
                               help="open the console on TARGETs given on the command line")
        add_target_flags(watch)
        watch.add_argument("--theme", default=argparse.SUPPRESS)
        watch.add_argument("--read-only", action="store_true", default=argparse.SUPPRESS)

    if want("rules", "alerts", "run"):
        from console.cli.alerting import add_parsers

        add_parsers(sub)  # rules test, alerts

    if want("event", "events", "ping"):
        from console.cli.signals import add_parsers as add_signal_parsers

        add_signal_parsers(sub)  # event, events, ping

    if want("replay"):
        from console.cli.replay import add_parser as add_replay_parser

        add_replay_parser(sub)  # replay FILE

    if want("logs"):
        from console.cli.logs import add_parser as add_logs_parser

        add_logs_parser(sub)  # logs QUERY

    if want("state"):
        from console.cli.state import add_parser as add_state_parser

        add_state_parser(sub)  # state init|import|status

    if want("postmortem"):
        pm = sub.add_parser("postmortem", help="write a Markdown post-mortem draft of an incident")
        pm.add_argument("incident", metavar="INCIDENT",
                        help="incident id (a unique prefix will do), or `latest` (whose "
                        "post-mortem was written last, else the one resolved last)")
        pm.add_argument("--journal", metavar="FILE", help="journal file (default: user data dir)")
        pm.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
        pm.add_argument("--draft", action="store_true",
                        help="a fresh draft even when postmortems/<id>.md beside the journal "
                             "was edited (by default the edited file is what is printed)")

    if want("incidents"):
        inc = sub.add_parser("incidents", help="open incidents from the journal: severity, age, "
                             "next step, overdue steps (exit 1 while any is open)")
        inc.add_argument("--all", action="store_true", help="resolved ones too")
        inc.add_argument("--since", default=None, help="with --all: opened within this period")
        inc.add_argument("--json", action="store_true", help="machine-readable output")
        inc.add_argument("--journal", metavar="FILE", help="journal file (default: user data dir)")

    if want("report"):
        rep = sub.add_parser("report", help="the playbook's KPIs from the journal and history; "
                             "with --format, the daily summary the notifier sends")
        rep.add_argument("--since", default="7d", help="period to cover (default 7d)")
        rep.add_argument("--json", action="store_true", help="the KPIs, machine-readable")
        rep.add_argument("--format", choices=["text", "json", "markdown", "email"], default="text",
                         help="text: the KPIs; json, markdown, email: the daily summary (uptime, "
                         "alerts, incidents and KPIs, batched P3s), as `summary_at` sends it")
        rep.add_argument("--journal", metavar="FILE", help="journal file (default: user data dir)")
        rep.add_argument("--history", metavar="FILE",
                         help="metric history for uptime (default: the console's own)")
    if want("paths"):
        paths = sub.add_parser("paths", help="where the console reads its config and keeps its "
                               "data (journal, alert state, outbox, history)")
        paths.add_argument("--json", action="store_true", help="machine-readable output")

    for name in ("incidents", "postmortem", "report", "paths", "alerts", "events", "logs"):
        if name not in sub.choices:
            continue
        sub.choices[name].add_argument(
            "--demo", dest="demo_world", action="store_true",
            help="the demo's world: what `opsconsole demo` recorded (its own data dir)")
    for p in sub.choices.values():  # --config and --data-dir after the sub-command too
        add_common_flags(p)
        for action in p._subparsers._group_actions if p._subparsers else ():
            for nested in getattr(action, "choices", {}).values():
                add_common_flags(nested)
    return parser


# Each command's module and function, imported only when that command runs.
COMMANDS = {
    "validate": ("console.cli.validate", "cmd_validate"),
    "check": ("console.cli.check", "cmd_check"),
    "watch": ("console.cli.check", "cmd_watch"),
    "demo": ("console.cli.tui", "cmd_demo"),
    "panels": ("console.cli.panels", "cmd_panels"),
    "rules": ("console.cli.alerting", "cmd_alerting"),
    "alerts": ("console.cli.alerting", "cmd_alerting"),
    "run": ("console.cli.alerting", "cmd_alerting"),
    "logs": ("console.cli.logs", "cmd_logs"),
    "postmortem": ("console.cli.incidents", "cmd_postmortem"),
    "incidents": ("console.cli.incidents", "cmd_incidents"),
    "report": ("console.cli.incidents", "cmd_report"),
    "paths": ("console.cli.paths", "cmd_paths"),
    "event": ("console.cli.signals", "cmd_event"),
    "events": ("console.cli.signals", "cmd_events"),
    "ping": ("console.cli.signals", "cmd_ping"),
    "replay": ("console.cli.replay", "cmd_replay"),
    "state": ("console.cli.state", "cmd_state"),
    None: ("console.cli.tui", "cmd_tui"),
}


def _standard_fds() -> None:
    """Standard input, output and error open, on /dev/null if they were closed
    (`opsconsole run --headless <&-`, a service manager's closed stdin). Left closed, the
    next file opened takes fd 0: uvloop aborted at exit on that ("uv__close: Assertion
    'fd > STDERR_FILENO' failed", SIGABRT) and a stray write could land in a data file."""
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    # numpy's OpenBLAS starts a thread per core when numpy is imported (~40 ms of CPU on
    # this machine, in every command that holds metrics); the console does no linear
    # algebra (the store's sorts, cumsums and reductions are not BLAS), so one is enough.
    # Read once, when numpy loads; a value the operator set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # pydantic looks for plugins (entry points of every installed distribution, importing
    # importlib.metadata and the email package) the first time a model is built, ~10 ms of
    # every command that reads a config; the console's config models have no use for
    # one. A value the operator set (a list of plugins to skip) is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    _standard_fds()
    words = sys.argv[1:] if argv is None else argv
    parser = _global_parser()
    args = build_parser(command_of(words, parser), parser).parse_args(words)
    module, func = COMMANDS[args.command]
    try:
        command: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module), func)
        code = command(args)
        sys.stdout.flush()  # here, not at exit: a reader that has gone is told apart below
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `opsconsole paths | head -3`: the reader took what it wanted and closed the pipe.
        # No traceback, and nothing more written (Python's own flush at exit included).
        from console.cli.common import EXIT_PIPE, stdout_gone

        stdout_gone()
        return EXIT_PIPE
