"""The console itself: `opsconsole [--config FILE]`, `opsconsole demo` and `watch URL…`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from console.cli.common import EXIT_CONFIG, EXIT_OK, data_paths, load_or_report

if TYPE_CHECKING:
    from console.engine.config.schema import Settings


def cmd_tui(args: argparse.Namespace) -> int:
    loaded = load_or_report(args)
    if loaded is None:
        return EXIT_CONFIG
    settings, path = loaded
    return run_tui(settings, path, args)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.print_config:
        return asyncio.run(_print_demo_config(args))
    return run_tui(None, None, args, demo=True)


async def _print_demo_config(args: argparse.Namespace) -> int:
    from console.demo.stack import DemoStack, probe_local_services

    pg, redis = (None, None) if args.no_local else await probe_local_services()
    stack = DemoStack(port=args.port)
    sys.stdout.write(stack.config_toml(postgres_dsn=pg, redis_url=redis))
    return EXIT_OK


def run_tui(settings: Settings | None, path: Path | None, args: argparse.Namespace,
            *, demo: bool = False) -> int:
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
        tune_gc=True,
    )
    app.run()
    if app.return_code:
        return app.return_code
    return EXIT_OK
