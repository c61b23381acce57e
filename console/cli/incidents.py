"""`opsconsole incidents`, `postmortem` and `report`: the journal's incidents, headless."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.cli.common import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEM, data_paths, demo_not_run

if TYPE_CHECKING:
    from console.engine.incidents.book import Incident
    from console.engine.model import AlertEpisode


def _shared(args: argparse.Namespace) -> Any:
    """The shared state's reader when the config's `[state] backend` is postgres (and no
    `--journal` file is named), else None: the files are read as before."""
    if getattr(args, "journal", None):
        return None
    from console.engine.config.locate import find_config, may_share_state
    from console.engine.errors import ConfigError

    try:
        if not may_share_state(find_config(getattr(args, "config", None))):
            return None  # files: no need to load (and validate) the whole config
    except ConfigError:
        return None  # no config file: the data directory's files
    settings = _settings_if_any(args)
    if settings is None or settings.state.backend != "postgres":
        return None
    from console.engine.state.reader import PostgresReader

    return PostgresReader(settings.state)


def _from_shared(reader: Any, fn: Any, default: Any) -> Any:
    """`fn(reader)`, closing the reader; `default` after a message if the shared state
    cannot be read."""
    from console.engine.state.pgconn import describe

    try:
        return fn(reader)
    except Exception as exc:
        print(f"opsconsole: cannot read {reader.where}: {describe(exc, reader.cfg.dsn or '')}",
              file=sys.stderr)
        return default
    finally:
        reader.close()


def _book(args: argparse.Namespace) -> Any:
    """The incidents of the journal (`--journal` or the default, or the shared state's),
    or None after a message."""
    from console.engine.errors import ConfigError
    from console.engine.incidents.book import IncidentBook
    from console.engine.incidents.playbooks import load_playbooks
    from console.engine.storage.journal import Journal

    shared = _shared(args)
    if shared is not None:
        entries = _from_shared(shared, lambda r: r.incident_entries(), None)
        return None if entries is None else IncidentBook.from_entries(load_playbooks(),
                                                                       entries)
    path = _journal_path(args)
    if not path.exists():
        print(f"opsconsole: no journal at {path} (no incident recorded yet?)"
              f"{_demo_hint(args)}", file=sys.stderr)
        return None
    try:
        playbooks = load_playbooks()
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"opsconsole: playbook ignored: {issue.format()}", file=sys.stderr)
        playbooks = load_playbooks(Path("/nonexistent"), builtin=True)
    journal = Journal(path)
    try:
        report = journal.open()
    except OSError as exc:
        print(f"opsconsole: cannot read the journal {path}: {exc}", file=sys.stderr)
        return None
    try:
        if not report.clean:
            print(f"opsconsole: journal {path.name}: {report.describe()}", file=sys.stderr)
        return IncidentBook.from_entries(playbooks, journal.entries)
    finally:
        journal.close_sync()


def _sources(args: argparse.Namespace, now: float) -> tuple[list[Any], list[Any]]:
    """Alert episodes and notifications of the data directory (beside --journal's file), or
    of the shared state."""
    from console.engine.incidents.context import read_sources
    from console.engine.paths import DataPaths

    shared = _shared(args)
    if shared is not None:
        return _from_shared(shared, lambda r: r.sources(now), ([], []))

    paths = (DataPaths(Path(args.journal).parent, "--journal") if args.journal
             else data_paths(args))
    return read_sources(paths, now=now)


def _changes(args: argparse.Namespace) -> list[Any]:
    """Recorded events (deploys, recordings) of the data directory, for the timeline."""
    from console.engine.paths import DataPaths
    from console.engine.signals.events import read_events

    paths = (DataPaths(Path(args.journal).parent, "--journal") if args.journal
             else data_paths(args))
    try:
        return read_events(paths.events)
    except OSError:
        return []  # no events readable: the draft is written without them


def _latest(book: Any) -> Incident | None:
    """`postmortem latest`: the incident whose post-mortem was written or drafted last, else
    the one resolved last, else the one opened last. It was the one opened last: right
    after `P` on a resolved P0, a walk got a draft of another incident, opened after it and
    still open."""
    incs = list(book.incidents.values())

    def written(i: Incident) -> float:
        return max(t for t in (i.postmortem_at, i.postmortem_drafted_at, -math.inf)
                   if t is not None)

    if any(written(i) > -math.inf for i in incs):
        return max(incs, key=written)
    resolved = [i for i in incs if i.resolved_at is not None]
    if resolved:
        return max(resolved, key=lambda i: i.resolved_at or 0.0)
    return max(incs, key=lambda i: i.started, default=None)


def cmd_postmortem(args: argparse.Namespace) -> int:
    from console.engine.incidents.postmortem import edited_draft, permanent_fixes, render

    book = _book(args)
    if book is None:
        return EXIT_PROBLEM
    if args.incident == "latest":
        inc = _latest(book)
        if inc is not None:
            print(f"opsconsole postmortem: latest is {inc.id}", file=sys.stderr)
    else:
        inc = book.get(args.incident)
    if inc is None:
        known = ", ".join(sorted(book.incidents)[-5:]) or "none"
        print(f"opsconsole postmortem: no incident {args.incident!r} (latest: {known})",
              file=sys.stderr)
        return EXIT_PROBLEM
    # The console's `P` writes postmortems/<id>.md beside the journal and keeps it once
    # someone edits it: that file is the post-mortem, not a fresh draft (a walk's
    # `postmortem latest > pm.md` lost the summary just written on the incident screen).
    written = _journal_path(args).parent / "postmortems" / f"{inc.id}.md"
    text = None
    if not getattr(args, "draft", False):
        try:
            text = edited_draft(written)
        except OSError as exc:
            print(f"opsconsole postmortem: {written}: {exc.strerror or exc}; a fresh draft "
                  "instead", file=sys.stderr)
    if text is not None:
        print(f"opsconsole postmortem: {written} was edited after its draft: printing it as "
              "it is (--draft for a fresh draft)", file=sys.stderr)
        what = "post-mortem"
    else:
        now = time.time()
        episodes, notifications = _sources(args, now)
        text = render(inc, now=now, episodes=episodes, notifications=notifications,
                      permanent_fixes=permanent_fixes(inc), changes=_changes(args))
        what = "post-mortem draft"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"{args.output}: {what} of {inc.id}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def incident_json(inc: Incident, now: float) -> dict[str, Any]:
    """One incident as the Incidents screen shows it: state, age, progress, next step."""
    done, total = inc.progress()
    step = inc.next_step()
    return {
        "id": inc.id, "title": inc.title, "severity": inc.severity, "state": inc.state,
        "started": inc.started, "age_s": round(inc.age(now), 3), "owner": inc.owner or None,
        "acknowledged_at": inc.acknowledged_at, "mitigated_at": inc.mitigated_at,
        "resolved_at": inc.resolved_at, "alerts": list(inc.alerts),
        "steps_done": done, "steps_total": total,
        "next_step": None if step is None else {
            "id": step.id, "title": step.section.title, "due": inc.due(step),
            "status": inc.step_status(step, now)},
        "overdue": [s.id for s in inc.overdue(now)],
    }


def cmd_incidents(args: argparse.Namespace) -> int:
    import orjson

    from console.engine.incidents.kpis import measured
    from console.engine.lang.durations import parse_duration
    from console.engine.text.fmt import format_age
    from console.engine.text.sanitize import one_line

    now = time.time()
    try:
        since = None if args.since is None else now - parse_duration(args.since)
    except ValueError as exc:
        print(f"opsconsole incidents: --since: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    book = None
    if _shared(args) is not None or _journal_path(args).exists():
        book = _book(args)
        if book is None:
            return EXIT_PROBLEM  # it could not be read: _book said why
    elif getattr(args, "demo_world", False) and not getattr(args, "journal", None):
        # a demo that never ran here is not "no open incidents": that false all-clear was
        # read beside a demo started with --data-dir, one incident open
        print(demo_not_run("incidents", data_paths(args).root), file=sys.stderr)
        return EXIT_CONFIG
    # else no journal yet: no incidents, not an error
    incidents = [] if book is None else (
        sorted(book.incidents.values(), key=lambda i: i.started, reverse=True)
        if args.all else book.open_incidents())
    if since is not None:
        incidents = [i for i in incidents if i.started >= since]
    rows = [incident_json(i, now) for i in incidents]
    if book is None and _shared(args) is None:  # which directory "nothing" comes from
        where = _journal_path(args) if getattr(args, "journal", None) else \
            data_paths(args).root
        print(f"opsconsole: no journal in {where} yet{_demo_hint(args)}", file=sys.stderr)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
    elif not rows:
        print("no open incidents" if not args.all else "no incidents")
    else:
        # a terminal's line is short; a pipe or a file (grep, a ticket) gets the whole title
        title_len = 60 if sys.stdout.isatty() else 300
        for r in rows:
            nxt = r["next_step"]
            step = "" if nxt is None else f" · next: {one_line(nxt['title'], max_len=40)}" + (
                " OVERDUE" if nxt["status"] == "overdue" else "")
            # a resolved incident's age is measured, rounded as the post-mortem writes it
            age = (measured if r["resolved_at"] is not None else format_age)(r["age_s"])
            print(f"{r['id']}  {r['severity']} {r['state']:<12} {age:>8}  "
                  f"{r['steps_done']}/{r['steps_total']}  "
                  f"{one_line(r['title'], max_len=title_len)}{step}")
    sys.stdout.flush()
    return EXIT_PROBLEM if any(r["resolved_at"] is None for r in rows) else EXIT_OK


def _journal_path(args: argparse.Namespace) -> Path:
    if getattr(args, "journal", None):
        return Path(args.journal)
    return data_paths(args).journal


def _demo_hint(args: argparse.Namespace) -> str:
    """A hint that `--demo` finds the incidents, when this data directory has no journal
    but its demo world has one (`opsconsole demo` keeps its own); else ""."""
    if getattr(args, "journal", None) or getattr(args, "demo_world", False):
        return ""
    paths = data_paths(args)
    if paths.journal.exists() or not paths.demo().journal.exists():
        return ""
    return "; the demo keeps its incidents apart: add --demo"


def cmd_report(args: argparse.Namespace) -> int:
    import orjson

    from console.engine.incidents.kpis import compute, format_text
    from console.engine.lang.durations import parse_duration

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        print(f"opsconsole report: --since: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if getattr(args, "format", "text") != "text":
        return _summary(args, since)
    book = _book(args)
    if book is None:
        return EXIT_PROBLEM
    store = _store(args)
    now = time.time()
    k = compute(book, since=since, now=now, store=store, episodes=_sources(args, now)[0])
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(k.to_json(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(format_text(k))
    sys.stdout.flush()
    return EXIT_OK


def _store(args: argparse.Namespace) -> Any:
    path = Path(args.history) if args.history else data_paths(args).metric_history
    if not path.exists():
        return None
    from console.engine.storage.store import MetricStore  # numpy: only for a history

    store = MetricStore(path=path)
    store.load()
    return store


def _summary(args: argparse.Namespace, since: float) -> int:
    """The daily summary the notifier sends at `summary_at`, for the last `since` seconds:
    JSON (the document), Markdown (its text), or the email itself (CRLF, MIME)."""
    import orjson

    from console.engine.alerting.lifecycle import Notification
    from console.engine.alerting.outbox import read_batched
    from console.engine.alerting.summary import batched_section, summary_markdown
    from console.engine.incidents.summary import build_summary

    now = time.time()
    settings = _settings_if_any(args)
    paths = data_paths(args, settings)
    shared = _shared(args)
    book = _book(args) if shared is not None or _journal_path(args).exists() else None
    notes = []
    batched = _from_shared(shared, lambda r: r.batched(now - since, now), []) \
        if shared is not None else read_batched(paths.outbox, now - since, now)
    for payload in batched:
        try:
            notes.append(Notification.from_json(orjson.loads(payload)))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue  # a summary or incident message, not a notification
    episodes = _episodes(args, now - since) + _ongoing(args, paths, now)
    summary = build_summary(
        book, start=now - since, end=now, store=_store(args),
        episodes=episodes, batched=batched_section(notes),
        targets=[t.name for t in settings.targets] if settings is not None else [])
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    elif args.format == "markdown":
        sys.stdout.write(summary_markdown(summary))
    else:
        sys.stdout.buffer.write(_summary_email(settings, summary, now))
    sys.stdout.flush()
    return EXIT_OK


def _episodes(args: argparse.Namespace, since: float) -> list[AlertEpisode]:
    """Resolved alert episodes from the alert history beside the journal (none if absent)."""
    from console.engine.alerting.history import read_episodes

    shared = _shared(args)
    if shared is not None:
        return list(_from_shared(shared, lambda r: r.episodes(since), []))
    path = (Path(args.journal).parent / "alerts-history.jsonl" if args.journal
            else data_paths(args).alert_history)
    return read_episodes(path, since=since, limit=100_000, max_bytes=64 * 1024 * 1024)


def _ongoing(args: argparse.Namespace, paths: Any, now: float) -> list[AlertEpisode]:
    """Alert episodes still open (they reach the alert history only once resolved), from
    the evaluator's saved state: its snapshot and the changes since, no rules needed. It
    read the snapshot alone, through the config's rules: `report --demo --format markdown`
    (no config) said "No alert fired" beside six firing, and a config's summary missed
    every alert fired since the snapshot was last written whole."""
    from console.engine.incidents.context import open_episodes, open_episodes_of

    shared = _shared(args)
    if shared is not None:
        snapshot = _from_shared(shared, lambda r: r.alert_snapshot(), None)
        return open_episodes_of(snapshot, now) if snapshot is not None else []
    return open_episodes(paths.alert_state, now)


def _settings_if_any(args: argparse.Namespace) -> Any:
    """The config when there is a valid one (its targets and email receiver); the summary
    is still printed without one."""
    from console.cli.common import load_settings
    from console.engine.errors import ConfigError

    try:
        return load_settings(args)[0]
    except ConfigError:
        return None


def _summary_email(settings: Any, summary: dict[str, Any], now: float) -> bytes:
    from console.engine.alerting.receivers.base import iso
    from console.engine.alerting.receivers.email import summary_message
    from console.engine.config.envref import MissingEnv, expand

    receivers = [r for r in (settings.alerting.receivers if settings is not None else [])
                 if r.kind == "email"]
    r = next((x for x in receivers if x.summary_at), receivers[0] if receivers else None)
    mail_from, mail_to = "opsconsole@localhost", ["operators@localhost"]
    if r is not None:
        try:
            mail_from = expand(r.mail_from or mail_from, secret=False)
            mail_to = [expand(a, secret=False) for a in r.mail_to]
        except MissingEnv:
            pass
    msg = summary_message(summary, f"summary:report:{iso(now)}", mail_from=mail_from,
                          mail_to=mail_to, now=now)
    return msg.as_bytes()
