"""Alert lifecycle on simulated time: table-driven paths, gates, silences, inhibition, acks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from console.engine.alerting.lifecycle import (
    AlertEngine,
    Alerts,
    AlertState,
    Notification,
    flap_percent,
)
from console.engine.alerting.rules import Evaluation, RuleSet, TargetInfo
from console.engine.config.rules import AlertingSection, Rule
from console.engine.storage.store import MetricStore

T0 = 1_800_000_000.0
STEP = 10.0
API = TargetInfo("api", "http", STEP, "app")
NaN = math.nan


@dataclass
class Run:
    engine: AlertEngine
    store: MetricStore
    notes: list[Notification] = field(default_factory=list)

    @property
    def alerts(self) -> Alerts:
        return self.engine.alerts

    def feed(self, values: list[float | None], *, start: int = 0, metric: str = "x",
             target: str = "api") -> None:
        """One sample per STEP (None: no sample at all), evaluated right after it lands."""
        for i, v in enumerate(values):
            t = T0 + (start + i) * STEP
            if v is not None:
                self.store.record(f"{target}:{metric}", t, v)
            self.notes += self.engine.run(t)

    def at(self, offset: float) -> list[Notification]:
        got = self.engine.run(T0 + offset)
        self.notes += got
        return got

    @property
    def transitions(self) -> list[str]:
        return [n.transition for n in self.notes]


def make(*rules: Rule, alerting: AlertingSection | None = None,
         targets: tuple[TargetInfo, ...] = (API,)) -> Run:
    store = MetricStore()
    rs = RuleSet(rules, targets)
    return Run(AlertEngine(rs, store, alerting, clock=lambda: T0), store)


def rule(**kw: object) -> Rule:
    base: dict[str, object] = {"name": "r", "expr": "x > 0.5", "severity": "P2",
                               "targets": ["api"]}
    base.update(kw)
    return Rule.model_validate(base)


# values: 1 = failing, 0 = fine, NaN = a poll without a value, None = no sample
LIFECYCLE = [
    ("one-off failure (defaults 3/2)", {}, [0, 0, 1, 0, 0, 0], [], AlertState.INACTIVE),
    ("two failures stay pending", {}, [0, 1, 1], [], AlertState.PENDING),
    ("three failures fire, two successes resolve", {}, [0, 1, 1, 1, 1, 0, 0],
     ["firing", "resolved"], AlertState.RESOLVED),
    ("one success is not enough", {}, [1, 1, 1, 0], ["firing"], AlertState.FIRING),
    ("a failure resets the success count", {}, [1, 1, 1, 0, 1, 0, 0],
     ["firing", "resolved"], AlertState.RESOLVED),
    ("failure_threshold=1 fires at once", {"failure_threshold": 1}, [1, 0, 0],
     ["firing", "resolved"], AlertState.RESOLVED),
    ("success_threshold=1", {"success_threshold": 1}, [1, 1, 1, 0], ["firing", "resolved"],
     AlertState.RESOLVED),
    ("for=60s not yet met", {"for": "60s"}, [1, 1, 1, 1, 1, 1, 0], [], AlertState.INACTIVE),
    ("for=60s met", {"for": "60s"}, [1, 1, 1, 1, 1, 1, 1], ["firing"], AlertState.FIRING),
    ("keep_firing_for holds the alert", {"keep_firing_for": "60s"}, [1, 1, 1, 0, 0, 0, 0],
     ["firing"], AlertState.FIRING),
    ("keep_firing_for then resolves", {"keep_firing_for": "60s"},
     [1, 1, 1, 0, 0, 0, 0, 0, 0, 0], ["firing", "resolved"], AlertState.RESOLVED),
    ("missing values while firing: nodata, never resolved", {}, [1, 1, 1, NaN, NaN, NaN],
     ["firing", "nodata"], AlertState.NODATA),
    ("no samples at all while firing: nodata after 3 intervals", {},
     [1, 1, 1, None, None, None, None], ["firing", "nodata"], AlertState.NODATA),
    ("data back after nodata: same incident, no new firing", {}, [1, 1, 1, NaN, 1, 1],
     ["firing", "nodata"], AlertState.FIRING),
    ("data back fine after nodata: resolves", {}, [1, 1, 1, NaN, 0, 0],
     ["firing", "nodata", "resolved"], AlertState.RESOLVED),
    ("nodata while pending tells nobody", {}, [1, 1, NaN, NaN], [], AlertState.NODATA),
    ("re-fire after the flap window is a new incident",
     {"failure_threshold": 1, "success_threshold": 1},
     [1] + [0] * 21 + [1], ["firing", "resolved", "firing"], AlertState.FIRING),
    ("re-fire within the flap window is the flapping notice, not a third message",
     {"failure_threshold": 1, "success_threshold": 1},
     [1, 0, 0, 0, 0, 1], ["firing", "resolved", "flapping"], AlertState.FIRING),
]


@pytest.mark.parametrize(("label", "kw", "values", "want", "final"), LIFECYCLE,
                         ids=[c[0] for c in LIFECYCLE])
def test_lifecycle(label: str, kw: dict[str, object], values: list[float | None],
                   want: list[str], final: AlertState) -> None:
    run = make(rule(**kw))
    run.feed(values)
    assert run.transitions == want, label
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.state == final
    keys = [n.key for n in run.notes]
    assert len(keys) == len(set(keys))  # idempotency keys never repeat


def test_keep_firing_for_resolves_exactly_when_it_ends() -> None:
    run = make(rule(keep_firing_for="60s"))
    run.feed([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    resolved = [n for n in run.notes if n.transition == "resolved"]
    # As Prometheus: from the first evaluation finding the condition false (30 s) + 60 s,
    # not from the last failing sample (20 s), which resolved one interval early.
    assert [n.at - T0 for n in resolved] == [90.0]


def test_keys_and_payload() -> None:
    run = make(rule(failure_threshold=1, success_threshold=1, summary="X high", runbook="rb"))
    run.feed([1] + [0] * 21 + [1])  # fires again after the flap window: a new episode
    assert [n.key for n in run.notes] == ["r/api/firing/1", "r/api/resolved/1",
                                          "r/api/firing/2"]
    n = run.notes[0]
    assert (n.severity, n.summary, n.runbook, n.threshold, n.value) == ("P2", "X high", "rb",
                                                                        "> 0.5", 1.0)
    assert n.group == "service=app"
    assert n.to_json()["labels"]["target"] == "api"


# -- the gates ---------------------------------------------------------------------------------

ALTERNATING = [float(i % 2 == 0) for i in range(60)]  # 10 min of up/down at 10 s


@pytest.mark.parametrize("kw", [{}, {"failure_threshold": 1}, {"for": "30s"},
                                {"failure_threshold": 2, "success_threshold": 3},
                                {"keep_firing_for": "1m"}])
def test_gate_alternating_series_sends_at_most_two(kw: dict[str, object]) -> None:
    run = make(rule(**kw))
    run.feed(ALTERNATING)
    assert len(run.notes) <= 2, run.transitions
    assert run.transitions.count("flapping") == 1  # one notice, not a storm
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.flapping


def test_gate_down_up_target_series_through_default_rules() -> None:
    """The playbook's own target-down rule on an `up` series flipping every 10 s."""
    from console.engine.config.rules import default_rules

    store = MetricStore()
    rs = RuleSet(default_rules(), [API])
    eng = AlertEngine(rs, store, clock=lambda: T0)
    notes: list[Notification] = []
    for i, v in enumerate(ALTERNATING):
        store.record("api:up", T0 + i * STEP, 1.0 - v)
        notes += eng.run(T0 + i * STEP)
    assert len(notes) <= 2, [n.key for n in notes]


