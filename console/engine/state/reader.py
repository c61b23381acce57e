"""The headless commands' view of the state, whatever the backend holds it.

`opsconsole incidents`, `postmortem`, `report` and `alerts --history` read the same things
from either backend through `open_reader`: every incident entry in order, resolved alert
episodes, the evaluator's last alert state (for the episodes still open), who evaluates, and
the notifications batched for digests. Reading never writes: a file journal is read without
repairing it, and the database is read in one read-only transaction per question.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import orjson

from console.engine.alerting.history import read_episodes
from console.engine.alerting.outbox import read_batched
from console.engine.config.schema import StateSection
from console.engine.model import AlertEpisode
from console.engine.paths import DataPaths

T = TypeVar("T")
READ_TIMEOUT = 30.0


class StateReader(Protocol):
    where: str

    def incident_entries(self) -> list[dict[str, Any]]: ...

    def episodes(self, since: float, limit: int = 100_000) -> list[AlertEpisode]: ...

    def alert_snapshot(self) -> dict[str, Any] | None: ...

    def evaluator(self) -> dict[str, Any] | None: ...

    def batched(self, since: float, until: float) -> list[bytes]: ...

    def close(self) -> None: ...


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every decodable entry of a JSONL file, in order, each ``id`` once (a torn last line
    and undecodable lines are left out, as the journal's own reader does)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for line in data.split(b"\n")[:-1]:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            continue
        rid = obj.get("id")
        if isinstance(rid, str):
            if rid in seen:
                continue
            seen.add(rid)
        out.append(obj)
    return out


class FilesReader:
    """The data directory's files (or one journal file named on the command line)."""

    def __init__(self, paths: DataPaths, journal: Path | None = None) -> None:
        self.paths = paths
        self.journal = journal or paths.journal
        self.where = str(self.journal)

    def incident_entries(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            raise FileNotFoundError(self.journal)
        return _lines(self.journal)

    def episodes(self, since: float, limit: int = 100_000) -> list[AlertEpisode]:
        path = self.journal.parent / "alerts-history.jsonl" \
            if self.journal != self.paths.journal else self.paths.alert_history
        return read_episodes(path, since=since, limit=limit, max_bytes=64 * 1024 * 1024)

    def alert_snapshot(self) -> dict[str, Any] | None:
        try:
            data = orjson.loads(self.paths.alert_state.read_bytes())
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def evaluator(self) -> dict[str, Any] | None:
        from console.engine.storage.lease import Lease

        return Lease(self.paths.lease).holder()

    def batched(self, since: float, until: float) -> list[bytes]:
        return read_batched(self.paths.outbox, since, until)

    def close(self) -> None:
        return None


class PostgresReader:
    """The shared state's events and outbox, read-only, on one connection."""

    def __init__(self, cfg: StateSection) -> None:
        self.cfg = cfg
        self.s = cfg.db_schema
        self.where = f"the {self.s} schema of the state database"
        self._runner = asyncio.Runner()
        self._conn: Any = None

    def _run(self, fn: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        return self._runner.run(self._with_conn(fn))

    async def _with_conn(self, fn: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        from console.engine.state import schema as db
        from console.engine.state.pgconn import connect, expand_dsn

        async with asyncio.timeout(READ_TIMEOUT):
            if self._conn is None:
                conn = await connect(expand_dsn(self.cfg.dsn or ""), purpose="reader",
                                     settings={"default_transaction_read_only": "on"})
                await db.check(conn, self.s)
                self._conn = conn
            return await fn(self._conn)

    def _events(self, where: str, *args: Any) -> list[dict[str, Any]]:
        async def q(c: Any) -> list[dict[str, Any]]:
            rows = await c.fetch(f"SELECT uid, body::text FROM {self.s}.events WHERE {where} "
                                 "ORDER BY id", *args)
            out = []
            for r in rows:
                body = orjson.loads(r["body"])
                if isinstance(body, dict):
                    body.setdefault("id", r["uid"])
                    out.append(body)
            return out

        return self._run(q)

    def incident_entries(self) -> list[dict[str, Any]]:
        return self._events("stream = 'incident'")

    def episodes(self, since: float, limit: int = 100_000) -> list[AlertEpisode]:
        by_key: dict[str, AlertEpisode] = {}
        for e in self._events("kind = 'alert.episode' AND at >= $1", since):
            key = str(e.get("key") or e.get("id"))
            by_key.pop(key, None)
            by_key[key] = cast(AlertEpisode, e)  # the body Alert.episode() wrote
        out = sorted(by_key.values(), key=lambda e: float(e.get("resolved_at") or 0),
                     reverse=True)
        return out[:limit]

    def alert_snapshot(self) -> dict[str, Any] | None:
        """The alert state as the evaluator last wrote it (checkpoint + deltas)."""
        from console.engine.state.alerts import AlertView
        from console.engine.state.shared import Event

        async def q(c: Any) -> list[Any]:
            async with c.transaction(isolation="repeatable_read", readonly=True):
                cp = await c.fetchval(f"SELECT max(id) FROM {self.s}.events WHERE kind = "
                                      "'alert.checkpoint'")
                if cp is None:
                    return []
                return list(await c.fetch(
                    f"SELECT id, kind, ts, token, body::text FROM {self.s}.events WHERE kind "
                    "IN ('alert.checkpoint', 'alert.delta') AND id >= $1 ORDER BY id", cp))

        rows = self._run(q)
        if not rows:
            return None
        view = AlertView()
        for r in rows:
            view.fold(Event(int(r["id"]), "", "alert", r["kind"], float(r["ts"]), "", "",
                            r["token"], orjson.loads(r["body"])))
        return view.snapshot()

    def evaluator(self) -> dict[str, Any] | None:
        """Who evaluates (pid, host, role, token, heartbeat age), or None when nobody
        holds the lease."""
        from console.engine.state import schema as db

        key = db.lock_key(self.s, "evaluator")

        async def q(c: Any) -> Any:
            return await c.fetchrow(
                f"SELECT token, holder::text AS holder, extract(epoch FROM now() - beat) AS "
                f"age, EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid "
                f"= $1 AND objid = $2 AND objsubid = 1 AND granted) AS held FROM {self.s}.lease "
                "WHERE name = 'evaluator'", (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)

        row = self._run(q)
        if row is None or not row["held"]:
            return None
        holder = orjson.loads(row["holder"]) if row["holder"] else {}
        return {**(holder if isinstance(holder, dict) else {}), "token": int(row["token"]),
                "beat_age": None if row["age"] is None else float(row["age"])}

    def notifications(self) -> list[dict[str, Any]]:
        """The shared outbox's rows (key, receiver, status, created, sent_at), newest
        first, as `incidents.context.read_notifications` reads a console's."""
        from console.engine.incidents.context import MAX_ROWS

        async def q(c: Any) -> list[dict[str, Any]]:
            rows = await c.fetch(f"SELECT key, receiver, status, created, sent_at FROM "
                                 f"{self.s}.outbox ORDER BY id DESC LIMIT $1", MAX_ROWS)
            return [dict(r) for r in rows]

        return self._run(q)

    def sources(self, now: float) -> tuple[list[AlertEpisode], list[dict[str, Any]]]:
        """(episodes, notifications) as `incidents.context.read_sources` gives a data
        directory's: the open ones from the alert state, then the resolved ones."""
        from console.engine.incidents.context import open_episodes_of

        snapshot = self.alert_snapshot()
        opened = open_episodes_of(snapshot, now) if snapshot is not None else []
        return opened + self.episodes(now - 30 * 86400.0), self.notifications()

    def batched(self, since: float, until: float) -> list[bytes]:
        async def q(c: Any) -> list[bytes]:
            rows = await c.fetch(
                f"SELECT min(payload) AS p FROM {self.s}.outbox WHERE digest_end IS NOT NULL "
                "AND created >= $1 AND created <= $2 GROUP BY key ORDER BY min(id)",
                since, until)
            return [bytes(r["p"]) for r in rows]

        return self._run(q)

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.terminate()
        self._runner.close()


def open_reader(state: StateSection | None, paths: DataPaths,
                journal: str | os.PathLike[str] | None = None) -> FilesReader | PostgresReader:
    """The reader for `[state]` (files when there is no config, or a journal file is
    named)."""
    if journal is not None or state is None or state.backend != "postgres":
        return FilesReader(paths, Path(journal) if journal is not None else None)
    return PostgresReader(state)
