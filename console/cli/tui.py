"""The console itself: `opsconsole [--config FILE]`, `opsconsole demo` and `watch URL…`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from console.cli.common import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEM, data_paths, load_or_report

if TYPE_CHECKING:
    from console.engine.config.schema import Settings

ENV_DEMO_PORT = "OPSCONSOLE_DEMO_PORT"  # the demo's first port, as --port
SWITCH_INTERVAL_S = 0.001  # the GIL hand-over to Textual's writer and input threads


def cmd_tui(args: argparse.Namespace) -> int:
    loaded = load_or_report(args)
    if loaded is None:
        return EXIT_CONFIG
    settings, path = loaded
    return run_tui(settings, path, args)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.port is None and os.environ.get(ENV_DEMO_PORT, "").strip():
        try:
            args.port = int(os.environ[ENV_DEMO_PORT])
        except ValueError:
            print(f"opsconsole demo: ${ENV_DEMO_PORT} is not a port number", file=sys.stderr)
            return EXIT_CONFIG
    if args.print_config:
        return asyncio.run(_print_demo_config(args))
    if args.port is not None:
        taken = _taken_ports(args.port)
        if taken:
            from console.demo.ports import free_port_block

            print(f"opsconsole demo: port {taken[0]} is taken (the demo needs {args.port}, "
                  f"{args.port + 1} and {args.port + 2}); try --port {free_port_block()}",
                  file=sys.stderr)
            return EXIT_CONFIG
    return run_tui(None, None, args, demo=True)


def _taken_ports(first: int) -> list[int]:
    from console.demo.ports import SERVICES, port_taken

    return [first + i for i in range(len(SERVICES)) if port_taken("127.0.0.1", first + i)]


async def _print_demo_config(args: argparse.Namespace) -> int:
    from console.demo.stack import DemoStack, probe_local_services

    pg, redis = (None, None) if args.no_local else await probe_local_services()
    stack = DemoStack(port=args.port, log_path=str(data_paths(args).demo().demo_log))
    sys.stdout.write(stack.config_toml(postgres_dsn=pg, redis_url=redis))
    return EXIT_OK


def terminal_problem() -> str | None:
    """Why the console cannot run here, or None: its output must be a terminal, and its
    input a terminal or a pipe (the end of a pipe ends the console, as a hang-up does);
    closed input, /dev/null or a file would end it before its first frame."""
    import stat

    hint = ("Run it in a terminal (over SSH: `ssh -t`); for checks without a screen use "
            "`opsconsole check --once`, `opsconsole alerts` or `opsconsole run --headless`.")
    try:
        out_ok = sys.stdout is not None and os.isatty(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        out_ok = False
    if not out_ok:
        return f"the console draws on a terminal, and its output is not one. {hint}"
    try:
        if sys.stdin is None:  # closed when Python started (`main` put /dev/null on fd 0)
            raise ValueError("closed")
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        return f"the console reads keys from its input, and it is closed. {hint}"
    if os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return None
    what = "/dev/null" if stat.S_ISCHR(mode) else "a file"
    return f"the console reads keys from its input, and it is {what}, not a terminal. {hint}"


def run_tui(settings: Settings | None, path: Path | None, args: argparse.Namespace,
            *, demo: bool = False) -> int:
    problem = terminal_problem()
    if problem is not None:
        print(f"opsconsole: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    # Textual writes frames and reads keys on threads of its own; at 1,000 targets the engine
    # keeps the loop's thread busy, and each write or key waited up to the default 5 ms switch
    # interval for the GIL, several times per screen change (bench_tui_keys: median 129 ms
    # at 5 ms, 85-96 ms at 1 ms). An idle thread never asks for the GIL, so this costs
    # nothing while the console is quiet.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    from console.app import OpsConsoleApp

    app = OpsConsoleApp(
        settings=settings,
        config_path=path,
        paths=data_paths(args, settings),
        demo=demo,
        demo_port=getattr(args, "port", None),
        demo_local=not getattr(args, "no_local", False),
        theme_name=getattr(args, "theme", None),
        history=not getattr(args, "no_history", False),
        read_only=getattr(args, "read_only", False),
        record=Path(args.record) if getattr(args, "record", None) else None,
        tune_gc=True,
    )
    from console.engine import eventloop

    eventloop.run(app.run_async())  # Textual's `app.run()`, on the console's loop
    if app.boot_error is not None:
        print(f"opsconsole: {app.boot_error}", file=sys.stderr)
        return EXIT_PROBLEM
    if app.return_code:
        return app.return_code
    return EXIT_OK
