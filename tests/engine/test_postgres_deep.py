"""The PostgreSQL probe's drill-down against ground truth made on a private server.

Each test creates what the console must find (a sleeping query, a held lock, known statements,
a known number of transactions, rows for a custom metric) and checks the probe reports it,
with `pg_stat_statements` (preloaded on the private server) as the witness of what the console
itself ran: only SELECT/WITH, and no query-text reads (`pg_stat_statements(true)`) on the fast
loop. Every database and role here is created by the test that uses it.
"""

from __future__ import annotations

import asyncio
import re
import time

import asyncpg
import pytest

from console.engine.config.schema import PostgresTarget
from console.engine.model import Status
from console.engine.probes.postgres import PostgresProbe
from tests.pgserver import (  # noqa: F401  (the fixtures are used by name)
    PASSWORD,
    PgServer,
    pg_server_fixture,
    pg_server_session_fixture,
)

MON_PW = "mon-Pw-4711"


def fresh_db(server: PgServer, name: str, *, pgss: bool = False) -> None:
    server.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    server.admin(f"CREATE DATABASE {name}")
    if pgss:
        server.admin("CREATE EXTENSION pg_stat_statements", db=name)


def make_role(server: PgServer, name: str, *, monitor: bool) -> None:
    server.admin(f"DROP OWNED BY {name}" if server.admin(
        f"SELECT count(*) FROM pg_roles WHERE rolname = '{name}'") == "1" else "SELECT 1")
    server.admin(f"DROP ROLE IF EXISTS {name}")
    server.admin(f"CREATE ROLE {name} LOGIN PASSWORD '{MON_PW}'")
    if monitor:
        server.admin(f"GRANT pg_monitor TO {name}")


def pg_target(server: PgServer, db: str, *, user: str = "postgres", **kw: object) -> PostgresTarget:
    var = "${OPSCONSOLE_T_PG_PW}" if user == "postgres" else "${OPSCONSOLE_T_MON_PW}"
    return PostgresTarget(name="pg-deep", dsn=server.dsn(user=user, password=var, db=db),
                          timeout=3.0, interval=5.0, **kw)


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)
    monkeypatch.setenv("OPSCONSOLE_T_MON_PW", MON_PW)


async def connect(server: PgServer, db: str, app: str) -> asyncpg.Connection:
    return await asyncpg.connect(host=str(server.sockdir), port=server.port, user="postgres",
                                 database=db, timeout=5, server_settings={"application_name": app})


def console_statements(server: PgServer, db: str, role: str) -> list[tuple[str, int]]:
    """(query, calls) of everything `role` ran in `db`, from pg_stat_statements."""
    out = server.admin(
        "SELECT calls || E'\\t' || regexp_replace(query, '\\s+', ' ', 'g') "
        "FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
        f"JOIN pg_database d ON d.oid = s.dbid WHERE r.rolname = '{role}' AND d.datname = '{db}'",
        db=db)
    rows = []
    for line in filter(None, out.splitlines()):
        calls, _, query = line.partition("\t")
        rows.append((query, int(calls)))
    return rows


# -- sessions: slow queries, locks, idle in transaction -------------------------------------

async def test_pg_sleep_shows_as_a_slow_query_with_its_pid(pg_server: PgServer,
                                                           probes: list[PostgresProbe]) -> None:
    fresh_db(pg_server, "opsc_slow")
    probe = PostgresProbe(pg_target(pg_server, "opsc_slow"))  # slow_query defaults to 1 s
    probes.append(probe)
    sleeper = await connect(pg_server, "opsc_slow", "opsc-sleeper")
    try:
        first = await probe.check()
        assert first.status is Status.UP, first.error
        assert first.details["sessions"] == []
        pid = sleeper.get_server_pid()
        sleeping = asyncio.create_task(sleeper.execute("SELECT pg_sleep(2) /* opsc-marker */"))
        await asyncio.sleep(1.0)
        for _ in range(8):  # bounded: listed once it has run for more than 1 s
            r = await probe.check()
            listed = {s["pid"]: s for s in r.details["sessions"]}
            if pid in listed:
                break
            await asyncio.sleep(0.05)
        assert pid in listed, r.details["sessions"]
        s = listed[pid]
        assert (s["user"], s["application"], s["state"]) == ("postgres", "opsc-sleeper", "active")
        assert 1.0 <= s["duration_s"] < 2.5
        assert s["query"] == "SELECT pg_sleep(2) /* opsc-marker */"
        assert s["wait"] == "Timeout:PgSleep"
        assert r.metrics["slow_queries"] >= 1
        assert r.metrics["longest_query_s"] >= 1.0
        await sleeping
        after = await probe.check()
        assert pid not in {s["pid"] for s in after.details["sessions"]}
    finally:
        await sleeper.close()


