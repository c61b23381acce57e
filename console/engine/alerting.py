"""The running alerting service: rules on every check result, timers on a tick, outbox out.

It joins the pieces the TUI and a headless runner share: the Engine's results (through
`Engine.subscribe`), the `AlertEngine` (rules + lifecycle) and, optionally, the `Notifier`.
A result triggers its own target's rules at once (detection is not delayed by the tick);
the tick evaluates everything so staleness (`absent`, nodata), `for`, acknowledgements,
silences and escalation move on even when no result arrives. Both run on the event loop and
are cheap: rules read the store's ring buffers, the outbox insert is one SQLite statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .alerts import AlertEngine, Alerts, Notification
from .model import CheckResult
from .rules import RuleSet

log = logging.getLogger(__name__)


class AlertService:
    """Alerting attached to a running Engine; `alerts` is the live state screens read."""

    def __init__(self, engine: Any, *, notifier: Any = None, tick: float = 2.0,
                 state_path: Path | None = None) -> None:
        self.engine = engine
        self.state_path = Path(state_path) if state_path is not None else None
        self.notifier = notifier
        self.tick_s = tick
        self.ruleset = RuleSet.from_settings(engine.settings)
        self.core = AlertEngine(self.ruleset, engine.store, engine.settings.alerting,
                                clock=engine.clock)
        self.version = 0  # bumped whenever a notification is produced: the UI repaints then
        self.sent: list[Notification] = []  # the most recent notifications, newest last
        self._listeners: list[Callable[[list[Notification]], None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def alerts(self) -> Alerts:
        return self.core.alerts

    def subscribe(self, callback: Callable[[list[Notification]], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def load(self) -> int:
        """Restore alert state saved by an earlier run (TUI or headless); 0 if none or bad."""
        if self.state_path is None or not self.state_path.exists():
            return 0
        try:
            data = orjson.loads(self.state_path.read_bytes())
            return self.alerts.restore(data, self.ruleset.rules)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("alert state %s unreadable (%s); starting afresh", self.state_path, exc)
            return 0

    def save(self) -> None:
        """Write the alert state atomically (temp file, fsync, rename)."""
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(self.state_path.suffix + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(self.alerts.snapshot()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.state_path)

    async def start(self) -> None:
        self.load()
        self._unsubscribe = self.engine.subscribe(self._on_result)
        if self.notifier is not None:
            await self.notifier.start()
        self._task = asyncio.create_task(self._ticker(), name="alerting:tick")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.notifier is not None:
            await self.notifier.stop()
        with contextlib.suppress(OSError):
            self.save()

    def apply(self, settings: Any) -> None:
        """Config reload: new rules and alerting settings, alert state kept."""
        self.ruleset = RuleSet.from_settings(settings)
        self.core.ruleset = self.ruleset

    def run(self, now: float | None = None, *, target: str | None = None) -> list[Notification]:
        notes = self.core.run(now, target=target)
        if notes:
            self._emit(notes)
        return notes

    def _on_result(self, result: CheckResult) -> None:
        try:
            self.run(self.engine.clock(), target=result.target)
        except Exception:  # alerting must never break the poller that called us
            log.exception("rule evaluation failed for %s", result.target)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                self.run(self.engine.clock())
                await asyncio.to_thread(self.save)  # counters and timers move every tick
            except Exception:
                log.exception("rule evaluation tick failed")

    def _emit(self, notes: list[Notification]) -> None:
        self.version += 1
        self.sent = (self.sent + notes)[-200:]
        if self.notifier is not None:
            # Outbox first, state second: a crash between them replays the same transition
            # with the same idempotency key, which the outbox ignores.
            self.notifier.enqueue(notes)
        with contextlib.suppress(OSError):
            self.save()
        for cb in list(self._listeners):
            try:
                cb(notes)
            except Exception:
                log.exception("alert listener failed")
