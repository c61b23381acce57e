"""The composition root: one data directory for every file, reloads that apply every section,
background saves that fail visibly and never end the console, headless like the TUI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths, resolve_data_dir
from console.engine.runtime import Runtime
from console.engine.storage.journal import Journal

ROOT = Path(__file__).resolve().parents[2]


def _settings(url: str, extra: str = "") -> object:
    return load_config_text(f'''
[[targets]]
name = "api"
kind = "http"
url = "{url}/health"
interval = "1s"
timeout = "1s"
{extra}
''')


# -- one owner of paths -----------------------------------------------------------------------


def test_data_dir_order_flag_config_environment_default(tmp_path: Path) -> None:
    settings = load_config_text(f'[console]\ndata_dir = "{tmp_path / "cfg"}"\n')
    env = {"OPSCONSOLE_DATA_DIR": str(tmp_path / "env")}
    assert resolve_data_dir(tmp_path / "flag", settings, env) == DataPaths(
        tmp_path / "flag", "--data-dir")
    assert resolve_data_dir(None, settings, env).root == tmp_path / "cfg"
    assert resolve_data_dir(None, load_config_text(""), env).root == tmp_path / "env"
    default = resolve_data_dir(None, None, {})
    assert default.source == "default"
    assert "opsconsole" in str(default.root)
    assert default.metric_history == default.root / "history.npz"
    assert default.demo().journal == default.root / "demo" / "journal.jsonl"


async def test_everything_is_written_under_the_configured_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_url: str) -> None:
    """A console with its own `data_dir` keeps journal, history, alert state and error kinds
    there, and never shows another directory's incidents (it showed another process's P0)."""
    other = tmp_path / "other"
    monkeypatch.setenv("OPSCONSOLE_DATA_DIR", str(other))
    theirs = Journal(other / "journal.jsonl")
    await asyncio.to_thread(theirs.open)
    await theirs.append({"type": "incident.open", "incident": "inc-theirs", "title": "P0 db",
                         "severity": "P0", "started": time.time()})
    await theirs.close()
    before = sorted(p.name for p in other.iterdir())

    mine = tmp_path / "mine"
    log = tmp_path / "app.log"
    log.write_text('{"level":"error","message":"boom"}\n')
    settings = load_config_text(f'''
[console]
data_dir = "{mine}"

[[targets]]
name = "api"
kind = "http"
url = "{http_url}/health"
interval = "1s"

[[targets]]
name = "logs"
kind = "log"
path = "{log}"
interval = "1s"
''')
    rt = Runtime(settings, resolve_data_dir(None, settings))
    await rt.start()
    try:
        assert rt.desk is not None
        assert rt.desk.book.incidents == {}
        await rt.desk.open("mine", "P2")
        await rt.scheduler.check_once()
    finally:
        await rt.stop()
    assert sorted(p.name for p in other.iterdir()) == before
    written = {p.name for p in mine.iterdir()}
    assert {"journal.jsonl", "alerts.json", "alerts.lease", "history.npz",
            "log-errors"} <= written, written
    assert oct(mine.stat().st_mode & 0o777) == "0o700"


def test_data_directory_and_its_new_parents_are_private(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "a" / "b").demo()
    paths.ensure()
    for d in (tmp_path / "a", tmp_path / "a" / "b", paths.root):
        assert oct(d.stat().st_mode & 0o777) == "0o700", d


# -- a background save that fails --------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root can fill it; a read-only directory would not stop root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                           capture_output=True, text=True, timeout=10)
    assert mount.returncode == 0, f"cannot mount a small tmpfs: {mount.stderr}"
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


async def test_history_save_on_a_full_disk_is_shown_retried_and_recovers(
        small_disk: Path, http_url: str) -> None:
    rt = Runtime(_settings(http_url), DataPaths(small_disk), save_every=0.05, incidents=False)
    await rt.start()
    try:
        for i in range(5):
            rt.store.record(f"api:m{i}", time.time(), float(i))
        filler = small_disk / "filler"
        with contextlib.suppress(OSError):
            filler.write_bytes(b"\0" * 8 * 1024 * 1024)  # fills the disk: ENOSPC part way
        async with asyncio.timeout(10):  # the failed save is reported
            await rt.wait_until(lambda: "history" in rt.problems)
        assert "metric history not saved" in rt.problems["history"]
        assert "retrying" in rt.problems["history"]
        filler.unlink()  # space comes back: the next retry saves and the problem clears
        async with asyncio.timeout(10):  # the retry succeeds once space is back
            await rt.wait_until(lambda: "history" not in rt.problems)
        assert (small_disk / "history.npz").stat().st_size > 0
    finally:
        await rt.stop()


async def test_journals_refused_by_a_read_only_disk_are_taken_up_once_it_is_writable(
        small_disk: Path, http_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk started on a read-only mount, then remounted it read-write: the "incident
    journal unavailable" and "events journal unavailable" banners stayed, and events sent
    with `opsconsole event` stayed off the timeline, until a restart."""
    import console.engine.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "REOPEN_S", 0.05)

    def remount(mode: str) -> None:
        done = subprocess.run(["mount", "-o", f"remount,{mode}", str(small_disk)],
                              capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr

    remount("ro")
    rt = Runtime(_settings(http_url), DataPaths(small_disk), history=False)
    await rt.start()
    try:
        assert rt.desk is None
        assert rt.events is None
        assert "Read-only file system" in rt.problems["journal"]
        assert "Read-only file system" in rt.problems["events"]
        remount("rw")
        async with asyncio.timeout(10):
            await rt.wait_until(lambda: "journal" not in rt.problems
                                and "events" not in rt.problems)
        assert rt.desk is not None
        assert rt.events is not None
        inc = await rt.desk.open("API down", "P1")  # incident actions work again
        assert inc.id in (small_disk / "journal.jsonl").read_text()
    finally:
        await rt.stop()


# -- reload applies every section --------------------------------------------------------------


async def test_reload_applies_maintenance_ack_and_receivers_and_names_restart_only_ones(
        tmp_path: Path, http_url: str) -> None:
    rt = Runtime(_settings(http_url), DataPaths(tmp_path), incidents=False)
    await rt.start()
    try:
        assert rt.alerting is not None
        assert rt.notifier is None
        new = _settings(http_url, extra=f'''
[console]
data_dir = "{tmp_path / "elsewhere"}"

[alerting]
ack_for = "10m"

[[alerting.maintenance]]
start = "2026-01-01T00:00:00Z"
end = "2036-01-01T00:00:00Z"
matchers = ['service="api"']
reason = "migration"

[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{http_url}/hook"
''')
        applied = await rt.apply(new)  # type: ignore[arg-type]
        assert applied.applied == ("alerting", "receivers")
        assert applied.restart == ("[console] data_dir",)
        alerts = rt.alerting.alerts
        assert alerts.cfg.ack_for == 600.0
        assert [s.reason for s in alerts.silences()] == ["migration"]
        assert rt.notifier is not None
        assert list(rt.notifier.receivers) == ["hook"]
        assert rt.alerting.notifier is rt.notifier
        # removing the window removes its silence; an operator's own silence stays
        alerts.silence(['target="api"'], duration=60, by="ops", reason="mine")
        await rt.apply(_settings(http_url))  # type: ignore[arg-type]
        assert [s.reason for s in alerts.silences()] == ["mine"]
        assert alerts.cfg.ack_for == 3600.0
        assert rt.notifier.receivers == {}
    finally:
        await rt.stop()


def _down_target() -> str:
    """A target "gone" on a port nothing listens on (its target-down alert fires)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    return f"""
[[targets]]
name = "gone"
kind = "http"
url = "http://127.0.0.1:{closed}/health"
interval = "1s"
timeout = "1s"
"""


async def test_reload_resolves_the_alerts_of_a_removed_target(
        tmp_path: Path, http_url: str) -> None:
    """Removing a target whose alert fires resolves it (and says why): nothing would ever
    evaluate it again, and the bad-input walk's banner kept a removed target "down"."""
    down = _down_target()
    rt = Runtime(_settings(http_url, extra=down), DataPaths(tmp_path), incidents=False)
    await rt.start()
    try:
        assert rt.alerting is not None
        alerts = rt.alerting.alerts
        fired = asyncio.Event()
        rt.alerting.subscribe(lambda notes: any(
            n.target == "gone" and n.transition == "firing" for n in notes) and fired.set())
        async with asyncio.timeout(20):
            await fired.wait()
        await rt.apply(_settings(http_url))  # type: ignore[arg-type]
        a = alerts.get("target-down", "gone")
        assert a is not None
        assert a.state.value == "resolved"
        assert "removed from the config" in (a.cause or "")
        told = [n for n in rt.alerting.sent if n.target == "gone"]
        assert [n.transition for n in told] == ["firing", "resolved"]
        assert not alerts.loud()
        # the episode is closed, with its end
        eps = [e for e in rt.alerting.recent(time.time()) if e.get("target") == "gone"]
        assert eps
        assert eps[0].get("resolved_at") is not None
        assert not eps[0].get("ongoing")
        # the target that stays is still evaluated
        assert alerts.get("target-down", "api") is None or \
            alerts.get("target-down", "api").state.value != "firing"
    finally:
        await rt.stop()


async def test_an_alert_acknowledged_by_a_request_acknowledges_its_open_incident(
        tmp_path: Path, http_url: str) -> None:
    """Not only the alerts screen's `a`: a follower's request, applied by the evaluating
    process, acknowledges the incident the alert is part of (it did only from the screen)."""
    down = _down_target()
    rt = Runtime(_settings(http_url, extra=down), DataPaths(tmp_path), history=False)
    await rt.start()
    try:
        assert rt.alerting is not None
        assert rt.desk is not None
        fired = asyncio.Event()
        rt.alerting.subscribe(lambda notes: any(
            n.target == "gone" and n.transition == "firing" for n in notes) and fired.set())
        async with asyncio.timeout(20):
            await fired.wait()
        a = rt.alerting.alerts.get("target-down", "gone")
        assert a is not None
        inc = await rt.desk.open_from_alert(a)
        assert inc.acknowledged_at is None
        rt.alerting._apply_request({"ts": time.time(), "action": "ack",  # noqa: SLF001
                                    "rule": "target-down", "target": "gone",
                                    "incident": a.incident, "by": "follower"})
        assert a.state.value == "acknowledged"
        rt._ack_incident_of(a)  # noqa: SLF001  # another alert of it, before the first lands
        acks = [t for t in rt._tasks if t.get_name() == f"runtime:incident-ack:{inc.id}"]  # noqa: SLF001
        assert len(acks) == 1
        async with asyncio.timeout(5):
            await acks[0]
        assert rt.desk.book.get(inc.id).acknowledged_at is not None
        entries = [e for e in rt.desk.journal.entries
                   if e.get("type") == "incident.acknowledge"]
        assert len(entries) == 1
        # a second ack (refused: it is acknowledged already) starts nothing more
        rt.alerting.alerts.ack("target-down", "gone", "someone")
        assert len([t for t in rt._tasks if t.get_name().startswith("runtime:incident-ack")]) == 1  # noqa: SLF001
    finally:
        await rt.stop()


# -- headless: the same runtime as the TUI ----------------------------------------------------


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, within: float) -> bytes:
    """stderr lines of `proc` until one contains `needle` (readline blocks until a line or
    EOF; a watchdog kills the process if the line never comes)."""
    assert proc.stderr is not None
    seen = b""
    timer = __import__("threading").Timer(within, proc.kill)
    timer.start()
    try:
        while needle not in seen:
            line = proc.stderr.readline()
            if not line:
                raise AssertionError(f"{needle!r} never printed; stderr:\n{seen.decode()}")
            seen += line
    finally:
        timer.cancel()
    return seen


def test_run_headless_keeps_history_and_applies_config_edits(
        tmp_path: Path, http_url: str) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    config.write_text(f'[console]\ndata_dir = "{data}"\n\n[[targets]]\nname = "api"\n'
                      f'kind = "http"\nurl = "{http_url}/health"\ninterval = "1s"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "run", "--headless", "--config", str(config)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _read_until(proc, b"running headless", 30)
        config.write_text(config.read_text() + f'\n[[targets]]\nname = "web"\nkind = "http"\n'
                          f'url = "{http_url}/"\ninterval = "1s"\n')
        out = _read_until(proc, b"config reloaded", 30)
        assert b"targets and panels" in out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    names = {p.name for p in data.iterdir()}
    assert {"history.npz", "alerts.json"} <= names
    state = orjson.loads((data / "alerts.json").read_bytes())
    assert isinstance(state, dict)
