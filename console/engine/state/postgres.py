"""The postgres backend: the team's state as events in a PostgreSQL database.

Builds the pieces over one `SharedState` (`state.shared`): the incident journal
(`state.journal`), the alerting service with its lease (`state.alerts`, `state.lease`) and
the shared outbox the notifier sends from (`state.outbox`), the console's ``outbox.sqlite``
being its local spool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from console.engine.alerting.notify import Notifier
from console.engine.config.rules import Receiver
from console.engine.config.schema import StateSection
from console.engine.paths import DataPaths
from console.engine.state.alerts import SharedAlertService
from console.engine.state.journal import SharedJournal
from console.engine.state.lease import PgLease
from console.engine.state.outbox import SharedQueue
from console.engine.state.shared import SharedState
from console.engine.storage.journal import RecoveryReport
from console.engine.text.redact import redact


class PostgresBackend:
    """State shared through PostgreSQL (see the package docstring)."""

    name = "postgres"

    def __init__(self, cfg: StateSection, paths: DataPaths, *,
                 clock: Callable[[], float] = time.time, actor: str = "",
                 read_only: bool = False,
                 on_problem: Callable[[str | None], None] | None = None) -> None:
        self.cfg = cfg
        self.paths = paths
        self.clock = clock
        self.actor = actor
        self.read_only = read_only
        self.state = SharedState(cfg, paths, clock=clock, actor=actor, on_problem=on_problem,
                                 read_only=read_only)
        self.lease = PgLease(self.state, takeover=cfg.takeover)
        self.state.lease_valid = self.lease.valid
        self.queue = SharedQueue(self.state, self.lease)
        self.alerting: SharedAlertService | None = None

    @property
    def problem(self) -> str | None:
        return self.state.problem

    def describe(self) -> str:
        return f"postgres {redact(self.cfg.dsn or '')} (schema {self.cfg.db_schema})"

    async def start(self) -> None:
        await self.state.start()

    async def stop(self) -> None:
        await self.state.stop()

    def sending(self) -> bool:
        return self.lease.valid()

    def make_notifier(self, receivers: Sequence[Receiver], **kw: Any) -> Notifier:
        notifier = Notifier(self.paths.outbox, receivers, clock=self.clock,
                            outbox=self.state.spool, queue=self.queue, guard=self.lease.valid,
                            fence=lambda: self.lease.token, producer=self._producing, **kw)
        self.state.on_outbox(notifier.wake)
        return notifier

    def _producing(self) -> int | None:
        """The token of the evaluation producing notifications now (offline included)."""
        return self.state.chain[-1] if self.state.chain else None

    def make_alerting(self, scheduler: Any, notifier: Notifier | None, *, role: str,
                      lease: bool, history: bool, advice: Any = None) -> SharedAlertService:
        self.lease.role = role
        self.alerting = SharedAlertService(
            scheduler, state=self.state, lease=self.lease, notifier=notifier, role=role,
            read_only=self.read_only or not lease, queue=self.queue, advice=advice)
        return self.alerting

    async def notifications(self) -> list[dict[str, Any]]:
        """The shared outbox's rows, newest first (for a post-mortem); [] while it cannot be
        read."""
        from console.engine.incidents.context import MAX_ROWS
        from console.engine.state.shared import Unavailable

        s = self.cfg.db_schema
        try:
            rows = await self.state.op(lambda c: c.fetch(
                f"SELECT key, receiver, status, created, sent_at FROM {s}.outbox ORDER BY id "
                "DESC LIMIT $1", MAX_ROWS))
        except Unavailable:
            return []
        return [dict(r) for r in rows]

    async def open_journal(self) -> tuple[SharedJournal, RecoveryReport]:
        journal = SharedJournal(self.state, root=self.paths.root, clock=self.clock,
                                actor=self.actor, read_only=self.read_only)
        if self.state.connected:  # the first resync ran before the journal existed
            await self.state.resync_one(journal)
        return journal, journal.report
