"""PostgreSQL probe: one persistent read-only asyncpg connection, one stats query per check.

Why it is built this way (see RELIABILITY-NOTES §2, §5.4–5.7):

* **One connection, not a pool.** A monitor should cost the server one backend. It is opened
  lazily, kept between checks, and replaced after any connection-level failure.
* **A hard client-side deadline** (`target.timeout`) covers waiting for a concurrent check,
  connect, TLS, authentication and the query. asyncpg's own defaults wait 60 s to connect and
  forever for a query. When the deadline passes, or the connection breaks, the connection is
  dropped with `terminate()`. `close()` is never awaited on a connection in doubt:
  cancelling a query makes asyncpg open a *second* connection to send a CancelRequest, with no
  timeout (asyncpg#1326, #1356). `terminate()` also cancels that background task.
* **The server enforces limits too.** Session settings sent at startup: `application_name`
  `opsconsole`, `default_transaction_read_only` on, and `statement_timeout` ≤ min(1 s,
  interval/2, 80 % of the timeout). They also set `lock_timeout` 100 ms and
  `idle_in_transaction_session_timeout`, so a query we gave up on does not keep running.
* **Poolers.** PgBouncer and Supavisor in transaction mode refuse those startup parameters
  (`unsupported startup parameter`), or are told to ignore them, and then hand each
  transaction to any server connection, so session settings cannot hold. With `pooler =
  "transaction"`, or automatically (`"auto"`) when a pooler rejects the parameters or the
  first query finds the guards missing, every collection round runs inside `BEGIN READ ONLY;
  SET LOCAL statement_timeout …; SET LOCAL lock_timeout …` and `COMMIT`, with no named
  prepared statements (`statement_cache_size=0`). A custom query with its own
  `query_timeouts` entry runs the same way on a direct connection.
* **TLS is never chosen silently.** An `sslmode` in the DSN (or `PGSSLMODE`) is used as written.
  Without either, a loopback or Unix-socket server gets plaintext, and any other host gets
  `verify-full` against the system trust store (chain and hostname checked). asyncpg's
  default `prefer` can fall back to plaintext without telling anyone. To connect in plaintext
  over a network, write `?sslmode=disable` in the DSN.
* **TCP keep-alive** (30 s idle, 5 s interval, 3 probes) notices a vanished server between
  checks. asyncpg has no option for it, so it is set on the socket when one is reachable.
* **Honest retries.** There is at most one immediate retry, on a fresh connection and inside
  the same deadline. It happens only after a connection-level error on a connection that was
  already established, so a server restart between two checks does not show a false DOWN.
  Timeouts are never retried.

Metrics are listed in `METRICS` (every check) and `SLOW_METRICS` (slow collectors). Counters
(`xact_total`, `rollbacks_total`, `deadlocks_total`) are reported raw for the store, and the
`*_per_s` rates and `cache_hit_pct` come from deltas since the previous check, never since the
server started, so they reflect current behaviour. A role without `pg_monitor` (or
`pg_read_all_stats`) cannot see other roles' session states, so the active,
idle-in-transaction and waiting counts would be too low; grant it to the monitoring role.

**Connections as the server counts them.** An ordinary role is refused once
`max_connections - superuser_reserved_connections - reserved_connections` (the last on 16+)
client backends exist, so `pool_usage_pct` is measured against that number, and the details
break the connections down per role, database, application and state (the top holders).

**Two loops on one connection.** The fast loop is one prepared query per check: session
counts, `pg_stat_database` counters, the oldest transaction, transaction-ID and multixact
age (`pg_database`), and the few sessions worth a look (running longer than `slow_query`, in
a transaction that long, idle in a transaction that long, waiting on a lock, or blocking
one; `pg_blocking_pids()` is called only for lock waiters). Everything costly runs on
`slow_interval` (default 60 s), after the fast query of a check that finds it due:
`pg_database_size`, table and index sizes with vacuum state, running vacuums, unused and
duplicate indexes, replication and its slots, WAL and checkpoints,
`pg_stat_statements(false)` (texts fetched afterwards only for the rows shown, by queryid,
and cached) and the target's custom `queries`.

**Collectors that recover.** Each slow collector runs under a statement_timeout and only
while the check's deadline leaves room for it. One that fails for a reason that can pass (a
lock held by ALTER TABLE or VACUUM FULL, a statement timeout, a table that does not exist
yet, a lost connection) is retried with an exponential backoff (from one check interval up
to `max(slow_interval, 10 min)`), and its last values stay in the details with their age
and the reason. Only an error no retry can fix (a syntax error, a missing privilege) turns
it off, with a note saying so. `details["collectors"]` records each collector's state.
Results go into `CheckResult.details` (see `_details`); the slow parts are carried into
every result until the next slow run.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import json
import math
import os
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from console.engine.config.envref import MissingEnv, expand_url
from console.engine.config.schema import PostgresTarget
from console.engine.details import (
    PgCheckpoints,
    PgCollector,
    PgConnectionGroup,
    PgConnectionGroups,
    PgConnections,
    PgDatabase,
    PgQueryResult,
    PgReplication,
    PgRole,
    PgStatements,
    PgTransactions,
    PostgresDetails,
)
from console.engine.model import CheckResult, Status
from console.engine.probes.catalog import POSTGRES_METRICS as METRICS
from console.engine.probes.catalog import POSTGRES_SLOW_METRICS as SLOW_METRICS
from console.engine.text.fmt import format_age, format_bytes
from console.engine.text.redact import describe_exception, redact, register_secret
from console.engine.text.sanitize import one_line

# Custom queries add `<name>` (one number) or `<name>.<column>` (one row of numbers).
APPLICATION_NAME = "opsconsole"
POOL_DEGRADED_PCT = 80.0
WRAPAROUND_IDS = 2.0**31  # XIDs and multixacts wrap after 2^31 (PostgreSQL docs §25.1.5)
LOCK_TIMEOUT_MS = 100
BACKOFF_CAP_S = 600.0  # a failing collector is retried at least this often (or slow_interval)
GROWTH_PER_DAY_AFTER_S = 3600.0  # no per-day figure extrapolated from less than an hour
# The scheduler's backstop is timeout + 0.25 s; the probe itself must finish well inside it.
_KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}

# One round trip: everything a fast-loop check needs, all plain built-in types (no type
# introspection query), cheap catalog views only (no pg_database_size, no pg_stat_statements).
# $1 = slow_query threshold in seconds, $2 = most sessions listed, $3 = long_transaction in
# seconds. pg_stat_activity is read once (the CTE is materialised); pg_blocking_pids() runs
# only for sessions waiting on a lock. Ages can come out negative (now() is this
# transaction's start, and another session's query may have started after it): aggregates
# are clamped here, per-row ages in Python (`_age`), because greatest() would turn a NULL
# ("never") into 0.
STATS_SQL = """
WITH a AS MATERIALIZED (
    SELECT pid, usename, datname, application_name, client_addr, state, wait_event_type,
           wait_event, query_start, xact_start, state_change, query,
           pid = pg_catalog.pg_backend_pid() AS me
    FROM pg_catalog.pg_stat_activity
    WHERE backend_type = 'client backend'
), w AS MATERIALIZED (
    SELECT pid, pg_catalog.pg_blocking_pids(pid) AS blockers
    FROM a WHERE wait_event_type = 'Lock'
), s AS (
    SELECT a.pid, a.usename AS "user", a.datname AS db, a.application_name AS application,
           host(a.client_addr) AS client, a.state,
           a.wait_event_type || ':' || a.wait_event AS wait,
           extract(epoch FROM now() - a.query_start)::float8 AS query_s,
           extract(epoch FROM now() - a.xact_start)::float8 AS xact_s,
           extract(epoch FROM now() - a.state_change)::float8 AS state_s,
           w.blockers AS blocked_by, left(a.query, 2000) AS query
    FROM a LEFT JOIN w USING (pid)
    WHERE NOT a.me AND (
        (a.state = 'active' AND a.query_start < now() - make_interval(secs => $1))
        OR a.xact_start < now() - make_interval(secs => $1)
        OR (a.state LIKE 'idle in transaction%'
            AND a.state_change < now() - make_interval(secs => $1))
        OR w.pid IS NOT NULL
        OR a.pid IN (SELECT unnest(blockers) FROM w))
    ORDER BY w.pid IS NULL, coalesce(a.xact_start, a.query_start) NULLS LAST
    LIMIT $2
), g AS (
    SELECT usename AS "user", datname AS db, application_name AS app, state,
           count(*)::int AS n
    FROM a GROUP BY 1, 2, 3, 4 ORDER BY n DESC LIMIT 200
), o AS (
    SELECT pid, usename AS "user", datname AS db, application_name AS application, state,
           extract(epoch FROM now() - xact_start)::float8 AS xact_s,
           left(query, 2000) AS query
    FROM a WHERE xact_start IS NOT NULL AND NOT me
    ORDER BY xact_start LIMIT 1
), x AS (
    SELECT max(pg_catalog.age(datfrozenxid))::float8 AS xid_age,
           max(pg_catalog.mxid_age(datminmxid))::float8 AS mxid_age,
           (array_agg(datname ORDER BY pg_catalog.age(datfrozenxid) DESC))[1] AS xid_db
    FROM pg_catalog.pg_database
)
SELECT c.total, c.active, c.idle_in_tx, c.idle_in_tx_aborted, c.waiting, c.slow, c.longest_s,
       c.idle_in_tx_max_s, c.oldest_xact_s, c.long_xacts,
       (SELECT count(*) FROM w WHERE cardinality(blockers) > 0)::float8 AS blocked,
       (SELECT json_agg(s) FROM s) AS sessions,
       (SELECT json_agg(g) FROM g) AS groups,
       (SELECT row_to_json(o) FROM o) AS oldest,
       x.xid_age, x.mxid_age, x.xid_db,
       current_setting('max_connections')::float8 AS max_connections,
       current_setting('superuser_reserved_connections')::float8 AS su_reserved,
       coalesce(current_setting('reserved_connections', true), '0')::float8 AS reserved,
       (current_setting('transaction_read_only') = 'on'
        AND current_setting('statement_timeout') NOT IN ('0', '0ms')
        AND current_setting('lock_timeout') NOT IN ('0', '0ms')) AS guarded,
       d.xact_commit::float8 AS xact_commit, d.xact_rollback::float8 AS xact_rollback,
       d.blks_hit::float8 AS blks_hit, d.blks_read::float8 AS blks_read,
       d.deadlocks::float8 AS deadlocks, d.temp_files::float8 AS temp_files,
       d.temp_bytes::float8 AS temp_bytes, d.tup_inserted::float8 AS tup_inserted,
       d.tup_updated::float8 AS tup_updated, d.tup_deleted::float8 AS tup_deleted
