"""`opsconsole rules test FILE` and `opsconsole alerts`: the alerting engine from the shell.

Kept out of cli.py so neither the TUI's start-up nor `--help` imports the rules engine.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from console.engine.config.schema import Settings
    from console.engine.model import AlertEpisode
    from console.engine.paths import DataPaths

from console.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_PROBLEM,
    data_paths,
    heartbeat_pings,
    stdout_gone,
)


def add_parsers(sub: Any) -> None:
    """Add `rules test` and `alerts` to the main parser's subcommands."""
    rules = sub.add_parser("rules", help="work with alert rules")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION")
    rtest = rules_sub.add_parser(
        "test", help="replay rules on a synthetic series and print when they would have fired "
        "(like promtool test rules)")
    rtest.add_argument("file", metavar="FILE", help="a rules test file (TOML)")
    rtest.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS,
                       help="also use this config's rules when FILE has no [[rules]]")
    rtest.add_argument("--json", action="store_true", help="machine-readable output")
    from console.cli.promrules import add_parsers as add_promrules

    add_promrules(rules_sub)  # rules import / rules export: Prometheus rule files

    alerts = sub.add_parser(
        "alerts", help="the alerts of the console evaluating this data directory (or the "
        "shared state); with none running, check every target once and list the alerts the "
        "rules give (rules needing several failing samples show as pending)")
    alerts.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
    alerts.add_argument("--json", action="store_true", help="machine-readable output")
    alerts.add_argument("--history", action="store_true",
                        help="list alert episodes instead (open ones, then resolved, newest "
                        "first) from the alert history; checks nothing")
    alerts.add_argument("--since", metavar="DURATION", default="24h",
                        help="with --history: how far back (default 24h, at most 30d read)")

    run = sub.add_parser(
        "run", help="poll, evaluate rules and send notifications without the UI (--headless), "
        "for a service manager; prints one JSON line per notification")
    run.add_argument("--headless", action="store_true", required=True,
                     help="no UI (the console itself is `opsconsole` without a command)")
    run.add_argument("--config", "-c", metavar="FILE", default=argparse.SUPPRESS)
    run.add_argument("--record", metavar="FILE", default=argparse.SUPPRESS,
                     help="write what it receives to FILE (.gz, .zst) for `opsconsole replay`")


def cmd_alerting(args: argparse.Namespace) -> int:
    if args.command == "run":
        return cmd_run(args)
    return cmd_rules(args) if args.command == "rules" else cmd_alerts(args)


def cmd_rules(args: argparse.Namespace) -> int:
    import orjson

    from console.cli.common import load_or_report
    from console.engine.alerting.ruletest import format_report, load_rule_test, run_rule_test

    command = getattr(args, "rules_command", None)
    if command in ("import", "export"):
        from console.cli import promrules

        return promrules.cmd_import(args) if command == "import" else promrules.cmd_export(args)
    if command != "test":
        print("opsconsole rules: say what to do, e.g. opsconsole rules test FILE "
              "(or import FILE, export)", file=sys.stderr)
        return EXIT_CONFIG
    extra = []
    if getattr(args, "config", None):
        loaded = load_or_report(args)
        if loaded is None:
            return EXIT_CONFIG
        extra = list(loaded[0].rules)
    try:
        test = load_rule_test(Path(args.file), extra)
    except ValueError as exc:
        print(f"opsconsole rules test: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    report = run_rule_test(test)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2)
                                + b"\n")
    else:
        print(format_report(test, report))
    sys.stdout.flush()
    return EXIT_PROBLEM if report.failures else EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    from console.cli.common import load_or_report

    demo = getattr(args, "demo_world", False) and not getattr(args, "config", None)
    if getattr(args, "history", False) and not getattr(args, "config", None) and not demo:
        return _history_without_config(args)
    if demo:
        demo_settings = _demo_settings(args)
        if demo_settings is None:
            return EXIT_CONFIG
        settings = demo_settings
    else:
        loaded = load_or_report(args)
        if loaded is None:
            return EXIT_CONFIG
        settings, _ = loaded
    paths = data_paths(args, settings)
    if getattr(args, "history", False):
        return _history(settings, paths, since=args.since, as_json=args.json)
    # A console evaluating this data directory (or the shared state) knows more than one
    # check can: its `for` timers, rates over two samples. During a live P0 a walk read
    # "pending" and "no data" here beside the console's FIRING.
    live = _live_alerts(settings, paths, as_json=args.json)
    if live is not None:
        return live
    if demo:
        print("opsconsole alerts --demo: the demo is not running (start it with `opsconsole "
              "demo`); `--history --demo` lists what it recorded", file=sys.stderr)
        return EXIT_CONFIG
    import asyncio  # here: `build_parser` imports this module for every command

    return asyncio.run(_alerts(settings, as_json=args.json,
                               pings=heartbeat_pings(args, settings)))


