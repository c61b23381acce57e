"""The evaluator's lease in the shared state: a session advisory lock with a fencing token.

One console of the team evaluates alerts and sends notifications: the one holding
``pg_try_advisory_lock(key)`` on its own *direct* connection (`state.pgconn` refuses a
transaction-mode pooler, which cannot keep a session lock). Taking the lock bumps the
``lease`` row's token; the token is written with every alert state change and every
notification, and every such write checks that it is still the lease's, so an evaluator
that was replaced can no longer write anything.

How a dead or paused owner is replaced within `[state] takeover` (T, default 15 s):

* the lock's connection runs with ``idle_session_timeout`` = I (0.6 T): when the owner
  stops talking (killed, frozen by SIGSTOP, cut off), the *server* ends its session after I
  seconds, which releases the lock; a kill -9 closes the socket and releases it at once;
* the owner confirms its lease (a heartbeat: the row's token is still its own, and the lock
  is held by this very session) every I/4 seconds, and considers itself the owner only until
  0.7 I after the start of its last confirmed heartbeat: it stops sending 0.3 I before the
  server can hand the lock to anyone else, without looking at any wall clock;
* followers try the lock every few seconds; one whose owner's heartbeat is older than T
  while the lock is still held (a session stuck inside a transaction) ends that session with
  ``pg_terminate_backend``.

A paused owner resumed after its successor took over finds its confirmation expired: it
evaluates nothing and sends nothing until it has asked the database again, and the database
says it is a follower now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import asyncpg
import orjson

from console.engine.state import schema as db
from console.engine.state.pgconn import CONNECTION_ERRORS, check_pooler, connect, drop
from console.engine.state.shared import SharedState

log = logging.getLogger(__name__)


class PgLease:
    """One console's side of the lease (see the module docstring)."""

    def __init__(self, state: SharedState, *, role: str = "console",
                 takeover: float = 15.0) -> None:
        self.state = state
        self.role = role
        self.takeover = takeover
        self.idle = max(2.0, 0.6 * takeover)  # the server's idle_session_timeout
        self.beat_every = self.idle / 4
        self.valid_for = 0.7 * self.idle
        key = db.lock_key(state.schema, "evaluator")
        self.key = key
        self._classid = (key >> 32) & 0xFFFFFFFF
        self._objid = key & 0xFFFFFFFF
        self.token: int | None = None
        self.previous: int | None = None  # the token before ours when we took it
        self.valid_until = 0.0  # monotonic
        self.pid: int | None = None
        self._conn: asyncpg.Connection | None = None
        self._idle_supported = True

    @property
    def held(self) -> bool:
        return self.token is not None

    def valid(self) -> bool:
        """Whether this console may act as the evaluator now: it holds the lease and
        confirmed it recently enough (monotonic clock: a pause counts)."""
        return self.token is not None and time.monotonic() < self.valid_until

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        dsn = self.state.dsn
        if dsn is None:
            raise asyncpg.InterfaceError("the state database was never reached")
        settings = {"statement_timeout": "5s", "lock_timeout": "2s"}
        if self._idle_supported:
            settings["idle_session_timeout"] = f"{int(self.idle * 1000)}"
        try:
            conn = await connect(dsn, purpose="lease", settings=settings)
        except asyncpg.exceptions.UndefinedObjectError:
            # PostgreSQL < 14: no idle_session_timeout; followers still end a silent
            # owner's session once its heartbeat is older than `takeover`
            self._idle_supported = False
            return await self._connection()
        try:
            await check_pooler(conn, dsn)
        except BaseException:
            drop(conn)
            raise
        self._conn = conn
        return conn

    def _drop(self) -> None:
        drop(self._conn)
        self._conn = None

    async def try_acquire(self) -> bool:
        """Take the lease if it is free; True if we hold it now (a new token). Raises the
        database's connection errors."""
        if self.token is not None:
            return True
        s = self.state.schema
        try:
            conn = await self._connection()
            t0 = time.monotonic()
            async with asyncio.timeout(5):
                got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key)
                if not got:
                    await self._end_stale_owner(conn)
                    return False
                holder = orjson.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                       "role": self.role, "since": time.time(),
                                       "console": self.state.console}).decode()
                row = await conn.fetchrow(
                    f"WITH old AS (SELECT token FROM {s}.lease WHERE name = 'evaluator' "
                    f"FOR UPDATE) UPDATE {s}.lease SET token = old.token + 1, "
                    "holder = $1::jsonb, since = now(), beat = now() FROM old WHERE "
                    "name = 'evaluator' RETURNING old.token AS previous, lease.token, "
                    "pg_backend_pid() AS pid", holder)
        except CONNECTION_ERRORS:
            self._drop()
            raise
        self.previous = int(row["previous"])
        self.token = int(row["token"])
        self.pid = int(row["pid"])
        self.valid_until = t0 + self.valid_for
        return True

    async def _end_stale_owner(self, conn: asyncpg.Connection) -> None:
        """The lock is held by a session whose heartbeat stopped `takeover` ago (stuck in a
        transaction, or a server without idle_session_timeout): end it."""
        s = self.state.schema
        row = await conn.fetchrow(
            f"SELECT l.pid, extract(epoch FROM now() - lease.beat) AS age FROM pg_locks l, "
            f"{s}.lease WHERE lease.name = 'evaluator' AND l.locktype = 'advisory' AND "
            "l.classid = $1 AND l.objid = $2 AND l.objsubid = 1 AND l.granted",
            self._classid, self._objid)
        if row is None or row["age"] is None or float(row["age"]) <= self.takeover:
            return
        log.warning("the evaluator (backend pid %s) has not confirmed its lease for %.0fs: "
                    "ending its session", row["pid"], float(row["age"]))
        with contextlib.suppress(asyncpg.PostgresError):
            await conn.execute("SELECT pg_terminate_backend($1)", row["pid"])

    async def beat(self) -> bool:
        """Confirm the lease: still our token, still this session's lock. False when it is
        lost (someone else's now); raises the database's connection errors (then whether
        it is lost is not known: `valid()` runs out)."""
        if self.token is None:
            return False
        if self._conn is None:  # dropped after an error: whether we still hold it is unknown
            raise asyncpg.InterfaceError("the lease's connection was lost")
        s = self.state.schema
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(max(1.0, min(3.0, self.idle / 3))):
                ok = await self._conn.fetchval(
                    f"UPDATE {s}.lease SET beat = now() WHERE name = 'evaluator' AND "
                    "token = $1 RETURNING EXISTS (SELECT 1 FROM pg_locks WHERE locktype = "
                    "'advisory' AND classid = $2 AND objid = $3 AND objsubid = 1 AND granted "
                    "AND pid = pg_backend_pid())", self.token, self._classid, self._objid)
        except CONNECTION_ERRORS:
            self._drop()
            raise
        if not ok:
            self.lose()
            return False
        self.valid_until = t0 + self.valid_for
        return True

    def lose(self) -> None:
        """Forget the lease (lost, or given up): nothing is done as the evaluator from now."""
        self.token = None
        self.valid_until = 0.0
        self._drop()  # the server releases the lock with the session

    async def release(self) -> None:
        """Give the lease up at a clean stop: the next follower takes over at once."""
        conn, token = self._conn, self.token
        self.token = None
        self.valid_until = 0.0
        if conn is not None and token is not None:
            with contextlib.suppress(*CONNECTION_ERRORS, asyncpg.PostgresError):
                async with asyncio.timeout(2):
                    await conn.execute("SELECT pg_advisory_unlock($1)", self.key)
        self._drop()

    def info(self) -> dict[str, Any]:
        return {"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                "role": self.role}
