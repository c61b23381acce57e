"""The files backend: one bastion's state in its data directory (the default).

The incident journal (``journal.jsonl``), the alert state (``alerts.json``), alert history,
the flock lease and the SQLite outbox, exactly as `console.engine.storage` and
`console.engine.alerting` keep them; consoles sharing the data directory share them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from console.engine.alerting.notify import Notifier
from console.engine.alerting.service import AlertService
from console.engine.config.rules import Receiver
from console.engine.paths import DataPaths
from console.engine.storage.journal import Journal, RecoveryReport


class FilesBackend:
    """State in files under the data directory."""

    name = "files"
    problem: str | None = None

    def __init__(self, paths: DataPaths, *, clock: Callable[[], float] = time.time,
                 actor: str = "", read_only: bool = False) -> None:
        self.paths = paths
        self.clock = clock
        self.actor = actor
        self.read_only = read_only

    def describe(self) -> str:
        return f"files in {self.paths.root}"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def sending(self) -> bool:
        """Whether notifications can leave (the self-watch pings only then)."""
        return True

    def make_notifier(self, receivers: Sequence[Receiver], **kw: Any) -> Notifier:
        return Notifier(self.paths.outbox, receivers, clock=self.clock, **kw)

    def make_alerting(self, scheduler: Any, notifier: Notifier | None, *, role: str,
                      lease: bool, history: bool, advice: Any = None) -> AlertService:
        return AlertService(scheduler, notifier=notifier,
                            paths=self.paths if history else None, role=role, lease=lease,
                            advice=advice)

    async def notifications(self) -> list[dict[str, Any]]:
        """The outbox's rows, newest first (for a post-mortem), read-only in a thread."""
        from console.engine.incidents.context import read_notifications

        return await asyncio.to_thread(read_notifications, self.paths.outbox)

    async def open_journal(self) -> tuple[Journal, RecoveryReport]:
        """Open (and repair) the journal file; raises OSError when it cannot be."""
        journal = Journal(self.paths.journal, clock=self.clock, actor=self.actor or None)
        try:
            report = await asyncio.to_thread(journal.open)
        except OSError:
            journal.close_sync()
            raise
        return journal, report