def _demo_settings(args: argparse.Namespace) -> Settings | None:
    """The running demo's config, as it wrote it in its world (its rules name its alerts)."""
    from console.cli.common import demo_not_run, print_config_error
    from console.engine.config.loader import load_config
    from console.engine.errors import ConfigError

    path = data_paths(args).demo_config
    if not path.is_file():
        print(demo_not_run("alerts", path.parent), file=sys.stderr)
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        print_config_error(exc)
        return None


def _live_alerts(settings: Settings, paths: DataPaths, *, as_json: bool) -> int | None:
    """The alerts of the console that evaluates here, printed as `_alerts` prints its own
    (with who evaluates them); None, printing nothing, when no console does."""
    import time

    from console.engine.storage.lease import Lease

    now = time.time()
    if settings.state.backend == "postgres":
        snapshot, _, owner = _shared_history(settings, now, now) or (None, [], None)
        if owner is None:
            return None
        where = "the shared alert state"
    else:
        try:
            owner = Lease(paths.lease).holder()
        except OSError:  # an unreadable lease: nobody known to evaluate, so check once
            owner = None
        if owner is None:
            return None
        where = str(paths.alert_state)
        from console.engine.alerting.statefile import read_state

        try:
            snapshot = read_state(paths.alert_state)
        except (OSError, ValueError) as exc:
            print(f"opsconsole alerts: {where} unreadable ({exc}); checking once instead",
                  file=sys.stderr)
            return None
    from console.engine.alerting.lifecycle import Alerts
    from console.engine.alerting.rules import RuleSet

    alerts = Alerts(settings.alerting)
    if snapshot is not None:
        try:
            alerts.restore(snapshot, RuleSet.from_settings(settings, _advice()).rules)
        except (ValueError, KeyError, TypeError) as exc:
            print(f"opsconsole alerts: {where} unreadable ({exc}); checking once instead",
                  file=sys.stderr)
            return None
    return _print_alerts(alerts.current(), now, as_json=as_json, evaluator=owner)


def _history_without_config(args: argparse.Namespace) -> int:
    """`alerts --history` reads the data directory: a config is used when there is one
    (its rules name the open alerts; its `data_dir`), the shipped rules otherwise."""
    from console.cli.common import load_or_report
    from console.engine.config.locate import default_config_path
    from console.engine.config.schema import Settings

    if default_config_path().is_file():
        loaded = load_or_report(args)
        if loaded is None:
            return EXIT_CONFIG
        settings = loaded[0]
    else:
        settings = Settings.model_validate({})
    return _history(settings, data_paths(args, settings), since=args.since,
                    as_json=args.json)


def _history(settings: Settings, paths: DataPaths, *, since: str, as_json: bool) -> int:
    """Episodes from the data dir: open ones from alerts.json (what the evaluator saved) and
    resolved ones from alerts-history.jsonl; read only, so safe beside a running console."""
    import time

    import orjson

    from console.engine.alerting.explain import episode_peak
    from console.engine.alerting.history import (
        describe_duration,
        ongoing,
        read_episodes,
    )
    from console.engine.alerting.lifecycle import Alerts
    from console.engine.alerting.rules import RuleSet
    from console.engine.alerting.statefile import read_state
    from console.engine.lang.durations import parse_duration
    from console.engine.storage.lease import Lease, describe_owner
    from console.engine.text.fmt import EPISODE_GLYPH
    from console.engine.text.sanitize import one_line

    try:
        window = parse_duration(since)
    except ValueError as exc:
        print(f"opsconsole alerts: --since: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    now = time.time()
    state_path = paths.alert_state
    alerts = Alerts(settings.alerting)
    lo = now - window
    shared = _shared_history(settings, lo, now)
    if shared is not None:
        snapshot, done, owner = shared
        if snapshot is not None:
            try:
                alerts.restore(snapshot, RuleSet.from_settings(settings).rules)
            except (ValueError, KeyError, TypeError) as exc:
                print(f"opsconsole alerts: the shared alert state is unreadable ({exc})",
                      file=sys.stderr)
    else:
        try:
            saved = read_state(state_path)  # the snapshot and the changes since
            if saved is not None:
                alerts.restore(saved, RuleSet.from_settings(settings).rules)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"opsconsole alerts: {state_path} unreadable ({exc})", file=sys.stderr)
    open_eps = ongoing(alerts.alerts(), now)
    if shared is None:
        done = read_episodes(paths.alert_history, since=lo, now=now, limit=10_000)
    keys = {e.get("key") for e in done}
    done += [e for e in alerts.closed  # resolved but not yet in the file (owner crashed)
             if e.get("key") not in keys and float(e.get("resolved_at") or 0) >= lo]
    # a history line without resolved_at (hand-edited, truncated) sorts last, not a crash
    done.sort(key=lambda e: float(e.get("resolved_at") or 0.0), reverse=True)
    if shared is None:
        owner = Lease(paths.lease).holder()
    if as_json:
        doc = {"now": now, "since": lo, "evaluator": owner, "episodes": open_eps + done}
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
        return EXIT_OK
    print(describe_owner(owner) if owner is not None
          else "no console is evaluating alerts right now")
    if not open_eps and not done:
        print(f"no alert fired in the last {since}")
    for ep in open_eps + done:
        ack = ""
        if ep.get("acknowledged_at") is not None:
            ack = f" acked by {one_line(str(ep.get('acknowledged_by') or '?'), 20)}"
        peak = episode_peak(ep)
        extra = (f" peak {peak}" if peak else "") + \
            (" flapping" if ep.get("flapping") else "") + ack
        fired = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ep["fired_at"])))
        mark = EPISODE_GLYPH[bool(ep.get("ongoing"))]
        print(f"{mark} {fired} {describe_duration(ep):<16} {ep.get('severity', '')} "
              f"{one_line(str(ep.get('rule', '')), 26):<26} "
              f"{one_line(str(ep.get('target', '')), 20):<20}{extra}")
    sys.stdout.flush()
    return EXIT_OK