async def test_lock_shows_blocked_session_under_its_blocker(pg_server: PgServer,
                                                            probes: list[PostgresProbe]) -> None:
    await check_lock_tree(pg_server, probes)


async def check_lock_tree(pg_server: PgServer, probes: list[PostgresProbe]) -> None:
    """A session blocked on a row lock is listed under its blocker, which shows as idle in
    transaction; both go once the holder rolls back (shared with tests/engine/test_versions)."""
    fresh_db(pg_server, "opsc_lock")
    pg_server.admin("CREATE TABLE accounts (id int PRIMARY KEY, balance int);"
                    "INSERT INTO accounts VALUES (1, 100)", db="opsc_lock")
    probe = PostgresProbe(pg_target(pg_server, "opsc_lock", slow_query=0.5))
    probes.append(probe)
    holder = await connect(pg_server, "opsc_lock", "opsc-holder")
    waiter = await connect(pg_server, "opsc_lock", "opsc-waiter")
    try:
        await holder.execute("BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1")
        blocked = asyncio.create_task(
            waiter.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1"))
        for _ in range(50):  # bounded: the waiter reaches the lock within milliseconds
            await asyncio.sleep(0.02)
            r = await probe.check()
            if r.metrics.get("blocked_sessions"):
                break
        hp, wp = holder.get_server_pid(), waiter.get_server_pid()
        listed = {s["pid"]: s for s in r.details["sessions"]}
        assert listed[wp]["blocked_by"] == [hp]
        assert listed[wp]["wait"].startswith("Lock:")
        assert listed[hp]["state"] == "idle in transaction"  # listed as a blocker at once
        assert r.metrics["blocked_sessions"] == 1
        assert r.metrics["connections_waiting"] == 1
        tree = r.details["blocking"]
        assert [n["pid"] for n in tree] == [hp]
        assert [c["pid"] for c in tree[0]["blocked"]] == [wp]
        assert tree[0]["blocked"][0]["query"].startswith("UPDATE accounts SET balance")
        await asyncio.sleep(0.6)  # past slow_query: the holder's idle-in-transaction time shows
        r = await probe.check()
        holder_row = next(s for s in r.details["sessions"] if s["pid"] == hp)
        assert holder_row["duration_s"] >= 0.5
        assert r.metrics["idle_in_tx_max_s"] >= 0.5
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(blocked, 5)
        r = await probe.check()
        assert r.details["blocking"] == []
        assert r.metrics["blocked_sessions"] == 0
    finally:
        await holder.close()
        await waiter.close()


# -- transaction rate against pg_stat_database ----------------------------------------------

async def test_transaction_rate_within_10_pct_of_pg_stat_database(
        pg_server: PgServer, probes: list[PostgresProbe]) -> None:
    fresh_db(pg_server, "opsc_tps")
    pg_server.admin("CREATE TABLE bench (id int PRIMARY KEY, v int);"
                    "INSERT INTO bench SELECT g, 0 FROM generate_series(1, 100) g", db="opsc_tps")
    probe = PostgresProbe(pg_target(pg_server, "opsc_tps"))
    probes.append(probe)
    load = await connect(pg_server, "opsc_tps", "opsc-load")
    admin = await connect(pg_server, "opsc_tps", "opsc-admin")
    sql = ("SELECT (xact_commit + xact_rollback)::float8 FROM pg_stat_database "
           "WHERE datname = current_database()")
    try:
        await probe.check()
        t0, x0 = time.monotonic(), await admin.fetchval(sql)
        first = await probe.check()
        n = rollbacks = 0
        while time.monotonic() - t0 < 1.5:  # pgbench-like: one UPDATE per transaction
            await load.execute("UPDATE bench SET v = v + 1 WHERE id = $1", n % 100 + 1)
            n += 1
            if n % 10 == 0:  # and some rollbacks
                await load.execute("BEGIN; UPDATE bench SET v = v + 1 WHERE id = 1; ROLLBACK")
                rollbacks += 1
        await load.execute("SELECT pg_stat_force_next_flush()")
        await load.execute("SELECT 1")  # the forced flush happens at transaction end
        second = await probe.check()
        x1, t1 = await admin.fetchval(sql), time.monotonic()
        rate_truth = (x1 - x0) / (t1 - t0)
        rate = second.metrics["xact_per_s"]
        print(f"{n + rollbacks} transactions: probe {rate:.0f}/s, "
              f"pg_stat_database {rate_truth:.0f}/s")
        assert x1 - x0 >= n + rollbacks
        assert abs(rate - rate_truth) / rate_truth < 0.10
        assert second.metrics["rollbacks_per_s"] > 0
        assert second.metrics["xact_total"] - first.metrics["xact_total"] >= n + rollbacks
    finally:
        await load.close()
        await admin.close()


# -- pg_stat_statements: top statements, deltas, and what the console itself runs -----------

async def test_pg_stat_statements_top_and_no_text_reads_on_the_fast_loop(
        pg_server: PgServer, probes: list[PostgresProbe]) -> None:
    fresh_db(pg_server, "opsc_pgss", pgss=True)
    make_role(pg_server, "opsc_mon", monitor=True)
    work = await connect(pg_server, "opsc_pgss", "opsc-work")
    try:
        heavy = "SELECT count(*) FROM generate_series(1, 50000) AS g"
        for _ in range(20):
            await work.fetchval(heavy)
        for _ in range(100):
            await work.fetchval("SELECT 42 AS cheap")
        probe = PostgresProbe(pg_target(pg_server, "opsc_pgss", user="opsc_mon",
                                         slow_interval=1.0, top=5))
        probes.append(probe)
        first = await probe.check()
        assert first.status is Status.UP, first.error
        st = first.details["statements"]
        assert st["available"] is True
        top = st["by_total"][0]
        assert top["query"] == "SELECT count(*) FROM generate_series($1, $2) AS g"
        assert top["calls"] == 20
        assert top["mean_ms"] == pytest.approx(top["total_ms"] / 20, rel=1e-3)
        assert top["queryid"] in [e["queryid"] for e in st["by_mean"]]
        means = [e["mean_ms"] for e in st["by_mean"]]
        assert means == sorted(means, reverse=True)
        assert top["d_calls"] is None  # no previous poll yet
        assert not any("pg_stat_statements" in n for n in first.details["notes"])

        # Fast checks only (the slow interval has not passed): no pg_stat_statements at all.
        before = console_statements(pg_server, "opsc_pgss", "opsc_mon")
        for _ in range(5):
            assert (await probe.check()).status is Status.UP
        after = dict(console_statements(pg_server, "opsc_pgss", "opsc_mon"))
        for query, calls in before:
            if "pg_stat_statements" in query:
                assert after[query] == calls, query
        fast = [q for q in after if "pg_stat_activity" in q and "pg_stat_database" in q]
        assert len(fast) == 1
        assert after[fast[0]] == dict(before)[fast[0]] + 5
        assert "pg_stat_statements" not in fast[0]
        mean_ms = float(pg_server.admin(
            "SELECT max(mean_exec_time) FROM pg_stat_statements WHERE query LIKE "
            "'%pg_stat_activity%pg_stat_database%'", db="opsc_pgss"))
        print(f"fast-loop query: mean {mean_ms:.2f} ms of server time")
        assert mean_ms < 10  # the notes' p99 budget; measured ~0.3 ms here

        for _ in range(7):
            await work.fetchval(heavy)
        await asyncio.sleep(1.0)
        second = await probe.check()
        st2 = second.details["statements"]
        row = next(e for e in st2["by_total"] if e["queryid"] == top["queryid"])
        assert (row["calls"], row["d_calls"]) == (27, 7)
        assert st2["by_recent"][0]["queryid"] == top["queryid"]
        assert second.metrics["statements_calls_per_s"] > 0

        # The witness: texts were read (showtext=true) only on slow polls, once per new row.
        final = console_statements(pg_server, "opsc_pgss", "opsc_mon")
        text_reads = [(q, c) for q, c in final if "pg_stat_statements" in q and "DISTINCT ON" in q]
        stats_reads = [(q, c) for q, c in final if "pg_stat_statements" in q
                       and "total_exec_time" in q]
        assert len(stats_reads) == 1
        assert stats_reads[0][1] == 2  # one per slow poll, none on the fast loop
        assert sum(c for _, c in text_reads) <= 2
        # No DML or DDL, no SET: every statement the console ran is a SELECT or WITH query.
        for query, _ in final:
            assert re.match(r"^\s*(select|with)\b", query, re.I), query
    finally:
        await work.close()


async def test_pg_stat_statements_absent_is_a_clear_note(pg_server: PgServer,
                                                         probes: list[PostgresProbe]) -> None:
    fresh_db(pg_server, "opsc_nopgss")
    probe = PostgresProbe(pg_target(pg_server, "opsc_nopgss"))
    probes.append(probe)
    r = await probe.check()
    assert r.status is Status.UP, r.error
    assert r.details["statements"] == {"available": False}
    assert any(n.startswith("pg_stat_statements is not installed in this database")
               for n in r.details["notes"])


# -- least privilege, custom metrics and the slow collectors' own data ----------------------

async def test_pg_monitor_role_custom_queries_and_notes(pg_server: PgServer,
                                                        probes: list[PostgresProbe]) -> None:
    fresh_db(pg_server, "opsc_biz", pgss=True)
    make_role(pg_server, "opsc_mon", monitor=True)
    pg_server.admin(
        "CREATE TABLE signals (id serial PRIMARY KEY, created_at timestamptz NOT NULL);"
        "INSERT INTO signals (created_at) SELECT now() - interval '1 hour' "
        "FROM generate_series(1, 7);"
        "INSERT INTO signals (created_at) SELECT now() - interval '3 days' "
        "FROM generate_series(1, 3);"
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 20000) g;"
        "CREATE INDEX big_t_a ON big (t); CREATE INDEX big_t_b ON big (t);"
        "CREATE INDEX signals_created ON signals (created_at)", db="opsc_biz")
    queries = {"signals_per_day": "select count(*) from signals "
                                  "where created_at > now() - interval '1 day'",
               "mix": "SELECT 2 AS a, 0.5::numeric AS b"}
    sleeper = await connect(pg_server, "opsc_biz", "opsc-other-role")
    sleeping = asyncio.create_task(sleeper.execute("SELECT pg_sleep(30) /* other role */"))
    try:
        probe = PostgresProbe(pg_target(pg_server, "opsc_biz", user="opsc_mon",
                                        queries=queries, slow_interval=1.0, top=5,
                                        slow_query=0.2))
        probes.append(probe)
        await asyncio.sleep(0.4)
        r = await probe.check()
        assert r.status is Status.UP, r.error
        # pg_monitor sees other roles' sessions, query text included.
        other = [s for s in r.details["sessions"] if s["application"] == "opsc-other-role"]
        assert other[0]["query"] == "SELECT pg_sleep(30) /* other role */"
        assert r.details["role"]["pg_monitor"] is True
        # A table the role may not read: that metric turns off, with a note; the rest works.
        notes = r.details["notes"]
        assert any(n.startswith("query:signals_per_day: turned off, insufficient privilege: "
                                "permission denied for table signals") for n in notes), notes
        assert "signals_per_day" not in r.metrics
        assert (r.metrics["mix.a"], r.metrics["mix.b"]) == (2.0, 0.5)
        # Slow collectors: sizes, indexes, replication, from the catalog's own numbers.
        size = float(pg_server.admin("SELECT pg_database_size('opsc_biz')", db="opsc_biz"))
        assert r.metrics["db_size_bytes"] == pytest.approx(size, rel=0.05)
        by_size = r.details["tables"]["by_size"]
        assert by_size[0]["name"] == "big"
        assert by_size[0]["total_bytes"] == float(pg_server.admin(
            "SELECT pg_total_relation_size('big')", db="opsc_biz"))
        dupes = r.details["indexes"]["duplicate"]
        assert [d["indexes"] for d in dupes] == [["big_t_a", "big_t_b"]]
        assert r.metrics["duplicate_indexes"] == 1
        unused = {i["index"] for i in r.details["indexes"]["unused"]}
        assert {"big_t_a", "big_t_b", "signals_created"} <= unused
        assert r.metrics["replicas"] == 0
        assert r.details["replication"] == {"role": "primary", "replicas": [], "slots": []}
    finally:
        pg_server.admin(f"SELECT pg_cancel_backend({sleeper.get_server_pid()})")
        with pytest.raises(asyncpg.exceptions.QueryCanceledError):
            await asyncio.wait_for(sleeping, 5)
        await sleeper.close()

    # Granted, the same query gives the ground truth (7 rows within the day).
    pg_server.admin("GRANT SELECT ON signals TO opsc_mon", db="opsc_biz")
    probe = PostgresProbe(pg_target(pg_server, "opsc_biz", user="opsc_mon", queries=queries,
                                    slow_interval=1.0))
    probes.append(probe)
    r = await probe.check()
    assert r.metrics["signals_per_day"] == 7
    assert r.details["queries"]["signals_per_day"]["values"] == {"signals_per_day": 7.0}
    # a result handed out keeps its values when a later slow round changes them
    pg_server.admin("INSERT INTO signals (created_at) VALUES (now())", db="opsc_biz")
    await asyncio.sleep(1.05)  # past slow_interval: the next check runs the query again
    later = await probe.check()
    assert later.details["queries"]["signals_per_day"]["values"] == {"signals_per_day": 8.0}
    assert r.details["queries"]["signals_per_day"]["values"] == {"signals_per_day": 7.0}
    # Even with write grants, the console only reads.
    pg_server.admin("GRANT INSERT, UPDATE, DELETE, TRUNCATE ON signals TO opsc_mon",
                    db="opsc_biz")
    for query, _ in console_statements(pg_server, "opsc_biz", "opsc_mon"):
        assert re.match(r"^\s*(select|with)\b", query, re.I), query