def test_gate_one_off_failure_sends_nothing() -> None:
    run = make(rule())
    run.feed([0] * 10 + [1] + [0] * 20)
    assert run.notes == []


def test_flapping_target_two_messages_each_then_one_notice_then_one_when_settled() -> None:
    """Simulated time: two rules of one target flip with it every 10 s for 5 minutes, then
    it stays down. Each alert sends at most firing and resolved, the target one flapping
    notice, nothing while it flaps, and exactly one message when it has settled."""
    quick = {"failure_threshold": 1, "success_threshold": 1}
    run = make(rule(**quick), rule(name="s", expr="x > 0.7", severity="P3", **quick))
    run.feed([float(i % 2 == 0) for i in range(30)])
    notice = run.transitions.index("flapping")
    before = run.notes[:notice]
    for name in ("r", "s"):
        assert [n.transition for n in before if n.rule == name] == ["firing", "resolved"]
    assert run.transitions.count("flapping") == 1
    assert run.notes[notice].detail.startswith("api is flapping")
    assert len(run.notes) == notice + 1  # held while it flaps
    assert run.alerts.target_flaps["api"]["by"] == "r/api"
    run.feed([1.0] * 40, start=30)  # stays down: settles
    after = run.notes[notice + 1:]
    assert [(n.rule, n.transition) for n in after] == [("r", "firing")]
    assert after[0].detail.startswith("api settled after flapping")
    assert "also s firing" in after[0].detail
    assert run.alerts.target_flaps == {}
    run.feed([0.0] * 3, start=70)  # and from then on, as usual
    assert [(n.rule, n.transition) for n in run.notes[notice + 2:]] == [
        ("r", "resolved"), ("s", "resolved")]