def _shared_history(settings: Settings, since: float, now: float
                    ) -> tuple[dict[str, Any] | None, list[AlertEpisode],
                               dict[str, Any] | None] | None:
    """(alert state, resolved episodes, evaluator) from the shared state, when `[state]`
    says postgres; None for the files. An unreachable database is said, and reads as
    empty."""
    if settings.state.backend != "postgres":
        return None
    from console.engine.state.pgconn import describe
    from console.engine.state.reader import PostgresReader

    reader = PostgresReader(settings.state)
    try:
        return (reader.alert_snapshot(), reader.episodes(since, 10_000), reader.evaluator())
    except Exception as exc:
        print(f"opsconsole alerts: cannot read {reader.where}: "
              f"{describe(exc, settings.state.dsn or '')}", file=sys.stderr)
        return None, [], None
    finally:
        reader.close()


async def _alerts(settings: Settings, *, as_json: bool, pings: Path | None = None) -> int:
    import asyncio

    from console.engine.alerting.lifecycle import AlertEngine
    from console.engine.alerting.rules import RuleSet
    from console.engine.scheduler import Scheduler

    engine = Scheduler(settings, pings=pings)
    await engine.start(poll=False)
    remote: Any = None
    try:
        # the team's Alertmanagers and Prometheus servers; their clients (the Prometheus
        # API, Alertmanager's) are imported only for a config that names one
        if settings.wants_remote_alerts:
            from console.engine.alerting.remote import RemoteAlerts

            remote = RemoteAlerts(settings, engine.http_clients, clock=engine.clock)
            await remote.start(poll=False)
            await asyncio.gather(engine.check_once(), remote.refresh())
        else:
            await engine.check_once()
        now = engine.clock()
        ruleset = RuleSet.from_settings(settings, _advice())
        alerting = AlertEngine(ruleset, engine.store, settings.alerting, clock=engine.clock,
                               results=engine.last_result)
        alerting.run(now)
        current = alerting.alerts.current()
        no_data = [(r.name, ruleset.expr(r).metric) for r in ruleset.unmatched(engine.store)]
    finally:
        await engine.stop()
    return _print_alerts(current, now, as_json=as_json, no_data=no_data, remote=remote)


def _print_alerts(current: list[Any], now: float, *, as_json: bool,
                  evaluator: dict[str, Any] | None = None,
                  no_data: list[tuple[str, str]] | None = None, remote: Any = None) -> int:
    """`alerts`' output, from one check here (`no_data` known) or from the console that
    evaluates (`evaluator`: who); exit 1 while any alert fires."""
    import orjson

    from console.engine.alerting.lifecycle import AlertState
    from console.engine.storage.lease import describe_owner
    from console.engine.text.fmt import ALERT_GLYPH
    from console.engine.text.sanitize import one_line

    firing = any(a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED) for a in current)
    remote_alerts = remote.alerts() if remote is not None else []
    firing = firing or any(a.firing and not a.silenced for a in remote_alerts)
    if as_json:
        doc: dict[str, Any] = {"checked_at": now, "alerts": [a.to_json(now) for a in current]}
        if evaluator is not None:
            doc["evaluator"] = evaluator
        else:
            doc["no_data_rules"] = [{"rule": n, "metric": m} for n, m in no_data or []]
        if remote is not None:
            doc["remote"] = remote.to_json(now)
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        if evaluator is not None:
            print(f"{describe_owner(evaluator)}: its alerts now")
        if not current:
            print("no alerts")
        for a in current:
            state = a.state.value.upper() if a.state == AlertState.FIRING else a.state.value
            print(f"{ALERT_GLYPH.get(a.state.value, ' ')} {state:<12} {a.rule.severity} "
                  f"{a.rule.name:<26} {a.target:<20} {one_line(a.text(), 300)}")
            print(f"  {'':<12} why: {one_line(a.why(now), 160)}")
        if no_data:
            names = ", ".join(f"{n} ({m})" for n, m in no_data)
            print(f"no data (no target reports the metric): {names}")
        if remote is not None:
            _print_remote(remote, now)
    sys.stdout.flush()
    return EXIT_PROBLEM if firing else EXIT_OK