async def test_role_without_pg_monitor_gets_a_note(pg_server: PgServer,
                                                   probes: list[PostgresProbe]) -> None:
    fresh_db(pg_server, "opsc_plain")
    make_role(pg_server, "opsc_plain", monitor=False)
    probe = PostgresProbe(pg_target(pg_server, "opsc_plain", user="opsc_plain"))
    probes.append(probe)
    r = await probe.check()
    assert r.status is Status.UP, r.error
    assert any(n.startswith("role opsc_plain lacks pg_read_all_stats (GRANT pg_monitor TO "
                            "opsc_plain)") for n in r.details["notes"]), r.details["notes"]
    assert r.details["role"]["pg_monitor"] is False


async def test_a_costly_collector_backs_off_after_statement_timeout(
        pg_server: PgServer, probes: list[PostgresProbe]) -> None:
    """A query slower than its statement_timeout is retried with a growing delay, not
    every check and not never; a per-query timeout lets it finish (issue 11, items 1, 9)."""
    fresh_db(pg_server, "opsc_costly")
    # A custom query slower than the session's statement_timeout (min(1 s, interval/2)).
    spin = "select count(*) from generate_series(1, 200000000)"
    probe = PostgresProbe(pg_target(pg_server, "opsc_costly", slow_interval=1.0,
                                    queries={"slow": spin}))
    probes.append(probe)
    r = await probe.check()
    assert r.status is Status.UP, r.error
    assert "query:slow: exceeded the 1000 ms statement_timeout; no values yet; retrying " \
           "in 4s" in r.details["notes"]  # one check interval (5 s) from the failure
    state = r.details["collectors"]["query:slow"]
    assert (state["state"], state["failures"], state["ok_at"]) == ("retrying", 1, None)
    r2 = await probe.check()
    assert r2.status is Status.UP
    # not tried again before its backoff ends: tried, it would have failed a second time
    # (it was a clock: the check took under 0.5 s)
    again = r2.details["collectors"]["query:slow"]
    assert (again["state"], again["failures"]) == ("retrying", 1)
    assert any(n.startswith("query:slow: exceeded the 1000 ms statement_timeout")
               for n in r2.details["notes"])
    probe._coll["query:slow"].due = 0.0  # the backoff has passed
    r3 = await probe.check()
    state = r3.details["collectors"]["query:slow"]
    assert (state["state"], state["failures"]) == ("retrying", 2)
    assert state["retry_at"] - time.time() > 8  # two intervals now: 10 s
    assert probe._backoff(3) == 20
    assert probe._backoff(20) == 600

    # The same query with room for it: its own timeout, inside the check's.
    count = "select count(*) from generate_series(1, 3000000)"  # ~0.3-1.5 s here
    probe = PostgresProbe(pg_target(pg_server, "opsc_costly", slow_interval=1.0,
                                    queries={"big": count}, query_timeouts={"big": 2.4}))
    probes.append(probe)
    r = await probe.check()
    assert r.status is Status.UP, r.error
    assert r.metrics["big"] == 3_000_000, r.details["notes"]
    assert r.details["collectors"]["query:big"]["state"] == "ok"


