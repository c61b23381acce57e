"""End to end: a real Scheduler polls a real local target, rules fire, the outbox delivers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from console.engine.alerting.notify import Notifier
from console.engine.alerting.service import AlertService
from console.engine.alerting.statefile import read_state
from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths
from console.engine.scheduler import Scheduler
from tests.alerttools import until, webhook_config


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"up": True, "hooks": []}

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200 if state["up"] else 503, text="{}")

    async def hook(request: web.Request) -> web.Response:
        state["hooks"].append((time.monotonic(), orjson.loads(await request.read())))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    s = web.TCPSite(runner, "127.0.0.1", 0)
    await s.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", state
    await runner.cleanup()


async def test_target_down_fires_and_resolves_through_the_outbox(
        tmp_path: Path, site: tuple[str, dict[str, Any]]) -> None:
    base, state = site
    settings = load_config_text(webhook_config(base, success_threshold=2))
    engine = Scheduler(settings)
    notifier = Notifier(tmp_path / "outbox.sqlite", settings.alerting.receivers)
    service = AlertService(engine, notifier=notifier, tick=0.2)
    seen: list[str] = []
    service.subscribe(lambda notes: seen.extend(n.transition for n in notes))
    await engine.start()
    await service.start()
    try:
        await asyncio.sleep(0.6)
        assert state["hooks"] == []  # healthy: nothing to say
        state["up"] = False
        await until(lambda: len(state["hooks"]) == 1)
        body = state["hooks"][0][1]
        assert (body["transition"], body["rule"], body["severity"]) == ("firing", "api-down",
                                                                         "P0")
        a = service.alerts.get("api-down", "api")
        assert a is not None
        assert a.detect_s is not None
        assert 0.1 <= a.detect_s <= 2.0  # two polls 200 ms apart (generous for a loaded box)
        state["up"] = True
        await until(lambda: len(state["hooks"]) == 2)
        assert state["hooks"][1][1]["transition"] == "resolved"
        assert state["hooks"][1][1]["key"] == "api-down/api/resolved/1"
        assert seen == ["firing", "resolved"]
    finally:
        await service.stop()
        await engine.stop()


async def test_restart_keeps_alert_state_and_sends_nothing_twice(
        tmp_path: Path, site: tuple[str, dict[str, Any]]) -> None:
    base, state = site
    settings = load_config_text(webhook_config(base))

    async def console(seconds: float | None, cond: Any = None) -> AlertService:
        engine = Scheduler(settings)
        service = AlertService(engine, tick=0.2, paths=DataPaths(tmp_path),
                               notifier=Notifier(tmp_path / "outbox.sqlite",
                                                 settings.alerting.receivers))
        await engine.start()
        await service.start()
        try:
            if cond is not None:
                await until(cond)
            if seconds:
                await asyncio.sleep(seconds)
        finally:
            await service.stop()
            await engine.stop()
        return service

    state["up"] = False
    first = await console(0.2, lambda: len(state["hooks"]) == 1)
    assert first.alerts.get("api-down", "api").incident == 1  # type: ignore[union-attr]
    # restarted while the target is still down: the same incident, no second "firing"
    second = await console(1.0)
    assert [h[1]["key"] for h in state["hooks"]] == ["api-down/api/firing/1"]
    assert second.alerts.get("api-down", "api").state.value == "firing"  # type: ignore[union-attr]
    state["up"] = True
    await console(0.2, lambda: len(state["hooks"]) == 2)
    assert state["hooks"][1][1]["key"] == "api-down/api/resolved/1"


async def test_tick_leaves_out_targets_a_result_just_evaluated() -> None:
    """The periodic tick evaluates silent targets (no data, timers) but not one whose own
    result evaluated it within the tick: with 1 s targets that halves the rule work."""
    from console.engine.model import CheckResult, Status

    settings = load_config_text('''
[[targets]]
name = "busy"
kind = "http"
url = "http://127.0.0.1:9/"
interval = "1s"

[[targets]]
name = "silent"
kind = "http"
url = "http://127.0.0.1:9/"
interval = "1s"
''')
    engine = Scheduler(settings)
    await engine.start(poll=False)
    service = AlertService(engine, tick=0.2)
    await service.start()
    ruleset = service.core.ruleset
    ticks: list[set[str]] = []
    real = ruleset.evaluate

    def spy(store: Any, now: float, *, target: str | None = None,
            skip: Any = (), present: Any = ()) -> Any:
        out = real(store, now, target=target, skip=skip, present=present)
        if target is None:
            ticks.append({e.target for e in out})
        return out

    ruleset.evaluate = spy  # type: ignore[method-assign]
    try:
        for name in ("busy", "silent"):  # one result each, then only `busy` keeps reporting
            engine.record(engine._states[name], CheckResult(
                target=name, kind="http", status=Status.UP, started_at=time.time(),
                latency_ms=1.0))
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            engine.record(engine._states["busy"], CheckResult(
                target="busy", kind="http", status=Status.UP, started_at=time.time(),
                latency_ms=1.0))
            await asyncio.sleep(0.05)
        assert len(ticks) >= 4
        assert all("busy" not in t for t in ticks[1:])  # always fresh from its own results
        assert all("silent" in t for t in ticks[1:])  # evaluated by the tick alone
        await until(lambda: (a := service.alerts.get("no-data", "silent")) is not None
                    and a.state.value != "inactive", 6.0)  # its silence is noticed
        busy = service.alerts.get("no-data", "busy")
        assert busy is not None
        assert busy.state.value == "inactive"
    finally:
        await service.stop()
        await engine.stop()


async def test_a_transition_is_saved_off_the_event_loop(
        tmp_path: Path, site: tuple[str, dict[str, Any]]) -> None:
    """alerts.json is written (fsync and all) by a worker thread, never on the loop the UI
    runs on, and holds the firing alert moments after the transition."""
    import threading

    base, state = site
    settings = load_config_text(webhook_config(base))
    engine = Scheduler(settings)
    path = tmp_path / "alerts.json"
    # a tick of 5 s: no tick writes the state within the test's window
    service = AlertService(engine, tick=5.0, paths=DataPaths(path.parent))
    writers: list[str] = []
    real = service.write_state

    def spy(change: tuple[str, bytes]) -> None:
        writers.append(threading.current_thread().name)
        real(change)

    service.write_state = spy  # type: ignore[method-assign]
    await engine.start()
    await service.start()
    try:
        state["up"] = False
        await until(lambda: (a := service.alerts.get("api-down", "api")) is not None
                    and a.state.value == "firing")

        def saved_firing() -> bool:
            try:  # the snapshot plus the change log: what a restart would load
                saved = read_state(path)
            except (OSError, ValueError):
                return False
            return saved is not None and any(
                r["rule"] == "api-down" and r["state"] == "firing" for r in saved["alerts"])

        await until(saved_firing, 3.0)
        assert writers
        assert threading.main_thread().name not in writers
    finally:
        await service.stop()
        await engine.stop()