def test_a_more_severe_rule_firing_on_a_flapping_target_is_sent() -> None:
    quick = {"failure_threshold": 1, "success_threshold": 1}
    run = make(rule(**quick), rule(name="worse", expr="x > 5", severity="P0", **quick))
    run.feed([float(i % 2 == 0) for i in range(8)])
    assert run.alerts.target_flaps
    run.feed([9.0], start=8)
    assert [(n.rule, n.transition) for n in run.notes][-1] == ("worse", "firing")


def test_flapping_that_settles_where_people_were_told_still_says_so_once() -> None:
    run = make(rule(failure_threshold=1, success_threshold=1))
    run.feed([1, 0, 1, 0, 1, 0] + [0] * 30)
    assert run.transitions == ["firing", "resolved", "flapping", "settled"]
    assert run.notes[-1].key == "r/api/settled/1"


def test_flap_percent_and_hysteresis() -> None:
    assert flap_percent([True] * 21, 21) == 0.0
    assert flap_percent([i % 2 == 0 for i in range(21)], 21) == pytest.approx(100.0)
    one = [False] * 10 + [True] + [False] * 10
    assert flap_percent(one, 21) < 25.0  # a one-off is two changes: about 10 %
    # start at >= high, stop only below low: flapping survives a dip between the two
    run = make(rule(failure_threshold=1, success_threshold=1),
               alerting=AlertingSection(flap_high=50, flap_low=25))
    run.feed([float(i % 2 == 0) for i in range(14)])
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.flapping
    before = len(run.notes)
    trace = []
    for k in range(21):  # settles failing
        run.feed([1.0], start=14 + k)
        trace.append((a.flap_pct, a.flapping))
    assert any(25 <= pct < 50 and flapping for pct, flapping in trace)  # the hysteresis band
    stop = next(k for k, (_, flapping) in enumerate(trace) if not flapping)
    assert trace[stop][0] < 25 <= trace[stop - 1][0]
    assert a.state == AlertState.FIRING
    # once settled, one message: the state if it differs from the last one sent, else that
    # it settled
    assert [n.transition for n in run.notes[before:]] in (["settled"], ["firing"])
    assert run.transitions.count("flapping") == 1


# -- silences, maintenance, inhibition --------------------------------------------------------


def test_silence_holds_back_then_expiry_notifies_if_still_firing() -> None:
    run = make(rule())
    s = run.alerts.silence(['target="api"'], duration=100, by="ana", reason="deploy", now=T0)
    run.feed([1, 1, 1, 1, 1])
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.state == AlertState.FIRING
    assert a.silenced_by == s.id
    assert run.notes == []
    run.feed([1] * 6, start=5)  # silence over at 100 s, still firing
    assert run.transitions == ["firing"]
    assert run.notes[0].at == T0 + 100
    with pytest.raises(ValueError, match="who set it and why"):
        run.alerts.silence(["a=b"], duration=1, by="", reason="x")


