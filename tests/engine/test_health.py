"""The console's own schedule: overload is detected with hysteresis, said once with the lag
and the cause, and a check starved by the console's own lag is neither down nor no-data."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from console.engine.alerting.lifecycle import AlertState
from console.engine.alerting.service import SELF_HEALTH_RULE, AlertService
from console.engine.config.loader import load_config_text
from console.engine.health import CALM, LAG_ON, STALLED, WINDOW, LoopHealth
from console.engine.model import CheckResult, Status
from console.engine.scheduler import Scheduler, start_grid
from tests.alerttools import dead_api_config, until

Handler = Callable[[web.Request], Awaitable[web.Response]]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_overload_starts_once_and_ends_after_a_calm_spell() -> None:
    clock = Clock()
    cpu = [0.0]
    h = LoopHealth(clock=clock, cpu=lambda: cpu[0])
    seen: list[bool] = []
    h.subscribe(seen.append)
    for _ in range(20):  # a steady loop: 10 ms lags
        clock.t += 0.1
        cpu[0] += 0.02
        h.note_lag(0.01)
    assert not h.overloaded
    assert seen == []
    clock.t += 20
    h.note_lag(2.0)  # one stall (a screen being built), past the start-up grace: no overload
    assert not h.overloaded
    assert seen == []
    for _ in range(60):  # calm again, the stall out of the window
        clock.t += 0.1
        h.note_lag(0.01)
    for _ in range(30):  # CPU-bound: 0.8 s lags, a whole core used
        clock.t += 0.9
        cpu[0] += 0.9
        h.note_lag(0.8)
    assert h.overloaded
    assert seen == [True]
    assert h.episodes == 1
    h.targets, h.checks_per_s = 2000, 2000.0
    text = h.describe()
    assert "0.8s" in text
    assert "CPU-bound" in text
    assert "2000 targets" in text
    for _ in range(int(CALM / 0.1) - 5):  # calm, but not for long enough yet
        clock.t += 0.1
        cpu[0] += 0.01
        h.note_lag(0.01)
    clock.t += 1.0
    h.note_lag(0.3)  # a wobble above LAG_OFF restarts the calm spell
    assert h.overloaded
    assert seen == [True]
    for _ in range(int(CALM / 0.1) + 60):
        clock.t += 0.1
        cpu[0] += 0.01
        h.note_lag(0.01)
    assert not h.overloaded
    assert seen == [True, False]


def test_a_starved_loop_is_overloaded_though_its_probes_are_few() -> None:
    """Starved of CPU, the loop wakes so rarely that three probes never share the window:
    measured, lags of ~80 s and 351 no-data pages before the console knew it was behind.
    Lags that add up to STALLED seconds in the window are an overload on their own."""
    clock = Clock()
    h = LoopHealth(clock=clock, cpu=lambda: 0.0)
    clock.t += 60  # past the start-up grace
    h.note_lag(2.0)  # one stall: still not an overload (the other test's case)
    assert not h.overloaded
    clock.t += 2.6
    h.note_lag(2.5)  # a second late wake-up inside the window: 4.5 s of lag in 5 s
    assert 2.0 < STALLED <= 2.0 + 2.5  # the premise: one stall is not enough, two are
    assert h.overloaded
    h2 = LoopHealth(clock=clock, cpu=lambda: 0.0)
    clock.t += 60
    h2.note_lag(78.0)  # one wake-up in 78 s
    assert h2.overloaded
    assert "78.0s" in h2.describe()


def test_silence_is_not_judged_while_the_loop_lags_even_in_the_grace() -> None:
    """`lagging()` (what no-data waits for) holds from the first stall, start-up included,
    and lets go once the window has passed without one; the notice (`overloaded`) does not
    fire for it."""
    clock = Clock()
    h = LoopHealth(clock=clock, cpu=lambda: 0.0)
    assert not h.lagging()
    h.note_lag(LAG_ON + 0.3)  # at start-up: judged for silence, not for the notice
    assert h.lagging()
    assert not h.overloaded
    for _ in range(int(WINDOW / 0.1) + 2):
        clock.t += 0.1
        h.note_lag(0.01)
    assert not h.lagging()


@contextlib.asynccontextmanager
async def local_site(handler: Handler) -> AsyncIterator[str]:
    """A local HTTP server answering GET / with `handler`; yields its URL."""
    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.fixture
async def slow_site() -> AsyncIterator[str]:
    """Answers after 2 s: longer than the test target's 0.5 s timeout."""
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2.0)
        return web.Response(text="late")

    async with local_site(slow) as url:
        yield url


