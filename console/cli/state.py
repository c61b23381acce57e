"""`opsconsole state init|import|status`: the shared state's schema, a move from files, a look.

`init` creates (or migrates) the opsconsole schema in the database `[state] dsn` names (or
``--dsn``), once per team; `import` brings this console's data directory into it; `status`
says which backend the config chooses, the schema version, who evaluates and what waits.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from console.cli.common import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEM, data_paths

if TYPE_CHECKING:
    from console.engine.config.schema import StateSection


def add_parser(sub: Any) -> None:
    st = sub.add_parser("state", help="the shared state in PostgreSQL: create its schema, "
                        "import this console's files, show it")
    actions = st.add_subparsers(dest="state_command", metavar="ACTION")
    for name, text in (
            ("init", "create (or migrate) the opsconsole schema in the state database"),
            ("import", "copy this data directory's journal, alert history, alert state and "
                       "outbox into the state database (again: nothing is duplicated)"),
            ("status", "backend, schema version, evaluator, events and waiting "
                       "notifications")):
        p = actions.add_parser(name, help=text)
        p.add_argument("--dsn", help="the state database (default: [state] dsn; ${VAR}s are "
                       "expanded)")
        p.add_argument("--schema", help="the schema name (default: [state] schema)")
        if name == "status":
            p.add_argument("--json", action="store_true", help="machine-readable output")


def _section(args: argparse.Namespace) -> StateSection | None:
    """`[state]` from the config, with --dsn/--schema over it; None after a message."""
    from console.cli.common import load_settings
    from console.engine.config.schema import StateSection
    from console.engine.errors import ConfigError

    try:
        cfg = load_settings(args)[0].state
    except ConfigError as exc:
        if not getattr(args, "dsn", None):
            from console.cli.common import print_config_error

            print_config_error(exc)
            return None
        cfg = StateSection()
    update: dict[str, Any] = {"backend": "postgres"}
    if args.dsn:
        update["dsn"] = args.dsn
    if args.schema:
        update["db_schema"] = args.schema
    merged = cfg.model_copy(update=update)
    if not merged.dsn:
        print("opsconsole state: no database: set [state] dsn in the config (e.g. dsn = "
              "\"${OPS_STATE_DSN}\") or pass --dsn", file=sys.stderr)
        return None
    try:
        return StateSection.model_validate(merged.model_dump(by_alias=True))
    except ValueError as exc:
        print(f"opsconsole state: {exc}", file=sys.stderr)
        return None


def cmd_state(args: argparse.Namespace) -> int:
    action = getattr(args, "state_command", None)
    if action is None:
        print("opsconsole state: say what to do: init, import or status", file=sys.stderr)
        return EXIT_CONFIG
    cfg = _section(args)
    if cfg is None:
        return EXIT_CONFIG
    import asyncio

    from console.engine.config.envref import MissingEnv
    from console.engine.state.pgconn import describe

    try:
        return asyncio.run(_ACTIONS[action](args, cfg))
    except MissingEnv as exc:
        print(f"opsconsole state: environment variable {exc.args[0]} is not set",
              file=sys.stderr)
        return EXIT_CONFIG
    except Exception as exc:
        print(f"opsconsole state {action}: {describe(exc, cfg.dsn or '')}", file=sys.stderr)
        return EXIT_PROBLEM


async def _connect(cfg: StateSection) -> Any:
    from console.engine.state.pgconn import check_pooler, connect, expand_dsn

    dsn = expand_dsn(cfg.dsn or "")
    conn = await connect(dsn, purpose="cli", within=10.0)
    note = await check_pooler(conn, dsn)
    if note:
        print(f"opsconsole state: note: {note}", file=sys.stderr)
    return conn


async def _init(args: argparse.Namespace, cfg: StateSection) -> int:
    from console.engine.state import schema as db

    conn = await _connect(cfg)
    try:
        found, now = await db.init(conn, cfg.db_schema)
    finally:
        conn.terminate()
    if found is None:
        print(f"created the opsconsole schema {cfg.db_schema!r} (version {now})")
    elif found < now:
        print(f"migrated the opsconsole schema {cfg.db_schema!r} from version {found} to {now}")
    else:
        print(f"the opsconsole schema {cfg.db_schema!r} is up to date (version {now})")
    return EXIT_OK


async def _import(args: argparse.Namespace, cfg: StateSection) -> int:
    from console.engine.state.importer import import_files

    paths = data_paths(args)
    conn = await _connect(cfg)
    try:
        report = await import_files(conn, cfg.db_schema, paths)
    finally:
        conn.terminate()
    print(f"imported {paths.root}: {report.describe()}")
    return EXIT_OK


async def _status(args: argparse.Namespace, cfg: StateSection) -> int:
    import orjson

    from console.engine.state import schema as db

    conn = await _connect(cfg)
    s = cfg.db_schema
    try:
        version = await db.check(conn, s)
        key = db.lock_key(s, "evaluator")
        lease = await conn.fetchrow(
            f"SELECT token, holder::text AS holder, extract(epoch FROM now() - beat) AS age, "
            f"EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND "
            f"objid = $2 AND objsubid = 1 AND granted) AS held FROM {s}.lease WHERE name = "
            "'evaluator'", (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)
        kinds = {r["kind"]: int(r["n"]) for r in await conn.fetch(
            f"SELECT kind, count(*) AS n FROM {s}.events GROUP BY kind")}
        outbox = {r["status"]: int(r["n"]) for r in await conn.fetch(
            f"SELECT status, count(*) AS n FROM {s}.outbox GROUP BY status")}
    finally:
        conn.terminate()
    holder = orjson.loads(lease["holder"]) if lease and lease["holder"] else {}
    evaluator: dict[str, Any] | None = {
        **holder, "token": int(lease["token"]),
        "heartbeat_age_s": None if lease["age"] is None else float(lease["age"]),
        "holding": bool(lease["held"])} if lease else None
    doc = {"schema": s, "version": version, "evaluator": evaluator, "events": kinds,
           "outbox": outbox}
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return EXIT_OK
    ev = evaluator or {}
    who = (f"pid {ev.get('pid')} on {ev.get('host')} ({ev.get('role')}), fencing token "
           f"{ev.get('token')}" if ev.get("holding") else "nobody holds the lease")
    print(f"schema {s} version {version}\nevaluator: {who}")
    print("events: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"))
    print("outbox: " + (", ".join(f"{k} {n}" for k, n in sorted(outbox.items())) or "empty"))
    return EXIT_OK


_ACTIONS = {"init": _init, "import": _import, "status": _status}
