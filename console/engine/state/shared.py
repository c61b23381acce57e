"""The postgres backend's link to the database: connections, the event log, the local spool.

One `SharedState` per console. It keeps three things true:

* **Every console sees every event, in one order.** Events are read by id (`events.id` is
  handed out in commit order: see `state.schema`). A dedicated connection LISTENs on the
  schema's channel; a notification is only a wake-up to read what is new, and the events
  are read every `[state] poll` seconds anyway, so a lost notification delays an event by at
  most that. After any (re)connect the views are rebuilt from the database (a full
  resync), so nothing that happened while this console was cut off is missed.
* **Nothing is lost while the database is away.** What this console writes — incident
  entries, acknowledgement and silence requests, notifications — goes first into its local
  spool (the data directory's ``outbox.sqlite``: durable, and in memory when the disk
  refuses), then into the database in one transaction with the evaluator's alert state, with
  ``ON CONFLICT DO NOTHING`` on each row's unique id (an entry's ``uid``, a notification's
  idempotency key and receiver): shipping twice after an ambiguous failure, or after a
  restart, never makes two.
* **The screen says so.** While the database cannot be reached, ``shared state unreachable
  since HH:MM:SS (why)`` is a standing problem (`Runtime.set_problem`); the console keeps
  polling its targets and showing them, and retries with a capped backoff.

Every database call has a hard deadline; a connection in doubt is dropped with
``terminate()`` (`state.pgconn`). The main connection is used by one operation at a time
(an `asyncio.Lock`): the load is a few small statements per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import asyncpg
import orjson

from console.engine.alerting.outbox import Outbox
from console.engine.config.envref import MissingEnv
from console.engine.config.schema import StateSection
from console.engine.paths import DataPaths
from console.engine.state import schema as db
from console.engine.state.pgconn import (
    CONNECTION_ERRORS,
    StateError,
    check_pooler,
    connect,
    describe,
    drop,
    expand_dsn,
)
from console.engine.storage.journal import sanitize

log = logging.getLogger(__name__)
T = TypeVar("T")

EVENTS = "@events"  # the spool's receiver name for events (never a receiver's: names are
#                     letters, digits and -_ only)
OP_TIMEOUT = 5.0  # one statement or transaction on the main connection
RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # reconnect backoff
PING_EVERY = 10.0  # the LISTEN connection is checked this often (a silent death)
EPISODE_DAYS = 30
REQUEST_TTL = 120.0  # requests an evaluator taking over still applies
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError,
              ConnectionError)


@dataclass(frozen=True, slots=True)
class Event:
    """One row of ``events``, decoded."""

    id: int
    uid: str
    stream: str  # "incident" | "alert"
    kind: str
    ts: float
    actor: str
    console: str
    token: int | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EvaluatorWrite:
    """What the evaluator writes with a flush: its fencing token and its events (alert
    state delta or checkpoint, resolved episodes), written only if the token still holds."""

    token: int
    events: list[dict[str, Any]]  # {uid, kind, ts, at, body}


@dataclass(frozen=True, slots=True)
class FlushResult:
    ok: bool  # the transaction committed
    fenced: bool = False  # the evaluator's events were refused: another token holds
    last_id: int = 0  # the highest event id this flush wrote (0: none)


class Consumer(Protocol):
    """A view built from events (the incident journal, the alert state)."""

    def resync(self, events: Sequence[Event]) -> None: ...

    def apply(self, events: Sequence[Event]) -> None: ...


class Unavailable(StateError):  # noqa: N818 - reads as the condition
    """The database cannot be used right now (the reason is the state's `problem`)."""


def _clean(value: Any) -> Any:
    """JSON for a jsonb column: sanitised, and without NUL, which jsonb cannot hold."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def body_json(body: Any) -> str:
    return orjson.dumps(_clean(sanitize(body))).decode()


class SharedState:
    """The database, its event log and this console's spool (see the module docstring)."""

    def __init__(self, cfg: StateSection, paths: DataPaths, *,
                 clock: Callable[[], float] = time.time, actor: str = "",
                 on_problem: Callable[[str | None], None] | None = None,
                 read_only: bool = False) -> None:
        assert cfg.dsn is not None
        self.cfg = cfg
        self.schema = cfg.db_schema
        self.clock = clock
        self.actor = actor
        self.read_only = read_only
        self.console = f"{socket.gethostname()}:{os.getpid()}"
        self.spool = Outbox(paths.outbox)
        self.on_problem = on_problem
        self.connected = False
        self.problem: str | None = None
        self.down_since: float | None = None  # wall clock, for the message
        self.connected_at = 0.0  # monotonic, of the last successful (re)connect
        self.connects = 0  # successful connects so far (more than one: reconnected)
        self.pooler_note: str | None = None
        self.last_id = 0
        self.token: int | None = None  # the evaluator's token while this console holds it
        self.last_token: int | None = None  # the last one it held (rows it spooled then)
        # The tokens of this process's evaluation without a break (each taken back while
        # nobody else held the lease): its notifications are shipped while the last one is
        # the lease's; any other spooled notification came from an alert state that never
        # reached the database (a killed or replaced evaluator) and is not sent.
        self.chain: list[int] = []
        # Whether the evaluator's lease is confirmed now (set by the backend): its
        # notifications go out with its alert state, or alone only while it is.
        self.lease_valid: Callable[[], bool] = lambda: False
        self.dsn: str | None = None
        self._order_key = db.lock_key(self.schema, "events")
        self._channel = db.channel(self.schema)
        self._conn: asyncpg.Connection | None = None
        self._listen: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._broken = asyncio.Event()
        self._progress = asyncio.Event()  # set (and replaced) after each read or connect
        self._consumers: list[Consumer] = []
        self._on_connect: list[Callable[[], Awaitable[None]]] = []
        self._on_outbox: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()  # the first connection attempt has ended

    # -- wiring ------------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)

    def on_connect(self, callback: Callable[[], Awaitable[None]]) -> None:
        """`await callback()` after each (re)connect and resync (the lease, the outbox)."""
        self._on_connect.append(callback)

    def on_outbox(self, callback: Callable[[], None]) -> None:
        """`callback()` when another console added notifications (a wake-up for senders)."""
        self._on_outbox.append(callback)

    @property
    def where(self) -> str:
        return f"{self.schema} schema of the state database"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, wait: float = 8.0) -> None:
        """Connect in the background; wait (bounded) for the first attempt, so a reachable
        database gives the views their history before the console shows anything."""
        self._task = asyncio.create_task(self._run(), name="state:run")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._first.wait()

    async def stop(self) -> None:
        """Ship what the spool holds (bounded), then drop the connections; never raises."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._conn is not None and not self._broken.is_set():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await self.flush()
        drop(self._conn)
        drop(self._listen)
        self._conn = self._listen = None
        self.connected = False
        self.spool.close()

    async def wait_connected(self) -> None:
        """Until connected (bound it with `asyncio.timeout`)."""
        while not self.connected:
            await self._progressed()

    async def _progressed(self) -> None:
        event = self._progress
        await event.wait()

    def _tick(self) -> None:
        event, self._progress = self._progress, asyncio.Event()
        event.set()

    # -- the connection loop ----------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            try:
                await self._connect()
                await self._resync()
                self._set_connected()
                delay = RETRY_FIRST
                for cb in list(self._on_connect):
                    try:
                        await cb()
                    except _DB_ERRORS:
                        raise
                    except Exception:
                        log.exception("state: after-connect step failed")
                self._first.set()
                await self._serve()
            except asyncio.CancelledError:
                raise
            except (*_DB_ERRORS, StateError, MissingEnv) as exc:
                self._set_unreachable(exc)
            except Exception as exc:  # a bug must not end the loop: report and retry
                log.exception("state: connection loop failed")
                self._set_unreachable(exc)
            self._first.set()
            self._drop()
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    async def _connect(self) -> None:
        try:
            self.dsn = dsn = expand_dsn(self.cfg.dsn or "")
        except MissingEnv as exc:
            raise StateError(f"[state] dsn: environment variable {exc.args[0]} is not "
                             "set") from None
        settings = {"statement_timeout": "10s", "lock_timeout": "5s",
                    "idle_in_transaction_session_timeout": "5s"}
        conn = await connect(dsn, purpose="events", settings=settings)
        try:
            self.pooler_note = await check_pooler(conn, dsn)
            async with asyncio.timeout(OP_TIMEOUT):
                await db.check(conn, self.schema)
            listen = await connect(dsn, purpose="listen")
        except BaseException:
            drop(conn)
            raise
        self._conn, self._listen = conn, listen
        self._broken.clear()
        listen.add_termination_listener(self._terminated)
        conn.add_termination_listener(self._terminated)
        async with asyncio.timeout(OP_TIMEOUT):
            await listen.add_listener(self._channel, self._notified)

    def _terminated(self, _conn: Any) -> None:
        self._broken.set()
        self._wake.set()

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith("o"):
            for cb in list(self._on_outbox):
                with contextlib.suppress(Exception):
                    cb()
        self._wake.set()

    def _drop(self) -> None:
        drop(self._conn)
        drop(self._listen)
        self._conn = self._listen = None
        self.connected = False
        self._tick()

    def _fail(self, exc: BaseException) -> None:
        """An operation failed at the connection level: reconnect (the loop reports it)."""
        log.debug("state: %s", exc)
        self._broken.set()
        self._wake.set()
        if self.connected:
            self._set_unreachable(exc)

    def _set_connected(self) -> None:
        self.connected = True
        self.connected_at = time.monotonic()
        self.connects += 1
        if self.down_since is not None:
            log.warning("shared state reachable again")
        self.down_since = None
        self.problem = None
        if self.on_problem is not None:
            self.on_problem(None)
        self._tick()

    def _set_unreachable(self, exc: BaseException) -> None:
        self.connected = False
        if self.down_since is None:
            self.down_since = self.clock()
        since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
        why = describe(exc, self.dsn or "")
        text = (f"shared state unreachable since {since} ({why}); incidents, "
                "acknowledgements and notifications are kept here and sent when it is back")
        if text != self.problem:
            log.warning("%s", text)
            self.problem = text
            if self.on_problem is not None:
                self.on_problem(text)
        self._tick()

    async def _serve(self) -> None:
        """Connected: ship the spool, read new events, wait for a wake-up or the poll."""
        last_ping = time.monotonic()
        while True:
            if self._broken.is_set():
                raise asyncpg.InterfaceError("connection to the state database lost")
            self._wake.clear()
            if self.spool.unshipped(1):
                await self.flush()
            await self.read_new()
            if time.monotonic() - last_ping >= PING_EVERY:
                last_ping = time.monotonic()
                assert self._listen is not None
                async with asyncio.timeout(OP_TIMEOUT):
                    await self._listen.fetchval("SELECT 1")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self.cfg.poll, PING_EVERY)):
                    await self._wake.wait()

    # -- operations on the main connection ---------------------------------------------------

    async def op(self, fn: Callable[[asyncpg.Connection], Awaitable[T]],
                 within: float = OP_TIMEOUT) -> T:
        """`await fn(conn)` on the main connection, alone and in `within` seconds; raises
        Unavailable (after starting a reconnect) on any connection-level failure."""
        async with self._lock:
            conn = self._conn
            if conn is None or self._broken.is_set():
                raise Unavailable(self.problem or "shared state not connected")
            try:
                async with asyncio.timeout(within):
                    return await fn(conn)
            except CONNECTION_ERRORS as exc:
                drop(conn)  # in doubt: never wait on asyncpg's cancel path
                self._fail(exc)
                raise Unavailable(describe(exc, self.dsn or "")) from exc

    async def resync_one(self, consumer: Consumer) -> None:
        """Give a view added after the connection its history (it then also gets, again,
        the events read since: views take each event once, by uid)."""
        events = await self.op(self._snapshot, within=OP_TIMEOUT * 6)
        consumer.resync(events[1])

    async def _resync(self) -> None:
        """Rebuild every view from the database: all incident entries, the alert state from
        its last checkpoint, recent requests and episodes (one consistent snapshot)."""
        conn = self._conn
        assert conn is not None
        async with asyncio.timeout(OP_TIMEOUT * 6):
            top, events = await self._snapshot(conn)
        self.last_id = top
        for c in list(self._consumers):
            c.resync(events)

    async def _snapshot(self, conn: asyncpg.Connection) -> tuple[int, list[Event]]:
        s = self.schema
        now = self.clock()
        cols = "id, uid, stream, kind, ts, actor, console, token, body::text"
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            top = int(await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {s}.events"))
            rows = list(await conn.fetch(
                f"SELECT {cols} FROM {s}.events WHERE stream = 'incident' AND id <= $1 "
                "ORDER BY id", top))
            cp = await conn.fetchval(
                f"SELECT max(id) FROM {s}.events WHERE kind = 'alert.checkpoint' AND id <= $1",
                top) or 0
            rows += await conn.fetch(
                f"SELECT {cols} FROM {s}.events WHERE ((kind IN ('alert.checkpoint', "
                "'alert.delta') AND id >= $1) OR (kind = 'alert.request' AND ts >= $3) OR "
                "(kind = 'alert.episode' AND at >= $4)) AND id <= $2 ORDER BY id",
                cp, top, now - REQUEST_TTL, now - EPISODE_DAYS * 86400.0)
        return top, sorted((self._event(r) for r in rows), key=lambda e: e.id)

    @staticmethod
    def _event(r: Any) -> Event:
        body = orjson.loads(r["body"])
        return Event(int(r["id"]), r["uid"], r["stream"], r["kind"], float(r["ts"]),
                     r["actor"], r["console"], r["token"],
                     body if isinstance(body, dict) else {"value": body})

    async def read_new(self) -> int:
        """Read the events after the last one seen, hand them to the views; how many."""
        s = self.schema
        total = 0
        while True:
            rows = await self.op(lambda c: c.fetch(
                f"SELECT id, uid, stream, kind, ts, actor, console, token, body::text "
                f"FROM {s}.events WHERE id > $1 ORDER BY id LIMIT 2000", self.last_id))
            if not rows:
                break
            events = [self._event(r) for r in rows]
            self.last_id = events[-1].id
            total += len(events)
            for c in list(self._consumers):
                try:
                    c.apply(events)
                except Exception:
                    log.exception("state: a view failed to apply events")
            if len(rows) < 2000:
                break
        self._tick()
        return total

    async def read_until(self, event_id: int, within: float = 2.0) -> bool:
        """Read until the event `event_id` has been seen; False if not in `within` s."""
        with contextlib.suppress(TimeoutError, Unavailable):
            async with asyncio.timeout(within):
                while self.last_id < event_id:
                    await self.read_new()
                    if self.last_id < event_id:
                        await self._progressed()
        return self.last_id >= event_id

    # -- writing -----------------------------------------------------------------------------

    def spool_event(self, stream: str, kind: str, entry: dict[str, Any], *,
                    at: float | None = None) -> str:
        """Keep one event durably here (blocking: the spool fsyncs) until it is shipped;
        returns its uid (the entry's ``id``)."""
        uid = str(entry["id"])
        payload = orjson.dumps({"stream": stream, "kind": kind, "at": at, "body": entry})
        self.spool.add(uid, EVENTS, payload, self.clock(), 10**9)
        return uid

    def kick(self) -> None:
        """Ship and read now (after a local write)."""
        self._wake.set()

    async def flush(self, evaluator: EvaluatorWrite | None = None) -> FlushResult:
        """Ship the spool (events and notifications) and, with `evaluator`, the evaluator's
        own events, in one transaction; the spool rows are marked shipped after the commit.

        The evaluator's part is written only while its token is the lease's (checked under a
        share lock on the lease row, so a takeover waits for this transaction or this one
        sees the new token), and so are notifications (see `chain`). Raises Unavailable when
        the database cannot be used."""
        async with self._flush_lock:
            rows = self.spool.unshipped(2000)  # at once: nothing spooled so far is left out
            if not rows and evaluator is None:
                return FlushResult(True)
            dropped: list[int] = []
            kept: list[int] = []
            result = await self.op(lambda c: self._flush_tx(c, rows, evaluator, dropped, kept),
                                   within=OP_TIMEOUT * 2)
            if rows:
                self.spool.mark_shipped([int(r["id"]) for r in rows
                                         if int(r["id"]) not in dropped and
                                         int(r["id"]) not in kept])
            if dropped:
                log.warning("%d notification(s) spooled by an evaluation whose alert state "
                            "never reached the shared state (this console was stopped or "
                            "replaced first) are not sent; the evaluator derives them again "
                            "from the targets' current state", len(dropped))
                self.spool.mark_shipped(dropped, "abandoned",
                                        "its evaluation ended before it was shared")
            return result

    async def _flush_tx(self, conn: asyncpg.Connection, rows: list[dict[str, Any]],
                        evaluator: EvaluatorWrite | None, dropped: list[int],
                        kept: list[int]) -> FlushResult:
        s = self.schema
        events: list[tuple[Any, ...]] = []
        notes: list[tuple[Any, ...]] = []
        fenced = False
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._order_key)
            current = await conn.fetchval(
                f"SELECT token FROM {s}.lease WHERE name = 'evaluator' FOR SHARE")
            live = bool(self.chain) and self.chain[-1] == current
            for r in rows:
                if r["receiver"] == EVENTS:
                    item = orjson.loads(r["payload"])
                    body = item["body"]
                    events.append((r["key"], item["stream"], item["kind"], float(body["ts"]),
                                   item.get("at"), str(body.get("actor") or ""),
                                   self.console, None, body_json(body)))
                elif r["token"] is not None and not (live and r["token"] in self.chain):
                    dropped.append(int(r["id"]))
                elif r["token"] is not None and evaluator is None and not self.lease_valid():
                    kept.append(int(r["id"]))  # for the evaluator's next write, with its state
                else:
                    notes.append((r["key"], r["receiver"], r["grp"], bytes(r["payload"]),
                                  float(r["created"]), r["status"],
                                  float(r["digest_end"] or 0.0), r["digest_start"],
                                  r["digest_end"], r["token"], self.console))
            if evaluator is not None:
                fenced = current != evaluator.token
                if not fenced:
                    events += [(e["uid"], "alert", e["kind"], float(e["ts"]), e.get("at"),
                                self.actor, self.console, evaluator.token,
                                body_json(e["body"])) for e in evaluator.events]
            top = 0
            if events:
                cols = list(zip(*events, strict=True))
                ids = await conn.fetch(
                    f"INSERT INTO {s}.events (uid, stream, kind, ts, at, actor, console, "
                    "token, body) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
                    "$4::float8[], $5::float8[], $6::text[], $7::text[], $8::int8[], "
                    "$9::jsonb[]) ON CONFLICT (uid) DO NOTHING RETURNING id", *cols)
                top = max((int(r["id"]) for r in ids), default=0)
                if top:
                    await conn.execute("SELECT pg_notify($1, $2)", self._channel, f"e{top}")
            if notes:
                cols = list(zip(*notes, strict=True))
                added = await conn.fetch(
                    f"INSERT INTO {s}.outbox (key, receiver, grp, payload, created, status, "
                    "next_at, digest_start, digest_end, token, origin) SELECT * FROM "
                    "unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::float8[], "
                    "$6::text[], $7::float8[], $8::float8[], $9::float8[], $10::int8[], "
                    "$11::text[]) ON CONFLICT (key, receiver) DO NOTHING RETURNING id", *cols)
                if added:
                    await conn.execute("SELECT pg_notify($1, 'o')", self._channel)
        if notes:
            for cb in list(self._on_outbox):
                with contextlib.suppress(Exception):
                    cb()
        return FlushResult(True, fenced, top)

    async def lease_row(self) -> dict[str, Any] | None:
        """The lease row: token, holder (pid, host, role, since), age of its heartbeat."""
        s = self.schema
        row = await self.op(lambda c: c.fetchrow(
            f"SELECT token, holder::text AS holder, extract(epoch FROM now() - beat) AS age "
            f"FROM {s}.lease WHERE name = 'evaluator'"))
        if row is None:
            return None
        holder = orjson.loads(row["holder"]) if row["holder"] else {}
        return {"token": int(row["token"]), **(holder if isinstance(holder, dict) else {}),
                "beat_age": None if row["age"] is None else float(row["age"])}
