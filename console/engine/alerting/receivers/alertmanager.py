"""The Alertmanager receiver: the console's own alerts pushed to every replica of a cluster.

A receiver of kind "alertmanager" hands the console's firing alerts to the team's
Alertmanager, whose routing, inhibition and PagerDuty/e-mail receivers then take over. It
is not a message sent once per transition (the outbox's job, and the other receivers'
`send(ctx, receiver, batch)`) but a state kept in sync, as Prometheus keeps it, so the
Runtime runs it beside the notifier rather than through the outbox:

* every firing (or acknowledged) alert the receiver's severities take is posted to
  **every** replica (an Alertmanager cluster does not gossip alerts) at once, each replica
  with its own deadline, so a replica that is down or hangs never delays the others;
* each post carries an explicit `endsAt` four re-send periods ahead, and the firing set is
  posted again every `resend` (at most a minute) and at once on any transition, so a
  replica that was down gets every alert within a period of coming back, and an alert the
  console stops sending (the console died) resolves by itself;
* an alert that resolved is posted with its resolution time as `endsAt` (in the past), for
  15 minutes of re-sends, so a replica that missed the first one learns it too;
* alerts the console holds back (a console silence, inhibition) are not pushed: what the
  team's Alertmanager sees is what the console would notify.

Only the process that evaluates alerts pushes (a follower console sends nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from console.engine.alerting.alertmanager import Alertmanager, AMError, iso, parse_time
from console.engine.alerting.lifecycle import AlertState
from console.engine.config.rules import Receiver
from console.engine.text.sanitize import one_line

__all__ = ["AlertmanagerPush", "RESOLVED_RETENTION"]

log = logging.getLogger(__name__)
RESOLVED_RETENTION = 900.0  # seconds a resolved alert keeps being sent (as Prometheus)
_FIRING = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


@dataclass(slots=True)
class ReplicaHealth:
    url: str
    last_ok: float | None = None
    last_error: str | None = None
    failures: int = 0


@dataclass(slots=True)
class _Sent:
    body: dict[str, Any]
    resolved_at: float | None = None


@dataclass(slots=True)
class PushHealth:
    """What the UI shows about one receiver: per replica, the last success and error."""

    name: str
    cluster: str
    replicas: list[ReplicaHealth] = field(default_factory=list)
    pushes: int = 0
    last_push: float | None = None
    alerts: int = 0  # in the last push (firing and recently resolved)

    @property
    def failing(self) -> list[ReplicaHealth]:
        return [r for r in self.replicas if r.last_error is not None]


class AlertmanagerPush:
    """Keeps one cluster's replicas in step with the console's firing alerts."""

    def __init__(self, receiver: Receiver, api: Alertmanager,
                 alerts: Callable[[], Any], *, clock: Callable[[], float] = time.time
                 ) -> None:
        """`alerts()` gives the evaluator's `Alerts` (None when this process does not
        evaluate: nothing is pushed then)."""
        self.receiver = receiver
        self.api = api
        self._alerts = alerts
        self.clock = clock
        self.resend = float(receiver.resend)
        self._sent: dict[str, _Sent] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.health = PushHealth(receiver.name, api.name,
                                 [ReplicaHealth(u) for u in api.urls])

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"alertmanager-push:"
                                                            f"{self.receiver.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    def wake(self, *_: object) -> None:
        """Push now (a transition happened): subscribed to the alert service."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.push_once()
            except Exception:  # a bug must not end the receiver
                log.exception("alertmanager receiver %s failed", self.receiver.name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.resend):
                    await self._wake.wait()

    def payload(self, now: float) -> list[dict[str, Any]]:
        """The alerts to post now: firing ones ending 4 periods ahead, resolved ones with
        their resolution time; updates what was sent."""
        alerts = self._alerts()
        if alerts is None:
            return []
        firing: dict[str, dict[str, Any]] = {}
        for a in alerts.alerts():
            if a.state not in _FIRING or a.rule.severity not in self.receiver.severities:
                continue
            if a.silenced_by or a.inhibited_by:
                continue  # held back by the console: not for the team's pager either
            labels = {k: one_line(v, 200) for k, v in a.labels.items()}
            labels["alertname"] = a.rule.name
            annotations = {"summary": one_line(a.summary, 300),
                           "description": one_line(a.why(now), 500)}
            if a.rule.runbook:
                annotations["runbook"] = one_line(a.rule.runbook, 300)
            if a.acked_by:
                annotations["acknowledged_by"] = one_line(a.acked_by, 100)
            firing[a.id] = {"labels": labels, "annotations": annotations,
                            "startsAt": iso(a.fired_at or now),
                            "endsAt": iso(now + 4 * self.resend),
                            "generatorURL": ""}
        for key, sent in list(self._sent.items()):
            if key in firing:
                continue
            if sent.resolved_at is None:
                # Alertmanager refuses an end before the start
                started = parse_time(sent.body["startsAt"]) or now
                sent.resolved_at = max(now, started + 0.001)
            if now - sent.resolved_at > RESOLVED_RETENTION:
                del self._sent[key]
                continue
            sent.body["endsAt"] = iso(sent.resolved_at)
        for key, body in firing.items():
            self._sent[key] = _Sent(body)
        return [s.body for s in self._sent.values()]

    async def push_once(self) -> list[AMError | None]:
        """One post of the current set to every replica; per replica None or its error."""
        now = self.clock()
        body = self.payload(now)
        if not body:
            return []
        results = await self.api.post_alerts(body)
        done = self.clock()
        self.health.pushes += 1
        self.health.last_push = done
        self.health.alerts = len(body)
        for r, err in zip(self.health.replicas, results, strict=True):
            if err is None:
                r.last_ok, r.last_error, r.failures = done, None, 0
            else:
                if r.last_error is None:
                    log.warning("alertmanager receiver %s: %s", self.receiver.name, err)
                r.last_error, r.failures = str(err), r.failures + 1
        return results
