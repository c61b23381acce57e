"""The generic JSON webhook: a documented, versioned payload (README, "Webhook payload").

Every body carries ``"version": 1`` and a ``"kind"``: ``notification`` (one transition,
the `Notification` fields), ``group`` (several of one group: ``group`` and
``notifications``), ``digest`` (a period's batched ones: ``period``, ``counts``, ``alerts``
with their ``transitions``, and the raw ``notifications``) or ``summary`` (the daily
summary, as `opsconsole report --format json` prints it). Fields are only ever added within
a version; a change that removes or retypes one bumps the version.

Idempotency: every request carries an ``Idempotency-Key`` header, the same on every resend
of one message (a notification's key is ``rule/target/transition/episode``); a receiver
that keeps the keys it has seen drops duplicates. With the postgres state backend each request
also carries ``Opsconsole-Fence``, the sending evaluator's fencing token (it grows with every
change of evaluator): a receiver that remembers the highest one it has seen can refuse a
request from an evaluator that was replaced (paused, then resumed) — the one guarantee an
evaluator cannot give alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.receivers.base import (
    Batch,
    Outcome,
    SendContext,
    body_excerpt,
    digest_counts,
    digest_entries,
    http_outcome,
    iso,
)
from console.engine.config.rules import Receiver
from console.engine.text.sanitize import one_line

VERSION = 1


def notification(n: Notification) -> dict[str, Any]:
    return {"version": VERSION, "kind": "notification", **n.to_json()}


def group(notes: Sequence[Notification], grp: str) -> dict[str, Any]:
    return {"version": VERSION, "kind": "group", "group": grp,
            "notifications": [n.to_json() for n in notes]}


def digest(receiver: str, notes: Sequence[Notification], start: float,
           end: float) -> dict[str, Any]:
    """A period's digest: counts by state and a list of alerts, each with its transitions
    in the period (and the raw notifications, for a receiver that wants them)."""
    entries = digest_entries(notes)
    return {
        "version": VERSION, "kind": "digest", "receiver": receiver,
        "period": {"start": iso(start), "end": iso(end)},
        "counts": digest_counts(entries),
        "alerts": [{
            "rule": e.rule, "target": e.target, "severity": e.severity,
            "summary": one_line(e.summary, 300), "state": e.state,
            "transitions": [{"transition": n.transition, "at": iso(n.at), "value": n.value,
                             "detail": one_line(n.why, 300), "key": n.key}
                            for n in e.notes],
        } for e in entries],
        "notifications": [n.to_json() for n in notes],
    }


def render(r: Receiver, batch: Batch) -> dict[str, Any]:
    if batch.kind == "digest":
        return digest(r.name, batch.notes, batch.start, batch.end)
    if batch.kind == "summary":
        return {"version": VERSION, "kind": "summary", **batch.data}
    if len(batch.notes) == 1:
        return notification(batch.notes[0])
    return group(batch.notes, batch.notes[0].group)


async def send(ctx: SendContext, r: Receiver, batch: Batch) -> Outcome:
    url = ctx.value(r, "url", url=True)
    headers = {"Idempotency-Key": batch.key}
    if ctx.fence is not None:  # the evaluator's fencing token: see the module docstring
        headers["Opsconsole-Fence"] = str(ctx.fence)
    resp = await ctx.client.post(url, json=render(r, batch), timeout=r.timeout,
                                 headers=headers)
    return http_outcome(resp, ctx.clock(), detail=body_excerpt(resp, 100))
