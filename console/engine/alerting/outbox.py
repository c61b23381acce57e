"""The notification outbox: SQLite on disk, and memory when the disk refuses.

One row per (idempotency key, receiver), `INSERT OR IGNORE`, so enqueuing a transition twice
is a no-op; a row is marked sent only after the receiver accepted it, so a crash in between
sends it again under the same key (see `notify.py`). The file and its `-wal`/`-shm` are
0600 (SQLite creates those two with the database file's mode): payloads name targets and
carry the alerts' details.

A full or read-only data disk must not lose a notification nor stop the console. When the
file cannot be opened or written, the outbox switches to an in-memory SQLite database with
the same schema (a copy of the file's rows where they can still be read), so sending goes
on from memory; `problem` says why, `unsaved()` lists what only memory holds, and `flush()`
(called periodically by the notifier) writes every row changed meanwhile back to the file
and returns to it once the disk takes writes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from console.engine.text.redact import describe_exception

log = logging.getLogger(__name__)
T = TypeVar("T")

_COLUMNS = ("id", "key", "receiver", "grp", "payload", "created", "status", "attempts",
            "next_at", "last_error", "sent_at", "digest_start", "digest_end", "token")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    receiver TEXT NOT NULL,
    grp TEXT NOT NULL DEFAULT '',
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL,
    digest_start REAL,
    digest_end REAL,
    token INTEGER,
    UNIQUE (key, receiver)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (receiver, status, id);
CREATE TABLE IF NOT EXISTS summary_state (
    receiver TEXT PRIMARY KEY,
    last REAL NOT NULL
);
"""
_ROW = "id, key, grp, payload, attempts, next_at, created"
# Errors that mean "the disk will not take this now" (full, read-only, I/O, a damaged
# file): the outbox carries on in memory. A misuse (a closed database, a constraint) is a
# bug and raises.
_DISK_ERRORS = (sqlite3.OperationalError, sqlite3.DatabaseError, OSError)
_BUGS = (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError)


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    key: str
    grp: str
    payload: bytes
    attempts: int
    next_at: float
    created: float


def _problem(path: Path | None, exc: BaseException) -> str:
    """What the operator reads: the cause first (short), then what it means, then where."""
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else \
        describe_exception(exc)
    return (f"notification outbox cannot be written ({cause}): notifications are kept in "
            f"memory and sent from there until it can ({path})")


