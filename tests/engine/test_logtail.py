"""Following JSON-lines logs: files written, rotated and truncated by the test while followed.

The files are real files in tmp_path written with ordinary appends, renames and truncation,
as winston, logrotate (create and copytruncate) and a shell redirect do.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from console.engine.config.schema import LogTarget, Settings
from console.engine.logs.tail import MAX_LINE, LogFollower, LogUnavailable, parse_line
from console.engine.model import Status
from console.engine.probes.log import RING, LogProbe
from console.engine.scheduler import Scheduler


def rec(level: str = "info", message: str = "ok", **kw: Any) -> str:
    return json.dumps({"level": level, "message": message,
                       "timestamp": "2026-01-20T12:00:00.000Z", **kw}) + "\n"


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- the follower ------------------------------------------------------------------------


def test_follows_from_the_end_and_keeps_partial_lines(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    p.write_text(rec(message="old") * 100)
    f = LogFollower(p)
    assert f.read().lines == []  # history before opening is skipped
    append(p, rec(message="a") + '{"level":"info","mess')
    lines = f.read().lines
    assert [parse_line(x).message for x in lines] == ["a"]
    append(p, 'age":"b"}\n')
    assert [parse_line(x).message for x in f.read().lines] == ["b"]


def test_rotation_reads_rest_of_old_file_then_new_file(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    p.write_text("")
    f = LogFollower(p)
    f.read()
    append(p, rec(message="1"))
    assert len(f.read().lines) == 1
    append(p, rec(message="2") + rec(message="3"))  # written, not yet read
    os.rename(p, tmp_path / "combined.log.1")  # logrotate `create`
    p.write_text(rec(message="4"))
    res = f.read()
    assert res.rotated
    assert [parse_line(x).message for x in res.lines] == ["2", "3", "4"]
    append(p, rec(message="5"))
    assert [parse_line(x).message for x in f.read().lines] == ["5"]


def test_truncation_restarts_at_zero(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    p.write_text("")
    f = LogFollower(p)
    f.read()
    append(p, rec(message="x" * 200) * 5)
    assert len(f.read().lines) == 5
    with p.open("w") as fh:  # copytruncate / `> app.log`
        fh.write(rec(message="after"))
    res = f.read()
    assert res.truncated
    assert [parse_line(x).message for x in res.lines] == ["after"]


def test_reads_are_bounded_and_catch_up(tmp_path: Path) -> None:
    p = tmp_path / "big.log"
    p.write_text("")
    f = LogFollower(p, max_bytes=10_000, chunk=4096)
    f.read()
    line = rec(message="m" * 60)
    append(p, line * 1000)
    total = 0
    reads = 0
    while True:
        res = f.read()
        assert res.bytes_read <= 10_000
        total += len(res.lines)
        reads += 1
        if not res.backlog and not res.lines:
            break
        assert reads < 100
    assert total == 1000
    assert reads >= len(line) * 1000 // 10_000


def test_overlong_line_is_cut_not_kept_whole(tmp_path: Path) -> None:
    p = tmp_path / "long.log"
    p.write_text("")
    f = LogFollower(p, chunk=8192)
    f.read()
    append(p, "y" * (MAX_LINE * 3) + "\n" + rec(message="next"))
    lines = f.read().lines
    assert len(lines) == 2
    assert len(lines[0]) == MAX_LINE
    assert parse_line(lines[1]).message == "next"


def test_missing_file_is_a_clear_error_and_a_late_file_is_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "later.log"
    f = LogFollower(p)
    with pytest.raises(LogUnavailable, match="does not exist"):
        f.read()
    p.write_text(rec(message="first"))
    assert [parse_line(x).message for x in f.read().lines] == ["first"]


def test_parse_line_fields() -> None:
    ln = parse_line(b'{"level":"error","message":"Gemini API failed","timestamp":'
                    b'"2026-01-20T12:00:00.000Z","responseTime":1500,"meta":{"userId":"7"}}')
    assert ln.is_json
    assert ln.level == "error"
    assert ln.message == "Gemini API failed"
    assert ln.ts == pytest.approx(1768910400.0)
    assert ln.response_time == 1500.0
    assert ln.field("meta.userId") == "7"
    bad = parse_line(b"Error: boom at line 3")
    assert not bad.is_json
    assert bad.raw == "Error: boom at line 3"
    assert not parse_line(b"[1, 2]").is_json  # JSON, but not a record


# -- the probe ---------------------------------------------------------------------------


async def test_probe_rates_match_written_lines(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    p.write_text(rec() * 50)  # before the probe: not counted
    mono = FakeClock()
    probe = LogProbe(LogTarget(name="logs", path=str(p), slow_ms=1000), monotonic=mono)
    text = (rec("info", responseTime=20) * 30 + rec("error", "Gemini API failed") * 6
            + rec("warn", "slow-ish", responseTime=1500) * 4 + "not json at all\n" * 3
            + "\n")
    append(p, text)
    mono.t += 2.0
    r = await probe.check()
    assert r.status == Status.UP, r.error
    m = r.metrics
    assert m["lines_per_s"] == pytest.approx(43 / 2.0)
    assert m["errors_per_s"] == pytest.approx(6 / 2.0)
    assert m["warn_per_s"] == pytest.approx(4 / 2.0)
    assert m["info_per_s"] == pytest.approx(30 / 2.0)
    assert m["debug_per_s"] == 0
    assert m["slow_requests_per_s"] == pytest.approx(4 / 2.0)
    assert m["error_pct"] == pytest.approx(100 * 6 / 40)
    assert m["non_json_lines_total"] == 3
    assert r.details["recent_non_json"] == ["not json at all"] * 3
    # next interval: nothing written
    mono.t += 5.0
    r2 = await probe.check()
    assert r2.metrics["lines_per_s"] == 0
    assert r2.metrics["non_json_lines_total"] == 3
    assert r2.metrics["errors_total"] == 6
    await probe.aclose()


async def test_probe_survives_rotation_and_truncation_while_followed(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    p.write_text("")
    mono = FakeClock()
    probe = LogProbe(LogTarget(name="logs", path=str(p)), monotonic=mono)
    append(p, rec("error") * 3)
    os.rename(p, tmp_path / "combined.log.1")
    p.write_text(rec("info") * 7)
    mono.t += 1.0
    r = await probe.check()
    assert r.details["rotated"] is True
    assert r.metrics["lines_per_s"] == pytest.approx(10.0)
    assert r.metrics["errors_per_s"] == pytest.approx(3.0)
    p.write_text(rec("warn"))  # truncated and rewritten (shorter than before)
    mono.t += 1.0
    r = await probe.check()
    assert r.details["truncated"] is True
    assert r.metrics["warn_per_s"] == pytest.approx(1.0)
    assert r.metrics["lines_per_s"] == pytest.approx(1.0)
    await probe.aclose()


async def test_probe_down_when_missing_and_up_when_back(tmp_path: Path) -> None:
    p = tmp_path / "gone.log"
    probe = LogProbe(LogTarget(name="logs", path=str(p)))
    r = await probe.check()
    assert r.status == Status.DOWN
    assert "does not exist" in (r.error or "")
    assert str(p) in (r.error or "")
    p.write_text(rec("error"))
    r = await probe.check()
    assert r.status == Status.UP
    assert r.metrics["errors_total"] == 1
    p.unlink()
    p.mkdir()  # unreadable as a log whoever we run as (root reads any mode-0 file)
    r = await probe.check()
    assert r.status == Status.DOWN
    assert "not a regular file" in (r.error or "")
    await probe.aclose()


async def test_ring_is_bounded(tmp_path: Path) -> None:
    p = tmp_path / "many.log"
    p.write_text("")
    probe = LogProbe(LogTarget(name="logs", path=str(p)))
    append(p, "".join(rec(message=str(i)) for i in range(RING + 500)))
    await probe.check()
    assert len(probe.recent) == RING
    assert probe.recent[-1].message == str(RING + 499)
    assert probe.appended == RING + 500
    await probe.aclose()


async def test_engine_runs_a_log_target_from_config(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    p.write_text("")
    settings = Settings.model_validate({"targets": [
        {"name": "api-logs", "kind": "log", "path": str(p), "interval": "1s"}]})
    engine = Scheduler(settings)
    await engine.start(poll=False)
    try:
        append(p, rec("error") + rec("info"))
        [result] = await engine.check_once()
        assert result.status == Status.UP
        assert result.metrics["error_pct"] == pytest.approx(50.0)
        assert engine.store.latest("api-logs:errors_total") is not None
        [view] = engine.snapshot()
        assert view.address == str(p)
    finally:
        await engine.stop()


async def test_probe_works_off_a_big_backlog_in_bounded_reads(tmp_path: Path) -> None:
    import psutil

    p = tmp_path / "busy.log"
    p.write_text("")
    probe = LogProbe(LogTarget(name="logs", path=str(p), max_read="4MB"))
    block = "".join(rec("error" if i % 10 == 0 else "info", f"m{i}", responseTime=i)
                    for i in range(1000))
    with p.open("a") as f:
        for _ in range(100):  # ~13 MB appended at once, as after a pause
            f.write(block)
    proc = psutil.Process()
    before = proc.memory_info().rss
    results = []
    for _ in range(20):
        r = await probe.check()
        results.append(r)
        if not r.details["backlog_bytes"]:
            break
    growth = proc.memory_info().rss - before
    assert len(results) >= 3  # 4 MB per check
    assert "bytes behind" in results[0].reasons[0]
    assert results[-1].reasons == ()
    assert probe.lines_total == 100_000
    assert probe.errors_total == 10_000
    assert len(probe.recent) == RING
    print(f"\nbacklog: {len(results)} checks, RSS +{growth / 2**20:.1f} MiB")
    assert growth < 60 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB"
    await probe.aclose()


async def test_demo_writes_a_winston_log_the_probe_and_queries_read(tmp_path: Path) -> None:
    from console.demo.stack import DemoStack
    from console.engine.logs.query import parse_query, search_file

    stack = DemoStack(port=0, seed=3, traffic=False)
    await stack.start()
    try:
        assert stack.log_path is not None
        settings = Settings.model_validate(tomllib.loads(stack.config_toml()))
        target = settings.target("api-logs")
        assert isinstance(target, LogTarget)
        assert target.path == stack.log_path
        probe = LogProbe(target)
        stack.inject("dependency_down")  # webhooks fail: stripe.webhook.failed lines
        stack.inject("error_spike")  # 5xx: error lines and raw stack-trace lines
        stack.simulate(5.0)
        r = await probe.check()
        assert r.status == Status.UP
        assert r.metrics["errors_per_s"] > 0
        assert r.metrics["non_json_lines_total"] > 0
        assert 10 < r.metrics["error_pct"] < 60
        stripe = search_file(stack.log_path, parse_query("stripe-failed"))
        assert stripe.matched > 0
        await probe.aclose()
    finally:
        await stack.stop()
    assert not Path(target.path).parent.exists()  # the demo cleans up its log


async def test_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """A log target on a FIFO froze the console at "starting…" (an open waiting for a
    writer, on the event loop): q, Ctrl-C and `check --once` hung. It is refused at once."""
    import asyncio

    from console.engine.logs.query import parse_query, search_file

    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    probe = LogProbe(LogTarget(name="logs", path=str(fifo)))
    r = await asyncio.wait_for(probe.check(), 10)  # the bound is on a hang, not a timing
    assert r.status == Status.DOWN
    assert f"{fifo} is not a regular file" in (r.error or "")
    await probe.aclose()
    with pytest.raises(IsADirectoryError, match="not a regular file"):
        await asyncio.wait_for(asyncio.to_thread(search_file, fifo, parse_query("level=error")),
                               10)
