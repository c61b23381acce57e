"""Alert history: one record per firing episode, appended when it resolves, read back bounded.

Written with the incident journal's machinery (`console.engine.storage.journal.Journal`: one
``\\n``-terminated orjson line per ``O_APPEND`` write under flock, group-committed fsync off
the event loop, torn-tail repair, degraded state instead of a crash), into its own file beside
``alerts.json`` (``alerts-history.jsonl``) so the incident journal stays the operator's. Only
the lease owner appends. An episode carries ``key`` = ``rule/target/incident``; the state file
keeps resolved episodes until their append is durable and replays them after a crash, so a
reader keeps the last record of each key (a replay is never a second episode).

A console that follows (see `console.engine.storage.lease`) does not change alert state itself; its
acknowledgements and silences are appended here as ``request`` entries (same lock and
one-write-per-record protocol, fsync'd) and the owner applies them on its next tick.

Reading is bounded: at most `max_bytes` from the end of the file (and its one rotated
predecessor), then at most `limit` episodes newer than `since`. The owner rotates the file
past `ROTATE_BYTES` when it opens it, so neither the file nor a reader grows without bound.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import orjson

from console.engine.model import AlertEpisode
from console.engine.storage.fileio import fsync_dir
from console.engine.storage.journal import Journal, current_actor, encode
from console.engine.text.fmt import format_duration

ROTATE_BYTES = 8 * 1024 * 1024  # about 20k episodes per file
READ_BYTES = 2 * 1024 * 1024
DEFAULT_SINCE = 30 * 86400.0
REQUEST_TTL = 120.0  # an owner starting up applies requests at most this old


def rotated(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def describe_duration(ep: AlertEpisode) -> str:
    """``12m 03s`` for a resolved episode, ``ongoing 4m 10s`` for an open one."""
    span = format_duration(float(ep.get("duration_s") or 0.0), spaced=True)
    return f"ongoing {span}" if ep.get("ongoing") else span


def _tail_lines(path: Path, max_bytes: int) -> list[bytes]:
    """Complete lines from the last `max_bytes` of `path` (a torn last line is left out)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - max_bytes)
        buf = os.pread(fd, size - start, start)
    except OSError:
        return []
    finally:
        os.close(fd)
    if start > 0:  # the first line is probably cut: drop it
        nl = buf.find(b"\n")
        buf = buf[nl + 1:] if nl >= 0 else b""
    end = buf.rfind(b"\n")
    return buf[: end + 1].split(b"\n")[:-1] if end >= 0 else []


def read_episodes(path: Path, *, since: float | None = None, now: float | None = None,
                  limit: int = 500, max_bytes: int = READ_BYTES) -> list[AlertEpisode]:
    """Resolved episodes that ended after `since` (default: 30 days), newest first.

    Reads at most `max_bytes` of the file, and of its rotated predecessor only what the
    current one lacked; undecodable lines are skipped (the writer quarantines them).
    """
    now = time.time() if now is None else now
    lo = now - DEFAULT_SINCE if since is None else since
    lines = _tail_lines(path, max_bytes)
    size = sum(len(x) + 1 for x in lines)
    if size < max_bytes:
        lines = _tail_lines(rotated(path), max_bytes - size) + lines
    by_key: dict[str, dict[str, Any]] = {}
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(obj, dict) or obj.get("type") != "episode":
            continue
        end = obj.get("resolved_at")
        if not isinstance(end, int | float) or end < lo:
            continue
        key = str(obj.get("key") or obj.get("id"))
        by_key.pop(key, None)  # the last copy wins, in file order
        by_key[key] = obj
    out = sorted(by_key.values(), key=lambda e: float(e["resolved_at"]), reverse=True)
    return cast("list[AlertEpisode]", out[:limit])  # JSON written by Alert.episode()


def ongoing(alerts: Iterable[Any], now: float) -> list[AlertEpisode]:
    """The open episodes of `alerts` (firing, acknowledged, or nodata after firing)."""
    firing = ("firing", "acknowledged")
    out = []
    for a in alerts:
        state = a.state.value
        if state == "nodata" and a.nodata_from is not None:
            state = a.nodata_from.value
        if state not in firing or a.fired_at is None:
            continue
        ep = a.episode(now)
        if ep is not None:
            out.append(ep)
    out.sort(key=lambda e: float(e["fired_at"]), reverse=True)
    return out


def append_request(path: Path, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Append one ``request`` entry (a follower's ack or silence) durably; blocking.

    The journal's protocol without its writer thread: ``O_APPEND``, flock held, a newline
    first if the last record was cut short, one write, fsync. Raises OSError.
    """
    full = {"id": f"req-{os.getpid()}-{os.urandom(6).hex()}", "ts": time.time(),
            "actor": current_actor(), **entry, "type": "request"}
    data = encode(full)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return full


class AlertHistory:
    """The owner's appender: a Journal on the history file, rotated when it grew too big."""

    def __init__(self, path: Path, *, rotate_bytes: int = ROTATE_BYTES) -> None:
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.journal: Journal | None = None
        self.pending_requests: list[dict[str, Any]] = []  # found at open, recent enough

    @property
    def degraded(self) -> str | None:
        return self.journal.degraded if self.journal is not None else None

    def open(self) -> None:
        """Blocking (call in a thread): rotate if needed, then open (repairing a torn tail)."""
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size > self.rotate_bytes:
                os.replace(self.path, rotated(self.path))
                fsync_dir(self.path.parent)
        journal = Journal(self.path)
        journal.open()
        recent = time.time() - REQUEST_TTL
        self.pending_requests = [e for e in journal.entries if e.get("type") == "request"
                                 and isinstance(e.get("ts"), int | float) and e["ts"] >= recent]
        journal.entries.clear()  # nobody reads them from here; readers use read_episodes
        self.journal = journal

    async def record(self, episode: AlertEpisode) -> bool:
        """Append one episode; True once it is on disk (False: kept in memory, degraded)."""
        if self.journal is None:
            return False
        rec = await self.journal.append(episode)
        self.journal.entries.clear()
        return rec.durable

    def close_sync(self) -> None:
        if self.journal is not None:
            self.journal.close_sync()
            self.journal = None