def _config(url: str) -> str:
    return f'''
[[targets]]
name = "slow"
kind = "http"
url = "{url}"
interval = "10s"
timeout = "500ms"
'''


async def test_a_check_starved_by_the_consoles_own_lag_is_not_down(slow_site: str) -> None:
    sched = Scheduler(load_config_text(_config(slow_site)))
    await sched.start(poll=False)
    sched.health.start()
    try:
        state = sched._states["slow"]
        # a genuine timeout, the loop free: down, recorded
        genuine = await sched.check_target(state)
        assert genuine.status == Status.DOWN
        assert sched.store.latest("slow:up") is not None
        before = sched.store.latest("slow:up")
        # the loop stalls for 1.2 s right after the check starts (a blocking step)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, time.sleep, 1.2)
        starved = await sched.check_target(state)
        assert starved.status == Status.UNKNOWN
        assert starved.error is not None
        assert "not checked on time" in starved.error
        assert sched.store.latest("slow:up") == before  # nothing recorded for it
        assert sched.health.late_checks == 1
        assert state.status == Status.DOWN  # the board keeps what it last knew
    finally:
        await sched.stop()


async def test_overload_is_said_once_as_a_p3_self_health_notice() -> None:
    sched = Scheduler(load_config_text(dead_api_config()))
    service = AlertService(sched)
    got: list[list[object]] = []
    service.subscribe(lambda notes: got.append(list(notes)))
    await service.start()
    try:
        h = sched.health
        h._started -= 60  # past the start-up grace period
        for _ in range(10):
            h.note_lag(0.9)
        assert h.overloaded
        for _ in range(10):  # still overloaded: nothing more
            h.note_lag(0.9)
        notes = [n for batch in got for n in batch]
        assert len(notes) == 1
        n = notes[0]
        assert (n.rule, n.transition, n.severity) == (SELF_HEALTH_RULE, "firing", "P3")  # type: ignore[attr-defined]
        assert "behind its own schedule by up to 0.9s" in n.detail  # type: ignore[attr-defined]
    finally:
        await service.stop()
        await sched.stop()


