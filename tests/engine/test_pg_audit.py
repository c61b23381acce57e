"""What the console does to a monitored PostgreSQL server, read from that server's own log.

The promise (issue: "how it treats the monitored servers"): one connection per target,
`application_name = opsconsole`, a read-only session with `statement_timeout` and
`lock_timeout`, costly collectors off the fast loop, never any DML or DDL. The probe's own
tests check what it reports; this one checks what it *sends*, with the server as the witness:
the private server logs every statement run in the audited database (`log_statement=all`),
every connection and disconnection, each line prefixed with its backend pid, user, database
and application name. The real PostgresProbe runs every collector (fast loop, sizes, tables,
indexes, statements with their lazily fetched texts, replication, a custom query) against
real activity (a blocked session, its blocker, a long query, fresh statements), loses its
session once to `pg_terminate_backend` and reconnects; then every statement any `opsconsole`
backend logged must be read-only, and those backends must never overlap in time.

The logging is switched on for this test only, on the session's private server: the line
prefix and connection logging with ALTER SYSTEM + reload (reset afterwards), `log_statement`
for the audited database alone.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import asyncpg
import pytest

from console.engine.model import Status
from console.engine.probes.postgres import APPLICATION_NAME, PostgresProbe, statement_timeout_ms
from tests.engine.test_postgres_deep import connect, fresh_db, pg_target
from tests.pgserver import (  # noqa: F401  (the fixtures are used by name)
    PASSWORD,
    PgServer,
    pg_server_fixture,
    pg_server_session_fixture,
)

DB = "opsc_audit"
# Our own prefix, easy to parse: time, pid, user, database, application name.
PREFIX = "@@%m|%p|%u|%d|%a@@ "
LINE = re.compile(r"^@@(?P<ts>[^|]*)\|(?P<pid>\d+)\|(?P<user>[^|]*)\|(?P<db>[^|]*)\|"
                  r"(?P<app>.*?)@@ (?P<level>[A-Z]+\d?):\s+(?P<msg>.*)$")
STATEMENT = re.compile(r"^(?:statement|execute [^:]*):\s*(?P<sql>.*)$", re.S)
# Statement kinds a read-only monitor may legitimately send (asyncpg's own type
# introspection is a SELECT/WITH too).
ALLOWED_KINDS = {"SELECT", "WITH", "SHOW", "SET", "RESET", "BEGIN", "START", "COMMIT",
                 "ROLLBACK", "END", "DISCARD"}
# Words that write, lock, wait or escape, anywhere outside string literals and comments.
WRITE_WORDS = re.compile(
    r"\b(insert|update|delete|merge|create|alter|drop|truncate|grant|revoke|copy|call|do|"
    r"vacuum|analyze|cluster|reindex|lock|listen|notify|into|nextval|setval|set_config|"
    r"pg_sleep\w*|pg_terminate_backend|pg_cancel_backend|pg_advisory\w*|lo_\w+)\b", re.I)
ROW_LOCKS = re.compile(r"\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b", re.I)
LITERALS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\w*)\$.*?\$\1\$|--[^\n]*|/\*.*?\*/",
                      re.S)
# The custom query the probe runs in its own session: what that session's limits are.
SESSION_SQL = (
    "SELECT (SELECT setting::float8 FROM pg_settings WHERE name = 'statement_timeout') AS st_ms,"
    " (SELECT setting::float8 FROM pg_settings WHERE name = 'lock_timeout') AS lock_ms,"
    " (SELECT setting::float8 FROM pg_settings"
    "   WHERE name = 'idle_in_transaction_session_timeout') AS idle_tx_ms,"
    " current_setting('default_transaction_read_only')::bool AS default_ro,"
    " current_setting('transaction_read_only')::bool AS tx_ro,"
    " (current_setting('application_name') = 'opsconsole') AS app_ok,"
    " pg_backend_pid() AS pid")


@pytest.fixture(autouse=True)
def _passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)


@dataclass
class Record:
    """One server log entry (a prefixed line plus its continuation lines)."""

    ts: str
    pid: int
    user: str
    db: str
    app: str
    level: str
    msg: str


def parse_log(text: str) -> list[Record]:
    out: list[Record] = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out.append(Record(m["ts"], int(m["pid"]), m["user"], m["db"], m["app"], m["level"],
                              m["msg"]))
        elif out:  # a multi-line statement goes on without the prefix
            out[-1].msg += "\n" + line
    return out


def statement_kind(sql: str) -> str:
    body = LITERALS.sub(" ", sql).strip().lstrip("(").strip()
    return (body.split(None, 1) or [""])[0].upper()


GUARD = re.compile(r"^\s*set\s+local\s+(statement_timeout|lock_timeout|"
                   r"idle_in_transaction_session_timeout)\s*(?:=|to)\s*(\d+)\s*$", re.I)


def guards_of(sql: str) -> dict[str, int] | None:
    """The limits a `BEGIN READ ONLY; SET LOCAL …` line sets for its transaction, or None
    when the line is not such an opening (the probe's per-transaction guards)."""
    parts = [p.strip() for p in LITERALS.sub(" ", sql).split(";") if p.strip()]
    if not parts or not re.fullmatch(r"(begin|start\s+transaction)\s+read\s+only", parts[0],
                                     re.I):
        return None
    out: dict[str, int] = {}
    for part in parts[1:]:
        m = GUARD.match(part)
        if m is None:
            return None
        out[m.group(1).lower()] = int(m.group(2))
    return out


def read_only_problem(sql: str) -> str | None:
    """Why this statement is not a read-only one, or None. A `BEGIN READ ONLY` followed
    by `SET LOCAL` limits (positive, for that transaction only) is the probe's guard."""
    guards = guards_of(sql)
    if guards is not None:
        return None if all(v > 0 for v in guards.values()) else f"a limit off: {guards}"
    kind = statement_kind(sql)
    if kind not in ALLOWED_KINDS:
        return f"kind {kind}"
    body = LITERALS.sub(" ", sql)
    if kind in ("BEGIN", "START") and not re.search(r"\bread\s+only\b", body, re.I):
        return "a transaction that is not READ ONLY"
    if kind in ("SELECT", "WITH", "SHOW"):
        m = WRITE_WORDS.search(body) or ROW_LOCKS.search(body)
        if m:
            return f"contains {m.group(0)!r}"
    if kind in ("SET", "RESET"):
        m = re.search(r"\b(default_transaction_read_only|transaction_read_only|"
                      r"statement_timeout|lock_timeout|session_authorization|role)\b", body,
                      re.I)
        if m:
            return f"changes {m.group(1)} (a limit or the identity of the session)"
    return None


@dataclass
class Sampler:
    """pg_stat_activity, sampled from another database while the probe runs."""

    max_seen: int = 0
    samples: int = 0
    pids: set[int] = field(default_factory=set)


async def sample_activity(conn: asyncpg.Connection, out: Sampler, stop: asyncio.Event) -> None:
    while not stop.is_set():
        pids = await conn.fetchval(
            "SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity "
            "WHERE application_name LIKE 'opsconsole%' AND datname = $1", DB)
        out.samples += 1
        out.max_seen = max(out.max_seen, len(pids))
        out.pids.update(pids)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.01)


