"""The on-call journey, end to end, on the demo: the playbook's three common incidents from
fault to post-mortem, as an operator drives them.

Each test injects one demo fault, lets the real probes see it, and then does what the
playbook asks: the P0/P1 shows on whatever screen is open, the alert says why, the operator
acknowledges it, opens an incident, follows every runbook link to the screen that answers
it, mitigates, resolves (confirming), and writes the post-mortem, whose KPIs must equal the
times of the events the test caused.

Time is the test's: the app runs on an injected clock that moves only when the test moves
it, the scheduler does not poll by itself (`poll=False`: each round checks every target
once at the clock's time), and the demo's traffic is simulated for exactly the seconds the
clock moved (`DemoStack.simulate`). The demo stack, the machine's PostgreSQL and Redis, and
every probe are real.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import OptionList, Static

from console.app import OpsConsoleApp
from console.demo.stack import DemoStack
from console.engine.alerting.lifecycle import AlertState
from console.engine.incidents.kpis import incident_kpis
from console.engine.text.fmt import format_age
from console.screens.alerts import AlertsScreen
from console.screens.breakdown import BreakdownScreen
from console.screens.database import DatabaseScreen
from console.screens.detail import DetailScreen
from console.screens.health import HealthScreen
from console.screens.incidents import IncidentListScreen, IncidentScreen
from console.screens.logs import LogsScreen
from console.screens.prompt import Confirm
from tests.ui.apptools import screen_text, wait_for

pytestmark = pytest.mark.usefixtures("ui_env")

STEP = 10.0  # seconds of demo time per round of checks


class Clock:
    """The app's clock: moves only when the test moves it."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Journey:
    def __init__(self, pilot: Any, app: Any, stack: DemoStack, clock: Clock) -> None:
        self.pilot, self.app, self.stack, self.clock = pilot, app, stack, clock

    async def round(self, seconds: float = STEP) -> float:
        """`seconds` of traffic, the clock moved by as much, every target checked once."""
        self.stack.simulate(seconds)
        self.clock.t += seconds
        await self.app.scheduler.check_once()
        self.app.refresh_screen()
        await self.pilot.pause()
        return self.clock.t

    def alert(self, rule: str, target: str) -> Any:
        return self.app.alerting.alerts.get(rule, target)

    async def until_firing(self, rule: str, target: str, rounds: int,
                           seconds: float = STEP) -> Any:
        for _ in range(rounds):
            a = self.alert(rule, target)
            if a is not None and a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED):
                return a
            await self.round(seconds)
        raise AssertionError(f"{rule} on {target} never fired: {self.alert(rule, target)}")

    async def until_resolved(self, rule: str, target: str, rounds: int) -> Any:
        for _ in range(rounds):
            a = self.alert(rule, target)
            if a is not None and a.state == AlertState.RESOLVED:
                return a
            await self.round()
        raise AssertionError(f"{rule} on {target} never resolved")

    async def press(self, *keys: str) -> None:
        await self.pilot.press(*keys)
        await self.pilot.pause()

    async def screen(self, kind: type, what: str) -> Any:
        await wait_for(self.pilot, lambda: isinstance(self.app.screen, kind), 15, what)
        return self.app.screen

    async def back_to(self, kind: type) -> Any:
        await self.press("escape")
        return await self.screen(kind, kind.__name__)


def demo_app(tmp_path: Path, clock: Clock) -> tuple[OpsConsoleApp, DemoStack]:
    stack = DemoStack(port=0, seed=20, traffic=False, log_path=str(tmp_path / "combined.log"))
    app = OpsConsoleApp(settings=None, demo_stack=stack, demo_local=True, history=False,
                        poll=False, clock=clock)
    return app, stack


