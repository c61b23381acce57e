"""Alert history: episodes from the lifecycle, durable appends, crash replay, bounded reads."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from console.engine.alerting.history import (
    AlertHistory,
    describe_duration,
    ongoing,
    read_episodes,
    rotated,
)
from console.engine.alerting.lifecycle import AlertEngine, AlertState
from console.engine.alerting.rules import RuleSet, TargetInfo
from console.engine.alerting.service import AlertService
from console.engine.config.loader import load_config_text
from console.engine.config.rules import Rule
from console.engine.paths import DataPaths
from console.engine.scheduler import Scheduler
from console.engine.storage.store import MetricStore
from tests.alerttools import T0, Clock, dead_api_config


def lifecycle(rule: Rule) -> tuple[AlertEngine, MetricStore, Clock]:
    clock = Clock()
    store = MetricStore()
    core = AlertEngine(RuleSet([rule], [TargetInfo("api", "http", 10.0, "app")]), store,
                       clock=clock)
    return core, store, clock


def feed(core: AlertEngine, store: MetricStore, clock: Clock, metric: str,
         values: list[float], *, step: float = 10.0) -> None:
    for v in values:
        clock.t += step
        store.record(f"api:{metric}", clock.t, v)
        core.run()


def test_describe_duration() -> None:
    assert describe_duration({"duration_s": 250, "ongoing": True}) == "ongoing 4m 10s"
    assert describe_duration({"duration_s": 723}) == "12m 03s"


def test_episode_from_fire_ack_resolve_with_peak() -> None:
    core, store, clock = lifecycle(Rule(name="slow", expr="p95_ms > 2000", severity="P1",
                                        failure_threshold=2))
    feed(core, store, clock, "p95_ms", [2500, 2600])  # fires on the second failing sample
    a = core.alerts.get("slow", "api")
    assert a is not None
    assert a.state == AlertState.FIRING
    fired = clock.t
    assert core.alerts.ack("slow", "api", "ana", now=clock.t + 5)
    feed(core, store, clock, "p95_ms", [3100, 2800])
    (open_ep,) = ongoing(core.alerts.alerts(), clock.t)
    assert open_ep["ongoing"] is True
    assert open_ep["duration_s"] == clock.t - fired
    assert open_ep["peak"] == 3100
    assert open_ep["acknowledged_by"] == "ana"
    assert core.alerts.closed == []
    feed(core, store, clock, "p95_ms", [100, 100])  # success_threshold 2
    a = core.alerts.get("slow", "api")
    assert a is not None
    assert a.state == AlertState.RESOLVED
    assert ongoing(core.alerts.alerts(), clock.t) == []
    (ep,) = core.alerts.closed
    assert ep["key"] == "slow/api/1"
    assert ep["fired_at"] == fired
    assert (ep["acknowledged_at"], ep["acknowledged_by"]) == (fired + 5, "ana")
    assert ep["resolved_at"] == clock.t
    assert ep["duration_s"] == clock.t - fired == 40.0
    assert ep["peak"] == 3100
    assert ep["flapping"] is False
    assert ep["ongoing"] is False
    assert ep["severity"] == "P1"
    # the second episode starts clean: new key, no ack, its own peak
    feed(core, store, clock, "p95_ms", [2200, 2300])
    (open2,) = ongoing(core.alerts.alerts(), clock.t)
    assert open2["key"] == "slow/api/2"
    assert open2["acknowledged_at"] is None
    assert open2["peak"] == 2300


def test_peak_of_a_below_threshold_rule_is_the_lowest() -> None:
    core, store, clock = lifecycle(Rule(name="low", expr="free_pct < 10", severity="P2",
                                        failure_threshold=1))
    feed(core, store, clock, "free_pct", [8, 3, 6, 50, 50])
    (ep,) = core.alerts.closed
    assert ep["peak"] == 3


def test_flapping_episode_is_marked() -> None:
    core, store, clock = lifecycle(Rule(name="flaky", expr="down", severity="P2",
                                        failure_threshold=1, success_threshold=1))
    feed(core, store, clock, "up", [0, 1] * 8 + [1] * 25)
    assert core.alerts.closed
    assert core.alerts.closed[0]["flapping"] is False  # settled before it flapped
    assert any(ep["flapping"] for ep in core.alerts.closed)


def test_unrecorded_episodes_survive_in_the_state() -> None:
    core, store, clock = lifecycle(Rule(name="d", expr="down", failure_threshold=1,
                                        success_threshold=1))
    feed(core, store, clock, "up", [0, 1])
    snap = orjson.loads(orjson.dumps(core.alerts.snapshot()))
    assert [e["key"] for e in snap["unrecorded"]] == ["d/api/1"]
    core2, _, _ = lifecycle(Rule(name="d", expr="down", failure_threshold=1,
                                 success_threshold=1))
    core2.alerts.restore(snap, core2.ruleset.rules)
    assert [e["key"] for e in core2.alerts.closed] == ["d/api/1"]


def episode(key: str, resolved: float, **kw: Any) -> dict[str, Any]:
    return {"type": "episode", "key": key, "rule": key.split("/")[0], "target": "api",
            "severity": "P1", "fired_at": resolved - 60, "resolved_at": resolved,
            "duration_s": 60.0, "ongoing": False, **kw}


def write_lines(path: Path, eps: list[dict[str, Any]], tail: bytes = b"") -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in eps) + tail)


def test_read_is_bounded_deduplicated_and_skips_torn_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "alerts-history.jsonl"
    now = T0
    eps = [episode(f"r{i}/api/1", now - 3600 * (50 - i)) for i in range(50)]
    eps.append(episode("r49/api/1", now - 3600, peak=7))  # a replay: the last copy wins
    write_lines(path, eps, b'{"type": "episode", "key": "torn')
    got = read_episodes(path, since=now - 10 * 3600, now=now)
    assert [e["key"] for e in got] == [f"r{i}/api/1" for i in range(49, 39, -1)]
    assert got[0]["peak"] == 7
    assert len(read_episodes(path, now=now, limit=5)) == 5
    # only the last max_bytes are read: older records are out of reach, never a crash
    small = read_episodes(path, now=now, max_bytes=600)
    assert 0 < len(small) < 10
    assert small[0]["key"] == "r49/api/1"
    path.write_bytes(b"not json\n" + orjson.dumps(episode("ok/api/1", now)) + b"\n"
                     + b'{"type": "note"}\n')
    assert [e["key"] for e in read_episodes(path, now=now)] == ["ok/api/1"]
    assert read_episodes(tmp_path / "missing.jsonl", now=now) == []


def test_rotation_and_reading_across_it(tmp_path: Path) -> None:
    path = tmp_path / "alerts-history.jsonl"
    write_lines(path, [episode(f"old{i}/api/1", T0 - 100 + i) for i in range(40)])
    hist = AlertHistory(path, rotate_bytes=1000)
    hist.open()  # bigger than 1000 bytes: set aside as .1, a fresh file begun
    try:
        assert rotated(path).exists()
        assert path.stat().st_size == 0
        assert asyncio.run(_record(hist, episode("new/api/1", T0)))
    finally:
        hist.close_sync()
    got = read_episodes(path, now=T0, limit=3)
    assert [e["key"] for e in got] == ["new/api/1", "old39/api/1", "old38/api/1"]
    assert (path.stat().st_mode & 0o777) == 0o600


async def _record(hist: AlertHistory, ep: dict[str, Any]) -> bool:
    return await hist.record(ep)


def service(tmp_path: Path, clock: Clock) -> AlertService:
    settings = load_config_text(dead_api_config(success_threshold=1))
    return AlertService(Scheduler(settings, clock=clock), paths=DataPaths(tmp_path))


async def until(cond: Any, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_service_records_resolved_episodes_durably_and_replays_after_a_crash(
        tmp_path: Path) -> None:
    clock = Clock()
    svc = service(tmp_path, clock)
    await svc.start()
    assert svc.evaluating
    store = svc.engine.store
    for v in (0.0, 0.0, 1.0):
        clock.t += 10
        store.record("api:up", clock.t, v)
        svc.run()
    path = tmp_path / "alerts-history.jsonl"
    await until(lambda: not svc.alerts.closed)  # left the state once on disk
    (ep,) = read_episodes(path, now=clock.t)
    assert (ep["key"], ep["fired_at"], ep["resolved_at"]) == ("api-down/api/1", T0 + 10,
                                                              T0 + 30)
    assert ep["actor"]  # written through the journal: id, ts, actor added
    assert [e["key"] for e in svc.recent(clock.t)] == ["api-down/api/1"]
    clock.t += 10
    store.record("api:up", clock.t, 0.0)
    svc.run()
    recent = svc.recent(clock.t + 5)
    assert [(e["key"], e["ongoing"]) for e in recent] == [("api-down/api/2", True),
                                                          ("api-down/api/1", False)]
    assert describe_duration(recent[0]) == "ongoing 5s"
    await svc.stop()

    # A crash between the state save and the history append: the state still holds the
    # episode, and the next owner appends it; a replay of one already written is harmless.
    state = orjson.loads((tmp_path / "alerts.json").read_bytes())
    state["unrecorded"] = [ep | {"peak": 42.0}, episode("gone/api/3", T0 + 35)]
    (tmp_path / "alerts.json").write_bytes(orjson.dumps(state))
    svc2 = service(tmp_path, clock)
    await svc2.start()
    await until(lambda: not svc2.alerts.closed)
    await svc2.stop()
    got = {e["key"]: e for e in read_episodes(path, now=clock.t)}
    assert set(got) == {"api-down/api/1", "gone/api/3"}
    assert got["api-down/api/1"]["peak"] == 42.0
    assert temp_files(tmp_path) == []


def temp_files(where: Path) -> list[str]:
    return [p.name for p in where.iterdir() if p.name.endswith(".tmp")]


def test_state_writes_are_atomic_under_concurrent_saves(tmp_path: Path) -> None:
    """The tick saves from a thread while results save on the loop: a reader never sees a
    half-written alerts.json, and no temp file is left behind."""
    clock = Clock()
    svc = service(tmp_path, clock)
    svc.role = "owner"
    clock.t += 10
    svc.engine.store.record("api:up", clock.t, 0.0)
    svc.run()
    assert svc.writer is not None
    data = svc.writer.prepare(svc.alerts, [], full=True)
    assert data is not None
    assert data[0] == "snapshot"
    state = tmp_path / "alerts.json"
    svc.write_state(data)
    bad: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            raw = state.read_bytes()
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError:
                bad.append(raw)

    def writer() -> None:
        for _ in range(150):
            svc.write_state(data)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    stop.set()
    r.join(timeout=10)
    assert bad == []
    assert orjson.loads(state.read_bytes())["alerts"][0]["state"] == "firing"
    assert temp_files(tmp_path) == []
    svc.role = "follower"
    state.write_bytes(b"{}")
    svc.save()  # a follower never writes
    assert state.read_bytes() == b"{}"


def test_kpis_take_alert_mttd_mtta_mttr_from_the_history() -> None:
    from console.engine.incidents.book import IncidentBook
    from console.engine.incidents.kpis import compute, format_text

    now = T0 + 86400
    eps = [
        episode("a/api/1", now - 3000, detect_s=30.0, acknowledged_at=now - 3000 - 60 + 120),
        episode("b/api/1", now - 1000, detect_s=90.0) | {"fired_at": now - 1600},
        episode("old/api/1", now - 9 * 86400, detect_s=1.0),  # outside the window
    ]
    k = compute(IncidentBook([]), since=7 * 86400, now=now, episodes=eps)
    assert k.alert_episodes == 2
    assert k.alert_mttd_s == 60.0
    assert k.alert_mtta_s == 120.0
    assert k.alert_mttr_s == (60 + 600) / 2
    text = format_text(k)
    assert "alerting, from the alert history (2 episodes)" in text
    assert "MTTR (firing → resolved)" in text
    assert "5m30s" in text
    plain = compute(IncidentBook([]), since=7 * 86400, now=now)
    assert plain.alert_episodes == 0
    assert "alert history" not in format_text(plain)