def test_gc_tuning_freezes_start_up_and_raises_the_young_threshold() -> None:
    """In its own process: the settings are process-wide (the console's, never a test run's)."""
    import subprocess
    import sys

    code = ("import gc; from console.engine.gctune import THRESHOLDS, tune_for_long_run; "
            "before = gc.get_freeze_count(); tune_for_long_run(); "
            "print(before, gc.get_freeze_count() > 1_000, gc.get_threshold() == THRESHOLDS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["0", "True", "True"]


QUIET_CONFIG = '''
[alerting]
default_rules = false

[[targets]]
name = "quiet"
kind = "http"
url = "http://127.0.0.1:9/"
interval = "1s"

[[rules]]
name = "gone"
severity = "P2"
expr = "absent(up, 3)"
failure_threshold = 1
success_threshold = 1
'''


@contextlib.asynccontextmanager
async def quiet_target() -> AsyncIterator[tuple[Scheduler, AlertService]]:
    """One target that is never polled (its results are fed by the test) and a no-data
    rule on it that fires and resolves on one observation; the alert tick every 50 ms."""
    sched = Scheduler(load_config_text(QUIET_CONFIG))
    service = AlertService(sched, tick=0.05)
    await sched.start(poll=False)
    await service.start()
    try:
        yield sched, service
    finally:
        await service.stop()
        await sched.stop()


def gone_state(service: AlertService) -> AlertState | None:
    a = service.alerts.get("gone", "quiet")
    return a.state if a is not None else None


def report(sched: Scheduler, started_at: float) -> None:
    """A result of the quiet target, as its probe would hand it over."""
    sched.record(sched._states["quiet"], CheckResult(
        target="quiet", kind="http", status=Status.UP, started_at=started_at, latency_ms=1.0))


async def test_the_tick_leaves_out_targets_the_console_checks_late() -> None:
    """No-data (`absent`) on the tick: not for a target whose check the console is late
    with; it fires as soon as the console is on time and the target is still silent."""
    import math

    async with quiet_target() as (sched, service):
        state = sched._states["quiet"]
        sched.store.record("quiet:up", time.time() - 60, 1.0)  # silent for a minute
        state.late_until = time.monotonic() + 3600  # ... because we are late with it
        await asyncio.sleep(20 * service.tick_s)  # a negative needs a span: twenty ticks
        assert service.alerts.get("gone", "quiet") is None
        state.late_until = -math.inf  # on time again, still silent: no-data fires
        await until(lambda: gone_state(service) == AlertState.FIRING, 5.0)


async def test_after_a_stall_neither_the_tick_nor_a_result_judges_silence() -> None:
    """A loop blocked for longer than a no-data rule's span: the tick that runs first after
    it (before any lag probe: none runs here) notes its own lateness and leaves no-data
    alone, and a result handled meanwhile reads as present; once the loop keeps time
    again, the silent target's no-data fires."""
    async with quiet_target() as (sched, service):
        stalled = asyncio.Event()

        def stall() -> None:
            sched.store.record("quiet:up", time.time(), 1.0)  # its last sample, just now
            time.sleep(3.5)  # the loop blocked past absent(up, 3)'s 3 s
            stalled.set()

        asyncio.get_running_loop().call_soon(stall)
        await stalled.wait()
        assert not sched.health._task  # no lag probe: the tick must see the stall itself
        report(sched, time.time() - 3.4)  # handled now, as old as the stall (our delay)
        await asyncio.sleep(20 * service.tick_s)  # a negative needs a span: twenty ticks
        assert sched.health.lagging()
        a = service.alerts.get("gone", "quiet")  # the result read "present", nothing failed
        assert a is None or a.state == AlertState.INACTIVE
        assert a is None or a.fails == 0
        # calm again, still silent: it fires
        await until(lambda: gone_state(service) == AlertState.FIRING, WINDOW + 5)


async def test_no_data_resolves_on_the_results_that_end_the_silence() -> None:
    """A target back from silence resolves its no-data through its own results: the tick
    leaves a target that reports every interval to them, so they must judge absent() on
    what they reported (as present), not skip it."""
    async with quiet_target() as (sched, service):
        sched.store.record("quiet:up", time.time() - 60, 1.0)  # silent for a minute
        await until(lambda: gone_state(service) == AlertState.FIRING, 5.0)
        deadline = time.monotonic() + 5  # back: a result every 50 ms (fresher than a tick)
        while gone_state(service) != AlertState.RESOLVED and time.monotonic() < deadline:
            report(sched, time.time())
            await asyncio.sleep(0.05)
        assert gone_state(service) == AlertState.RESOLVED


def test_checks_start_in_shared_slots_only_while_the_load_is_light() -> None:
    """A few checks start together (warm caches: about half the CPU per check at 100
    targets); at more than BATCH_UP_TO checks a second they start as their phases fall."""
    from console.engine.scheduler import BATCH, BATCH_UP_TO, GRID_MAX_S, on_grid, start_grid

    assert start_grid(100.0) == pytest.approx(BATCH / 100.0)  # BATCH checks per slot
    assert start_grid(5.0) == GRID_MAX_S  # few checks: slots at most 100 ms apart
    assert start_grid(0.0) == GRID_MAX_S
    assert start_grid(BATCH_UP_TO + 1) == 0.0
    grid = start_grid(100.0)
    starts = [on_grid(1000.0 + i * 0.0071, grid) for i in range(100)]  # phases over 0.7 s
    assert all(s >= 1000.0 + i * 0.0071 for i, s in enumerate(starts))  # never early
    assert all(s - (1000.0 + i * 0.0071) < grid for i, s in enumerate(starts))
    assert len(set(starts)) <= 0.71 / grid + 2  # a slot per `grid`, not one per check
    assert on_grid(1000.0123, 0.0) == 1000.0123


async def test_the_start_grid_follows_the_configured_load() -> None:
    """Known before any polling task starts (`start`), and again after a reload."""
    def config(n: int, interval: str) -> str:
        return "".join(f'[[targets]]\nname = "t{i}"\nkind = "http"\n'
                       f'url = "http://127.0.0.1:9/"\ninterval = "{interval}"\n'
                       for i in range(n))

    sched = Scheduler(load_config_text(config(40, "1s")))
    assert sched.grid == 0.0  # nothing known: no slots
    await sched.start(poll=False)
    try:
        assert sched.grid == pytest.approx(start_grid(40.0))
        await sched.apply(load_config_text(config(150, "250ms")))  # 600 checks a second
        assert sched.grid == 0.0
    finally:
        await sched.stop()


async def test_checks_of_one_slot_are_recorded_after_all_of_them_answered() -> None:
    """With `settle`, a check's result is recorded one loop turn after its response: the
    checks of a slot all take their response times before any of them runs the rules."""
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async with local_site(ok) as url:
        await _check_three_in_one_slot(url)


async def _check_three_in_one_slot(url: str) -> None:
    targets = "".join(f'[[targets]]\nname = "t{i}"\nkind = "http"\nurl = "{url}"\n'
                      for i in range(3))
    sched = Scheduler(load_config_text(targets))
    await sched.start(poll=False)
    order: list[str] = []
    sched.subscribe(lambda r: order.append(f"recorded {r.target}"))
    try:
        states = [sched._states[f"t{i}"] for i in range(3)]
        for s in states:
            probe = s.probe
            assert probe is not None
            check = probe.check

            async def timed(check=check, name=s.target.name):  # type: ignore[no-untyped-def]
                result = await check()
                order.append(f"answered {name}")
                return result

            probe.check = timed  # type: ignore[method-assign]
        results = await asyncio.gather(*(sched.check_target(s, settle=True) for s in states))
        assert [r.status for r in results] == [Status.UP] * 3
        assert sorted(order[:3]) == ["answered t0", "answered t1", "answered t2"]
        assert sorted(order[3:]) == ["recorded t0", "recorded t1", "recorded t2"]
    finally:
        await sched.stop()


async def test_a_reload_drops_the_series_of_every_removed_target_and_only_theirs() -> None:
    """Removed together in one pass over the store (a reload from 4,000 targets to 2 took
    13 s, one scan of every series per removed target); names may hold a colon."""
    def targets(*names: str) -> str:
        return "".join(f'[[targets]]\nname = "{n}"\nkind = "http"\n'
                       f'url = "http://127.0.0.1:9/"\ninterval = "30s"\n' for n in names)

    sched = Scheduler(load_config_text(targets("api", "db:main", "web", "webhooks")))
    await sched.start(poll=False)
    try:
        for series in ("api:up", "db:main:up", "db:main:latency_ms", "web:up", "webhooks:up"):
            sched.store.record(series, 1_800_000_000.0, 1.0)
        await sched.apply(load_config_text(targets("api", "webhooks")))
        assert sorted(sched.store.series()) == ["api:up", "webhooks:up"]
        assert sorted(sched._states) == ["api", "webhooks"]  # noqa: SLF001
    finally:
        await sched.stop()


def test_the_heap_trimmer_gives_freed_holes_in_the_c_heap_back() -> None:
    """In its own process: 32 MB of arrays freed between ones still alive stay resident
    until `malloc_trim` (glibc only returns the top of its heap by itself)."""
    import subprocess
    import sys

    code = (
        "import numpy as np, psutil; from console.engine.gctune import heap_trimmer\n"
        "trim = heap_trimmer(); rss = lambda: psutil.Process().memory_info().rss\n"
        "pairs = [(np.ones(8000), np.ones(100)) for _ in range(500)]\n"
        "keep = [small for _, small in pairs]; del pairs\n"
        "before = rss(); trim(); after = rss()\n"
        "print(trim is not None, (before - after) >> 20 >= 20, len(keep))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["True", "True", "500"]