async def start(pilot: Any, app: Any, stack: DemoStack, clock: Clock) -> Journey:
    await wait_for(pilot, lambda: app.runtime is not None and app.alerting is not None
                   and app.desk is not None, 20, "the demo and the runtime started")
    # The test moves time; the service's own tick (2 s of real time) would evaluate
    # between a clock step and the round of checks that follows it.
    app.alerting.tick_s = 1e9
    # The host targets measure the machine running the tests, busy with other tests: its
    # CPU alert belongs to no journey here, so it is silenced, as an operator would.
    for host in ("this-host", "web-1"):
        app.alerting.alerts.silence([f'target="{host}"'], duration=86400, by="test",
                                    reason="the test machine's own load", now=clock())
    j = Journey(pilot, app, stack, clock)
    for _ in range(3):  # healthy rounds: rates and ratios have a previous scrape
        await j.round()
    names = set(app.scheduler.names())
    assert {"postgres", "redis", "api-logs"} <= names  # the machine's servers joined
    return j


async def alert_on_every_screen(j: Journey, summary: str, severity: str) -> None:
    """The banner names the worst loud alert on the overview and on the Logs screen, and
    a toast announced it."""
    app = j.app
    text = screen_text(app)
    assert f"{severity} {summary[:30]}" in text.replace("\n", " ")
    assert any(f"{severity} FIRING" in n.title for n in app._notifications)
    await j.press("L")
    await j.screen(LogsScreen, "logs")
    await wait_for(j.pilot, lambda: severity in screen_text(app).splitlines()[0], 5,
                   "the banner on the Logs screen")
    await j.back_to(type(app.screen_stack[0]))


async def highlight(j: Journey, screen: Any, alert: Any) -> None:
    """j down the alerts list until `alert` is the highlighted row."""
    for _ in range(20):
        if screen.selected() is not None and screen.selected().id == alert.id:
            break
        await j.press("j")
    assert screen.selected().id == alert.id


async def acknowledge_and_open(j: Journey, rule: str, target: str, ack_at: float) -> Any:
    """a: the alerts screen; the alert's panel says why and what to do; a acknowledges it
    (at `ack_at`); o opens its incident. The "FIRING" toast goes once the alerts screen
    shows the same cause: it covered the half of that screen that says why."""
    toast = j.app._alert_toast
    assert toast is not None
    assert j.app.alert_banner().endswith(" · a: alerts")
    await j.press("a")
    screen = await j.screen(AlertsScreen, "alerts")
    # here `a` acknowledges: the banner does not say it opens the alerts
    assert "a: alerts" not in j.app.alert_banner()
    await wait_for(j.pilot, lambda: j.app._alert_toast is None
                   and toast not in j.app._notifications, 5, "the toast withdrawn")
    # an alert announced while this screen is open gets no toast over it (announcing the
    # unacknowledged ones again stands for alerts that start to fire now)
    j.app._rung.clear()
    j.app._announced.clear()
    j.app.refresh_screen()
    await j.pilot.pause()
    j.app.refresh_screen()
    await j.pilot.pause()
    assert not any("FIRING" in n.title for n in j.app._notifications)
    alert = j.alert(rule, target)
    await highlight(j, screen, alert)
    from textual.widgets import Static

    panel = str(screen.query_one("#alerts-why", Static).content)
    assert f"cause: {alert.cause}" in panel
    assert f"do: {alert.action}" in panel
    j.clock.t = ack_at
    await j.press("a")
    await wait_for(j.pilot, lambda: alert.state == AlertState.ACKNOWLEDGED, 5, "acked")
    assert alert.ep_acked_at == ack_at
    await j.press("o")
    screen = await j.screen(IncidentScreen, "the incident screen")
    await wait_for(j.pilot, lambda: screen.incident is not None, 5, "the incident")
    inc = screen.incident
    assert inc.started == alert.fired_at  # its timers count from the alert
    return inc



