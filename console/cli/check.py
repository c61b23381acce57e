"""`opsconsole check` and `watch`: targets from a config or from URLs, checked without the UI."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from console.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEM,
    heartbeat_pings,
    load_settings,
    print_config_error,
)

if TYPE_CHECKING:
    from pathlib import Path

    from console.engine.config.schema import Settings


def add_target_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="URLs to check instead of a config: http(s)://, postgresql://, redis://")
    p.add_argument("--timeout", default="5s", help="per-check timeout for TARGETs (default 5s)")
    p.add_argument("--slow", default=None,
                   help="latency above which an HTTP TARGET is degraded, e.g. 300ms")
    p.add_argument("--interval", default="10s", help="poll interval for TARGETs (default 10s)")
    p.add_argument("--insecure", action="store_true",
                   help="do not verify TLS certificates of HTTP TARGETs (shown in the UI)")


def target_fields(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each TARGET URL as a target's fields, the kind inferred from the scheme.

    A password typed in a URL is moved into an environment variable and referenced as
    `${VAR}`, so it is registered as a secret and redacted like one from a config file,
    while the rest of the URL stays readable in the UI and in errors.
    """
    from urllib.parse import unquote, urlsplit

    targets: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, url in enumerate(args.targets, 1):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if parts.password:
            var = f"OPSCONSOLE_CLI_PASSWORD_{i}"
            os.environ[var] = unquote(parts.password)
            userinfo = f"{parts.username or ''}:${{{var}}}@"
            url = url.replace(f"{parts.netloc.rpartition('@')[0]}@", userinfo, 1)
        host = parts.hostname or "target"
        name = host + (f":{parts.port}" if parts.port else "")
        if scheme in ("http", "https") and parts.path not in ("", "/"):
            name += parts.path.rstrip("/")
        name = "".join(c if c.isalnum() or c in "_.:@-" else "-" for c in name)[:60]
        base, n = name, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.add(name)
        common = {"name": name, "timeout": args.timeout, "interval": args.interval}
        if scheme in ("http", "https"):
            t: dict[str, Any] = {**common, "kind": "http", "url": url,
                                 "insecure": args.insecure}
            if args.slow:
                t["slow"] = args.slow
        elif scheme in ("postgres", "postgresql"):
            t = {**common, "kind": "postgres", "dsn": url}
        elif scheme in ("redis", "rediss"):
            t = {**common, "kind": "redis", "url": url}
        else:
            raise SystemExit(
                f"opsconsole: cannot tell the kind of {url!r}; use http://, https://, "
                "postgresql:// or redis://"
            )
        targets.append(t)
    return targets


def settings_from_targets(args: argparse.Namespace) -> Settings:
    """A config from TARGET URLs (`watch`, `check` without `--once`), each target and panel
    validated by its own model."""
    from console.engine.config.schema import TARGET_KINDS, AnyTarget, Panel, Settings

    targets = target_fields(args)
    panels = [{"title": f"{t['name']} latency", "target": t["name"], "metric": "latency_ms",
               "unit": "ms"} for t in targets]
    # The config around them is made without validating it again (names are unique and
    # every panel names its target by construction): the config's whole validator is most
    # of a one-shot check's start-up.
    return Settings.model_construct(
        targets=[cast(AnyTarget, TARGET_KINDS[t["kind"]].model_validate(t)) for t in targets],
        panels=[Panel.model_validate(p) for p in panels])


def _format_line(view: Any) -> str:
    from console.engine.text.fmt import status_glyph
    from console.engine.text.sanitize import one_line

    lat = "-" if view.latency_ms is None else f"{view.latency_ms:.1f} ms"
    last = view.last
    note = ""
    if last is not None and (last.error or last.reasons):
        note = "  " + one_line(last.error or "; ".join(last.reasons), 160)
    return f"{status_glyph(view.status.value)} {view.status.value:<8} {view.name:<28} " \
           f"{view.kind:<10} {lat:>10}{note}"


def _exit_for(views: Sequence[Any]) -> int:
    return EXIT_OK if all(v.status.value == "up" for v in views) else EXIT_PROBLEM


def cmd_check(args: argparse.Namespace) -> int:
    from console.engine.errors import ConfigError

    pings = None
    try:
        if args.targets:
            if getattr(args, "config", None):
                print("opsconsole check: give --config or TARGETs, not both", file=sys.stderr)
                return EXIT_CONFIG
            settings = None
            if args.once:
                from console.cli.plaincheck import plain_checks

                settings = plain_checks(args)
            if settings is None:
                settings = settings_from_targets(args)
        else:
            settings, _ = load_settings(args)
        pings = heartbeat_pings(args, settings)
    except ConfigError as exc:
        print_config_error(exc)
        return EXIT_CONFIG
    except Exception as exc:  # pydantic errors from CLI flags
        print(f"opsconsole check: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    import asyncio  # not at the top: `build_parser` imports this module for every command

    return asyncio.run(_check(settings, once=args.once, as_json=args.json, pings=pings))


async def _check(settings: Settings, *, once: bool, as_json: bool,
                 pings: Path | None = None) -> int:
    import orjson

    from console.engine.scheduler import Scheduler

    # one round of checks needs no metric history: no store, no numpy (bench_cli)
    engine = Scheduler(settings, pings=pings, keep_metrics=not once)
    await engine.start(poll=not once)
    try:
        if once:
            await engine.check_once()
            views = engine.snapshot()
            if as_json:
                sys.stdout.buffer.write(
                    orjson.dumps([v.to_json() for v in views], option=orjson.OPT_INDENT_2)
                    + b"\n"
                )
            else:
                for v in views:
                    print(_format_line(v))
            sys.stdout.flush()
            return _exit_for(views)
        return await _follow(engine, as_json)
    finally:
        await engine.stop()


async def _follow(engine: Any, as_json: bool) -> int:
    """Keep polling; print a line (or a JSON object) whenever a target's status changes."""
    import asyncio
    import signal

    import orjson

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    seen: dict[str, str] = {}

    def on_result(result: Any) -> None:
        if seen.get(result.target) == result.status.value:
            return
        seen[result.target] = result.status.value
        view = next(v for v in engine.snapshot() if v.name == result.target)
        try:
            if as_json:
                sys.stdout.buffer.write(orjson.dumps(view.to_json()) + b"\n")
                sys.stdout.flush()
            else:
                print(_format_line(view), flush=True)
        except BrokenPipeError:
            stop.set()

    engine.subscribe(on_result)
    await stop.wait()
    return _exit_for(engine.snapshot())





def cmd_watch(args: argparse.Namespace) -> int:
    """The console on TARGET URLs given on the command line, without a config file."""
    if not args.targets:
        print("opsconsole watch: name at least one TARGET URL", file=sys.stderr)
        return EXIT_CONFIG
    from console.cli.tui import run_tui

    return run_tui(settings_from_targets(args), None, args)
