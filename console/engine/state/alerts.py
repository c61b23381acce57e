"""Alerting shared by a team: one evaluator elected through the database, every console shows.

`SharedAlertService` is the `AlertService` of the postgres backend. The console holding the
evaluator's lease (`state.lease`) is the *owner*: it evaluates the rules on its own checks,
notifies (from the shared outbox: `state.outbox`) and writes what changed in the alert
state as events, each with its fencing token:

* ``alert.delta``: the alerts whose state changed (at once), or whose values moved (at most
  every `REFRESH` seconds), silences and flap state when they changed, the requests it
  applied, and the transitions (from → to) it recorded;
* ``alert.checkpoint``: the whole state, when it takes over and every `CHECKPOINT_EVERY`;
* ``alert.episode``: a resolved episode (the alert history), keyed ``episode:rule/target/n``.

Its notifications are shipped in the same transaction as the delta that records their
transition, so the database never holds a transition without its notification nor the
reverse: a successor restores the state from the last checkpoint and deltas, and any
transition it then makes again carries the same idempotency key.

Every other console is a *follower*: it folds those events into its view (rebuilt from the
database after any reconnect), shows it, and tries the lease every few seconds.
Acknowledgements and silences — the owner's too — are ``alert.request`` events (who, from
which console, when, why); the owner applies each once, as soon as it reads it, and its next
delta shows the result (``acked_by``, ``ack_comment``) to everyone. A request made while the
database is away waits in the spool; the owner applies its own at once.

The owner that loses the database keeps evaluating and queueing notifications in its spool
("offline"), never sending; back, it takes the lease again and carries on from its own state
if nobody took over meanwhile, else follows. A paused owner resumed after being replaced
evaluates nothing: its lease confirmation ran out (monotonic clock) and the database tells it
it is a follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Container, Sequence
from typing import Any, cast

import orjson

from console.engine.alerting.history import ongoing
from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.service import AlertService
from console.engine.model import AlertEpisode
from console.engine.state.lease import PgLease
from console.engine.state.pgconn import CONNECTION_ERRORS, StateError
from console.engine.state.shared import REQUEST_TTL, EvaluatorWrite, Event, SharedState, Unavailable

log = logging.getLogger(__name__)

REFRESH = 10.0  # an alert whose values (not its state) changed is written at most this often
CHECKPOINT_EVERY = 600.0
RECONNECT_GRACE = 7.0  # after a reconnect, followers leave the lease this long to the owner
EPISODE_DAYS = 30
_LEASE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, StateError)
# Fields that move with every sample: written at most every REFRESH seconds. Everything
# else (state, acknowledgement, silence, notified, incident counter…) is written at once.
VOLATILE = frozenset({"value", "detail", "fails", "oks", "last_sample_t", "samples", "history",
                      "flap_pct", "first_fail_at", "last_fail_at", "ep_peak"})


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


class AlertView:
    """The alert state as the evaluator last wrote it, folded from its events."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, Any] = {}
        self.applied: list[str] = []
        self.token = 0
        self.changed_at = 0.0

    def fold(self, ev: Event) -> None:
        body = ev.body
        if ev.kind == "alert.checkpoint":
            self.rows = {str(r["rule"]) + "/" + str(r["target"]): r
                         for r in body.get("alerts", []) if isinstance(r, dict)}
            self.applied = [str(x) for x in body.get("applied", [])]
        for r in body.get("alerts", []) if ev.kind == "alert.delta" else ():
            if isinstance(r, dict):
                self.rows[str(r["rule"]) + "/" + str(r["target"])] = r
        for rid in body.get("removed", []) if ev.kind == "alert.delta" else ():
            self.rows.pop(str(rid), None)
        if isinstance(body.get("meta"), dict):
            self.meta = body["meta"]
        if ev.kind == "alert.delta":
            self.applied = (self.applied + [str(x) for x in body.get("applied", [])])[-500:]
        self.token = max(self.token, ev.token or 0)
        self.changed_at = ev.ts

    def snapshot(self) -> dict[str, Any]:
        return {"version": 1, "alerts": list(self.rows.values()), **self.meta,
                "unrecorded": []}