@pytest.fixture
def audit_log(pg_server: PgServer) -> Iterator[int]:
    """Log everything the audited database sees; yields the log's size before the run."""
    fresh_db(pg_server, DB, pgss=True)
    pg_server.admin(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);"
        "INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 50) g;"
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 5000) g;"
        "CREATE INDEX big_t_a ON big (t); CREATE INDEX big_t_b ON big (t)", db=DB)
    settings = {"log_line_prefix": f"'{PREFIX}'", "log_connections": "on",
                "log_disconnections": "on"}
    try:
        for name, value in settings.items():  # ALTER SYSTEM: one statement per call
            pg_server.admin(f"ALTER SYSTEM SET {name} = {value}")
        pg_server.admin("SELECT pg_reload_conf()")
        for _ in range(100):  # bounded: the postmaster rereads its config within milliseconds
            if pg_server.admin("SHOW log_line_prefix") == PREFIX.strip():
                break
            time.sleep(0.02)
        assert pg_server.admin("SHOW log_line_prefix") == PREFIX.strip()
        pg_server.admin(f"ALTER DATABASE {DB} SET log_statement = 'all'")
        yield pg_server.log.stat().st_size
    finally:
        for name in settings:
            pg_server.admin(f"ALTER SYSTEM RESET {name}")
        pg_server.admin("SELECT pg_reload_conf()")
        pg_server.admin(f"ALTER DATABASE {DB} RESET log_statement")