def test_custom_queries_must_be_read_only() -> None:
    ok = PostgresTarget(name="p", dsn="postgresql://h/db", queries={
        "n": "select count(*) from t where status = 'deleted; drop table t'"})
    assert ok.queries["n"].startswith("select count(*)")
    for bad, why in (("delete from t", "only a SELECT"),
                     ("select 1; select 2", "one statement only"),
                     ("with d as (delete from t returning *) select * from d", "'delete'"),
                     ("select * from t for update", "'update'"),
                     ("select * into t2 from t", "'into'"),
                     ("select pg_sleep(10)", "'pg_sleep'")):
        with pytest.raises(ValueError, match=re.escape(why)):
            PostgresTarget(name="p", dsn="postgresql://h/db", queries={"q": bad})


async def test_details_reach_check_json(pg_server: PgServer, probes: list[PostgresProbe]) -> None:
    import orjson

    from console.engine.model import CheckResult

    fresh_db(pg_server, "opsc_json")
    probe = PostgresProbe(pg_target(pg_server, "opsc_json"))
    probes.append(probe)
    r = await probe.check()
    data = orjson.loads(orjson.dumps(r.to_json()))  # what `check --json` writes
    assert set(data["details"]) >= {"sessions", "blocking", "database", "statements", "tables",
                                    "indexes", "replication", "role", "notes"}
    assert data["details"]["database"]["size_bytes"] == r.metrics["db_size_bytes"]
    plain = CheckResult(target="t", kind="http", status=Status.UP, started_at=0.0,
                        latency_ms=1.0)
    assert "details" not in plain.to_json()  # other kinds' JSON is unchanged


