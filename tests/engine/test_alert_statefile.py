"""The alert state on disk: a steady console writes nothing, a transition appends only the
alerts it changed, and a restart or a follower reads snapshot plus changes as one state."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from console.engine.alerting import statefile
from console.engine.alerting.service import AlertService
from console.engine.alerting.statefile import changes_path, merge, read_state
from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths
from console.engine.scheduler import Scheduler
from tests.alerttools import Clock, dead_api_config

CONFIG = dead_api_config(success_threshold=1) + '''
[[targets]]
name = "web"
kind = "http"
url = "http://127.0.0.1:9/"
interval = "10s"
'''


def owner(tmp_path: Path, clock: Clock) -> AlertService:
    svc = AlertService(Scheduler(load_config_text(CONFIG), clock=clock),
                       paths=DataPaths(tmp_path))
    svc.role = "owner"
    return svc


def sample(svc: AlertService, clock: Clock, api: float, web: float = 1.0) -> None:
    clock.t += 10
    svc.engine.store.record("api:up", clock.t, api)
    svc.engine.store.record("web:up", clock.t, web)
    svc.run()


def test_a_steady_console_writes_nothing_and_a_transition_appends_only_its_alert(
        tmp_path: Path) -> None:
    clock = Clock()
    svc = owner(tmp_path, clock)
    sample(svc, clock, 1.0)
    svc.save(full=False)  # the first save is a whole snapshot
    snap = tmp_path / "alerts.json"
    log = changes_path(snap)
    assert snap.exists()
    assert not log.exists()
    for _ in range(21):  # until the flapping window (21 samples) is full
        sample(svc, clock, 1.0)
    svc.save()
    before = snap.stat()
    written = svc.writer.bytes_written  # type: ignore[union-attr]
    for _ in range(30):  # every target keeps answering: nothing durable changes
        sample(svc, clock, 1.0)
        svc.save(full=False)
    assert not log.exists()
    assert (snap.stat().st_mtime_ns, snap.stat().st_size) == (before.st_mtime_ns,
                                                                before.st_size)
    assert svc.writer.bytes_written == written  # type: ignore[union-attr]

    sample(svc, clock, 0.0)  # api goes down: api-down fires
    svc.save(full=False)
    lines = log.read_bytes().splitlines()
    assert len(lines) == 1
    entry = orjson.loads(lines[0])
    assert {(r["rule"], r["target"]) for r in entry["alerts"]} == {("api-down", "api")}
    assert entry["alerts"][0]["state"] == "firing"
    assert snap.stat().st_size == before.st_size  # the snapshot was not rewritten
    merged = read_state(snap)
    assert merged is not None
    states = {(r["rule"], r["target"]): r["state"] for r in merged["alerts"]}
    assert states[("api-down", "api")] == "firing"
    assert ("api-down", "web") in states
    assert states[("api-down", "web")] != "firing"


def test_a_restart_and_a_follower_read_snapshot_plus_changes(tmp_path: Path) -> None:
    clock = Clock()
    svc = owner(tmp_path, clock)
    sample(svc, clock, 1.0)
    svc.save(full=False)
    sample(svc, clock, 0.0)
    svc.save(full=False)
    assert changes_path(tmp_path / "alerts.json").exists()

    follower = AlertService(Scheduler(load_config_text(CONFIG), clock=clock),
                            paths=DataPaths(tmp_path))
    follower.role = "follower"
    assert follower.reload(force=True)
    a = follower.alerts.get("api-down", "api")
    assert a is not None
    assert a.state.value == "firing"
    assert a.incident == 1

    sample(svc, clock, 1.0)  # resolves: one more line, and the follower sees it
    svc.save(full=False)
    assert follower.reload()
    a = follower.alerts.get("api-down", "api")
    assert a is not None
    assert a.state.value == "resolved"

    again = owner(tmp_path, clock)  # a restart continues the same incident numbering
    assert again.load() >= 1
    a = again.alerts.get("api-down", "api")
    assert a is not None
    assert a.state.value == "resolved"
    assert a.incident == 1
    sample(again, clock, 0.0)
    again.save(full=False)
    # its first save is a snapshot newer than every old line: the log is emptied
    assert not changes_path(tmp_path / "alerts.json").exists()
    merged = read_state(tmp_path / "alerts.json")
    assert merged is not None
    row = next(r for r in merged["alerts"] if r["rule"] == "api-down" and r["target"] == "api")
    assert (row["state"], row["incident"]) == ("firing", 2)


def test_merge_skips_lines_older_than_the_snapshot_and_stops_at_a_torn_line() -> None:
    row = {"rule": "r", "target": "t", "state": "inactive"}
    snap = {"version": 1, "seq": 5, "alerts": [row], "silences": []}
    old = orjson.dumps({"seq": 4, "alerts": [{**row, "state": "firing"}]})
    new = orjson.dumps({"seq": 6, "alerts": [{**row, "state": "pending"}],
                        "silences": [{"id": "s1"}]})
    torn = orjson.dumps({"seq": 7, "alerts": [{**row, "state": "firing"}]})[:-9]
    out = merge(snap, [old, new, torn, b""])
    assert out["alerts"] == [{**row, "state": "pending"}]
    assert out["silences"] == [{"id": "s1"}]
    assert out["seq"] == 6


def test_the_log_is_folded_into_a_snapshot_once_it_outgrows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statefile, "COMPACT_MIN", 1)
    clock = Clock()
    svc = owner(tmp_path, clock)
    sample(svc, clock, 1.0)
    svc.save(full=False)
    snap = tmp_path / "alerts.json"
    log = changes_path(snap)
    sizes = []
    for i in range(12):  # flapping api: every save has a change to append
        sample(svc, clock, float(i % 2))
        svc.save(full=False)
        sizes.append(log.stat().st_size if log.exists() else 0)
    assert max(sizes) <= 2 * snap.stat().st_size + 4096
    assert 0 in sizes[1:]  # folded at least once after it had grown
    merged = read_state(snap)
    assert merged is not None
    live = {a.id: a.state.value for a in svc.alerts.alerts()}
    assert {f"{r['rule']}/{r['target']}": r["state"] for r in merged["alerts"]} == live


def test_a_clean_stop_leaves_everything_in_alerts_json(tmp_path: Path) -> None:
    clock = Clock()
    svc = owner(tmp_path, clock)
    sample(svc, clock, 1.0)
    svc.save(full=False)
    sample(svc, clock, 0.0)
    svc.save(full=False)
    svc.save()  # what stop() does last
    assert not changes_path(tmp_path / "alerts.json").exists()
    data = orjson.loads((tmp_path / "alerts.json").read_bytes())
    assert any(r["rule"] == "api-down" and r["state"] == "firing" for r in data["alerts"])


def test_the_change_log_is_where_data_paths_says() -> None:
    paths = DataPaths(Path("/d"))
    assert changes_path(paths.alert_state) == paths.alert_changes
    assert ("alert state changes", paths.alert_changes) in paths.listing()


def test_the_saver_is_offered_only_alerts_that_moved(tmp_path: Path) -> None:
    """A 1 s target's result steps its alerts every second; only those whose saved state
    moved reach the saver, so a save's cost follows what changed, not the alert count."""
    clock = Clock()
    svc = owner(tmp_path, clock)

    def step(api: float) -> None:  # the lifecycle alone (the service would save at once)
        clock.t += 10
        svc.engine.store.record("api:up", clock.t, api)
        svc.engine.store.record("web:up", clock.t, 1.0)
        svc.core.run(clock.t)

    for _ in range(5):
        step(1.0)
    svc.alerts.take_changed()
    for _ in range(5):  # healthy and settled: nothing moves
        step(1.0)
    assert svc.alerts.take_changed() == []
    step(0.0)  # api fails
    assert [a.id for a in svc.alerts.take_changed()] == ["api-down/api"]


