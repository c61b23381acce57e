"""The journal: round trip, hostile input, torn tails, kill -9, two writers, a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.engine.storage.journal import Journal, current_actor, encode, sanitize

HOSTILE = "[b]bold[/b] \x1b[2J\x1b]52;c;ZXZpbA==\x07 \u202e rtl ✓ \ud800 end"


async def _open(path: Path, **kw: Any) -> Journal:
    j = Journal(path, **kw)
    await asyncio.to_thread(j.open)
    return j


# -- round trip and encoding ---------------------------------------------------------------


async def test_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "journal.jsonl"
    j = await _open(path, clock=lambda: 1000.0, actor="alice@bastion")
    rec = await j.append({"type": "open", "incident": "inc-1", "title": "API 5xx",
                          "severity": "P0", "alerts": ["high_error_rate"]})
    assert rec.durable
    assert rec.offset == 0
    assert rec.entry["ts"] == 1000.0
    assert rec.entry["actor"] == "alice@bastion"
    recs = await asyncio.gather(*(j.append({"type": "note", "incident": "inc-1", "n": i})
                                  for i in range(50)))
    assert all(r.durable for r in recs)
    assert len(j.entries) == 51
    await j.close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    j2 = await _open(path)
    try:
        assert j2.report.clean
        assert j2.report.records == 51
        assert j2.entries[0]["title"] == "API 5xx"
        assert j2.entries[0]["alerts"] == [
            "high_error_rate"]
        assert [e["n"] for e in j2.entries[1:]] == list(range(50))
        assert len({e["id"] for e in j2.entries}) == 51
    finally:
        await j2.close()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert all(orjson.loads(x) for x in lines[:-1])


async def test_hostile_input_never_raises(tmp_path: Path) -> None:
    class Evil:
        def __repr__(self) -> str:
            raise RuntimeError("no repr for you")

    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    j = await _open(tmp_path / "j.jsonl")
    try:
        rec = await j.append({
            "type": "note", "incident": "x",
            "bytes": b"\xff\xfe raw \x00", "surrogate": "a\udc80b", "huge": 2**100,
            "neg_huge": -(2**80), "nan": math.nan, "inf": math.inf, "ninf": -math.inf,
            "markup": HOSTILE, 3: "int key", (1, 2): "tuple key", None: "none key",
            "evil": Evil(), "cycle": cyclic, "set": {3, 1, 2}, "deep": [[[[[[["x"]]]]]]],
            "dsn": "postgresql://app:s3cr3t-pw@db:5432/app",
        })
        assert rec.durable
        j2 = await _open(tmp_path / "j.jsonl")
        e = j2.entries[-1]
        await j2.close()
        assert e["bytes"] == "\\xff\\xfe raw \x00"
        assert e["surrogate"] == "a\\udc80b"
        assert e["huge"] == str(2**100)
        assert e["neg_huge"] == str(-(2**80))
        assert (e["nan"], e["inf"], e["ninf"]) == ("NaN", "Infinity", "-Infinity")
        assert e["markup"] == HOSTILE.replace("\ud800", "\\ud800")
        assert e["3"] == "int key"
        assert e["(1, 2)"] == "tuple key"
        assert e["None"] == "none key"
        assert e["evil"] == "<unrepresentable Evil>"
        assert e["cycle"] == [1, "<cycle>"]
        assert e["set"] == [1, 2, 3]
        assert "s3cr3t-pw" not in (tmp_path / "j.jsonl").read_text(errors="replace")
        assert e["dsn"] == "postgresql://app:***@db:5432/app"
    finally:
        await j.close()


_keys = st.one_of(st.text(st.characters(codec=None, exclude_categories=())), st.integers(),
                  st.floats(), st.booleans(), st.none(), st.binary(max_size=8).map(bytes))
_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=40),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
    st.builds(object), st.complex_numbers(allow_nan=True),
)
_values = st.recursive(
    _leaf,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.tuples(children, children),
                               st.dictionaries(_keys, children, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_encoder_never_raises_property(value: Any) -> None:
    line = encode({"type": "note", "payload": value})
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    back = orjson.loads(line)
    assert back["type"] == "note"
    # sanitising is idempotent: what was written reads back as itself
    assert sanitize(back) == back


def test_actor_from_ssh_session() -> None:
    env = {"USER": "alice", "SSH_CONNECTION": "10.0.0.5 51000 10.0.0.1 22"}
    actor = current_actor(env)
    assert actor.startswith("alice@")
    assert actor.endswith("(ssh from 10.0.0.5)")
    assert "@" in current_actor({})


# -- recovery -------------------------------------------------------------------------------


async def test_torn_tail_set_aside_never_taken_with_earlier(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = await _open(path)
    for i in range(3):
        await j.append({"type": "note", "n": i})
    await j.close()
    torn = b'{"id":"zz","type":"note","text":"half a rec'
    with path.open("ab") as f:
        f.write(torn)
    j2 = await _open(path)
    try:
        rep = j2.report
        assert rep.torn_path is not None
        assert rep.torn_path.read_bytes() == torn
        assert rep.torn_bytes == len(torn)
        assert "torn" in rep.describe()
        assert rep.torn_path.name.startswith("j.jsonl.torn-")
        assert [e["n"] for e in j2.entries] == [0, 1, 2]
        assert path.read_bytes().endswith(b"\n")
        await j2.append({"type": "note", "n": 3})
    finally:
        await j2.close()
    j3 = await _open(path)
    await j3.close()
    assert j3.report.clean
    assert [e["n"] for e in j3.entries] == [0, 1, 2, 3]


async def test_file_that_is_only_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"type":"op')
    j = await _open(path)
    await j.close()
    assert j.report.torn_bytes == 11
    assert j.entries == []
    assert path.read_bytes() == b""


async def test_undecodable_lines_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = await _open(path)
    await j.append({"type": "note", "n": 0})
    await j.close()
    bad_offset = path.stat().st_size
    with path.open("ab") as f:
        f.write(b"\x00\x00garbage{{\n[1,2]\n")
    j = await _open(path)
    await j.append({"type": "note", "n": 1})
    await j.close()
    assert j.report.quarantined == [bad_offset, bad_offset + 12]
    q = j.report.quarantine_path
    assert q is not None
    assert len(q.read_bytes().splitlines()) == 2
    j2 = await _open(path)
    await j2.close()
    assert [e["n"] for e in j2.entries] == [0, 1]
    assert len(q.read_bytes().splitlines()) == 2  # not copied again on every open


# -- kill -9 during heavy appends -----------------------------------------------------------


def _child_appender(path: Path, wfd: int, tag: str) -> None:
    """Runs in a forked child: append as fast as possible, report each acknowledged seq."""
    code = 0
    try:
        async def main() -> None:
            j = Journal(path)
            j.open()
            seq = 0

            async def one(s: int) -> None:
                rec = await j.append({"type": "load", "incident": tag, "seq": s,
                                      "text": HOSTILE, "pad": "x" * (s % 300)})
                if rec.durable:
                    os.write(wfd, f"{s}\n".encode())

            while True:
                await asyncio.gather(*(one(seq + k) for k in range(32)))
                seq += 32

        asyncio.run(main())
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _fork_appender(path: Path, tag: str) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        _child_appender(path, w, tag)
    os.close(w)
    return pid, r


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


@pytest.mark.timeout(90)
@pytest.mark.slow  # kill -9 rounds: make test-slow (and CI)
def test_kill_9_loses_no_acknowledged_record(tmp_path: Path) -> None:
    rng = random.Random(6)
    expected_text = sanitize(HOSTILE)
    iterations, acked_total, t0 = 200, 0, time.monotonic()
    for it in range(iterations):
        path = tmp_path / f"j{it // 10}.jsonl"  # ten kills per file: reopen after a kill too
        tag = f"it{it}"
        pid, r = _fork_appender(path, tag)
        # The kill lands while the child appends: after its first acknowledgement (how long
        # a fork and an open take depends on the machine: a fixed sleep from the fork once
        # left most windows before the first append, 938 acks in 200 rounds), then a
        # random 0-60 ms into the stream.
        first = os.read(r, 65536)
        time.sleep(rng.uniform(0.0, 0.06))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        acked = [int(x) for x in (first + _read_all(r)).split()]
        acked_total += len(acked)
        j = Journal(path)
        j.open()
        j.close_sync()
        assert not j.report.quarantined, f"iteration {it}: garbled lines {j.report}"
        mine = {e["seq"]: e for e in j.entries if e.get("incident") == tag}
        missing = [s for s in acked if s not in mine]
        assert not missing, f"iteration {it}: acknowledged seqs lost: {missing[:10]}"
        for s in acked:
            e = mine[s]
            assert e["text"] == expected_text
            assert e["pad"] == "x" * (s % 300)
        assert time.monotonic() - t0 < 60, "kill -9 loop too slow"
    assert acked_total > 1000, f"children acknowledged only {acked_total} records in total"


# -- two consoles on one journal ------------------------------------------------------------


def _child_writer(path: Path, tag: str, n: int) -> None:
    code = 0
    try:
        async def main() -> None:
            j = Journal(path)
            j.open()
            for base in range(0, n, 50):
                recs = await asyncio.gather(*(
                    j.append({"type": "load", "incident": tag, "seq": s, "sent": time.time(),
                              "big": ("y" * 60_000) if s % 97 == 0 else ""})
                    for s in range(base, min(n, base + 50))))
                assert all(r.durable for r in recs)
            await j.close()

        asyncio.run(main())
    except BaseException:
        code = 1
    finally:
        os._exit(code)


async def test_two_writer_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "shared.jsonl"
    watcher = await _open(path)
    seen_at: dict[tuple[str, int], float] = {}

    def on_new(entries: list[dict[str, Any]]) -> None:
        now = time.time()
        for e in entries:
            seen_at[(e["incident"], e["seq"])] = now - e["sent"]

    watcher.subscribe(on_new)
    follow = asyncio.create_task(watcher.follow(0.1))
    n = 1500
    pids = []
    for tag in ("A", "B"):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            _child_writer(path, tag, n)
        pids.append(pid)
    try:
        for pid in pids:
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - non-blocking
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0
                    break
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        await watcher.close()
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == 2 * n
    order: dict[str, list[int]] = {"A": [], "B": []}
    for line in lines:
        e = orjson.loads(line)  # raises on any interleaved/garbled record
        order[e["incident"]].append(e["seq"])
        if e["seq"] % 97 == 0:
            assert e["big"] == "y" * 60_000
    assert order["A"] == list(range(n))
    assert order["B"] == list(range(n))
    # the watching console saw every record of both
    assert len(seen_at) == 2 * n
    # The watcher polls every 0.25 s; the bound leaves room for a loaded CI machine (it
    # measured 1.56 s beside other runs): this checks that every record arrives while the
    # writers run, not how fast (a benchmark's job).
    assert max(seen_at.values()) < 5.0, max(seen_at.values())


async def test_each_console_sees_the_others_entries_quickly(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    a, b = await _open(path, actor="alice@bastion"), await _open(path, actor="bob@bastion")
    follow = asyncio.create_task(b.follow(0.1))
    try:
        t0 = time.monotonic()
        await a.append({"type": "acknowledge", "incident": "inc-9"})
        while not any(e.get("type") == "acknowledge" for e in b.entries):
            assert time.monotonic() - t0 < 1.0, "bob did not see alice's entry within 1 s"
            await asyncio.sleep(0.02)
        await b.append({"type": "note", "incident": "inc-9", "text": "on it"})
        assert a.poll()[-1]["actor"] == "bob@bastion"
        assert [e["type"] for e in a.entries] == [e["type"] for e in b.entries]
    finally:
        follow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow
        await a.close()
        await b.close()


# -- replacing the file (a spool kept small) -----------------------------------------------


async def test_replace_hands_writers_and_readers_over_to_the_new_file(tmp_path: Path) -> None:
    """Three journals on one file, as three processes hold it (each its own open file, so
    their flocks exclude one another): `a` replaces the file while `b` holds the old one.
    b's next append lands in the new file, b reads what is left of the old one and then the
    new one, a reader opened afterwards reads only the new file."""
    path = tmp_path / "spool.jsonl"
    a, b = await _open(path), await _open(path)
    try:
        for i in range(3):
            await b.append({"type": "ping", "n": i})
        a.poll()
        late = await _open(path)  # appends after a's last read: `build` must get it
        await late.append({"type": "ping", "n": 3})
        await late.close()
        handed: list[list[int]] = []

        def build(new: list[dict[str, Any]]) -> list[dict[str, Any]]:
            handed.append([e["n"] for e in new])
            return [{"type": "state", "upto": 3}]

        size = await asyncio.to_thread(a.replace, build)
        assert handed == [[3]]
        assert size == path.stat().st_size
        assert [e["type"] for e in a.entries] == ["state"]
        assert os.stat(path).st_mode & 0o777 == 0o600

        await b.append({"type": "ping", "n": 4})  # b's fd is on the old file
        lines = [orjson.loads(x) for x in path.read_bytes().splitlines()]
        assert [(e["type"], e.get("n")) for e in lines] == [("state", None), ("ping", 4)]
        assert [e.get("n") for e in a.poll()] == [4]
        # b read 0-2 as it appended them; then 3 (old file), then the new file
        assert [(e["type"], e.get("n")) for e in b.entries] == [
            ("ping", 0), ("ping", 1), ("ping", 2), ("ping", 3), ("state", None), ("ping", 4)]
        fresh = await _open(path)
        assert [(e["type"], e.get("n")) for e in fresh.entries] == [
            ("state", None), ("ping", 4)]
        await fresh.close()
        assert sorted(os.listdir(tmp_path)) == ["spool.jsonl"]  # no temp file left
    finally:
        await a.close()
        await b.close()


async def test_a_replace_the_disk_refuses_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    j = await _open(path)
    try:
        await j.append({"type": "ping", "n": 1})
        before = path.read_bytes()
        # the temp file's name taken by a directory: its open fails as a full disk's write
        (tmp_path / f"spool.jsonl.new-{os.getpid()}").mkdir()
        with pytest.raises(IsADirectoryError):
            await asyncio.to_thread(j.replace, lambda new: [{"type": "state"}])
        assert path.read_bytes() == before
        rec = await j.append({"type": "ping", "n": 2})  # the journal goes on
        assert rec.durable
        assert [e.get("n") for e in j.entries] == [1, 2]
    finally:
        await j.close()


# -- a full disk -----------------------------------------------------------------------------


async def test_full_disk_degrades_keeps_entries_and_recovers(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = await asyncio.to_thread(
        subprocess.run, ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True, text=True, timeout=10)
    assert mount.returncode == 0, f"cannot mount a small tmpfs: {mount.stderr}"
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 32 * 1024)
        path = disk / "journal.jsonl"
        j = await _open(path)
        states: list[str | None] = []
        j.on_state(states.append)
        recs = []
        for i in range(200):
            recs.append(await j.append({"type": "note", "incident": "inc-1", "n": i,
                                        "text": "z" * 900}))
            if j.degraded and len(recs) > 5 and not recs[-5].durable:
                break
        assert j.degraded is not None
        assert "ENOSPC" in j.degraded
        assert states
        assert states[0] == j.degraded
        assert not recs[-1].durable
        assert j.pending >= 5
        written = path.read_bytes()
        assert written.endswith(b"\n")  # the failed write was cut back, no half record
        on_disk = [orjson.loads(x)["n"] for x in written.split(b"\n")[:-1]]
        assert on_disk == list(range(len(on_disk)))
        assert len(on_disk) > 10
        assert [e["n"] for e in j.pending_entries()] == list(range(len(on_disk), len(recs)))
        # free space: the kept entries are written, in order, and the state clears
        filler.unlink()
        assert await j.retry()
        assert j.degraded is None
        assert j.pending == 0
        assert states[-1] is None
        await j.close()
        j2 = await _open(path)
        await j2.close()
        assert [e["n"] for e in j2.entries] == list(range(len(recs)))
        assert j2.report.clean
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(disk)],
                                capture_output=True, timeout=10)


async def test_any_write_error_degrades_and_nothing_is_lost(tmp_path: Path) -> None:
    """An I/O error other than a full disk (here EBADF: the fd went read-only) is a degraded
    state too: the append returns, the entry waits in memory, a retry writes it."""
    path = tmp_path / "j.jsonl"
    j = await _open(path)
    try:
        await j.append({"type": "note", "n": 0})
        good = j._wfd
        j._wfd = os.open(path, os.O_RDONLY)
        rec = await asyncio.wait_for(j.append({"type": "note", "n": 1}), 5)
        assert not rec.durable
        assert j.degraded is not None
        assert j.degraded.startswith("EBADF")
        assert j.pending == 1
        os.close(j._wfd)
        j._wfd = good
        assert await asyncio.wait_for(j.retry(), 5)
        assert j.degraded is None
        assert [e["n"] for e in j.entries] == [0, 1]
    finally:
        await j.close()