def test_silence_not_matching_and_expired_early() -> None:
    run = make(rule())
    s = run.alerts.silence(['service="other"'], duration=1000, by="ana", reason="x", now=T0)
    run.feed([1, 1, 1])
    assert run.transitions == ["firing"]
    run2 = make(rule())
    s = run2.alerts.silence(['severity=~"P[23]"'], duration=1000, by="ana", reason="x", now=T0)
    run2.feed([1, 1, 1])
    assert run2.notes == []
    assert run2.alerts.expire(s.id, now=T0 + 25)
    assert [n.transition for n in run2.at(25)] == ["firing"]
    assert [x.id for x in run2.alerts.silences(now=T0 + 25)] == []


def test_resolved_only_follows_a_firing_notice() -> None:
    run = make(rule())
    run.alerts.silence(["rule=r"], duration=45, by="ana", reason="x", now=T0)
    run.feed([1, 1, 1, 0, 0, 0, 0])  # fired and resolved inside the silence
    assert run.notes == []


def test_maintenance_window_from_config() -> None:
    start = datetime.fromtimestamp(T0 - 10, UTC)
    end = datetime.fromtimestamp(T0 + 35, UTC)
    cfg = AlertingSection.model_validate(
        {"maintenance": [{"start": start, "end": end, "matchers": ['service="app"'],
                          "reason": "db upgrade"}]})
    run = make(rule(), alerting=cfg)
    run.feed([1, 1, 1])
    assert run.notes == []
    assert run.alerts.get("r", "api").silenced_by == "maintenance-1"  # type: ignore[union-attr]
    run.feed([1], start=4)  # 40 s: window over
    assert run.transitions == ["firing"]


def two_targets() -> tuple[TargetInfo, ...]:
    return (TargetInfo("api", "http", STEP, "app"), TargetInfo("api-metrics", "prometheus",
                                                               STEP, "app"),
            TargetInfo("other", "prometheus", STEP, "billing"))


def test_inhibition_p0_api_down_holds_back_p1_error_rate_of_same_service() -> None:
    down = rule(name="api-down", expr="down", severity="P0", targets=["api"],
                inhibits=["error-rate-high"])
    err = rule(name="error-rate-high", expr="error_pct > 5", severity="P1",
               targets=["api-metrics", "other"])
    run = make(down, err, targets=two_targets())
    for i in range(4):
        t = T0 + i * STEP
        run.store.record("api:up", t, 0.0)
        run.store.record("api-metrics:error_pct", t, 50.0)
        run.store.record("other:error_pct", t, 50.0)
        run.notes += run.engine.run(t)
    fired = {(n.rule, n.target) for n in run.notes if n.transition == "firing"}
    assert fired == {("api-down", "api"), ("error-rate-high", "other")}
    held = run.alerts.get("error-rate-high", "api-metrics")
    assert held is not None
    assert held.state == AlertState.FIRING
    assert held.inhibited_by == "api-down/api"
    # the API comes back but errors go on: now the P1 is news
    for i in range(4, 7):
        t = T0 + i * STEP
        run.store.record("api:up", t, 1.0)
        run.store.record("api-metrics:error_pct", t, 50.0)
        run.store.record("other:error_pct", t, 50.0)
        run.notes += run.engine.run(t)
    late = [(n.transition, n.rule, n.target) for n in run.notes[2:]]
    assert ("resolved", "api-down", "api") in late
    assert ("firing", "error-rate-high", "api-metrics") in late


# -- acknowledgement, escalation, time to detect ------------------------------------------------


def test_ack_stops_escalation_and_expiry_renotifies() -> None:
    run = make(rule(severity="P0"))
    run.feed([1, 1, 1])
    assert not run.alerts.ack("r", "nope", "ana")
    assert run.alerts.ack("r", "api", "ana", duration=600, comment="looking", now=T0 + 25)
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.state == AlertState.ACKNOWLEDGED
    run.feed([1] * 60, start=3)  # 10 more minutes failing: acked, so no escalation
    # the acknowledgement itself is news for PagerDuty and webhooks (the notifier routes it)
    assert run.transitions == ["firing", "acknowledged"]
    assert run.notes[1].key == "r/api/acknowledged/1.0"
    assert run.notes[1].detail == "acknowledged by ana: looking"
    assert a.state == AlertState.ACKNOWLEDGED
    run.feed([1] * 2, start=63)  # ack ran out at 625 s: told again
    assert run.transitions == ["firing", "acknowledged", "ack_expired"]
    assert run.notes[-1].key == "r/api/ack_expired/1.1"
    assert a.state == AlertState.FIRING


