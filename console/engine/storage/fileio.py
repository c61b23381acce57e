"""Durable file writes the engine shares: a whole file replaced atomically, bytes appended
and synced, a rename made to survive a power cut."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

__all__ = ["append_durably", "atomic_write", "fsync_dir"]

_seq = itertools.count()  # next() on a count is atomic under the GIL: safe from threads


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a name just created or renamed in it is on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data`, or leave it as it was: a temp file unique to this writer
    (pid and a counter, so two processes or threads never share one), fsync, rename, and an
    fsync of the directory. Raises OSError; the temp file never stays behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_seq)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def append_durably(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Append `data` to `path` (created `mode`) and fsync it before returning; the caller
    fsyncs the directory when the file is new. Raises OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (a write may take only part of a large buffer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
