"""Host metrics of this machine: sane ranges, and rates that see load the test itself makes.

Nothing is mocked: the test burns CPU in a child process and pushes bytes through a
loopback socket between two checks, and the probe must see at least that much.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from console.engine.config.schema import HostTarget, Settings
from console.engine.model import Status
from console.engine.probes.host import FIRST_GAP, HostProbe
from console.engine.scheduler import Scheduler

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"cpu_pct", "memory_pct", "load1", "disk_used_pct", "net_rx_bytes_per_s",
           "net_tx_bytes_per_s", "disk_read_bytes_per_s", "disk_write_bytes_per_s"}


async def test_first_check_is_sane() -> None:
    probe = HostProbe(HostTarget(name="host"))
    r = await probe.check()
    assert r.status == Status.UP, r.error
    m = r.metrics
    assert set(m) >= METRICS
    for k in ("cpu_pct", "memory_pct", "disk_used_pct"):
        assert 0.0 <= m[k] <= 100.0, (k, m[k])
    assert m["memory_pct"] > 0.0  # this process alone uses memory
    assert m["disk_used_pct"] > 0.0
    assert m["load1"] >= 0.0
    for k in METRICS - {"cpu_pct", "memory_pct", "disk_used_pct", "load1"}:
        assert m[k] >= 0.0, (k, m[k])
    # the wait between a first check's two samples is not reading time: the latency is
    # what psutil took, far below that gap (it would have sat in the hour's p95)
    assert r.latency_ms is not None
    assert r.latency_ms < FIRST_GAP * 1000 / 2, r.latency_ms


def make_load(sent: int) -> int:
    """Busy one core for ~1 s in a child and push `sent` bytes through loopback."""
    burn = subprocess.Popen([sys.executable, "-c",
                             "import time\nt=time.time()+1.0\nwhile time.time()<t: pass"])
    srv = socket.create_server(("127.0.0.1", 0))
    got = [0]

    def sink() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(1 << 16):
                got[0] += len(chunk)

    th = threading.Thread(target=sink)
    th.start()
    with socket.create_connection(srv.getsockname()) as c:
        c.sendall(b"x" * sent)
    th.join(timeout=10)
    srv.close()
    burn.wait(timeout=10)
    return got[0]


async def test_rates_see_the_load_the_test_makes() -> None:
    probe = HostProbe(HostTarget(name="host"))
    await probe.check()  # baseline
    sent = 8 * 1024 * 1024
    assert await asyncio.to_thread(make_load, sent) == sent
    r = await probe.check()
    assert r.status == Status.UP
    dt = r.details["interval_s"]
    assert isinstance(dt, float)
    assert r.metrics["net_rx_bytes_per_s"] * dt >= sent * 0.95
    assert r.metrics["net_tx_bytes_per_s"] * dt >= sent * 0.95
    # one core busy for ~1 s of the interval, whatever else runs: at least a share of it
    ncpu = r.details["cpus"]
    assert isinstance(ncpu, int)
    assert r.metrics["cpu_pct"] >= 100.0 / ncpu * (0.5 / max(dt, 1.0))
    assert r.metrics["cpu_pct"] <= 100.0


async def test_host_target_in_engine_records_series() -> None:
    settings = Settings.model_validate({"targets": [{"name": "this-host", "kind": "host"}]})
    engine = Scheduler(settings)
    await engine.start(poll=False)
    try:
        [r] = await engine.check_once()
        assert r.status == Status.UP
        assert engine.store.latest("this-host:cpu_pct") is not None
        assert engine.store.latest("this-host:memory_pct") is not None
    finally:
        await engine.stop()


async def test_bad_disk_path_is_down_with_reason() -> None:
    probe = HostProbe(HostTarget(name="host", disk_path="/no/such/mount"))
    r = await probe.check()
    assert r.status == Status.DOWN
    assert "cannot read host metrics" in (r.error or "")


@pytest.mark.parametrize("rule", ["cpu-high", "memory-high"])
def test_playbook_rules_use_the_host_metric_names(rule: str) -> None:
    rules = tomllib.loads((ROOT / "console/data/rules/default.toml").read_text())["rules"]
    expr = next(r["expr"] for r in rules if r["name"] == rule)
    assert expr.split()[0] in METRICS
