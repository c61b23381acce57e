"""The `opsconsole` command: the TUI, the demo, and the headless `check`/`panels`/`validate`.

Imports stay lazy so `opsconsole --help` and the headless commands start fast and the TUI's
first frame is not held up by modules it does not need yet.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.engine.settings import Settings

EXIT_OK, EXIT_PROBLEM, EXIT_CONFIG = 0, 1, 2


def _add_target_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="URLs to check instead of a config: http(s)://, postgresql://, redis://")
    p.add_argument("--timeout", default="5s", help="per-check timeout for TARGETs (default 5s)")
    p.add_argument("--slow", default=None,
                   help="latency above which an HTTP TARGET is degraded, e.g. 300ms")
    p.add_argument("--interval", default="10s", help="poll interval for TARGETs (default 10s)")
    p.add_argument("--insecure", action="store_true",
                   help="do not verify TLS certificates of HTTP TARGETs (shown in the UI)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opsconsole",
        description="Keyboard-driven operations console. Without a command, opens the console "
        "on your config (--config FILE, else the user config directory).",
    )
    parser.add_argument("--config", "-c", metavar="FILE", help="config file (TOML)")
    parser.add_argument("--theme", help="opsconsole-dark, opsconsole-light, or an ANSI theme")
    parser.add_argument("--no-history", action="store_true",
                        help="do not load or save metric history")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the console on a built-in simulated stack")
    demo.add_argument("--print-config", action="store_true",
                      help="print the demo's config (a starting point) and exit")
    demo.add_argument("--no-local", action="store_true",
                      help="do not add the machine's PostgreSQL and Redis")
    demo.add_argument("--port", type=int, default=None, help="first port of the demo stack")
    demo.add_argument("--theme", default=argparse.SUPPRESS)

    val = sub.add_parser("validate", help="check a config file and report every error")
    val.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)

    check = sub.add_parser("check", help="check targets without the UI")
    check.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
    check.add_argument("--once", action="store_true", help="check each target once and exit")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    _add_target_flags(check)

    pan = sub.add_parser("panels", help="every panel's value against its target, after one "
                         "round of checks (a second for rates)")
    pan.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
    pan.add_argument("--dashboard", "-d", metavar="N|NAME",
                     help="one dashboard, by its number key (0: every panel) or its name")
    pan.add_argument("--json", action="store_true", help="machine-readable output")

    watch = sub.add_parser("watch", help="open the console on TARGETs given on the command line")
    _add_target_flags(watch)
    watch.add_argument("--theme", default=argparse.SUPPRESS)

    from console.alerts_cli import add_parsers

    add_parsers(sub)  # rules test, alerts

    from console.logs_cli import add_parser as add_logs_parser

    add_logs_parser(sub)  # logs QUERY

    pm = sub.add_parser("postmortem", help="write a Markdown post-mortem draft of an incident")
    pm.add_argument("incident", metavar="INCIDENT", help="incident id (a unique prefix will do)")
    pm.add_argument("--journal", metavar="FILE", help="journal file (default: user data dir)")
    pm.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")

    inc = sub.add_parser("incidents", help="open incidents from the journal: severity, age, "
                         "next step, overdue steps (exit 1 while any is open)")
    inc.add_argument("--all", action="store_true", help="resolved ones too")
    inc.add_argument("--since", default=None, help="with --all: opened within this period")
    inc.add_argument("--json", action="store_true", help="machine-readable output")
    inc.add_argument("--journal", metavar="FILE", help="journal file (default: user data dir)")

    rep = sub.add_parser("report", help="the playbook's KPIs from the journal and history")
    rep.add_argument("--since", default="7d", help="period to cover (default 7d)")
    rep.add_argument("--json", action="store_true", help="machine-readable output")
    rep.add_argument("--journal", metavar="FILE", help="journal file (default: user data dir)")
    rep.add_argument("--history", metavar="FILE",
                     help="metric history for uptime (default: the console's own)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "check":
            return cmd_check(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "panels":
            return cmd_panels(args)
        if args.command in ("rules", "alerts", "run"):
            from console.alerts_cli import cmd_alerting

            return cmd_alerting(args)
        if args.command == "logs":
            from console.logs_cli import cmd_logs

            return cmd_logs(args)
        if args.command == "postmortem":
            from console.incident_cli import cmd_postmortem

            return cmd_postmortem(args)
        if args.command == "incidents":
            from console.incident_cli import cmd_incidents

            return cmd_incidents(args)
        if args.command == "report":
            from console.incident_cli import cmd_report

            return cmd_report(args)
        if args.command == "watch":
            if not args.targets:
                print("opsconsole watch: name at least one TARGET URL", file=sys.stderr)
                return EXIT_CONFIG
            return run_tui(settings_from_targets(args), None, args)
        return cmd_tui(args)
    except KeyboardInterrupt:
        return 130


# -- config ------------------------------------------------------------------------------


def _print_config_error(exc: Exception) -> None:
    from console.engine.errors import ConfigError

    if isinstance(exc, ConfigError):
        n = len(exc.issues)
        print(f"opsconsole: the config has {n} problem{'s' if n != 1 else ''}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue.format()}", file=sys.stderr)
    else:
        print(f"opsconsole: {exc}", file=sys.stderr)


def _load(args: argparse.Namespace) -> tuple[Settings, Path]:
    from console.engine.config import find_config, load_config

    path = find_config(getattr(args, "config", None))
    return load_config(path), path


def _load_or_report(args: argparse.Namespace) -> tuple[Settings, Path] | None:
    """`_load`, or None once the config's problems are printed: the caller exits
    EXIT_CONFIG, so every command reports a bad config the same way."""
    from console.engine.errors import ConfigError

    try:
        return _load(args)
    except ConfigError as exc:
        _print_config_error(exc)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    from console.engine.config import find_config, validate_file
    from console.engine.errors import ConfigError

    try:
        path = find_config(getattr(args, "config", None))
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_PROBLEM
    from console.engine.playbooks import user_dir, validate_playbooks

    issues = validate_file(path) + validate_playbooks()  # playbooks: ours and the user's
    if issues:
        _print_config_error(ConfigError(issues))
        return EXIT_PROBLEM
    print(f"{path}: valid")
    pb_dir = user_dir()
    if pb_dir.is_dir():
        print(f"{pb_dir}: playbooks valid")
    return EXIT_OK


def settings_from_targets(args: argparse.Namespace) -> Settings:
    """A config from TARGET URLs, the kind inferred from the scheme.

    A password typed in a URL is moved into an environment variable and referenced as
    `${VAR}`, so it is registered as a secret and redacted like one from a config file,
    while the rest of the URL stays readable in the UI and in errors.
    """
    from urllib.parse import unquote, urlsplit

    from console.engine.settings import Settings

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
    panels = [{"title": f"{t['name']} latency", "target": t["name"], "metric": "latency_ms",
               "unit": "ms"} for t in targets]
    return Settings.model_validate({"targets": targets, "panels": panels})


# -- headless check ----------------------------------------------------------------------


def _status_glyph(status: str) -> str:
    return {"up": "✔", "degraded": "▲", "down": "✖"}.get(status, "?")


def _format_line(view: Any) -> str:
    from console.engine.sanitize import one_line

    lat = "-" if view.latency_ms is None else f"{view.latency_ms:.1f} ms"
    last = view.last
    note = ""
    if last is not None and (last.error or last.reasons):
        note = "  " + one_line(last.error or "; ".join(last.reasons), 160)
    return f"{_status_glyph(view.status.value)} {view.status.value:<8} {view.name:<28} " \
           f"{view.kind:<10} {lat:>10}{note}"


def _exit_for(views: Sequence[Any]) -> int:
    return EXIT_OK if all(v.status.value == "up" for v in views) else EXIT_PROBLEM


def cmd_check(args: argparse.Namespace) -> int:
    from console.engine.errors import ConfigError

    try:
        if args.targets:
            if getattr(args, "config", None):
                print("opsconsole check: give --config or TARGETs, not both", file=sys.stderr)
                return EXIT_CONFIG
            settings = settings_from_targets(args)
        else:
            settings, _ = _load(args)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_CONFIG
    except Exception as exc:  # pydantic errors from CLI flags
        print(f"opsconsole check: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_check(settings, once=args.once, as_json=args.json))


async def _check(settings: Settings, *, once: bool, as_json: bool) -> int:
    import orjson

    from console.engine.engine import Engine

    engine = Engine(settings)
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


# -- headless panels ---------------------------------------------------------------------

RATE_GAP_S = 1.0  # rates (prometheus rate/ratio/quantiles, xact_per_s, hit rates) need two


def cmd_panels(args: argparse.Namespace) -> int:
    """`opsconsole panels`: the dashboards' numbers once, for scripts and a quick look."""
    loaded = _load_or_report(args)
    if loaded is None:
        return EXIT_CONFIG
    settings, _ = loaded
    return asyncio.run(_panels(settings, args.dashboard, as_json=args.json))