async def test_panels_on_slow_metrics_stay_current_between_slow_runs() -> None:
    """A slow collector reports every slow_interval: its panel is not 'no data' in between."""
    from console.engine.config.schema import Panel, Settings
    from console.engine.model import CheckResult
    from console.engine.scheduler import Scheduler

    t0 = 1_800_000_000.0
    settings = Settings(
        targets=[PostgresTarget(name="db", dsn="postgresql://h/d", interval=5.0,
                                slow_interval=60.0)],
        panels=[Panel(title="size", target="db", metric="db_size_bytes"),
                Panel(title="conns", target="db", metric="connections_total")])
    engine = Scheduler(settings, clock=lambda: t0)
    await engine.start(poll=False)
    try:
        state = engine._states["db"]
        for k in range(13):  # one minute of checks; the slow metric only in the first
            metrics = {"connections_total": 3.0}
            if k == 0:
                metrics["db_size_bytes"] = 8e6
            engine.record(state, CheckResult(target="db", kind="postgres", status=Status.UP,
                                             started_at=t0 + 5 * k, latency_ms=1.0,
                                             metrics=metrics))
        size, conns = settings.panels
        assert engine.panel_value(size, t0 + 60)[0] == 8e6
        assert engine.panel_value(conns, t0 + 60)[0] == 3.0
        assert engine.panel_value(size, t0 + 60 * 3 + 6)[0] is None  # 3 slow runs missed
        assert engine.panel_value(conns, t0 + 60 + 3 * 5 + 6)[0] is None  # 3 checks missed
        # the server stops: a value from before it went down is no current figure (the
        # walk's "Database size ✓ ok 8.4 MB" stood for 1½ minutes after PostgreSQL stopped)
        engine.record(state, CheckResult(target="db", kind="postgres", status=Status.DOWN,
                                         started_at=t0 + 65, latency_ms=None,
                                         error="connection refused"))
        assert engine.panel_value(size, t0 + 66)[0] is None
        assert engine.panel_views(now=t0 + 66)[0].state == "nodata"
    finally:
        await engine.stop()