async def attach_second(j: Journey, inc: Any, rule: str, target: str) -> None:
    """From the incident, back to the alerts: `o` on a second alert of the same problem
    offers the open incident first, and Enter attaches it there (no second incident); `o`
    on it again goes straight to that incident."""
    from console.screens.prompt import Choose

    alerts = await j.back_to(AlertsScreen)
    second = j.alert(rule, target)
    await highlight(j, alerts, second)
    before = len(j.app.runtime.desk.book.incidents)
    await j.press("o")
    choose = await j.screen(Choose, "the choice: attach or a new incident")
    assert "Part of one?" in choose.label
    assert choose.choices[0][0] == inc.id
    await j.press("enter")
    screen = await j.screen(IncidentScreen, "the incident it joined")
    await wait_for(j.pilot, lambda: screen.incident is inc, 5, "the same incident")
    assert second.id in inc.alerts
    assert len(j.app.runtime.desk.book.incidents) == before
    # the incident was acknowledged: the alert joining it is too (the banner kept paging
    # for it until the incident's `a` was pressed again, a walk found)
    assert inc.acknowledged_at is not None
    await wait_for(j.pilot, lambda: second.state == AlertState.ACKNOWLEDGED, 5,
                   "acknowledged with its incident")
    # t: the timeline tells both alerts apart (their names were cut to "alert payment-web…")
    from console.screens.incidents import TimelineScreen

    await j.press("t")
    timeline = await j.screen(TimelineScreen, "the timeline")
    await wait_for(j.pilot, lambda: timeline.query_one(OptionList).option_count > 3, 5,
                   "its events")
    ol = timeline.query_one(OptionList)
    rows = [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]
    assert any(" alert payment-webhooks-down " in r for r in rows), rows
    assert any(" alert dependency-down " in r for r in rows), rows
    assert any("alert dependency-down/api-health attached (api-health)" in r for r in rows)
    # the cursor stays on its event while the timeline refreshes with a new one (a rebuild
    # put it back on the first row every 2 s, so nobody could read past the first page)
    await j.press("G", "k")  # a walk: after G, k did not move (↑ did)
    assert ol.highlighted == ol.option_count - 2
    await j.press("g", "j", "j")
    assert ol.highlighted == 2
    kept = ol.get_option_at_index(2).id
    count = ol.option_count
    await j.app.runtime.desk.note(inc.id, "pool exhausted on api")
    j.app.refresh_screen()
    await wait_for(j.pilot, lambda: ol.option_count == count + 1, 5, "the note on it")
    assert ol.highlighted is not None
    assert ol.get_option_at_index(ol.highlighted).id == kept
    await j.back_to(IncidentScreen)
    alerts = await j.back_to(AlertsScreen)
    # marked as part of it, in the list and the why pane
    ol = alerts.query_one(OptionList)
    await wait_for(j.pilot, lambda: str(ol.get_option(second.id).prompt).endswith(" ⚑"), 5,
                   "redrawn on its return: the alert marked")
    why = str(alerts.query_one("#alerts-why", Static).render())
    assert f"⚑ in {inc.id} (o: go there)" in why
    await j.press("o")  # already in an incident: no question, that incident
    screen = await j.screen(IncidentScreen, "straight to its incident")
    await wait_for(j.pilot, lambda: screen.incident is inc, 5, "the same incident again")

async def follow(j: Journey, inc: Any, playbook: str, section: str, item: int) -> Any:
    """Enter on a runbook item: the screen its link opens."""
    screen = j.app.screen
    ol = screen.query_one(OptionList)
    oid = f"item|{playbook}|{section}|{item}"
    ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
    ol.highlighted = ids.index(oid)
    await j.press("enter")
    await wait_for(j.pilot, lambda: j.app.screen is not screen
                   or j.app.clipboard.startswith("http"), 15, f"{oid} opens something")
    return j.app.screen


async def check_links(j: Journey, inc: Any, playbook: str,
                      expected: list[tuple[str, int, Any]]) -> None:
    for section, item, check in expected:
        j.app.copy_to_clipboard("")
        opened = await follow(j, inc, playbook, section, item)
        # a screen fills in (a drill-down switches to its tab) after its first refresh
        await wait_for(j.pilot, lambda c=check, o=opened: _passes(c, j.app, o), 10,
                       f"{playbook}/{section}[{item}] opens the right screen")
        check(j.app, opened)
        if opened is not j.app.screen_stack[-1] or isinstance(opened, IncidentScreen):
            continue  # an external page: shown and copied, no screen
        await j.back_to(IncidentScreen)


