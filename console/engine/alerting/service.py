"""The running alerting service: rules on every check result, timers on a tick, outbox out.

It joins the pieces the TUI and a headless runner share: the Scheduler's results (through
`Scheduler.subscribe`), the `AlertEngine` (rules + lifecycle) and, optionally, the `Notifier`.
A result triggers its own target's rules at once (detection is not delayed by the tick);
the tick evaluates everything so staleness (`absent`, nodata), `for`, acknowledgements,
silences and escalation move on even when no result arrives. Both run on the event loop and
are cheap: rules read the store's ring buffers, the outbox insert is one SQLite statement.

With a state file, one process per data dir evaluates: the holder of ``alerts.lease``
(`console.engine.storage.lease`) is the *owner*: it evaluates, notifies, writes ``alerts.json``
(temp file, fsync, rename, directory fsync) and appends resolved episodes to the alert
history. Any other console is a *follower*: it reloads the owner's ``alerts.json`` when it
changes, shows it (labelled with the owner's pid and host), sends nothing, writes nothing,
and tries the lease every tick, so it takes over within a tick of the owner's death. A
follower's acknowledgements and silences travel as ``request`` entries in the alert history
file; the owner applies each once (ids kept in the state) on its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Container
from typing import Any

import orjson

from console.engine.alerting.history import (
    AlertHistory,
    append_request,
    ongoing,
    read_episodes,
)
from console.engine.alerting.lifecycle import Alert, AlertEngine, Alerts, Notification
from console.engine.alerting.rules import RuleSet
from console.engine.alerting.statefile import StateWriter, changes_path, read_state, signature
from console.engine.config.rules import Rule
from console.engine.model import AlertEpisode, CheckResult
from console.engine.paths import DataPaths
from console.engine.scheduler import recorded_metrics
from console.engine.storage.lease import Lease, describe_owner
from console.engine.text.sanitize import one_line

log = logging.getLogger(__name__)

SELF_HEALTH_RULE = "opsconsole-overloaded"
"""The rule name of the console's own "behind schedule" notice (see console.engine.health)."""