FROM (
    SELECT count(*)::float8 AS total,
           count(*) FILTER (WHERE state = 'active' AND NOT me)::float8 AS active,
           count(*) FILTER (WHERE state = 'idle in transaction')::float8 AS idle_in_tx,
           count(*) FILTER (WHERE state = 'idle in transaction (aborted)')::float8
               AS idle_in_tx_aborted,
           count(*) FILTER (WHERE wait_event_type = 'Lock')::float8 AS waiting,
           count(*) FILTER (WHERE state = 'active' AND NOT me
                            AND query_start < now() - make_interval(secs => $1))::float8 AS slow,
           greatest(0, coalesce(max(extract(epoch FROM now() - query_start))
                    FILTER (WHERE state = 'active' AND NOT me), 0))::float8 AS longest_s,
           greatest(0, coalesce(max(extract(epoch FROM now() - state_change))
                    FILTER (WHERE state LIKE 'idle in transaction%'), 0))::float8
               AS idle_in_tx_max_s,
           greatest(0, coalesce(max(extract(epoch FROM now() - xact_start))
                    FILTER (WHERE NOT me), 0))::float8 AS oldest_xact_s,
           count(*) FILTER (WHERE NOT me
                            AND xact_start < now() - make_interval(secs => $3))::float8
               AS long_xacts
    FROM a
) AS c
CROSS JOIN x
LEFT JOIN pg_catalog.pg_stat_database AS d ON d.datname = current_database()
"""

# -- slow collectors (each one query, under the session's statement_timeout) -------------

ROLE_SQL = """
SELECT current_user AS role, r.rolsuper AS superuser,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_all_stats,
       pg_has_role(current_user, 'pg_monitor', 'USAGE') AS monitor,
       current_setting('server_version_num')::int AS version,
       current_setting('track_io_timing')::bool AS io_timing
FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user
"""
DB_SIZE_SQL = "SELECT pg_catalog.pg_database_size(current_database())::float8"
# Tables by size, by sequential reads and by dead tuples (vacuum health), in one list: the
# union of the three top-N sets. Ages of the last (auto)vacuum/analyze in seconds, ≥ 0.
TABLES_SQL = """
WITH t AS (
    SELECT s.relid, s.schemaname AS schema, s.relname AS name,
           s.n_live_tup::float8 AS live_rows, s.n_dead_tup::float8 AS dead_rows,
           s.seq_scan::float8 AS seq_scan, s.seq_tup_read::float8 AS seq_tup_read,
           s.idx_scan::float8 AS idx_scan, s.n_tup_ins::float8 AS n_tup_ins,
           s.n_tup_upd::float8 AS n_tup_upd, s.n_tup_del::float8 AS n_tup_del,
           s.vacuum_count::float8 AS vacuum_count, s.autovacuum_count::float8 AS autovacuum_count,
           extract(epoch FROM now() - s.last_autovacuum)::float8
               AS last_autovacuum_s,
           extract(epoch FROM now() - s.last_vacuum)::float8 AS last_vacuum_s,
           extract(epoch FROM now() - s.last_autoanalyze)::float8
               AS last_autoanalyze_s,
           extract(epoch FROM now() - s.last_analyze)::float8 AS last_analyze_s
    FROM pg_catalog.pg_stat_user_tables AS s
), pick AS (
    (SELECT relid FROM t ORDER BY pg_catalog.pg_total_relation_size(relid) DESC LIMIT $1)
    UNION (SELECT relid FROM t WHERE seq_scan > 0 ORDER BY seq_tup_read DESC LIMIT $1)
    UNION (SELECT relid FROM t WHERE dead_rows > 0 ORDER BY dead_rows DESC LIMIT $1)
)
SELECT t.*, pg_catalog.pg_total_relation_size(t.relid)::float8 AS total_bytes,
       pg_catalog.pg_relation_size(t.relid)::float8 AS table_bytes
FROM t JOIN pick USING (relid)
"""
VACUUM_SQL = """
SELECT p.pid, p.datname AS db, p.relid::regclass::text AS "table", p.phase,
       p.heap_blks_total::float8 AS heap_blks_total,
       p.heap_blks_scanned::float8 AS heap_blks_scanned,
       p.heap_blks_vacuumed::float8 AS heap_blks_vacuumed,
       p.index_vacuum_count::float8 AS index_vacuum_count,
       extract(epoch FROM now() - a.xact_start)::float8 AS running_s,
       a.query LIKE 'autovacuum:%' AS auto
FROM pg_catalog.pg_stat_progress_vacuum AS p
LEFT JOIN pg_catalog.pg_stat_activity AS a USING (pid)
"""
INDEXES_SQL = """
SELECT s.schemaname AS schema, s.relname AS "table", s.indexrelname AS index,
       s.idx_scan::float8 AS idx_scan, s.idx_tup_read::float8 AS idx_tup_read,
       pg_catalog.pg_relation_size(s.indexrelid)::float8 AS bytes,
       (i.indisunique OR i.indisprimary OR i.indisexclusion) AS "unique"
FROM pg_catalog.pg_stat_user_indexes AS s
JOIN pg_catalog.pg_index AS i ON i.indexrelid = s.indexrelid
ORDER BY bytes DESC
LIMIT $1
"""
UNUSED_INDEXES_SQL = """
SELECT s.schemaname AS schema, s.relname AS "table", s.indexrelname AS index,
       pg_catalog.pg_relation_size(s.indexrelid)::float8 AS bytes,
       count(*) OVER ()::float8 AS total
FROM pg_catalog.pg_stat_user_indexes AS s
JOIN pg_catalog.pg_index AS i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AND NOT i.indisexclusion
ORDER BY bytes DESC
LIMIT $1
"""
DUPLICATE_INDEXES_SQL = """
SELECT n.nspname AS schema, t.relname AS "table",
       array_agg(ic.relname::text ORDER BY ic.relname) AS indexes,
       sum(pg_catalog.pg_relation_size(i.indexrelid))::float8 AS bytes
FROM pg_catalog.pg_index AS i
JOIN pg_catalog.pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_catalog.pg_class AS t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace AS n ON n.oid = t.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
GROUP BY n.nspname, t.relname, i.indrelid, i.indkey::text, i.indclass::text,
         i.indcollation::text, coalesce(pg_catalog.pg_get_expr(i.indexprs, i.indrelid), ''),
         coalesce(pg_catalog.pg_get_expr(i.indpred, i.indrelid), '')