def _passes(check: Any, app: Any, screen: Any) -> bool:
    try:
        check(app, screen)
    except (AssertionError, pytest.fail.Exception):
        return False
    return True


def detail_of(target: str, metric: str) -> Any:
    def check(app: Any, screen: Any) -> None:
        assert isinstance(screen, DetailScreen)
        assert (screen.target, screen.metric) == (target, metric)
    return check


def logs_of(query: str, window: float | None) -> Any:
    def check(app: Any, screen: Any) -> None:
        assert isinstance(screen, LogsScreen)
        assert screen.target == "api-logs"
        assert screen.log_query is not None
        assert screen.log_query.name == query
        assert screen.log_query.since == window
    return check


def db_tab(tab: str) -> Any:
    def check(app: Any, screen: Any) -> None:
        assert isinstance(screen, DatabaseScreen)
        assert screen.target == "postgres"
        assert screen.section == tab
    return check


def health_of(target: str) -> Any:
    def check(app: Any, screen: Any) -> None:
        assert isinstance(screen, HealthScreen)
        assert screen.target == target
    return check


def url(expected: str) -> Any:
    def check(app: Any, screen: Any) -> None:
        assert isinstance(screen, IncidentScreen)  # stays; the page is shown and copied
        assert app.clipboard == expected
        assert any(expected in n.message for n in app._notifications)
    return check


async def resolve_and_write_postmortem(j: Journey, inc: Any, mitigate_at: float,
                                       resolve_at: float, pm_at: float) -> str:
    app = j.app
    j.clock.t = mitigate_at
    await j.press("m")
    await wait_for(j.pilot, lambda: inc.mitigated_at == mitigate_at, 5, "mitigated")
    j.clock.t = resolve_at
    await j.press("R")
    confirm = await j.screen(Confirm, "resolving a P0/P1 asks first")
    assert inc.severity in confirm.question
    await j.press("y")
    await wait_for(j.pilot, lambda: inc.resolved_at == resolve_at, 5, "resolved")
    j.clock.t = pm_at
    await j.press("P")
    await wait_for(j.pilot, lambda: inc.postmortem_drafted_at == pm_at, 10, "draft written")
    assert inc.postmortem_at is None  # a draft of prompts is not the post-mortem yet
    path = app.paths.journal.parent / "postmortems" / f"{inc.id}.md"
    # read whole in the console, scrolled by the keys, then back to the incident
    from textual.containers import VerticalScroll

    from console.screens.document import DocumentScreen

    doc = await j.screen(DocumentScreen, "the post-mortem, to read")
    assert doc.text == path.read_text()
    body = doc.query_one("#document-body", VerticalScroll)
    await j.press("G")
    assert body.scroll_y == body.max_scroll_y > 0
    await j.press("g")
    assert body.scroll_y == 0
    await j.back_to(IncidentScreen)
    # the engineer fills in the root cause; `P` again: now the post-mortem is written
    path.write_text(path.read_text().replace(
        "## Root cause\n", "## Root cause\n\nThe dependency ran out of memory.\n", 1))
    await j.press("P")
    await wait_for(j.pilot, lambda: inc.postmortem_at == pm_at, 10, "post-mortem written")
    await j.screen(DocumentScreen, "the post-mortem as edited")
    await j.back_to(IncidentScreen)
    return path.read_text()


