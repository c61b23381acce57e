"""Follow a JSON-lines log file like `tail -F`: from the end, across rotation and truncation.

`LogFollower.read()` returns the complete lines appended since the last call, never more
than `max_bytes` of them per call (a 1 GB backlog is worked off over several checks instead
of being loaded at once), and notices:

- rotation (the path now names another inode): the rest of the old file is read first, then
  the new file is followed from its start;
- truncation (the file shrank below our offset): reading restarts at 0;
- the file going missing or unreadable: `LogUnavailable` with a clear message, and the
  next successful open follows the (new) file from its start.

`parse_line()` turns one line into a `LogLine` (winston's `level`, `message`, `timestamp`,
plus any fields); a line that is not a JSON object is kept as raw text and flagged, never
fatal. All file I/O here is blocking: callers run `read()` off the event loop.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import orjson

__all__ = [
    "LogFollower",
    "LogLine",
    "LogUnavailable",
    "ReadResult",
    "level_of",
    "parse_line",
    "parse_timestamp",
]

MAX_LINE = 64 * 1024  # a longer line is cut here (and so counts as not JSON)
RAW_KEPT = 8 * 1024  # characters of raw text kept per line for display
ERROR_LEVELS = frozenset({"error", "err", "fatal", "crit", "critical", "alert", "emerg",
                          "emergency", "panic"})
WARN_LEVELS = frozenset({"warn", "warning"})
# pino/bunyan numeric levels
_NUMERIC_LEVELS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}


class LogUnavailable(OSError):  # noqa: N818 - reads as a state, like FileNotFoundError
    """The log file is missing or cannot be read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a log: the parsed record's common fields plus its (bounded) raw text.

    `record` is None for a line that is not a JSON object. Text is NOT sanitised here:
    it came from a file, so every consumer sanitises it at render time.
    """

    raw: str
    record: dict[str, Any] | None
    level: str = ""
    message: str = ""
    ts: float | None = None  # epoch seconds from the record's timestamp, if any
    response_time: float | None = None

    @property
    def is_json(self) -> bool:
        return self.record is not None

    def field(self, name: str) -> Any:
        """A field by name, dotted names reaching into nested objects (`meta.userId`)."""
        rec = self.record
        if rec is None:
            return None
        if name in rec:
            return rec[name]
        cur: Any = rec
        for part in name.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return cur


@dataclass(slots=True)
class ReadResult:
    """What one `read()` found: complete lines and the events met on the way."""

    lines: list[bytes] = field(default_factory=list)
    bytes_read: int = 0
    rotated: bool = False
    truncated: bool = False
    backlog: int = 0  # bytes known to be waiting after this read (max_bytes was reached)


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string (winston) or an epoch number in s or ms."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        v = float(value)
        if not math.isfinite(v):
            return None
        return v / 1000.0 if v > 1e11 else v  # epoch ms (pino) vs epoch s
    if isinstance(value, str) and 10 <= len(value) <= 40:
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        if dt.tzinfo is None:  # winston writes UTC ("...Z"); a naive stamp is taken as UTC
            from datetime import UTC

            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None


def level_of(value: Any) -> str:
    """A record's level as lower-case text (`error`, `warn`…), numeric pino levels mapped."""
    if isinstance(value, str):
        return value.strip().lower()[:32]
    if isinstance(value, int) and not isinstance(value, bool):
        return _NUMERIC_LEVELS.get(value, str(value))
    return ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # "1234ms" or "1234"
        s = value.strip().removesuffix("ms").strip()
        try:
            return float(s)
        except ValueError:
            return None
    return None


def parse_line(raw: bytes | str) -> LogLine:
    """One log line as a LogLine; never raises."""
    if isinstance(raw, str):
        data = raw.encode("utf-8", errors="replace")
        text = raw
    else:
        data = raw
        text = raw[: RAW_KEPT * 4].decode("utf-8", errors="replace")
    text = text.rstrip("\r\n")
    if len(text) > RAW_KEPT:
        text = text[:RAW_KEPT]
    try:
        rec = orjson.loads(data)
    except orjson.JSONDecodeError:
        return LogLine(raw=text, record=None)
    if not isinstance(rec, dict):
        return LogLine(raw=text, record=None)
    msg = rec.get("message", rec.get("msg", ""))
    rt = rec.get("responseTime")
    if rt is None:
        rt = rec.get("response_time", rec.get("duration_ms"))
    return LogLine(
        raw=text,
        record=rec,
        level=level_of(rec.get("level")),
        message=msg if isinstance(msg, str) else orjson.dumps(msg).decode(),
        ts=parse_timestamp(rec.get("timestamp", rec.get("time"))),
        response_time=_number(rt),
    )


