"""Who evaluates alerts: an flock-held lease file, so two consoles never both notify.

A TUI and `opsconsole run --headless` (or two TUIs) on one machine share one data dir. Only
the holder of the lease evaluates rules, writes ``alerts.json`` and the alert history, and
sends notifications; the others follow what it writes. The lock is ``fcntl.flock`` on an
``O_CLOEXEC`` descriptor, so the kernel releases it when the owner dies however it dies
(kill -9 included) and no child process (``$EDITOR``, a shell) can inherit and keep it. The
file also says who holds it (pid, host, role, since) for the followers' label; that text is
advisory, the lock is what counts.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any

import orjson

from console.engine.text.redact import describe_exception


def _host() -> str:
    try:
        return socket.gethostname() or "localhost"
    except OSError:
        return "localhost"


class Lease:
    """An exclusive, non-blocking lease on `path`; `try_acquire()` again to take over."""

    def __init__(self, path: Path | str, *, role: str = "console") -> None:
        self.path = Path(path)
        self.role = role
        self._fd = -1
        self.unlocked: str | None = None  # why we evaluate without a lock file, if we do

    @property
    def held(self) -> bool:
        return self._fd >= 0 or self.unlocked is not None

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True if we hold it now. Never blocks, never
        raises for the disk: where no lock file can be made (a read-only data disk
        without one), we evaluate, and `unlocked` says why."""
        if self.held:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            # A read-only (or full) data disk: the lock still works on a file opened for
            # reading, and with no file at all there is nobody to share the directory with.
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                self.unlocked = describe_exception(exc)
                return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._fd = fd
        info = orjson.dumps({"pid": os.getpid(), "host": _host(), "role": self.role,
                             "since": time.time()})
        with contextlib.suppress(OSError):  # the label is advisory; the lock is held anyway
            os.pwrite(fd, info, 0)
            os.ftruncate(fd, len(info))
            os.fsync(fd)
        return True

    def release(self) -> None:
        """Give the lease up (the kernel does it too if we die); the file stays for reuse."""
        self.unlocked = None
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lease now ({} if unknown), or None if nobody does; for read-only
        tools. A shared lock probe, dropped at once: it never makes us the owner."""
        if self._fd >= 0:
            return self.owner() or {}
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return self.owner() or {}
            raise
        finally:
            os.close(fd)  # closing drops the probe's lock too
        return None

    def __del__(self) -> None:  # a forgotten lease must not outlive its object
        with contextlib.suppress(Exception):
            self.release()

    def owner(self) -> dict[str, Any] | None:
        """Who the file says holds the lease (pid, host, role, since), or None if unknown.

        Only meaningful while `try_acquire()` fails: a dead owner's text stays behind until
        the next owner overwrites it.
        """
        try:
            data = orjson.loads(self.path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None


def describe_owner(info: dict[str, Any] | None) -> str:
    """``alerts evaluated by pid 123 on host (headless)`` for the followers' label."""
    if not info:
        return "alerts evaluated by another console (owner unknown)"
    role = f" ({info['role']})" if info.get("role") else ""
    return f"alerts evaluated by pid {info.get('pid', '?')} on {info.get('host', '?')}{role}"
