"""Rules per label on a `promql` target: one alert per series of a labelled metric, checked
against a real Prometheus (which series cross the threshold is the server's answer)."""

from __future__ import annotations

from console.engine.alerting.lifecycle import AlertEngine, AlertState
from console.engine.alerting.rules import RuleSet
from console.engine.config.rules import Rule
from console.engine.config.schema import PromqlTarget, Settings
from console.engine.probes.promapi import series_key
from console.engine.scheduler import Scheduler
from tests.promservers import RemoteStores

EXPR = "max by (host) (rule_cpu)"


async def _round(engine: Scheduler, alerting: AlertEngine) -> float:
    [r] = await engine.check_once()
    at = float(r.details["eval_time"])
    alerting.run(r.started_at)
    return at


def _hot(remote_stores: RemoteStores, at: float) -> set[str]:
    """The series the server itself says are above the rule's threshold."""
    return {f'remote{series_key(a["metric"])}'
            for a in remote_stores.prom.query(f"{EXPR} > 80", at)}


async def test_a_labelled_metric_alerts_per_series(remote_stores: RemoteStores) -> None:
    g = remote_stores.gauges
    g.set("rule_cpu", 95.0, host="a")
    g.set("rule_cpu", 10.0, host="b")
    g.scraped()
    settings = Settings(
        targets=[PromqlTarget(name="remote", url=remote_stores.prom.url,
                              metrics={"cpu": EXPR})],
        rules=[Rule(name="hot", expr="cpu > 80", severity="P1", failure_threshold=1,
                    targets=["remote"], summary="CPU hot")])
    engine = Scheduler(settings)
    await engine.start(poll=False)
    alerting = AlertEngine(RuleSet.from_settings(settings.model_copy(update={
        "alerting": settings.alerting.model_copy(update={"default_rules": False})})),
        engine.store, settings.alerting)
    try:
        at = await _round(engine, alerting)
        firing = {a.target for a in alerting.alerts.current() if a.state == AlertState.FIRING}
        assert firing == _hot(remote_stores, at)
        assert len(firing) == 1
        [alert] = [a for a in alerting.alerts.alerts() if a.target in firing]
        assert alert.labels["host"] == "a"  # the series' labels are the alert's
        assert alert.labels["target"] == alert.target
        assert alert.labels["service"] == "remote"
        quiet = alerting.alerts.get("hot", 'remote{host="b"}')
        assert quiet is not None
        assert quiet.state == AlertState.INACTIVE

        g.set("rule_cpu", 99.0, host="b")
        g.scraped()
        at = await _round(engine, alerting)
        firing = {a.target for a in alerting.alerts.current() if a.state == AlertState.FIRING}
        assert firing == _hot(remote_stores, at)
        assert len(firing) == 2
    finally:
        await engine.stop()
