"""One alert evaluator per data dir: the flock lease, with real processes and kill -9."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.engine.alerting.service import AlertService
from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths
from console.engine.scheduler import Scheduler
from console.engine.storage.lease import Lease, describe_owner
from tests.alerttools import HookSite, dead_api_config, webhook_config

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""\
    import subprocess, sys, time
    from console.engine.storage.lease import Lease
    lease = Lease(sys.argv[1], role="script")
    print("held" if lease.try_acquire() else "busy", flush=True)
    if len(sys.argv) > 2:  # a child that outlives us must not keep the lease
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        print(child.pid, flush=True)
    time.sleep(30)
    """)


def wait_for(cond: Any, limit: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"{what} not met within {limit}s"
        time.sleep(0.05)


def spawn_holder(path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(path), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)


def test_second_lease_in_one_process_waits_for_release(tmp_path: Path) -> None:
    path = tmp_path / "alerts.lease"
    a, b = Lease(path, role="tui"), Lease(path, role="headless")
    assert a.try_acquire()
    assert a.held
    assert not b.try_acquire()
    assert not b.held
    info = b.owner()
    assert info is not None
    assert info["pid"] == os.getpid()
    assert info["role"] == "tui"
    assert b.holder() == info  # the read-only probe sees the owner and takes nothing
    assert not b.try_acquire()
    a.release()
    assert b.holder() is None
    assert b.try_acquire()
    assert b.owner()["role"] == "headless"  # type: ignore[index]
    assert (path.stat().st_mode & 0o777) == 0o600
    b.release()
    assert describe_owner(None).startswith("alerts evaluated by another console")


def test_other_process_holds_then_dies_by_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "alerts.lease"
    proc = spawn_holder(path, "child")
    grandchild = 0
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        grandchild = int(proc.stdout.readline())
        mine = Lease(path, role="tui")
        assert not mine.try_acquire()
        info = mine.holder()
        assert info is not None
        assert info["pid"] == proc.pid
        assert info["role"] == "script"
        assert describe_owner(info).startswith(f"alerts evaluated by pid {proc.pid} on ")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # the kernel drops the lock with the process, though its child still runs
        os.kill(grandchild, 0)
        wait_for(mine.try_acquire, 5.0, "takeover after kill -9")
        assert mine.owner()["pid"] == os.getpid()  # type: ignore[index]
        late = spawn_holder(path)
        assert late.stdout is not None
        assert late.stdout.readline().strip() == "busy"
        late.kill()
        late.wait(timeout=10)
        mine.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if grandchild:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)


# -- two real `opsconsole run --headless` on one data dir -------------------------------------


@pytest.fixture
def site() -> Iterator[HookSite]:
    with HookSite() as s:
        yield s


@pytest.mark.slow  # kill -9 rounds: make test-slow (and CI)
def test_two_headless_runners_one_owner_follower_sees_state_takeover_after_kill_9(
        tmp_path: Path, site: HookSite) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(webhook_config(site.base))
    keys = site.sent_keys
    data = tmp_path / "data"
    env = {**os.environ, "OPSCONSOLE_DATA_DIR": str(data)}
    lease = Lease(data / "alerts.lease")
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> subprocess.Popen[bytes]:
        err = open(tmp_path / f"{name}.err", "wb")  # noqa: SIM115 - the child owns it
        p = subprocess.Popen([sys.executable, "-m", "console", "run", "--headless", "--config",
                              str(cfg)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=err)
        err.close()
        procs.append(p)
        return p

    try:
        a = start("a")
        wait_for(lambda: "api-down/api/firing/1" in keys(), what="A's firing notification")
        assert (lease.holder() or {}).get("pid") == a.pid
        b = start("b")
        wait_for(lambda: b"following: alerts evaluated by pid" in
                 (tmp_path / "b.err").read_bytes(), what="B following")
        assert f"pid {a.pid} on ".encode() in (tmp_path / "b.err").read_bytes()

        # A follower in this process (the TUI's code path) shows the owner's state, read-only.
        follower_view(cfg, data, a.pid)

        time.sleep(0.6)  # both run several rounds: still one firing notification
        assert keys().count("api-down/api/firing/1") == 1

        os.kill(a.pid, signal.SIGKILL)
        a.wait(timeout=10)
        wait_for(lambda: (lease.holder() or {}).get("pid") == b.pid, 10.0, "B takes over")
        site.up = True  # B, now the evaluator, resolves what A fired, exactly once
        wait_for(lambda: "api-down/api/resolved/1" in keys(), what="B's resolved notification")
        time.sleep(0.5)
        assert keys().count("api-down/api/firing/1") == 1
        assert keys().count("api-down/api/resolved/1") == 1

        hist = subprocess.run([sys.executable, "-m", "console", "alerts", "--history",
                               "--config", str(cfg), "--json"], cwd=ROOT, env=env,
                              capture_output=True, timeout=30)
        doc = json.loads(hist.stdout)
        assert doc["evaluator"]["pid"] == b.pid
        (ep,) = [e for e in doc["episodes"] if e["key"] == "api-down/api/1"]
        assert ep["ongoing"] is False
        assert ep["duration_s"] > 0
        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=15) == 0
        assert lease.holder() is None  # released on a clean stop
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


