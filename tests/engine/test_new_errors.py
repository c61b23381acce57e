"""First-seen error kinds in a real log file: normalised, counted once, remembered on restart."""

from __future__ import annotations

import json
from pathlib import Path

from console.engine.alerting.rules import RuleSet, TargetInfo, evaluate_expr
from console.engine.config.rules import default_rules
from console.engine.config.schema import LogTarget
from console.engine.logs.errorkinds import ErrorKinds, fingerprint, normalise
from console.engine.probes.log import LogProbe
from console.engine.storage.store import MetricStore


def write(path: Path, *records: dict[str, object]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")


def err(message: str) -> dict[str, object]:
    return {"level": "error", "message": message, "timestamp": "2026-11-27T10:00:00.000Z"}


def test_volatile_parts_do_not_make_a_new_kind() -> None:
    assert normalise("timeout after 3012 ms for order 'A-17'") == \
        "timeout after <n> ms for order <q>"
    same = [
        "user 42 not found (request 3f2a9c1e-8b7d-4e21-9a0b-1c2d3e4f5a6b)",
        "user 7 not found (request 0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e)",
    ]
    assert fingerprint(same[0]) == fingerprint(same[1])
    assert normalise('session 65f1c2ab9e0d4b7a8c3e1f20 expired at 0x7ffe12 "x"') == \
        "session <hex> expired at <hex> <q>"
    assert normalise("can't reach `db-1` at 10.0.0.12:5432") == "can't reach <q> at <n>"
    assert fingerprint("Payment failed: card declined") != fingerprint(
        "Payment failed: insufficient funds")


def test_kinds_are_bounded_least_recently_seen_evicted(tmp_path: Path) -> None:
    k = ErrorKinds(tmp_path / "k.json", capacity=3)
    assert [k.observe(m) for m in ("a", "b", "c", "a", "d")] == [True, True, True, False, True]
    assert len(k) == 3
    assert "b" not in k  # "a" was seen again, so "b" was the least recently seen
    assert k.total == 4
    assert list(k.recent) == ["d", "c", "b", "a"]
    k.save()
    again = ErrorKinds(tmp_path / "k.json", capacity=3)
    assert again.load()
    assert ("a" in again, "c" in again, "d" in again, again.total) == (True, True, True, 4)
    (tmp_path / "bad.json").write_text("{not json")
    assert not ErrorKinds(tmp_path / "bad.json").load()  # unreadable: start afresh


async def test_log_probe_counts_first_seen_kinds_and_remembers_them(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    state = tmp_path / "state"
    # errors the service threw before the console started: learnt, not announced
    write(log, err("db timeout after 300 ms"), {"level": "info", "message": "hello"})
    target = LogTarget(name="app-log", path=str(log), interval=1)
    probe = LogProbe(target, state_dir=state)
    try:
        first = await probe.check()
        assert first.metrics["new_error_kinds_total"] == 0.0
        assert "new_errors" not in first.details

        write(log, err("db timeout after 5012 ms"),  # a known kind, another number
              err("payment 'pi_123' failed: card declined"),
              err("payment 'pi_999' failed: card declined"),  # the same new kind
              {"level": "info", "message": "payment 'pi_1' ok"},
              err("render failed \x1b[31mred\x1b[0m\nsecond line"))
        second = await probe.check()
        assert second.metrics["new_error_kinds_total"] == 2.0
        assert second.details["new_error_kinds"] == 2
        shown = second.details["new_errors"]
        assert isinstance(shown, list)
        assert shown[1] == "payment 'pi_123' failed: card declined"
        assert "\x1b" not in shown[0]  # sanitised: one line, no escape sequences
        assert "\n" not in shown[0]
        assert shown[0].startswith("render failed")
    finally:
        await probe.aclose()

    saved = list(state.glob("app-log-*.json"))
    assert len(saved) == 1
    # restarted: the kinds (and the counter, so increase() sees no reset) are remembered
    again = LogProbe(target, state_dir=state)
    try:
        write(log, err("payment 'pi_5' failed: card declined"), err("db timeout after 1 ms"))
        r = await again.check()
        assert r.metrics["new_error_kinds_total"] == 2.0
        assert r.details["new_error_kinds"] == 0
        write(log, err("stripe webhook signature invalid"))
        r = await again.check()
        assert r.metrics["new_error_kinds_total"] == 3.0
        assert r.details["new_errors"][0] == "stripe webhook signature invalid"
    finally:
        await again.aclose()


def test_shipped_rule_fires_on_a_new_kind() -> None:
    rule = next(r for r in default_rules() if r.name == "new-error-kind")
    assert (rule.severity, rule.failure_threshold) == ("P2", 1)
    store = MetricStore()
    t0 = 1_800_000_000.0
    for i, v in enumerate([3, 3, 3, 4]):  # one new kind at the fourth check
        store.record("app-log:new_error_kinds_total", t0 + 10 * i, v)
    log_target = TargetInfo("app-log", "log", 10.0)
    rs = RuleSet([rule], [log_target, TargetInfo("api", "http", 10.0)])
    assert [t.name for _, t in rs.pairs(store)] == ["app-log"]  # only what reports it
    state, value, _, _ = evaluate_expr(rule.condition, store, log_target, t0 + 30)
    assert state == "fail"
    assert value is not None
    assert value > 0
    for i in range(4, 40):  # five quiet minutes later
        store.record("app-log:new_error_kinds_total", t0 + 10 * i, 4)
    state, _, _, _ = evaluate_expr(rule.condition, store, log_target, t0 + 390)
    assert state == "ok"
