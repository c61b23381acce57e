"""The log filter language, the playbook's built-in queries, and `opsconsole logs`.

Files are written by the test; `opsconsole logs` runs as a real subprocess; the large-file
search is measured with psutil for bounded memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from console.engine.logs.query import parse_query, search_file, search_lines
from console.engine.logs.tail import parse_line

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0  # a fixed "now" for in-process searches


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def rec(level: str, message: str, t: float, **kw: Any) -> str:
    return json.dumps({"level": level, "message": message, "timestamp": iso(t),
                       "service": "tradosphere-api", **kw}) + "\n"


def sample_log(path: Path, now: float) -> None:
    lines = [
        rec("info", "GET /api/signals", now - 60, responseTime=120, userId="1"),
        rec("error", "Gemini API failed", now - 120, requestId="abc-123", userId="123"),
        rec("error", "Gemini API failed", now - 300, requestId="abc-124"),
        rec("error", "DB timeout", now - 600, meta={"userId": "7"}),
        rec("error", "Gemini API failed", now - 7200),  # older than an hour
        rec("warn", "slow request", now - 30, responseTime=1500),
        rec("info", "GET /api/portfolio", now - 20, responseTime=2400),
        rec("error", "stripe.webhook.failed", now - 10, event="invoice.paid"),
        "Error: something printed a stack trace at Object.<anonymous>\n",
        '{"level":"info","message":"torn\n',
        rec("info", "POST /api/webhooks", now - 5, responseTime="999"),
    ]
    path.write_text("".join(lines))


# -- the language ------------------------------------------------------------------------


def lines_of(path: Path) -> list[Any]:
    return [parse_line(x) for x in path.read_bytes().splitlines() if x.strip()]


def messages(res: Any) -> list[str]:
    return [ln.message or ln.raw for ln in res.matches]


def test_filter_terms(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    sample_log(p, NOW)
    lines = lines_of(p)

    def q(text: str) -> list[str]:
        return messages(search_lines(lines, parse_query(text), now=NOW))

    assert q("level=error responseTime>1000") == []
    assert q("level=ERROR gemini") == ["Gemini API failed"] * 3
    assert q("responseTime>1000") == ["slow request", "GET /api/portfolio"]
    assert q("responseTime<1000") == ["GET /api/signals", "POST /api/webhooks"]  # "999"
    assert q("responseTime>=2400") == ["GET /api/portfolio"]
    assert q("level!=info level!=error") == ["slow request"]  # non-JSON lines fail fields
    assert q("userId=123") == ["Gemini API failed"]
    assert q("meta.userId=7") == ["DB timeout"]
    assert q('message="Gemini API failed" requestId=abc-12*') == ["Gemini API failed"] * 2
    assert q("stack trace") == ["Error: something printed a stack trace at Object.<anonymous>"]
    assert q("'DB timeout'") == ["DB timeout"]


def test_bad_queries_say_why() -> None:
    with pytest.raises(ValueError, match="needs a number"):
        parse_query("responseTime>fast")
    with pytest.raises(ValueError, match="give a value"):
        parse_query("level=")
    with pytest.raises(ValueError, match="empty query"):
        parse_query("  ")
    with pytest.raises(ValueError, match="cannot read"):
        parse_query('message="unbalanced')


def test_builtin_queries(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    sample_log(p, NOW)
    errors = search_file(p, parse_query("errors"), now=NOW)
    assert messages(errors) == ["Gemini API failed", "Gemini API failed", "DB timeout",
                                "stripe.webhook.failed"]  # not the one 2 h old
    assert errors.non_json == 2
    assert errors.scanned == 11
    grouped = search_file(p, parse_query("errors-by-message"), now=NOW)
    assert grouped.sorted_groups() == [("Gemini API failed", 3), ("DB timeout", 1),
                                       ("stripe.webhook.failed", 1)]
    slow = search_file(p, parse_query("slow"), now=NOW)
    assert messages(slow) == ["slow request", "GET /api/portfolio"]
    slow2 = search_file(p, parse_query("slow", slow_ms=2000), now=NOW)
    assert messages(slow2) == ["GET /api/portfolio"]
    stripe = search_file(p, parse_query("stripe-failed"), now=NOW)
    assert messages(stripe) == ["stripe.webhook.failed"]
    wider = search_file(p, parse_query("errors", since=3 * 3600), now=NOW)
    assert wider.matched == 5


def test_groups_and_matches_are_capped(tmp_path: Path) -> None:
    p = tmp_path / "many.log"
    p.write_text("".join(rec("error", f"failure {i}", NOW) for i in range(300)))
    res = search_file(p, parse_query("errors-by-message"), now=NOW, max_groups=100)
    assert len(res.groups) == 100
    assert res.other == 200
    assert res.sorted_groups()[-1] == ("(other messages)", 200)
    res = search_file(p, parse_query("level=error"), now=NOW, limit=10)
    assert res.matched == 300
    assert messages(res) == [f"failure {i}" for i in range(290, 300)]  # the latest kept


def test_large_file_search_bounded_memory(tmp_path: Path) -> None:
    """A 50 MB file: streamed, only the capped matches kept; RSS grows far less than it."""
    p = tmp_path / "big.log"
    now = time.time()
    block = "".join(
        rec("error" if i % 100 == 0 else "info", f"message {i % 37}", now - 30,
            responseTime=i % 2000, requestId=f"req-{i:06d}", path="/api/v1/signals/" + "x" * 40)
        for i in range(1000)
    ).encode()
    target = 50 * 1024 * 1024
    with p.open("wb") as f:
        for _ in range(target // len(block) + 1):
            f.write(block)
    size = p.stat().st_size
    assert size >= target
    proc = psutil.Process()
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    res = search_file(p, parse_query("level=error responseTime<500"), limit=500)
    grouped = search_file(p, parse_query("errors-by-message"))
    elapsed = time.perf_counter() - t0
    growth = proc.memory_info().rss - before
    blocks = size // len(block) + (1 if size % len(block) else 0)
    assert res.scanned == blocks * 1000
    assert res.matched == blocks * 5  # i % 100 == 0 and responseTime = i < 500: 0,100..400
    assert len(res.matches) == 500
    assert sum(n for _, n in grouped.sorted_groups()) == blocks * 10
    assert growth < 20 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB on a 50 MB file"
    print(f"\n50 MB searched twice in {elapsed:.2f}s, RSS +{growth / 2**20:.1f} MiB")
    assert elapsed < 20


# -- the command -------------------------------------------------------------------------


def run(*args: str, timeout: float = 30,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSCONSOLE_CONFIG": str(ROOT / "tests" / "no-such-config.toml"),
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "console", "logs", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_cli_json_builtin_and_filter(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    sample_log(p, time.time())
    out = run("errors", "--file", str(p), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["matched"] == 4
    assert data["non_json"] == 2
    assert [x["message"] for x in data["lines"]][-1] == "stripe.webhook.failed"
    assert data["lines"][0]["requestId"] == "abc-123"
    out = run("errors-by-message", "--file", str(p), "--json", "--since", "3h")
    data = json.loads(out.stdout)
    assert data["groups"][0] == {"key": "Gemini API failed", "count": 3}
    out = run("level=error responseTime>1000", "--file", str(p), "--json")
    assert out.returncode == 1  # nothing matched
    assert json.loads(out.stdout)["lines"] == []
    out = run("stack", "--file", str(p))  # plain text: the raw line, sanitised
    assert out.returncode == 0
    assert out.stdout.startswith("Error: something printed a stack trace")
    assert "1 matching of 11 lines" in out.stderr


def test_cli_config_target_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "combined.log"
    sample_log(p, time.time())
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[[targets]]\nname = "api-logs"\nkind = "log"\npath = "{p}"\n'
                   "slow_ms = 2000\n")
    out = run("slow", "--config", str(cfg), "--target", "api-logs", "--json")
    assert out.returncode == 0, out.stderr
    assert [x["message"] for x in json.loads(out.stdout)["lines"]] == ["GET /api/portfolio"]
    out = run("slow", "--config", str(cfg), "--target", "nope")
    assert out.returncode == 2
    assert "no log target 'nope'" in out.stderr
    out = run("responseTime>fast", "--file", str(p))
    assert out.returncode == 2
    assert "needs a number" in out.stderr
    out = run("errors", "--file", str(tmp_path / "missing.log"))
    assert out.returncode == 2
    assert "cannot read" in out.stderr


def test_cli_demo_searches_the_log_the_demo_writes(tmp_path: Path) -> None:
    """`--demo`, as `incidents`, `report` and `postmortem` take it: the log the running
    demo writes in its own world, with its log target's slow_ms (the walk's
    `logs stripe-failed --demo --since 1h` was refused)."""
    from console.engine.paths import DataPaths

    log = DataPaths(tmp_path).demo().demo_log
    log.parent.mkdir(parents=True)
    sample_log(log, time.time())
    env = {"OPSCONSOLE_DATA_DIR": str(tmp_path)}
    out = run("stripe-failed", "--demo", "--since", "1h", "--json", env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["file"] == str(log)
    assert [x["message"] for x in data["lines"]] == ["stripe.webhook.failed"]
    out = run("slow", "--demo", "--json", env=env)  # the demo's slow_ms: 1000
    assert [x["message"] for x in json.loads(out.stdout)["lines"]] == [
        "slow request", "GET /api/portfolio"]
    out = run("errors", "--demo", "--file", str(log), env=env)
    assert out.returncode == 2
    assert "not both" in out.stderr


def test_time_window_seeks_instead_of_reading_everything(tmp_path: Path) -> None:
    """`errors` (last hour) on a 10-hour file: bisection skips the older 9 hours, same answer."""
    p = tmp_path / "ten-hours.log"
    n = 60_000
    with p.open("w") as f:
        for i in range(n):
            t = NOW - 36_000 + i * 36_000 / n
            f.write(rec("error" if i % 50 == 0 else "info", f"m{i % 7}", t))
        f.write("a trailing line without any timestamp\n")
    full = search_file(p, parse_query("errors"), now=NOW, seek_min_bytes=1 << 40)
    fast = search_file(p, parse_query("errors"), now=NOW, seek_min_bytes=0)
    assert full.skipped == 0
    assert fast.skipped > p.stat().st_size * 0.8
    assert fast.scanned < full.scanned * 0.2
    assert fast.matched == full.matched == n // 10 // 50
    assert messages(fast) == messages(full)
    grouped = search_file(p, parse_query("errors-by-message"), now=NOW, seek_min_bytes=0)
    assert grouped.skipped == 0  # no window: the whole file
    assert sum(c for _, c in grouped.sorted_groups()) == n // 50


def test_search_file_reads_at_most_its_tail_when_asked(tmp_path: Path) -> None:
    """The Logs screen reads a busy file's last 64 MB, from a line's start."""
    from console.engine.logs.query import parse_query, search_file

    path = tmp_path / "big.log"
    line = '{"level":"error","message":"boom","timestamp":"2026-12-07T03:00:00Z"}\n'
    path.write_text(line * 1000)
    whole = search_file(path, parse_query("level=error"), limit=5)
    assert (whole.scanned, whole.skipped) == (1000, 0)
    tail = search_file(path, parse_query("level=error"), limit=5, tail_bytes=len(line) * 10 + 3)
    assert tail.scanned == 10  # the partly read line is skipped whole
    assert tail.skipped == len(line) * 990
    assert tail.matched == 10