def pick_dashboard(settings: Settings, wanted: str | None) -> tuple[str | None, list[Any]]:
    """(dashboard name, its panels) for `wanted`: its number as on the number keys (0 or
    None: every panel) or its name (case-insensitive, a unique prefix will do).

    Raises LookupError with the dashboards listed when nothing (or several) match.
    """
    boards = settings.dashboards
    listing = " · ".join(f"{i} {d.name}" for i, d in enumerate(boards, 1)) or "none"
    if wanted is None or wanted.strip() in ("", "0"):
        return None, list(settings.panels)
    text = wanted.strip()
    if text.isdigit():
        n = int(text)
        if not 0 < n <= len(boards):
            raise LookupError(f"no dashboard {n}; dashboards: {listing}")
        board = boards[n - 1]
    else:
        exact = [d for d in boards if d.name.casefold() == text.casefold()]
        found = exact or [d for d in boards if d.name.casefold().startswith(text.casefold())]
        if len(found) != 1:
            what = "several dashboards match" if found else "no dashboard named"
            raise LookupError(f"{what} {text!r}; dashboards: {listing}")
        board = found[0]
    by_key = {p.key: p for p in settings.panels}
    return board.name, [by_key[k] for k in board.panels if k in by_key]


_PANEL_GLYPH = {"ok": "✓", "warn": "!", "crit": "✖", "nodata": "·"}


