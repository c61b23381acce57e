"""Events and heartbeats: a deploy recorded by the CLI reaches a running console (a P3
notice through the notifier, batched by a digest), `events --json`; jobs that check in by
`opsconsole ping`, late is down, run time from start to success."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from console.engine.config.loader import load_config_text
from console.engine.model import Status
from console.engine.paths import DataPaths
from console.engine.probes.heartbeat import make_ping, record_ping
from console.engine.runtime import Runtime
from console.engine.scheduler import Scheduler
from console.engine.signals.events import make_event, read_events, record_event
from tests.alerttools import Clock, HookSite

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, data_dir: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`opsconsole ARGS` as a separate process, as a deploy pipeline or a cron job runs it."""
    cmd = [sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture
async def started() -> AsyncIterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for rt in made:
        await rt.stop()


async def _next_events(rt: Runtime) -> asyncio.Future[list[dict[str, Any]]]:
    fut: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()

    def got(events: list[dict[str, Any]]) -> None:
        if not fut.done():
            fut.set_result(events)

    rt.on_events(got)
    return fut


# -- events -------------------------------------------------------------------------------------


async def test_a_deploy_from_the_cli_is_a_p3_notice_sent_by_the_running_console(
        tmp_path: Path, started: list[Runtime]) -> None:
    with HookSite(up=True) as site:
        settings = load_config_text(f'''
[[targets]]
name = "api"
kind = "http"
url = "{site.base}/health"
interval = "1s"

[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{site.base}/hook"
''')
        rt = Runtime(settings, DataPaths(tmp_path), incidents=False)
        started.append(rt)
        await rt.start()
        arrived = await _next_events(rt)
        done = await asyncio.to_thread(
            cli, "event", "Deployed v1.5.2 to production", "--kind", "deploy", "--service",
            "api", "--version", "v1.5.2", "--json", data_dir=tmp_path)
        assert done.returncode == 0, done.stderr
        recorded = orjson.loads(done.stdout)
        async with asyncio.timeout(20):
            events = await arrived
            assert events[0]["id"] == recorded["id"]
            assert rt.notifier is not None
            await rt.notifier.wait_for(lambda: any(
                h["key"] == f"event/{recorded['id']}" for h in site.hooks))
        hook = next(h for h in site.hooks if h["key"] == f"event/{recorded['id']}")
        assert hook["severity"] == "P3"
        assert "Deployed v1.5.2 to production" in orjson.dumps(hook).decode()
        assert [e["id"] for e in rt.deploys(recorded["ts"] - 1)] == [recorded["id"]]
        assert rt.deploys(recorded["ts"] - 1, services=["payments"]) == []


async def test_deploy_notices_wait_in_a_digest_like_other_p3s(
        tmp_path: Path, started: list[Runtime]) -> None:
    with HookSite(up=True) as site:
        settings = load_config_text(f'''
[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{site.base}/hook"
digest = "1h"
''')
        rt = Runtime(settings, DataPaths(tmp_path), incidents=False)
        started.append(rt)
        await rt.start()
        arrived = await _next_events(rt)
        await asyncio.to_thread(record_event, tmp_path / "events.jsonl",
                                make_event("Deployed v2", kind="deploy", service="api"))
        async with asyncio.timeout(20):
            await arrived
        assert rt.notifier is not None
        health = {h.name: h for h in rt.notifier.health()}
        assert health["hook"].collected == 1  # batched for the hour, not sent at once
        assert site.hooks == []


def test_events_since_json_lists_what_was_recorded(tmp_path: Path) -> None:
    for text, kind in (("Deployed v1", "deploy"), ("Feature flag checkout-v2 on", "config")):
        done = cli("event", text, "--kind", kind, "--service", "api", data_dir=tmp_path)
        assert done.returncode == 0, done.stderr
    out = cli("events", "--since", "24h", "--json", data_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = orjson.loads(out.stdout)
    assert [(r["kind"], r["text"]) for r in rows] == [
        ("deploy", "Deployed v1"), ("config", "Feature flag checkout-v2 on")]
    only = orjson.loads(cli("events", "--kind", "deploy", "--json", data_dir=tmp_path).stdout)
    assert [r["text"] for r in only] == ["Deployed v1"]
    text = cli("events", data_dir=tmp_path).stdout
    assert "deploy" in text
    assert "Deployed v1" in text


async def test_events_past_the_retention_leave_the_file_and_no_event_comes_twice(
        tmp_path: Path) -> None:
    """events.jsonl grew by a line per event forever, and every running console kept every
    event in memory. Past its size threshold the console that compacts drops the events
    older than the retention; another console following the file delivers no event twice
    (the kept ones keep their ids), a writer that had the old file open writes to the new
    one, and `opsconsole events` reads the same."""
    import time

    from console.engine.signals.events import EventLog

    path = tmp_path / "events.jsonl"
    now = time.time()
    a = EventLog(path, clock=time.time, keep_s=90 * 86400, compact_bytes=8 * 1024)
    b = EventLog(path, clock=time.time, keep_s=90 * 86400, compact_bytes=8 * 1024)
    delivered: list[str] = []
    await a.open()
    await b.open()
    b.on_event(lambda evs: delivered.extend(str(e["id"]) for e in evs))
    try:
        def write(n: int, at: float, what: str) -> list[str]:
            return [record_event(path, make_event(f"{what} {i}", kind="deploy",
                                                  service="api", at=at + i))["id"]
                    for i in range(n)]

        old = await asyncio.to_thread(write, 40, now - 100 * 86400, "old deploy")
        recent = await asyncio.to_thread(write, 40, now - 3600, "recent deploy")
        assert path.stat().st_size > 8 * 1024
        b.journal.poll()
        assert sorted(delivered) == sorted(old + recent)
        assert await a.compact()
        kept = [orjson.loads(x) for x in path.read_bytes().splitlines()]
        assert [e["id"] for e in kept] == recent  # in order, ids unchanged, nothing old
        assert [e["id"] for e in a.journal.entries] == recent
        # b had the old file open: its next event lands in the new one, and reading on
        # delivers only what is new
        after = await b.append(make_event("deploy after the compaction", kind="deploy"))
        late = await asyncio.to_thread(write, 3, now + 60, "later deploy")
        b.journal.poll()
        a.journal.poll()
        assert len(delivered) == len(set(delivered)), "an event delivered twice"
        assert set(late) <= set(delivered)
        assert [e["id"] for e in a.journal.entries] == [*recent, after["id"], *late]
        on_disk = read_events(path)
        assert [e["id"] for e in on_disk] == [*recent, after["id"], *late]
        assert not await a.compact()  # small again: not rewritten on every look
    finally:
        await a.close()
        await b.close()


def test_bad_event_input_is_refused_with_a_message(tmp_path: Path) -> None:
    done = cli("event", "x", "--kind", "Not a kind!", data_dir=tmp_path)
    assert done.returncode == 2
    assert "kind" in done.stderr
    done = cli("event", "\x1b[2J", data_dir=tmp_path)  # nothing left once made plain
    assert done.returncode == 2
    done = cli("event", "deploy", "--link", "javascript:alert(1)", data_dir=tmp_path)
    assert done.returncode == 2
    assert "link" in done.stderr
    assert read_events(tmp_path / "events.jsonl") == []


def test_an_event_text_is_kept_plain(tmp_path: Path) -> None:
    rec = record_event(tmp_path / "events.jsonl",
                       make_event("[bold red]Deployed[/] \x1b]52;c;aGk=\x07v3", kind="deploy"))
    assert "\x1b" not in rec["text"]
    assert "\x07" not in rec["text"]
    assert rec["text"].startswith("[bold red]Deployed[/]")  # shown as plain content, as is


# -- heartbeats ---------------------------------------------------------------------------------


async def test_heartbeat_late_is_down_never_no_data_and_a_run_is_timed(tmp_path: Path) -> None:
    clock = Clock()
    settings = load_config_text('''
[[targets]]
name = "backup"
kind = "heartbeat"
period = "1h"
grace = "5m"
max_runtime = "30m"
''')
    spool = tmp_path / "pings.jsonl"
    sch = Scheduler(settings, clock=clock, pings=spool)
    await sch.start(poll=False)
    try:
        state = sch._states["backup"]
        assert (await sch.check_target(state)).status == Status.UP  # not due yet
        clock.t += (3600 + 60)
        r = await sch.check_target(state)
        assert r.status == Status.DEGRADED
        assert "within grace" in (r.error or "")
        clock.t += (300)
        r = await sch.check_target(state)
        assert r.status == Status.DOWN
        assert "never checked in" in (r.error or "")
        assert "expected every 1h" in (r.error or "")
        assert sch.store.latest("backup:up") == (clock(), 0.0)  # down, a value: not "no data"

        record_ping(spool, make_ping("backup", "start", at=clock()))
        clock.t += (125)
        record_ping(spool, make_ping("backup", at=clock()))
        r = await sch.check_target(state)
        assert r.status == Status.UP
        assert r.metrics["run_time_s"] == pytest.approx(125)

        record_ping(spool, make_ping("backup", "fail", note="exit 3", at=clock()))
        r = await sch.check_target(state)
        assert r.status == Status.DOWN
        assert "failure" in (r.error or "")
        assert "exit 3" in r.error

        record_ping(spool, make_ping("backup", "start", at=clock()))
        clock.t += (31 * 60)
        r = await sch.check_target(state)
        assert r.status == Status.DOWN
        assert "max_runtime" in (r.error or "")
    finally:
        await sch.stop()


_PINGER = """
import sys
from pathlib import Path
from console.engine.probes.heartbeat import make_ping, record_ping
path, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(n):
    record_ping(path, make_ping(name, "success" if i % 2 else "start", at=1000.0 + i))
    sys.stdout.write(".")
    sys.stdout.flush()
"""


async def test_the_ping_spool_stays_small_and_no_ping_is_lost_to_a_compaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three cron-like processes ping as fast as they can while the console follows the
    spool and compacts it whenever it passes 8 KB: every ping is counted, the state is the
    one the pings say, the file stays small, and a console started afterwards reads the
    same state from the compacted file."""
    import console.engine.probes.heartbeat as heartbeat

    monkeypatch.setattr(heartbeat, "COMPACT_BYTES", 8 * 1024)
    spool = tmp_path / "pings.jsonl"
    book = heartbeat.PingBook(spool)
    n = 200
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PINGER, str(spool), f"job-{k}", str(n), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE) for k in range(3)]

    async def follow(proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while await proc.stdout.read(64):  # each dot: a ping on disk
            await book.refresh()
        assert await proc.wait() == 0

    try:
        await asyncio.gather(*(follow(p) for p in procs))
        await book.refresh()
        for k in range(3):
            job = book.jobs[f"job-{k}"]
            assert job.pings == n
            assert (job.start, job.success, job.last) == (1000.0 + n - 2, 1000.0 + n - 1,
                                                          "success")
            assert job.run_time_s == pytest.approx(1.0)
        lines = [orjson.loads(x) for x in spool.read_bytes().splitlines()]
        assert any(e["type"] == heartbeat.STATE for e in lines), "never compacted"
        assert spool.stat().st_size <= 8 * 1024
        again = heartbeat.PingBook(spool)
        await again.refresh()
        assert again.jobs == book.jobs
        await again.aclose()
    finally:
        await book.aclose()


def test_one_shot_commands_read_the_pings_of_the_data_directory(tmp_path: Path) -> None:
    """`check --once`, `alerts` and `panels` see a job's check-ins as the console does;
    they said "no data directory: pings have nowhere to arrive" and fired heartbeat-late."""
    config = tmp_path / "config.toml"
    config.write_text(f'''
[console]
data_dir = "{tmp_path / "data"}"

[[targets]]
name = "nightly-backup"
kind = "heartbeat"
period = "1h"
grace = "5m"
''')
    # the data directory from the config (no --data-dir), as a cron job's `ping` finds it
    cmd = [sys.executable, "-m", "console"]
    run = lambda *a: subprocess.run([*cmd, *a, "--config", str(config)],  # noqa: E731
                                    capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run("ping", "nightly-backup").returncode == 0
    checked = run("check", "--once", "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    [result] = orjson.loads(checked.stdout)
    assert result["status"] == "up", result
    assert result["metrics"]["since_success_s"] < 60
    alerts = run("alerts", "--json")
    assert "heartbeat-late" not in alerts.stdout, alerts.stdout
    panels = run("panels", "--json")
    assert "nowhere to arrive" not in panels.stdout + panels.stderr


async def test_opsconsole_ping_reaches_a_running_console(
        tmp_path: Path, started: list[Runtime]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('''
[[targets]]
name = "nightly-backup"
kind = "heartbeat"
period = "2s"
grace = "0s"
interval = "0.2s"

[alerting]
default_rules = true
''')
    settings = load_config_text(config.read_text())
    rt = Runtime(settings, DataPaths(tmp_path), incidents=False)
    started.append(rt)
    await rt.start()
    async with asyncio.timeout(20):
        while rt.scheduler.last_result("nightly-backup") is None or \
                rt.scheduler.last_result("nightly-backup").status != Status.DOWN:
            await _next_result(rt)
    assert rt.alerting is not None
    alert = rt.alerting.alerts.get("heartbeat-late", "nightly-backup")
    assert alert is not None
    assert alert.state.value == "firing"
    done = await asyncio.to_thread(cli, "ping", "nightly-backup", data_dir=tmp_path,
                                   config=config)
    assert done.returncode == 0, done.stderr
    async with asyncio.timeout(20):
        while rt.scheduler.last_result("nightly-backup").status == Status.DOWN:
            await _next_result(rt)
    typo = await asyncio.to_thread(cli, "ping", "nightly-bakup", data_dir=tmp_path,
                                   config=config)
    assert typo.returncode == 2
    assert "nightly-backup" in typo.stderr


async def _next_result(rt: Runtime) -> None:
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def got(_: object) -> None:
        if not fut.done():
            fut.set_result(None)

    unsubscribe = rt.scheduler.subscribe(got)
    try:
        await fut
    finally:
        unsubscribe()
