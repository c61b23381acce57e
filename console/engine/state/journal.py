"""The incident journal over the shared state: the same entries, kept as events in PostgreSQL.

`IncidentDesk` and the runtime use it exactly as they use the file journal
(`console.engine.storage.journal.Journal`): ``entries`` in order, ``append`` resolving once
the entry is durable, ``poll`` for what arrived, ``subscribe`` for other consoles' entries. An
entry is written to this console's spool first (durable here), shipped in the next flush and
read back in the database's order, so every console folds the same entries in the same
order; ``append`` waits briefly for that, and when the database is away it returns with the
entry applied from the spool (the screen never hides an action) and the order is made the
database's again by a full rebuild once it is back (`on_reset`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from console.engine.state.shared import Event, SharedState
from console.engine.storage.journal import Record, RecoveryReport, sanitize

log = logging.getLogger(__name__)

READ_BACK = 2.0  # how long an append waits to read its entry back in the database's order


class ReadOnlyError(PermissionError):
    """A `--read-only` console was asked to write."""


class SharedJournal:
    """Incident entries as events (see the module docstring); a `Journal` look-alike."""

    def __init__(self, state: SharedState, *, root: Path, clock: Callable[[], float] = time.time,
                 actor: str = "", read_only: bool = False) -> None:
        self.state = state
        self.clock = clock
        self.actor = actor
        self.read_only = read_only
        # A name for messages, in the data directory (what sits beside the journal, such as
        # post-mortem drafts, is written there); no such file is written.
        self.path = root / f"postgres-{state.schema}.events"
        self.report = RecoveryReport(self.path)
        self._confirmed: list[dict[str, Any]] = []  # in the database's order
        self._uids: set[str] = set()
        self._local: dict[str, dict[str, Any]] = {}  # appended here, not read back yet
        self._unread: list[dict[str, Any]] = []  # for poll()
        self._listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._reset_listeners: list[Callable[[], None]] = []
        self._applied_locally = False  # entries shown before the database ordered them
        self._synced = False  # the first resync is the history, not news
        self._boot = os.urandom(6).hex()
        self._n = 0
        state.add_consumer(self)

    # -- the Journal interface ----------------------------------------------------------------

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self._confirmed + [e for u, e in self._local.items() if u not in self._uids]

    @property
    def degraded(self) -> str | None:
        """Why actions are only in memory (the local spool's disk refused them); an
        unreachable database is the state's own problem (the banner), and actions wait for
        it durably in the spool."""
        return self.state.spool.problem

    @property
    def pending(self) -> int:
        return len(self._local)

    def pending_entries(self) -> list[dict[str, Any]]:
        return list(self._local.values())

    def subscribe(self, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        self._listeners.append(callback)

    def on_reset(self, callback: Callable[[], None]) -> None:
        """`callback()` after a resync changed the order of what was shown: the views
        rebuild from ``entries``."""
        self._reset_listeners.append(callback)

    def on_state(self, callback: Callable[[str | None], None]) -> None:
        """The file journal's degraded-state listener; the state reports its own problem."""

    def poll(self) -> list[dict[str, Any]]:
        out, self._unread = self._unread, []
        return out

    async def follow(self) -> None:
        """The shared state reads for everyone; nothing to poll here."""
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None

    def close_sync(self) -> None:
        return None

    def make_entry(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The complete, sanitised entry (as the file journal makes it): ``id`` unique
        across consoles, ``ts``, ``actor``, ``type``, ``incident``."""
        self._n += 1
        base: dict[str, Any] = {"id": f"{self._boot}-{self._n}", "ts": self.clock(),
                                "actor": self.actor, "type": "note", "incident": None}
        clean = sanitize(dict(entry))
        if not isinstance(clean, dict):
            clean = {"value": clean}
        clean.pop("id", None)
        base.update(clean)
        base["type"] = str(base["type"])
        if not isinstance(base.get("ts"), int | float):
            base["ts"] = self.clock()
        return base

    async def append(self, entry: Mapping[str, Any]) -> Record:
        """Spool the entry (durable here), ship it, and read it back in the database's order
        (at most `READ_BACK` seconds); it is applied from the spool when that cannot be."""
        if self.read_only:
            raise ReadOnlyError("read-only console: incident actions are refused")
        full = self.make_entry(entry)
        uid = str(full["id"])
        await asyncio.to_thread(self.state.spool_event, "incident", full["type"], full)
        self._local[uid] = full
        durable = not self.state.spool.in_memory
        if self.state.connected:
            with contextlib.suppress(Exception):
                result = await asyncio.wait_for(self.state.flush(), READ_BACK)
                if result.last_id:
                    await self.state.read_until(result.last_id, READ_BACK)
        else:
            self.state.kick()
        if uid not in self._uids:
            self._applied_locally = True  # the desk applies it now, in local order
        return Record(uid, full, None, durable)

    # -- the views' side: events from the shared state ----------------------------------------

    def resync(self, events: Sequence[Event]) -> None:
        """Everything again, in the database's order (after a (re)connect). The first time,
        the history is only folded (as the file journal reads its file at open: listeners
        hear of entries that arrive afterwards); later, entries that came while this
        console was cut off are heard of as new."""
        first = not self._synced
        self._synced = True
        before = [e.get("id") for e in self.entries]
        self._confirmed, self._uids = [], set()
        for ev in events:
            if ev.stream == "incident":
                self._take(ev)
        for uid in list(self._local):
            if uid in self._uids:
                del self._local[uid]
        after = [e.get("id") for e in self.entries]
        if first or after != before[:len(after)] or self._applied_locally:
            self._applied_locally = False
            for cb in list(self._reset_listeners):
                try:
                    cb()
                except Exception:
                    log.exception("journal reset listener failed")
        if not first:
            seen = set(before)
            self._deliver([e for e in self._confirmed if e.get("id") not in seen])

    def apply(self, events: Sequence[Event]) -> None:
        new = []
        for ev in events:
            if ev.stream == "incident" and ev.uid not in self._uids:
                new.append(self._take(ev))
                self._local.pop(ev.uid, None)
        self._deliver(new)

    def _take(self, ev: Event) -> dict[str, Any]:
        entry = dict(ev.body)
        entry["id"] = ev.uid
        self._confirmed.append(entry)
        self._uids.add(ev.uid)
        return entry

    def _deliver(self, new: list[dict[str, Any]]) -> None:
        if not new:
            return
        self._unread.extend(new)
        del self._unread[:-10000]
        for cb in list(self._listeners):
            try:
                cb(new)
            except Exception:
                log.exception("journal listener failed")
