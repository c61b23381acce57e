"""The shared outbox: notifications in PostgreSQL, sent by the evaluator alone, at least once.

The notifier (`console.engine.alerting.notify`) writes every notification into the console's
local spool first (`state.shared`); the spool ships it here with ``ON CONFLICT (key,
receiver) DO NOTHING``, so one transition is one row whoever produced it, however often. The
evaluator's workers read their receiver's oldest row and *claim* it before sending:

    WITH c AS (SELECT id … FOR UPDATE SKIP LOCKED)
    UPDATE outbox SET status = 'sending', claimed_by = <token> … WHERE <token is the lease's>

so a row is claimed by one process, and only by the current evaluator; every attempt is a
row of ``deliveries`` (token, console, start, end, outcome). A row is marked sent only by
the token that claimed it and only while it is still 'sending'. A new evaluator puts the
rows an older token left 'sending' back to be sent (it cannot know whether they went: at
least once); a blip of the database does not (the marks this process could not write are
written first, when it is back).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import asyncpg

from console.engine.alerting.outbox import Row
from console.engine.state.lease import PgLease
from console.engine.state.shared import SharedState, Unavailable

log = logging.getLogger(__name__)

_ROW = "id, key, grp, payload, attempts, next_at, created"
COUNTS_EVERY = 10.0  # health counts (a GROUP BY over the outbox) are this fresh


def _row(r: Any) -> Row:
    return Row(int(r["id"]), r["key"], r["grp"], bytes(r["payload"]), int(r["attempts"]),
               float(r["next_at"]), float(r["created"]))


class SharedQueue:
    """The notifier's sending side over the shared outbox (the `LocalQueue` interface)."""

    shared = True

    def __init__(self, state: SharedState, lease: PgLease) -> None:
        self.state = state
        self.lease = lease
        self.s = state.schema
        self._counts: dict[str, dict[str, int]] = {}
        self._counts_at = 0.0
        self._deliveries: dict[int, int] = {}  # outbox id -> its delivery row
        self._inflight: set[int] = set()  # claimed here, not yet marked
        self._unmarked: list[tuple[list[int], str, float, float, str | None, int]] = []

    async def _op(self, fn: Any, default: Any) -> Any:
        """A query, or `default` while the database cannot be used (the notifier's worker
        then waits: the state wakes it on reconnect)."""
        try:
            return await self.state.op(fn)
        except Unavailable:
            return default

    async def head(self, receiver: str) -> Row | None:
        if time.monotonic() - self._counts_at >= COUNTS_EVERY:
            await self._refresh_counts()
        r = await self._op(lambda c: c.fetchrow(
            f"SELECT {_ROW} FROM {self.s}.outbox WHERE receiver = $1 AND status = 'pending' "
            "ORDER BY id LIMIT 1", receiver), None)
        return None if r is None else _row(r)

    async def batch(self, receiver: str, head: Row, limit: int) -> list[Row]:
        rows = await self._op(lambda c: c.fetch(
            f"SELECT {_ROW} FROM {self.s}.outbox WHERE receiver = $1 AND status = 'pending' "
            "AND grp = $2 AND id >= $3 ORDER BY id LIMIT $4", receiver, head.grp, head.id,
            limit), [])
        return [_row(r) for r in rows] or [head]

    async def digest_head(self, receiver: str) -> tuple[float, float, float, int] | None:
        r = await self._op(lambda c: c.fetchrow(
            f"SELECT min(digest_start) AS s, digest_end AS e, max(next_at) AS due, "
            f"max(attempts) AS n FROM {self.s}.outbox WHERE receiver = $1 AND status = "
            "'digest' GROUP BY digest_end ORDER BY max(next_at), digest_end LIMIT 1",
            receiver), None)
        return None if r is None else (float(r["s"]), float(r["e"]), float(r["due"]),
                                       int(r["n"]))

    async def digest_rows(self, receiver: str, end: float) -> list[Row]:
        rows = await self._op(lambda c: c.fetch(
            f"SELECT {_ROW} FROM {self.s}.outbox WHERE receiver = $1 AND status = 'digest' "
            "AND digest_end <= $2 ORDER BY id", receiver, end), [])
        return [_row(r) for r in rows]

    async def claim(self, ids: Sequence[int], now: float) -> list[int]:
        """Claim rows for this evaluator (see the module docstring); the ids it got."""
        token = self.lease.token
        if token is None or not self.lease.valid():
            return []
        s = self.s
        rows = await self._op(lambda c: c.fetch(
            f"WITH c AS (SELECT id FROM {s}.outbox WHERE id = ANY($1::int8[]) AND status IN "
            "('pending', 'digest') FOR UPDATE SKIP LOCKED), "
            f"u AS (UPDATE {s}.outbox o SET status = 'sending', claimed_by = $2, claimed_at = "
            f"now() FROM c WHERE o.id = c.id AND (SELECT token FROM {s}.lease WHERE name = "
            "'evaluator') = $2 RETURNING o.id) "
            f"INSERT INTO {s}.deliveries (outbox_id, token, console) SELECT id, $2, $3 FROM u "
            "RETURNING id, outbox_id", list(ids), token, self.state.console), [])
        got = []
        for r in rows:
            self._deliveries[int(r["outbox_id"])] = int(r["id"])
            self._inflight.add(int(r["outbox_id"]))
            got.append(int(r["outbox_id"]))
        return got

    async def release(self, ids: Sequence[int], status: str) -> None:
        """Give claimed rows back unsent (the lease came into doubt after the claim)."""
        token = self.lease.token or self.state.last_token
        if not ids or token is None:
            return
        await self._write(list(ids), status, 0.0, 0.0, "not sent: lease in doubt", token,
                          outcome="released", attempt=False)

    async def mark(self, ids: Sequence[int], status: str, *, now: float, next_at: float = 0.0,
                   error: str | None = None) -> None:
        """The outcome of an attempt, for rows this token claimed and that are still its."""
        token = self.lease.token or self.state.last_token
        if token is None:
            return
        try:
            await self._write(list(ids), status, now, next_at, error, token,
                              outcome="sent" if status == "sent" else "failed")
        except Unavailable:
            # written when the database is back, before anything is sent again
            self._unmarked.append((list(ids), status, now, next_at, error, token))

    async def _write(self, ids: list[int], status: str, now: float, next_at: float,
                     error: str | None, token: int, *, outcome: str,
                     attempt: bool = True) -> None:
        s = self.s
        deliveries = [self._deliveries[i] for i in ids if i in self._deliveries]

        async def tx(c: asyncpg.Connection) -> None:
            async with c.transaction():
                if status == "sent":
                    await c.execute(
                        f"UPDATE {s}.outbox SET status = 'sent', sent_at = $2, attempts = "
                        "attempts + 1, last_error = $3 WHERE id = ANY($1::int8[]) AND "
                        "claimed_by = $4 AND status = 'sending'", ids, now, error, token)
                else:
                    await c.execute(
                        f"UPDATE {s}.outbox SET status = $2, attempts = attempts + $6, "
                        "next_at = $3, last_error = $4 WHERE id = ANY($1::int8[]) AND "
                        "claimed_by = $5 AND status = 'sending'", ids, status, next_at, error,
                        token, 1 if attempt else 0)
                if deliveries:
                    await c.execute(
                        f"UPDATE {s}.deliveries SET finished = now(), outcome = $2, error = $3 "
                        "WHERE id = ANY($1::int8[])", deliveries, outcome, error)

        await self.state.op(tx)
        for i in ids:
            self._inflight.discard(i)
            self._deliveries.pop(i, None)

    async def settle(self, token: int) -> None:
        """After a (re)connect or a takeover: write the outcomes this process could not,
        then put back every row left 'sending' by this token or an older one (and not in
        flight here): whoever claimed it may or may not have sent it."""
        todo, self._unmarked = self._unmarked, []
        for ids, status, now, next_at, error, tok in todo:
            await self._write(ids, status, now, next_at, error, tok,
                              outcome="sent" if status == "sent" else "failed")
        s = self.s
        await self.state.op(lambda c: c.execute(
            f"WITH r AS (UPDATE {s}.outbox SET status = CASE WHEN digest_end IS NULL THEN "
            "'pending' ELSE 'digest' END, claimed_by = NULL WHERE status = 'sending' AND "
            "(claimed_by IS NULL OR claimed_by <= $1) AND NOT (id = ANY($2::int8[])) "
            f"RETURNING id) UPDATE {s}.deliveries SET finished = now(), outcome = 'abandoned' "
            "WHERE finished IS NULL AND outbox_id IN (SELECT id FROM r)",
            token, list(self._inflight)))

    async def summary_last(self, receiver: str) -> float | None:
        v = await self._op(lambda c: c.fetchval(
            f"SELECT last FROM {self.s}.summary_state WHERE receiver = $1", receiver), None)
        return None if v is None else float(v)

    async def set_summary_last(self, receiver: str, last: float) -> None:
        await self._op(lambda c: c.execute(
            f"INSERT INTO {self.s}.summary_state VALUES ($1, $2) ON CONFLICT (receiver) DO "
            "UPDATE SET last = excluded.last", receiver, last), None)

    async def add_summary(self, receiver: str, key: str, payload: bytes, now: float,
                          due: float, included: Sequence[int]) -> None:
        """The summary, the rows it includes marked sent with it, and its due time as the
        receiver's last: one transaction, by the current evaluator only."""
        token = self.lease.token
        if token is None:
            return
        s = self.s

        async def tx(c: asyncpg.Connection) -> None:
            async with c.transaction():
                current = await c.fetchval(
                    f"SELECT token FROM {s}.lease WHERE name = 'evaluator' FOR SHARE")
                if current != token:
                    return
                await c.execute(
                    f"INSERT INTO {s}.outbox (key, receiver, grp, payload, created, status, "
                    "token, origin) VALUES ($1, $2, '', $3, $4, 'pending', $5, $6) ON CONFLICT "
                    "(key, receiver) DO NOTHING", key, receiver, payload, now, token,
                    self.state.console)
                await c.execute(
                    f"UPDATE {s}.outbox SET status = 'sent', sent_at = $2, last_error = $3 "
                    "WHERE id = ANY($1::int8[]) AND status = 'digest'", list(included), now,
                    f"in {key}")
                await c.execute(
                    f"INSERT INTO {s}.summary_state VALUES ($1, $2) ON CONFLICT (receiver) DO "
                    "UPDATE SET last = excluded.last", receiver, due)

        with contextlib.suppress(Unavailable):
            await self.state.op(tx)

    async def _refresh_counts(self) -> None:
        self._counts_at = time.monotonic()
        rows = await self._op(lambda c: c.fetch(
            f"SELECT receiver, status, count(*) AS n FROM {self.s}.outbox GROUP BY receiver, "
            "status"), None)
        if rows is None:
            return
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            counts.setdefault(r["receiver"], {})[r["status"]] = int(r["n"])
        self._counts = counts

    def counts(self, receiver: str) -> dict[str, int]:
        """Rows per status for `receiver` (as of the last read: at most a few seconds old)."""
        return dict(self._counts.get(receiver, {}))