class SharedAlertService(AlertService):
    """`AlertService` with its state, lease and requests in the shared state."""

    shared = True

    def __init__(self, engine: Any, *, state: SharedState, lease: PgLease,
                 notifier: Any = None, tick: float = 2.0, role: str = "tui",
                 read_only: bool = False, queue: Any = None, advice: Any = None) -> None:
        super().__init__(engine, notifier=notifier, tick=tick, paths=None, role=role,
                         lease=False, advice=advice)
        self.state = state
        self.plock = lease
        self.queue = queue  # the shared outbox (claims to settle on takeover)
        self.read_only = read_only
        self.role = "starting"
        self.view = AlertView()
        self.episodes: dict[str, AlertEpisode] = {}
        self._recent_requests: dict[str, dict[str, Any]] = {}
        self._written: dict[str, tuple[bytes, bytes, float]] = {}
        self._meta_written = b""
        self._checkpoint_at = 0.0  # monotonic; 0: the next write is a checkpoint
        self._flusher: asyncio.Task[None] | None = None
        self._flush_wanted = False
        self._lease_task: asyncio.Task[None] | None = None
        self._lease_lock = asyncio.Lock()  # one lease step at a time (loop, reconnect)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._offline = False  # owner cut off from the database: evaluate, queue, never send
        self._my_token: int | None = None  # the last token this console held
        self._n = 0
        self._boot = os.urandom(4).hex()
        self._new_applied: list[str] = []  # requests applied since the last write
        state.add_consumer(self)
        state.on_connect(self._connected)

    # -- what the screens read --------------------------------------------------------------

    def owner_label(self) -> str | None:
        if self.role == "owner":
            return None
        info = self.owner_info or {}
        if not info or info.get("beat_age") is None or \
                float(info["beat_age"]) > self.plock.takeover:
            return ("no console evaluates alerts right now" if self.state.connected else
                    "shared state unreachable: alerts as the evaluator last wrote them")
        role = f" ({info['role']})" if info.get("role") else ""
        return f"alerts evaluated by pid {info.get('pid', '?')} on {info.get('host', '?')}{role}"

    def recent(self, now: float, *, since: float | None = None, limit: int = 200
               ) -> list[AlertEpisode]:
        """Open episodes, then resolved ones newest first (the shared alert history)."""
        lo = since if since is not None else now - EPISODE_DAYS * 86400.0
        resolved: dict[str, AlertEpisode] = {k: e for k, e in self.episodes.items()
                    if float(e.get("resolved_at") or 0) >= lo}
        for e in self.alerts.closed:  # resolved, not yet written
            resolved.setdefault(str(e.get("key")), e)
        done = sorted(resolved.values(), key=lambda e: float(e.get("resolved_at") or 0),
                      reverse=True)[:limit]
        return ongoing(self.alerts.alerts(), now) + done

    # -- lifecycle ---------------------------------------------------------------------------

    def load(self) -> int:
        return 0  # the state comes from the database (resync), never from a file

    def save(self, *, full: bool = True) -> None:
        """Writes are asynchronous here (`_save_soon`); nothing to do synchronously."""

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.role = "follower"
        self._rebuild()
        self._task = asyncio.create_task(self._ticker(), name="alerting:tick")
        self._lease_task = asyncio.create_task(self._lease_loop(), name="alerting:lease")

    async def stop(self) -> None:
        for task in (self._lease_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._lease_task = self._task = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.role == "owner" and self.plock.valid():
            self._checkpoint_at = 0.0  # a clean stop leaves a whole state behind
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await self._flush_once()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._flusher
        if self.notifier is not None and self._notifier_started:
            await self.notifier.stop()
        self.role = "stopped"
        self.state.token = None
        await self.plock.release()

    async def _connected(self) -> None:
        """After a (re)connect: the owner confirms its lease at once (a restarted server
        forgot every lock: it takes it again, or learns it is a follower), then finishes
        what the outbox could not write."""
        if self.role == "owner":
            async with self._lease_lock:
                await self._keep_lease()
        if self.queue is not None and self.role == "owner" and self.plock.token is not None:
            await self.queue.settle(self.plock.token)
        if self.notifier is not None:
            self.notifier.wake()

    # -- the lease ---------------------------------------------------------------------------

    def _eligible(self) -> bool:
        if self.read_only or not self.state.connected:
            return False
        if self._my_token is not None or self.state.connects <= 1:
            return True  # a console just started, or the former owner coming back
        # Back after the database was away: leave the lease a moment to the console that
        # evaluated before (it queued what happened meanwhile and carries on from there).
        return time.monotonic() - self.state.connected_at >= min(RECONNECT_GRACE,
                                                                  self.plock.takeover / 2)

    async def _lease_loop(self) -> None:
        try_every = max(0.5, min(self.tick_s, self.plock.takeover / 5))
        while True:
            try:
                if self.role == "owner":
                    async with self._lease_lock:
                        await self._keep_lease()
                    await asyncio.sleep(self.plock.beat_every)
                    continue
                async with self._lease_lock:
                    if self.role != "owner" and self._eligible() and \
                            await self.plock.try_acquire():
                        await self._take_over()
                        continue
                with contextlib.suppress(Unavailable):
                    info = await self.state.lease_row()
                    if info != self.owner_info:
                        self.owner_info = info
                        self.version += 1
            except asyncio.CancelledError:
                raise
            except _LEASE_ERRORS as exc:
                log.debug("lease: %r", exc)
            except Exception:
                log.exception("alerting: lease step failed")
            await asyncio.sleep(try_every)

    async def _keep_lease(self) -> None:
        """Owner: confirm the lease; on a lost connection take it back or step down; cut
        off from the database, carry on evaluating ("offline")."""
        if self.plock.token is not None:  # (None: lost with its connection, offline)
            try:
                if await self.plock.beat():
                    self._offline = False
                    return
                self._demote("another console holds the evaluator's lease now")
                return
            except CONNECTION_ERRORS:
                pass
        mine = self._my_token
        self.plock.lose()
        try:
            got = await self.plock.try_acquire()
        except _LEASE_ERRORS as exc:
            if not self._offline:
                log.warning("alert evaluation continues without the shared state (%s): "
                            "notifications are queued here, sent once it is back", exc)
            self._offline = True
            return
        if not got:
            self._demote("another console took over evaluation while this one was cut off")
            return
        await self._take_over(continuity=self.plock.previous == mine)

    async def _take_over(self, *, continuity: bool = False) -> None:
        """Become the owner: restore the state the last owner wrote (unless it was us and
        nobody came between), apply waiting requests, start sending."""
        token = self.plock.token
        assert token is not None
        was = self.role
        self.role, self.owner_info = "owner", None
        self._offline = False
        self._my_token = token
        self.state.token = self.state.last_token = token
        self.state.chain = [*self.state.chain, token] if continuity else [token]
        if not continuity:
            self._rebuild()
            self._applied = list(self.view.applied)
        self._written, self._meta_written, self._checkpoint_at = {}, b"", 0.0
        if self._unsubscribe is None:
            self._unsubscribe = self.engine.subscribe(self._on_result)
        now = self.engine.clock()
        self._requests = [r for r in self._recent_requests.values()
                          if r.get("id") not in self._applied
                          and float(r.get("ts") or 0) >= now - REQUEST_TTL]
        self._apply_requests()
        if self.queue is not None:
            with contextlib.suppress(Unavailable):
                await self.queue.settle(token)
        if self.notifier is not None:
            if not self._notifier_started:
                await self.notifier.start()
                self._notifier_started = True
            self.notifier.wake()
        self.version += 1
        log.warning("this console evaluates alerts now (fencing token %d%s)", token,
                    ", continuing" if continuity else f", was {was}")
        self._save_soon()

    async def _step_down(self, why: str) -> None:
        """Another console evaluates now (from a write that was refused, or its events)."""
        async with self._lease_lock:
            self._demote(why)

    def _demote(self, why: str) -> None:
        if self.role != "owner":
            return
        log.warning("alert evaluation handed over: %s; this console follows", why)
        self.plock.lose()
        self.state.token = None
        self.state.chain = []
        self._my_token = None
        self.role = "follower"
        self._offline = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._rebuild()

    def _may_evaluate(self) -> bool:
        return self.role == "owner" and (self.plock.valid() or self._offline)

    @property
    def evaluating(self) -> bool:
        return self.role == "owner"

    # -- evaluating (owner) -------------------------------------------------------------------

    def run(self, now: float | None = None, *, target: str | None = None,
            skip: Container[str] = (), present: Container[str] = ()) -> list[Notification]:
        if not self._may_evaluate():
            return []  # a follower, or an owner whose lease is in doubt (paused?)
        return super().run(now, target=target, skip=skip, present=present)

    def observe_now(self) -> list[Notification]:
        if not self._may_evaluate():
            return []
        return super().observe_now()

    async def _ticker(self) -> None:
        while True:
            await self._sleep_tick()
            try:
                if not self._may_evaluate():
                    continue
                self._apply_requests()
                self._tick(self.engine.clock())  # the same round, overload guard included
            except Exception:
                log.exception("rule evaluation tick failed")

    def _record_closed(self) -> None:
        """Resolved episodes go out with the next write (see `_flush_once`)."""

    def _save_soon(self) -> None:
        if self.role != "owner":
            return
        self._flush_wanted = True
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name="alerting:write")

    async def _flush_loop(self) -> None:
        while self._flush_wanted:
            self._flush_wanted = False
            try:
                await self._flush_once()
            except Unavailable:
                return  # written when the database is back (every tick asks again)
            except Exception:
                log.exception("alert state not written to the shared state")
                return

    async def _flush_once(self) -> None:
        token = self.plock.token
        if self.role != "owner" or token is None or not self.plock.valid():
            return
        applied = list(self._new_applied)
        events, written, meta, checkpoint, recorded = self._changes(applied)
        result = await self.state.flush(EvaluatorWrite(token, events) if events else None)
        if result.fenced:
            await self._step_down("another console holds the evaluator's lease now")
            return
        self._written, self._meta_written = written, meta
        self._new_applied = [x for x in self._new_applied if x not in set(applied)]
        if checkpoint:
            self._checkpoint_at = time.monotonic()
        if recorded:
            self.alerts.closed[:] = [e for e in self.alerts.closed
                                     if str(e.get("key")) not in recorded]

    def _changes(self, applied_now: list[str]
                 ) -> tuple[list[dict[str, Any]], dict[str, tuple[bytes, bytes, float]], bytes,
                            bool, set[str]]:
        """The events to write now (on the loop: the lifecycle is not thread-safe), and what
        will then have been written."""
        now = self.engine.clock()
        mono = time.monotonic()
        snap = self.alerts.snapshot()
        meta = {"silences": snap["silences"], "detections": snap["detections"][-200:],
                "target_flaps": snap["target_flaps"]}
        meta_bytes = _dumps(meta)
        checkpoint = self._checkpoint_at == 0.0 or mono - self._checkpoint_at >= \
            CHECKPOINT_EVERY
        written: dict[str, tuple[bytes, bytes, float]] = {}
        changed: list[dict[str, Any]] = []
        transitions: list[dict[str, Any]] = []
        for row in snap["alerts"]:
            aid = f"{row['rule']}/{row['target']}"
            sig = _dumps({k: v for k, v in row.items() if k not in VOLATILE})
            full = _dumps(row)
            old = self._written.get(aid)
            if old is None or old[0] != sig or (old[1] != full and (
                    mono - old[2] >= REFRESH or self._hot(row))):
                changed.append(row)
                written[aid] = (sig, full, mono)
                before = orjson.loads(old[0]).get("state") if old is not None else None
                if before != row["state"]:
                    transitions.append({"alert": aid, "from": before, "to": row["state"],
                                        "incident": row.get("incident"), "at": now})
            else:
                written[aid] = old
        removed = [aid for aid in self._written if aid not in written]
        events: list[dict[str, Any]] = []
        self._n += 1
        uid = f"alerts-{self._boot}-{self.plock.token}-{self._n}"
        applied = self._applied[-500:]
        if checkpoint:
            events.append({"uid": uid, "kind": "alert.checkpoint", "ts": now, "body": {
                "alerts": snap["alerts"], "meta": meta, "applied": applied,
                "transitions": transitions}})
        elif changed or removed or meta_bytes != self._meta_written or applied_now:
            body: dict[str, Any] = {"alerts": changed, "removed": removed,
                                    "applied": applied_now, "transitions": transitions}
            if meta_bytes != self._meta_written:
                body["meta"] = meta
            events.append({"uid": uid, "kind": "alert.delta", "ts": now, "body": body})
        recorded = set()
        for ep in list(self.alerts.closed):
            key = str(ep.get("key"))
            recorded.add(key)
            events.append({"uid": f"episode:{key}", "kind": "alert.episode", "ts": now,
                           "at": float(ep.get("resolved_at") or now), "body": dict(ep)})
        return events, written, meta_bytes, checkpoint, recorded

    def _hot(self, row: dict[str, Any]) -> bool:
        """Whether an alert's sample counts matter now: within the flap window of people
        being told it resolved, or flapping. Then every sample is written, so an evaluator
        taking over judges a re-fire with the true count (a stale one would call it a flap)."""
        told = row.get("told_resolved_sample")
        window = self.engine.settings.alerting.flap_window
        return bool(row.get("flapping")) or (
            told is not None and int(row.get("samples") or 0) - int(told) <= window + 1)

    def _apply_requests(self) -> None:
        todo = [str(e.get("id")) for e in self._requests if str(e.get("id")) not in
                self._applied]
        super()._apply_requests()
        if todo:
            self._new_applied = [*self._new_applied, *todo]
            self._save_soon()

    # -- the views: events from the shared state ---------------------------------------------

    def resync(self, events: Sequence[Event]) -> None:
        self.view = AlertView()
        self.episodes = {}
        self._recent_requests = {}
        self._take(events, resync=True)

    def apply(self, events: Sequence[Event]) -> None:
        self._take(events, resync=False)

    def _take(self, events: Sequence[Event], *, resync: bool) -> None:
        dirty = resync
        newer_owner = False
        for ev in events:
            if ev.stream != "alert":
                continue
            if ev.kind in ("alert.delta", "alert.checkpoint"):
                self.view.fold(ev)
                dirty = True
                mine = self.plock.token
                if mine is not None and ev.token is not None and ev.token > mine:
                    newer_owner = True
            elif ev.kind == "alert.request":
                req = {**ev.body, "id": ev.uid}
                self._recent_requests[ev.uid] = req
                if len(self._recent_requests) > 1000:
                    self._recent_requests.pop(next(iter(self._recent_requests)))
                if self.role == "owner" and ev.uid not in self._applied:
                    self._requests.append(req)
            elif ev.kind == "alert.episode":
                self.episodes[str(ev.body.get("key") or ev.uid)] = cast(AlertEpisode, ev.body)
        if newer_owner and self.role == "owner":
            asyncio.get_running_loop().create_task(
                self._step_down("a newer evaluator writes the alert state"))
        if self.role == "owner":
            if self._requests:
                self._apply_requests()
        elif dirty:
            self._rebuild()

    def _rebuild(self) -> None:
        """Show exactly what the evaluator last wrote (a fresh lifecycle, never merged)."""
        fresh = self._fresh_alerts()
        try:
            fresh.restore(self.view.snapshot(), self._rules())
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("the shared alert state could not be read (%s); showing none", exc)
        self.core.alerts = fresh
        self.version += 1

    # -- acknowledgements and silences, from any console --------------------------------------

    def request(self, action: str, **fields: Any) -> dict[str, Any]:
        """Blocking (call it in a thread, as the alerts screen does): `submit` on the loop."""
        if self._loop is None:
            raise RuntimeError("alerting has not started")
        fut = asyncio.run_coroutine_threadsafe(self.submit(action, **fields), self._loop)
        return fut.result(30)

    async def submit(self, action: str, **fields: Any) -> dict[str, Any]:
        """An acknowledgement (rule, target, incident, by[, comment]) or a silence
        (matchers, duration, by, reason) for the evaluator: an event with who, where and
        when, spooled here first (kept when the database is away); the owner applies its
        own at once."""
        if self.read_only:
            raise PermissionError("read-only console: acknowledgements and silences are "
                                  "refused")
        self._n += 1
        entry = {"id": f"req-{self._boot}-{self._n}", "ts": self.engine.clock(),
                 "actor": self.state.actor, "console": self.state.console,
                 **fields, "action": action, "type": "request"}
        await asyncio.to_thread(self.state.spool_event, "alert", "alert.request", entry)
        self._recent_requests[entry["id"]] = entry
        if self.role == "owner":
            self._requests.append(entry)
            self._apply_requests()
            if self.plock.valid():
                with contextlib.suppress(Unavailable):
                    await self._flush_once()
        elif self.state.connected:
            with contextlib.suppress(Unavailable):
                await self.state.flush()
        else:
            self.state.kick()
        return entry
