"""The scheduler: one long-lived task per target, results into the store, snapshots out.

Each target polls on its own fixed grid (interval plus a per-target phase derived from its
name, so checks never fire in bursts and a restart keeps the same phases). A probe's check
has its own hard deadline; the scheduler adds a second, outer deadline as a backstop so a
buggy probe can still never stall its loop (except for a probe that says it
`keeps_deadline`: the HTTP probe, whose whole check runs under its own). Targets never
share a lock or a queue, so one hanging target cannot delay another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import re
import time
import zlib
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from console.engine.health import LoopHealth
from console.engine.model import CheckResult, RecentResults, Status
from console.engine.text.redact import describe_exception, redact
from console.engine.views import PanelView, TargetView

if TYPE_CHECKING:
    # The config's models are only types here (a target's `kind` says which probe it gets):
    # `check --once URL` runs the scheduler on plain targets without importing pydantic.
    from console.engine.config.schema import AnyTarget, Panel, Settings

    # numpy and the store load only where metrics are kept: `check --once` (keep_metrics
    # False) reads its few figures from the results themselves (~60 ms less start-up)
    from console.engine.storage.store import MetricStore

RESULTS_KEPT = 50
SPARK_POINTS = 40
LATE_HOLD = 3
"""Intervals a late-started target's data counts as late (the shipped no-data rule's
`absent(up, 3)`)."""
SNAPSHOT_BUDGET = 150
"""Board rows whose window figures (p95, uptime, sparkline) one `snapshot()` recomputes at
most. Each costs ~80 µs of numpy; at 1,000 targets polled every second, recomputing all of
them on every repaint held the UI's event loop ~100 ms a second (keys waited behind it).
Past the budget a row keeps its last window figures (refreshed round-robin, so each within
targets / budget repaints) with its status, latest result and latency current."""
_RATE = re.compile(r"^rate\((?P<m>[A-Za-z0-9_:.]+)\)$")
_LABEL_MATCH = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


class Probe(Protocol):
    async def check(self) -> CheckResult: ...
    async def aclose(self) -> None: ...


def _with_playbook_dashboards(settings: Settings) -> Settings:
    """The playbook's ready-made dashboards merged in (console.engine.config.dashboards,
    imported only for a config that wants them: it builds pydantic models)."""
    if not settings.console.playbook_dashboards:
        return settings
    from console.engine.config.dashboards import with_playbook_dashboards

    return with_playbook_dashboards(settings)


def phase_of(name: str, interval: float) -> float:
    """A fixed offset in [0, interval) from the target's name: stable across restarts."""
    return (zlib.crc32(name.encode()) / 2**32) * interval


BATCH = 4  # checks per slot of the start grid (see `start_grid`)
GRID_MAX_S = 0.1
BATCH_UP_TO = 500.0  # checks per second


def start_grid(checks_per_s: float) -> float:
    """The spacing of the slots checks start in (0: none), so that about `BATCH` checks
    start together. Checks that start together run back to back while the interpreter's
    caches are warm: at 100 targets at 1 s, one check at a time cost 1.8x the CPU of a bare
    aiohttp loop, four at a time 1.2x (bench/bench_scale.py; eight at a time 0.9x, but
    a local endpoint's p99 latency then read 3.5 ms instead of 1.3 ms; with four, 1.8 ms).
    Above `BATCH_UP_TO` checks a second checks are that close anyway (no gain at 1,000
    targets), and slots made a loop near its limit fall further behind (at 2,000 targets,
    87 % of checks on time instead of 98 %)."""
    if checks_per_s > BATCH_UP_TO:
        return 0.0
    if checks_per_s <= 0:
        return GRID_MAX_S
    return min(GRID_MAX_S, BATCH / checks_per_s)


def on_grid(t: float, grid: float) -> float:
    """`t` moved up to the next multiple of `grid` (monotonic clock); `t` itself for 0."""
    return math.ceil(t / grid) * grid if grid > 0 else t