@pytest.fixture
async def helpers(pg_server: PgServer) -> AsyncIterator[dict[str, asyncpg.Connection]]:
    """Other sessions of the audited server (over its Unix socket, so not TCP)."""
    made: dict[str, asyncpg.Connection] = {}
    try:
        for name in ("holder", "waiter", "sleeper", "work"):
            made[name] = await connect(pg_server, DB, f"opsc-audit-{name}")
        made["sampler"] = await connect(pg_server, "postgres", "opsc-audit-sampler")
        yield made
    finally:
        for conn in made.values():
            conn.terminate()


async def test_console_sends_only_reads_over_one_bounded_read_only_session(
        pg_server: PgServer, audit_log: int, helpers: dict[str, asyncpg.Connection]) -> None:
    # `session_long` has a statement_timeout of its own: it runs in a READ ONLY
    # transaction with SET LOCAL limits (issue 11), which the server's log must show.
    target = pg_target(pg_server, DB, slow_interval=1.0, slow_query=0.2, top=5,
                       queries={"session": SESSION_SQL, "session_long": SESSION_SQL},
                       query_timeouts={"session_long": 1.5})
    probe = PostgresProbe(target)
    holder, waiter, sleeper, work = (helpers[k] for k in ("holder", "waiter", "sleeper", "work"))
    sampler, stop = Sampler(), asyncio.Event()
    sampling = asyncio.create_task(sample_activity(helpers["sampler"], sampler, stop))
    results = []
    victim = None
    t_start = time.monotonic()
    try:
        # Activity worth a look: a long query, a row lock and a session blocked on it.
        await holder.execute("BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = 1")
        blocked = asyncio.create_task(
            waiter.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1"))
        long_query = asyncio.create_task(sleeper.execute("SELECT pg_sleep(30) /* long one */"))
        for _ in range(20):
            await work.fetchval("SELECT count(*) FROM big WHERE t > $1", "8")
        await asyncio.sleep(0.25)  # past slow_query
        n = rounds = rounds_after_kill = 0
        # Bounded: three slow rounds (two, the kill, one more) take ~2 s of checks.
        while rounds_after_kill < 1 and time.monotonic() - t_start < 5.0:
            r = await probe.check()
            assert r.status is Status.UP, r.error
            results.append(r)
            n += 1
            if "session.pid" in r.metrics:  # a slow round ran in this check
                rounds += 1
                rounds_after_kill += victim is not None
            if n % 3 == 0:  # new statements, so the next slow round fetches new texts
                await work.fetchval(f"SELECT {n} + count(*) FROM accounts AS a{n}")
            if victim is None and rounds == 2:
                # A DBA kills the console's session: it must come back as one session again.
                victim = probe._conn.get_server_pid() if probe._conn else None
                assert victim is not None
                assert pg_server.admin(f"SELECT pg_terminate_backend({victim})") == "t"
                for _ in range(100):  # bounded: the killed backend exits within milliseconds
                    if pg_server.admin(f"SELECT count(*) FROM pg_stat_activity "
                                       f"WHERE pid = {victim}") == "0":
                        break
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.05)
    finally:
        await probe.aclose()
        stop.set()
        await asyncio.wait_for(sampling, 5)
        pg_server.admin(f"SELECT pg_cancel_backend({sleeper.get_server_pid()})")
        await holder.execute("ROLLBACK")
    run_s = time.monotonic() - t_start
    await asyncio.wait_for(blocked, 5)
    with pytest.raises(asyncpg.exceptions.QueryCanceledError):
        await asyncio.wait_for(long_query, 5)

    # -- what the probe saw: every collector ran and had rows -----------------------------
    hp, wp, sp = holder.get_server_pid(), waiter.get_server_pid(), sleeper.get_server_pid()
    listed = {s["pid"] for r in results for s in r.details["sessions"]}
    assert {hp, wp, sp} <= listed
    assert any(r.details["blocking"] and r.details["blocking"][0]["pid"] == hp for r in results)
    last = results[-1]
    assert last.details["statements"]["available"] is True
    assert all(e["query"] for e in last.details["statements"]["by_total"])
    assert last.details["tables"]["by_size"]
    assert last.details["indexes"]["duplicate"]
    assert last.details["replication"]["role"] == "primary"
    assert last.details["role"]["superuser"] is True
    assert not [n for n in last.details["notes"] if "turned off" in n], last.details["notes"]
    # The custom query ran in the probe's session(s): the limits every query runs under.
    seen = [{k: v for k, v in r.metrics.items() if k.startswith("session.")} for r in results
            if "session.pid" in r.metrics]
    sessions_seen = {int(v["session.pid"]) for v in seen}
    assert len(seen) >= 2, seen
    assert len(sessions_seen) == 2, seen  # before and after the kill
    for v in seen:
        assert v["session.st_ms"] == statement_timeout_ms(target) > 0
        assert v["session.lock_ms"] == 100
        assert v["session.idle_tx_ms"] > 0
        assert (v["session.default_ro"], v["session.tx_ro"], v["session.app_ok"]) == (1, 1, 1)
    longs = [{k: v for k, v in r.metrics.items() if k.startswith("session_long.")}
             for r in results if "session_long.pid" in r.metrics]
    assert longs
    for v in longs:
        assert (v["session_long.st_ms"], v["session_long.lock_ms"]) == (1500, 100)
        assert v["session_long.tx_ro"] == 1

    # -- what the server saw --------------------------------------------------------------
    records: list[Record] = []
    for _ in range(100):  # bounded: wait for the closed session's disconnection line
        with pg_server.log.open("rb") as f:
            f.seek(audit_log)
            records = parse_log(f.read().decode("utf-8", "replace"))
        probe_pids = {r.pid for r in records if r.app == APPLICATION_NAME or
                      f"application_name={APPLICATION_NAME}" in r.msg}
        ended = {r.pid for r in records if r.msg.startswith("disconnection:")}
        if probe_pids and probe_pids <= ended:
            break
        await asyncio.sleep(0.02)
    mine = [r for r in records if r.pid in probe_pids]
    assert probe_pids == sessions_seen  # two sessions: the first one and the reconnect
    assert victim in probe_pids
    assert sampler.pids <= probe_pids
    assert {r.db for r in mine if r.db not in ("", "[unknown]")} == {DB}
    assert {r.user for r in mine if r.user not in ("", "[unknown]")} == {"postgres"}

    # Every statement read-only.
    statements = [(r, m["sql"]) for r in mine if r.level == "LOG"
                  for m in [STATEMENT.match(r.msg)] if m]
    problems = [(sql[:200], why) for _, sql in statements
                for why in [read_only_problem(sql)] if why]
    assert statements
    assert not problems, problems
    openings = [guards_of(sql) for _, sql in statements if guards_of(sql) is not None]
    assert openings
    assert all(g == {"statement_timeout": 1500, "lock_timeout": 100,
                     "idle_in_transaction_session_timeout": 3000} for g in openings), openings
    # Only built-in result and parameter types: asyncpg never had to introspect one (its
    # recursive catalog query, with set_config('jit') around it, on the monitored server).
    assert not [sql for _, sql in statements if "typeinfo_tree" in sql]
    kinds = collections.Counter(statement_kind(sql) for _, sql in statements)
    texts = collections.Counter(" ".join(sql.split())[:70] for _, sql in statements)
    errors = [r.msg for r in mine if r.level == "ERROR"]
    print(f"\n{len(statements)} statements in {run_s:.1f}s "
          f"({len(statements) / run_s * 60:.0f}/min) from {len(probe_pids)} sessions; "
          f"kinds {dict(kinds)}; errors {errors}; pg_stat_activity sampled {sampler.samples}x")
    for text, count in texts.most_common():
        print(f"  {count:4d}  {text}")
    # The fast loop is one statement per check; the costly collectors ran once per slow round.
    fast = [sql for _, sql in statements if "pg_stat_activity" in sql
            and "pg_stat_database" in sql]
    assert len(fast) == len(results)
    pgss_reads = [sql for _, sql in statements if "pg_stat_statements(false)" in sql]
    size_reads = [sql for _, sql in statements if "pg_database_size" in sql]
    assert 2 <= len(pgss_reads) == len(size_reads) <= 4 < len(results)

    # One connection at a time: sessions follow each other, and no other TCP connection
    # (asyncpg's CancelRequest opens one) reached the server.
    spans = []
    for pid in probe_pids:
        times = [r.ts for r in records if r.pid == pid]
        ends = [r.ts for r in records if r.pid == pid and r.msg.startswith("disconnection:")]
        assert ends, f"session {pid} never ended"
        spans.append((min(times), ends[-1]))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, spans
    assert sampler.max_seen == 1
    assert sampler.samples >= 50
    tcp = {r.pid for r in records if r.msg.startswith("connection received: host=127.0.0.1")}
    assert tcp == probe_pids
