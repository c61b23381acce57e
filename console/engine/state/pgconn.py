"""Connections to the shared-state database: DSN, TLS, keep-alive, deadlines, pooler checks.

The state database is reached the way the PostgreSQL probe reaches a monitored server
(`console.engine.probes.postgres`): the DSN's ``${VAR}``s expanded and masked, TLS never
chosen silently (``verify-full`` off loopback unless the DSN says otherwise), TCP keep-alive
on the socket, and a hard client-side deadline around every operation. On a deadline the
connection is dropped with ``terminate()``, never ``close()``: asyncpg's cancel path opens a
second connection without a timeout and can hang on a black-holed server (asyncpg#1326,
#1356).

Poolers: the evaluator's lease is a *session* advisory lock, which a transaction-mode
pooler (PgBouncer ``pool_mode = transaction``, Supavisor, RDS Proxy…) cannot hold: the lock
would stay on whichever server connection ran the statement, and the next statement may run
on another one. `check_pooler` tells a direct connection (the pid the server announced at
start-up is the backend's), a session-mode pooler (another pid, but a session setting stays
private to its client) and a transaction-mode one (a session setting leaks to another
client): the last is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from console.engine.config.envref import expand_url
from console.engine.errors import ConsoleError
from console.engine.probes.postgres import (
    _parse_endpoint,
    _set_keepalive,
    _ssl_choice,
    describe_error,
)
from console.engine.text.redact import register_secret

CONNECT_TIMEOUT = 5.0
APPLICATION_NAME = "opsconsole-state"
# Errors that mean "this connection is gone or in doubt": drop it and connect again. Operator
# intervention (57xxx) covers a server shutting down, pg_terminate_backend() and
# idle_session_timeout.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError, OSError, TimeoutError, ConnectionError)


class StateError(ConsoleError):
    """The shared state cannot be used (unreachable, no schema, a pooler); said plainly."""


class PoolerRefused(StateError):  # noqa: N818 - reads as the condition
    """The DSN leads through a transaction-mode pooler, which cannot hold the lease."""


def expand_dsn(dsn: str) -> str:
    """The DSN with its ``${VAR}``s expanded (percent-encoded where needed) and its password
    registered with the redactor; raises MissingEnv for an unset variable."""
    full = expand_url(dsn)
    parts = urlsplit(full)
    if parts.password:
        register_secret(unquote(parts.password), user=unquote(parts.username or ""))
    return full


def describe(exc: BaseException, dsn: str) -> str:
    """One redacted line for the operator: what failed, and where."""
    if isinstance(exc, StateError):
        return str(exc)
    if "${" in dsn:  # a config's DSN: where it leads, if its variables are set
        with contextlib.suppress(KeyError):
            dsn = expand_url(dsn)
    if isinstance(exc, TimeoutError):
        return f"no answer from {_parse_endpoint(dsn).where} in time"
    return describe_error(exc, _parse_endpoint(dsn), 0)


async def connect(dsn: str, *, purpose: str, within: float = CONNECT_TIMEOUT,
                  settings: dict[str, str] | None = None) -> asyncpg.Connection:
    """One connection, in `within` seconds (connect, TLS and authentication), keep-alive on.

    `dsn` is already expanded (`expand_dsn`). `purpose` names it in ``pg_stat_activity``
    (``opsconsole-state lease host:pid``), so a DBA sees who holds what.
    """
    ep = _parse_endpoint(dsn)
    name = {"application_name": f"{APPLICATION_NAME} {purpose} {socket.gethostname()}"
                                f":{os.getpid()}"[:63]}
    extra = dict(settings or {})
    async with asyncio.timeout(within):
        try:
            conn = await asyncpg.connect(dsn, timeout=within, command_timeout=None,
                                         ssl=_ssl_choice(ep), statement_cache_size=32,
                                         server_settings={**name, **extra})
        except asyncpg.PostgresError as exc:
            # A pooler (PgBouncer) refuses start-up parameters it does not track: connect
            # with the name alone, then SET the rest (they hold in a session-mode pool; a
            # transaction-mode one is refused by `check_pooler`).
            if not extra or "unsupported startup parameter" not in str(exc).lower():
                raise
            conn = await asyncpg.connect(dsn, timeout=within, command_timeout=None,
                                         ssl=_ssl_choice(ep), statement_cache_size=0,
                                         server_settings=name)
            try:
                for key, value in extra.items():
                    await conn.execute(f"SET {key} = '{value}'")
            except BaseException:
                drop(conn)
                raise
    _set_keepalive(conn)
    return conn


def drop(conn: asyncpg.Connection | None) -> None:
    """Forget a connection without waiting on anything (see the module docstring)."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.terminate()


async def check_pooler(conn: asyncpg.Connection, dsn: str, *, within: float = CONNECT_TIMEOUT
                       ) -> str | None:
    """None on a direct connection; a note on a session-mode pooler; raises PoolerRefused
    on a transaction-mode one (see the module docstring)."""
    async with asyncio.timeout(within):
        backend = await conn.fetchval("SELECT pg_backend_pid()")
    if backend == conn.get_server_pid():
        return None
    marker = os.urandom(8).hex()
    other = await connect(dsn, purpose="pooler-check", within=within)
    try:
        async with asyncio.timeout(within):
            await conn.execute(f"SET opsconsole.pooler_check = '{marker}'")
            seen = await other.fetchval(
                "SELECT current_setting('opsconsole.pooler_check', true)")
            await conn.execute("RESET opsconsole.pooler_check")
    finally:
        drop(other)
    if seen == marker:
        raise PoolerRefused(
            "the state DSN leads through a transaction-mode pooler (a session setting of one "
            "client was seen by another): the evaluator's lease is a session advisory lock and "
            "needs a direct connection (or a session-mode pool); point [state] dsn at the "
            "server itself")
    return ("the state DSN goes through a pooler in session mode: each console holds its "
            "server connections for as long as it runs")


def plain(value: Any) -> Any:
    """A value as asyncpg returns it, made JSON-friendly (datetimes as epoch seconds)."""
    ts = getattr(value, "timestamp", None)
    return ts() if callable(ts) else value