def test_ack_then_resolve_sends_resolved() -> None:
    run = make(rule())
    run.feed([1, 1, 1])
    assert run.alerts.ack("r", "api", "ana", now=T0 + 20)
    assert not run.alerts.ack("r", "api", "ana", now=T0 + 20)  # already acknowledged
    run.feed([0, 0], start=3)
    assert run.transitions == ["firing", "acknowledged", "resolved"]


@pytest.mark.parametrize(("severity", "after"), [("P0", 900.0), ("P1", 1800.0), ("P2", None)])
def test_escalation_of_unacknowledged(severity: str, after: float | None) -> None:
    run = make(rule(severity=severity))
    run.feed([1, 1, 1])
    fired = run.notes[0].at
    run.feed([1] * 200, start=3)  # 2000 s
    esc = [n for n in run.notes if n.transition == "escalated"]
    if after is None:
        assert esc == []
    else:
        assert len(esc) == 1
        assert esc[0].at - fired == pytest.approx(after, abs=STEP)
        assert esc[0].key == "r/api/escalated/1"


def test_mean_time_to_detect() -> None:
    run = make(rule(for_="30s"))  # pydantic alias and field name both work
    run.feed([0, 1, 1, 1, 1, 1])  # first failure at 10 s, fires at 40 s
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.detect_s == 30.0
    run2 = make(rule(failure_threshold=1, success_threshold=1))
    run2.feed([1, 0, 0, 1])
    assert run2.alerts.mttd() == 0.0


def test_dedup_grouping_and_current_order() -> None:
    rules = [rule(name="a", severity="P2"), rule(name="b", severity="P0")]
    run = make(*rules)
    run.feed([1, 1, 1])
    run.feed([1], start=3)
    assert len(run.alerts.alerts()) == 2  # one alert per rule and target, however many rounds
    assert [a.rule.name for a in run.alerts.current()] == ["b", "a"]
    assert list(run.alerts.groups()) == ["service=app"]
    j = run.alerts.current()[0].to_json(T0 + 30)
    assert j["state"] == "firing"
    assert j["severity"] == "P0"


def test_same_sample_evaluated_twice_counts_once() -> None:
    run = make(rule())
    run.store.record("api:x", T0, 1.0)
    for k in range(5):
        run.notes += run.engine.run(T0 + k)  # five evaluations, one sample
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.fails == 1
    assert a.state == AlertState.PENDING


def test_absent_counts_intervals_not_evaluation_rounds() -> None:
    run = make(rule(name="gone", expr="absent(up, 3)", failure_threshold=2))
    run.store.record("api:up", T0, 1.0)
    for k in range(0, 400, 2):  # evaluated every 2 s, the target polls every 10 s and stopped
        run.notes += run.engine.run(T0 + k)
    a = run.alerts.get("gone", "api")
    assert a is not None
    fired = [n for n in run.notes if n.transition == "firing"]
    assert len(fired) == 1
    # stale after 30 s (first failing slot at 40 s), second failing interval at 50 s
    assert fired[0].at - T0 == pytest.approx(50.0)