def follower_view(cfg: Path, data: Path, owner_pid: int) -> None:
    settings = load_config_text(cfg.read_text())

    async def look() -> None:
        svc = AlertService(Scheduler(settings), paths=DataPaths(data), tick=0.1)
        await svc.start()
        try:
            assert svc.following
            assert not svc.evaluating
            a = svc.alerts.get("api-down", "api")
            assert a is not None
            assert a.state.value == "firing"
            label = svc.owner_label()
            assert label is not None
            assert f"pid {owner_pid} on " in label
            assert "(headless)" in label
            assert svc.run() == []  # a follower evaluates nothing
            await asyncio.sleep(0.3)  # ticks reload the owner's saves
            assert svc.following
        finally:
            await svc.stop()
        assert svc.lease is not None
        assert not svc.lease.held

    asyncio.run(look())


async def until_true(cond: Any, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_follower_requests_are_applied_once_by_the_owner(tmp_path: Path) -> None:
    settings = load_config_text(dead_api_config())
    state = tmp_path / "alerts.json"
    owner = AlertService(Scheduler(settings), paths=DataPaths(state.parent), tick=0.05)
    await owner.start()
    follower = AlertService(Scheduler(settings), paths=DataPaths(state.parent), tick=0.05)
    await follower.start()
    owner2 = None
    try:
        assert owner.evaluating
        assert follower.following
        now = time.time()
        owner.engine.store.record("api:up", now, 0.0)
        owner.run(now)
        # a request for an episode that is over is dropped; the current one is applied
        await asyncio.to_thread(follower.request, "ack", rule="api-down", target="api",
                                incident=7, by="old")
        await asyncio.to_thread(follower.request, "ack", rule="api-down", target="api",
                                incident=1, by="bo", comment="on it")
        await asyncio.to_thread(follower.request, "silence", matchers=['target="api"'],
                                duration=600.0, by="bo", reason="failover")
        await asyncio.to_thread(follower.request, "reboot", by="mallory")
        await until_true(lambda: len(owner._applied) == 4)
        a = owner.alerts.get("api-down", "api")
        assert a is not None
        assert (a.state.value, a.acked_by, a.ack_comment) == ("acknowledged", "bo", "on it")
        assert [s.reason for s in owner.alerts.silences()] == ["failover"]
        await until_true(lambda: len(follower.alerts.silences()) == 1)  # the follower sees it
        follower_acked = follower.alerts.get("api-down", "api")
        assert follower_acked is not None
        assert follower_acked.acked_by == "bo"
        await follower.stop()
        await owner.stop()
        # A new owner finds the (recent) requests in the file but applies none again.
        owner2 = AlertService(Scheduler(settings), paths=DataPaths(state.parent), tick=0.05)
        await owner2.start()
        assert owner2.evaluating
        await asyncio.sleep(0.2)
        assert len(owner2.alerts.silences()) == 1
        assert sorted(owner2._applied) == sorted(owner._applied)
    finally:
        await owner.stop()
        await follower.stop()
        if owner2 is not None:
            await owner2.stop()
