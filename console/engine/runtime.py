"""The composition root: the running system built from settings, shared by the TUI and headless.

`Runtime` creates and owns every long-lived part — the metric store and its saved history,
the scheduler and its probes, alerting with its notifier, the incident desk and its journal,
the config watcher — under one data directory (`console.engine.paths`). The TUI
(`console.app`), `opsconsole run --headless` and the headless commands build the same
runtime, so they cannot drift apart; screens read it, typed, and never hang state on the App.

Where incidents, alert state and notifications live is the state backend (`console.engine.
state`, `[state] backend`): files in the data directory, or a PostgreSQL database shared by
the team; the runtime builds it once and asks it for the journal, the alerting service and
the notifier, and keeps ``shared state unreachable since …`` on screen while it is away.

Nothing here raises into its caller once started: a background step that fails (a save on a
full disk, a journal that cannot be opened) becomes a `problem` the UI shows and the runtime
retries, and a reload either applies every section of the config or names what needs a
restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.engine.model import AlertEpisode
from console.engine.paths import DataPaths

if TYPE_CHECKING:
    from console.engine.alerting.lifecycle import Alert, Notification
    from console.engine.alerting.notify import Notifier
    from console.engine.alerting.receivers.alertmanager import AlertmanagerPush
    from console.engine.alerting.remote import RemoteAlerts
    from console.engine.alerting.service import AlertService
    from console.engine.config.schema import Settings
    from console.engine.config.watcher import ConfigWatcher
    from console.engine.errors import ConfigError
    from console.engine.incidents.book import IncidentDesk
    from console.engine.incidents.playbooks import Playbooks
    from console.engine.scheduler import Scheduler
    from console.engine.signals.events import EventLog
    from console.engine.signals.inbound import InboundAlerts, Listener
    from console.engine.state.files import FilesBackend
    from console.engine.state.postgres import PostgresBackend
    from console.engine.storage.store import MetricStore

log = logging.getLogger(__name__)

SAVE_EVERY = 60.0  # metric history: a periodic save appends the rows closed since the last
SAVE_RETRY = 30.0  # after a failed save (full or read-only disk)
NoticeLevel = str  # "information" | "warning" | "error", as Textual's notify() severities

REOPEN_S = 30.0
"""How often a journal the data directory refused at start is tried again."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What a reload did: the sections applied, and what only a restart can change."""

    applied: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()

    def describe(self) -> str:
        text = "config reloaded"
        if self.applied:
            text += ": " + ", ".join(self.applied)
        if self.restart:
            text += "; restart to apply " + ", ".join(self.restart)
        return text


@dataclass(slots=True)
class _Listeners:
    notices: list[Callable[[NoticeLevel, str], None]] = field(default_factory=list)
    reloads: list[Callable[[Applied], None]] = field(default_factory=list)
    config_errors: list[Callable[[str], None]] = field(default_factory=list)
    notifications: list[Callable[[list[Notification]], None]] = field(default_factory=list)


def _outbox_receivers(settings: Settings) -> list[Any]:
    """The receivers the notification outbox sends to: all but those of kind
    "alertmanager", which keep a cluster in step with the alert state instead
    (`alerting/receivers/alertmanager.py`)."""
    return [r for r in settings.alerting.receivers if r.kind != "alertmanager"]


def _restart_only(old: Settings, new: Settings) -> list[str]:
    """`[console]` settings read once at start."""
    out = []
    for key in ("data_dir", "history"):
        if getattr(old.console, key) != getattr(new.console, key):
            out.append(f"[console] {key}")
    if old.state != new.state:
        out.append("[state]")
    return out