HAVING count(*) > 1
ORDER BY bytes DESC
LIMIT $1
"""
# A replica that has replayed everything it received has no lag, however old its last
# replayed transaction is (a quiet primary sends nothing to replay).
REPLICATION_SQL = """
SELECT pg_catalog.pg_is_in_recovery() AS in_recovery,
       CASE WHEN NOT pg_catalog.pg_is_in_recovery() THEN NULL
            WHEN pg_catalog.pg_last_wal_receive_lsn() = pg_catalog.pg_last_wal_replay_lsn()
                THEN 0::float8
            ELSE extract(epoch FROM now()
                         - pg_catalog.pg_last_xact_replay_timestamp())::float8
       END AS replay_delay_s,
       pg_catalog.pg_wal_lsn_diff(
           CASE WHEN pg_catalog.pg_is_in_recovery()
                THEN pg_catalog.pg_last_wal_receive_lsn()
                ELSE pg_catalog.pg_current_wal_lsn() END, '0/0')::float8 AS wal_lsn,
       (SELECT json_agg(r) FROM (
           SELECT application_name AS name, host(client_addr) AS client, state, sync_state,
                  extract(epoch FROM write_lag)::float8 AS write_lag_s,
                  extract(epoch FROM flush_lag)::float8 AS flush_lag_s,
                  extract(epoch FROM replay_lag)::float8 AS replay_lag_s,
                  pg_catalog.pg_wal_lsn_diff(
                      CASE WHEN pg_catalog.pg_is_in_recovery()
                           THEN pg_catalog.pg_last_wal_receive_lsn()
                           ELSE pg_catalog.pg_current_wal_lsn() END, replay_lsn)::float8
                      AS lag_bytes
           FROM pg_catalog.pg_stat_replication) AS r) AS replicas,
       (SELECT json_agg(row_to_json(s)::jsonb || jsonb_build_object('retained_bytes',
                  pg_catalog.pg_wal_lsn_diff(
                      CASE WHEN pg_catalog.pg_is_in_recovery()
                           THEN pg_catalog.pg_last_wal_receive_lsn()
                           ELSE pg_catalog.pg_current_wal_lsn() END, s.restart_lsn)::float8))
        FROM pg_catalog.pg_replication_slots AS s) AS slots
"""
# pg_stat_checkpointer replaced the checkpoint columns of pg_stat_bgwriter in 17.
CHECKPOINTS_SQL = {
    False: "SELECT checkpoints_timed::float8 AS timed, checkpoints_req::float8 AS req "
           "FROM pg_catalog.pg_stat_bgwriter",
    True: "SELECT num_timed::float8 AS timed, num_requested::float8 AS req "
          "FROM pg_catalog.pg_stat_checkpointer",
}
PGSS_SCHEMA_SQL = """
SELECT n.nspname FROM pg_catalog.pg_extension AS e
JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
WHERE e.extname = 'pg_stat_statements'
"""
# showtext=false: the external query-text file is not read (RELIABILITY-NOTES §2). Block
# I/O time columns were renamed in 17 (shared_/local_ prefixes).
PGSS_SQL = """
SELECT queryid::text AS queryid, sum(calls)::float8 AS calls,
       sum(total_exec_time)::float8 AS total_ms, sum(rows)::float8 AS rows,
       sum({io})::float8 AS io_ms
FROM {schema}.pg_stat_statements(false)
WHERE dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
  AND queryid IS NOT NULL
GROUP BY queryid
"""
PGSS_IO = {False: "blk_read_time + blk_write_time",
           True: "shared_blk_read_time + shared_blk_write_time + local_blk_read_time "
                 "+ local_blk_write_time"}
# Texts for the rows shown only, once per queryid (cached): this read loads the text file.
# The ids go as text[] (a core asyncpg codec): a bigint[] parameter made asyncpg run its type
# introspection (a recursive catalog query, and set_config('jit') around it) on the server.
PGSS_TEXT_SQL = """
SELECT DISTINCT ON (queryid) queryid::text AS queryid, left(query, 2000) AS query
FROM {schema}.pg_stat_statements(true)
WHERE queryid = ANY($1::text[]::bigint[])
"""
CUSTOM_SQL = "SELECT * FROM ({sql}\n) AS opsconsole_q LIMIT 2"

QUERY_CHARS = 1000  # query texts kept per row in details
_TEXT_CACHE = 512  # pg_stat_statements texts kept per target
_SQL_PASSWORD = re.compile(r"(\bpassword\s+)'(?:[^']|'')*'", re.I)

# Errors that mean "this connection is gone", as opposed to "the server said no".
_CONNECTION_LOST = (
    asyncpg.exceptions.PostgresConnectionError,  # ConnectionDoesNotExistError etc.
    asyncpg.exceptions.AdminShutdownError,  # 57P01: pg_terminate_backend / fast shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.InterfaceError,  # "connection is closed"
    ConnectionError,  # reset, broken pipe (OSError subclasses)
)


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """What the DSN says about where and how to connect, parsed without asyncpg."""

    where: str  # "host:port" of the first host, for messages
    local: bool  # every host is loopback or a Unix socket
    sslmode: str | None  # as written in the DSN, if any
    has_rootcert: bool
    tls_files: tuple[str, ...] = ()  # sslrootcert/sslcert/sslkey named in the DSN


def _parse_endpoint(dsn: str) -> _Endpoint:
    parts = urlsplit(dsn)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items() if v}
    hostspec = parts.netloc.rpartition("@")[2]
    hosts: list[tuple[str, str]] = []
    for item in filter(None, hostspec.split(",")):
        if item.startswith("["):  # [ipv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, _, port = item.partition(":")
        hosts.append((unquote(host), port))
    if "host" in query:
        hosts = hosts or [(h, "") for h in query["host"].split(",")]
    default_port = query.get("port", "5432").split(",")[0]
    if not hosts:
        hosts = [(os.environ.get("PGHOST", ""), "")]

    def is_local(host: str) -> bool:
        if not host or host.startswith("/") or host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    first_host, first_port = hosts[0]
    where = f"{first_host or 'local socket'}:{first_port or default_port}"
    if first_host.startswith("/"):
        where = f"socket {first_host}"
    return _Endpoint(
        where=where,
        local=all(is_local(h) for h, _ in hosts),
        sslmode=query.get("sslmode"),
        has_rootcert="sslrootcert" in query,
        tls_files=tuple(query[k] for k in ("sslrootcert", "sslcert", "sslkey") if k in query),
    )


def _ssl_choice(ep: _Endpoint) -> Any:
    """The `ssl=` argument for asyncpg: never its silent `prefer` default (see module doc)."""
    if ep.sslmode or os.environ.get("PGSSLMODE"):
        return None  # the operator chose; asyncpg applies the DSN/env value
    if ep.has_rootcert:
        return "verify-full"  # asyncpg loads the given root certificate
    # False: plaintext on loopback. True: asyncpg uses ssl.create_default_context(), i.e.
    # verify-full against the system trust store.
    return not ep.local


def statement_timeout_ms(target: PostgresTarget) -> int:
    """≤ min(1 s, interval/2, 80 % of the check timeout), at least 50 ms."""
    seconds = min(1.0, target.interval / 2, target.timeout * 0.8)
    return max(50, int(seconds * 1000))


def _set_keepalive(conn: asyncpg.Connection) -> None:
    """Best effort: asyncpg exposes no option, so reach the socket through the transport."""
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE.items():
            opt = getattr(socket, name, None)
            if opt is not None:
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)
    except OSError:
        pass


def _os_errno(exc: BaseException) -> int | None:
    """The errno of the first OSError in the cause chain (asyncpg wraps some)."""
    cur: BaseException | None = exc
    seen = 0
    while cur is not None and seen < 5:
        if isinstance(cur, OSError) and cur.errno:
            return cur.errno
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def describe_error(exc: BaseException, ep: _Endpoint, stmt_ms: int) -> str:
    """An operator-facing message for a failed check: specific, one line, no secrets."""
    pg = asyncpg.exceptions
    where = ep.where
    text: str
    if isinstance(exc, MissingEnv):
        text = f"environment variable {exc.args[0]} is not set"
    elif isinstance(exc, socket.gaierror):
        text = f"cannot resolve the host of {where}: {exc.strerror or exc}"
    elif isinstance(exc, ssl.SSLCertVerificationError):
        text = f"TLS certificate verification failed for {where}: {exc.verify_message or exc}"
    elif isinstance(exc, ssl.SSLError):
        text = f"TLS error with {where}: {exc.reason or exc}"
    elif isinstance(exc, pg.InvalidPasswordError):
        text = exc.message or "password authentication failed"
    elif isinstance(exc, pg.InvalidCatalogNameError):
        text = exc.message or "database does not exist"
    elif isinstance(exc, pg.InvalidAuthorizationSpecificationError):
        text = exc.message or "the server rejected the login"  # role missing, pg_hba.conf
    elif isinstance(exc, pg.InsufficientPrivilegeError):
        detail = f" ({exc.detail})" if getattr(exc, "detail", None) else ""
        text = f"insufficient privilege: {exc.message}{detail}"
    elif isinstance(exc, pg.QueryCanceledError):
        text = f"the stats query was cancelled by the server (statement_timeout {stmt_ms} ms)"
    elif isinstance(exc, pg.TooManyConnectionsError):
        text = f"server refused the connection: {exc.message}"
    elif isinstance(exc, pg.AdminShutdownError | pg.CrashShutdownError):
        text = f"server closed the connection: {exc.message}"
    elif isinstance(exc, pg.PostgresConnectionError):
        text = f"connection to {where} lost: {exc.message or type(exc).__name__}"
    elif isinstance(exc, pg.PostgresError):
        text = f"{exc.message} (SQLSTATE {exc.sqlstate})"
    elif isinstance(exc, pg.ClientConfigurationError):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        text = f"invalid connection settings: {first}"
    elif isinstance(exc, pg.InterfaceError):
        text = f"connection to {where} lost: {exc}"
    elif "rejected SSL upgrade" in str(exc):
        text = (f"{where} does not offer TLS, which this connection requires "
                "(write ?sslmode=disable in the DSN to allow plaintext)")
    elif _os_errno(exc) == errno.ECONNREFUSED or "Connect call failed" in str(exc):
        text = f"connection refused by {where}"
    elif isinstance(exc, FileNotFoundError | PermissionError) and (exc.filename or ep.tls_files):
        # ssl.load_verify_locations() does not say which file; the DSN does.
        names = [exc.filename] if exc.filename else [
            f for f in ep.tls_files if not os.access(f, os.R_OK)] or list(ep.tls_files)
        text = f"cannot read {', '.join(map(str, names))}: {exc.strerror}"
    elif isinstance(exc, ConnectionResetError):
        text = f"connection to {where} reset by the server"
    elif isinstance(exc, OSError):
        text = f"cannot connect to {where}: {exc.strerror or describe_exception(exc)}"
    else:
        text = describe_exception(exc)
    return one_line(redact(text))


def sql_text(text: object, max_len: int = QUERY_CHARS) -> str:
    """A query text for display: whitespace collapsed, passwords masked, one bounded line."""
    flat = " ".join(str(text or "").split())
    return one_line(redact(_SQL_PASSWORD.sub(r"\1'***'", flat)), max_len)


def _float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _rounded(value: Any, digits: int = 3) -> float | None:
    f = _float(value)
    return None if f is None else round(f, digits)



def _session(raw: dict[str, Any]) -> dict[str, Any]:
    """One listed session, with remote text made safe; duration is that of its current state
    (query age when active, time in the state otherwise), xact_s the transaction's age."""
    state = raw.get("state") or ""
    duration = raw.get("query_s") if state == "active" else raw.get("state_s")
    return {
        "pid": int(raw.get("pid") or 0),
        "user": one_line(raw.get("user") or "", 64),
        "db": one_line(raw.get("db") or "", 64),
        "application": one_line(raw.get("application") or "", 64),
        "client": one_line(raw.get("client") or "", 64),
        "state": one_line(state, 40),
        "wait": one_line(raw.get("wait") or "", 64),
        "duration_s": _age(duration),
        "xact_s": _age(raw.get("xact_s")),
        "blocked_by": [int(p) for p in raw.get("blocked_by") or []],
        "query": sql_text(raw.get("query")),
    }


