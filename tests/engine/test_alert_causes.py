"""Every alert says why: the demo's faults, checked by the real probes, give alerts whose cause
names what failed, with the runbook's what-to-do, in the same words on every channel.

The demo stack runs on 127.0.0.1 with its background traffic off (`simulate()` makes steady
traffic at once); the scheduler does not poll by itself: each round advances an injected
clock and checks every target once, so `for` periods pass in milliseconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from console.demo.stack import DemoStack
from console.engine.alerting.lifecycle import AlertEngine, AlertState, Notification
from console.engine.alerting.receivers import email, pagerduty, slack, sms
from console.engine.alerting.rules import RuleSet
from console.engine.config.loader import load_config_text
from console.engine.config.rules import Receiver
from console.engine.incidents.playbooks import load_playbooks
from console.engine.scheduler import Scheduler

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Rig:
    stack: DemoStack
    clock: Clock
    scheduler: Scheduler
    core: AlertEngine
    notes: list[Notification] = field(default_factory=list)

    async def step(self, seconds: float = 2.0) -> None:
        """`seconds` of traffic, then one round of checks at the clock's new time."""
        self.stack.simulate(seconds)
        self.clock.t += seconds
        await self.scheduler.check_once()

    def alert(self, rule: str, target: str) -> object:
        return self.core.alerts.get(rule, target)

    def firing(self, rule: str, target: str) -> bool:
        a = self.core.alerts.get(rule, target)
        return a is not None and a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    stack = DemoStack(port=0, seed=11, traffic=False)
    await stack.start()
    clock = Clock()
    settings = load_config_text(stack.config_toml(), "<demo>")
    scheduler = Scheduler(settings, clock=clock)
    await scheduler.start(poll=False)
    ruleset = RuleSet.from_settings(settings, load_playbooks().advice)
    core = AlertEngine(ruleset, scheduler.store, settings.alerting, clock=clock,
                       results=scheduler.last_result)
    r = Rig(stack, clock, scheduler, core)
    scheduler.subscribe(lambda res: r.notes.extend(core.run(clock(), target=res.target)))
    try:
        for _ in range(3):  # a healthy baseline: every rate has a previous scrape
            await r.step()
        yield r
    finally:
        await scheduler.stop()
        await stack.stop()


async def until(rig: Rig, rule: str, target: str, *, rounds: int, step: float = 2.0) -> None:
    for _ in range(rounds):
        if rig.firing(rule, target):
            return
        await rig.step(step)
    assert rig.firing(rule, target), (rule, target, rig.alert(rule, target))


def fired(rig: Rig, rule: str, target: str) -> Notification:
    return next(n for n in rig.notes if n.rule == rule and n.target == target
                and n.transition == "firing")


def assert_every_channel_says(n: Notification, *words: str) -> None:
    """Slack, SMS, email and PagerDuty all carry the cause (and the what-to-do where there
    is room), as the receivers render them for the wire."""
    mail_r = Receiver(name="mail", kind="email", url="smtp://127.0.0.1:25",
                      mail_from="a@example.com", mail_to=["b@example.com"])
    slack_r = Receiver(name="chat", kind="slack", url="${SLACK_WEBHOOK_URL}")
    chat = str(slack.payload(n, slack_r))
    mail = email.notes_message(mail_r, [n], n.key, mail_from="a@example.com",
                               mail_to=["b@example.com"]).get_body(("plain",)).get_content()
    text = sms.sms_text([n])
    page = str(pagerduty.event(n, "k" * 32, slack_r))
    for w in words:
        assert w in chat, (w, chat)
        assert w in mail, (w, mail)
        assert w in text, (w, text)
        assert w in page, (w, page)
    assert n.action
    assert f"What to do: {n.action}" in mail
    assert f"*What to do:* {n.action}" in chat.replace("\\n", "\n")
    assert n.action in page


async def test_dependency_down_names_redis_and_its_message(rig: Rig) -> None:
    rig.stack.inject("dependency_down")
    await until(rig, "dependency-down", "api-health", rounds=5)
    a = rig.core.alerts.get("dependency-down", "api-health")
    assert a is not None
    assert a.cause == "redis: down — connect ECONNREFUSED 10.0.3.7:6379"
    assert a.rule.severity == "P1"
    assert a.action.startswith("find the failing part")  # the high-error-rate runbook's
    assert "redis: down — connect ECONNREFUSED" in a.text()
    assert a.to_json(rig.clock())["cause"] == a.cause
    n = fired(rig, "dependency-down", "api-health")
    assert n.cause == a.cause
    assert_every_channel_says(n, "redis: down")
    # The payments endpoint's own words, and the P0 it raises.
    await until(rig, "payment-webhooks-down", "payments-webhook", rounds=5)
    p0 = rig.core.alerts.get("payment-webhooks-down", "payments-webhook")
    assert p0 is not None
    assert p0.cause.startswith("health error: idempotency store (redis) unreachable")
    assert "Stripe Dashboard" in p0.action