def _print_remote(remote: Any, now: float) -> None:
    """The team's alerts after the console's: source, state, severity, name, labels."""
    from console.engine.text.fmt import format_duration
    from console.engine.text.sanitize import one_line

    alerts = remote.alerts()
    print(f"team alerts: {len(alerts)}" if alerts else "team alerts: none")
    for a in alerts:
        age = format_duration(max(0.0, now - a.since)) if a.since is not None else "-"
        labels = " ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k != "alertname")
        print(f"  {one_line(a.source, 24):<24} {a.display_state():<10} {a.severity or '--':<2} "
              f"{one_line(a.name, 26):<26} {age:>7}  {one_line(labels, 80)}")
    for source, errors in sorted(remote.errors.items()):
        for e in errors:
            print(f"  ⚠ {source}: {one_line(e, 200)}")


def _advice() -> Any:
    """The playbooks' "what to do" lookup for rules (None when they cannot be read: the
    alerts still say what is wrong and why)."""
    from console.engine.errors import ConfigError
    from console.engine.incidents.playbooks import load_playbooks

    try:
        return load_playbooks().advice
    except ConfigError as exc:
        print(f"opsconsole: playbooks: {exc.issues[0].format()}", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from console.cli.common import load_or_report
    from console.engine.config.envref import MissingEnv

    loaded = load_or_report(args)
    if loaded is None:
        return EXIT_CONFIG
    settings, config_path = loaded
    from console.engine import eventloop

    try:
        return eventloop.run(_run_headless(settings, data_paths(args, settings), config_path,
                                         getattr(args, "record", None)))
    except MissingEnv as exc:
        print(f"opsconsole run: {exc}", file=sys.stderr)
        return EXIT_CONFIG


async def _run_headless(settings: Settings, paths: DataPaths, config_path: Path,
                        record: str | None = None) -> int:
    """Until SIGINT/SIGTERM/SIGHUP: the same runtime as the TUI (history kept, config
    watched, rules, lifecycle, outbox), one JSON line per notification on stdout."""
    import asyncio
    import signal

    import orjson

    from console.engine.runtime import Applied, Runtime

    runtime = Runtime(settings, paths, config_path=config_path, role="headless",
                      record=Path(record) if record else None, tune_gc=True)

    printing = True

    def show(notes: list[Any]) -> None:
        nonlocal printing
        if not printing:
            return
        try:
            for n in notes:
                sys.stdout.buffer.write(orjson.dumps(n.to_json()) + b"\n")
            sys.stdout.flush()
        except OSError as exc:  # the reader of stdout went away (a pipe, an SSH hang-up)
            printing = False
            stdout_gone()
            say("warning", f"standard output is closed ({exc.strerror or exc}): "
                "notifications are no longer printed; they are still sent to their "
                "receivers and kept in the alert history")

    def say(level: str, text: str) -> None:
        with contextlib.suppress(OSError):  # stderr gone too (a hang-up): no one to tell
            print(f"opsconsole: {level}: {text}", file=sys.stderr, flush=True)

    def reloaded(applied: Applied) -> None:
        with contextlib.suppress(OSError):
            print(f"opsconsole: {applied.describe()}", file=sys.stderr, flush=True)

    runtime.on_notice(say)
    runtime.on_notifications(show)  # before start: an alert can fire while it starts
    runtime.on_reload(reloaded)
    runtime.on_config_error(lambda text: say("error", text))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        service = runtime.alerting
        assert service is not None
        print(f"opsconsole: running headless, {len(service.ruleset.rules)} rules on "
              f"{len(settings.targets)} targets, data in {paths.root}", file=sys.stderr,
              flush=True)
        if not settings.targets:  # an empty or truncated config: say so, keep running
            print("opsconsole: warning: the config has no targets; nothing will be "
                  "checked until it has (edits are picked up live)", file=sys.stderr,
                  flush=True)
        if service.following:
            print(f"opsconsole: following: {service.owner_label()}; this process takes over "
                  "evaluation and notifications if that one stops", file=sys.stderr,
                  flush=True)
        await stop.wait()
    finally:
        await runtime.stop()
    return EXIT_OK
