"""atomic_write: the whole new content or the old one, never a half file or a stray temp."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from console.engine.storage.fileio import atomic_write


def test_replaces_the_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    atomic_write(path, b'{"a": 1}')
    atomic_write(path, b'{"a": 2}')
    assert path.read_bytes() == b'{"a": 2}'
    assert os.listdir(path.parent) == ["state.json"]
    assert path.stat().st_mode & 0o777 == 0o600  # alert state can name people and hosts


def test_concurrent_writers_never_share_a_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    bodies = [bytes([65 + i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(path, b)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_bytes() in bodies  # one writer's whole content, not a mix
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    atomic_write(path, b"old")
    with pytest.raises(TypeError):
        atomic_write(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]