async def test_connection_cut_mid_query_keeps_the_result_and_reconnects(
        pg_server: PgServer, probes: list[PostgresProbe]) -> None:
    fresh_db(pg_server, "opsc_cut")
    probe = PostgresProbe(pg_target(pg_server, "opsc_cut", queries={
        "spin": "select count(*) from generate_series(1, 300000000)"}))
    probes.append(probe)
    admin = await connect(pg_server, "opsc_cut", "opsc-admin")
    try:
        task = asyncio.create_task(probe.check())
        victim = None
        for _ in range(100):  # bounded: the slow query starts right after the fast one
            victim = await admin.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'opsconsole' "
                "AND state = 'active' AND query LIKE '%generate_series%'")
            if victim is not None:
                break
            await asyncio.sleep(0.01)
        assert victim is not None
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", victim)
        r = await asyncio.wait_for(task, 5)
        assert r.status is Status.UP, r.error  # the fast query had answered
        assert "connections_total" in r.metrics
        assert any(n.startswith("query:spin: the connection was lost while it ran")
                   for n in r.details["notes"])
        again = await probe.check()  # reconnects; the cut collector is not due again yet
        assert again.status is Status.UP, again.error
        assert probe._conn is not None
        assert probe._conn.get_server_pid() != victim
        assert await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'opsconsole'") == 1
    finally:
        await admin.close()


