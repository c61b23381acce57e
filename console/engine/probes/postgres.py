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

Metrics are listed in `METRICS`. Counters (`xact_total`, `rollbacks_total`,
`deadlocks_total`) are reported raw, and the store turns them into rates. `cache_hit_pct`
comes from block-counter deltas since the previous check, not since the server started, so
it reflects current behaviour. A role without `pg_monitor` (or `pg_read_all_stats`) cannot
see other roles' session states, so the active, idle-in-transaction and waiting counts would
be too low; grant it to the monitoring role.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import math
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from ..envref import MissingEnv, expand_url
from ..model import CheckResult, Status
from ..redact import describe_exception, redact, register_secret
from ..sanitize import one_line
from ..settings import PostgresTarget

# What each metric means (units in the name); the UI and docs may show these.
METRICS: dict[str, str] = {
    "latency_ms": "round trip of the stats query on an open connection",
    "connections_total": "client backends on the server (all databases)",
    "connections_active": "client backends running a query (this probe excluded)",
    "connections_idle_in_tx": "client backends idle inside a transaction",
    "connections_waiting": "client backends waiting on a lock",
    "max_connections": "the server's max_connections setting",
    "pool_usage_pct": "connections_total / max_connections * 100; above 80 means DEGRADED",
    "xact_total": "commits + rollbacks in this database (counter)",
    "rollbacks_total": "rollbacks in this database (counter)",
    "deadlocks_total": "deadlocks detected in this database (counter)",
    "cache_hit_pct": "buffer hits / block lookups since the previous check (absent if none)",
}
APPLICATION_NAME = "opsconsole"
POOL_DEGRADED_PCT = 80.0
# The scheduler's backstop is timeout + 0.25 s; the probe itself must finish well inside it.
_KEEPALIVE = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}

# One round trip: everything a fast-loop check needs, all plain built-in types (no type
# introspection query), cheap catalog views only (no pg_database_size, no pg_stat_statements).
STATS_SQL = """
SELECT a.total, a.active, a.idle_in_tx, a.waiting,
       current_setting('max_connections')::float8 AS max_connections,
       d.xact_commit::float8 AS xact_commit, d.xact_rollback::float8 AS xact_rollback,
       d.blks_hit::float8 AS blks_hit, d.blks_read::float8 AS blks_read,
       d.deadlocks::float8 AS deadlocks
FROM (
    SELECT count(*)::float8 AS total,
           count(*) FILTER (WHERE state = 'active' AND pid <> pg_backend_pid())::float8 AS active,
           count(*) FILTER (WHERE state LIKE 'idle in transaction%')::float8 AS idle_in_tx,
           count(*) FILTER (WHERE wait_event_type = 'Lock')::float8 AS waiting
    FROM pg_catalog.pg_stat_activity
    WHERE backend_type = 'client backend'
) AS a
LEFT JOIN pg_catalog.pg_stat_database AS d ON d.datname = current_database()
"""

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
        self._phase = "starting"

    def __repr__(self) -> str:
        return f"PostgresProbe({self.target.name!r}, {redact(self.target.dsn)!r})"

    # -- connection ------------------------------------------------------------------------

    def _drop(self) -> None:
        """Forget the connection without waiting on anything (asyncpg#1326/#1356)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _connect(self, deadline: float) -> asyncpg.Connection:
        dsn = expand_url(self.target.dsn)  # percent-encodes a ${PW} inside the userinfo
        self._endpoint = ep = _parse_endpoint(dsn)
        password = urlsplit(dsn).password
        if password:
            register_secret(unquote(password))  # the DSN may be one ${VAR}: mask its parts too
        self._phase = f"connecting to {ep.where}"
        loop = asyncio.get_running_loop()
        remaining = max(0.001, deadline - loop.time())
        conn = await asyncpg.connect(
            dsn,
            timeout=remaining,
            command_timeout=None,  # our deadline, not asyncpg's cancel path, bounds queries
            ssl=_ssl_choice(ep),
            statement_cache_size=16,
            server_settings={
                "application_name": APPLICATION_NAME,
                "default_transaction_read_only": "on",
                "statement_timeout": str(self._stmt_ms),
                "lock_timeout": "100ms",
                "idle_in_transaction_session_timeout": str(max(1000, 2 * self._stmt_ms)),
            },
        )
        _set_keepalive(conn)
        return conn

    async def _query(self, conn: asyncpg.Connection) -> tuple[asyncpg.Record, float]:
        self._phase = "waiting for the stats query"
        t0 = time.perf_counter()
        row = await conn.fetchrow(STATS_SQL)
        return row, (time.perf_counter() - t0) * 1000

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
        metrics = self._metrics(row, latency_ms)
        status, reasons = Status.UP, ()
        usage = metrics.get("pool_usage_pct")
        if usage is not None and usage > POOL_DEGRADED_PCT:
            status = Status.DEGRADED
            reasons = (
                f"connections at {usage:.0f}% of max_connections "
                f"({metrics['connections_total']:.0f}/{metrics['max_connections']:.0f})",
            )
        return CheckResult(
            target=target.name, kind=self.kind, status=status, started_at=started,
            latency_ms=latency_ms, reasons=reasons, metrics=metrics,
        )

    def _metrics(self, row: asyncpg.Record, latency_ms: float) -> dict[str, float]:
        m: dict[str, float] = {"latency_ms": latency_ms}
        total, max_conn = float(row["total"]), float(row["max_connections"])
        m["connections_total"] = total
        m["connections_active"] = float(row["active"])
        m["connections_idle_in_tx"] = float(row["idle_in_tx"])
        m["connections_waiting"] = float(row["waiting"])
        m["max_connections"] = max_conn
        if max_conn > 0:
            m["pool_usage_pct"] = total / max_conn * 100
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
        return {k: v for k, v in m.items() if math.isfinite(v)}

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
