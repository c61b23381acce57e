"""The console's own health: is it keeping its schedule, and if not, by how much and why.

Why it exists: at 2,000 targets on one core the console once fell behind its own schedule
and paged people — 232 "Target down" and thousands of "no-data" notifications in 70 s —
while every server answered 200. A check that ran late, or whose deadline expired while the
event loop was busy elsewhere, says nothing about the target. So the scheduler measures
how late the event loop wakes up (a small task that sleeps `PROBE_EVERY` and notes the
overshoot) and the checks that started behind their slot; while the console is
*overloaded*:

* a check that failed by timing out while the loop lagged is not recorded as down (it was
  never given its time): the scheduler drops it and counts it in `late_checks`;
* the alert tick does not evaluate targets whose data is merely late (no "no-data");
* one self-health notice says so, with the lag and the cause (`describe`), and another
  when the console has caught up.

Overload starts when, after a start-up grace period, at least `SUSTAINED` probes within
`WINDOW` seconds found the loop more than `LAG_ON` late (one slow synchronous step, such as
a screen being built, is a stall, not an overload), or when the lags within `WINDOW` add up
to `STALLED` seconds: a loop starved of CPU wakes so rarely that three probes never fit in
the window (measured: five busy processes on the console's core, 2,000 targets, lags of
~80 s, and 351 "no-data" pages before the console knew it was behind). It ends once the lag
has stayed under `LAG_OFF` for `CALM` seconds (hysteresis: one notice per episode, not one
per wobble).

Silence is judged apart from the notice: `lagging()` is true while overloaded and also
whenever the loop lagged more than `LAG_ON` in the last `WINDOW` seconds, start-up included,
so a stall never turns into "no-data" even before (or without) an overload episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

PROBE_EVERY = 0.1  # seconds between loop-lag probes
WINDOW = 5.0  # seconds of lag history considered
LAG_ON = 0.5  # seconds of loop lag that mean the schedule is not kept
LAG_OFF = 0.2
CALM = 10.0  # seconds under LAG_OFF before the episode ends
SUSTAINED = 3  # lagged probes within WINDOW that make an overload (one stall does not)
STALLED = 3.0  # seconds of lag within WINDOW that make an overload however few the probes
GRACE = 10.0  # seconds after start when lag is not judged (start-up's own work)


class LoopHealth:
    """Loop lag, CPU use and late checks; `overloaded` with hysteresis. One per Scheduler."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 cpu: Callable[[], float] = time.process_time) -> None:
        self._clock = clock
        self._cpu = cpu
        self._lags: deque[tuple[float, float]] = deque()  # (when, lag) over WINDOW
        self._calm_since: float | None = None
        self._cpu_mark: tuple[float, float] | None = None
        self.cpu_share = 0.0  # of one core over the last WINDOW
        self.overloaded = False
        self.since: float | None = None  # monotonic start of the current episode
        self.episodes = 0
        self.late_checks = 0  # checks not run on time (dropped, never counted as down)
        self.behind = 0  # checks that started more than half an interval late
        self.targets = 0
        self.checks_per_s = 0.0
        self.worst_lag = 0.0  # in the current (or last) episode
        self._listeners: list[Callable[[bool], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._started = clock()

    def subscribe(self, callback: Callable[[bool], None]) -> None:
        """`callback(True)` when an overload episode starts, `callback(False)` when it ends."""
        self._listeners.append(callback)

    # -- measuring ------------------------------------------------------------------------------

    def start(self) -> None:
        self._started = self._clock()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe(),
                                                                 name="loop-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _probe(self) -> None:
        while True:
            before = self._clock()
            await asyncio.sleep(PROBE_EVERY)
            self.note_lag(self._clock() - before - PROBE_EVERY)

    def note_lag(self, lag: float, now: float | None = None) -> None:
        """One observation of how late the loop woke up (seconds)."""
        now = self._clock() if now is None else now
        lags = self._lags
        lags.append((now, max(lag, 0.0)))
        while lags and lags[0][0] < now - WINDOW:
            lags.popleft()
        mark = self._cpu_mark
        if mark is None or now - mark[0] >= WINDOW:  # the CPU clock read once per window
            cpu = self._cpu()
            if mark is not None and now > mark[0]:
                self.cpu_share = (cpu - mark[1]) / (now - mark[0])
            self._cpu_mark = (now, cpu)
        self._update(now)

    def note_late_start(self) -> None:
        self.behind += 1

    def lag(self) -> float:
        """The worst loop lag over the last WINDOW seconds."""
        return max((x for _, x in self._lags), default=0.0)

    def lagged_since(self, t0: float) -> float:
        """The worst loop lag observed since monotonic time `t0` (for one check's window)."""
        return max((x for at, x in self._lags if at >= t0), default=0.0)

    def lagging(self) -> bool:
        """Whether a target's silence may be the console's doing: overloaded, or the loop
        lagged more than `LAG_ON` within the last `WINDOW` seconds (start-up included)."""
        return self.overloaded or self.lag() > LAG_ON

    def _update(self, now: float) -> None:
        lag = self.lag()
        if not self.overloaded:
            lagged = [x for _, x in self._lags if x > LAG_ON]
            if lagged and now - self._started >= GRACE and \
                    (len(lagged) >= SUSTAINED or sum(lagged) >= STALLED):
                self.overloaded = True
                self.since = now
                self.episodes += 1
                self.worst_lag = lag
                self._calm_since = None
                self._fire(True)
            return
        self.worst_lag = max(self.worst_lag, lag)
        if lag < LAG_OFF:
            if self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= CALM:
                self.overloaded = False
                self._fire(False)
        else:
            self._calm_since = None

    def _fire(self, on: bool) -> None:
        for cb in list(self._listeners):
            with contextlib.suppress(Exception):
                cb(on)

    # -- telling --------------------------------------------------------------------------------

    def describe(self) -> str:
        """One line: the lag and the most likely cause, for the self-health notice."""
        lag = max(self.worst_lag, self.lag())
        load = (f"{self.targets} targets, {self.checks_per_s:.0f} checks/s" if self.targets
                else "its checks")
        if self.cpu_share >= 0.85:
            cause = (f"CPU-bound: the console uses {self.cpu_share:.0%} of a core for {load}; "
                     "fewer targets or longer intervals, or a second console, would keep up")
        else:
            cause = (f"the event loop was blocked (CPU {self.cpu_share:.0%} of a core): a "
                     "slow synchronous step, or the machine is starved of CPU")
        late = f"; {self.late_checks} checks not run on time were skipped" \
            if self.late_checks else ""
        return f"the console is behind its own schedule by up to {lag:.1f}s — {cause}{late}"
