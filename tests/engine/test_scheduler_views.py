"""Board rows at scale: one snapshot recomputes a bounded number of rows' window figures
(round-robin), while every row's status and latest result stay current."""

from __future__ import annotations

import pytest

from console.engine import scheduler as sched_mod
from console.engine.config.loader import load_config_text
from console.engine.model import CheckResult, Status
from console.engine.scheduler import Scheduler

T0 = 1_800_000_000.0


def _config(n: int) -> str:
    return "\n".join(f'[[targets]]\nname = "t{i}"\nkind = "http"\n'
                     f'url = "http://127.0.0.1:9/{i}"\ninterval = "1s"\n' for i in range(n))


def _feed(s: Scheduler, t: float, latency: float, status: Status = Status.UP) -> None:
    for name, state in s._states.items():
        s.record(state, CheckResult(target=name, kind="http", status=status, started_at=t,
                                    latency_ms=latency))


async def test_snapshot_spends_a_budget_and_keeps_status_current(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sched_mod, "SNAPSHOT_BUDGET", 3)
    s = Scheduler(load_config_text(_config(10)), clock=lambda: T0)
    await s.start(poll=False)
    try:
        for k in range(20):
            _feed(s, T0 - 20 + k, 10.0)
        first = s.snapshot(T0)
        assert [v.p95_ms for v in first] == [pytest.approx(10.0)] * 10  # first sight: all
        for k in range(1, 4):  # slow answers (still answering: their latency counts)
            _feed(s, T0 + k, 1000.0, Status.DEGRADED)
        views = s.snapshot(T0 + 3.5)
        assert all(v.status == Status.DEGRADED for v in views)  # current for every row
        assert all(v.latency_ms == 1000.0 for v in views)
        recomputed = [v.name for v, old in zip(views, first, strict=True)
                      if v.p95_ms != old.p95_ms]
        assert len(recomputed) == 3  # the budget
        seen = set(recomputed)
        for _ in range(3):  # round-robin: every row's window figures within 10 / 3 calls
            seen |= {v.name for v, old in zip(s.snapshot(T0 + 3.5), first, strict=True)
                     if v.p95_ms != old.p95_ms}
        assert seen == {f"t{i}" for i in range(10)}
        exact = s.view("t7", T0 + 3.5)  # a detail screen's row is always exact
        assert exact is not None
        assert exact.p95_ms is not None
        assert exact.p95_ms > 10.0
        assert s.view("nope") is None
    finally:
        await s.stop()


async def test_few_targets_are_always_exact() -> None:
    s = Scheduler(load_config_text(_config(4)), clock=lambda: T0)
    await s.start(poll=False)
    try:
        for k in range(20):
            _feed(s, T0 - 20 + k, 10.0)
        s.snapshot(T0)
        for k in range(1, 4):
            _feed(s, T0 + k, 500.0)
        assert all(v.p95_ms is not None and v.p95_ms > 10.0 for v in s.snapshot(T0 + 3.5))
    finally:
        await s.stop()


async def test_a_target_the_console_checks_late_is_behind_not_silent() -> None:
    """A check due and not started (the loop behind), or one started late, marks its
    target as behind for a no-data rule's span; a check in flight does not."""
    import math
    import time

    s = Scheduler(load_config_text(_config(3)), clock=lambda: T0)
    await s.start(poll=False)
    try:
        now = time.monotonic()
        a, b, c = (s._states[f"t{i}"] for i in range(3))
        a.due_at = now - 5.0  # due five intervals ago, never started
        b.due_at = math.inf  # in flight (started on time, waiting on its target)
        b.late_until = now - 1  # a late start long ago
        c.due_at = now + 0.5
        c.late_until = now + 2  # started late a moment ago
        assert s.behind(now) == {"t0", "t2"}
    finally:
        await s.stop()
