"""`opsconsole panels`, run as a user would (a real process) against the running demo stack.

The stack serves from this test's event loop, so the command runs as an asyncio subprocess
(a blocking `subprocess.run` would stall the servers it checks). The machine's PostgreSQL and
Redis are in the config too, so every ready-made board has real numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from console.demo.stack import DemoStack
from console.engine.config.dashboards import READY_MADE

ROOT = Path(__file__).resolve().parents[1]
PG = "postgresql://127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[tuple[DemoStack, Path]]:
    stack = DemoStack(port=0, seed=11)
    await stack.start()
    config = tmp_path / "demo.toml"
    config.write_text(stack.config_toml(postgres_dsn=PG, redis_url=REDIS), "utf-8")
    try:
        yield stack, config
    finally:
        await stack.stop()


async def panels(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console", "panels", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OPSCONSOLE_CONFIG": str(ROOT / "tests" / "no-such-config.toml")},
    )
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def expected_exit(rows: list[dict[str, Any]]) -> int:
    bad = any(r["state"] in ("warn", "crit") or r["target_status"] == "down" for r in rows)
    return 1 if bad else 0


async def test_every_panel_as_json(demo: tuple[DemoStack, Path]) -> None:
    _, config = demo
    code, out, err = await panels("--config", str(config), "--json")
    rows = json.loads(out)
    assert code == expected_exit(rows), err
    by_key = {r["key"]: r for r in rows}
    for r in rows:
        assert set(r) >= {"title", "value", "unit", "state", "warn", "crit", "dashboards"}
        assert r["state"] in ("ok", "warn", "crit", "nodata")
        assert (r["value"] is None) == (r["state"] == "nodata"), r
    # The playbook's four boards, declared by the demo config, each with live numbers.
    boards = {name for r in rows for name in r["dashboards"]}
    assert boards == set(READY_MADE)
    for key in ("requests", "p95", "error-rate", "db-query", "postgres-latency", "pg-pool",
                "redis-latency", "redis-memory", "cpu", "memory", "disk", "signals",
                "active-users", "competitions", "revenue"):
        assert by_key[key]["value"] is not None, by_key[key]
    assert 100 < by_key["requests"]["value"] < 400  # ~180 req/s of simulated traffic
    assert (by_key["p95"]["warn"], by_key["p95"]["crit"]) == (200.0, 2000.0)
    assert by_key["p95"]["unit"] == "ms"
    assert by_key["redis-hit-rate"]["lower_is_better"] is False
    assert 500 < by_key["active-users"]["value"] < 2500
    assert by_key["signals"]["value"] > 0  # posted signals per minute, moving with traffic
    assert by_key["revenue"]["value"] >= 0  # ~1.5 payments/s: a 1 s window may hold none
    assert by_key["payment-failures"]["state"] in ("ok", "nodata")  # healthy: none fail
    assert by_key["payment-failures"]["dashboards"] == ["Business metrics"]
    assert by_key["active-users"]["dashboards"] == ["Application overview", "Business metrics"]


async def test_one_dashboard_as_text_with_glyphs_and_a_fault_exits_1(
    demo: tuple[DemoStack, Path],
) -> None:
    stack, config = demo
    stack.inject("error_spike")  # ~30 % of requests fail: the error-rate panel is critical
    code, out, err = await panels("--config", str(config), "--dashboard", "1")
    assert code == 1, (out, err)
    lines = out.splitlines()
    assert lines[0].startswith("── Application overview ")
    error_line = next(line for line in lines if "Error rate (5xx)" in line)
    assert error_line.startswith("✖ crit"), error_line
    assert "< 0.5 (crit ≥ 5)" in error_line
    assert re.search(r"\d% ", error_line), error_line  # the unit, written as the TUI writes it
    assert error_line.rstrip().endswith("api-metrics")
    ws = next(line for line in lines if "WebSocket connections" in line)
    assert "> 60 (crit ≤ 25)" in ws  # higher is better reads the other way
    assert len(lines) == 1 + 10  # the title and the board's ten panels


async def test_dashboard_by_name_and_unknown_dashboard(demo: tuple[DemoStack, Path]) -> None:
    _, config = demo
    code, out, err = await panels("--config", str(config), "-d", "infra", "--json")
    rows = json.loads(out)
    assert code == expected_exit(rows), err
    assert [r["key"] for r in rows] == ["cpu", "memory", "disk", "disk-read", "disk-write",
                                        "net-in", "net-out",
                                        "web1-cpu", "web1-memory", "web1-net-in"]
    assert all(r["value"] is not None for r in rows)
    assert 0 <= rows[0]["value"] <= 100

    code, out, err = await panels("--config", str(config), "-d", "9")
    assert code == 2
    assert out == ""
    assert ("no dashboard 9; dashboards: 1 Application overview · 2 Database performance · "
            "3 Business metrics · 4 Infrastructure") in err


async def test_ready_made_boards_for_a_config_without_any(tmp_path: Path,
                                                         demo: tuple[DemoStack, Path]) -> None:
    stack, _ = demo
    config = tmp_path / "bare.toml"
    config.write_text(f'''
[[targets]]
name = "api-metrics"
kind = "prometheus"
url = "{stack.base_url}/metrics"
[targets.metrics]
p95_ms = 'histogram_quantile(0.95, http_request_duration_seconds) * 1000'
payment_failed_pct = 'ratio(payments_total{{result="failed"}}, payments_total) * 100'
active_users = 'active_users'

[[targets]]
name = "db"
kind = "postgres"
dsn = "{PG}"
[targets.queries]
tables = "SELECT count(*) FROM pg_class"
''', "utf-8")
    code, out, err = await panels("--config", str(config), "--json")
    rows = json.loads(out)
    assert code == expected_exit(rows), err
    boards = [name for r in rows for name in r["dashboards"]]
    assert set(boards) == {"Application overview", "Database performance", "Business metrics"}
    by_series = {(r["target"], r["metric"]): r for r in rows}
    assert by_series[("api-metrics", "p95_ms")]["warn"] == 200.0
    assert by_series[("api-metrics", "payment_failed_pct")]["crit"] == 2.0
    assert by_series[("api-metrics", "active_users")]["value"] > 0
    tables = by_series[("db", "tables")]
    assert tables["dashboards"] == ["Business metrics"]
    assert tables["value"] > 50  # the custom query ran on the real server
    assert by_series[("db", "pool_usage_pct")]["value"] is not None
