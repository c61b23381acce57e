"""Durable file writes the engine shares: a whole file replaced atomically, a rename made
to survive a power cut."""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir"]

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
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