def address_of(target: AnyTarget) -> str:
    raw = getattr(target, "url", None) or getattr(target, "dsn", None) or getattr(
        target, "path", "")
    return redact(str(raw))


ALWAYS_RECORDED = frozenset({"up", "status", "latency_ms"})
"""The metrics `Scheduler.record` stores for every result, whatever its probe reported."""


def recorded_metrics(result: CheckResult) -> Container[str]:
    """The metrics `Scheduler.record` puts in the store for `result`."""
    if not result.metrics:
        return ALWAYS_RECORDED
    return ALWAYS_RECORDED | result.metrics.keys()


@dataclass(slots=True)
class TargetState:
    target: AnyTarget
    probe: Probe | None = None
    task: asyncio.Task[None] | None = None
    status: Status = Status.UNKNOWN
    since: float | None = None
    last: CheckResult | None = None
    # Only the newest result whole (it is `last` too): the four more kept whole before were
    # ~4 KB a target at 1,000 targets, each with its own metrics and body-details dicts,
    # while every reader but the detail view's response log reads `last`.
    results: RecentResults = field(
        default_factory=lambda: RecentResults(RESULTS_KEPT, full=1))
    checks: int = 0
    failures: int = 0
    due_at: float = math.inf  # monotonic time the next check is due (polling only)
    late_until: float = -math.inf  # until then its data counts as late by our doing


