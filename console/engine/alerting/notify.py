"""The notifier: routes notifications to receivers and delivers them from the outbox, never
lost, never sent twice for one transition.

Why an outbox (`outbox.py`): a receiver can fail, rate-limit or hang, and the console can be
killed in the middle of a send. Every notification is first written down (one row per
idempotency key and receiver: enqueuing the same transition twice is a no-op, the "at most
once per transition"), and a row is marked sent only after the receiver accepted it (the
"at least once": a crash before that leaves it pending and it is sent again on restart,
under the same idempotency key — which each service honours or not, see the receiver
modules and the README). On a full or read-only disk the outbox carries on in memory, and
sending goes on from there.

Each receiver has its own worker task, so a hanging receiver never delays another. A worker
sends its rows strictly in order (a resolved notice never overtakes its firing notice), at
most `rate` per second, retries with exponential backoff (1 s doubling to 5 min), and honours
`Retry-After` on 429/503 by pausing the whole receiver. A message the service refuses as
such (a 4xx) is retried a few times, then marked failed and counted, so one bad message
cannot hold up the ones behind it. A receiver's queue is bounded: beyond `max_queue` pending
rows the oldest are marked dropped and counted, visibly (`health()`).

A receiver with `digest = "1h"` collects the notifications of its `digest_severities` into
one message per period (aligned to UTC), sent once the period has ended under the key
`digest:<receiver>:<start>`. With `summary_at`, they go into the daily summary instead,
which is sent at that time every day, quiet or not, under `summary:<receiver>:<due>`: the
summary and the rows it includes are written in one transaction, so a crash sends it again
rather than losing or splitting it.

The sending itself is each service's module (`receivers/`): Slack, webhook, Twilio SMS,
email and PagerDuty. The incident channel and status updates (Slack) travel the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import smtplib
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.outbox import LocalQueue, Outbox, Row
from console.engine.alerting.receivers import email, pagerduty, slack, sms, webhook
from console.engine.alerting.receivers.base import (
    Batch,
    Outcome,
    ReceiverConfigError,
    SendContext,
    is_secret,
    iso,
    retry_after,
)
from console.engine.alerting.summary import bare_summary, batched_section, is_quiet
from console.engine.config.envref import MissingEnv, expand
from console.engine.config.rules import Receiver
from console.engine.text.redact import describe_exception, redact, register_secret
from console.engine.text.sanitize import one_line

__all__ = ["BACKOFF_FIRST", "Notifier", "ReceiverHealth", "retry_after"]

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
RECHECK = 60.0  # a worker re-reads its due times at least this often (wall-clock jumps)
STORE_RETRY = 5.0  # an outbox in memory tries the disk again this often
PERMANENT_TRIES = 5  # a message a service refuses as such is tried this often, then failed
STOP_GRACE = 3.0  # a clean stop waits this long at most for deliveries under way
SENDERS: dict[str, Callable[[SendContext, Receiver, Batch], Awaitable[Outcome]]] = {
    "slack": slack.send, "webhook": webhook.send, "twilio": sms.send, "email": email.send,
    "pagerduty": pagerduty.send,
}
_SPECIAL = ("summary", "incident_channel", "status")
# Transitions a kind has no use for: an acknowledgement is news to PagerDuty (and to a
# webhook, which gets everything), not to the people it would wake.
_SKIP: dict[str, frozenset[str]] = {
    "slack": frozenset({"acknowledged"}), "twilio": frozenset({"acknowledged"}),
    "email": frozenset({"acknowledged"}),
}
SummarySource = Callable[[float, float], Awaitable[dict[str, Any]]]


@dataclass(slots=True)
class ReceiverHealth:
    """What the UI shows per receiver: is it delivering, and if not, why."""

    name: str
    sent: int = 0
    pending: int = 0
    dropped: int = 0
    failed: int = 0  # refused by the service as such, after PERMANENT_TRIES
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    paused_until: float = 0.0
    collected: int = 0  # rows waiting for their digest period (or summary) to end

    @property
    def failing(self) -> bool:
        return self.consecutive_failures > 0


# -- the daily summary's clock ------------------------------------------------------------------


def _time_of_day(r: Receiver) -> tuple[int, int, int]:
    parts = [int(x) for x in (r.summary_at or "00:00").split(":")]
    return parts[0], parts[1], parts[2] if len(parts) > 2 else 0


def previous_summary(r: Receiver, now: float) -> float:
    """The latest `summary_at` moment at or before `now` (in `summary_tz`)."""
    tz = ZoneInfo(r.summary_tz)
    h, m, s = _time_of_day(r)
    day = datetime.fromtimestamp(now, tz).date()
    for back in range(0, 3):
        d = day - timedelta(days=back)
        t = datetime(d.year, d.month, d.day, h, m, s, tzinfo=tz).timestamp()
        if t <= now:
            return t
    raise AssertionError("unreachable")  # pragma: no cover


def next_summary(r: Receiver, after: float) -> float:
    """The first `summary_at` moment strictly after `after`."""
    tz = ZoneInfo(r.summary_tz)
    h, m, s = _time_of_day(r)
    day = datetime.fromtimestamp(after, tz).date()
    for ahead in range(0, 3):
        d = day + timedelta(days=ahead)
        t = datetime(d.year, d.month, d.day, h, m, s, tzinfo=tz).timestamp()
        if t > after:
            return t
    raise AssertionError("unreachable")  # pragma: no cover


def _group_key(rows: Sequence[Row]) -> str:
    if len(rows) == 1:
        return rows[0].key
    return "group:" + hashlib.sha256("\n".join(x.key for x in rows).encode()).hexdigest()[:32]


class Notifier:
    """Routes notifications to receivers by severity and delivers them from the outbox."""

    def __init__(
        self,
        path: Path | None,
        receivers: Sequence[Receiver],
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        backoff_first: float = BACKOFF_FIRST,
        summary_source: SummarySource | None = None,
        on_problem: Callable[[str | None], None] | None = None,
        on_delivered: Callable[[Batch, Outcome], None] | None = None,
        outbox: Outbox | None = None,
        queue: Any = None,
        guard: Callable[[], bool] | None = None,
        fence: Callable[[], int | None] | None = None,
        producer: Callable[[], int | None] | None = None,
    ) -> None:
        # Where notifications are written first (durably, synchronously) and, unless a
        # `queue` is given, sent from. With the postgres state backend the outbox is the
        # console's local spool, `queue` the shared outbox, `guard` says whether this
        # process may send now (it holds the evaluator's lease), `fence` is the lease's
        # fencing token, sent with each webhook, and `producer` the token of the evaluation
        # that made a notification, kept with it (`console.engine.state`).
        self._owns_outbox = outbox is None
        self.outbox = Outbox(path) if outbox is None else outbox
        self.queue: Any = LocalQueue(self.outbox) if queue is None else queue
        self.guard = guard
        self.fence = fence
        self.producer = producer
        self.backoff_first = backoff_first
        self.clock = clock
        self._env = env
        self.summary_source = summary_source
        self.on_problem = on_problem
        self.on_delivered = on_delivered
        self._reported: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._store_task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._last_send: dict[str, float] = {}  # time.monotonic() of each receiver's last
        self._paused: dict[str, float] = {}  # a Retry-After pause's end, monotonic
        self._health: dict[str, ReceiverHealth] = {}
        self._attempted = asyncio.Event()  # set (and replaced) after each delivery attempt
        self._sending = 0  # deliveries under way: requested, answered or being written
        self._stopping = False
        self._set_receivers(receivers)

    @property
    def problem(self) -> str | None:
        """Why notifications are only in memory (a full or read-only disk), or None."""
        return self.outbox.problem

    def _set_receivers(self, receivers: Sequence[Receiver]) -> None:
        self.receivers = {r.name: r for r in receivers}
        self._health = {r.name: self._health.get(r.name) or ReceiverHealth(r.name)
                        for r in receivers}
        self._wake = {r.name: asyncio.Event() for r in receivers}
        for r in receivers:
            self._register_secrets(r)

    def _register_secrets(self, r: Receiver) -> None:
        """Mask a receiver's `${ENV}` values from the start, not from its first send: a
        peer's answer or a probe's may echo them before that (with the user name for the
        pairs a service encodes together: SMTP AUTH, HTTP Basic)."""
        def value(raw: str | None, secret: bool) -> str | None:
            try:
                return expand(raw, self._env, secret=secret) if raw else None
            except MissingEnv:
                return None

        value(r.url, is_secret(r, "url"))
        for secret, user in (("smtp_password", "smtp_user"), ("auth_token", "account_sid"),
                             ("token", None), ("routing_key", None)):
            password = value(getattr(r, secret), False)
            if password:
                register_secret(password, user=value(getattr(r, user), False) if user else None)

    async def reconfigure(self, receivers: Sequence[Receiver]) -> None:
        """A reloaded config's receivers: workers restart on the new list; what waits in
        the outbox for a receiver that still exists is sent, the rest stays on record."""
        running = bool(self._tasks)
        await self._stop_workers()
        self._set_receivers(receivers)
        if running:
            self._start_workers()

    def _report(self) -> None:
        """Tell the runtime when the outbox went to memory or came back (on the loop)."""
        problem = self.outbox.problem
        if problem != self._reported:
            self._reported = problem
            if self.on_problem is not None:
                self.on_problem(problem)

    # -- producing ------------------------------------------------------------------------

    def routes(self, n: Notification) -> list[Receiver]:
        """The receivers a notification goes to: its severity, and a transition the kind
        has a use for."""
        out = []
        for r in self.receivers.values():
            if n.severity not in r.severities or n.transition in _SKIP.get(r.kind, ()):
                continue
            if r.kind == "pagerduty" and pagerduty.action(n) is None:
                continue
            out.append(r)
        return out

    def _period(self, r: Receiver, n: Notification, now: float) -> tuple[float, float] | None:
        if n.severity not in r.digest_severities:
            return None
        if r.summary_at:
            return (now, next_summary(r, now))
        if r.digest > 0:
            start = math.floor(now / r.digest) * r.digest
            return (start, start + r.digest)
        return None

    def enqueue(self, notes: Iterable[Notification]) -> int:
        """Persist each notification for every receiver it routes to; returns rows added (a
        notification already in the outbox for a receiver is not added again). Never
        raises for the disk: the outbox keeps what it cannot write in memory."""
        added = 0
        now = self.clock()
        for n in notes:
            for r in self.routes(n):
                added += self._add(r, n.key, orjson.dumps(n.to_json()), now, n.group,
                                   self._period(r, n, now))
        self._report()
        return added

    def _add(self, r: Receiver, key: str, payload: bytes, now: float, group: str,
             period: tuple[float, float] | None = None) -> int:
        inserted, dropped = self.outbox.add(key, r.name, payload, now, r.max_queue, group,
                                            period, self.producer() if self.producer else None)
        if dropped:
            log.warning("receiver %s: queue full, dropped %d oldest", r.name, dropped)
        if inserted:
            self._wake[r.name].set()
        return int(inserted)

    def _special(self, r: Receiver, key: str, kind: str, data: Mapping[str, Any]) -> int:
        payload = orjson.dumps({"kind": kind, "data": dict(data)})
        return self._add(r, key, payload, self.clock(), f"!{key}")

    def incident_opened(self, incident: Mapping[str, Any]) -> int:
        """The playbook's Step 1: an incident channel (created, responders invited, the
        incident posted) on each Slack route that keeps them and takes its severity."""
        added = 0
        iid = str(incident["incident"])
        name = slack.incident_channel_name(iid, str(incident.get("title") or iid),
                                           float(incident.get("started") or self.clock()))
        for r in self.receivers.values():
            if r.slack_bot and r.incident_channels and \
                    incident.get("severity", "P2") in r.severities:
                added += self._special(r, f"channel:{iid}", "incident_channel",
                                       {**incident, "name": name})
        self._report()
        return added

    def status_routes(self) -> list[str]:
        """The receivers that post a status update (Slack bots with incident channels or a
        status channel): none means nobody is told by the console."""
        return [r.name for r in self.receivers.values()
                if r.slack_bot and (r.incident_channels or r.status_channel)]

    def status_update(self, update: Mapping[str, Any]) -> int:
        """The playbook's Step 3: a status update to the incident channel and, when the
        incident is user-facing (`user_facing`, else its severity in `status_severities`),
        to the route's `status_channel`."""
        added = 0
        iid = str(update["incident"])
        name = slack.incident_channel_name(iid, str(update.get("title") or iid),
                                           float(update.get("started") or self.clock()))
        entry = str(update.get("entry") or hashlib.sha256(
            f"{iid}{update.get('at')}{update.get('text')}".encode()).hexdigest()[:16])
        for r in self.receivers.values():
            if not r.slack_bot:
                continue
            if r.incident_channels:
                added += self._special(r, f"status:{entry}:incident", "status",
                                       {**update, "channel": f"#{name}"})
            user_facing = update.get("user_facing")
            if user_facing is None:
                user_facing = update.get("severity") in r.status_severities
            if r.status_channel and user_facing:
                added += self._special(r, f"status:{entry}:general", "status",
                                       {**update, "channel": r.status_channel})
        self._report()
        return added

    # -- delivering -----------------------------------------------------------------------

    def may_send(self) -> bool:
        """Whether this process may send now (always, but for a shared evaluator whose
        lease is not confirmed: then it must not, whatever it has claimed)."""
        return self.guard is None or self.guard()

    async def _check_guard(self, request: httpx.Request) -> None:
        """The last look before a request leaves (an httpx request hook): an evaluator
        paused (SIGSTOP, a frozen VM) between its claim and its send must not send after
        its successor took over."""
        if not self.may_send():
            raise httpx.TransportError("not sent: this console no longer holds the "
                                       "evaluator's lease")

    async def start(self) -> None:
        """One worker per receiver, on the running loop, and the outbox's disk retry."""
        hooks = {"request": [self._check_guard]} if self.guard is not None else {}
        self._client = httpx.AsyncClient(follow_redirects=False, event_hooks=hooks)
        self._start_workers()
        self._store_task = asyncio.create_task(self._store_loop(), name="notify:store")
        self._report()

    def _start_workers(self) -> None:
        for name in self.receivers:
            self._tasks.append(asyncio.create_task(self._worker(name), name=f"notify:{name}"))

    async def _stop_workers(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def stop(self) -> None:
        # A delivery under way finishes and gets its outcome written (within STOP_GRACE):
        # cut between the request and the write, it would be sent again on the next start.
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_GRACE):
                while self._sending:
                    await self._attempted.wait()
        await self._stop_workers()
        if self._store_task is not None:
            self._store_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._store_task
            self._store_task = None
        if self._owns_outbox and self.outbox.in_memory:  # a last try: what is written
            await asyncio.to_thread(self.outbox.flush)  # now survives the exit
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
        if self._owns_outbox:
            self.outbox.close()

    async def _store_loop(self) -> None:
        """While the outbox is in memory, try the disk every few seconds."""
        while True:
            await asyncio.sleep(STORE_RETRY)
            if self._owns_outbox and self.outbox.in_memory and self.outbox.path is not None:
                if await asyncio.to_thread(self.outbox.flush):
                    self.wake()
                self._report()
                self._attempt_done()

    def health(self) -> list[ReceiverHealth]:
        out = []
        for name, h in self._health.items():
            c = self.queue.counts(name)
            h.pending = c.get("pending", 0) + c.get("sending", 0)
            h.sent = c.get("sent", 0)
            h.dropped = c.get("dropped", 0)
            h.failed = c.get("failed", 0)
            h.collected = c.get("digest", 0)
            out.append(h)
        self._report()
        return out

    def unsaved(self) -> list[dict[str, Any]]:
        """What only memory holds while the disk refuses: per row, the receiver, what it
        is (an alert's summary and target, or the message kind), its delivery state, and
        why it is not saved."""
        out = []
        for row in self.outbox.unsaved():
            try:
                p = orjson.loads(row["payload"])
            except orjson.JSONDecodeError:
                p = {}
            what = (f"{p.get('kind')} {p.get('data', {}).get('incident', '')}".strip()
                    if p.get("kind") in _SPECIAL else
                    f"{p.get('severity', '')} {p.get('summary', row['key'])} "
                    f"({p.get('target', '')}) {p.get('transition', '')}")
            out.append({"receiver": row["receiver"], "key": row["key"],
                        "status": row["status"], "what": one_line(what, 120),
                        "reason": self.outbox.problem or ""})
        return out

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, re-checked after each delivery attempt and each
        outbox write-back (for tools and tests; bound it with `asyncio.timeout`)."""
        while not predicate():
            await self._attempted.wait()

    def _attempt_done(self) -> None:
        event, self._attempted = self._attempted, asyncio.Event()
        event.set()

    def wake(self) -> None:
        """Make every worker re-read its due times now (after the clock moved, in tests)."""
        for event in self._wake.values():
            event.set()

    async def _worker(self, name: str) -> None:
        wake = self._wake[name]
        failures = 0
        while True:
            try:
                wake.clear()  # before reading due times: a wake-up meanwhile is not lost
                if not self.may_send():  # a shared evaluator that lost (or not yet
                    with contextlib.suppress(TimeoutError):  # confirmed) its lease
                        async with asyncio.timeout(RECHECK):
                            await wake.wait()
                    continue
                due = await self._next_due(name)
                self._report()
                if due is None:
                    await wake.wait()
                    continue
                delay, what = due
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(min(delay, RECHECK)):
                            await wake.wait()
                    continue
                if what == "summary":
                    await self.prepare_summary(name)
                elif what == "digest":
                    await self.send_digest(name)
                else:
                    await self.send_next(name)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not silence a receiver for good: log, back off
                failures += 1
                log.exception("receiver %s: delivery step failed", name)
                await asyncio.sleep(min(BACKOFF_MAX, self.backoff_first * 2 ** min(failures,
                                                                                   10)))

    async def _next_due(self, name: str) -> tuple[float, str] | None:
        """(seconds until it may go, what) of this receiver's next message: its oldest
        pending row, its earliest digest, or its daily summary; None if none."""
        r = self.receivers[name]
        other = (await self._summary_due_in(name), "summary") if r.summary_at else \
            (await self._digest_due_in(name), "digest")
        options = [(d, w) for d, w in ((await self._due_in(name), "plain"), other)
                   if d is not None]
        return min(options, key=lambda x: x[0]) if options else None

    def _held(self, name: str) -> float:
        """Seconds this receiver must wait whatever it sends: pacing, a Retry-After pause
        (on the monotonic clock: they are about real time, whatever the wall clock does)."""
        mono = time.monotonic()
        paced = self._last_send.get(name, -math.inf) + 1.0 / self.receivers[name].rate
        return max(0.0, paced - mono, self._paused.get(name, 0.0) - mono)

    async def _due_in(self, name: str) -> float | None:
        head = await self.queue.head(name)
        if head is None:
            return None
        r = self.receivers[name]
        now = self.clock()
        gathered = head.created + r.group_wait if head.attempts == 0 else 0.0
        return max(self._held(name), head.next_at - now, gathered - now)

    async def _digest_due_in(self, name: str) -> float | None:
        head = await self.queue.digest_head(name)
        if head is None:
            return None
        now = self.clock()
        return max(self._held(name), head[2] - now)

    async def _summary_due_in(self, name: str) -> float:
        """Seconds until the next daily summary must be prepared (it is then a pending row
        and goes out as any other)."""
        r = self.receivers[name]
        now = self.clock()
        last = await self.queue.summary_last(name)
        if last is None:  # first start: the first summary is the next one, not a past one
            last = previous_summary(r, now)
            await self.queue.set_summary_last(name, last)
        return max(0.0, next_summary(r, last) - now)

    def _batch(self, rows: Sequence[Row]) -> Batch:
        first = orjson.loads(rows[0].payload)
        if isinstance(first, dict) and first.get("kind") in _SPECIAL:
            return Batch(rows[0].key, str(first["kind"]), data=first.get("data") or {},
                         start=float(first.get("start") or 0), end=float(first.get("end")
                                                                          or 0))
        notes = tuple(Notification.from_json(orjson.loads(row.payload)) for row in rows)
        return Batch(_group_key(rows), "notes", notes)

    async def send_next(self, name: str) -> bool | None:
        """Send the receiver's oldest pending row once; True sent, False failed, None none."""
        head = await self.queue.head(name)
        if head is None:
            return None
        r = self.receivers[name]
        rows = [head]
        # PagerDuty takes one event per request: grouping would burst past `rate`
        if r.group_wait > 0 and not head.grp.startswith("!") and r.kind != "pagerduty":
            rows = await self.queue.batch(name, head, r.group_max)
        return await self._deliver(r, [row.id for row in rows], self._batch(rows),
                                   head.attempts, "pending")

    async def send_digest(self, name: str) -> bool | None:
        """Send the receiver's earliest waiting digest once, whether or not its period is
        over (the worker waits for that); True sent, False failed, None none waiting."""
        head = await self.queue.digest_head(name)
        if head is None:
            return None
        start, end, _, attempts = head
        rows = await self.queue.digest_rows(name, end)
        if not rows:
            return None
        notes = tuple(Notification.from_json(orjson.loads(row.payload)) for row in rows)
        batch = Batch(f"digest:{name}:{iso(start)}", "digest", notes, start, end)
        return await self._deliver(self.receivers[name], [row.id for row in rows], batch,
                                   attempts, "digest")

    async def prepare_summary(self, name: str, now: float | None = None) -> str | None:
        """Build the daily summary that is due and put it in the outbox with the rows it
        includes (one transaction); returns its key, None when none is due."""
        r = self.receivers[name]
        now = self.clock() if now is None else now
        last = await self.queue.summary_last(name)
        due = previous_summary(r, now)
        if last is None:
            last = due - 86400.0
        if due <= last:
            return None
        rows = await self.queue.digest_rows(name, due)
        notes = [Notification.from_json(orjson.loads(row.payload)) for row in rows]
        data: dict[str, Any] = bare_summary(last, due)
        if self.summary_source is not None:
            try:
                data = await self.summary_source(last, due)
            except Exception:  # the summary still goes, with what is known
                log.exception("daily summary for %s: incidents and metrics unavailable", name)
        data["batched"] = batched_section(notes)
        data["quiet"] = is_quiet(data)
        key = f"summary:{name}:{iso(due)}"
        payload = orjson.dumps({"kind": "summary", "data": data, "start": last, "end": due})
        await self.queue.add_summary(name, key, payload, now, due, [row.id for row in rows])
        self._report()
        self._wake[name].set()
        return key

    def _budget(self, r: Receiver, batch: Batch) -> float:
        """How long one delivery may take: one request per timeout, more for those that
        make several (a PagerDuty group, an incident channel, an SMTP conversation)."""
        calls = {"pagerduty": max(1, len(batch.notes)), "email": 3}.get(r.kind, 1)
        if batch.kind == "incident_channel":
            calls = 4
        return r.timeout * calls + 0.5

    async def _deliver(self, r: Receiver, ids: list[int], batch: Batch, attempts: int,
                       retry_status: str) -> bool:
        """Send one message for `ids`; on failure they go back to `retry_status` with a
        backoff (or the receiver's Retry-After), or to 'failed' once the service refused
        the message itself PERMANENT_TRIES times."""
        if self._stopping:
            return False
        try:
            return await self._attempt(r, ids, batch, attempts, retry_status)
        finally:
            self._attempt_done()

    async def _attempt(self, r: Receiver, ids: list[int], batch: Batch, attempts: int,
                       retry_status: str) -> bool:
        name = r.name
        assert self._client is not None, "start() the notifier first"
        if not self.may_send():
            return False
        claimed = await self.queue.claim(ids, self.clock())
        if not claimed:  # another process has them, or we are not the evaluator any more
            return False
        if len(claimed) < len(ids) or not self.may_send():
            # part of a group is held elsewhere (a former evaluator's claim not yet
            # cleared), or the claim took so long that the lease is in doubt: give back
            # and let the next round read them again
            await self.queue.release(claimed, retry_status)
            return False
        self._last_send[name] = time.monotonic()
        ctx = SendContext(self._client, self._env, self.clock,
                          fence=self.fence() if self.fence is not None else None)
        limit = self._budget(r, batch)
        # Under way from the request on (not only once answered): a stop waits for it, so a
        # message the receiver already has is not cut before its answer and sent again at
        # the next start (CI saw the outbox row left 'sending' after the peer had it).
        self._sending += 1
        try:
            try:
                async with asyncio.timeout(limit):
                    outcome = await SENDERS[r.kind](ctx, r, batch)
            except (TimeoutError, httpx.TimeoutException):
                outcome = Outcome.failed(f"no answer within {r.timeout:g}s")
            except ReceiverConfigError as exc:
                outcome = Outcome.failed(str(exc))
            except (httpx.HTTPError, smtplib.SMTPException, OSError, ssl.SSLError,
                    email.SmtpError) as exc:
                outcome = Outcome.failed(describe_exception(exc))
            return await self._record_outcome(r, ids, batch, attempts, retry_status, outcome)
        finally:
            self._sending -= 1

    async def _record_outcome(self, r: Receiver, ids: list[int], batch: Batch, attempts: int,
                              retry_status: str, outcome: Outcome) -> bool:
        name = r.name
        h = self._health[name]
        now = self.clock()
        if outcome.ok:
            await self.queue.mark(ids, "sent", now=now)
            h.consecutive_failures, h.last_error = 0, None
            self._report()
            if self.on_delivered is not None and batch.kind in _SPECIAL:
                try:
                    self.on_delivered(batch, outcome)
                except Exception:
                    log.exception("delivery listener failed")
            return True
        error = one_line(redact(outcome.error or "failed"), 200)
        backoff = min(BACKOFF_MAX, self.backoff_first * 2 ** min(attempts, 20))
        if outcome.retry_after is not None:
            backoff = max(outcome.retry_after, 1.0 / r.rate)
            # the receiver's limit, not the message's
            h.paused_until = now + outcome.retry_after
            self._paused[name] = time.monotonic() + outcome.retry_after
        h.consecutive_failures += 1
        h.last_error, h.last_error_at = error, now
        status = retry_status
        if outcome.permanent and attempts + 1 >= PERMANENT_TRIES:
            status = "failed"
            log.error("receiver %s: %s refused %d times: given up (%s)", name, batch.key,
                      attempts + 1, error)
        await self.queue.mark(ids, status, now=now, next_at=now + backoff, error=error)
        self._report()
        if status != "failed":
            log.warning("receiver %s: %s (retry in %.1fs)", name, error, backoff)
        return False