class Runtime:
    """The console's running parts, from `start()` to `stop()`; `apply()` for a new config."""

    def __init__(
        self,
        settings: Settings,
        paths: DataPaths,
        *,
        config_path: Path | None = None,
        clock: Callable[[], float] = time.time,
        history: bool = True,
        poll: bool = True,
        role: str = "tui",
        notifications: bool = True,
        incidents: bool = True,
        lease: bool = True,
        save_every: float = SAVE_EVERY,
        read_only: bool = False,
        record: Path | None = None,
        operator: str | None = None,
        tune_gc: bool = False,
    ) -> None:
        from console.engine.scheduler import Scheduler
        from console.engine.state import open_backend, operator_identity
        from console.engine.storage.store import MetricStore

        self.settings = settings
        self.paths = paths
        self.config_path = config_path
        self.clock = clock
        self.history = history and settings.console.history
        self.role = role
        self._poll = poll
        self._notifications = notifications
        self._incidents = incidents
        self._lease = lease
        self.save_every = save_every
        # A viewer who must not act (`--read-only`, as k9s): every action key checks it and
        # says so instead of acting (incidents, alerts, faults, database actions); the shared
        # state refuses its writes too, and it never becomes the shared evaluator.
        self.read_only = read_only
        # Who acts, on every incident entry, acknowledgement and silence.
        self.operator = operator or operator_identity(settings)
        self.state: FilesBackend | PostgresBackend = open_backend(
            settings, paths, clock=clock, actor=self.operator, read_only=read_only,
            on_problem=self._state_problem)
        self._tune_gc = tune_gc  # the console's own process only (see engine.gctune)
        self.store: MetricStore = MetricStore(
            path=paths.metric_history if self.history else None)
        self.scheduler: Scheduler = Scheduler(
            settings, store=self.store, clock=clock,
            state_dir=paths.error_kinds if self.history else None,
            pings=paths.pings)
        self.alerting: AlertService | None = None
        self.notifier: Notifier | None = None
        # The team's Alertmanagers and Prometheus servers: their alerts read, and the
        # console's own pushed to them by receivers of kind "alertmanager".
        self.remote: RemoteAlerts | None = None
        self.pushers: list[AlertmanagerPush] = []
        self._push_unsubscribe: list[Callable[[], None]] = []
        self.desk: IncidentDesk | None = None
        self._acking: set[str] = set()  # incidents being acknowledged with an alert
        self.playbooks: Playbooks | None = None
        # Events (deploys...), the alerts webhooks raise, and the listener they arrive on.
        self.events: EventLog | None = None
        self.inbound_alerts: InboundAlerts | None = None
        self.listener: Listener | None = None
        # `--record FILE`: what this console receives, written for `opsconsole replay`
        self.record_path = record
        self.recorder: Any = None
        self._event_listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self.watcher: ConfigWatcher | None = None
        self.problems: dict[str, str] = {}
        self.version = 0  # bumped when problems change: the UI repaints then
        self._changed: asyncio.Event | None = None  # set (and replaced) on each change
        self._listeners = _Listeners()
        self._tasks: list[asyncio.Task[None]] = []
        self._reload_lock = asyncio.Lock()
        self._started = False

    # -- listeners ---------------------------------------------------------------------------

    def on_notice(self, callback: Callable[[NoticeLevel, str], None]) -> None:
        """Messages for the operator (a toast in the TUI, a line on stderr headless)."""
        self._listeners.notices.append(callback)

    def on_reload(self, callback: Callable[[Applied], None]) -> None:
        self._listeners.reloads.append(callback)

    def on_config_error(self, callback: Callable[[str], None]) -> None:
        self._listeners.config_errors.append(callback)

    def on_notifications(self, callback: Callable[[list[Notification]], None]) -> None:
        """Every notification the alerting produces, from the very first (register before
        `start()`: an alert can fire while the runtime is still starting)."""
        self._listeners.notifications.append(callback)
        if self.alerting is not None:
            self.alerting.subscribe(callback)

    def notice(self, level: NoticeLevel, text: str) -> None:
        for cb in list(self._listeners.notices):
            try:
                cb(level, text)
            except Exception:
                log.exception("notice listener failed")
        if not self._listeners.notices:
            log.log(logging.ERROR if level == "error" else logging.WARNING, "%s", text)

    def set_problem(self, key: str, text: str | None) -> None:
        """Record (or, with None, clear) a standing problem the UI keeps on screen."""
        old = self.problems.get(key)
        if text is None:
            if old is None:
                return
            del self.problems[key]
        else:
            if old == text:
                return
            self.problems[key] = text
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, woken by each change of the problems (for tools and
        tests that must wait for a save to fail or recover, without polling); bound it with
        `asyncio.timeout`."""
        while not predicate():
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load history, start polling, alerting, the incident desk and the config watcher."""
        if self._started:
            return
        self._started = True
        try:
            await asyncio.to_thread(self.paths.ensure)
        except OSError as exc:
            self._report_io("data-dir", f"data directory {self.paths.root} unusable", exc)
        if self.history:
            await self._load_history()
        # Probes now, polling last: alerting and a recording subscribe first, so the very
        # first results are evaluated and recorded too (a recording missed them under load).
        await self.scheduler.start(poll=False)
        await self.load_playbooks()
        self.scheduler.health.subscribe(self._overload_changed)
        await self._open_events()
        await self._start_alerting()
        await self._start_recording()
        await self._start_listener()
        await self._start_remote()
        if self._incidents:
            await self.open_desk()
        if self.events is None or (self._incidents and self.desk is None):
            self._spawn(self._reopen(), "reopen")
        # After the views exist (they get the shared history on connecting); polling has
        # started already, whether or not the state can be reached.
        await self.state.start()
        if self.settings.state.heartbeat_url:
            self._spawn(self._heartbeat(), "self-watch")
        if self.config_path is not None:
            await self._start_watcher(self.config_path)
        if self.history:
            self._spawn(self._save_loop(), "history-save")
        if self._poll:
            self.scheduler.begin_polling()
        if self._tune_gc:
            from console.engine.gctune import heap_trimmer, tune_for_long_run

            tune_for_long_run()
            if (trim := heap_trimmer()) is not None:
                self._spawn(self._trim_heap(trim), "heap-trim")

    async def stop(self) -> None:
        """Stop everything, saving what is worth keeping; never raises."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                await self.watcher.stop()
        if self.desk is not None:
            with contextlib.suppress(Exception):
                await self.desk.journal.close()
        if self.listener is not None:
            await self.listener.stop()
        await self._stop_recording()
        if self.events is not None:
            with contextlib.suppress(Exception):
                await self.events.close()
        await self._stop_remote()
        if self.alerting is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.alerting.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.state.stop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                await self.scheduler.stop()
        if self.history:
            await self.save_history()

    def _overload_changed(self, on: bool) -> None:
        """Keep "behind schedule" on screen while it lasts (the alerting service notifies)."""
        health = self.scheduler.health
        self.set_problem("overload", health.describe() if on else None)
        if on:
            self.notice("warning", health.describe())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"runtime:{name}"))

    def _report_io(self, key: str, what: str, exc: BaseException) -> None:
        self._io_problem(key, what, exc, quiet=False)

    def _io_problem(self, key: str, what: str, exc: BaseException, *, quiet: bool) -> None:
        from console.engine.text.redact import describe_exception

        text = f"{what}: {describe_exception(exc)}"
        self.set_problem(key, text)
        if not quiet:
            self.notice("error", text)

    def _io_recovered(self, key: str, what: str) -> None:
        """A file that was unavailable is in use again: its problem goes, and it is said."""
        if key in self.problems:
            self.set_problem(key, None)
            self.notice("information", f"{what} available again")

    # -- metric history ----------------------------------------------------------------------

    async def _load_history(self) -> None:
        try:
            await asyncio.to_thread(self.store.load)
        except Exception as exc:  # a bad file must not keep the console from starting
            self._report_io("history-load", f"metric history {self.paths.metric_history} "
                            "not loaded", exc)

    async def save_history(self, *, snapshot: bool = True) -> bool:
        """Save the metric history now — a whole snapshot, or with `snapshot=False` only
        what changed since the last save (the periodic save); on failure keep it in memory,
        say so, return False."""
        if not self.history:
            return True
        try:
            await asyncio.to_thread(self.store.save if snapshot else self.store.save_changes)
        except Exception as exc:  # full or read-only disk: shown and retried, never fatal
            from console.engine.text.redact import describe_exception

            self.set_problem("history", f"metric history not saved "
                             f"({describe_exception(exc)}); retrying every "
                             f"{min(SAVE_RETRY, self.save_every):g}s")
            log.warning("metric history not saved: %s", exc)
            return False
        self.set_problem("history", None)
        return True

    async def _trim_heap(self, trim: Callable[[], object]) -> None:
        """Give the C heap's free pages back to the system now and then (see gctune)."""
        from console.engine.gctune import TRIM_EVERY_S

        while True:
            await asyncio.sleep(TRIM_EVERY_S)
            await asyncio.to_thread(trim)

    async def _save_loop(self) -> None:
        delay = self.save_every
        while True:
            await asyncio.sleep(delay)
            saved = await self.save_history(snapshot=False)
            delay = self.save_every if saved else min(SAVE_RETRY, self.save_every)

    # -- alerting ----------------------------------------------------------------------------

    async def _start_alerting(self) -> None:
        receivers = _outbox_receivers(self.settings)
        if receivers and self._notifications:
            self.notifier = self._make_notifier()
        playbooks = self.playbooks
        self.alerting = self.state.make_alerting(
            self.scheduler, self.notifier, role=self.role, lease=self._lease,
            history=self.history, advice=playbooks.advice if playbooks is not None else None)
        if self.inbound_alerts is not None:
            self.alerting.add_external(self.inbound_alerts)
        for callback in self._listeners.notifications:  # before the first evaluation
            self.alerting.subscribe(callback)
        self.alerting.on_problem = lambda text: self.set_problem("alert-state", text)
        self.alerting.on_notice = lambda text: self.notice("error", text)
        self.alerting.on_ack = self._ack_incident_of
        await self.alerting.start()

    def _ack_incident_of(self, a: Alert) -> None:
        """An alert acknowledged in this process, however (the alerts screen, a follower's
        or another console's request applied here), acknowledges the open incident it is
        part of when nobody has: a walk's header read "ack 1m27s ✔" (the alert's) beside
        the incident's Acknowledge step "⚠ OVERDUE". An incident's own `a` acknowledges its
        alerts the other way."""
        desk = self.desk
        if desk is None or a.fired_at is None:
            return
        inc = desk.incident_of(a)
        if inc is None or inc.acknowledged_at is not None or inc.id in self._acking:
            return  # (two alerts of one incident acknowledged at once: one entry)
        self._acking.add(inc.id)

        async def ack(incident: str) -> None:
            try:
                await desk.acknowledge(incident)
            finally:
                self._acking.discard(incident)

        self._spawn(ack(inc.id), f"incident-ack:{inc.id}")

    def _make_notifier(self) -> Notifier:
        """The notifier; it never fails to start: an outbox the disk refuses is kept in
        memory (sent from there, saved when the disk takes it), shown as a problem."""
        return self.state.make_notifier(
            _outbox_receivers(self.settings), summary_source=self.daily_summary,
            on_problem=self._outbox_problem, on_delivered=self._delivered)

    def _state_problem(self, text: str | None) -> None:
        """The shared state went away (or came back): on screen while it lasts."""
        was = self.problems.get("state")
        self.set_problem("state", text)
        if text is not None and was is None:
            self.notice("error", text)
        elif text is None and was is not None:
            self.notice("information", "shared state reachable again")

    async def _heartbeat(self) -> None:
        """The self-watch: ping `[state] heartbeat_url` every `heartbeat_every` while this
        console evaluates alerts and can send notifications. When the bastion, the
        evaluator or its database dies, the pings stop and the dead-man's switch
        (healthchecks.io and the like) pages: the answer to "who pages us when the
        console itself is down"."""
        from console.engine.state.heartbeat import Heartbeat

        cfg = self.settings.state
        assert cfg.heartbeat_url is not None
        beat = Heartbeat(cfg.heartbeat_url, clock=self.clock)
        try:
            while True:
                alerting = self.alerting
                if alerting is not None and alerting.evaluating and self.state.sending():
                    self.set_problem("self-watch", await beat.ping())
                await asyncio.sleep(self.settings.state.heartbeat_every)
        finally:
            await beat.close()

    def _outbox_problem(self, text: str | None) -> None:
        was = self.problems.get("outbox")
        self.set_problem("outbox", text)
        if text is not None and was is None:
            self.notice("error", text)
        elif text is None and was is not None:
            self.notice("information", f"notification outbox {self.paths.outbox} saved again")

    async def daily_summary(self, start: float, end: float) -> dict[str, Any]:
        """The daily summary's data for `[start, end]`: uptime, alerts, incidents, KPIs (the
        notifier adds the P3s it batched) — what `opsconsole report` prints too."""
        from console.engine.incidents.summary import build_summary

        episodes: list[AlertEpisode] = []
        if self.alerting is not None:  # on the loop: the lifecycle is not thread-safe
            episodes = self.alerting.recent(end, since=start, limit=100_000)
        return build_summary(self.desk.book if self.desk is not None else None, start=start,
                             end=end, store=self.store, episodes=episodes,
                             targets=[t.name for t in self.settings.targets])

    def _delivered(self, batch: Any, outcome: Any) -> None:
        """An incident channel exists: say so on the incident's timeline."""
        if batch.kind == "incident_channel" and self.desk is not None:
            data = dict(batch.data)
            self._spawn(self.desk.channel(str(data["incident"]), str(data["name"]),
                                          str(outcome.result.get("channel_id") or "")),
                        "incident-channel")

    def _on_journal(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Incidents opened and status updates written (here or by another console on the
        same journal) become Slack messages, from the process that notifies. Fed by the desk
        (`IncidentEntry`s) and by the journal (its raw JSON, other consoles' entries)."""
        from console.engine.incidents.book import OPEN, STATUS

        if self.notifier is None or self.alerting is None or not self.alerting.evaluating:
            return
        for e in entries:
            kind = e.get("type")
            if kind not in (OPEN, STATUS) or self.desk is None:
                continue
            inc = self.desk.book.incidents.get(str(e.get("incident")))
            if inc is None:
                continue
            base = {"incident": inc.id, "title": inc.title, "severity": inc.severity,
                    "started": inc.started, "alerts": list(inc.alerts)}
            if kind == OPEN:
                self.notifier.incident_opened(base)
            else:
                self.notifier.status_update({
                    **base, "text": str(e.get("text") or ""), "actor": e.get("actor"),
                    "at": e.get("ts"), "entry": e.get("id"),
                    "user_facing": e.get("user_facing")})

    # -- events, webhooks, the inbound listener ----------------------------------------------

    def on_events(self, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        """New events (deploys, webhooks...), as recorded: the UI's markers, the recorder."""
        self._event_listeners.append(callback)

    async def _open_events(self) -> None:
        """The events journal (followed: the CLI and other consoles write it too) and the
        webhook alerts still open from before a restart. An unusable file is a problem shown,
        never fatal: the console runs without events."""
        from console.engine.signals.inbound import InboundAlerts

        playbooks = self.playbooks
        self.inbound_alerts = InboundAlerts(
            clock=self.clock, advice=playbooks.advice if playbooks is not None else None)
        self.inbound_alerts.configure(self.settings.inbound)
        await self._open_event_log()

    async def _open_event_log(self, *, quiet: bool = False) -> bool:
        """The events journal; False (the problem set, said once unless `quiet`) if the data
        directory refuses it."""
        from console.engine.signals.events import EventLog

        events = EventLog(self.paths.events, clock=self.clock)
        try:
            await events.open()
        except OSError as exc:
            events.journal.close_sync()
            self._io_problem("events", f"events journal unavailable ({self.paths.events})",
                             exc, quiet=quiet)
            return False
        self.events = events
        events.on_event(self._on_events)
        self._io_recovered("events", "events journal")
        horizon = max((s.resolve_after for s in self.settings.inbound.sources), default=0.0)
        if horizon and self.inbound_alerts is not None:
            self.inbound_alerts.rebuild(events.recent(self.clock() - horizon))
        return True

    async def _reopen(self) -> None:
        """Try again, every REOPEN_S, the journals the data directory refused at start: a
        read-only mount made writable again is taken up, and its problems clear, without a
        restart (a walk's banners stayed, and `opsconsole event`s stayed off the timeline)."""
        while self.events is None or (self._incidents and self.desk is None):
            await asyncio.sleep(REOPEN_S)
            if self.events is None:
                await self._open_event_log(quiet=True)
            if self._incidents and self.desk is None:
                await self.open_desk(quiet=True)

    async def _start_recording(self) -> None:
        """`--record FILE`: results, alert notifications and events from now on, and a
        "recording" event so a post-mortem can point at the file. A file that cannot be
        created is a problem shown; the console runs unrecorded."""
        from console.engine.signals.recording import Recorder

        if self.record_path is None:
            return
        path = self.record_path.expanduser().absolute()
        recorder = Recorder(path, clock=self.clock,
                            on_problem=lambda text: self.set_problem("recording", text))
        try:
            await recorder.start(self.settings.model_dump(mode="json"))
        except (OSError, ImportError) as exc:
            self._report_io("recording", f"not recording to {path}", exc)
            return
        self.recorder = recorder
        self.scheduler.subscribe(recorder.result)
        if self.alerting is not None:
            self.alerting.subscribe(recorder.notifications)
        self.on_events(recorder.events)
        await self._recording_event(path, "started")

    async def _recording_event(self, path: Path, what: str) -> None:
        from console.engine.signals.events import make_event

        if self.events is None or self.read_only:
            return
        extra: dict[str, Any] = {"path": str(path)}
        if what == "stopped":
            extra["ended"] = self.clock()
        with contextlib.suppress(Exception):
            await self.events.append(make_event(f"recording {what}: {path}",
                                                kind="recording", source="console",
                                                extra=extra))

    async def _stop_recording(self) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        await self._recording_event(recorder.path, "stopped")
        await recorder.close()

    def _on_events(self, events: list[dict[str, Any]]) -> None:
        from console.engine.signals.events import DEPLOY_KINDS, deploy_notification, describe

        deploys = [e for e in events if e.get("kind") in DEPLOY_KINDS]
        if deploys and self.notifier is not None and self.alerting is not None \
                and self.alerting.evaluating:
            self.notifier.enqueue([deploy_notification(e) for e in deploys])
        for e in deploys:
            self.notice("information", describe(e))
        for cb in list(self._event_listeners):
            try:
                cb(events)
            except Exception:
                log.exception("event listener failed")

    def deploys(self, since: float, until: float | None = None,
                services: list[str] | None = None) -> list[dict[str, Any]]:
        """Deploys and rollbacks in a window (of `services`; None: all): chart markers, the
        runbook's "recent deploy?", the incident timeline."""
        return self.events.deploys(since, until, services) if self.events is not None else []

    async def _start_listener(self) -> None:
        """The inbound listener, when `[inbound] enabled`; a port it cannot bind is a
        problem shown (another console may hold it), never fatal."""
        from console.engine.signals.inbound import Listener

        if not self.settings.inbound.enabled or self.read_only or self.inbound_alerts is None:
            return
        listener = Listener(self.settings, events=self.events,
                            pings=self.scheduler.ping_book(), alerts=self.inbound_alerts,
                            on_alert=self._inbound_alert, clock=self.clock)
        try:
            await listener.start()
        except OSError as exc:
            section = self.settings.inbound
            self._report_io("inbound", f"inbound listener not started on {section.host}:"
                            f"{section.port}", exc)
            return
        self.set_problem("inbound", None)
        self.listener = listener

    def _inbound_alert(self) -> None:
        if self.alerting is not None:
            self.alerting.observe_now()

    async def _apply_inbound(self, old: Settings, settings: Settings) -> bool:
        """New sources apply at once; a new address, size or rate restarts the listener."""
        if old.inbound == settings.inbound and old.targets == settings.targets:
            return False
        if self.inbound_alerts is not None:
            self.inbound_alerts.configure(settings.inbound)
        listen = ("enabled", "host", "port", "max_body", "rate", "burst")
        if any(getattr(old.inbound, k) != getattr(settings.inbound, k) for k in listen):
            if self.listener is not None:
                await self.listener.stop()
                self.listener = None
            await self._start_listener()
        elif self.listener is not None:
            self.listener.apply(settings)
        return old.inbound != settings.inbound

    # -- the team's Alertmanagers and Prometheus servers -------------------------------------

    async def _start_remote(self) -> None:
        """Read remote alerts (if the config names any source) and start the Alertmanager
        receivers; a source that fails is shown on the Alerts screen, never fatal."""
        from console.engine.alerting.remote import RemoteAlerts

        if RemoteAlerts.wanted(self.settings):
            self.remote = RemoteAlerts(self.settings, self.scheduler.http_clients,
                                       clock=self.clock, notice=self.notice)
            await self.remote.start(poll=self._poll)
        if self._notifications:
            await self._start_pushers()

    async def _start_pushers(self) -> None:
        from console.engine.alerting.alertmanager import Alertmanager
        from console.engine.alerting.receivers.alertmanager import AlertmanagerPush
        from console.engine.config.envref import MissingEnv, expand, expand_url

        clusters = {a.name: a for a in self.settings.alerting.alertmanagers}
        for r in self.settings.alerting.receivers:
            if r.kind != "alertmanager" or r.alertmanager not in clusters:
                continue
            cfg = clusters[r.alertmanager]
            try:
                api = Alertmanager(cfg.name, [expand_url(u) for u in cfg.urls],
                                   await self.scheduler.http_clients(),
                                   headers={k: expand(v) for k, v in cfg.headers.items()},
                                   timeout=cfg.timeout, insecure=cfg.insecure,
                                   ca_file=cfg.ca_file)
            except (MissingEnv, ValueError, OSError) as exc:
                self._report_io(f"receiver:{r.name}", f"receiver {r.name} not started", exc)
                continue
            pusher = AlertmanagerPush(r, api, self._evaluated_alerts, clock=self.clock)
            if self.alerting is not None:  # a transition is pushed at once
                self._push_unsubscribe.append(self.alerting.subscribe(pusher.wake))
            await pusher.start()
            self.pushers.append(pusher)

    def _evaluated_alerts(self) -> object:
        """The alert state to push: this process's, and only while it evaluates."""
        service = self.alerting
        return service.alerts if service is not None and service.evaluating else None

    async def _stop_pushers(self) -> None:
        for unsubscribe in self._push_unsubscribe:
            with contextlib.suppress(ValueError):
                unsubscribe()
        self._push_unsubscribe.clear()
        for pusher in self.pushers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await pusher.stop()
        self.pushers.clear()

    async def _stop_remote(self) -> None:
        await self._stop_pushers()
        if self.remote is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(3):
                    await self.remote.stop()

    # -- incidents ---------------------------------------------------------------------------

    async def load_playbooks(self) -> Playbooks:
        """The playbooks (ours, then the user's), once: the incident desk's checklists and
        the "what to do" line of every alert. A broken user playbook is reported and ours
        are used."""
        if self.playbooks is not None:
            return self.playbooks
        from console.engine.errors import ConfigError
        from console.engine.incidents.playbooks import load_playbooks

        try:
            playbooks = await asyncio.to_thread(load_playbooks)
        except ConfigError as exc:
            self.notice("error", f"playbooks: {exc.issues[0].format()} (using the shipped "
                        "ones only)")
            playbooks = await asyncio.to_thread(load_playbooks, Path("/nonexistent"))
        self.playbooks = playbooks
        return playbooks

    async def open_desk(self, *, quiet: bool = False) -> IncidentDesk | None:
        """Open the incident journal and playbooks (once); None if the journal is unusable
        (the problem set; said as a notice unless `quiet`)."""
        if self.desk is not None:
            return self.desk
        from console.engine.incidents.book import IncidentBook, IncidentDesk

        playbooks = await self.load_playbooks()
        try:
            journal, report = await self.state.open_journal()
        except OSError as exc:  # an unwritable data dir: say so, never crash the console
            self._io_problem("journal", f"incident journal unavailable ({self.paths.journal})",
                             exc, quiet=quiet)
            return None
        self._io_recovered("journal", "incident journal")
        if not report.clean:
            self.notice("warning", f"journal: {report.describe()}")
        desk = self.desk = IncidentDesk(journal, IncidentBook(playbooks, clock=self.clock))
        journal.subscribe(self._on_journal)
        desk.listen(self._on_journal)
        on_state = getattr(journal, "on_state", None)
        if on_state is not None:  # a standing problem, so every screen says it, not only
            loop = asyncio.get_running_loop()  # the incident screen (the walk's full disk)

            def degraded(reason: str | None) -> None:  # from the journal's writer thread
                text = None if reason is None else (
                    f"incident journal degraded ({reason}): incident actions are kept in "
                    "memory and written when the disk takes them")
                with contextlib.suppress(RuntimeError):  # the loop closed: we are stopping
                    loop.call_soon_threadsafe(self.set_problem, "journal", text)

            on_state(degraded)
        on_reset = getattr(journal, "on_reset", None)
        if on_reset is not None:  # the shared journal's order changed: fold it again
            on_reset(lambda: desk.book.replay(journal.entries))
        self._spawn(journal.follow(), "journal-follow")
        return self.desk

    def episodes(self, now: float) -> list[AlertEpisode]:
        """Alert episodes, open and recent: what an incident's timeline and KPIs are read
        from (on the loop: the lifecycle is not thread-safe; the history read is cached)."""
        return self.alerting.recent(now, limit=5000) if self.alerting is not None else []

    async def incident_sources(self, now: float) -> tuple[list[AlertEpisode],
                                                           list[dict[str, Any]]]:
        """(alert episodes, notifications sent): for a post-mortem; the outbox (the local
        one in a thread, read-only, or the shared one) is read by the state backend."""
        episodes = self.episodes(now)
        return episodes, await self.state.notifications()

    # -- configuration -----------------------------------------------------------------------

    async def _start_watcher(self, path: Path) -> None:
        from console.engine.config.watcher import ConfigWatcher

        self.watcher = ConfigWatcher(path, self._config_changed, self._config_broken)
        await self.watcher.start(current=self.settings)

    def _config_changed(self, settings: Settings) -> None:
        self._spawn(self._reload(settings), "reload")

    async def _reload(self, settings: Settings) -> None:
        try:
            applied = await self.apply(settings)
        except Exception as exc:
            log.exception("config reload failed")
            self.notice("error", f"config reload failed: {exc}")
            return
        self.set_problem("config", None)
        for cb in list(self._listeners.reloads):
            cb(applied)

    def _config_broken(self, error: ConfigError) -> None:
        issues = getattr(error, "issues", [])
        first = issues[0].format() if issues else str(error)
        more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
        text = f"config edit rejected, last good config kept: {first}{more}"
        self.set_problem("config", text)
        for cb in list(self._listeners.config_errors):
            cb(text)

    async def apply(self, settings: Settings) -> Applied:
        """Apply a new config: targets, panels and dashboards, rules, the alerting section
        (maintenance windows, acknowledgement and lifecycle settings) and receivers; say what
        only a restart can change."""
        async with self._reload_lock:
            old = self.settings
            self.settings = settings
            applied: list[str] = []
            if (old.targets, old.panels, old.dashboards, old.console.playbook_dashboards) != (
                    settings.targets, settings.panels, settings.dashboards,
                    settings.console.playbook_dashboards):
                applied.append("targets and panels")
            await self.scheduler.apply(settings)
            if self.alerting is not None:
                if (old.rules, old.alerting.default_rules) != (
                        settings.rules, settings.alerting.default_rules):
                    applied.append("rules")
                if old.alerting.model_copy(update={"receivers": []}) != \
                        settings.alerting.model_copy(update={"receivers": []}):
                    applied.append("alerting")
                self.alerting.apply(settings)
            if _outbox_receivers(old) != _outbox_receivers(settings) and self._notifications:
                await self._apply_receivers(settings)
                applied.append("receivers")
            await self._apply_remote(old, settings)
            if await self._apply_inbound(old, settings):
                applied.append("inbound")
            if (old.console.theme, old.console.refresh, old.console.bell) != (
                    settings.console.theme, settings.console.refresh, settings.console.bell):
                applied.append("console")
            return Applied(tuple(applied), tuple(_restart_only(old, settings)))

    async def _apply_remote(self, old: Settings, settings: Settings) -> None:
        """Changed Alertmanagers or promql targets: the readers rebuilt; changed
        Alertmanagers or alertmanager receivers: the pushers (whose next push re-sends
        every firing alert)."""
        from console.engine.alerting.remote import RemoteAlerts

        def sources(s: Settings) -> object:
            return (s.alerting.alertmanagers, [t for t in s.targets if t.kind == "promql"])

        def pushes(s: Settings) -> object:
            return (s.alerting.alertmanagers,
                    [r for r in s.alerting.receivers if r.kind == "alertmanager"])

        if sources(old) != sources(settings):
            if self.remote is not None and RemoteAlerts.wanted(settings):
                await self.remote.apply(settings)
            elif self.remote is not None:
                await self.remote.stop()
                self.remote = None
            elif RemoteAlerts.wanted(settings):
                self.remote = RemoteAlerts(settings, self.scheduler.http_clients,
                                           clock=self.clock, notice=self.notice)
                await self.remote.start(poll=self._poll)
        if pushes(old) != pushes(settings) and self._notifications:
            await self._stop_pushers()
            await self._start_pushers()

    async def _apply_receivers(self, settings: Settings) -> None:
        receivers = _outbox_receivers(settings)
        if self.notifier is not None:
            await self.notifier.reconfigure(receivers)
        elif receivers:
            self.notifier = self._make_notifier()
            if self.alerting is not None:
                await self.alerting.attach_notifier(self.notifier)