class Scheduler:
    """Owns probes, their polling tasks and the metric store; serves TUI and headless alike."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: MetricStore | None = None,
        clock: Callable[[], float] = time.time,
        state_dir: Path | None = None,
        pings: Path | None = None,
        keep_metrics: bool = True,
    ) -> None:
        """`keep_metrics=False` is for a one-shot check (`check --once`): no metric store,
        so no numpy; a board row's uptime and p95 come from the results kept per target
        (the same windows, the same figures for the checks made), with no sparkline, and
        `store`, panels and rules are not available."""
        # The playbook's ready-made dashboards join here, where settings take effect, so the
        # TUI, a hot reload and the headless commands all see the same boards.
        self.settings = _with_playbook_dashboards(settings)
        # The config's own panels (view 0 of the overview), as opposed to those the
        # ready-made dashboards add.
        self.own_panel_keys = frozenset(p.key for p in settings.panels)
        if store is None and keep_metrics:
            from console.engine.storage.store import MetricStore

            store = MetricStore()
        self._store: MetricStore | None = store
        self.clock = clock
        self.state_dir = state_dir  # where probes keep state across restarts (error kinds)
        self.pings_path = pings  # heartbeat check-ins (the spool `opsconsole ping` writes)
        self._ping_book: Any = None
        self.version = 0  # bumped on every recorded result: the UI repaints only on change
        self._states: dict[str, TargetState] = {}
        self._subscribers: list[Callable[[CheckResult], None]] = []
        self._view_cache: dict[str, tuple[object, TargetView]] = {}
        self._view_turn = 0  # where the next snapshot starts spending its budget
        self._addresses: dict[int, tuple[AnyTarget, str]] = {}  # id -> (target, address)
        self._panel_cache: dict[str, tuple[tuple[Any, ...], PanelView]] = {}
        # a panel's `metric{label="…"}` -> (store generation, the series it selects)
        self._selector_cache: dict[str, tuple[int, str]] = {}
        self._clients: Any = None
        self._running = False
        self.health = LoopHealth()
        """Whether the console keeps its own schedule (see console.engine.health)."""
        self._polling = False  # polling tasks run (start(poll=True) or begin_polling())
        self.grid = 0.0  # the start slots' spacing for the load (`start_grid`), 0: none

    @property
    def store(self) -> MetricStore:
        """The metric store (every series of every target)."""
        if self._store is None:
            raise RuntimeError("this scheduler keeps no metrics (keep_metrics=False)")
        return self._store

    # -- lifecycle -------------------------------------------------------------------------

    async def http_clients(self) -> Any:
        """The one pool of HTTP connections (created on first use, closed by `stop()`); the
        runtime's remote alert readers share it with the probes."""
        return await self._http_clients()

    async def _http_clients(self) -> Any:
        if self._clients is None:
            from console.engine.probes.http_client import HttpClients

            self._clients = HttpClients()
        return self._clients

    async def _make_probe(self, target: AnyTarget) -> Probe:
        if target.kind == "http":
            from console.engine.probes.http import HttpProbe

            return HttpProbe(target, await self._http_clients())
        if target.kind == "prometheus":
            from console.engine.probes.prometheus import PrometheusProbe

            return PrometheusProbe(target, await self._http_clients())
        if target.kind == "promql":
            from console.engine.probes.promql import PromqlProbe

            return PromqlProbe(target, await self._http_clients(), clock=self.clock)
        if target.kind == "log":
            from console.engine.probes.log import LogProbe

            return LogProbe(target, state_dir=self.state_dir)
        if target.kind == "host":
            from console.engine.probes.host import HostProbe

            return HostProbe(target, await self._http_clients() if target.url else None)
        if target.kind == "heartbeat":
            from console.engine.probes.heartbeat import HeartbeatProbe

            return HeartbeatProbe(target, self.ping_book(), clock=self.clock)
        if target.kind == "lighthouse":
            from console.engine.probes.lighthouse import LighthouseProbe

            return LighthouseProbe(target)
        if target.kind == "postgres":
            from console.engine.probes.postgres import PostgresProbe

            return PostgresProbe(target)
        from console.engine.probes.redis import RedisProbe

        return RedisProbe(target)

    def ping_book(self) -> Any:
        """The heartbeat pings of this data directory (shared by every heartbeat probe and
        the listener); None without a data directory."""
        if self._ping_book is None and self.pings_path is not None:
            from console.engine.probes.heartbeat import PingBook

            self._ping_book = PingBook(self.pings_path, clock=self.clock)
        return self._ping_book

    async def start(self, *, poll: bool = True) -> None:
        """Create probes (on the running loop) and, with `poll`, one polling task per target."""
        self._running = True
        self._polling = poll
        self._note_load()  # before any polling task starts: they read the load (`start_grid`)
        for target in self.settings.targets:
            await self._add(target, poll=poll)
        if poll:
            self.health.start()

    def _note_load(self) -> None:
        targets = self.settings.targets
        self.health.targets = len(targets)
        self.health.checks_per_s = sum(1.0 / t.interval for t in targets if t.interval > 0)
        self.grid = start_grid(self.health.checks_per_s)

    def begin_polling(self) -> None:
        """Start the polling tasks of the targets `start(poll=False)` created: the runtime
        first attaches every listener (alerting, a recording), so no result goes unseen."""
        self._polling = True
        for state in self._states.values():
            if state.task is None:
                state.task = asyncio.create_task(self._poll(state),
                                                 name=f"poll:{state.target.name}")
        self.health.start()

    async def _add(self, target: AnyTarget, *, poll: bool) -> None:
        state = TargetState(target=target)
        old = self._states.get(target.name)
        if old is not None:  # keep history across a config reload of the same target
            state.status, state.since, state.last = old.status, old.since, old.last
            state.results, state.checks, state.failures = old.results, old.checks, old.failures
        self._states[target.name] = state
        state.probe = await self._make_probe(target)
        if poll:
            state.task = asyncio.create_task(self._poll(state), name=f"poll:{target.name}")

    async def _remove(self, name: str) -> None:
        state = self._states.pop(name, None)
        if state is None:
            return
        await self._close_state(state)

    @staticmethod
    async def _close_state(state: TargetState) -> None:
        if state.task is not None:
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await state.task
        if state.probe is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await state.probe.aclose()

    async def stop(self) -> None:
        self._running = False
        await self.health.stop()
        states = list(self._states.values())
        await asyncio.gather(*(self._close_state(s) for s in states), return_exceptions=True)
        if self._clients is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._clients.aclose()
            self._clients = None
        if self._ping_book is not None:
            with contextlib.suppress(Exception):
                await self._ping_book.aclose()
            self._ping_book = None

    async def apply(self, settings: Settings) -> None:
        """Hot reload: restart only targets whose definition changed; keep their history."""
        new = {t.name: t for t in settings.targets}
        gone = {name for name in self._states if name not in new}
        # removed together, their series dropped in one pass over the store: one removal
        # and one scan of every series per target made a reload from 4,000 targets to 2
        # take 13 s here (a walk's 16,000 took minutes, the console deaf to q meanwhile)
        await asyncio.gather(*(self._remove(name) for name in gone))
        if gone and self._store is not None:
            for series in self._store.series():
                if _of_any(series, gone):
                    self._store.drop(series)
        self.settings = _with_playbook_dashboards(settings)
        self.own_panel_keys = frozenset(p.key for p in settings.panels)
        self._note_load()
        for name, target in new.items():
            old = self._states.get(name)
            if old is not None and old.target == target:
                continue
            if old is not None:
                await self._close_state(old)
            await self._add(target, poll=self._polling)
        self.version += 1

    # -- polling ---------------------------------------------------------------------------

    async def _poll(self, state: TargetState) -> None:
        target = state.target
        interval = target.interval
        # First check soon (spread over at most 1 s), then on a fixed grid with the same phase;
        # phases share slots of a few checks each (`start_grid`).
        grid = self.grid
        start = on_grid(time.monotonic() + phase_of(target.name, min(interval, 1.0)), grid)
        k = 0
        while True:
            next_at = start + k * interval
            state.due_at = next_at
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            if now - next_at > max(0.5 * interval, 0.5):
                # Started late (slots may have been skipped): its samples are late by our
                # doing until this check's result is as old as a no-data rule allows.
                self.health.note_late_start()
                state.late_until = now + LATE_HOLD * interval + 1.0
            state.due_at = math.inf
            await self.check_target(state, settle=grid > 0)
            k = max(k + 1, math.ceil((time.monotonic() - start) / interval))

    def behind(self, now: float | None = None) -> set[str]:
        """Targets whose data is late because the console is: a check due more than half
        an interval ago and not started, or one started late recently. Their silence says
        nothing about them, so the alert tick leaves them out (neither down nor no-data);
        a check in flight (a hanging target) is never counted here."""
        now = time.monotonic() if now is None else now
        out = set()
        for name, s in self._states.items():
            slack = max(0.5 * s.target.interval, 0.5)
            if now - s.due_at > slack or s.late_until > now:
                out.add(name)
        return out

    async def check_target(self, state: TargetState, *, settle: bool = False) -> CheckResult:
        """Run one check (with a backstop deadline, unless the probe `keeps_deadline`) and
        record it; never raises (but cancels).

        With `settle`, the result is recorded (store, rules, alerts) one turn of the event
        loop later: checks that started in the same slot (`start_grid`) then take their
        response times before any of them records, so a check's latency does not include
        the others' rules (with eight checks a slot, a local endpoint's p99 read 5.2 ms
        without this, 3.5 ms with it)."""
        target = state.target
        assert state.probe is not None
        started = self.clock()
        t0 = time.monotonic()
        probe = state.probe
        try:
            if getattr(probe, "keeps_deadline", False):
                # The probe's own deadline covers its whole check: a second timer per
                # check was ~1 % of all CPU at 1,000 HTTP targets (py-spy).
                result = await probe.check()
            else:
                async with asyncio.timeout(target.timeout + 0.25):
                    result = await probe.check()
        except TimeoutError:
            result = CheckResult(
                target=target.name, kind=target.kind, status=Status.DOWN, started_at=started,
                latency_ms=(time.monotonic() - t0) * 1000,
                error=f"timed out after {target.timeout:g}s",
            )
        except Exception as exc:  # a probe bug must not kill its loop
            result = CheckResult(
                target=target.name, kind=target.kind, status=Status.DOWN, started_at=started,
                latency_ms=None, error=f"internal error: {describe_exception(exc)}",
            )
        if self.clock is not time.time and result.started_at != started:
            # An injected clock (tests, replays) times every sample; probes read the wall.
            result = dataclasses.replace(result, started_at=started)
        if result.status == Status.DOWN and self._starved(target.timeout, t0):
            # Its deadline ran out while the loop was busy elsewhere: the target was never
            # given its time, so this says nothing about it. Not recorded (neither down nor
            # no-data); the loop-health notice tells the operator instead.
            self.health.late_checks += 1
            return CheckResult(
                target=target.name, kind=target.kind, status=Status.UNKNOWN,
                started_at=started, latency_ms=None,
                error=f"not checked on time: the console's event loop lagged "
                      f"{self.health.lagged_since(t0):.1f}s during this check",
            )
        if settle:
            await asyncio.sleep(0)
        self.record(state, result)
        return result

    def _starved(self, timeout: float, t0: float) -> bool:
        """A failure that took about the whole timeout while the loop lagged a quarter of
        it or more: the console's own delay, not the target's."""
        elapsed = time.monotonic() - t0
        lag = self.health.lagged_since(t0)
        return elapsed >= 0.9 * timeout and lag >= max(0.25 * timeout, 0.25)

    def record(self, state: TargetState, result: CheckResult) -> None:
        """Into the store: ALWAYS_RECORDED, then the result's own metrics
        (`recorded_metrics`); then the target's state and the subscribers."""
        name = state.target.name
        t = result.started_at
        store = self._store
        if store is not None:
            up = result.status.value_for_uptime
            row = [(f"{name}:up", up), (f"{name}:status", float(result.status.rank)),
                   (f"{name}:latency_ms", result.latency_ms
                    if result.latency_ms is not None and up > 0 else math.nan)]
            row += [(f"{name}:{metric}", value) for metric, value in result.metrics.items()
                    if metric != "latency_ms"]
            store.record_row(t, row)
        if result.status != state.status:
            state.status = result.status
            state.since = t
        state.last = result
        state.results.append(result)
        state.checks += 1
        if result.status == Status.DOWN:
            state.failures += 1
        self.version += 1
        for cb in list(self._subscribers):
            cb(result)

    def replay_result(self, result: CheckResult) -> bool:
        """Record a result that was recorded earlier (`opsconsole replay`) as if its target
        had just been checked; False for a target not in the config."""
        state = self._states.get(result.target)
        if state is None:
            return False
        self.record(state, result)
        return True

    async def check_once(self) -> list[CheckResult]:
        """Check every target once, concurrently (for `check --once`)."""
        states = list(self._states.values())
        return list(await asyncio.gather(*(self.check_target(s) for s in states)))

    def subscribe(self, callback: Callable[[CheckResult], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # -- snapshots -------------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._states)

    def probe(self, name: str) -> Probe | None:
        """A target's live probe (the Logs screen reads a log probe's recent lines)."""
        state = self._states.get(name)
        return state.probe if state else None

    async def remote_history(self, name: str, metric: str, span: float, points: int,
                             now: float | None = None) -> dict[str, Any] | None:
        """A chart of a `promql` target's metric straight from its store (query_range, the
        step fitted to `points`); None for a target whose history is the console's own."""
        probe = self.probe(name)
        history = getattr(probe, "history", None)
        if history is None:
            return None
        result: dict[str, Any] = await history(metric, span, points, now)
        return result

    def last_result(self, name: str) -> CheckResult | None:
        """A target's latest check result (what an alert's cause is read from)."""
        state = self._states.get(name)
        return state.last if state else None

    def results(self, name: str) -> list[CheckResult]:
        state = self._states.get(name)
        return list(state.results) if state else []

    def target_view(self, state: TargetState, now: float) -> TargetView:
        """The board row for a target, recomputed only after a new result or a completed
        sparkline bucket: the UI asks every repaint tick, the data moves every interval."""
        key = self._view_key(state, now)
        cached = self._view_cache.get(state.target.name)
        if cached is not None and cached[0] == key:
            return cached[1]
        view = self._target_view(state, now)
        self._view_cache[state.target.name] = (key, view)
        return view

    @staticmethod
    def _view_key(state: TargetState, now: float) -> tuple[object, ...]:
        bucket = max(state.target.interval, 1.0)
        return (state.checks, state.status, id(state.target), int(now // bucket))

    def _target_view(self, state: TargetState, now: float) -> TargetView:
        t = state.target
        name = t.name
        store = self._store
        if store is None:
            uptime, p95, spark = _window_figures(state.results, now)
        else:
            q = store.quantiles(f"{name}:latency_ms", 300.0, (0.95,), now=now)
            p95 = q.get(0.95) if q else None
            spark = tuple(store.sparkline(
                f"{name}:latency_ms", SPARK_POINTS, max(t.interval, 1.0), now=now
            ).tolist())
            uptime = store.uptime(f"{name}:up", 3600.0, now=now)
        last = state.last
        return TargetView(
            name=name, kind=t.kind, group=t.group, tags=tuple(t.tags),
            address=self._address(t),
            insecure=bool(getattr(t, "insecure", False)), interval=t.interval,
            status=state.status, since=state.since, last=last,
            latency_ms=last.latency_ms if last else None,
            uptime_pct=uptime,
            p95_ms=None if p95 is None or math.isnan(p95) else p95,
            spark=spark,
            checks=state.checks, failures=state.failures,
        )

    def _address(self, target: AnyTarget) -> str:
        """The redacted address, worked out once per target definition."""
        got = self._addresses.get(id(target))
        if got is not None and got[0] is target:  # (an id can be reused after a reload)
            return got[1]
        if len(self._addresses) > 4 * len(self._states) + 64:
            self._addresses.clear()  # definitions replaced by reloads
        address = address_of(target)
        self._addresses[id(target)] = (target, address)
        return address

    def snapshot(self, now: float | None = None) -> list[TargetView]:
        """Every target's board row; at most `SNAPSHOT_BUDGET` rows get their window
        figures recomputed per call (all of them whenever there are no more targets than
        that), the others their current status and latest result."""
        now = self.clock() if now is None else now
        states = list(self._states.values())
        n = len(states)
        if n <= SNAPSHOT_BUDGET:
            return [self.target_view(s, now) for s in states]
        out: list[TargetView | None] = [None] * n
        budget = SNAPSHOT_BUDGET
        start = self._view_turn % n
        for j in range(n):
            i = (start + j) % n
            state = states[i]
            cached = self._view_cache.get(state.target.name)
            if cached is not None and cached[0] == self._view_key(state, now):
                out[i] = cached[1]
            elif cached is None or budget > 0:
                out[i] = self.target_view(state, now)
                budget -= 1
                if budget == 0:
                    self._view_turn = i + 1
            else:
                out[i] = self._current(cached[1], state)
        # the ignore below: every slot of `out` is filled by the loop above (None only until then)
        return out  # type: ignore[return-value]

    def view(self, name: str, now: float | None = None) -> TargetView | None:
        """One target's row, always exact (a detail screen's), without the others'."""
        state = self._states.get(name)
        if state is None:
            return None
        return self.target_view(state, self.clock() if now is None else now)

    @staticmethod
    def _current(view: TargetView, state: TargetState) -> TargetView:
        """`view` with the state's current status and latest result (its window figures
        as last computed)."""
        last = state.last
        if view.last is last and view.status == state.status:
            return view
        return dataclasses.replace(
            view, status=state.status, since=state.since, last=last,
            latency_ms=last.latency_ms if last else None, checks=state.checks,
            failures=state.failures)

    def panel_value(self, panel: Panel, now: float) -> tuple[float | None, str]:
        """Current value of a panel's metric and the series its sparkline reads."""
        store = self.store
        name = panel.target
        m = _RATE.match(panel.metric)
        if m:
            series = f"{name}:{m['m']}"
            return store.rate(series, 60.0, now=now), series
        if panel.metric == "uptime":
            return store.uptime(f"{name}:up", 3600.0, now=now), f"{name}:up"
        series = self._selected_series(name, panel.metric)
        latest = store.latest(series)
        if latest is None or now - latest[0] > 3 * self._cadence_of(name, panel.metric) + 5:
            return None, series
        last = self.last_result(name)
        if last is not None and last.status == Status.DOWN and latest[0] < last.started_at:
            # the target is down and this value predates it: the walk's "Database size
            # ✓ ok 8.4 MB" stood for 1½ minutes after PostgreSQL stopped (a slow metric
            # goes stale only after three of its own, longer, intervals)
            return None, series
        return latest[1], series

    def _selected_series(self, name: str, metric: str) -> str:
        """The store's series for a panel's `metric`: itself, or for a selector of some of a
        labelled series' labels (`scrape_ms{job="node"}` of a series that also has
        `instance`), the one series that has them all, as a PromQL selector would pick it.
        None or several matching: the selector itself, which has no data (the panel says
        n/a). Looked up again only when the store's set of series changes."""
        series = f"{name}:{metric}"
        if "{" not in metric:
            return series
        key = (series, self.store.generation)
        hit = self._selector_cache.get(series)
        if hit is not None and hit[0] == key[1]:
            return hit[1]
        found = series
        if not self.store.has(series):
            from console.engine.lang.serieskey import parse_series_key

            base, _, sel = metric.partition("{")
            want = dict(_LABEL_MATCH.findall(sel))
            prefix = f"{name}:{base}{{"
            matches = [s for s in self.store.series() if s.startswith(prefix)
                       and want.items() <= parse_series_key(s[len(prefix) - 1:]).items()]
            if len(matches) == 1:
                found = matches[0]
        if len(self._selector_cache) > 10_000:
            self._selector_cache.clear()
        self._selector_cache[series] = (key[1], found)
        return found

    def _cadence_of(self, name: str, metric: str) -> float:
        """How often `metric` is measured: a PostgreSQL target's slow collectors (sizes,
        statements, custom queries) report every `slow_interval`, not every check."""
        state = self._states.get(name)
        target = state.target if state else None
        if target is not None and target.kind == "postgres":
            from console.engine.probes.catalog import POSTGRES_METRICS

            if metric not in POSTGRES_METRICS:
                return max(target.interval, target.slow_interval)
        return self._interval_of(name)

    def _interval_of(self, name: str) -> float:
        state = self._states.get(name)
        return state.target.interval if state else 10.0

    def panel_views(
        self, panels: Iterable[Panel] | None = None, now: float | None = None, *,
        seen: Container[str] | None = None,
    ) -> list[PanelView]:
        """Views of `panels` (default: all). With `seen` (the keys on screen), a panel
        outside it keeps its last view instead of being computed again: of 100 panels a
        terminal shows a few dozen, and the UI asks again as soon as others scroll in."""
        now = self.clock() if now is None else now
        out = []
        cache = self._panel_cache
        for p in self.settings.panels if panels is None else panels:
            if seen is not None and p.key not in seen:
                cached = cache.get(p.key)
                if cached is not None and cached[0][0] is p:
                    out.append(cached[1])
                    continue
            out.append(self._panel_view_cached(p, now))
        return out

    def _panel_view_cached(self, p: Panel, now: float) -> PanelView:
        """As `target_view`: recomputed on a new sample, a completed bucket or staleness."""
        series = f"{p.target}:{m['m']}" if (m := _RATE.match(p.metric)) else (
            f"{p.target}:up" if p.metric == "uptime"
            else self._selected_series(p.target, p.metric))
        latest = self.store.latest(series)
        bucket = max(self._cadence_of(p.target, p.metric), 1.0)
        stale = latest is None or now - latest[0] > 3 * self._interval_of(p.target) + 5
        last = self.last_result(p.target)
        down = last is not None and last.status == Status.DOWN  # see panel_value
        key = (p, latest[0] if latest else None, int(now // bucket), stale, down)
        cached = self._panel_cache.get(p.key)
        if cached is not None and cached[0] == key:
            return cached[1]
        view = self._panel_view(p, now)
        self._panel_cache[p.key] = (key, view)
        return view

    def _panel_view(self, p: Panel, now: float) -> PanelView:
        value, series = self.panel_value(p, now)
        if value is not None and math.isnan(value):
            value = None
        bucket = max(self._cadence_of(p.target, p.metric), 1.0)
        if _RATE.match(p.metric):  # a counter: show its per-second increase per bucket
            import numpy as np

            counts = self.store.sparkline(series, SPARK_POINTS + 1, bucket, now=now)
            with np.errstate(invalid="ignore"):
                spark = np.diff(counts) / bucket
            spark[spark < 0] = np.nan  # a counter reset is a gap, not a dip
        else:
            spark = self.store.sparkline(series, SPARK_POINTS, bucket, now=now)
        return PanelView(
            key=p.key, title=p.title, target=p.target, metric=p.metric, unit=p.unit,
            value=value, spark=tuple(spark.tolist()),
            state=panel_state(value, p), warn=p.warn, crit=p.crit,
            lower_is_better=p.lower_is_better,
        )


def _of_any(series: str, names: Container[str]) -> bool:
    """Whether `series` (``target:metric``) is of one of the targets `names`; a target name
    may hold a colon itself, so every colon is a candidate end of the name."""
    i = series.find(":")
    while i != -1:
        if series[:i] in names:
            return True
        i = series.find(":", i + 1)
    return False


def _window_figures(results: Iterable[CheckResult], now: float
                    ) -> tuple[float | None, float | None, tuple[float, ...]]:
    """(uptime % over 1 h, p95 latency over 5 min, no sparkline) from the results kept, as
    the store gives them for the same samples: windows (now - w, now], NaN samples left
    out, latency only of up checks, the p95 by numpy.percentile's linear method."""
    ups: list[float] = []
    lats: list[float] = []
    for r in results:
        t = r.started_at
        if not now - 3600.0 < t <= now:
            continue
        up = r.status.value_for_uptime
        if not math.isnan(up):
            ups.append(up)
        if t > now - 300.0 and r.latency_ms is not None and up > 0 \
                and not math.isnan(r.latency_ms):
            lats.append(r.latency_ms)
    uptime = 100.0 * sum(1 for u in ups if u >= 0.5) / len(ups) if ups else None
    p95 = None
    if lats:
        lats.sort()
        pos = (len(lats) - 1) * 0.95
        i = math.floor(pos)
        j = min(i + 1, len(lats) - 1)
        a, b, frac = lats[i], lats[j], pos - i
        p95 = b - (b - a) * (1.0 - frac) if frac >= 0.5 else a + (b - a) * frac
    return uptime, p95, ()


def panel_state(value: float | None, panel: Panel) -> str:
    if value is None:
        return "nodata"

    def beyond(limit: float | None) -> bool:
        if limit is None:
            return False
        return value >= limit if panel.lower_is_better else value <= limit

    if beyond(panel.crit):
        return "crit"
    if beyond(panel.warn):
        return "warn"
    return "ok"