def test_snapshot_restore_carries_on_the_same_incident() -> None:
    import orjson

    r = rule(severity="P0")
    run = make(r)
    s = run.alerts.silence(['rule="other"'], duration=900, by="ana", reason="x", now=T0)
    run.feed([1, 1, 1, 1])
    assert run.alerts.ack("r", "api", "ana", duration=60, now=T0 + 35)
    data = orjson.loads(orjson.dumps(run.alerts.snapshot()))  # through JSON, as on disk
    # the detail is saved as the text it reads as (kept unformatted in memory)
    [row] = data["alerts"]
    assert row["detail"] == run.alerts.get("r", "api").detail == "x = 1 (> 0.5)"
    assert "detail_text" not in row
    assert "detail_parts" not in row

    again = make(r)
    again.store = run.store  # same history (the MetricStore persists on its own)
    again.engine.store = run.store
    assert again.alerts.restore(data, [r]) == 1
    a = again.alerts.get("r", "api")
    assert a is not None
    assert (a.state, a.incident, a.acked_by, a.notified) == (AlertState.ACKNOWLEDGED, 1,
                                                             "ana", "firing")
    assert a.detail == "x = 1 (> 0.5)"
    assert [x.id for x in again.alerts.silences(now=T0 + 40)] == [s.id]
    assert again.alerts.silence(["a=b"], duration=1, by="b", reason="r", now=T0).id != s.id
    again.feed([0, 0], start=4)
    again.feed([0] * 21 + [1, 1, 1], start=6)  # after the flap window: a new episode
    assert [n.key for n in again.notes] == ["r/api/resolved/1", "r/api/firing/2"]
    assert again.alerts.restore({"version": 1, "alerts": [{"rule": "gone"}]}, [r]) == 0
    with pytest.raises(ValueError, match="version"):
        again.alerts.restore({"version": 9}, [r])


def test_reminders_every_repeat_interval_until_acknowledged() -> None:
    run = make(rule(severity="P2"), alerting=AlertingSection(repeat_interval="10m"))
    run.feed([1] * 130)  # fires at 20 s, then 21 more minutes failing
    assert run.transitions == ["firing", "reminder", "reminder"]
    assert [n.at - T0 for n in run.notes] == [20.0, 620.0, 1220.0]
    assert run.notes[1].key == "r/api/reminder/1.1"
    assert run.alerts.ack("r", "api", "ana", duration=3600, now=T0 + 1290)
    run.feed([1] * 70, start=130)
    assert run.transitions == ["firing", "reminder", "reminder", "acknowledged"]  # no more
    with pytest.raises(ValueError, match="at least 5m"):
        AlertingSection(repeat_interval="1m")


def test_why_past_the_failure_threshold_is_not_a_fraction() -> None:
    """Pending past the threshold, waiting for `for`: it said "19/3 failing samples"."""
    run = make(rule(for_="60s"))
    run.feed([1] * 4)
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.why(T0 + 30) == ("x = 1 (> 0.5); 4 failing samples (3 needed); fires in 30s if it "
                              "keeps failing")


def test_why_explains_pending_firing_and_holds() -> None:
    run = make(rule(for_="60s", keep_firing_for="30s"))
    run.feed([1, 1])
    a = run.alerts.get("r", "api")
    assert a is not None
    assert a.why(T0 + 10) == ("x = 1 (> 0.5); 2/3 failing samples; fires in 50s if it keeps "
                              "failing")
    run.feed([1] * 5, start=2)  # fires at 60 s
    run.feed([0], start=7)
    # keep_firing_for counts from this first good evaluation (70 s), as Prometheus does
    assert a.why(T0 + 70) == ("x = 0 (not > 0.5); 1/2 good samples to resolve; "
                              "kept firing 30s more")
    run.alerts.silence(["target=api"], duration=600, by="ana", reason="x", now=T0 + 70)
    assert run.alerts.ack("r", "api", "ana", duration=300, now=T0 + 70)
    run.feed([1], start=8)
    assert a.why(T0 + 80) == ("x = 1 (> 0.5); acknowledged by ana for 4m50s more; "
                              "silenced (s1)")
    assert a.to_json(T0 + 80)["why"] == a.why(T0 + 80)


