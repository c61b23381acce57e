"""A `promql` target's detail view: the chart is the store's own range query (not the
console's memory), with the step fitted to the chart's width; the engine and its notes are
said; `m` charts the next metric and `b` opens its per-label table."""

from __future__ import annotations

from typing import Any

from console.app import OpsConsoleApp
from console.engine.config.schema import PromqlTarget, Settings
from console.engine.probes.promapi import MAX_POINTS, series_key
from console.screens.breakdown import BreakdownScreen
from console.screens.detail import DetailScreen
from tests.promservers import RemoteStores
from tests.ui.apptools import wait_for, wait_screen
from widgets.series_chart import SeriesChart

METRICS = {"per_host": "sum by (host) (demo_cpu)", "total": "sum(demo_cpu)"}


async def test_remote_chart_notes_and_breakdown(remote_stores: RemoteStores,
                                                ui_env: None) -> None:
    settings = Settings(targets=[PromqlTarget(name="remote", url=remote_stores.vm.url,
                                              metrics=METRICS, interval=60.0)])
    app = OpsConsoleApp(settings=settings, history=False, poll=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.scheduler is not None and app.scheduler.names(), 15,
                       "engine started")
        assert app.scheduler is not None
        state = app.scheduler._states["remote"]
        app.scheduler.record(state, await state.probe.check())
        app.push_screen(DetailScreen("remote"))
        screen: Any = app.screen
        text = await wait_screen(pilot, lambda t: "answered by VictoriaMetrics" in t,
                                 "the engine named", within=10)
        assert "note: VictoriaMetrics hides samples newer than 1s" in text
        await wait_for(pilot, lambda: screen.remote is not None
                       and screen.query_one(SeriesChart).has_data, 15, "the remote chart")
        data = screen.remote
        assert data["metric"] == "per_host"
        points = (data["end"] - data["start"]) / data["step"] + 1
        assert points <= MAX_POINTS
        width = screen.query_one(SeriesChart).size.width
        assert points <= 2 * width + 2  # fitted to the chart, not the store's resolution
        answer = remote_stores.vm.query_range(METRICS["per_host"], data["start"], data["end"],
                                              data["step"])
        assert {s["key"]: s["v"].tolist() for s in data["series"]} == {
            f"per_host{series_key(a['metric'])}": [float(v) for _, v in a["values"]]
            for a in answer}
        await wait_screen(pilot, lambda t: "per_host 5 min · step" in t, "the chart title")

        await pilot.press("m")
        await wait_for(pilot, lambda: screen.remote["metric"] == "total", 15,
                       "the next metric charted")

        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BreakdownScreen), 5,
                       "breakdown screen")
        text = await wait_screen(pilot, lambda t: "per_host" in t and "web-1" in t,
                                 "the per-host table")
        rows = [line for line in text.splitlines()
                if any(f" {h} " in f" {line} " for h in RemoteStores.HOSTS)]
        hosts = [next(h for h in RemoteStores.HOSTS if f" {h} " in f" {line} ")
                 for line in rows]
        # largest first, by the store's own numbers
        at = float(state.last.details["eval_time"])
        ranked = sorted(remote_stores.vm.query(METRICS["per_host"], at),
                        key=lambda a: -float(a["value"][1]))
        assert hosts == [a["metric"]["host"] for a in ranked]