def open_regular(path: str | os.PathLike[str]) -> IO[bytes]:
    """`path` opened for reading, if it is a regular file; else IsADirectoryError ("is not
    a regular file"). Opened non-blocking first: a plain open of a named pipe waits for a
    writer, and a walk's log target on a FIFO froze the console at "starting…" (q and
    Ctrl-C ignored) and `check --once` until killed. Raises OSError."""
    fd = os.open(os.path.expanduser(os.fspath(path)),
                 os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(21, "is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _describe(path: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"log file {path} does not exist"
    if isinstance(exc, PermissionError):
        return f"log file {path} is not readable (permission denied)"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is not a regular file"
    return f"cannot read log file {path}: {exc.strerror or exc}"


class LogFollower:
    """Follows one file path; see the module docstring. Not thread-safe: one reader."""

    def __init__(
        self, path: str | os.PathLike[str], *, from_end: bool = True,
        max_bytes: int = 8 * 1024 * 1024, chunk: int = 1024 * 1024,
    ) -> None:
        self.path = os.path.expanduser(os.fspath(path))
        self.max_bytes = max(1, max_bytes)
        self.chunk = max(1, min(chunk, self.max_bytes))
        self._from_end = from_end
        self._f: IO[bytes] | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._pos = 0
        self._partial = bytearray()
        self._discarding = False  # inside an over-long line: drop bytes until its newline

    @property
    def position(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
        self._f = None
        self._ident = None

    def _open(self) -> None:
        try:
            f = open_regular(self.path)  # kept open across reads on purpose
        except IsADirectoryError as exc:
            raise LogUnavailable(_describe(self.path, exc)) from exc
        except OSError as exc:
            self._from_end = False  # a file that appears later is new: read it whole
            raise LogUnavailable(_describe(self.path, exc)) from exc
        try:
            st = os.fstat(f.fileno())
        except OSError as exc:
            f.close()
            raise LogUnavailable(_describe(self.path, exc)) from exc
        self._f = f
        self._ident = (st.st_dev, st.st_ino)
        self._partial.clear()
        self._discarding = False
        if self._from_end:
            self._pos = st.st_size
            f.seek(self._pos)
            self._from_end = False
        else:
            self._pos = 0

    def read(self) -> ReadResult:
        """Complete lines appended since the last call (bounded by `max_bytes`).

        Raises LogUnavailable when the file cannot be opened and no old file is left to
        drain; the next call tries again.
        """
        out = ReadResult()
        if self._f is None:
            self._open()
        assert self._f is not None
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            st, current = None, None
        if current is not None and current == self._ident:
            assert st is not None
            if st.st_size < self._pos:  # truncated in place (copytruncate, `> file`)
                out.truncated = True
                self._restart_at_zero()
            self._drain(out, self.max_bytes)
            if st.st_size > self._pos:
                out.backlog = st.st_size - self._pos
            return out
        # Rotated (or removed): finish the old file first; switch only once it is drained.
        budget = self._drain(out, self.max_bytes)
        with contextlib.suppress(OSError):
            if os.fstat(self._f.fileno()).st_size > self._pos:
                out.backlog = os.fstat(self._f.fileno()).st_size - self._pos
                return out
        self._flush_partial(out)
        self.close()
        out.rotated = True
        try:
            self._open()
        except LogUnavailable:
            if out.lines:
                return out  # deliver the old file's tail; the error shows on the next read
            raise
        if budget > 0:
            self._drain(out, budget)
        return out

    def _restart_at_zero(self) -> None:
        assert self._f is not None
        self._f.seek(0)
        self._pos = 0
        self._partial.clear()
        self._discarding = False

    def _drain(self, out: ReadResult, budget: int) -> int:
        """Read up to `budget` bytes into complete lines; returns the unused budget."""
        f = self._f
        assert f is not None
        while budget > 0:
            data = f.read(min(self.chunk, budget))
            if not data:
                break
            n = len(data)
            budget -= n
            self._pos += n
            out.bytes_read += n
            self._split(data, out)
        return budget

    def _split(self, data: bytes, out: ReadResult) -> None:
        start = 0
        partial = self._partial
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                rest = data[start:]
                if self._discarding:
                    return
                room = MAX_LINE - len(partial)
                if len(rest) > room:  # an over-long line: keep its head, drop the rest
                    partial += rest[:room]
                    out.lines.append(bytes(partial))
                    partial.clear()
                    self._discarding = True
                else:
                    partial += rest
                return
            piece = data[start:nl]
            if self._discarding:
                self._discarding = False
            elif partial:
                partial += piece[: max(0, MAX_LINE - len(partial))]
                out.lines.append(bytes(partial))
                partial.clear()
            else:
                out.lines.append(piece[:MAX_LINE])
            start = nl + 1

    def _flush_partial(self, out: ReadResult) -> None:
        """A rotated file's last line may lack its newline: it is complete all the same."""
        if self._partial and not self._discarding:
            out.lines.append(bytes(self._partial))
        self._partial.clear()
        self._discarding = False