def test_reports_see_an_alert_that_fired_after_the_last_whole_snapshot(
        tmp_path: Path) -> None:
    """`opsconsole report` and the post-mortem read the firing alerts of a data directory
    (`read_sources`): from alerts.json and the changes saved since. From alerts.json alone
    the daily summary said 'still firing 0' beside an alert firing for 8 minutes."""
    from console.engine.incidents.context import read_sources

    clock = Clock()
    svc = owner(tmp_path, clock)
    sample(svc, clock, 1.0)
    svc.save(full=False)  # the whole snapshot: nothing firing
    sample(svc, clock, 0.0)  # api-down fires
    svc.save(full=False)  # only the change is written
    assert changes_path(tmp_path / "alerts.json").exists()
    episodes, _ = read_sources(DataPaths(tmp_path), now=clock.t)
    ongoing = [(e["rule"], e["target"]) for e in episodes if e.get("ongoing")]
    assert ongoing == [("api-down", "api")]


def test_the_daily_summary_counts_alerts_still_firing_without_a_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`report --demo --format markdown` said "No alert fired" beside six firing: its
    summary read open alerts through the config's rules (there was none) and from the
    snapshot alone. It reads them as `report` does: snapshot plus changes, no rules."""
    from console.cli import main

    clock = Clock()
    svc = owner(tmp_path, clock)
    sample(svc, clock, 1.0)
    svc.save(full=False)  # the whole snapshot: nothing firing
    sample(svc, clock, 0.0)  # api-down fires, saved as a change only
    svc.alerts.ack("api-down", "api", "ana")
    svc.save(full=False)
    assert changes_path(tmp_path / "alerts.json").exists()
    monkeypatch.setenv("OPSCONSOLE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPSCONSOLE_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setattr("time.time", lambda: clock.t + 60)
    assert main(["report", "--since", "1d", "--format", "json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    p0 = next(r for r in doc["alerts"]["by_severity"] if r["severity"] == "P0")
    assert (p0["episodes"], p0["acknowledged"], p0["ongoing"]) == (1, 1, 1)
    assert main(["report", "--since", "1d", "--format", "markdown"]) == 0
    assert "| P0 | 1 | 1 | 0 | 1 |" in capsys.readouterr().out


def test_a_damaged_alert_state_is_set_aside_and_said(tmp_path: Path) -> None:
    """A walk cut alerts.json in half: the console started without a word, its silences
    and acknowledgements gone, and the next save overwrote the evidence."""
    clock = Clock()
    svc = owner(tmp_path, clock)
    sample(svc, clock, 0.0)  # api-down fires
    svc.alerts.ack("api-down", "api", "ana")
    svc.save()
    state = tmp_path / "alerts.json"
    whole = state.read_bytes()
    state.write_bytes(whole[: len(whole) // 2])
    again = owner(tmp_path, clock)
    said: list[str] = []
    again.on_notice = said.append
    assert again.load() == 0
    [aside] = list(tmp_path.glob("alerts.json.corrupt-*"))
    assert aside.read_bytes() == whole[: len(whole) // 2]  # kept as found
    assert not state.exists()
    assert len(said) == 1
    assert said[0].startswith(f"alert state {state} unreadable (")
    assert f"set aside as {aside.name}; alerts, acknowledgements and silences start " \
           "afresh" in said[0]
    assert again.alerts.current() == []


async def test_an_alert_state_the_disk_refuses_is_a_standing_problem(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a full disk the alert state stopped saving, said only in the log: an ack was
    lost at the next restart. Now a problem, cleared once a save succeeds."""
    import errno

    clock = Clock()
    svc = owner(tmp_path, clock)
    problems: list[str | None] = []
    svc.on_problem = problems.append
    real = svc.write_state

    def full(change: tuple[str, bytes]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(svc, "write_state", full)
    sample(svc, clock, 0.0)  # api-down fires: a change to save
    svc._save_soon()  # noqa: SLF001 - the loop's saver, as a transition calls it
    assert svc._saver is not None  # noqa: SLF001
    await svc._saver  # noqa: SLF001
    assert len(problems) == 1
    assert problems[0] is not None
    assert problems[0].startswith("alert state not saved (No space left on device)")
    monkeypatch.setattr(svc, "write_state", real)
    svc.alerts.ack("api-down", "api", "ana")
    svc._save_soon()  # noqa: SLF001
    await svc._saver  # noqa: SLF001
    assert problems == [problems[0], None]
    assert read_state(tmp_path / "alerts.json") is not None