def _age(value: Any) -> float | None:
    """An age in seconds: None stays "no value", a negative one (clock skew) becomes 0."""
    f = _float(value)
    return None if f is None else round(max(0.0, f), 3)


def _json(raw: Any) -> Any:
    """A json column as asyncpg hands it over (text); None or garbage gives None."""
    if raw is None or not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return None


def connection_groups(groups: list[dict[str, Any]]) -> PgConnectionGroups:
    """Connections per role, database, application and state, largest first, from the
    (user, db, app, state) counts of the stats query (NULL, e.g. a hidden state, is "")."""

    def by(key: str) -> list[PgConnectionGroup]:
        counts: collections.Counter[str] = collections.Counter()
        for g in groups:
            counts[one_line(g.get(key) or "", 64)] += int(g.get("n") or 0)
        return [{"name": name, "connections": n} for name, n in counts.most_common()]

    return {"by_role": by("user"), "by_database": by("db"), "by_application": by("app"),
            "by_state": by("state")}


def top_holders(by: PgConnectionGroups, n: int = 3) -> str:
    """'role app 12, role web 3' style: who holds the connections, for a reason line."""
    parts = [f"{g['name'] or '(none)'} {g['connections']}" for g in by.get("by_role", [])[:n]]
    apps = [f"{g['name'] or '(none)'} {g['connections']}"
            for g in by.get("by_application", [])[:n]]
    return f"roles: {', '.join(parts) or '-'}; applications: {', '.join(apps) or '-'}"


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


@dataclass(slots=True)
class _Collector:
    """One slow collector's schedule and health (see "Collectors that recover")."""

    due: float = 0.0  # monotonic time it may run next
    failures: int = 0  # consecutive failures
    ok_at: float | None = None  # wall-clock time of its last success
    reason: str | None = None  # why the last run failed (None after a success)
    retry_at: float | None = None  # wall-clock time of the next try after a failure
    off: str | None = None  # set for an error no retry can fix: never run again

    def state(self) -> str:
        return "off" if self.off else ("retrying" if self.reason else "ok")


# Errors that cannot go away without a change of the config (or the role's grants):
# retrying them only repeats the same answer.
_CONFIG_ERRORS = (
    asyncpg.exceptions.InsufficientPrivilegeError,  # 42501
    asyncpg.exceptions.PostgresSyntaxError,  # 42601
)

