"""Record and replay: a console recorded with --record (plain, gzip, zstd) is replayed by
`opsconsole replay FILE --at T --json` as it was at T (the target down, its alert firing, the
deploy before it), from another process; a post-mortem names the recording; a recording that
cannot be written never stops the console."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from console.engine.config.loader import load_config_text
from console.engine.model import Status
from console.engine.paths import DataPaths
from console.engine.runtime import Runtime
from console.engine.signals.events import make_event
from console.engine.signals.recording import open_recording, parse_at
from tests.alerttools import HookSite

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "NO_COLOR": "1"})


@pytest.fixture
async def site() -> AsyncIterator[HookSite]:
    with HookSite(up=True) as s:
        yield s


async def _until(rt: Runtime, predicate: object) -> None:
    """Wait for a check result after which `predicate()` holds."""
    while not predicate():  # type: ignore[operator]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        unsubscribe = rt.scheduler.subscribe(
            lambda _r, fut=fut: None if fut.done() else fut.set_result(None))
        try:
            await fut
        finally:
            unsubscribe()


async def _record(tmp_path: Path, site: HookSite, name: str) -> tuple[Path, dict[str, float]]:
    """A console that sees `api` up, a deploy, then `api` down and its alert firing."""
    settings = load_config_text(f'''
[[targets]]
name = "api"
kind = "http"
url = "{site.base}/health"
interval = "0.2s"
timeout = "1s"

[[rules]]
name = "api-down"
severity = "P0"
expr = "down"
failure_threshold = 2
''')
    path = tmp_path / name
    rt = Runtime(settings, DataPaths(tmp_path / "data"), record=path, incidents=False)
    await rt.start()
    marks: dict[str, float] = {}
    try:
        async with asyncio.timeout(30):
            await _until(rt, lambda: rt.scheduler.last_result("api") is not None)
            marks["up"] = time.time()
            assert rt.events is not None
            await rt.events.append(make_event("Deployed v1.5.2", kind="deploy",
                                              service="api", version="v1.5.2"))
            site.up = False
            await _until(rt, lambda: rt.alerting is not None and any(
                a.state.value == "firing" for a in rt.alerting.alerts.current()))
            marks["down"] = time.time()
    finally:
        await rt.stop()
    return path, marks


@pytest.mark.parametrize("name", ["console.rec", "console.rec.gz", "console.rec.zst"])
async def test_a_recording_replays_as_it_was(tmp_path: Path, site: HookSite, name: str) -> None:
    path, marks = await _record(tmp_path, site, name)
    rec = open_recording(path)
    kinds = {k for _, k, _ in rec.items}
    assert kinds == {"r", "n", "e"}  # results, notifications, events
    if name.endswith((".gz", ".zst")):
        assert path.read_bytes()[:2] in (b"\x1f\x8b", b"\x28\xb5")

    def state_at(t: float) -> dict[str, object]:
        at = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(t)) + f"{t % 1:.3f}"[2:]
        done = cli("replay", str(path), "--at", at + "+00:00", "--json",
                   data_dir=tmp_path / "other")
        assert done.returncode == 0, done.stderr
        doc: dict[str, object] = orjson.loads(done.stdout)
        return doc

    before = await asyncio.to_thread(state_at, marks["up"])
    assert before["targets"][0]["status"] == Status.UP.value  # type: ignore[index]
    assert before["alerts"] == [] or all(  # type: ignore[union-attr]
        a["state"] != "firing" for a in before["alerts"])  # type: ignore[union-attr]
    after = await asyncio.to_thread(state_at, marks["down"] + 0.5)
    assert after["targets"][0]["status"] == Status.DOWN.value  # type: ignore[index]
    firing = [a for a in after["alerts"] if a["state"] == "firing"]  # type: ignore[union-attr]
    assert [a["rule"] for a in firing] == ["api-down"]
    assert [d["version"] for d in after["deploys"]] == ["v1.5.2"]  # type: ignore[union-attr]
    assert not (tmp_path / "other").exists()  # a replay writes nothing of its own


async def test_a_post_mortem_names_the_recording(tmp_path: Path, site: HookSite) -> None:
    path, marks = await _record(tmp_path, site, "night.rec.gz")
    data = tmp_path / "data"
    from console.engine.incidents.book import IncidentBook, IncidentDesk
    from console.engine.incidents.playbooks import load_playbooks
    from console.engine.storage.journal import Journal

    journal = Journal(data / "journal.jsonl")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks()))
    await desk.open("API down", "P0", started=marks["down"] - 0.1)
    await journal.close()
    done = await asyncio.to_thread(cli, "postmortem", "latest", data_dir=data)
    assert done.returncode == 0, done.stderr
    at = time.strftime("%H:%M:%S", time.gmtime(marks["down"] - 0.1))
    assert f"opsconsole replay {path} --at {at}" in done.stdout
    assert "deploy api v1.5.2: Deployed v1.5.2" in done.stdout  # the deploy on the timeline


async def test_a_recording_that_cannot_be_written_is_a_problem_not_a_stop(
        tmp_path: Path, site: HookSite) -> None:
    settings = load_config_text(f'''
[[targets]]
name = "api"
kind = "http"
url = "{site.base}/health"
interval = "0.2s"
''')
    existing = tmp_path / "taken.rec"
    existing.write_bytes(b"someone else's file")
    rt = Runtime(settings, DataPaths(tmp_path / "data"), record=existing, incidents=False)
    await rt.start()
    try:
        assert "not recording" in rt.problems["recording"]
        async with asyncio.timeout(20):
            await _until(rt, lambda: rt.scheduler.last_result("api") is not None)
    finally:
        await rt.stop()
    assert existing.read_bytes() == b"someone else's file"  # never overwritten


def test_bad_replay_input_says_what_is_wrong(tmp_path: Path) -> None:
    junk = tmp_path / "junk.rec"
    junk.write_bytes(b"hello\n")
    done = cli("replay", str(junk), "--json", data_dir=tmp_path)
    assert done.returncode == 2
    assert "not an opsconsole recording" in done.stderr
    done = cli("replay", str(tmp_path / "missing.rec"), "--json", data_dir=tmp_path)
    assert done.returncode == 2
    assert "missing.rec" in done.stderr


def test_at_is_a_time_of_day_on_the_recordings_day(tmp_path: Path) -> None:
    from console.engine.signals.recording import Recording

    start = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    rec = Recording(tmp_path / "x", {}, start)
    assert parse_at("08:30", rec) == start + 1800
    assert parse_at("03:12:40", rec) == start + 86400 - 5 * 3600 + 12 * 60 + 40  # next day
    with pytest.raises(ValueError, match="HH:MM"):
        parse_at("soon", rec)
