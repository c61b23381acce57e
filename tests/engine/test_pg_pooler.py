"""The PostgreSQL probe through a real PgBouncer in transaction mode (issue 11, item 7).

A pooler in transaction mode (PgBouncer; Supabase's Supavisor behaves the same) refuses the
probe's startup parameters, or is told to ignore them, and gives each transaction to any
server connection. The probe must then set its guards in every transaction (BEGIN READ
ONLY + SET LOCAL statement_timeout / lock_timeout), chosen automatically or by `pooler =
"transaction"`. The witness is the server's own log, as in tests/engine/test_pg_audit.py:
every statement the console's traffic caused on the server ran inside a READ ONLY
transaction opened with those limits, and a custom query reads the limits it ran under.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from console.engine.config.schema import PostgresTarget
from console.engine.model import Status
from console.engine.probes.postgres import LOCK_TIMEOUT_MS, PostgresProbe, statement_timeout_ms
from tests.engine.test_pg_audit import (
    PREFIX,
    SESSION_SQL,
    STATEMENT,
    guards_of,
    parse_log,
    read_only_problem,
    statement_kind,
)
from tests.engine.test_postgres_deep import fresh_db
from tests.pgbouncer import PgBouncer
from tests.pgserver import (  # noqa: F401  (the fixtures are used by name)
    PgServer,
    pg_server_fixture,
    pg_server_session_fixture,
)

DB = "opsc_pool"
OURS = ("default_transaction_read_only,statement_timeout,lock_timeout,"
        "idle_in_transaction_session_timeout")


@pytest.fixture
def logged(pg_server: PgServer) -> Iterator[int]:
    """Every statement in the pooled database logged with its pid and application."""
    fresh_db(pg_server, DB, pgss=True)
    pg_server.admin("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g", db=DB)
    try:
        pg_server.admin(f"ALTER SYSTEM SET log_line_prefix = '{PREFIX}'")
        pg_server.admin("SELECT pg_reload_conf()")
        for _ in range(100):  # bounded: the postmaster rereads its config within milliseconds
            if pg_server.admin("SHOW log_line_prefix") == PREFIX.strip():
                break
            time.sleep(0.02)
        pg_server.admin(f"ALTER DATABASE {DB} SET log_statement = 'all'")
        yield pg_server.log.stat().st_size
    finally:
        pg_server.admin("ALTER SYSTEM RESET log_line_prefix")
        pg_server.admin("SELECT pg_reload_conf()")
        pg_server.admin(f"ALTER DATABASE {DB} RESET log_statement")


def target(bouncer: PgBouncer, **kw: object) -> PostgresTarget:
    return PostgresTarget(name="pg-pooled", dsn=bouncer.dsn(DB), timeout=3.0, interval=5.0,
                          slow_interval=1.0, queries={"session": SESSION_SQL}, **kw)


def server_statements(server: PgServer, offset: int) -> list[tuple[int, str, str]]:
    """(server pid, application, statement) of every statement logged in the pooled db."""
    with server.log.open("rb") as f:
        f.seek(offset)
        records = parse_log(f.read().decode("utf-8", "replace"))
    out = []
    for r in records:
        m = STATEMENT.match(r.msg) if r.level == "LOG" and r.db == DB else None
        if m:
            out.append((r.pid, r.app, m["sql"]))
    return out


def unguarded(statements: list[tuple[int, str, str]]) -> list[str]:
    """Statements of the console's traffic that ran outside a guarded READ ONLY transaction
    on their server connection (walked in log order, per server pid)."""
    open_tx: dict[int, dict[str, int] | None] = {}
    bad = []
    for pid, app, sql in statements:
        guards = guards_of(sql)
        kind = statement_kind(sql)
        if guards is not None:
            open_tx[pid] = guards
        elif kind in ("COMMIT", "ROLLBACK", "END"):
            open_tx[pid] = None
        elif app == "opsconsole" and kind in ("SELECT", "WITH") and not open_tx.get(pid):
            bad.append(sql[:120])
    return bad


async def run_checks(probe: PostgresProbe, n: int) -> list:
    results = []
    for _ in range(n):
        results.append(await probe.check())
        for c in probe._coll.values():  # every slow collector on every check
            c.due = 0.0
        await asyncio.sleep(0.02)
    return results


@pytest.mark.parametrize("mode", ["auto", "transaction"])
async def test_guards_hold_through_pgbouncer_in_transaction_mode(
        pg_server: PgServer, logged: int, mode: str) -> None:
    with PgBouncer(pg_server, [DB]) as bouncer:
        probe = PostgresProbe(target(bouncer, pooler=mode))
        try:
            results = await run_checks(probe, 4)
        finally:
            await probe.aclose()
    # Up on every check: PgBouncer's "unsupported startup parameter" is handled in auto
    assert [r.status for r in results] == [Status.UP] * 4, [r.error for r in results]
    first = results[0]
    notes = first.details["notes"]
    if mode == "auto":
        assert any(n.startswith("the server (a pooler) refused a session setting "
                                "(unsupported startup parameter: ") for n in notes), notes
    else:
        assert not [n for n in notes if "pooler" in n]
    assert all(r.details["guards"] == "per transaction" for r in results)
    # what every custom query saw on its server connection: the limits, read-only
    stmt_ms = statement_timeout_ms(probe.target)
    for r in results:
        m = r.metrics
        assert (m["session.st_ms"], m["session.lock_ms"]) == (stmt_ms, LOCK_TIMEOUT_MS)
        assert (m["session.tx_ro"], m["session.app_ok"]) == (1, 1)
    assert all(r.details["collectors"][c]["state"] == "ok" for r in results
               for c in ("tables", "indexes", "statements", "db_size", "query:session"))
    # the server's log: every statement of ours inside a guarded READ ONLY transaction
    logged_sql = server_statements(pg_server, logged)
    mine = [s for s in logged_sql if s[1] == "opsconsole"]
    assert len([s for s in mine if "pg_stat_activity" in s[2]]) >= 4
    assert unguarded(logged_sql) == []
    openings = [guards_of(sql) for _, _, sql in logged_sql if guards_of(sql) is not None]
    assert openings
    assert all(g["statement_timeout"] == stmt_ms and g["lock_timeout"] == LOCK_TIMEOUT_MS
               for g in openings)
    problems = [(sql[:100], why) for _, _, sql in logged_sql
                for why in [read_only_problem(sql)] if why]
    assert not problems, problems


async def test_a_pooler_that_ignores_the_settings_is_found_out(
        pg_server: PgServer, logged: int) -> None:
    """ignore_startup_parameters lets the connection in with the guards silently off: the
    probe sees them missing in its first query and sets them per transaction from then."""
    with PgBouncer(pg_server, [DB], ignore_startup_parameters=OURS) as bouncer:
        probe = PostgresProbe(target(bouncer))
        try:
            first = await probe.check()
            assert first.status is Status.UP, first.error
            assert "session.pid" not in first.metrics  # no collector ran unguarded
            assert any(n.startswith("the session settings were not in effect on the server")
                       for n in first.details["notes"]), first.details["notes"]
            rest = await run_checks(probe, 3)
        finally:
            await probe.aclose()
    assert all(r.status is Status.UP for r in rest), [r.error for r in rest]
    assert all(r.metrics["session.tx_ro"] == 1 and r.metrics["session.lock_ms"] == 100
               for r in rest)
    logged_sql = server_statements(pg_server, logged)
    # only the first stats query (read-only catalog views) ran before the switch
    fast_unguarded = unguarded(logged_sql)
    assert len(fast_unguarded) == 1
    assert fast_unguarded[0].startswith("WITH a AS MATERIALIZED")  # the stats query
