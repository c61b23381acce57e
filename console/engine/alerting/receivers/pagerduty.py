"""PagerDuty Events API v2: escalation to a phone through the team's on-call service.

A firing alert triggers, an acknowledgement acknowledges and a resolution resolves the same
PagerDuty alert: the ``dedup_key`` is the alert episode (``rule/target/episode``), so a
reminder, an escalation or a resend after a crash updates that alert instead of opening
another. Severity maps P0→critical, P1→error, P2→warning, P3→info. PagerDuty accepts 120
events a minute per routing key (`rate` ≤ 2 per second); a 429 pauses the receiver with
exponential backoff, as PagerDuty asks.

Idempotency: PagerDuty honours ``dedup_key``: a trigger resent for an open alert is merged
into it, a resolve resent for a resolved one is ignored.
"""

from __future__ import annotations

from typing import Any

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.receivers.base import (
    Batch,
    Outcome,
    SendContext,
    http_outcome,
    iso,
    value_text,
)
from console.engine.config.rules import Receiver
from console.engine.text.sanitize import one_line

SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info"}
ACTION = {"firing": "trigger", "escalated": "trigger", "reminder": "trigger",
          "ack_expired": "trigger", "acknowledged": "acknowledge", "resolved": "resolve"}


def dedup_key(n: Notification) -> str:
    """One PagerDuty alert per alert episode (the rule on the target, firing to resolved)."""
    return f"{n.rule}/{n.target}/{n.incident}"[:255]


def action(n: Notification) -> str | None:
    """What the transition means to PagerDuty; None for one it has no use for (flapping,
    no data: informational; the alert's state is unchanged)."""
    if n.transition == "settled":
        return "trigger" if "firing" in n.detail.split(":", 1)[0] else "resolve"
    return ACTION.get(n.transition)


def event(n: Notification, routing_key: str, r: Receiver) -> dict[str, Any] | None:
    """The Events API v2 body for one notification (None: nothing to send)."""
    act = action(n)
    if act is None:
        return None
    body: dict[str, Any] = {"routing_key": routing_key, "event_action": act,
                            "dedup_key": dedup_key(n)}
    if act != "trigger":
        return body
    labels = dict(n.labels)
    body["payload"] = {
        "summary": one_line(f"{n.severity} {n.summary} ({n.target}): {n.why}", 1024),
        "source": one_line(n.target, 255),
        "severity": SEVERITY.get(n.severity, "warning"),
        "timestamp": iso(n.at),
        "component": one_line(n.target, 255),
        "group": one_line(labels.get("service", n.group), 255),
        "class": one_line(n.rule, 255),
        "custom_details": {"rule": n.rule, "transition": n.transition, "expr": n.expr,
                           "threshold": n.threshold, "value": value_text(n),
                           "detail": one_line(n.detail, 1000), "runbook": n.runbook,
                           "cause": one_line(n.cause, 1000), "action": n.action,
                           "labels": labels},
    }
    body["client"] = "opsconsole"
    links = [{"href": u, "text": t} for t, u in (("Logs", r.logs_url),
                                                 ("Metrics", r.metrics_url)) if u]
    if links:
        body["links"] = links
    return body


async def send(ctx: SendContext, r: Receiver, batch: Batch) -> Outcome:
    """Each notification of the batch is its own event (PagerDuty takes one per request)."""
    key = ctx.value(r, "routing_key")
    url = ctx.value(r, "url", url=True) if r.url else r.endpoint
    for n in batch.notes:
        body = event(n, key, r)
        if body is None:
            continue
        resp = await ctx.client.post(url, json=body, timeout=r.timeout)
        if resp.status_code == 429:  # no Retry-After: the notifier's backoff paces it
            return Outcome.failed("rate limited (HTTP 429)",
                                  retry_after=None if resp.headers.get("Retry-After") is None
                                  else http_outcome(resp, ctx.clock()).retry_after)
        detail = ""
        if resp.status_code >= 300:
            try:
                err = resp.json()
                detail = f"{err.get('message')}: {'; '.join(map(str, err.get('errors', [])))}"
            except ValueError:
                detail = resp.text[:200]
        outcome = http_outcome(resp, ctx.clock(), detail=detail)
        if not outcome.ok:
            return outcome
    return Outcome(True)
