"""`opsconsole event`, `events` and `ping`: what the console is told rather than polls.

All three work on the data directory's files, not on a running console: `event` and `ping`
append to journals a running console follows (so they work whether or not one runs, and
reach every console on the directory), `events` reads. `ping` checks the NAME against the
config when there is one, so a typo is an error rather than a ping nobody watches.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from console.cli.common import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEM, data_paths


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ev = sub.add_parser("event", help="record an event (a deploy, a config change...): a P3 "
                        "notice for a deploy, a marker on the service's charts, a line of "
                        "the incident timeline")
    ev.add_argument("text", metavar="TEXT", help='e.g. "Deployed v1.5.2 to production"')
    ev.add_argument("--kind", default="info",
                    help="deploy, rollback, config, info... (default info)")
    ev.add_argument("--service", help="the service it concerns (a target's group or name)")
    ev.add_argument("--version", help="the version deployed")
    ev.add_argument("--link", help="a URL (the release, the pipeline run)")
    ev.add_argument("--json", action="store_true", help="print the recorded event as JSON")

    evs = sub.add_parser("events", help="events recorded (deploys, webhooks...), oldest first")
    evs.add_argument("--since", default="24h", help="period to cover (default 24h)")
    evs.add_argument("--kind", action="append", help="only this kind (repeatable)")
    evs.add_argument("--service", help="only this service (and events naming none)")
    evs.add_argument("--json", action="store_true", help="machine-readable output")

    ping = sub.add_parser("ping", help="a heartbeat check-in for the job NAME (a target of "
                          'kind "heartbeat")')
    ping.add_argument("name", metavar="NAME")
    ping.add_argument("signal", nargs="?", default="success",
                      choices=["success", "start", "fail"],
                      help="success (default), start (a run begins: run time is measured "
                      "to its success) or fail (the job failed: down at once)")
    ping.add_argument("--note", help="a short text kept with the ping (an exit status...)")


def cmd_event(args: argparse.Namespace) -> int:
    import orjson

    from console.engine.signals.events import make_event, record_event
    from console.engine.text.redact import describe_exception

    try:
        entry = make_event(args.text, kind=args.kind, service=args.service,
                           version=args.version, link=args.link, source="cli")
    except ValueError as exc:
        print(f"opsconsole event: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    paths = data_paths(args)
    try:
        paths.ensure()
        saved = record_event(paths.events, entry)
    except OSError as exc:
        print(f"opsconsole event: not recorded in {paths.events}: {describe_exception(exc)}",
              file=sys.stderr)
        return EXIT_PROBLEM
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(saved) + b"\n")
    else:
        print(f"recorded {saved['kind']} event {saved['id']} in {paths.events}")
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    import orjson

    from console.engine.lang.durations import parse_duration
    from console.engine.signals.events import read_events
    from console.engine.text.fmt import format_utc
    from console.engine.text.sanitize import one_line

    try:
        since = time.time() - parse_duration(args.since)
    except ValueError as exc:
        print(f"opsconsole events: --since: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    paths = data_paths(args)
    try:
        rows = read_events(paths.events, since=since, kinds=args.kind, service=args.service)
    except OSError as exc:
        print(f"opsconsole events: {paths.events}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_PROBLEM
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    if not rows:
        print(f"no events in the last {args.since}")
    for e in rows:
        what = " ".join(one_line(str(x), 40) for x in (e.get("service"), e.get("version"))
                        if x)
        print(f"{format_utc(float(e['ts']))}  {one_line(e.get('kind'), 10):<10} "
              f"{what + '  ' if what else ''}{one_line(e.get('text'), 200)}")
    return EXIT_OK


def cmd_ping(args: argparse.Namespace) -> int:
    from console.cli.common import load_settings
    from console.engine.errors import ConfigError
    from console.engine.probes.heartbeat import make_ping, record_ping
    from console.engine.text.redact import describe_exception

    settings = None
    with contextlib.suppress(ConfigError):  # no (valid) config: the ping is recorded anyway
        settings, _ = load_settings(args)
    if settings is not None and not any(
            t.name == args.name and t.kind == "heartbeat" for t in settings.targets):
        names = [t.name for t in settings.targets if t.kind == "heartbeat"]
        print(f"opsconsole ping: no heartbeat named {args.name!r} in the config"
              + (f" (heartbeats: {', '.join(names)})" if names else ""), file=sys.stderr)
        return EXIT_CONFIG
    paths = data_paths(args, settings)
    try:
        paths.ensure()
        record_ping(paths.pings, make_ping(args.name, args.signal, note=args.note))
    except OSError as exc:
        print(f"opsconsole ping: not recorded in {paths.pings}: {describe_exception(exc)}",
              file=sys.stderr)
        return EXIT_PROBLEM
    return EXIT_OK