def _private(path: Path) -> None:
    """Create `path` 0600 if missing; make it and SQLite's side files 0600 if they exist (an
    outbox written before this was 0644)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if p.stat().st_mode & 0o777 != 0o600:
                p.chmod(0o600)


def _open_file(path: Path) -> sqlite3.Connection:
    _private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        columns = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        for col, kind in (("digest_start", "REAL"), ("digest_end", "REAL"),  # an outbox
                          ("token", "INTEGER")):  # written before digests, or shared state
            if col not in columns:
                db.execute(f"ALTER TABLE outbox ADD COLUMN {col} {kind}")
        # A row left 'sending' by a crash was maybe delivered, maybe not: send it again
        # (a digest's rows go back to waiting for their digest, not to the plain queue).
        db.execute("UPDATE outbox SET status=CASE WHEN digest_end IS NULL THEN 'pending' "
                   "ELSE 'digest' END WHERE status='sending'")
    except BaseException:
        db.close()
        raise
    _private(path)  # the -wal and -shm SQLite just made
    return db


def _open_memory() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    db.executescript(_SCHEMA)
    return db


class Outbox:
    """The store behind the notifier; every method is short and thread-safe, and none
    raises for a full or read-only disk (see the module docstring)."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        self.problem: str | None = None
        self.in_memory = False
        self._dirty: set[int] = set()  # rows changed while in memory
        self._unsaved: set[int] = set()  # rows created while in memory
        self._idmap: dict[int, int] = {}  # memory id -> file id after a flush
        self._summaries_dirty: set[str] = set()
        if self.path is None:
            self._db = _open_memory()
            self.in_memory = True
            return
        try:
            self._db = _open_file(self.path)
        except _DISK_ERRORS as exc:
            self._db = _open_memory()
            self._degrade(exc)

    # -- memory mode -------------------------------------------------------------------------

    def _degrade(self, exc: BaseException) -> None:
        self.in_memory = True
        self.problem = _problem(self.path, exc)
        log.info("%s", self.problem)  # the notifier reports it (a problem on screen)

    def _to_memory(self, exc: BaseException) -> None:
        """Carry on in memory with a copy of the file's rows (when they can be read)."""
        mem = _open_memory()
        copied = True
        try:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM outbox").fetchall()
            mem.executemany(f"INSERT INTO outbox ({', '.join(_COLUMNS)}) VALUES "
                            f"({', '.join('?' * len(_COLUMNS))})", rows)
            mem.executemany("INSERT INTO summary_state VALUES (?, ?)",
                            self._db.execute("SELECT receiver, last FROM summary_state"))
        except _DISK_ERRORS:
            copied = False
        with contextlib.suppress(Exception):
            self._db.close()
        self._db = mem
        self._idmap.clear()  # ids copied from the file are kept as they are
        self._degrade(exc)
        if not copied:
            log.warning("the outbox's rows on disk could not be read; they are sent once the "
                        "disk is back")

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` on the current database under the lock; a disk error moves to memory and
        runs it there."""
        with self._lock:
            try:
                return fn(self._db)
            except _DISK_ERRORS as exc:
                if self.in_memory or isinstance(exc, _BUGS):
                    raise
                with contextlib.suppress(Exception):
                    self._db.execute("ROLLBACK")
                self._to_memory(exc)
                return fn(self._db)

    def _touch(self, ids: Sequence[int], *, new: bool = False) -> None:
        if self.in_memory and self.path is not None:  # (no path: memory by choice)
            self._dirty.update(ids)
            if new:
                self._unsaved.update(ids)

    def flush(self) -> bool:
        """Write what memory holds back to the file and return to it; True when the outbox
        is on disk (again), False while the disk still refuses."""
        if not self.in_memory or self.path is None:
            return not self.in_memory
        with self._lock:
            try:
                db = _open_file(self.path)
            except _DISK_ERRORS as exc:
                self._retry_failed(exc)
                return False
            try:
                idmap = self._write_back(db)
            except _DISK_ERRORS as exc:
                with contextlib.suppress(Exception):
                    db.execute("ROLLBACK")
                db.close()
                self._retry_failed(exc)
                return False
            self._db.close()
            self._db = db
            self._idmap.update(idmap)
            self.in_memory = False
            self.problem = None
            self._dirty.clear()
            self._unsaved.clear()
            self._summaries_dirty.clear()
            log.warning("notification outbox %s writable again: %d notification(s) saved",
                        self.path, len(idmap))
            return True

    def _retry_failed(self, exc: BaseException) -> None:
        self.problem = _problem(self.path, exc)

    def _write_back(self, db: sqlite3.Connection) -> dict[int, int]:
        cols = [c for c in _COLUMNS if c != "id"]
        idmap: dict[int, int] = {}
        db.execute("BEGIN IMMEDIATE")
        for row_id in sorted(self._dirty):
            row = self._db.execute(f"SELECT {', '.join(cols)} FROM outbox WHERE id=?",
                                   (row_id,)).fetchone()
            if row is None:
                continue
            updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in ("key",
                                                                              "receiver"))
            db.execute(f"INSERT INTO outbox ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))}) ON CONFLICT(key, receiver) DO UPDATE "
                       f"SET {updates}", row)
            (new_id,) = db.execute("SELECT id FROM outbox WHERE key=? AND receiver=?",
                                   (row[0], row[1])).fetchone()
            idmap[row_id] = int(new_id)
        for receiver in self._summaries_dirty:
            last = self._db.execute("SELECT last FROM summary_state WHERE receiver=?",
                                    (receiver,)).fetchone()
            if last is not None:
                db.execute("INSERT INTO summary_state VALUES (?, ?) ON CONFLICT(receiver) "
                           "DO UPDATE SET last=excluded.last", (receiver, last[0]))
        db.execute("COMMIT")
        return idmap

    def unsaved(self) -> list[dict[str, Any]]:
        """Rows only memory holds (created while the disk refused), oldest first."""
        if not self._unsaved:
            return []
        with self._lock:
            marks = ",".join("?" * len(self._unsaved))
            cur = self._db.execute(
                f"SELECT id, key, receiver, status, payload, last_error FROM outbox "
                f"WHERE id IN ({marks}) ORDER BY id", tuple(self._unsaved))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock, contextlib.suppress(Exception):
            self._db.close()

    # -- rows --------------------------------------------------------------------------------

    def add(self, key: str, receiver: str, payload: bytes, now: float, max_queue: int,
            group: str = "", digest: tuple[float, float] | None = None,
            token: int | None = None) -> tuple[bool, int]:
        """Insert unless (key, receiver) exists; returns (inserted, rows dropped to make room).

        With `digest` = (period start, period end) the row waits for that period's digest
        (status 'digest', due at the period's end) instead of the plain queue; the bound
        applies to each of the two separately. `token` is the shared evaluator's fencing
        token the row was produced under (the postgres state backend ships by it).
        """
        status = "pending" if digest is None else "digest"
        start, end = digest if digest is not None else (None, None)

        def op(db: sqlite3.Connection) -> tuple[bool, int]:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox (key, receiver, grp, payload, created, "
                    "next_at, status, digest_start, digest_end, token) VALUES (?, ?, ?, ?, ?, "
                    "?, ?, ?, ?, ?)", (key, receiver, group, payload, now, end or 0.0, status,
                                       start, end, token))
                if cur.rowcount == 0:
                    db.execute("COMMIT")
                    return False, 0
                new_id = int(cur.lastrowid or 0)
                (pending,) = db.execute(
                    "SELECT count(*) FROM outbox WHERE receiver=? AND status=?",
                    (receiver, status)).fetchone()
                excess = pending - max_queue
                dropped: list[int] = []
                if excess > 0:
                    dropped = [r[0] for r in db.execute(
                        "SELECT id FROM outbox WHERE receiver=? AND status=? ORDER BY id "
                        "LIMIT ?", (receiver, status, excess))]
                    db.executemany("UPDATE outbox SET status='dropped', last_error='queue "
                                   "full' WHERE id=?", [(i,) for i in dropped])
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    db.execute("ROLLBACK")
                raise
            self._touch([new_id], new=True)
            self._touch(dropped)
            return True, max(excess, 0)

        return self._run(op)

    def digest_head(self, receiver: str) -> tuple[float, float, float, int] | None:
        """The earliest-due waiting digest: (period start, period end, due at, attempts)."""
        row = self._run(lambda db: db.execute(
            "SELECT digest_start, digest_end, max(next_at), max(attempts) FROM outbox "
            "WHERE receiver=? AND status='digest' GROUP BY digest_end "
            "ORDER BY max(next_at), digest_end LIMIT 1", (receiver,)).fetchone())
        return None if row is None else (float(row[0]), float(row[1]), float(row[2]),
                                         int(row[3]))

    def digest_rows(self, receiver: str, end: float) -> list[Row]:
        """Every row waiting for the digest of the period ending at or before `end`."""
        rows = self._run(lambda db: db.execute(
            f"SELECT {_ROW} FROM outbox WHERE receiver=? AND status='digest' AND "
            "digest_end<=? ORDER BY id", (receiver, end)).fetchall())
        return [Row(*r) for r in rows]

    def head(self, receiver: str) -> Row | None:
        """The oldest pending row."""
        row = self._run(lambda db: db.execute(
            f"SELECT {_ROW} FROM outbox WHERE receiver=? AND status='pending' ORDER BY id "
            "LIMIT 1", (receiver,)).fetchone())
        return None if row is None else Row(*row)

    def batch(self, receiver: str, head: Row, limit: int) -> list[Row]:
        """The head row and the later pending rows of its group, oldest first."""
        rows = self._run(lambda db: db.execute(
            f"SELECT {_ROW} FROM outbox WHERE receiver=? AND status='pending' AND grp=? AND "
            "id>=? ORDER BY id LIMIT ?", (receiver, head.grp, head.id, limit)).fetchall())
        return [Row(*r) for r in rows]

    def mark(self, ids: Sequence[int], status: str, *, now: float, next_at: float = 0.0,
             error: str | None = None) -> None:
        """Move rows to 'sending', 'sent', 'failed' or back to 'pending' or 'digest' (with
        the next attempt time), all in one transaction."""
        def op(db: sqlite3.Connection) -> None:
            mapped = [self._idmap.get(i, i) for i in ids]
            db.execute("BEGIN IMMEDIATE")
            try:
                for row_id in mapped:
                    if status == "sent":
                        db.execute("UPDATE outbox SET status='sent', sent_at=?, "
                                   "attempts=attempts+1, last_error=? WHERE id=?",
                                   (now, error, row_id))
                    elif status == "sending":
                        db.execute("UPDATE outbox SET status='sending' WHERE id=?", (row_id,))
                    else:
                        db.execute("UPDATE outbox SET status=?, attempts=attempts+1, "
                                   "next_at=?, last_error=? WHERE id=?",
                                   (status, next_at, error, row_id))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    db.execute("ROLLBACK")
                raise
            self._touch(mapped)

        self._run(op)

    def rows(self, receiver: str | None = None) -> list[dict[str, Any]]:
        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            q = ("SELECT id, key, receiver, status, attempts, last_error, sent_at FROM outbox"
                 + (" WHERE receiver=?" if receiver else "") + " ORDER BY id")
            cur = db.execute(q, (receiver,) if receiver else ())
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return self._run(op)

    def counts(self, receiver: str) -> dict[str, int]:
        return dict(self._run(lambda db: db.execute(
            "SELECT status, count(*) FROM outbox WHERE receiver=? GROUP BY status",
            (receiver,)).fetchall()))

    # -- the daily summary -------------------------------------------------------------------

    def summary_last(self, receiver: str) -> float | None:
        """When this receiver's last summary was due (None: it never had one)."""
        row = self._run(lambda db: db.execute(
            "SELECT last FROM summary_state WHERE receiver=?", (receiver,)).fetchone())
        return None if row is None else float(row[0])

    def set_summary_last(self, receiver: str, last: float) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO summary_state VALUES (?, ?) ON CONFLICT(receiver) DO "
                       "UPDATE SET last=excluded.last", (receiver, last))
            if self.in_memory:
                self._summaries_dirty.add(receiver)

        self._run(op)

    def add_summary(self, receiver: str, key: str, payload: bytes, now: float, due: float,
                    included: Sequence[int]) -> None:
        """In one transaction: the summary as a pending row, the batched rows it includes
        marked sent with it, and `due` as this receiver's last summary time."""
        def op(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT OR IGNORE INTO outbox (key, receiver, grp, payload, created, "
                    "next_at, status) VALUES (?, ?, '', ?, ?, 0, 'pending')",
                    (key, receiver, payload, now))
                new_id = int(cur.lastrowid or 0) if cur.rowcount else 0
                db.executemany("UPDATE outbox SET status='sent', sent_at=?, last_error=? "
                               "WHERE id=?", [(now, f"in {key}", i) for i in included])
                db.execute("INSERT INTO summary_state VALUES (?, ?) ON CONFLICT(receiver) DO "
                           "UPDATE SET last=excluded.last", (receiver, due))
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    db.execute("ROLLBACK")
                raise
            if new_id:
                self._touch([new_id], new=True)
            self._touch(list(included))
            if self.in_memory:
                self._summaries_dirty.add(receiver)

        self._run(op)


    # -- a spool for the shared state (the postgres backend) ----------------------------------

    def unshipped(self, limit: int = 500) -> list[dict[str, Any]]:
        """Rows not yet handed to the shared state, oldest first: with the postgres backend
        this outbox is the console's durable local queue (notifications, and incident and
        alert-request events under the receiver ``@events``) until the database takes them."""
        def op(db: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = db.execute(
                "SELECT id, key, receiver, grp, payload, created, status, digest_start, "
                "digest_end, token FROM outbox WHERE status IN ('pending', 'digest') ORDER BY "
                "id LIMIT ?", (limit,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

        return self._run(op)

    def mark_shipped(self, ids: Sequence[int], status: str = "shipped",
                     why: str | None = None) -> None:
        """The shared state has these rows now (committed): they are never shipped again;
        or, with status 'abandoned', they will never be (and `why`)."""
        def op(db: sqlite3.Connection) -> None:
            mapped = [self._idmap.get(i, i) for i in ids]
            db.executemany("UPDATE outbox SET status=?, last_error=coalesce(?, last_error) "
                           "WHERE id=?", [(status, why, i) for i in mapped])
            self._touch(mapped)

        self._run(op)


class LocalQueue:
    """The notifier's sending side over this outbox (the files backend): the same awaitable
    methods as the shared state's queue (`console.engine.state.outbox.SharedQueue`), each run
    in a thread (a SQLite write can wait on a slow disk)."""

    shared = False

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def head(self, receiver: str) -> Row | None:
        return await asyncio.to_thread(self.outbox.head, receiver)

    async def batch(self, receiver: str, head: Row, limit: int) -> list[Row]:
        return await asyncio.to_thread(self.outbox.batch, receiver, head, limit)

    async def digest_head(self, receiver: str) -> tuple[float, float, float, int] | None:
        return await asyncio.to_thread(self.outbox.digest_head, receiver)

    async def digest_rows(self, receiver: str, end: float) -> list[Row]:
        return await asyncio.to_thread(self.outbox.digest_rows, receiver, end)

    async def claim(self, ids: Sequence[int], now: float) -> list[int]:
        """Mark rows 'sending' (a crash leaves them to be sent again); all of them: one
        process sends from a local outbox."""
        await asyncio.to_thread(self.outbox.mark, ids, "sending", now=now)
        return list(ids)

    async def release(self, ids: Sequence[int], status: str) -> None:
        await asyncio.to_thread(self.outbox.mark, ids, status, now=0.0)

    async def mark(self, ids: Sequence[int], status: str, *, now: float, next_at: float = 0.0,
                   error: str | None = None) -> None:
        await asyncio.to_thread(self.outbox.mark, ids, status, now=now, next_at=next_at,
                                error=error)

    async def summary_last(self, receiver: str) -> float | None:
        return await asyncio.to_thread(self.outbox.summary_last, receiver)

    async def set_summary_last(self, receiver: str, last: float) -> None:
        await asyncio.to_thread(self.outbox.set_summary_last, receiver, last)

    async def add_summary(self, receiver: str, key: str, payload: bytes, now: float,
                          due: float, included: Sequence[int]) -> None:
        await asyncio.to_thread(self.outbox.add_summary, receiver, key, payload, now, due,
                                included)

    def counts(self, receiver: str) -> dict[str, int]:
        return self.outbox.counts(receiver)


def read_batched(path: Path, since: float, until: float) -> list[bytes]:
    """Payloads of the notifications collected for a digest or summary in `[since, until]`
    (read-only, for `opsconsole report`); [] when there is no outbox."""
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        return [bytes(r[0]) for r in db.execute(
            "SELECT min(payload) FROM outbox WHERE digest_end IS NOT NULL AND created>=? AND "
            "created<=? GROUP BY key ORDER BY min(id)", (since, until))]
    except sqlite3.Error:
        return []
    finally:
        db.close()
