"""`opsconsole replay FILE`: a recording (`--record FILE`) on the console's screens, read-only,
with a time cursor; `--json` prints the state at `--at` without a screen."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from console.cli.common import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEM


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = sub.add_parser("replay", help="open a recording (opsconsole --record FILE) on the "
                        "same screens, read-only, from --at, at --speed")
    rp.add_argument("file", metavar="FILE")
    rp.add_argument("--at", help="start here: HH:MM[:SS] UTC on the recording's day (or an "
                    "ISO date-time); default its start (with --json: its end)")
    rp.add_argument("--speed", type=float, default=1.0,
                    help="recorded seconds per second (default 1; 10 plays ten times faster)")
    rp.add_argument("--json", action="store_true",
                    help="no screen: print the targets and alerts as they were at --at")
    rp.add_argument("--theme", default=argparse.SUPPRESS)


def _load(args: argparse.Namespace) -> tuple[Any, Any, float | None] | None:
    from console.engine.config.schema import Settings
    from console.engine.signals.recording import open_recording, parse_at

    try:
        rec = open_recording(Path(args.file))
        at = parse_at(args.at, rec) if args.at else None
    except ValueError as exc:
        print(f"opsconsole replay: {exc}", file=sys.stderr)
        return None
    if not 0 < args.speed <= 10_000:
        print("opsconsole replay: --speed must be above 0 (and at most 10000)", file=sys.stderr)
        return None
    try:
        settings = Settings.model_validate(rec.config)
    except ValueError as exc:
        print(f"opsconsole replay: the recorded config does not load: {exc}", file=sys.stderr)
        return None
    if rec.torn:
        print(f"opsconsole replay: {rec.torn} unreadable line(s) skipped (a recording cut "
              "short)", file=sys.stderr)
    return rec, settings, at


def cmd_replay(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return EXIT_CONFIG
    rec, settings, at = loaded
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="opsconsole-replay-"))
    try:
        if args.json:
            import asyncio

            return asyncio.run(_state_at(rec, settings, at, scratch))
        return _tui(rec, settings, at, args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def _state_at(rec: Any, settings: Any, at: float | None, scratch: Path) -> int:
    import orjson

    from console.engine.paths import DataPaths
    from console.engine.runtime import Runtime
    from console.engine.signals.recording import ReplayDriver

    driver = ReplayDriver(rec, None, at=rec.started)
    runtime = Runtime(settings, DataPaths(scratch, "replay"), clock=driver.clock,
                      history=False, poll=False, notifications=False, incidents=False,
                      lease=False, read_only=True)
    driver.runtime = runtime
    await runtime.start()
    try:
        await driver.seek(rec.end if at is None else at)
        now = driver.clock()
        alerts = runtime.alerting.alerts.current() if runtime.alerting else []
        doc = {
            "recording": str(rec.path), "at": now, "started": rec.started, "end": rec.end,
            "targets": [{"name": v.name, "kind": v.kind, "status": v.status.value,
                         "since": v.since, "latency_ms": v.latency_ms,
                         "error": v.last.error if v.last else None}
                        for v in runtime.scheduler.snapshot(now)],
            "alerts": [a.to_json(now) for a in alerts],
            "deploys": runtime.deploys(now - 3600, now),
        }
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    finally:
        await runtime.stop()
    return EXIT_OK


def _tui(rec: Any, settings: Any, at: float | None, args: argparse.Namespace,
         scratch: Path) -> int:
    from console.cli.tui import terminal_problem

    problem = terminal_problem()
    if problem is not None:
        print(f"opsconsole: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    from console.app import OpsConsoleApp
    from console.engine.paths import DataPaths
    from console.engine.signals.recording import ReplayDriver

    driver = ReplayDriver(rec, None, at=rec.started if at is None else at, speed=args.speed)
    app = OpsConsoleApp(settings=settings, paths=DataPaths(scratch, "replay"),
                        theme_name=getattr(args, "theme", None), history=False,
                        read_only=True, replay=driver)
    from console.engine import eventloop

    eventloop.run(app.run_async())  # Textual's `app.run()`, on the console's loop
    if app.boot_error is not None:
        print(f"opsconsole: {app.boot_error}", file=sys.stderr)
        return EXIT_PROBLEM
    return app.return_code or EXIT_OK
