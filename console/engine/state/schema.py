"""The shared-state schema in PostgreSQL: its tables, its recorded version, its migrations.

`opsconsole state init` creates the schema (``[state] schema``, default ``opsconsole``) in a
database the team chooses, separate from the monitored ones, and migrates an older one; the
version is recorded in ``meta``. A console checks the version when it connects and says
what to run when the schema is missing, older or newer than it knows.

Tables:

* ``events``: the source of truth, append-only (a trigger refuses UPDATE, DELETE and
  TRUNCATE). One row per incident entry (the journal's, same ``uid``), alert request
  (acknowledgement, silence: who, where, when, why), alert state delta and checkpoint (with
  the transitions they record), and resolved alert episode. ``token`` is the evaluator's
  fencing token on what the evaluator wrote. Ids are handed out under a transaction-scoped
  advisory lock, so they are in commit order and a reader that has seen id N has seen
  everything before it (a plain sequence can commit 11 before 10).
* ``lease``: the evaluator's fencing token (bumped by each new owner), who holds it and its
  last heartbeat. The lease itself is a session advisory lock (`state.lease`).
* ``outbox``: notifications, one row per (idempotency key, receiver), claimed by the
  evaluator with ``FOR UPDATE SKIP LOCKED``; ``deliveries``: every attempt (token, console,
  start, end, outcome); ``summary_state``: each receiver's last daily summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import asyncpg

from console.engine.state.pgconn import StateError

SCHEMA_VERSION = 1


def lock_key(schema: str, what: str) -> int:
    """A stable signed 64-bit advisory-lock key for `what` within `schema`."""
    digest = hashlib.sha256(f"opsconsole:{schema}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel announcing new events."""
    return f"{schema}_events"


def _v1(s: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE {s}.events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid text NOT NULL UNIQUE,
    stream text NOT NULL,
    kind text NOT NULL,
    ts double precision NOT NULL,
    at double precision,
    actor text NOT NULL DEFAULT '',
    console text NOT NULL DEFAULT '',
    token bigint,
    body jsonb NOT NULL,
    recorded timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_kind ON {s}.events (kind, id);
CREATE INDEX events_stream ON {s}.events (stream, id);
CREATE FUNCTION {s}.append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'opsconsole events are append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {s}.events
    FOR EACH ROW EXECUTE FUNCTION {s}.append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {s}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.append_only();
CREATE TABLE {s}.lease (
    name text PRIMARY KEY,
    token bigint NOT NULL DEFAULT 0,
    holder jsonb,
    since timestamptz,
    beat timestamptz
);
INSERT INTO {s}.lease (name) VALUES ('evaluator');
CREATE TABLE {s}.outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL,
    receiver text NOT NULL,
    grp text NOT NULL DEFAULT '',
    payload bytea NOT NULL,
    created double precision NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_at double precision NOT NULL DEFAULT 0,
    last_error text,
    sent_at double precision,
    digest_start double precision,
    digest_end double precision,
    token bigint,
    origin text NOT NULL DEFAULT '',
    claimed_by bigint,
    claimed_at timestamptz,
    UNIQUE (key, receiver)
);
CREATE INDEX outbox_pending ON {s}.outbox (receiver, status, id);
CREATE TABLE {s}.deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id bigint NOT NULL REFERENCES {s}.outbox (id),
    token bigint NOT NULL,
    console text NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    finished timestamptz,
    outcome text,
    error text
);
CREATE INDEX deliveries_outbox ON {s}.deliveries (outbox_id);
CREATE TABLE {s}.summary_state (receiver text PRIMARY KEY, last double precision NOT NULL);
"""


# (version, SQL for a schema name): applied in order, each in the init transaction.
MIGRATIONS: Sequence[tuple[int, Callable[[str], str]]] = ((1, _v1),)


async def _version(conn: asyncpg.Connection, schema: str) -> int | None:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.meta")
    if not exists:
        return None
    value = await conn.fetchval(f"SELECT value FROM {schema}.meta WHERE key = "
                                "'schema_version'")
    return int(value) if value is not None else 0


async def init(conn: asyncpg.Connection, schema: str) -> tuple[int | None, int]:
    """Create or migrate the schema in one transaction (two inits at once wait for each
    other); returns (version found, version now)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema, "init"))
        found = await _version(conn, schema)
        if found is not None and found > SCHEMA_VERSION:
            raise StateError(f"the state schema {schema!r} is at version {found}, newer than "
                             f"this opsconsole knows ({SCHEMA_VERSION}): upgrade opsconsole")
        for version, sql in MIGRATIONS:
            if found is None or version > found:
                await conn.execute(sql(schema))
        await conn.execute(f"INSERT INTO {schema}.meta VALUES ('schema_version', $1) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           str(SCHEMA_VERSION))
    return found, SCHEMA_VERSION


async def check(conn: asyncpg.Connection, schema: str) -> int:
    """The schema's version when this console can use it; else StateError saying what to
    run."""
    found = await _version(conn, schema)
    if found is None:
        raise StateError(f"the state database has no opsconsole schema {schema!r}: run "
                         "`opsconsole state init` once")
    if found < SCHEMA_VERSION:
        raise StateError(f"the state schema {schema!r} is at version {found}; this "
                         f"opsconsole needs {SCHEMA_VERSION}: run `opsconsole state init` to "
                         "migrate it")
    if found > SCHEMA_VERSION:
        raise StateError(f"the state schema {schema!r} is at version {found}, newer than "
                         f"this opsconsole knows ({SCHEMA_VERSION}): upgrade opsconsole")
    return found