def assert_kpis(j: Journey, inc: Any, md: str, *, first_fail: float, fired: float,
                acked: float, mitigated: float, recovered: float, resolved: float) -> None:
    """Each KPI equals the time between the events the test caused, on screen and in the
    post-mortem, and is judged against the playbook's target."""
    measures = {m.name: m for m in incident_kpis(inc, j.app.runtime.episodes(j.clock()))}
    assert measures["detect"].seconds == pytest.approx(fired - first_fail)
    assert measures["acknowledge"].seconds == pytest.approx(acked - fired)
    ack = measures["acknowledge"]
    if len(inc.alerts) > 1:  # which alert fired and which was acknowledged, by name
        assert ack.start_what.startswith("alert firing (")
        assert re.fullmatch(r"alert [\w-]+ acknowledged by .+", ack.end_what), ack.end_what
    else:
        assert ack.end_what.startswith("alert acknowledged by ")
    assert measures["mitigate"].seconds == pytest.approx(mitigated - fired)
    # users were affected from the first failing sample, not from the firing
    assert measures["impact"].seconds == pytest.approx(recovered - first_fail)
    assert measures["resolve"].seconds == pytest.approx(resolved - fired)
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()
            if line.startswith("| ") and line.count("|") == 7}
    for name, label in (("detect", "Detect"), ("acknowledge", "Acknowledge"),
                        ("mitigate", "Mitigate"), ("impact", "Impact"),
                        ("resolve", "Resolve")):
        m = measures[name]
        from console.engine.incidents.postmortem import elapsed

        assert f"| {elapsed(m.seconds)} |" in rows[label], (label, rows[label])
    # the story from events, in the order they happened (not the order of key presses)
    story = md[md.index("## Timeline (UTC)"):md.index("## Root cause")]
    for event in ("first failing sample", " firing on ", "alert ", "acknowledged",
                  "incident opened", "mitigated", "resolved on ", "incident resolved"):
        assert event in story, (event, story)
    offsets = [line.split("(", 1)[1].split(")", 1)[0] for line in story.splitlines()
               if line.startswith("- `")]
    seconds = [(-1 if o[0] == "−" else 1) * _seconds(o[1:]) for o in offsets]
    assert seconds == sorted(seconds), story


def _seconds(text: str) -> float:
    """`2m45s`, `1h02m`, `20s` back to seconds."""
    import re

    total = 0.0
    for n, unit in re.findall(r"(\d+)([dhms])", text):
        total += int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit]
    return total


# -- incident 1: high error rate --------------------------------------------------------


async def test_high_error_rate_from_fault_to_postmortem(tmp_path: Path) -> None:
    clock = Clock(time.time())
    app, stack = demo_app(tmp_path, clock)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        j = await start(pilot, app, stack, clock)
        stack.inject("error_spike")
        first = await j.round()
        alert = await j.until_firing("error-rate-high", "api-metrics", rounds=6)
        assert alert.first_fail_at == first
        fired = alert.fired_at
        # the alert names the cause: the error rate with its unit and the worst endpoints
        assert alert.cause.startswith("error_pct ")
        assert " %, above 5.0 %; worst: /api/" in alert.cause
        await alert_on_every_screen(j, alert.summary, "P1")
        inc = await acknowledge_and_open(j, "error-rate-high", "api-metrics", fired + 165)
        assert inc.runbook == "high-error-rate"
        await check_links(j, inc, "high-error-rate", [
            ("symptoms", 0, detail_of("api-metrics", "error_pct")),
            ("symptoms", 1, health_of("api-health")),
            ("investigation", 0, logs_of("errors-by-message", 3600.0)),
            ("investigation", 2, health_of("api-health")),
            ("investigation", 3, db_tab("activity")),
        ])
        await j.press("v")  # a snapshot, with units in the post-mortem
        await wait_for(pilot, lambda: bool(inc.snapshots), 5, "snapshot")
        assert "api-metrics:error_pct" in inc.snapshots[0]["values"]
        stack.clear("error_spike")
        resolved = await j.until_resolved("error-rate-high", "api-metrics", rounds=6)
        recovered = resolved.resolved_at
        md = await resolve_and_write_postmortem(j, inc, mitigate_at=fired + 240,
                                                resolve_at=recovered + 600,
                                                pm_at=recovered + 3600)
        assert_kpis(j, inc, md, first_fail=first, fired=fired, acked=fired + 165,
                    mitigated=fired + 240, recovered=recovered, resolved=recovered + 600)
        # K on the incident list: the period's KPIs read the same alert history, so the
        # mean impact is this incident's (the screen said "—": it had no episodes)
        await j.back_to(AlertsScreen)  # it was opened from the alerts screen
        await j.press("i")
        await j.screen(IncidentListScreen, "the incident list")
        await j.press("K")
        await wait_for(pilot, lambda: bool(app.screen.query("#kpi-text")), 5, "KPI screen")
        kpis = str(app.screen.query_one("#kpi-text", Static).render())
        [impact] = [line for line in kpis.splitlines() if "mean impact" in line]
        assert format_age(recovered - first) in impact, impact
        # longer than 24 rows: G, g and j scroll it as they move a list (arrows only did)
        from textual.containers import VerticalScroll

        body = app.screen.query_one("#kpi-body", VerticalScroll)
        assert body.max_scroll_y > 0
        await j.press("G")
        assert body.scroll_y == body.max_scroll_y
        await j.press("g", "j")
        assert body.scroll_y == 1
        await j.press("escape")
        assert "The alert said: \"error_pct " in md
        assert "| api-metrics:error_pct | " in md
        assert " % |" in md  # snapshot values with their unit