def test_banner_only_for_loud_p0_p1() -> None:
    run = make(rule(name="p2", severity="P2"), rule(name="p0", severity="P0", summary="API down"),
               rule(name="p1", severity="P1"))
    assert run.alerts.banner(T0) is None
    run.feed([1, 1, 1, 1, 1, 1, 1])
    # how many loud alerts, the worst, its cause with units, its age, the key that helps
    assert run.alerts.banner(T0 + 80) == (
        "✖ 2 P0/P1 firing · P0 API down · api · x 1, above 0.5 · for 1m00s · also P1 p1 · api · "
        "a: alerts")
    assert run.alerts.ack("p0", "api", "ana", now=T0 + 80)
    assert run.alerts.banner(T0 + 80) == "✖ P1 p1 · api · x 1, above 0.5 · for 1m00s · a: alerts"
    assert run.alerts.banner(T0 + 80, hint=False) == "✖ P1 p1 · api · x 1, above 0.5 · for 1m00s"
    run.alerts.silence(["rule=p1"], duration=60, by="ana", reason="x", now=T0 + 80)
    run.alerts.tick(T0 + 80)
    assert run.alerts.banner(T0 + 80) is None


def test_banner_names_the_second_loud_alert_and_counts_the_rest() -> None:
    run = make(rule(name="a", severity="P0", summary="API down"),
               rule(name="b", severity="P1", summary="Database unreachable"),
               rule(name="c", severity="P1"))
    run.feed([1, 1, 1, 1, 1, 1, 1])
    banner = run.alerts.banner(T0 + 80, hint=False)
    assert banner is not None
    assert banner.startswith("✖ 3 P0/P1 firing · P0 API down · api · ")
    assert banner.endswith(" · also P1 Database unreachable · api (+1 more)")
    # with less room the cause gives way first, then the second alert's summary; the age
    # and the key at the end stay
    first = run.alerts.get("a", "api")
    assert first is not None
    first.cause = "connect ECONNREFUSED 10.0.3.7:6379 after 3 retries over 2 seconds"
    a = run.alerts.banner(T0 + 80)
    assert a is not None
    tight = run.alerts.banner(T0 + 80, room=len(a) - 10)
    assert tight is not None
    assert len(tight) == len(a) - 10
    assert " · connect ECONNREFUSED 10.0.3.7:6379 after 3 retrie… · for 1m00s · also P1 Database " \
        "unreachable · api (+1 more) · a: alerts" in tight
    tighter = run.alerts.banner(T0 + 80, room=60)
    assert tighter is not None
    assert tighter.endswith(" · for 1m00s · also P1 · api (+1 more) · a: alerts")
    assert run.alerts.banner(T0 + 80, room=10_000) == a


def test_a_summary_fills_in_its_prometheus_label_and_value_references() -> None:
    """An imported rule keeps `{{ $labels.instance }}` in its summary: the alert of each
    labelled series says its own instance and value, in notifications, the episode and
    the incident it opens; other template text stays as written."""
    run = make(rule(failure_threshold=1, summary="Instance {{ $labels.instance }} down: "
                    "{{ $value | humanizePercentage }} ({{ $labels.service }}) {{ if x }}"),
               targets=(TargetInfo("api", "promql", STEP, "app"),))
    for i in range(2):
        t = T0 + i * STEP
        run.store.record('api:x{instance="web-1:9100"}', t, 0.75)
        run.store.record('api:x{instance="web-2:9100"}', t, 0.25)
        run.notes += run.engine.run(t)
    [n] = [n for n in run.notes if n.transition == "firing"]
    assert n.summary == "Instance web-1:9100 down: 75% (app) {{ if x }}"
    [a] = [a for a in run.alerts.alerts() if a.fired_at is not None]
    episode = a.episode(T0 + STEP)
    assert episode is not None
    assert episode["summary"] == n.summary
    assert a.to_json(T0)["summary"] == n.summary
    assert rule(summary="plain").summary == "plain"  # the rule keeps what was written


