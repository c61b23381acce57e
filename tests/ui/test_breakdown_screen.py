"""The breakdown screen at 80x24 on real scrapes of a prometheus_client exporter.

The exporter runs on 127.0.0.1 in the test's loop; the probe's real results are recorded
into the engine (nothing polls), and the screen, opened with `b` from the target's detail
view, must list the routes by rate, mark error % by the playbook's thresholds, sort, filter,
switch to the status-class table and follow a new scrape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from console.app import OpsConsoleApp
from console.engine.config.schema import HttpTarget, PrometheusTarget, Settings
from console.screens.breakdown import BreakdownScreen, error_level, fmt_error_pct
from console.screens.detail import DetailScreen
from tests.promtools import Exporter, serve_exporter
from tests.ui.apptools import screen_text, wait_for, wait_screen, wait_started


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    async with serve_exporter(Exporter()) as e:
        yield e


def table_rows(text: str, names: list[str]) -> list[str]:
    """The routes of `names` in the order the screen shows them."""
    found = []
    for line in text.splitlines():
        for name in names:
            if f" {name} " in f" {line} " and name not in found:
                found.append(name)
    return found


def test_error_marks_follow_the_playbook() -> None:
    assert [error_level(v) for v in (0.0, 0.49, 0.5, 5.0, 5.01, None)] == [
        "ok", "ok", "warn", "warn", "crit", ""]
    assert fmt_error_pct(0.1234) == "✓ 0.12"
    assert fmt_error_pct(2.5) == "! 2.50"
    assert fmt_error_pct(12.345) == "✖ 12.3"
    assert fmt_error_pct(100.0) == "✖ 100"
    assert fmt_error_pct(None) == "—"


async def test_breakdown_screen_sorts_filters_switches_and_follows(
    exporter: Exporter, ui_env: None
) -> None:
    settings = Settings(targets=[
        PrometheusTarget(name="api", url=exporter.url, interval=60.0),
        HttpTarget(name="web", url="http://127.0.0.1:9/health", interval=60.0),
    ])
    app = OpsConsoleApp(settings=settings, history=False, poll=False)
    exporter.hit("/api/users", 200, 1, 0.01)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_started(pilot)
        state = app.scheduler._states["api"]
        app.scheduler.record(state, await state.probe.check())
        # Between the two scrapes: users busiest and clean; orders failing 20 %; search 2 %.
        exporter.hit("/api/users", 200, 300, 0.02)
        exporter.hit("/api/orders", 200, 40, 0.3)
        exporter.hit("/api/orders", 503, 10, 0.3)
        exporter.hit("/api/search", 200, 98, 0.07)
        exporter.hit("/api/search", 500, 2, 0.07)
        app.scheduler.record(state, await state.probe.check())

        app.push_screen(DetailScreen("web"))
        await pilot.pause()
        assert app.screen.check_action("breakdown", ()) is False  # http: no breakdowns
        app.pop_screen()
        app.push_screen(DetailScreen("api"))
        await pilot.pause()
        assert app.screen.check_action("breakdown", ()) is True
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BreakdownScreen), 5,
                       "breakdown screen")
        screen: Any = app.screen
        routes = ["/api/users", "/api/search", "/api/orders"]
        # the table and its tab line are separate widgets, painted in the same tick or, on a
        # loaded machine, one apart (seen once): wait for the whole screen
        text = await wait_screen(pilot, lambda t: "/api/orders" in t and "[1] ENDPOINTS" in t,
                                 "the endpoints table and its tabs")
        assert "[1] ENDPOINTS" in text
        assert "[2] status" in text
        assert "sorted by req/s ↓" in text
        assert table_rows(text, routes) == routes  # by rate: 300, 100, 50
        lines = text.splitlines()
        header = next(line for line in lines if "req/s" in line and "p99 ms" in line)
        orders = next(line for line in lines if " /api/orders " in line)
        users = next(line for line in lines if " /api/users " in line)
        assert "✖ 20.0" in orders  # 10 of 50 failed: over the 5 % line
        assert "✓ 0.00" in users
        assert "! 2.00" in next(line for line in lines if " /api/search " in line)
        # Numbers are right-aligned under their headers: p99 ends where its header ends.
        end = header.index("p99 ms") + len("p99 ms")
        assert orders[:end].rstrip() == orders[:end]
        assert orders[end - 3 : end].strip()  # a value sits flush against the right edge
        assert len(max(lines, key=len)) <= 80

        await pilot.press("o", "o")  # share, then error %
        text = await wait_screen(pilot, lambda t: "sorted by err % ↓" in t, "sort by err %")
        assert table_rows(text, routes) == ["/api/orders", "/api/search", "/api/users"]
        await pilot.press("O")
        text = await wait_screen(pilot, lambda t: "sorted by err % ↑" in t, "reversed")
        assert table_rows(text, routes) == ["/api/users", "/api/search", "/api/orders"]

        await pilot.press("slash", *"search", "enter")
        await wait_for(pilot, lambda: len(screen._rows) == 1, 5, "filtered to one row")
        text = screen_text(app)
        assert "filter: search" in text
        assert table_rows(text, routes) == ["/api/search"]
        await pilot.press("escape")  # clears the filter, stays
        assert isinstance(app.screen, BreakdownScreen)
        assert len(screen._rows) == 3

        await pilot.press("tab")
        text = await wait_screen(pilot, lambda t: "[2] STATUS" in t, "the status table")
        assert table_rows(text, ["2xx", "5xx"]) == ["2xx", "5xx"]
        five = next(line for line in text.splitlines() if " 5xx " in line)
        assert five.rstrip().endswith("2.7")  # share: 12 of 450
        assert "err %" not in text  # the default status table has no error column

        # A third scrape: the table follows it on the app's refresh.
        exporter.hit("/api/new-thing", 200, 5000, 0.01)
        app.scheduler.record(state, await state.probe.check())
        await pilot.press("shift+tab")
        text = await wait_screen(pilot, lambda t: "/api/new-thing" in t, "live refresh")
        assert "[1] ENDPOINTS" in text
        assert table_rows(text, ["/api/new-thing", "/api/users"])[0] == "/api/new-thing"

        await pilot.press("escape")
        assert isinstance(app.screen, DetailScreen)