# -- incident 2: slow performance -------------------------------------------------------


async def test_slow_performance_from_fault_to_postmortem(tmp_path: Path) -> None:
    clock = Clock(time.time())
    app, stack = demo_app(tmp_path, clock)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        j = await start(pilot, app, stack, clock)
        stack.inject("latency_spike")
        first = await j.round(30.0)
        # the P1 line: p95 above 2 s for 5 minutes
        alert = await j.until_firing("latency-p95-slow", "api-metrics", rounds=14,
                                     seconds=30.0)
        assert alert.first_fail_at == first
        fired = alert.fired_at
        assert fired - first >= 300
        assert alert.cause.startswith("p95_ms ")
        assert ", above 2.00 s; worst: /api/" in alert.cause
        await alert_on_every_screen(j, alert.summary, "P1")
        inc = await acknowledge_and_open(j, "latency-p95-slow", "api-metrics", fired + 60)
        assert inc.runbook == "slow-performance"
        await check_links(j, inc, "slow-performance", [
            ("symptoms", 0, detail_of("api-metrics", "p95_ms")),
            ("investigation", 0, url("https://pagespeed.web.dev/")),
            ("investigation", 1, db_tab("statements")),
            ("investigation", 2, detail_of("redis", "hit_rate_pct")),
            ("investigation", 3, lambda app, s: (
                isinstance(s, BreakdownScreen) and s.target == "api-metrics"
                and s.initial_sort == "p95_ms") or pytest.fail(f"not the endpoints: {s}")),
        ])
        # severity chosen, with why (kept for the post-mortem)
        await j.press("s")
        await wait_for(pilot, lambda: "P2 Medium" in screen_text(app), 5, "chooser")
        await j.press("2")  # P1 again: confirmed, with why (no change)
        await wait_for(pilot, lambda: "Why P1? (confirms it" in screen_text(app), 5, "why")
        await j.press(*"users see it", "enter")
        await wait_for(pilot, lambda: inc.timeline[-1].get("confirmed") is True, 5,
                       "severity confirmed")
        assert inc.severity_changes == []
        stack.clear("latency_spike")
        resolved = await j.until_resolved("latency-p95-slow", "api-metrics", rounds=6)
        recovered = resolved.resolved_at
        md = await resolve_and_write_postmortem(j, inc, mitigate_at=fired + 900,
                                                resolve_at=recovered + 120,
                                                pm_at=recovered + 7200)
        assert_kpis(j, inc, md, first_fail=first, fired=fired, acked=fired + 60,
                    mitigated=fired + 900, recovered=recovered, resolved=recovered + 120)
        # a `for = 5m` rule detects in 5 min at best: the playbook's MTTD target exactly
        detect = next(line for line in md.splitlines() if line.startswith("| Detect |"))
        assert "| 5m00s | < 5 min | met |" in detect


# -- incident 3: payment processing failure -----------------------------------------------


