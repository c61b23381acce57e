"""Lighthouse targets: the real Lighthouse CLI (npm, installed by `.ci/run` into
.ci/lighthouse) with Debian's Chromium against the demo frontend; Lighthouse CI reports;
a missing CLI, a missing Chromium, a page that does not load, and a hang, each a clear
target error. The real runs take tens of seconds each: they are marked slow."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from console.demo.stack import DemoStack
from console.engine.config.dashboards import APPLICATION, with_playbook_dashboards
from console.engine.config.loader import load_config_text
from console.engine.config.schema import LighthouseTarget
from console.engine.model import Status
from console.engine.probes.lighthouse import LighthouseProbe, parse_report

ROOT = Path(__file__).resolve().parents[2]
LIGHTHOUSE = ROOT / ".ci" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = "/usr/bin/chromium"


def _need_real_lighthouse() -> None:
    """These tests need the real CLI and browser: missing is a failure, never a skip."""
    assert LIGHTHOUSE.exists(), (f"{LIGHTHOUSE} is missing: run `npm ci --prefix "
                                 ".ci/lighthouse` (.ci/run does)")
    assert os.access(CHROMIUM, os.X_OK), "Chromium is missing: apt-get install chromium"


@pytest.fixture
async def frontend() -> AsyncIterator[DemoStack]:
    async with DemoStack(port=None) as stack:
        yield stack


def _target(**kw: object) -> LighthouseTarget:
    base: dict[str, object] = {"name": "frontend-perf", "lighthouse": str(LIGHTHOUSE),
                               "chromium": CHROMIUM, "timeout": 120}
    base.update(kw)
    return LighthouseTarget.model_validate(base)


@pytest.mark.slow
async def test_a_real_lighthouse_run_on_the_demo_frontend(frontend: DemoStack,
                                                          tmp_path: Path) -> None:
    _need_real_lighthouse()
    probe = LighthouseProbe(_target(url=frontend.frontend_url, form_factor="desktop"))
    result = await probe.check()
    assert result.error is None, result.error
    assert result.status in (Status.UP, Status.DEGRADED)
    m = result.metrics
    assert 0 <= m["performance_score"] <= 100
    for name in ("fcp_ms", "lcp_ms", "tti_ms", "tbt_ms"):
        assert m[name] >= 0, name
    assert 0 <= m["cls"] < 1
    assert m["run_s"] > 0
    assert m["run_cpu_s"] > 0
    assert result.details["final_url"].startswith(frontend.frontend_url.rstrip("/"))
    # the run's scratch directory (Chromium's profile) is gone with it
    assert probe.scratch is not None
    assert not probe.scratch.exists()


@pytest.mark.slow
async def test_a_page_that_does_not_load_is_a_clear_error(tmp_path: Path) -> None:
    _need_real_lighthouse()
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    probe = LighthouseProbe(_target(url=f"http://127.0.0.1:{port}/", timeout=90))
    result = await probe.check()
    assert result.status == Status.DOWN
    assert result.error is not None
    assert "could not" in result.error.lower() or "exited" in result.error.lower()


async def test_a_run_past_its_timeout_is_killed_with_its_browser(tmp_path: Path) -> None:
    """The whole process group goes: a fake CLI that never ends (and its child) are gone."""
    fake = tmp_path / "lighthouse"
    pidfile = tmp_path / "child.pid"
    fake.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    fake.chmod(0o755)
    probe = LighthouseProbe(_target(url="http://127.0.0.1:9/", lighthouse=str(fake),
                                    timeout=2))
    result = await probe.check()
    assert result.status == Status.DOWN
    assert "did not finish within 2s" in (result.error or "")
    child = int(pidfile.read_text())
    # SIGKILL went to the whole group before the probe returned: the child is gone, or a
    # zombie waiting for init to reap it
    stat = Path(f"/proc/{child}/stat")
    assert not stat.exists() or stat.read_text().split()[2] in ("Z", "X")  # noqa: ASYNC240
    assert probe.scratch is not None
    assert not probe.scratch.exists()  # noqa: ASYNC240


async def test_missing_cli_or_chromium_is_a_target_error(tmp_path: Path) -> None:
    r = await LighthouseProbe(_target(url="http://127.0.0.1:9/",
                                      lighthouse="no-such-lighthouse")).check()
    assert r.status == Status.DOWN
    assert "Lighthouse CLI 'no-such-lighthouse' was not found" in (r.error or "")
    r = await LighthouseProbe(_target(url="http://127.0.0.1:9/", lighthouse="sh",
                                      chromium=str(tmp_path / "chromium"))).check()
    assert r.status == Status.DOWN
    assert "Chromium not found" in (r.error or "")


async def test_lighthouse_ci_reports_are_read(tmp_path: Path) -> None:
    reports = tmp_path / ".lighthouseci"
    reports.mkdir()
    lhr = {"lighthouseVersion": "12.8.2", "finalDisplayedUrl": "https://app.example.com/",
           "fetchTime": "2026-12-04T10:00:00.000Z",
           "categories": {"performance": {"score": 0.82}},
           "audits": {"first-contentful-paint": {"numericValue": 1800.5},
                      "largest-contentful-paint": {"numericValue": 2600},
                      "interactive": {"numericValue": 3900},
                      "total-blocking-time": {"numericValue": 150},
                      "cumulative-layout-shift": {"numericValue": 0.02}}}
    (reports / "lhr-1.json").write_bytes(b"{}")
    newest = reports / "lhr-2.json"
    newest.write_bytes(orjson.dumps(lhr))
    os.utime(reports / "lhr-1.json", (time.time() - 100, time.time() - 100))
    r = await LighthouseProbe(_target(reports=str(reports / "lhr-*.json"))).check()
    assert r.status == Status.DEGRADED  # below the playbook's targets
    assert r.metrics["performance_score"] == 82.0
    assert r.metrics["fcp_ms"] == 1800.5
    assert any("performance_score 82" in x for x in r.reasons)
    assert any("fcp_ms" in x for x in r.reasons)
    none = await LighthouseProbe(_target(reports=str(tmp_path / "nothing-*.json"))).check()
    assert none.status == Status.DOWN
    assert "no Lighthouse report matches" in (none.error or "")


def test_a_runtime_error_in_a_report_is_the_error() -> None:
    data = orjson.dumps({"runtimeError": {"code": "ERRORED_DOCUMENT_REQUEST",
                                          "message": "Lighthouse was unable to reliably load "
                                          "the page you requested. (Status code: 500)"}})
    metrics, _, error = parse_report(data)
    assert metrics == {}
    assert error is not None
    assert "Status code: 500" in error
    assert parse_report(b"<html>")[2] is not None


def test_the_application_board_carries_the_playbooks_frontend_targets() -> None:
    settings = with_playbook_dashboards(load_config_text('''
[[targets]]
name = "frontend-perf"
kind = "lighthouse"
url = "http://127.0.0.1:18781/"
'''))
    board = next(d for d in settings.dashboards if d.name == APPLICATION)
    panels = {p.metric: p for p in settings.panels if p.key in board.panels}
    assert panels["performance_score"].warn == 90
    assert panels["performance_score"].lower_is_better is False
    assert panels["fcp_ms"].warn == 1500
    assert panels["tti_ms"].warn == 3000
    assert panels["cls"].warn == 0.1
    assert {"lcp_ms", "tbt_ms"} <= set(panels)
    assert settings.target("frontend-perf").interval == 900  # 15 min by default