def blocking_tree(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Blockers at the roots, the sessions they block beneath (a session waiting on several
    blockers appears under each). Cycles (a deadlock before the detector fires) are cut."""
    by_pid = {s["pid"]: s for s in sessions}
    children: dict[int, list[int]] = collections.defaultdict(list)
    for s in sessions:
        for blocker in s["blocked_by"]:
            children[blocker].append(s["pid"])
    roots = [pid for pid in children if not (by_pid.get(pid) or {}).get("blocked_by")]
    if not roots and children:  # everyone is blocked: a cycle; start anywhere
        roots = [min(children)]

    def node(pid: int, seen: frozenset[int]) -> dict[str, Any]:
        s = by_pid.get(pid, {"pid": pid, "user": "", "state": "", "duration_s": None,
                             "query": "(not visible)"})
        kids = [node(c, seen | {pid}) for c in children.get(pid, []) if c not in seen]
        return {"pid": pid, "user": s.get("user", ""), "state": s.get("state", ""),
                "duration_s": s.get("duration_s"), "query": s.get("query", ""),
                "blocked": kids}

    return [node(pid, frozenset()) for pid in sorted(roots)]


class PostgresProbe:
    """Checks one PostgreSQL target over a single persistent, read-only connection."""

    kind = "postgres"

    def __init__(self, target: PostgresTarget) -> None:
        self.target = target
        self._endpoint = _parse_endpoint(target.dsn)  # may hold ${ENV}: re-parsed on connect
        self._stmt_ms = statement_timeout_ms(target)
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._blocks: tuple[float, float] | None = None  # (blks_hit, blks_read) last check
        self._counters: tuple[float, dict[str, float]] | None = None  # (monotonic, values)
        self._phase = "starting"
        # Per transaction guards (BEGIN READ ONLY + SET LOCAL) instead of session settings:
        # asked for, or found necessary (a pooler); `_pooler_note` says which.
        self._per_tx = target.pooler == "transaction"
        self._pooler_note: str | None = None
        # Slow collectors: schedule and health per collector, and what they found, carried
        # into every result until they run again (or, failing, with their age).
        self._coll: dict[str, _Collector] = {}
        self._slow_details: PostgresDetails = {}
        self._slow_metrics: dict[str, float] = {}
        self._slow_notes: dict[str, str] = {}  # name -> note for this round (not failures)
        self._sizes: collections.deque[tuple[float, float]] = collections.deque(maxlen=1500)
        self._pgss_prev: tuple[float, dict[str, tuple[float, float, float, float]]] | None = None
        self._texts: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._wal_prev: tuple[float, float] | None = None  # (monotonic, lsn bytes)
        self._ckpt_prev: tuple[float, float, float] | None = None  # (monotonic, timed, req)
        self._tup_prev: tuple[float, dict[str, tuple[float, float, float]]] | None = None
        self._version = 0  # server_version_num, from the role collector

    def __repr__(self) -> str:
        return f"PostgresProbe({self.target.name!r}, {redact(self.target.dsn)!r})"

    # -- connection ------------------------------------------------------------------------

    def _drop(self) -> None:
        """Forget the connection without waiting on anything (asyncpg#1326/#1356)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    def _session_settings(self) -> dict[str, str]:
        settings = {"application_name": APPLICATION_NAME}
        if not self._per_tx:
            settings.update({
                "default_transaction_read_only": "on",
                "statement_timeout": str(self._stmt_ms),
                "lock_timeout": f"{LOCK_TIMEOUT_MS}ms",
                "idle_in_transaction_session_timeout": str(max(1000, 2 * self._stmt_ms)),
            })
        return settings

    def _use_per_tx(self, why: str) -> None:
        self._per_tx = True
        self._pooler_note = one_line(redact(
            f"{why}: the read-only, statement_timeout and lock_timeout guards are set in "
            "every transaction instead (BEGIN READ ONLY + SET LOCAL); set pooler = "
            "\"transaction\" to skip this detection"), 400)

    async def _connect(self, deadline: float) -> asyncpg.Connection:
        dsn = expand_url(self.target.dsn)  # percent-encodes a ${PW} inside the userinfo
        self._endpoint = ep = _parse_endpoint(dsn)
        parts = urlsplit(dsn)
        if parts.password:  # the DSN may be one ${VAR}: mask its parts too
            register_secret(unquote(parts.password), user=unquote(parts.username or ""))
        self._phase = f"connecting to {ep.where}"
        loop = asyncio.get_running_loop()
        remaining = max(0.001, deadline - loop.time())
        try:
            conn = await asyncpg.connect(
                dsn,
                timeout=remaining,
                command_timeout=None,  # our deadline, not asyncpg's cancel path, bounds queries
                ssl=_ssl_choice(ep),
                # A pooler in transaction mode hands each transaction to any server
                # connection: named prepared statements would not be there next time.
                statement_cache_size=0 if self._per_tx else 16,
                server_settings=self._session_settings(),
            )
        except asyncpg.exceptions.PostgresError as exc:
            if (self.target.pooler == "auto" and not self._per_tx
                    and "unsupported startup parameter" in str(exc).lower()):
                self._use_per_tx(f"the server (a pooler) refused a session setting "
                                 f"({one_line(str(exc), 120)})")
                return await self._connect(deadline)
            raise
        _set_keepalive(conn)
        return conn

    async def _guarded(self, conn: asyncpg.Connection, timeout_ms: int,
                       work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
        """Run `work` under the guards: the session's own when they hold and the timeout is
        the session's, else inside BEGIN READ ONLY with SET LOCAL limits (one round trip to
        open it), committed after, rolled back after an error the server reported."""
        if not self._per_tx and timeout_ms == self._stmt_ms:
            return await work(conn)
        await conn.execute(
            f"BEGIN READ ONLY; SET LOCAL statement_timeout = {int(timeout_ms)}; "
            f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}; "
            f"SET LOCAL idle_in_transaction_session_timeout = {max(1000, 2 * int(timeout_ms))}")
        try:
            out = await work(conn)
        except asyncpg.exceptions.PostgresError:
            if not conn.is_closed():
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
        return out

    async def _query(self, conn: asyncpg.Connection) -> tuple[asyncpg.Record, float]:
        self._phase = "waiting for the stats query"
        timing: list[float] = []

        async def stats(c: asyncpg.Connection) -> asyncpg.Record:
            t0 = time.perf_counter()
            row = await c.fetchrow(STATS_SQL, float(self.target.slow_query),
                                   max(20, 2 * self.target.top),
                                   float(self.target.long_transaction))
            timing.append((time.perf_counter() - t0) * 1000)
            return row

        row = await self._guarded(conn, self._stmt_ms, stats)
        return row, timing[0]

    async def _run(self, deadline: float) -> tuple[asyncpg.Record, float]:
        if self._conn is not None and self._conn.is_closed():
            self._drop()  # the server went away between checks; no need to try it
        reused = self._conn is not None
        if self._conn is None:
            self._conn = await self._connect(deadline)
        try:
            return await self._query(self._conn)
        except _CONNECTION_LOST:
            self._drop()
            if not reused:
                raise
        # One retry, on a fresh connection, inside the same deadline: a restart is not DOWN.
        self._conn = await self._connect(deadline)
        return await self._query(self._conn)

    # -- public ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        """One check; never raises except CancelledError, returns by `timeout` (+ a few ms)."""
        target = self.target
        started = time.time()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = t0 + target.timeout
        self._phase = "waiting for the previous check"
        cm = asyncio.timeout_at(deadline)
        try:
            async with cm, self._lock:
                row, latency_ms = await self._run(deadline)
                answered = time.monotonic()
                if (row["guarded"] is False and not self._per_tx
                        and target.pooler == "auto"):
                    # The session settings did not hold (a pooler dropped them): this round
                    # stops here; the next one reconnects with per-transaction guards.
                    self._use_per_tx("the session settings were not in effect on the "
                                     "server (a pooler that ignores startup parameters?)")
                    self._drop()
                else:
                    await self._slow(deadline)
        except asyncio.CancelledError:
            self._drop()  # mid-query state is unknown; never reuse it
            raise
        except Exception as exc:
            # A connection error leaves the connection unusable; a server-side "no" (e.g.
            # statement_timeout) does not, but a fresh connection is cheap and always safe
            # after a failure, so every failure drops it.
            self._drop()
            if cm.expired() or isinstance(exc, TimeoutError):
                error = f"timed out after {target.timeout:g}s {self._phase}"
                error = one_line(redact(error))
            else:
                error = describe_error(exc, self._endpoint, self._stmt_ms)
            return CheckResult(
                target=target.name, kind=self.kind, status=Status.DOWN, started_at=started,
                latency_ms=None, error=error,
            )
        metrics = self._metrics(row, latency_ms, answered)
        metrics.update({k: v for k, v in self._slow_metrics.items() if k not in metrics})
        self._slow_metrics = {}  # recorded once, at the slow cadence
        details = self._details(row)
        status = Status.UP
        reasons: tuple[str, ...] = ()
        usage = metrics.get("pool_usage_pct")
        if usage is not None and usage > POOL_DEGRADED_PCT:
            status = Status.DEGRADED
            reasons = (
                f"connections at {usage:.0f}% of the {metrics['connections_usable']:.0f} "
                f"applications may use ({metrics['connections_total']:.0f} of "
                f"max_connections {metrics['max_connections']:.0f}, "
                f"{metrics['connections_reserved']:.0f} reserved for superusers); "
                + top_holders(details["connections"]),
            )
        return CheckResult(
            target=target.name, kind=self.kind, status=status, started_at=started,
            latency_ms=latency_ms, reasons=reasons, metrics=metrics, details=details,
        )

    def _details(self, row: Any) -> PostgresDetails:
        listed = _json(row.get("sessions") if hasattr(row, "get") else None) or []
        sessions = [_session(r) for r in listed if isinstance(r, dict)]
        groups = _json(row.get("groups") if hasattr(row, "get") else None) or []
        oldest = _json(row.get("oldest") if hasattr(row, "get") else None)
        max_conn = float(row["max_connections"])
        reserved = float(row["su_reserved"] or 0) + float(row["reserved"] or 0)
        connections: PgConnections = {
            "total": float(row["total"]), "max_connections": max_conn,
            "superuser_reserved": float(row["su_reserved"] or 0),
            "reserved": float(row["reserved"] or 0), "usable": max(0.0, max_conn - reserved),
            **connection_groups([g for g in groups if isinstance(g, dict)]),
        }
        xid, mxid = _float(row["xid_age"]), _float(row["mxid_age"])
        transactions: PgTransactions = {
            "oldest": _session(oldest) if isinstance(oldest, dict) else None,
            "long_transaction_s": self.target.long_transaction,
            "xid_age": xid, "mxid_age": mxid, "oldest_xid_db": one_line(row["xid_db"] or "", 64),
            "xid_wraparound_pct": None if xid is None else round(xid / WRAPAROUND_IDS * 100, 3),
            "mxid_wraparound_pct": (None if mxid is None
                                    else round(mxid / WRAPAROUND_IDS * 100, 3)),
        }
        notes = [self._pooler_note] if self._pooler_note else []
        notes += [n for n in (self._collector_note(name, c) for name, c in self._coll.items())
                  if n]
        notes += list(self._slow_notes.values())
        return {
            "slow_query_s": self.target.slow_query,
            "sessions": sessions,
            "blocking": blocking_tree(sessions),
            "connections": connections,
            "transactions": transactions,
            "guards": "per transaction" if self._per_tx else "session",
            **self._slow_details,
            "collectors": {name: self._collector_state(c) for name, c in self._coll.items()},
            "notes": notes,
        }

    def _metrics(self, row: Any, latency_ms: float, now: float | None = None) -> dict[str, float]:
        now = time.monotonic() if now is None else now
        get = row.get if hasattr(row, "get") else (lambda k, d=None: d)
        m: dict[str, float] = {"latency_ms": latency_ms}
        total, max_conn = float(row["total"]), float(row["max_connections"])
        reserved = (_float(get("su_reserved")) or 0.0) + (_float(get("reserved")) or 0.0)
        m["connections_total"] = total
        m["connections_active"] = float(row["active"])
        m["connections_idle_in_tx"] = float(row["idle_in_tx"])
        m["connections_waiting"] = float(row["waiting"])
        m["max_connections"] = max_conn
        m["connections_reserved"] = reserved
        m["connections_usable"] = max(0.0, max_conn - reserved)
        if m["connections_usable"] > 0:
            m["pool_usage_pct"] = total / m["connections_usable"] * 100
        for name, key in (("slow_queries", "slow"), ("longest_query_s", "longest_s"),
                          ("idle_in_tx_max_s", "idle_in_tx_max_s"),
                          ("blocked_sessions", "blocked"),
                          ("connections_idle_in_tx_aborted", "idle_in_tx_aborted"),
                          ("oldest_xact_s", "oldest_xact_s"),
                          ("long_transactions", "long_xacts"),
                          ("xid_age", "xid_age"), ("mxid_age", "mxid_age")):
            value = _float(get(key))
            if value is not None:
                m[name] = value
        ages = [m[k] for k in ("xid_age", "mxid_age") if k in m]
        if ages:
            m["wraparound_pct"] = max(ages) / WRAPAROUND_IDS * 100
        if row["xact_commit"] is not None:  # no pg_stat_database row: leave counters out
            m["xact_total"] = float(row["xact_commit"]) + float(row["xact_rollback"])
            m["rollbacks_total"] = float(row["xact_rollback"])
            m["deadlocks_total"] = float(row["deadlocks"])
            hit, read = float(row["blks_hit"]), float(row["blks_read"])
            prev, self._blocks = self._blocks, (hit, read)
            if prev is not None:
                d_hit, d_read = hit - prev[0], read - prev[1]
                # Negative: stats reset or a new server; no lookups: no ratio to speak of.
                if d_hit >= 0 and d_read >= 0 and d_hit + d_read > 0:
                    m["cache_hit_pct"] = d_hit / (d_hit + d_read) * 100
            counters = {"xact_per_s": m["xact_total"], "rollbacks_per_s": m["rollbacks_total"],
                        "deadlocks_per_s": m["deadlocks_total"]}
            for name, key in (("temp_files_per_s", "temp_files"),
                              ("temp_bytes_per_s", "temp_bytes"),
                              ("rows_inserted_per_s", "tup_inserted"),
                              ("rows_updated_per_s", "tup_updated"),
                              ("rows_deleted_per_s", "tup_deleted")):
                value = _float(get(key))
                if value is not None:
                    counters[name] = value
            before, self._counters = self._counters, (now, counters)
            if before is not None and now - before[0] > 1e-3:
                dt = now - before[0]
                for name, value in counters.items():
                    old = before[1].get(name)
                    if old is not None and value >= old:  # a drop is a stats reset
                        m[name] = (value - old) / dt
        return {k: v for k, v in m.items() if math.isfinite(v)}

    # -- slow collectors -------------------------------------------------------------------

    def _collectors(self) -> list[tuple[str, int, Callable[[asyncpg.Connection],
                                                           Awaitable[None]]]]:
        """(name, statement_timeout ms, collect) of every slow collector, in run order."""
        ms = self._stmt_ms
        out: list[tuple[str, int, Callable[[asyncpg.Connection], Awaitable[None]]]] = [
            ("role", ms, self._c_role), ("db_size", ms, self._c_db_size),
            ("statements", ms, self._c_statements), ("tables", ms, self._c_tables),
            ("vacuum", ms, self._c_vacuum), ("indexes", ms, self._c_indexes),
            ("replication", ms, self._c_replication), ("checkpoints", ms, self._c_checkpoints),
        ]
        for name, sql in self.target.queries.items():
            timeout = self.target.query_timeouts.get(name)
            out.append((f"query:{name}", ms if timeout is None else int(timeout * 1000),
                        self._custom(name, sql)))
        return out

    def _backoff(self, failures: int) -> float:
        """1, 2, 4 … check intervals, capped at max(slow_interval, BACKOFF_CAP_S)."""
        cap = max(self.target.slow_interval, BACKOFF_CAP_S)
        return min(cap, max(0.2, self.target.interval) * 2 ** min(failures - 1, 30))

    def _failed(self, c: _Collector, now: float, reason: str) -> None:
        c.failures += 1
        delay = self._backoff(c.failures)
        c.due = now + delay
        c.reason = one_line(redact(reason), 300)
        c.retry_at = time.time() + delay

    def _collector_note(self, name: str, c: _Collector) -> str | None:
        if c.off:
            return c.off
        if not c.reason:
            return None
        shown = ("no values yet" if c.ok_at is None
                 else f"values shown are from {format_age(time.time() - c.ok_at)} ago")
        retry = format_age((c.retry_at or time.time()) - time.time())
        return f"{name}: {c.reason}; {shown}; retrying in {retry}"

    @staticmethod
    def _collector_state(c: _Collector) -> PgCollector:
        return {"state": c.state(), "ok_at": c.ok_at, "reason": c.off or c.reason,
                "failures": c.failures, "retry_at": c.retry_at}

    async def _slow(self, deadline: float) -> None:
        """Run the slow collectors that are due, while the deadline leaves room for them.

        Never raises for a collector's failure (the fast result stands); a collector that is
        cut off by our own deadline drops the connection (its state is unknown) and runs
        again next time.
        """
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        self._slow_notes = {}
        for name, timeout_ms, collect in self._collectors():
            c = self._coll.setdefault(name, _Collector())
            if c.off or now < c.due:
                continue
            conn = self._conn
            if conn is None or deadline - loop.time() < timeout_ms / 1000 + 0.05:
                return  # the rest run at the next check
            self._phase = f"running the slow collector {name}"
            try:
                async with asyncio.timeout_at(deadline - 0.02):
                    await self._guarded(conn, timeout_ms, collect)
            except asyncpg.exceptions.QueryCanceledError:
                self._failed(c, now, f"exceeded the {timeout_ms} ms statement_timeout")
            except asyncpg.exceptions.LockNotAvailableError as exc:
                self._failed(c, now, f"waited more than {LOCK_TIMEOUT_MS} ms for a lock "
                                     f"(an ALTER TABLE, VACUUM FULL or LOCK TABLE?): "
                                     f"{exc.message}")
            except asyncpg.exceptions.InsufficientPrivilegeError as exc:
                c.off = one_line(redact(
                    f"{name}: turned off, insufficient privilege: {exc.message} (grant it, "
                    "then reload the config or restart the console)"), 300)
            except asyncpg.exceptions.PostgresSyntaxError as exc:
                c.off = one_line(redact(
                    f"{name}: turned off, syntax error: {exc.message} (fix the query in the "
                    "config)"), 300)
            except _CONNECTION_LOST:
                self._drop()  # the fast result stands; the next check reconnects
                self._failed(c, now, "the connection was lost while it ran")
                return
            except TimeoutError:
                self._drop()  # cut off mid-query by our own deadline
                self._slow_notes[name] = f"{name}: postponed, the check's deadline was near"
                return
            except asyncpg.exceptions.PostgresError as exc:
                self._failed(c, now, f"{exc.message} (SQLSTATE {exc.sqlstate})")
            else:
                c.failures, c.reason, c.retry_at = 0, None, None
                c.ok_at = time.time()
                c.due = now + self.target.slow_interval - 0.05

    async def _c_role(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(ROLE_SQL)
        if row is None:
            return
        role = one_line(row["role"], 64)
        self._version = int(row["version"])
        info: PgRole = {"role": role, "superuser": bool(row["superuser"]),
                "pg_monitor": bool(row["monitor"]),
                "pg_read_all_stats": bool(row["read_all_stats"]),
                "server_version_num": self._version, "track_io_timing": bool(row["io_timing"])}
        self._slow_details["role"] = info
        if row["superuser"]:
            self._slow_notes["role"] = (
                f"connected as superuser {role}: a dedicated role with pg_monitor and no "
                "write grants is safer")
        elif not row["read_all_stats"]:
            self._slow_notes["role"] = (
                f"role {role} lacks pg_read_all_stats (GRANT pg_monitor TO {role}): other "
                "roles' sessions, queries and statements are hidden and counts are too low")

    def _server_version(self, conn: asyncpg.Connection) -> int:
        if self._version:
            return self._version
        v = conn.get_server_version()
        return v.major * 10000 + v.minor

    async def _c_db_size(self, conn: asyncpg.Connection) -> None:
        size = float(await conn.fetchval(DB_SIZE_SQL))
        now = time.time()
        self._sizes.append((now, size))
        while self._sizes and now - self._sizes[0][0] > 86400:
            self._sizes.popleft()
        db: PgDatabase = {"size_bytes": size, "growth_bytes": None, "growth_over_s": None,
                              "growth_bytes_per_day": None}
        self._slow_metrics["db_size_bytes"] = size
        t0, s0 = self._sizes[0]
        window = now - t0
        if window > 0:
            db.update({"growth_bytes": size - s0, "growth_over_s": round(window, 3)})
            self._slow_metrics["db_growth_bytes"] = size - s0
            self._slow_metrics["db_growth_window_s"] = window
            if window >= GROWTH_PER_DAY_AFTER_S:
                per_day = (size - s0) / window * 86400
                db["growth_bytes_per_day"] = per_day
                self._slow_metrics["db_growth_bytes_per_day"] = per_day
        self._slow_details["database"] = db

    async def _c_statements(self, conn: asyncpg.Connection) -> None:
        schema = await conn.fetchval(PGSS_SCHEMA_SQL)
        if schema is None:
            self._slow_details["statements"] = {"available": False}
            self._slow_notes["statements"] = (
                "pg_stat_statements is not installed in this database: no top statements "
                "(add it to shared_preload_libraries, then CREATE EXTENSION pg_stat_statements)")
            return
        ident = '"' + str(schema).replace('"', '""') + '"'
        io = PGSS_IO[self._server_version(conn) >= 170000]
        try:
            rows = await conn.fetch(PGSS_SQL.format(schema=ident, io=io))
        except asyncpg.exceptions.ObjectNotInPrerequisiteStateError:
            self._slow_details["statements"] = {"available": False}
            self._slow_notes["statements"] = (
                "pg_stat_statements is installed but not loaded (it must be in "
                "shared_preload_libraries; a server restart is needed)")
            return
        now = time.monotonic()
        current = {r["queryid"]: (float(r["calls"]), float(r["total_ms"]), float(r["rows"]),
                                  _float(r["io_ms"]) or 0.0) for r in rows}
        prev, self._pgss_prev = self._pgss_prev, (now, current)
        dt = now - prev[0] if prev is not None else None
        top = self.target.top

        def entry(qid: str) -> dict[str, Any]:
            calls, total, nrows, io_ms = current[qid]
            e: dict[str, Any] = {"queryid": qid, "calls": calls, "total_ms": round(total, 3),
                                 "mean_ms": round(total / calls, 3) if calls else None,
                                 "rows": nrows, "io_ms": round(io_ms, 3), "d_calls": None,
                                 "d_total_ms": None, "d_rows": None, "d_io_ms": None,
                                 "d_mean_ms": None}
            old = prev[1].get(qid) if prev is not None else None
            if prev is not None:
                o_calls, o_total, o_rows, o_io = old if old is not None else (0.0,) * 4
                if calls >= o_calls:  # otherwise the entry was evicted or reset
                    d_calls = calls - o_calls
                    e.update(d_calls=d_calls, d_total_ms=round(total - o_total, 3),
                             d_rows=nrows - o_rows, d_io_ms=round(io_ms - o_io, 3),
                             d_mean_ms=(round((total - o_total) / d_calls, 3) if d_calls
                                        else None))
            return e

        ids = list(current)
        by_total = sorted(ids, key=lambda q: current[q][1], reverse=True)[:top]
        by_mean = sorted(ids, key=lambda q: current[q][1] / current[q][0] if current[q][0]
                         else 0.0, reverse=True)[:top]
        out: PgStatements = {"available": True, "count": len(ids),
                               "interval_s": None if dt is None else round(dt, 3),
                               "track_io_timing": (self._slow_details.get("role") or {})
                               .get("track_io_timing"),
                               "by_total": [entry(q) for q in by_total],
                               "by_mean": [entry(q) for q in by_mean]}
        if prev is not None and dt:
            recent = [entry(q) for q in ids]
            recent = [e for e in recent if e["d_calls"]]
            recent.sort(key=lambda e: e["d_total_ms"], reverse=True)
            out["by_recent"] = recent[:top]
            d_calls = sum(e["d_calls"] for e in recent)
            d_ms = sum(e["d_total_ms"] for e in recent)
            d_io = sum(e["d_io_ms"] for e in recent)
            out.update({"d_calls": d_calls, "d_total_ms": round(d_ms, 3),
                        "d_io_ms": round(d_io, 3),
                        "mean_ms": round(d_ms / d_calls, 3) if d_calls else None})
            self._slow_metrics["statements_calls_per_s"] = d_calls / dt
            self._slow_metrics["statements_time_ms_per_s"] = d_ms / dt
            self._slow_metrics["statements_io_ms_per_s"] = d_io / dt
            if d_calls:
                self._slow_metrics["statements_mean_ms"] = d_ms / d_calls
        listed = [*out.get("by_total", []), *out.get("by_mean", []), *out.get("by_recent", [])]
        shown = {e["queryid"] for e in listed}
        missing = [q for q in shown if q not in self._texts]
        if missing:
            texts = await conn.fetch(PGSS_TEXT_SQL.format(schema=ident), missing)
            for r in texts:
                self._texts[r["queryid"]] = sql_text(r["query"])
            while len(self._texts) > _TEXT_CACHE:
                self._texts.popitem(last=False)
        for e in listed:
            e["query"] = self._texts.get(e["queryid"], "")
        self._slow_details["statements"] = out

    async def _c_tables(self, conn: asyncpg.Connection) -> None:
        top = self.target.top
        rows = await conn.fetch(TABLES_SQL, top)
        now = time.monotonic()
        prev, counts = self._tup_prev, {}
        dt = now - prev[0] if prev is not None else None

        def table(r: asyncpg.Record) -> dict[str, Any]:
            d: dict[str, Any] = {
                k: (one_line(v, 128) if isinstance(v, str)
                    else _age(v) if k.endswith("_s") else _float(v))
                for k, v in dict(r).items() if k != "relid"}
            seq_scan, idx_scan = d.get("seq_scan") or 0.0, d.get("idx_scan") or 0.0
            d["seq_scan_pct"] = (round(seq_scan / (seq_scan + idx_scan) * 100, 1)
                                 if seq_scan + idx_scan else None)
            live, dead = d.get("live_rows") or 0.0, d.get("dead_rows") or 0.0
            d["dead_pct"] = round(dead / (live + dead) * 100, 2) if live + dead else None
            key = str(r["relid"])
            tup = (d.get("n_tup_ins") or 0.0, d.get("n_tup_upd") or 0.0,
                   d.get("n_tup_del") or 0.0)
            counts[key] = tup
            old = prev[1].get(key) if prev is not None else None
            for i, name in enumerate(("ins_per_s", "upd_per_s", "del_per_s")):
                d[name] = (round((tup[i] - old[i]) / dt, 3)
                           if old is not None and dt and tup[i] >= old[i] else None)
            return d

        tables = [table(r) for r in rows]
        self._tup_prev = (now, counts)
        by_size = sorted(tables, key=lambda t: t["total_bytes"] or 0.0, reverse=True)[:top]
        by_seq = sorted((t for t in tables if t["seq_scan"]),
                        key=lambda t: t["seq_tup_read"] or 0.0, reverse=True)[:top]
        by_dead = sorted((t for t in tables if t["dead_rows"]),
                         key=lambda t: t["dead_rows"] or 0.0, reverse=True)[:top]
        self._slow_details["tables"] = {"by_size": by_size, "by_seq_read": by_seq,
                                        "by_dead": by_dead}
        dead = [t["dead_pct"] for t in tables if t["dead_pct"] is not None]
        if dead:
            self._slow_metrics["dead_tuples_max_pct"] = max(dead)

    async def _c_vacuum(self, conn: asyncpg.Connection) -> None:
        rows = await conn.fetch(VACUUM_SQL)
        running = []
        for r in rows:
            total, scanned = _float(r["heap_blks_total"]), _float(r["heap_blks_scanned"])
            running.append({
                "pid": int(r["pid"]), "db": one_line(r["db"] or "", 64),
                "table": one_line(r["table"] or "", 128), "phase": one_line(r["phase"], 64),
                "heap_blks_total": total, "heap_blks_scanned": scanned,
                "heap_blks_vacuumed": _float(r["heap_blks_vacuumed"]),
                "index_vacuum_count": _float(r["index_vacuum_count"]),
                "scanned_pct": (round(scanned / total * 100, 1)
                                if total and scanned is not None else None),
                "running_s": _age(r["running_s"]), "auto": bool(r["auto"]),
            })
        self._slow_details["vacuum"] = {"running": running}
        self._slow_metrics["vacuums_running"] = float(len(running))

    async def _c_indexes(self, conn: asyncpg.Connection) -> None:
        top = self.target.top
        listed = await conn.fetch(INDEXES_SQL, top)
        unused = await conn.fetch(UNUSED_INDEXES_SQL, top)
        dupes = await conn.fetch(DUPLICATE_INDEXES_SQL, top)
        self._slow_metrics["unused_indexes"] = float(unused[0]["total"]) if unused else 0.0
        self._slow_metrics["duplicate_indexes"] = float(len(dupes))
        dup_names = {(r["schema"], i) for r in dupes for i in r["indexes"]}
        self._slow_details["indexes"] = {
            "by_size": [{"schema": one_line(r["schema"], 128),
                         "table": one_line(r["table"], 128),
                         "index": one_line(r["index"], 128), "idx_scan": _float(r["idx_scan"]),
                         "idx_tup_read": _float(r["idx_tup_read"]), "bytes": float(r["bytes"]),
                         "unused": bool(r["idx_scan"] == 0 and not r["unique"]),
                         "duplicate": (r["schema"], r["index"]) in dup_names}
                        for r in listed],
            "unused": [{"schema": one_line(r["schema"], 128), "table": one_line(r["table"], 128),
                        "index": one_line(r["index"], 128), "bytes": float(r["bytes"])}
                       for r in unused],
            "duplicate": [{"schema": one_line(r["schema"], 128),
                           "table": one_line(r["table"], 128),
                           "indexes": [one_line(i, 128) for i in r["indexes"]],
                           "bytes": float(r["bytes"])} for r in dupes],
        }

    async def _c_replication(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(REPLICATION_SQL)
        replicas = _json(row["replicas"]) or []
        listed = [{"name": one_line(r.get("name") or "", 64),
                   "client": one_line(r.get("client") or "", 64),
                   "state": one_line(r.get("state") or "", 32),
                   "sync_state": one_line(r.get("sync_state") or "", 32),
                   **{k: _rounded(r.get(k)) for k in ("write_lag_s", "flush_lag_s",
                                                       "replay_lag_s", "lag_bytes")}}
                  for r in replicas if isinstance(r, dict)]
        rep: PgReplication = {"role": "replica" if row["in_recovery"] else "primary",
                               "replicas": listed}
        self._slow_metrics["replicas"] = float(len(listed))
        lags = [float(r["replay_lag_s"]) for r in listed if r["replay_lag_s"] is not None]
        delay = _age(row["replay_delay_s"])
        if row["in_recovery"] and delay is not None:
            rep["replay_delay_s"] = delay
            lags.append(delay)
        if lags:
            self._slow_metrics["replication_lag_s"] = max(lags)
        lag_bytes = [float(r["lag_bytes"]) for r in listed if r["lag_bytes"] is not None]
        if lag_bytes:
            self._slow_metrics["replication_lag_bytes"] = max(lag_bytes)
        slots: list[dict[str, Any]] = []
        for s in _json(row["slots"]) or []:
            if not isinstance(s, dict):
                continue
            slots.append({
                "name": one_line(s.get("slot_name") or "", 64),
                "type": one_line(s.get("slot_type") or "", 16),
                "database": one_line(s.get("database") or "", 64),
                "active": bool(s.get("active")),
                "wal_status": one_line(s.get("wal_status") or "", 16) or None,
                "retained_bytes": _rounded(s.get("retained_bytes")),
                "safe_wal_size": _rounded(s.get("safe_wal_size")),
            })
        rep["slots"] = slots
        self._slow_metrics["replication_slots"] = float(len(slots))
        inactive = [s for s in slots if not s["active"]]
        self._slow_metrics["replication_slots_inactive"] = float(len(inactive))
        retained = [s["retained_bytes"] for s in slots if s["retained_bytes"] is not None]
        if retained:
            self._slow_metrics["replication_slot_retained_bytes"] = max(retained)
        for s in inactive:
            self._slow_notes[f"slot:{s['name']}"] = (
                f"replication slot {s['name']} is inactive and keeps "
                f"{format_bytes(s['retained_bytes'])} of WAL (it grows until the slot is "
                "used or dropped, and can fill the disk)")
        lsn, now = _float(row["wal_lsn"]), time.monotonic()
        if lsn is not None:
            prev, self._wal_prev = self._wal_prev, (now, lsn)
            if prev is not None and now > prev[0] and lsn >= prev[1]:
                rate = (lsn - prev[1]) / (now - prev[0])
                rep["wal_bytes_per_s"] = round(rate, 1)
                self._slow_metrics["wal_bytes_per_s"] = rate
        self._slow_details["replication"] = rep

    async def _c_checkpoints(self, conn: asyncpg.Connection) -> None:
        row = await conn.fetchrow(CHECKPOINTS_SQL[self._server_version(conn) >= 170000])
        timed, req, now = float(row["timed"]), float(row["req"]), time.monotonic()
        out: PgCheckpoints = {"timed": timed, "requested": req, "window_s": None,
                               "d_timed": None, "d_requested": None}
        prev, self._ckpt_prev = self._ckpt_prev, (now, timed, req)
        if prev is not None and timed >= prev[1] and req >= prev[2] and now > prev[0]:
            dt, d_timed, d_req = now - prev[0], timed - prev[1], req - prev[2]
            out.update({"window_s": round(dt, 3), "d_timed": d_timed, "d_requested": d_req})
            self._slow_metrics["checkpoints_per_h"] = (d_timed + d_req) / dt * 3600
            if d_timed + d_req:
                self._slow_metrics["checkpoints_req_pct"] = d_req / (d_timed + d_req) * 100
        self._slow_details["checkpoints"] = out

    def _custom(self, name: str, sql: str) -> Callable[[asyncpg.Connection], Awaitable[None]]:
        async def collect(conn: asyncpg.Connection) -> None:
            rows = await conn.fetch(CUSTOM_SQL.format(sql=sql))
            result: PgQueryResult = {"values": {}, "rows": len(rows), "at": time.time()}
            # a new dict each time: results already handed out keep the values they had
            queries = {**self._slow_details.get("queries", {}), name: result}
            self._slow_details["queries"] = queries
            if not rows:
                self._slow_notes[f"query:{name}"] = f"query {name}: returned no row"
                return
            if len(rows) > 1:
                self._slow_notes[f"query:{name}"] = (
                    f"query {name}: returned more than one row; the first is used")
            record = rows[0]
            items = list(record.items())
            skipped = []
            for col, value in items:
                metric = name if len(items) == 1 else f"{name}.{col}"
                if value is None:  # SQL NULL: no value this time, not a wrong type
                    result["values"][metric] = None
                    continue
                f = _float(value)
                if f is None:
                    skipped.append(f"{col} ({type(value).__name__})")
                    continue
                result["values"][metric] = f
                if metric not in METRICS and metric not in SLOW_METRICS:
                    self._slow_metrics[metric] = f
            if skipped:
                self._slow_notes[f"query:{name}"] = one_line(
                    f"query {name}: non-numeric column(s) ignored: {', '.join(skipped)}", 300)

        return collect

    async def aclose(self) -> None:
        """Release the connection; never hangs (a graceful close is tried only when idle)."""
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        if self._lock.locked():
            conn.terminate()
            return
        try:
            async with asyncio.timeout(0.5):
                await conn.close()
        except Exception:  # including TimeoutError
            conn.terminate()