async def test_payment_processing_failure_from_fault_to_postmortem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = Clock(time.time())
    app, stack = demo_app(tmp_path, clock)
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        j = await start(pilot, app, stack, clock)
        stack.inject("dependency_down")
        first = await j.round()
        alert = await j.until_firing("payment-webhooks-down", "payments-webhook", rounds=5)
        assert alert.first_fail_at == first
        fired = alert.fired_at
        assert alert.rule.severity == "P0"
        assert alert.cause.startswith("health error: idempotency store (redis) unreachable")
        redis = await j.until_firing("dependency-down", "api-health", rounds=3)
        assert redis.cause == "redis: down — connect ECONNREFUSED 10.0.3.7:6379"
        await alert_on_every_screen(j, alert.summary, "P0")
        inc = await acknowledge_and_open(j, "payment-webhooks-down", "payments-webhook",
                                         fired + 120)
        assert inc.severity == "P0"
        assert inc.runbook == "payment-processing-failure"
        await check_links(j, inc, "payment-processing-failure", [
            ("symptoms", 0, detail_of("api-metrics", "webhook_failures_per_s")),
            ("symptoms", 1, detail_of("api-metrics", "payment_failed_pct")),
            ("investigation", 0, url("https://dashboard.stripe.com/webhooks")),
            ("investigation", 1, logs_of("stripe-failed", 3600.0)),
            ("investigation", 3, db_tab("tables")),
        ])
        await attach_second(j, inc, "dependency-down", "api-health")
        # Step 3: a status update; the demo has no Slack receiver, and says nobody is told
        from textual.widgets import Input

        await j.press("u")
        await wait_for(pilot, lambda: isinstance(app.focused, Input), 5, "the prompt")
        app.screen.query_one(Input).value = "Payments delayed; retrying the webhooks"
        await j.press("enter")
        await wait_for(pilot, lambda: bool(inc.status_updates), 5, "journaled")
        assert any(n.message.startswith("status update journaled, not posted: no Slack "
                                        "receiver") for n in app._notifications)
        # nobody was told: Communicate is not done by it, and the timeline says so
        assert inc.step("communicate").done_at is None
        from console.engine.incidents.timeline import describe_entry

        assert describe_entry(inc, inc.timeline[-1])[1].endswith(
            " — not posted: no Slack route")
        # q with a P0 open asks first; n stays
        await j.press("q")
        await j.screen(Confirm, "quitting with a P0 open asks first")
        assert "P0 incident" in app.screen.question
        await j.press("n")
        await j.screen(IncidentScreen, "still running")
        stack.clear("dependency_down")
        resolved = await j.until_resolved("payment-webhooks-down", "payments-webhook",
                                          rounds=6)
        redis_resolved = await j.until_resolved("dependency-down", "api-health", rounds=6)
        # the incident is both alerts': alerted when the first of them fired, over when
        # the last resolved
        recovered = max(resolved.resolved_at, redis_resolved.resolved_at)
        alerted = min(fired, redis.fired_at)
        md = await resolve_and_write_postmortem(j, inc, mitigate_at=fired + 600,
                                                resolve_at=recovered + 300,
                                                pm_at=recovered + 1800)
        assert_kpis(j, inc, md, first_fail=first, fired=alerted, acked=fired + 120,
                    mitigated=fired + 600, recovered=recovered, resolved=recovered + 300)
        assert "idempotency store (redis) unreachable" in md
        assert "| _Add idempotency checks? (the runbook's permanent fix)_ |" in md
    # The demo is a world of its own: its incident is in <data>/demo, never in the real
    # journal, so `opsconsole incidents` is clean and `--demo` shows it.
    import os

    from console.cli import main

    data = Path(os.environ["OPSCONSOLE_DATA_DIR"])
    assert app.paths.journal == data / "demo" / "journal.jsonl"
    assert not (data / "journal.jsonl").exists()
    capsys.readouterr()
    assert main(["incidents", "--all"]) == 0
    assert capsys.readouterr().out == "no incidents\n"
    assert main(["incidents", "--all", "--demo", "--json"]) == 0  # resolved: nothing open
    assert inc.id in capsys.readouterr().out
