"""Crash-safe append-only incident journal: orjson JSON lines, fsync'd off the event loop.

Why it is shaped this way (RELIABILITY-NOTES §5.3):

- one complete ``\\n``-terminated record per ``os.write`` on an ``O_APPEND`` fd (mode 0600),
  with ``fcntl.flock`` held around the writes so two consoles on one bastion never interleave
  and a failed (short) write can be cut back before anyone else appends after it;
- a dedicated writer thread drains a queue and fsyncs once per batch (group commit), so
  ``await journal.append(...)`` resolves only once its record is on disk, yet the event loop
  never waits on the disk;
- on open, a torn last line is copied aside (``<file>.torn-<ts>``) and truncated, never taken
  with earlier entries; an undecodable line is copied to ``<file>.quarantine`` and skipped;
- ENOSPC/EIO/EFBIG put the journal in a visible degraded state (``degraded`` holds the
  reason); entries stay in memory and are written again later, never a crash. Every entry has
  a unique ``id`` and readers drop repeats, so writing an entry twice after an ambiguous fsync
  failure is harmless;
- the encoder never raises: whatever the payload holds is turned into JSON-safe values, and
  every string passes through :func:`console.engine.text.redact.redact`;
- a spool that is read by folding (the heartbeat pings) is kept small with :meth:`Journal.replace`:
  under the writers' lock, a new file with what the fold needs is renamed over the old one.
  Writers check, once they hold the lock, that the path still names the file they hold, and
  reopen it if not; readers finish the old file, then follow the path to the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import getpass
import math
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from console.engine.storage.fileio import fsync_dir
from console.engine.text.redact import redact

MAX_STRING = 64 * 1024  # characters kept per string; a note is never this long
MAX_DEPTH = 32
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson writes as a number
_BATCH = 512  # records per group commit at most
_RETRY_S = 2.0  # degraded: how often the writer tries the kept entries again


# -- the sanitising encoder ----------------------------------------------------------------


def _clean_str(s: str) -> str:
    if len(s) > MAX_STRING:
        s = s[:MAX_STRING] + "…[truncated]"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them visible as \udXXX
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return redact(s)


def _safe_repr(x: Any) -> str:
    try:
        text = repr(x)
        if not isinstance(text, str):
            raise TypeError
        return _clean_str(str.__str__(text))
    except Exception:
        try:
            return f"<unrepresentable {type(x).__name__}>"
        except Exception:
            return "<unrepresentable>"


def _key(k: Any) -> str:
    if isinstance(k, str):
        return _clean_str(str.__str__(k))
    if isinstance(k, bytes | bytearray | memoryview):
        return _clean_str(bytes(k).decode("utf-8", "backslashreplace"))
    if k is None or isinstance(k, bool | int | float):
        return _clean_str(str(_sanitize(k, 0, set())))
    return _safe_repr(k)


def _sanitize(x: Any, depth: int, seen: set[int]) -> Any:
    if x is None or x is True or x is False:
        return x
    if isinstance(x, str):
        return _clean_str(str.__str__(x))
    if isinstance(x, bool):  # a bool subclass (numpy.bool_ is not one)
        return bool(x)
    if isinstance(x, int):
        v = int.__index__(x)
        return v if _INT_MIN <= v <= _INT_MAX else str(v)
    if isinstance(x, float):
        f = float.__float__(x)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
        return f
    if isinstance(x, bytes | bytearray | memoryview):
        return _clean_str(bytes(x).decode("utf-8", "backslashreplace"))
    if depth >= MAX_DEPTH:
        return _safe_repr(x)[:200]
    if isinstance(x, Mapping | list | tuple | set | frozenset | deque):
        if id(x) in seen:
            return "<cycle>"
        seen.add(id(x))
        try:
            if isinstance(x, Mapping):
                return {_key(k): _sanitize(v, depth + 1, seen) for k, v in list(x.items())}
            items = list(x)
            if isinstance(x, set | frozenset):
                with contextlib.suppress(Exception):
                    items = sorted(items, key=repr)
            return [_sanitize(v, depth + 1, seen) for v in items]
        finally:
            seen.discard(id(x))
    # numpy scalars and other numbers that know how to become one
    item = getattr(x, "item", None)
    if callable(item) and type(x).__module__ == "numpy":
        with contextlib.suppress(Exception):
            return _sanitize(item(), depth + 1, seen)
    return _safe_repr(x)


def sanitize(value: Any) -> Any:
    """A JSON-safe, redacted copy of `value`; never raises, whatever `value` holds.

    bytes → backslash-escaped text, lone surrogates → ``\\udXXX`` text, integers beyond 64
    bits → decimal strings, NaN/±Inf → ``"NaN"``/``"Infinity"`` (orjson would write
    ``null``), non-string keys → strings, anything else → its ``repr``.
    """
    try:
        return _sanitize(value, 0, set())
    except Exception:  # a hostile __index__, a dict changing under us...
        return _safe_repr(value)


def encode(entry: Any) -> bytes:
    """One journal line (with its ``\\n``) for `entry`; never raises."""
    try:
        return orjson.dumps(sanitize(entry)) + b"\n"
    except Exception:
        return orjson.dumps({"type": "unencodable", "repr": _safe_repr(entry)}) + b"\n"


# -- who is acting -------------------------------------------------------------------------


def current_actor(env: Mapping[str, str] | None = None) -> str:
    """``user@host`` of the operator, plus ``(ssh from ADDR)`` when in an SSH session."""
    env = os.environ if env is None else env
    user = env.get("USER") or env.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
    try:
        host = socket.gethostname() or "localhost"
    except OSError:
        host = "localhost"
    actor = f"{user}@{host}"
    ssh = (env.get("SSH_CONNECTION") or env.get("SSH_CLIENT") or "").split()
    if ssh:
        actor += f" (ssh from {ssh[0]})"
    return _clean_str(actor)


# -- records and reports -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """An appended entry; `durable` is False while it waits in memory (degraded journal)."""

    id: str
    entry: dict[str, Any]
    offset: int | None
    durable: bool


@dataclass(slots=True)
class RecoveryReport:
    """What opening the journal found and set aside, for the operator to see."""

    path: Path
    records: int = 0
    last_good_offset: int = 0
    torn_path: Path | None = None
    torn_bytes: int = 0
    quarantined: list[int] = field(default_factory=list)  # byte offsets of bad lines
    quarantine_path: Path | None = None

    @property
    def clean(self) -> bool:
        return self.torn_path is None and not self.quarantined

    def describe(self) -> str:
        parts = []
        if self.torn_path is not None:
            parts.append(f"torn last line ({self.torn_bytes} bytes) set aside in "
                         f"{self.torn_path.name}")
        if self.quarantined:
            parts.append(f"{len(self.quarantined)} undecodable line(s) copied to "
                         f"{self.quarantine_path.name if self.quarantine_path else '?'}")
        return "; ".join(parts) or "journal clean"


class _Item:
    __slots__ = ("data", "entry", "fut", "loop", "rid", "event", "record")

    def __init__(self, data: bytes, entry: dict[str, Any], rid: str,
                 fut: asyncio.Future[Record] | None,
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.data, self.entry, self.rid, self.fut, self.loop = data, entry, rid, fut, loop
        self.event: threading.Event | None = None
        self.record: Record | None = None


_STOP = object()
_KICK = object()
_WRITE_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC


def _reason(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{name}: {exc.strerror or exc}" if name else str(exc)


class Journal:
    """The incident journal of one console. Open with :meth:`open`, close with :meth:`close`.

    `entries` holds every decoded entry of the file in file order (own and other consoles'
    appends alike, each ``id`` once); :meth:`poll` reads what was appended since, and
    :meth:`follow` polls it in the background so another console's actions show within a
    second.
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time,
                 actor: str | None = None) -> None:
        self.path = Path(path)
        self.clock = clock
        self.actor = actor if actor is not None else current_actor()
        self.entries: list[dict[str, Any]] = []
        self.degraded: str | None = None
        self.report = RecoveryReport(self.path)
        self._ids: set[str] = set()
        self._wfd = -1
        self._rfd = -1
        self._read_off = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: deque[_Item] = deque()  # kept in memory while degraded
        self._thread: threading.Thread | None = None
        self._read_lock = threading.Lock()
        # the writer thread and `replace` both write under the file's flock, which does not
        # exclude two threads of one process holding the same open file: this does
        self._write_lock = threading.Lock()
        self._boot = os.urandom(6).hex()
        self._n = 0
        self._listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._state_listeners: list[Callable[[str | None], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Create or recover the file, read it, start the writer. Blocking: call in a thread
        (``await asyncio.to_thread(journal.open)``) from a running UI."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = _WRITE_FLAGS  # read too: the writer checks the last byte of what it holds
        try:
            self._wfd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            os.fsync(self._wfd)
            fsync_dir(self.path.parent)  # the new name must survive a power cut too
        except FileExistsError:
            self._wfd = os.open(self.path, flags)
        self._rfd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.flock(self._wfd, fcntl.LOCK_EX)
        try:
            self._repair_tail()
        finally:
            fcntl.flock(self._wfd, fcntl.LOCK_UN)
        self._read_new(initial=True)
        self._thread = threading.Thread(target=self._writer, name="journal-writer", daemon=True)
        self._thread.start()
        return self.report

    async def close(self) -> None:
        """Write out everything queued, then stop the writer and close the file."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        """Blocking close, for exit paths that have no loop (SIGHUP handlers, atexit)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
            self._thread = None
        for fd in (self._wfd, self._rfd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wfd = self._rfd = -1

    # -- recovery ----------------------------------------------------------------------------

    def _repair_tail(self) -> None:
        size = os.fstat(self._wfd).st_size
        if size == 0 or os.pread(self._rfd, 1, size - 1) == b"\n":
            return
        # Find the last newline; everything after it is a torn record.
        pos, chunk = size, 65536
        last_nl = -1
        while pos > 0 and last_nl < 0:
            start = max(0, pos - chunk)
            buf = os.pread(self._rfd, pos - start, start)
            i = buf.rfind(b"\n")
            if i >= 0:
                last_nl = start + i
            pos = start
        cut = last_nl + 1
        tail = os.pread(self._rfd, size - cut, cut)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
        aside = self.path.with_name(f"{self.path.name}.torn-{stamp}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, tail)
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)
        os.ftruncate(self._wfd, cut)
        os.fsync(self._wfd)
        self.report.torn_path = aside
        self.report.torn_bytes = len(tail)

    def _quarantine(self, offset: int, line: bytes) -> None:
        self.report.quarantined.append(offset)
        qpath = self.path.with_name(self.path.name + ".quarantine")
        self.report.quarantine_path = qpath
        try:
            known = set()
            if qpath.exists():
                for raw in qpath.read_bytes().splitlines():
                    with contextlib.suppress(Exception):
                        known.add(orjson.loads(raw)["offset"])
            if offset in known:
                return
            rec = encode({"offset": offset, "line": line})
            fd = os.open(qpath, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, rec)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass  # reported in memory all the same

    # -- reading -----------------------------------------------------------------------------

    def _same_file(self, fd: int) -> bool:
        """Whether `path` still names the file `fd` is open on; False once `replace` (here
        or in another process) renamed a new file over it. A removed path is not a new
        file: what is open is kept."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        fst = os.fstat(fd)
        return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)

    def _read_new(self, *, initial: bool = False) -> list[dict[str, Any]]:
        with self._read_lock:
            if self._rfd < 0:
                return []
            new: list[dict[str, Any]] = []
            before: Set[str] = frozenset()
            while True:
                # Asked before reading: once the path names a new file, nothing more is
                # appended to the old one (writers check under the lock `replace` held).
                replaced = not self._same_file(self._rfd)
                self._read_rest(new, before)
                if not replaced:
                    break
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                os.close(self._rfd)
                self._rfd, self._read_off = fd, 0
                # the ids of the old file only drop repeats while the new one is first read
                # (an entry `replace` kept), so the set does not grow with every file
                before, self._ids = self._ids, set()
            self.report.last_good_offset = self._read_off
            self.report.records = len(self.entries)
        if new and not initial:
            for cb in list(self._listeners):
                with contextlib.suppress(Exception):
                    cb(new)
        return new

    def _read_rest(self, new: list[dict[str, Any]], before: Set[str]) -> None:
        """Decode what was appended to the open file since the last read into `new`."""
        size = os.fstat(self._rfd).st_size
        if size <= self._read_off:
            return
        off = self._read_off
        while off < size:
            buf = os.pread(self._rfd, min(size - off, 1 << 22), off)
            if not buf:
                break
            end = buf.rfind(b"\n")
            if end < 0:
                if len(buf) >= (1 << 22):  # an absurd line: skip it as undecodable
                    nl = -1
                    scan = off + len(buf)
                    while nl < 0 and scan < size:
                        more = os.pread(self._rfd, 1 << 20, scan)
                        if not more:
                            break
                        j = more.find(b"\n")
                        nl = scan + j if j >= 0 else -1
                        scan += len(more)
                    if nl < 0:
                        break
                    self._quarantine(off, buf[:4096])
                    off = nl + 1
                    continue
                break  # an incomplete line, still being written: read it next time
            line_start = off
            for line in buf[: end + 1].split(b"\n")[:-1]:
                self._take(line, line_start, new, before)
                line_start += len(line) + 1
            off += end + 1
        self._read_off = off

    def _take(self, line: bytes, offset: int, new: list[dict[str, Any]],
              before: Set[str] = frozenset()) -> None:
        if not line.strip():
            return
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            self._quarantine(offset, line)
            return
        rid = obj.get("id")
        if isinstance(rid, str):
            if rid in self._ids or rid in before:
                self._ids.add(rid)
                return  # written again after an ambiguous failure, or kept by `replace`
            self._ids.add(rid)
        self.entries.append(obj)
        new.append(obj)

    def poll(self) -> list[dict[str, Any]]:
        """Entries appended (by anyone) since the last read, in file order."""
        try:
            return self._read_new()
        except OSError:
            return []

    def subscribe(self, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        """`callback(new_entries)` after each read that found entries (any writer's)."""
        self._listeners.append(callback)

    def on_state(self, callback: Callable[[str | None], None]) -> None:
        """`callback(reason or None)` from the writer thread when degraded starts or ends."""
        self._state_listeners.append(callback)

    async def follow(self, interval: float = 0.25) -> None:
        """Poll the file size until cancelled, so other consoles' entries arrive quickly."""
        while True:
            await asyncio.sleep(interval)
            self.poll()

    @property
    def pending(self) -> int:
        """Entries kept in memory, not yet on disk."""
        return len(self._pending)

    def pending_entries(self) -> list[dict[str, Any]]:
        return [it.entry for it in list(self._pending)]

    # -- appending ---------------------------------------------------------------------------

    def make_entry(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The complete, sanitised entry: ``id``, ``ts``, ``actor``, ``type``, ``incident``."""
        self._n += 1
        base: dict[str, Any] = {
            "id": f"{self._boot}-{self._n}",
            "ts": self.clock(),
            "actor": self.actor,
            "type": "note",
            "incident": None,
        }
        clean = sanitize(dict(entry) if isinstance(entry, Mapping) else {"value": entry})
        if not isinstance(clean, dict):
            clean = {"value": clean}
        for k in ("id",):
            clean.pop(k, None)
        base.update(clean)
        if not isinstance(base.get("type"), str):
            base["type"] = str(base["type"])
        if not isinstance(base.get("ts"), int | float):
            base["ts"] = self.clock()
        return base

    def _submit(self, entry: Mapping[str, Any], fut: asyncio.Future[Record] | None,
                loop: asyncio.AbstractEventLoop | None) -> _Item:
        if self._thread is None:
            raise RuntimeError("journal is not open")
        full = self.make_entry(entry)
        item = _Item(encode(full), full, full["id"], fut, loop)
        return item

    async def append(self, entry: Mapping[str, Any]) -> Record:
        """Append `entry`; resolves once it is fsync'd (``durable``) or kept in memory because
        the disk failed (``durable=False``, see `degraded`). Never raises for I/O errors."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Record] = loop.create_future()
        item = self._submit(entry, fut, loop)
        self._queue.put(item)
        rec = await asyncio.shield(fut)
        self.poll()
        return rec

    def append_sync(self, entry: Mapping[str, Any], timeout: float = 10.0) -> Record:
        """Blocking append, for code with no loop (scripts, exit paths)."""
        item = self._submit(entry, None, None)
        item.event = threading.Event()
        self._queue.put(item)
        item.event.wait(timeout)
        self.poll()
        if item.record is None:
            return Record(item.rid, item.entry, None, False)
        return item.record

    async def retry(self) -> bool:
        """Try the entries kept in memory again now; True when nothing is left pending."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Record] = loop.create_future()
        marker = _Item(b"", {}, "", done, loop)
        self._queue.put((_KICK, marker))
        await done
        self.poll()
        return not self._pending

    # -- the writer thread -------------------------------------------------------------------

    def _resolve(self, item: _Item, record: Record) -> None:
        item.record = record
        if item.event is not None:
            item.event.set()
        if item.fut is not None and item.loop is not None:
            fut = item.fut

            def _set() -> None:
                if not fut.done():
                    fut.set_result(record)

            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
                item.loop.call_soon_threadsafe(_set)

    def _set_degraded(self, reason: str | None) -> None:
        if reason == self.degraded:
            return
        self.degraded = reason
        for cb in list(self._state_listeners):
            with contextlib.suppress(Exception):
                cb(reason)

    def _writer(self) -> None:
        stop = False
        while not stop:
            try:
                stop = self._writer_step()
            except Exception as exc:  # never let the writer die: report and go on
                self._set_degraded(f"journal writer error: {exc!r}")
                time.sleep(0.05)

    def _writer_step(self) -> bool:
        stop = False
        batch: list[_Item] = []
        markers: list[_Item] = []
        try:
            first = self._queue.get(timeout=_RETRY_S if self._pending else None)
        except queue.Empty:
            first = _KICK
        for obj in self._drain(first):
            if obj is _STOP:
                stop = True
            elif obj is _KICK:
                pass
            elif isinstance(obj, tuple):
                markers.append(obj[1])
            else:
                batch.append(obj)
        todo = list(self._pending) + batch
        self._pending.clear()
        if todo:
            self._write_batch(todo)
        for m in markers:
            self._resolve(m, Record("", {}, None, not self._pending))
        return stop

    def _drain(self, first: Any) -> list[Any]:
        out = [first]
        while len(out) < _BATCH:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out

    def _lock_current(self) -> None:
        """Hold the flock of the file `path` names now: when `replace` (here or in another
        process) renamed a new file over the one held, that one is opened instead, so no
        entry is appended to a file nobody will read again. Call with `_write_lock` held."""
        for _ in range(8):
            fcntl.flock(self._wfd, fcntl.LOCK_EX)
            if self._same_file(self._wfd):
                return
            fd = os.open(self.path, _WRITE_FLAGS | os.O_CREAT, 0o600)
            with contextlib.suppress(OSError):
                fcntl.flock(self._wfd, fcntl.LOCK_UN)
            os.close(self._wfd)
            self._wfd = fd
        fcntl.flock(self._wfd, fcntl.LOCK_EX)  # replaced eight times while we waited

    def _write_batch(self, items: list[_Item]) -> None:
        with self._write_lock:
            self._write_locked(items)

    def _write_locked(self, items: list[_Item]) -> None:
        written: list[tuple[_Item, int]] = []  # always a prefix of items
        error: OSError | None = None
        try:
            self._lock_current()
        except OSError as exc:
            error = exc
        else:
            try:
                size = os.fstat(self._wfd).st_size
                if size and os.pread(self._wfd, 1, size - 1) != b"\n":
                    # a record cut short earlier (ours or another console's): start a new line
                    self._write_all(b"\n", size)
                    size += 1
                for item in items:
                    self._write_all(item.data, size)
                    written.append((item, size))
                    size += len(item.data)
            except OSError as exc:
                error = exc
            except Exception as exc:  # never lose the batch to a surprise
                error = OSError(errno.EIO, f"journal write failed: {exc!r}")
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(self._wfd, fcntl.LOCK_UN)
        synced = True
        if written:
            try:
                os.fsync(self._wfd)
            except OSError as exc:
                # After a failed fsync the pages may be gone (fsyncgate): keep them all and
                # write them again; readers drop the repeats by id.
                error, synced = exc, False
        # The state first, then the appends' results: whoever sees a record not durable must
        # already see why (and a durable one, that the trouble is over). The batch held
        # every pending entry, so no error means nothing is left pending.
        self._set_degraded(None if error is None else _reason(error))
        for item, off in written:
            if synced:
                self._resolve(item, Record(item.rid, item.entry, off, True))
            else:
                self._keep(item)
        for item in items[len(written):]:
            self._keep(item)

    def replace(self, build: Callable[[list[dict[str, Any]]], Iterable[Mapping[str, Any]]],
                *, notify: bool = True) -> int:
        """Rewrite the file as the entries `build` returns; the new file's size in bytes.

        For a file that would otherwise grow with every entry ever appended: a spool read by
        folding (the heartbeat pings: the entries that rebuild the fold replace it), or a
        log that forgets what is past its retention (the events). With the writers' lock
        held, everything appended until then is read and handed to `build` (so the caller
        folds it, or delivers it, before it builds), then a new file (0600, fsync'd) is
        renamed over the old one. An entry `build` returns with its `id` is kept as it is
        (readers that had it do not see it again); one without becomes a new entry.
        Writers elsewhere find the new file once they hold the lock, readers once they
        finished the old one (see `_read_new`); `entries` becomes the new file's. With
        `notify=False` the subscribers are not called for what was read here (this runs in
        a thread: the caller delivers it on its own). Blocking: call in a thread. OSError
        when the disk refuses; the old file is then kept as it was.
        """
        with self._write_lock:
            self._lock_current()
            old = self._wfd
            try:
                new = self._read_new(initial=not notify)
                full = [dict(e) if isinstance(e.get("id"), str) else self.make_entry(e)
                        for e in build(new)]
                data = b"".join(encode(e) for e in full)
                tmp = self.path.with_name(f"{self.path.name}.new-{os.getpid()}")
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                                 0o600)
                    try:
                        self._write_whole(fd, data)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.replace(tmp, self.path)
                except OSError:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                    raise
                fsync_dir(self.path.parent)
                wfd = os.open(self.path, _WRITE_FLAGS)
                rfd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(old, fcntl.LOCK_UN)
            os.close(old)
            self._wfd = wfd
            with self._read_lock:
                os.close(self._rfd)
                self._rfd, self._read_off = rfd, len(data)
                self._ids = {e["id"] for e in full}
                self.entries = full
                self.report.last_good_offset = len(data)
                self.report.records = len(full)
            return len(data)

    @staticmethod
    def _write_whole(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.EIO, "short write")
            view = view[n:]

    def _keep(self, item: _Item) -> None:
        self._pending.append(item)
        self._resolve(item, Record(item.rid, item.entry, None, False))

    def _write_all(self, data: bytes, start: int) -> None:
        """Write `data` at the end; on failure cut the file back to `start` (lock held)."""
        done = 0
        try:
            while done < len(data):
                n = os.write(self._wfd, data[done:])
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                done += n
        except OSError:
            if done:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._wfd, start)
            raise