async def test_error_spike_names_the_error_rate_with_units_and_the_worst_endpoints(
        rig: Rig) -> None:
    rig.stack.inject("error_spike")
    await until(rig, "error-rate-high", "api-metrics", rounds=6)
    a = rig.core.alerts.get("error-rate-high", "api-metrics")
    assert a is not None
    assert a.cause.startswith("error_pct ")
    assert " %, above 5.0 %; worst: " in a.cause
    assert "/api/" in a.cause
    # the log target's burst names the messages that matched
    await until(rig, "errors-burst", "api-logs", rounds=5)
    burst = rig.core.alerts.get("errors-burst", "api-logs")
    assert burst is not None
    assert burst.cause.startswith("errors_total +")
    assert " in 1 min, above 10; errors: " in burst.cause
    assert '"Unhandled exception" ×' in burst.cause
    assert_every_channel_says(fired(rig, "errors-burst", "api-logs"), "Unhandled exception")
    # a first-seen error says which message it is
    await until(rig, "new-error-kind", "api-logs", rounds=3)
    first_seen = rig.core.alerts.get("new-error-kind", "api-logs")
    assert first_seen is not None
    assert 'first seen: "' in first_seen.cause


async def test_latency_spike_crosses_the_p1_line_after_five_minutes(rig: Rig) -> None:
    rig.stack.inject("latency_spike")
    await rig.step(15.0)
    a = rig.core.alerts.get("latency-p95-slow", "api-metrics")
    assert a is not None
    assert a.state == AlertState.PENDING
    first = a.first_fail_at
    await until(rig, "latency-p95-slow", "api-metrics", rounds=25, step=15.0)
    assert a.fired_at is not None
    assert first is not None
    assert a.fired_at - first >= 300  # `for = "5m"`: the playbook's "> 2 s for 5 minutes"
    assert a.cause.startswith("p95_ms ")
    assert ", above 2.00 s; worst: /api/" in a.cause
    assert "slow endpoint" in a.action  # the slow-performance runbook's


async def test_a_database_alert_carries_the_drivers_error() -> None:
    """Nothing listens on the port: the driver's own error is the cause."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clock = Clock()
    settings = load_config_text(
        f'[[targets]]\nname = "db"\nkind = "postgres"\ndsn = "postgresql://127.0.0.1:{port}/x"\n'
        'interval = "1s"\ntimeout = "1s"\n', "<db>")
    scheduler = Scheduler(settings, clock=clock)
    await scheduler.start(poll=False)
    try:
        core = AlertEngine(RuleSet.from_settings(settings, load_playbooks().advice),
                           scheduler.store, settings.alerting, clock=clock,
                           results=scheduler.last_result)
        for _ in range(3):
            clock.t += 1
            await scheduler.check_once()
            core.run(clock())
        a = core.alerts.get("database-unreachable", "db")
        assert a is not None
        assert a.state == AlertState.FIRING
        last = scheduler.last_result("db")
        assert last is not None
        assert last.error
        assert a.cause == last.error
        assert str(port) in a.cause
    finally:
        await scheduler.stop()


async def test_a_windowed_alert_after_recovery_says_its_figure_lags(rig: Rig) -> None:
    """A walk cleared a fault and a P0 fired 15 s later, "webhook_failures_per_s averaging
    1.833/s over 1 min, above 0/s": a minute's mean stays above 0 for a minute after the
    last failure, and nothing told a figure still catching up from a fault still there."""
    rig.stack.inject("dependency_down")
    await until(rig, "payment-webhook-failures", "api-metrics", rounds=40)
    a = rig.core.alerts.get("payment-webhook-failures", "api-metrics")
    assert a is not None
    assert a.cause.startswith("webhook_failures_per_s averaging ")
    assert "lags" not in a.cause  # failing now too: nothing lags
    rig.stack.clear("dependency_down")
    await rig.step()
    await rig.step()  # a rate needs two scrapes without failures
    assert rig.firing("payment-webhook-failures", "api-metrics")  # the minute's mean > 0
    assert a.cause.endswith(", above 0/s; now 0/s, within the threshold: the 1 min figure "
                            "lags"), a.cause


def test_an_increase_reads_as_a_count() -> None:
    """A counter's increase is extrapolated over its window, as Prometheus does: a walk
    read "+95.67 in 1 min" and "+877.5 in 1 min" as fractions of errors. Whole numbers from
    10 on; below, two figures (the extrapolation shows); other figures as before."""
    from console.engine.alerting.explain import describe_value
    from console.engine.lang.ruleexpr import parse_expr

    burst = parse_expr("increase(errors_total, 1m) > 10")
    assert describe_value(burst, 95.67) == "errors_total +96 in 1 min, above 10"
    assert describe_value(burst, 877.5, threshold=False) == "errors_total +878 in 1 min"
    kinds = parse_expr("increase(new_error_kinds_total, 5m) > 0")
    assert describe_value(kinds, 2.285) == "new_error_kinds_total +2.3 in 5 min, above 0"
    rate = parse_expr("rate(errors_total, 1m) > 0.5")
    assert describe_value(rate, 0.61234) == "errors_total rising 0.6123/s over 1 min, above 0.5"