def _limits(panel: Any) -> str:
    """`< 200 (crit ≥ 2000)`, or `> 80 (crit ≤ 70)` when higher is better."""
    from widgets._format import fmt_number

    good, bad = ("<", "≥") if panel.lower_is_better else (">", "≤")
    parts = []
    if panel.warn is not None:
        parts.append(f"{good} {fmt_number(panel.warn)}")
    if panel.crit is not None:
        crit = f"crit {bad} {fmt_number(panel.crit)}"
        parts.append(f"({crit})" if parts else crit)
    return " ".join(parts)


def _panel_lines(views: Sequence[Any], panels: Sequence[Any]) -> list[str]:
    """One line per panel, columns as wide as this board needs (so a board fits 80 columns)."""
    from console.engine.sanitize import one_line
    from widgets._format import fmt_number

    rows = []
    for view, panel in zip(views, panels, strict=True):
        value = fmt_number(view.value) + (
            f" {view.unit}" if view.unit and view.value is not None else "")
        rows.append((f"{_PANEL_GLYPH.get(view.state, '?')} {view.state:<6}",
                     one_line(view.title, 30), value, _limits(panel), view.target))
    tw = max((len(r[1]) for r in rows), default=0)
    vw = max((len(r[2]) for r in rows), default=0)
    lw = max((len(r[3]) for r in rows), default=0)
    return [f"{a} {t:<{tw}}  {v:>{vw}}  {lim:<{lw}}  {target}".rstrip()
            for a, t, v, lim, target in rows]


async def _panels(settings: Settings, wanted: str | None, *, as_json: bool) -> int:
    import orjson

    from console.engine.engine import Engine

    engine = Engine(settings)  # merges the ready-made dashboards, as in the console
    try:
        name, panels = pick_dashboard(engine.settings, wanted)
    except LookupError as exc:
        print(f"opsconsole panels: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    await engine.start(poll=False)
    try:
        await engine.check_once()
        views = engine.panel_views(panels)
        if any(v.state == "nodata" for v in views):  # a rate needs a previous sample
            await asyncio.sleep(RATE_GAP_S)
            await engine.check_once()
            views = engine.panel_views(panels)
        status = {v.name: v.status.value for v in engine.snapshot()}
    finally:
        await engine.stop()
    member: dict[str, list[str]] = {}
    for d in engine.settings.dashboards:
        for k in d.panels:
            member.setdefault(k, []).append(d.name)
    if as_json:
        rows = [{
            "key": v.key, "title": v.title, "target": v.target, "metric": v.metric,
            "unit": v.unit, "value": v.value, "state": v.state, "warn": v.warn, "crit": v.crit,
            "lower_is_better": p.lower_is_better, "target_status": status.get(v.target),
            "dashboards": member.get(v.key, []),
        } for v, p in zip(views, panels, strict=True)]
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(f"── {name or 'every panel'} " + "─" * max(0, 60 - len(name or "every panel")))
        for line in _panel_lines(views, panels):
            print(line)
    sys.stdout.flush()
    bad = any(v.state in ("warn", "crit") or status.get(v.target) == "down" for v in views)
    return EXIT_PROBLEM if bad else EXIT_OK


# -- the TUI -----------------------------------------------------------------------------


def cmd_tui(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args)
    if loaded is None:
        return EXIT_CONFIG
    settings, path = loaded
    return run_tui(settings, path, args)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.print_config:
        return asyncio.run(_print_demo_config(args))
    return run_tui(None, None, args, demo=True)


async def _print_demo_config(args: argparse.Namespace) -> int:
    from console.engine.demo import DemoStack, probe_local_services

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
        demo=demo,
        demo_port=getattr(args, "port", None),
        demo_local=not getattr(args, "no_local", False),
        theme_name=getattr(args, "theme", None),
        history=not getattr(args, "no_history", False),
    )
    app.run()
    if app.return_code:
        return app.return_code
    return EXIT_OK
