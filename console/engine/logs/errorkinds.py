"""First-seen error kinds: Sentry's "new error type" for a log file, remembered across restarts.

An error line's kind is its message with the volatile parts replaced (quoted values, UUIDs,
hex ids, numbers), so "timeout after 3012 ms for order 'A-17'" and "timeout after 15 ms for
order 'B-2'" are one kind and a deploy that starts throwing a new message is another.

`ErrorKinds` keeps the fingerprints of the kinds seen (at most `capacity`, the least recently
seen evicted first), a counter of kinds ever first seen (monotonic across restarts, so
`increase(new_error_kinds_total, 5m)` never sees a reset), and the newest first-seen
messages. It is persisted as one small JSON file (written atomically) in the user data dir,
so a restart does not report every known error again. All I/O here is blocking: the log
probe calls it from its worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import OrderedDict, deque
from pathlib import Path

import orjson

from console.engine.storage.fileio import atomic_write
from console.engine.text.sanitize import one_line

log = logging.getLogger(__name__)

__all__ = ["CAPACITY", "ErrorKinds", "fingerprint", "normalise", "state_path"]

CAPACITY = 10_000  # kinds remembered per log target
RECENT = 5  # newest first-seen messages kept for display
FILE_FORMAT = "opsconsole-error-kinds"

_QUOTED = re.compile(r"(?<!\w)(?:\"[^\"\n]{0,500}\"|'[^'\n]{0,500}'|`[^`\n]{0,500}`)(?!\w)")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_HEX = re.compile(r"\b0x[0-9a-f]+\b|\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b|\b[0-9a-f]{16,}\b", re.I)
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_SPACE = re.compile(r"\s+")
MAX_KIND = 500  # characters of a normalised message that decide its kind


def normalise(message: str) -> str:
    """The message with its volatile parts as placeholders: `<q>`, `<uuid>`, `<hex>`, `<n>`."""
    text = _QUOTED.sub("<q>", message[: MAX_KIND * 4])
    text = _UUID.sub("<uuid>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACE.sub(" ", text).strip()[:MAX_KIND]


def fingerprint(message: str) -> str:
    """A short stable id of the message's kind (16 hex digits)."""
    return hashlib.blake2b(normalise(message).encode("utf-8", "replace"),
                           digest_size=8).hexdigest()


def state_path(directory: Path, target: str, log_path: str) -> Path:
    """One file per (target, log file): `<dir>/<target>-<hash of the path>.json`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target)[:64] or "log"
    where = os.path.abspath(os.path.expanduser(log_path))
    digest = hashlib.blake2b(where.encode("utf-8", "replace"), digest_size=6).hexdigest()
    return Path(directory) / f"{safe}-{digest}.json"


class ErrorKinds:
    """The kinds of error one log has shown; not thread-safe (the probe's lock guards it)."""

    def __init__(self, path: Path | None, capacity: int = CAPACITY) -> None:
        self.path = Path(path) if path is not None else None
        self.capacity = max(1, capacity)
        self.kinds: OrderedDict[str, None] = OrderedDict()  # least recently seen first
        self.total = 0  # kinds ever first seen (the counter the rule reads)
        self.recent: deque[str] = deque(maxlen=RECENT)  # newest first
        self.dirty = False

    def __len__(self) -> int:
        return len(self.kinds)

    def __contains__(self, message: str) -> bool:
        return fingerprint(message) in self.kinds

    def observe(self, message: str) -> bool:
        """Note one error line; True when its kind was never seen before (then counted)."""
        fp = fingerprint(message)
        if fp in self.kinds:
            self.kinds.move_to_end(fp)
            return False
        self._add(fp)
        self.total += 1
        self.recent.appendleft(one_line(message, 200))
        return True

    def remember(self, message: str) -> None:
        """Note a kind as known without counting it (seeding from a file's existing tail)."""
        fp = fingerprint(message)
        if fp in self.kinds:
            self.kinds.move_to_end(fp)
        else:
            self._add(fp)

    def _add(self, fp: str) -> None:
        self.kinds[fp] = None
        while len(self.kinds) > self.capacity:
            self.kinds.popitem(last=False)
        self.dirty = True

    def load(self) -> bool:
        """Read the saved state; False when there is none (or it is unreadable: start afresh)."""
        if self.path is None:
            return False
        try:
            data = orjson.loads(self.path.read_bytes())
            if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
                raise ValueError("not an error-kinds file")
            kinds = [k for k in data.get("kinds", []) if isinstance(k, str)]
            total = int(data.get("total", 0))
            recent = [one_line(m, 200) for m in data.get("recent", []) if isinstance(m, str)]
        except FileNotFoundError:
            return False
        except (OSError, ValueError, TypeError) as exc:
            log.warning("error kinds %s unreadable (%s); starting afresh", self.path, exc)
            return False
        self.kinds = OrderedDict.fromkeys(kinds[-self.capacity:])
        self.total = max(total, 0)
        self.recent = deque(recent[:RECENT], maxlen=RECENT)
        self.dirty = False
        return True

    def save(self) -> None:
        """Write the state atomically (temp file, fsync, rename); errors are logged, never
        raised: losing this file costs a few repeated "new" errors, not a failed check."""
        if self.path is None:
            return
        data = {"format": FILE_FORMAT, "version": 1, "total": self.total,
                "recent": list(self.recent), "kinds": list(self.kinds)}
        try:
            atomic_write(self.path, orjson.dumps(data))
            self.dirty = False
        except OSError as exc:
            log.warning("cannot save error kinds to %s: %s", self.path, exc)