class AlertService:
    """Alerting attached to a running Scheduler; `alerts` is the live state screens read."""

    def __init__(self, engine: Any, *, notifier: Any = None, tick: float = 2.0,
                 paths: DataPaths | None = None, role: str = "tui",
                 lease: bool = True, advice: Callable[[Rule], str] | None = None) -> None:
        self.engine = engine
        # Without a data directory there is nothing to share: evaluate alone ("solo").
        self.state_path = paths.alert_state if paths is not None else None
        self.history_path = paths.alert_history if paths is not None else None
        self.lease: Lease | None = None
        if paths is not None and lease:
            self.lease = Lease(paths.lease, role=role)
        # solo, or with a lease: starting → owner | follower → … → stopped
        self.role = "solo" if self.lease is None else "starting"
        self.owner_info: dict[str, Any] | None = None
        self.history: AlertHistory | None = None
        self._state_sig: tuple[int, int, int, int] | None = None
        self.writer = StateWriter(self.state_path) if self.state_path is not None else None
        self._recording: dict[str, asyncio.Task[None]] = {}
        self._save_lock = threading.Lock()
        self._recent_cache: tuple[Any, list[AlertEpisode]] | None = None
        self._notifier_started = False
        self._requests: list[dict[str, Any]] = []  # followers' requests, to apply
        self._evaluated: dict[str, float] = {}  # target -> when a result last evaluated it
        self._saver: asyncio.Task[None] | None = None  # see _save_soon
        self._save_wanted = False
        self.save_error: str | None = None  # why the last state save failed, if it did
        # The runtime's: a standing problem while the state cannot be saved, and a notice
        # for a saved state set aside unreadable (both were only logged: a full disk lost
        # an acknowledgement at the next restart, a damaged file its silences, unsaid).
        self.on_problem: Callable[[str | None], None] | None = None
        self.on_notice: Callable[[str], None] | None = None
        # an alert acknowledged here, however (see `Alerts.on_ack`): the runtime
        # acknowledges its open incident
        self.on_ack: Callable[[Alert], None] | None = None
        self._applied: list[str] = []  # their ids, saved with the state
        self._health_watched = False
        self.notifier = notifier
        self.tick_s = tick
        self.advice = advice  # a rule's "what to do" from its runbook (the runtime's lookup)
        self.ruleset = RuleSet.from_settings(engine.settings, advice)
        self.core = AlertEngine(self.ruleset, engine.store, engine.settings.alerting,
                                clock=engine.clock,
                                results=getattr(engine, "last_result", None))
        self.core.alerts.on_ack = self._acked
        self.version = 0  # bumped whenever a notification is produced: the UI repaints then
        self.sent: list[Notification] = []  # the most recent notifications, newest last
        self._listeners: list[Callable[[list[Notification]], None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        # Alerts that come from outside the rules (inbound webhooks): each source gives its
        # synthetic rules (to restore saved state) and its evaluations (every tick).
        self.external: list[Any] = []

    def add_external(self, source: Any) -> None:
        """A source of evaluations that are not rules on the store (`signals.inbound`):
        `rules()` and `evaluations(now)`; stepped every tick, and at once by `observe_now`."""
        self.external.append(source)

    def _rules(self) -> list[Rule]:
        return [*self.ruleset.rules, *(r for src in self.external for r in src.rules())]

    def _external_evaluations(self, now: float) -> list[Any]:
        out: list[Any] = []
        for src in self.external:
            try:
                out += src.evaluations(now)
            except Exception:
                log.exception("external alert source failed")
        return out

    def observe_now(self) -> list[Notification]:
        """An inbound alert arrived: step the external alerts now rather than on the next
        tick (a webhook is news at once). Nothing on a follower: the owner evaluates."""
        if not self.evaluating:
            return []
        now = self.engine.clock()
        notes = self.alerts.observe(self._external_evaluations(now), now)
        if notes:
            self._emit(notes)
        return notes

    @property
    def alerts(self) -> Alerts:
        return self.core.alerts

    def subscribe(self, callback: Callable[[list[Notification]], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    @property
    def evaluating(self) -> bool:
        """Whether this process evaluates rules and notifies (owner, or alone)."""
        return self.role in ("owner", "solo")

    @property
    def following(self) -> bool:
        return self.role == "follower"

    def owner_label(self) -> str | None:
        """``alerts evaluated by pid N on host (role)`` while following; None when we own."""
        return describe_owner(self.owner_info) if self.following else None

    def load(self) -> int:
        """Restore alert state saved by an earlier run (TUI or headless); 0 if none or bad."""
        if self.state_path is None:
            return 0
        try:
            data = read_state(self.state_path)
            if data is None:
                return 0
            if self.writer is not None:  # our changes number on from what is there
                self.writer.start_from(data)
            n = self.alerts.restore(data, self._rules())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self._set_aside(exc)
            return 0
        self._applied = [str(x) for x in data.get("applied_requests", [])][-500:]
        return n

    def _fresh_alerts(self) -> Alerts:
        return Alerts(self.engine.settings.alerting, clock=self.core.clock, on_ack=self._acked)

    def _acked(self, a: Alert) -> None:
        if self.on_ack is not None:
            try:
                self.on_ack(a)
            except Exception:  # the acknowledgement itself stands
                log.exception("acknowledging the incident of %s failed", a.id)

    def _set_aside(self, exc: BaseException) -> None:
        """An unreadable saved state (a damaged file) is renamed aside, as the metric
        history and the journal are, and said: it was overwritten by the next save, its
        silences and acknowledgements gone without a word."""
        assert self.state_path is not None
        # a restore that failed half-way leaves nothing behind
        self.core.alerts = self._fresh_alerts()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside: list[str] = []
        for path in (self.state_path, changes_path(self.state_path)):
            target = path.with_name(f"{path.name}.corrupt-{stamp}")
            with contextlib.suppress(FileNotFoundError):
                try:
                    path.rename(target)
                    aside.append(target.name)
                except OSError as err:
                    log.warning("cannot set %s aside: %s", path, err)
        text = (f"alert state {self.state_path} unreadable ({one_line(str(exc), 120)}): "
                + (f"set aside as {', '.join(aside)}; " if aside else "")
                + "alerts, acknowledgements and silences start afresh")
        log.warning("%s", text)
        if self.on_notice is not None:
            self.on_notice(text)

    def _state_signature(self) -> tuple[int, int, int, int] | None:
        try:
            return signature(self.state_path) if self.state_path is not None else None
        except OSError:
            return None

    def reload(self, *, force: bool = False) -> bool:
        """Follower: take the owner's latest ``alerts.json`` if it changed; True if it did.

        A fresh lifecycle is restored each time (never merged), so what shows is exactly what
        the owner saved; a file caught mid-rename or unreadable keeps the last good view.
        """
        sig, path = self._state_signature(), self.state_path
        if sig is None or path is None or (sig == self._state_sig and not force):
            return False
        fresh = self._fresh_alerts()
        try:
            data = read_state(path)
            if data is None:
                return False
            fresh.restore(data, self._rules())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.debug("owner's alert state not readable yet (%s)", exc)
            return False
        self.core.alerts = fresh
        self._state_sig = sig
        self.version += 1
        return True

    def snapshot_bytes(self) -> bytes:
        """The state as JSON; take it on the loop (the lifecycle is not thread-safe)."""
        snap = self.alerts.snapshot()
        snap["applied_requests"] = self._applied[-500:]
        return orjson.dumps(snap)

    def write_state(self, change: tuple[str, bytes]) -> None:
        """Write a change `StateWriter.prepare` made: a line appended to the change log
        (fsynced), or a whole snapshot written atomically (temp file, fsync, rename,
        directory fsync). Owner only."""
        if self.writer is None:
            return
        with self._save_lock:
            if self.role in ("follower", "stopped"):  # checked under the lock: see stop()
                return
            self.writer.write(*change)

    def _save_soon(self) -> None:
        """Write the state off the event loop (an fsync can take a slow disk milliseconds, a
        stall of the UI at the moment an alert changes). One writer task: writes never
        overlap, and one asked for while another runs follows it with the newest state."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): write the change now
            with contextlib.suppress(OSError):
                self.save(full=False)
            return
        self._save_wanted = True
        if self._saver is None or self._saver.done():
            self._saver = loop.create_task(self._save_pending(), name="alerting:save")

    async def _save_pending(self) -> None:
        while self._save_wanted:
            self._save_wanted = False
            if self.state_path is None or self.role in ("follower", "stopped"):
                return
            assert self.writer is not None
            # on the loop: the lifecycle is not thread-safe; usually a few rows or nothing
            change = self.writer.prepare(self.alerts, self._applied)
            if change is None:
                continue
            try:
                await asyncio.to_thread(self.write_state, change)
            except OSError as exc:  # said once, not every tick; kept in memory meanwhile
                if self.save_error is None:
                    log.warning("cannot save the alert state %s (%s); kept in memory, "
                                "retried every tick", self.state_path, exc)
                    if self.on_problem is not None:
                        self.on_problem(
                            f"alert state not saved ({exc.strerror or exc}): kept in "
                            "memory and retried; a restart now would lose the "
                            "acknowledgements and silences since")
                self.save_error = str(exc)
            else:
                if self.save_error is not None:
                    log.warning("alert state %s saved again", self.state_path)
                    if self.on_problem is not None:
                        self.on_problem(None)
                self.save_error = None

    def save(self, *, full: bool = True) -> None:
        """Write the alert state now (owner only; a follower never writes): by default the
        whole state as a new snapshot, which empties the change log (a clean stop)."""
        if self.writer is None or self.role in ("follower", "stopped"):
            return
        change = self.writer.prepare(self.alerts, self._applied, full=full)
        if change is not None:
            self.write_state(change)

    async def start(self) -> None:
        if self.lease is not None and not self.lease.try_acquire():
            self.role = "follower"
            self.owner_info = self.lease.owner()
            self.reload(force=True)
            log.info("%s; following", describe_owner(self.owner_info))
        else:
            await self._become_owner()
        self._task = asyncio.create_task(self._ticker(), name="alerting:tick")

    async def _become_owner(self) -> None:
        """Evaluate from the last saved state on: at start, or taking over from a dead owner."""
        taking_over = self.role == "follower"
        if self.lease is not None:
            self.role, self.owner_info = "owner", None
        if taking_over:
            self.core.alerts = self._fresh_alerts()
            log.warning("the alert evaluator went away; this process evaluates alerts now")
        self.load()
        self._state_sig = None
        self._unsubscribe = self.engine.subscribe(self._on_result)
        health = getattr(self.engine, "health", None)
        if health is not None and not self._health_watched:
            health.subscribe(self._on_overload)
            self._health_watched = True
        if self.notifier is not None and not self._notifier_started:
            await self.notifier.start()
            self._notifier_started = True
        if self.history_path is not None:
            hist = AlertHistory(self.history_path)
            try:
                await asyncio.to_thread(hist.open)
                self.history = hist
                assert hist.journal is not None
                hist.journal.subscribe(self._on_history_entries)
                self._on_history_entries(hist.pending_requests)
                self._apply_requests()
            except OSError as exc:
                log.warning("alert history %s unavailable (%s)", self.history_path, exc)
        self.version += 1
        self._record_closed()

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._recording:
            with contextlib.suppress(Exception):
                await asyncio.wait(list(self._recording.values()), timeout=2)
        if self.history is not None:
            hist, self.history = self.history, None
            with contextlib.suppress(Exception):
                await asyncio.to_thread(hist.close_sync)
        if self.notifier is not None:
            await self.notifier.stop()
        if self._saver is not None:  # a write in flight finishes before the last one
            with contextlib.suppress(Exception):
                await self._saver
            self._saver = None
        if self.evaluating:
            with contextlib.suppress(OSError):
                self.save()
        if self.lease is not None:
            # A tick's write may still run in its thread: let it finish before anyone else
            # can own the state, and never write again (no clobbering a successor's state).
            await asyncio.to_thread(self._save_lock.acquire)
            try:
                self.role = "stopped"
                self.lease.release()
            finally:
                self._save_lock.release()

    def apply(self, settings: Any) -> None:
        """Config reload: new rules and the whole `[alerting]` section (maintenance windows,
        acknowledgement, flapping and escalation settings); alert state kept."""
        had = {r.name for r in self.ruleset.rules}
        self.ruleset = RuleSet.from_settings(settings, self.advice)
        self.core.ruleset = self.ruleset
        self.alerts.reconfigure(settings.alerting)
        self.version += 1
        if not self.evaluating:
            return  # the owner retires them, and saves that
        rules = {r.name for r in self.ruleset.rules}
        targets = {t.name for t in settings.targets}

        def gone(a: Any) -> bool:  # a config rule's alert (not an inbound one) left behind
            return a.rule.name in had and (
                a.rule.name not in rules or a.target.partition("{")[0] not in targets)

        notes = self.alerts.retire(gone, "no longer evaluated: its target or rule was "
                                   "removed from the config")
        if notes:
            self._emit(notes)
        self._record_closed()
        self._save_soon()

    async def attach_notifier(self, notifier: Any) -> None:
        """Receivers added by a reload to a console that had none: start sending."""
        self.notifier = notifier
        if self.evaluating and not self._notifier_started:
            await notifier.start()
            self._notifier_started = True

    def run(self, now: float | None = None, *, target: str | None = None,
            skip: Container[str] = (), present: Container[str] = ()) -> list[Notification]:
        if self.role in ("follower", "stopped"):
            return []  # the owner evaluates; we only show what it saved
        extra = self._external_evaluations(self.engine.clock() if now is None else now) \
            if target is None and self.external else ()
        notes = self.core.run(now, target=target, skip=skip, extra=extra, present=present)
        if notes:
            self._emit(notes)
        self._record_closed()
        return notes

    def recent(self, now: float, *, since: float | None = None, limit: int = 200
               ) -> list[AlertEpisode]:
        """Open episodes (ongoing) first, then resolved ones newest first: the history file
        (bounded read, cached until it changes) plus any not yet durably in it."""
        resolved: list[AlertEpisode] = []
        if self.history_path is not None:
            try:
                st = self.history_path.stat()
                sig: Any = (st.st_mtime_ns, st.st_size, since, limit)
            except OSError:
                sig = (None, since, limit)
            if self._recent_cache is not None and self._recent_cache[0] == sig:
                resolved = self._recent_cache[1]
            else:
                resolved = read_episodes(self.history_path, since=since, now=now, limit=limit)
                self._recent_cache = (sig, resolved)
        lo = since if since is not None else float("-inf")
        seen = {e.get("key") for e in resolved}
        extra = [e for e in self.alerts.closed
                 if e.get("key") not in seen and float(e.get("resolved_at") or 0) >= lo]
        if extra:
            resolved = sorted(resolved + extra, key=lambda e: float(e.get("resolved_at") or 0),
                              reverse=True)[:limit]
        return ongoing(self.alerts.alerts(), now) + resolved

    # -- a follower's actions, applied by the owner -------------------------------------------

    def request(self, action: str, **fields: Any) -> dict[str, Any]:
        """Follower: ask the owner to `ack` (rule, target, incident, by[, comment]) or
        `silence` (matchers, duration, by, reason). Blocking (one fsync'd append): call it in
        a thread. Raises OSError if it cannot be written, RuntimeError without a data dir."""
        if self.history_path is None:
            raise RuntimeError("no data dir: there is no evaluator to ask")
        return append_request(self.history_path, {"action": action, **fields})

    def _on_history_entries(self, entries: list[dict[str, Any]]) -> None:
        for e in entries:
            if e.get("type") == "request" and str(e.get("id")) not in self._applied:
                self._requests.append(e)

    def _apply_requests(self) -> None:
        """Apply queued requests once each; a stale or malformed one is dropped with a log."""
        todo, self._requests = self._requests, []
        for e in todo:
            rid = str(e.get("id"))
            if rid in self._applied:
                continue
            self._applied.append(rid)
            del self._applied[:-500]
            try:
                self._apply_request(e)
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("request %s from %s not applied: %s", rid, e.get("actor"), exc)
            self.version += 1

    def _apply_request(self, e: dict[str, Any]) -> None:
        ts = float(e["ts"])
        action = e.get("action")
        if action == "ack":
            a = self.alerts.get(str(e["rule"]), str(e["target"]))
            if a is None or a.incident != int(e["incident"]):
                raise ValueError("that episode is over")
            if not self.alerts.ack(a.rule.name, a.target, str(e["by"]),
                                   comment=str(e.get("comment", "")), now=ts):
                raise ValueError(f"{a.id} is {a.state.value}")
        elif action == "silence":
            self.alerts.silence([str(m) for m in e["matchers"]], duration=float(e["duration"]),
                                by=str(e["by"]), reason=str(e["reason"]), now=ts)
        else:
            raise ValueError(f"unknown action {action!r}")

    def _record_closed(self) -> None:
        """Append resolved episodes to the history; each leaves `alerts.closed` (and so the
        saved state) only once it is on disk, so a crash in between replays it."""
        if self.history is None or not self.alerts.closed:
            return
        if self.history.degraded:
            return  # the journal keeps retrying what it holds; queue no copies meanwhile
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): they wait in the state for the next tick
        for ep in list(self.alerts.closed):
            key = str(ep.get("key"))
            if key not in self._recording:
                self._recording[key] = asyncio.create_task(self._record(key, ep),
                                                           name=f"alert-history:{key}")

    async def _record(self, key: str, ep: AlertEpisode) -> None:
        try:
            hist = self.history
            if hist is not None and await hist.record(ep):
                self.alerts.closed[:] = [e for e in self.alerts.closed if e.get("key") != key]
        except Exception:
            log.exception("alert history append failed")
        finally:
            self._recording.pop(key, None)

    def _on_result(self, result: CheckResult) -> None:
        try:
            now = self.engine.clock()
            self._evaluated[result.target] = now
            # What this result reported is present, however late the console handles it
            # (a stalled loop made its sample look old): absent() on it reads "present".
            self.run(now, target=result.target, present=recorded_metrics(result))
        except Exception:  # alerting must never break the poller that called us
            log.exception("rule evaluation failed for %s", result.target)

    async def _ticker(self) -> None:
        while True:
            await self._sleep_tick()
            try:
                if self.following:
                    await self._follow()
                    continue
                if self.history is not None and self.history.journal is not None:
                    self.history.journal.poll()  # followers' requests
                    self.history.journal.entries.clear()
                    self._apply_requests()
                self._tick(self.engine.clock())
            except Exception:
                log.exception("rule evaluation tick failed")

    async def _sleep_tick(self) -> None:
        """Until the next round; its own lateness is noted as a loop-lag observation: after
        a long stall the tick may run before the loop's lag probe, and it must judge with
        the stall known."""
        slept = time.monotonic()
        await asyncio.sleep(self.tick_s)
        health = getattr(self.engine, "health", None)
        if health is not None:
            health.note_lag(time.monotonic() - slept - self.tick_s)

    def _tick(self, now: float) -> None:
        """The periodic round: the targets no result evaluated lately (silent ones: no data,
        timers), unless the console is the reason they are silent."""
        health = getattr(self.engine, "health", None)
        if health is not None and health.lagging():
            # Behind our own schedule (or just stalled): silent targets are late, not gone.
            # Results still evaluate their own targets; here only timers move (no no-data).
            if self.evaluating:
                notes = self.alerts.tick(now)
                if notes:
                    self._emit(notes)
            self._save_soon()
            return
        # Targets a result evaluated within the last tick are as fresh as this tick would
        # make them (a 1 s target: every time); the rest, silent ones included (no data,
        # timers), are evaluated here.
        fresh = {t for t, at in self._evaluated.items() if 0 <= now - at < self.tick_s}
        behind = getattr(self.engine, "behind", None)
        if behind is not None:  # late by the console's doing: not no-data
            fresh |= behind()
        self.run(now, skip=fresh)
        self._save_soon()  # timers move every tick

    async def _follow(self) -> None:
        """Take the lease if the owner is gone; else pick up what it saved."""
        assert self.lease is not None
        if self.lease.try_acquire():
            await self._become_owner()
            return
        info = self.lease.owner()
        if info and info != self.owner_info:
            self.owner_info = info
            self.version += 1
        self.reload()

    def _on_overload(self, on: bool) -> None:
        """The console fell behind its schedule (or caught up): say so once, as a
        self-health notice (P3: it informs, it never pages)."""
        if not self.evaluating:
            return
        import socket

        health = self.engine.health
        now = self.engine.clock()
        host = socket.gethostname()
        transition = "firing" if on else "resolved"
        detail = health.describe() if on else (
            f"the console keeps its schedule again (worst lag {health.worst_lag:.1f}s; "
            f"{health.late_checks} checks were not run on time)")
        self._emit([Notification(
            key=f"{SELF_HEALTH_RULE}/{host}/{transition}/{health.episodes}",
            transition=transition, rule=SELF_HEALTH_RULE, target="opsconsole",
            severity="P3",
            labels=(("rule", SELF_HEALTH_RULE), ("severity", "P3"), ("target", "opsconsole")),
            summary="opsconsole is behind its own schedule", runbook="",
            expr="loop lag > 0.5s", threshold="0.5s", value=round(health.worst_lag, 3),
            detail=detail, at=now, group="", incident=health.episodes)])

    def _emit(self, notes: list[Notification]) -> None:
        self.version += 1
        self.sent = (self.sent + notes)[-200:]
        if self.notifier is not None:
            # Outbox first, state second: a crash between them replays the same transition
            # with the same idempotency key, which the outbox ignores.
            self.notifier.enqueue(notes)
        self._save_soon()
        for cb in list(self._listeners):
            try:
                cb(notes)
            except Exception:
                log.exception("alert listener failed")