async def test_replication_lag_slots_wal_and_checkpoints(pg_server: PgServer,
                                                         probes: list[PostgresProbe]) -> None:
    """Lag, slots, WAL rate and checkpoints against pg_stat_replication,
    pg_replication_slots, pg_current_wal_lsn() and pg_stat_bgwriter (issue 11, item 5)."""
    fresh_db(pg_server, "opsc_repl")
    port = pg_server.start_replica(slot="opsc_replica")
    pg_server.admin("SELECT pg_create_physical_replication_slot('opsc_idle', true)")
    replica_conn = None
    try:
        primary = PostgresProbe(pg_target(pg_server, "opsc_repl"))
        replica = PostgresProbe(PostgresTarget(
            name="pg-replica", timeout=3.0, interval=5.0,
            dsn=f"postgresql://postgres:${{OPSCONSOLE_T_PG_PW}}@127.0.0.1:{port}/opsc_repl"))
        probes += [primary, replica]
        pg_server.admin("CREATE TABLE t (i int); INSERT INTO t VALUES (1)", db="opsc_repl")
        replica_conn = await asyncpg.connect(host=str(pg_server.sockdir), port=port,
                                             user="postgres", database="opsc_repl", timeout=5)
        for _ in range(100):  # bounded: streaming starts and replays within a second or two
            rp = await primary.check()
            rr = await replica.check()
            # the walsender lists a new replica before its first feedback (replay_lsn
            # NULL, lag unknown): wait for the replica to report a position, and for it
            # to have replayed the insert
            listed = rp.details.get("replication", {}).get("replicas") or [{}]
            if (rp.metrics.get("replicas") == 1 and rr.details["replication"].get("role")
                    == "replica" and "replication_lag_s" in rr.metrics
                    and listed[0].get("lag_bytes") is not None
                    # (one transaction with the CREATE: the table shows once replayed)
                    and await replica_conn.fetchval("SELECT to_regclass('t') IS NOT NULL")):
                break
            await asyncio.sleep(0.05)
            primary._coll.clear()  # run the slow collectors again on the next check
            replica._coll.clear()
        assert rp.status is Status.UP, rp.error
        assert rp.metrics["replicas"] == 1
        listed = rp.details["replication"]["replicas"]
        assert listed[0]["state"] == "streaming"
        assert listed[0]["lag_bytes"] >= 0
        assert rp.metrics["replication_lag_bytes"] >= 0
        assert rr.status is Status.UP, rr.error
        assert rr.details["replication"]["role"] == "replica"

        # Caught up on a quiet primary: no lag, however old the last replayed commit is
        # (the reference, now() - pg_last_xact_replay_timestamp(), keeps growing).
        caught_up = ("SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn(), "
                     "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8")
        same, before = await replica_conn.fetchrow(caught_up)
        await asyncio.sleep(0.3)
        replica._coll.clear()
        rr = await replica.check()
        same_after, after = await replica_conn.fetchrow(caught_up)
        assert same
        assert same_after
        assert after > before >= 0  # the naive figure grows on a quiet primary
        assert rr.metrics["replication_lag_s"] == 0
        assert rr.details["replication"]["replay_delay_s"] == 0

        # Replay paused with WAL received: lag is the reference delay, read just after.
        await replica_conn.execute("SELECT pg_wal_replay_pause()")
        pg_server.admin("INSERT INTO t VALUES (2)", db="opsc_repl")
        for _ in range(100):  # bounded: the insert reaches the replica in milliseconds
            if not await replica_conn.fetchval("SELECT pg_last_wal_receive_lsn() = "
                                               "pg_last_wal_replay_lsn()"):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        replica._coll.clear()
        rr = await replica.check()
        truth = await replica_conn.fetchval(
            "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8")
        # the probe's figure is rounded to the millisecond; truth, read just after, is not
        assert 0.2 <= rr.metrics["replication_lag_s"] <= truth + 0.0005
        assert rr.details["replication"]["replay_delay_s"] == pytest.approx(
            rr.metrics["replication_lag_s"], abs=1e-3)
        await replica_conn.execute("SELECT pg_wal_replay_resume()")

        # Slots: the replica's (active) and an idle one (inactive, flagged): WAL retained as
        # pg_replication_slots says, read around the check.
        retained_sql = ("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) "
                        "FROM pg_replication_slots WHERE slot_name = 'opsc_idle'")
        low = float(pg_server.admin(retained_sql))
        primary._coll.clear()
        rp = await primary.check()
        high = float(pg_server.admin(retained_sql))
        slots = {s["name"]: s for s in rp.details["replication"]["slots"]}
        assert set(slots) == {"opsc_replica", "opsc_idle"}
        assert slots["opsc_replica"]["active"] is True
        assert slots["opsc_idle"]["active"] is False
        assert slots["opsc_idle"]["type"] == "physical"
        assert low <= slots["opsc_idle"]["retained_bytes"] <= high
        assert (rp.metrics["replication_slots"], rp.metrics["replication_slots_inactive"]) \
            == (2, 1)
        assert rp.metrics["replication_slot_retained_bytes"] >= low
        assert any(n.startswith("replication slot opsc_idle is inactive and keeps ")
                   for n in rp.details["notes"]), rp.details["notes"]

        # WAL generation rate and checkpoints, between two runs of the collectors, bounded
        # by the reference read just outside and just inside the probe's two runs.
        lsn = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"
        ckpt = "SELECT checkpoints_timed || ' ' || checkpoints_req FROM pg_stat_bgwriter"
        primary._coll.clear()
        w1a, c1a, t1a = float(pg_server.admin(lsn)), pg_server.admin(ckpt), time.monotonic()
        await primary.check()
        w1b, c1b, t1b = float(pg_server.admin(lsn)), pg_server.admin(ckpt), time.monotonic()
        pg_server.admin("INSERT INTO t SELECT g FROM generate_series(1, 20000) g",
                        db="opsc_repl")
        pg_server.admin("CHECKPOINT")
        pg_server.admin("CHECKPOINT")
        primary._coll.clear()
        w2a, c2a, t2a = float(pg_server.admin(lsn)), pg_server.admin(ckpt), time.monotonic()
        rp = await primary.check()
        w2b, c2b, t2b = float(pg_server.admin(lsn)), pg_server.admin(ckpt), time.monotonic()
        rate = rp.metrics["wal_bytes_per_s"]
        assert (w2a - w1b) / (t2b - t1a) <= rate <= (w2b - w1a) / (t2a - t1b)
        assert w2a - w1b > 500_000  # the insert wrote WAL
        req = [float(c.split()[1]) for c in (c1a, c1b, c2a, c2b)]
        d_req = rp.details["checkpoints"]["d_requested"]
        assert req[2] - req[1] <= d_req <= req[3] - req[0]
        assert d_req >= 2
        assert rp.details["checkpoints"]["requested"] == pytest.approx(req[2], abs=req[3] - req[2])
        assert rp.metrics["checkpoints_req_pct"] > 0
        assert rp.metrics["checkpoints_per_h"] > 0
    finally:
        if replica_conn is not None:
            await replica_conn.close()
        pg_server.stop_replica()
        pg_server.admin("SELECT pg_drop_replication_slot('opsc_idle')")
    r = await primary.check()  # fast part only: the primary keeps answering
    assert r.status is Status.UP