@pytest.mark.parametrize("seed", range(6))
def test_skipping_the_step_of_settled_alerts_changes_nothing(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`observe` skips stepping a settled quiet alert's "ok" sample (the usual case at
    scale). Two engines take the same random mix of quiet stretches, failures, silences,
    an inhibiting rule and acks, one with the skip and one without: every notification,
    the saved state and the alerts handed to the state saver are the same every round."""
    import random

    from console.engine.alerting import lifecycle

    targets = tuple(TargetInfo(f"t{i}", "http", STEP, f"svc{i % 2}") for i in range(4))
    rules = (rule(name="down", expr="x > 0.5", targets=[], severity="P0",
                  inhibits=["slow"]),
             rule(name="slow", expr="y > 100", targets=[], success_threshold=3),
             rule(name="flaky", expr="z > 0.5", targets=[], failure_threshold=1))
    rng = random.Random(seed)
    plan = []  # per round: values per (target, metric) and an operator action or None
    fail_p = 0.0
    for i in range(400):
        if i % 40 == 0:
            fail_p = rng.choice((0.0, 0.0, 0.05, 0.3, 0.6))
        vals = {(t.name, m): (hi if rng.random() < fail_p else lo)
                for t in targets for m, lo, hi in (("x", 0, 1), ("y", 10, 500), ("z", 0, 1))}
        action = rng.choice(("silence", "ack", "expire")) if rng.random() < 0.03 else None
        plan.append((vals, action, rng.choice(targets).name))

    def play(skip: bool) -> list[object]:
        real = lifecycle._settled

        def counted(a: lifecycle.Alert, ev: Evaluation) -> bool:
            got = skip and real(a, ev)
            skipped[skip] += got
            return got

        monkeypatch.setattr(lifecycle, "_settled", counted)
        run = make(*rules, targets=targets)
        seen: list[object] = []
        for i, (vals, action, who) in enumerate(plan):
            t = T0 + i * STEP
            for (name, metric), v in vals.items():
                run.store.record(f"{name}:{metric}", t, float(v))
            if action == "silence":
                run.alerts.silence([f"target={who}"], duration=15 * STEP, by="op",
                                   reason="test", now=t)
            elif action == "ack":
                run.alerts.ack("down", who, "op", now=t)
            elif action == "expire":
                for s in run.alerts.silences(t):
                    run.alerts.expire(s.id, now=t)
            notes = []
            for name in (x.name for x in targets):  # per result, as the service does
                notes += run.engine.run(t, target=name)
            seen.append([(n.transition, n.rule, n.target, n.detail) for n in notes])
            seen.append(run.alerts.snapshot())
            seen.append(sorted(a.key for a in run.alerts.take_changed()))  # to save
        monkeypatch.undo()
        return seen

    skipped = {True: 0, False: 0}
    fast, slow = play(True), play(False)
    assert fast == slow
    assert skipped[True] > 200  # the skip was taken...
    assert skipped[False] == 0  # ...and compared with the full step
    assert sum(len(x) for x in slow[::3]) > 5, "the plan sent no notification"


def test_an_episode_keeps_what_the_alert_said_when_it_fired() -> None:
    """While an episode goes on, its cause and summary follow the latest sample; the words
    people were notified with stay as they were (the timeline and post-mortem quote them),
    and survive a restart."""
    from console.engine.incidents.timeline import timeline

    r = make(rule(summary="x is {{ $value }}", failure_threshold=1))
    r.feed([0, 3, 7, 9])
    a = r.alerts.get("r", "api")
    assert a is not None
    assert a.state == AlertState.FIRING
    fired = next(n for n in r.notes if n.transition == "firing")
    ep = a.episode(T0 + 40)
    assert ep is not None
    assert (ep["summary"], ep["fired_summary"]) == ("x is 9", fired.summary) == (
        "x is 9", "x is 3")
    assert ep["fired_cause"] == (fired.cause or fired.detail)
    assert ep["fired_cause"] != ep["cause"]
    assert "3" in ep["fired_cause"]
    assert "9" in ep["cause"]
    again = make(rule(summary="x is {{ $value }}", failure_threshold=1))
    again.alerts.restore(r.alerts.snapshot(), [a.rule])
    b = again.alerts.get("r", "api")
    assert b is not None
    restored = b.episode(T0 + 40)
    assert restored is not None
    assert restored["fired_cause"] == ep["fired_cause"]
    events = [e.text for e in timeline(_no_incident(), [ep])]
    assert any("x is 3" in t and ep["fired_cause"] in t for t in events)
    assert not any("x is 9" in t or ep["cause"] in t for t in events)


def _no_incident() -> Any:
    """An incident with no journal entries yet, linked to alert r/api, for `timeline`."""
    from console.engine.incidents.book import Incident

    return Incident(id="INC-1", title="x", severity="P2", started=T0, opened_by="ana",
                    alerts=["r/api"])
