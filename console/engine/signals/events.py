"""Events: deployments and other changes, kept in an append-only journal under the data dir.

Why a journal file rather than only the listener: `opsconsole event` must record a deploy
whether or not a console runs (the listener is off by default), and every running console
on the data directory must see it. The journal (`storage/journal.py`) gives that for free:
each append is one fsync'd line under an flock, so the CLI, the listener and several
consoles can write at once, and a running console follows the file within a second.

A deploy event is the playbook's P3 info notice ("ℹ️ INFO: Deployed v1.5.2 to production"),
sent through the notifier like any P3 (so batched by a receiver's digest), a marker on the
charts of its service, a line of the incident timeline, and the answer to the High-error-rate
runbook's "recent deploy?".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from console.engine.alerting.lifecycle import Notification
from console.engine.storage.journal import Journal
from console.engine.text.sanitize import one_line

__all__ = ["EVENT", "EventLog", "deploy_notification", "make_event", "read_events",
           "record_event", "service_of"]

EVENT = "event"  # the journal entry type
KIND = re.compile(r"^[a-z][a-z0-9_-]{0,23}$")
TEXT_MAX = 300
DEPLOY_KINDS = frozenset({"deploy", "rollback"})
# Retention: events older than this leave the file (and a running console's memory) once
# the file is past COMPACT_BYTES and four times its size after the last compaction. 90 days
# cover the playbook's weekly and monthly reviews and a quarter's look back; a log of only
# recent events is not rewritten again and again (it stays under four times its size).
KEEP_S = 90 * 86400.0
COMPACT_BYTES = 4 << 20
COMPACT_EVERY_S = 60.0  # how often a running console looks at the file's size

log = logging.getLogger(__name__)


def make_event(text: str, *, kind: str = "info", service: str | None = None,
               version: str | None = None, link: str | None = None, source: str = "cli",
               at: float | None = None, extra: Mapping[str, Any] | None = None
               ) -> dict[str, Any]:
    """A journal entry for an event; ValueError says what is wrong with the input. Text is
    cut to one line (it is shown in tables, charts and notifications), never markup."""
    kind = kind.strip().lower()
    if not KIND.match(kind):
        raise ValueError(f"kind {kind!r}: a short word (deploy, rollback, info, config...)")
    text = one_line(text, TEXT_MAX)
    if not text:
        raise ValueError("an event needs a text")
    if link is not None and not re.match(r"^https?://\S+$", link.strip(), re.IGNORECASE):
        raise ValueError(f"link {link!r}: an http(s):// URL")
    entry: dict[str, Any] = {"type": EVENT, "kind": kind, "text": text, "source": source}
    if service:
        entry["service"] = one_line(service, 64)
    if version:
        entry["version"] = one_line(version, 64)
    if link:
        entry["link"] = link.strip()[:500]
    if at is not None:
        entry["ts"] = float(at)
    if extra:
        entry.update({k: v for k, v in extra.items() if k not in entry})
    return entry


def record_event(path: Path, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Append one event durably (blocking: the CLI, or a thread). Raises OSError when the
    disk refuses it (the CLI says so and exits non-zero: the deploy was not recorded)."""
    journal = Journal(path)
    journal.open()
    try:
        rec = journal.append_sync(entry)
        if not rec.durable:
            raise OSError(journal.degraded or "the event could not be written")
        return dict(rec.entry)
    finally:
        journal.close_sync()


def read_events(path: Path, *, since: float | None = None, until: float | None = None,
                kinds: Iterable[str] | None = None, service: str | None = None
                ) -> list[dict[str, Any]]:
    """Events in time order, read without writing (a torn or garbled line is skipped: the
    console that owns the file repairs it)."""
    wanted = set(kinds) if kinds else None
    out = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    seen: set[str] = set()
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            e = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(e, dict) or e.get("type") != EVENT:
            continue
        if str(e.get("id")) in seen:
            continue
        seen.add(str(e.get("id")))
        if _keep(e, since, until, wanted, service):
            out.append(e)
    return sorted(out, key=_ts)


def _ts(e: Mapping[str, Any]) -> float:
    ts = e.get("ts")
    return float(ts) if isinstance(ts, int | float) else 0.0


def _keep(e: Mapping[str, Any], since: float | None, until: float | None,
          kinds: set[str] | None, service: str | None) -> bool:
    t = _ts(e)
    if since is not None and t < since:
        return False
    if until is not None and t > until:
        return False
    if kinds is not None and e.get("kind") not in kinds:
        return False
    return service is None or e.get("service") in (None, service)


def service_of(target: Any) -> str:
    """The service a target belongs to, as alerts label it: its group, else its name."""
    return str(getattr(target, "group", None) or getattr(target, "name", ""))


def describe(e: Mapping[str, Any]) -> str:
    """``deploy api v1.5.2: Deployed v1.5.2 to production``: one plain line."""
    head = " ".join(str(x) for x in (e.get("kind"), e.get("service"), e.get("version")) if x)
    return one_line(f"{head}: {e.get('text', '')}", 400)


def deploy_notification(e: Mapping[str, Any]) -> Notification:
    """The playbook's P3 info notice for a deploy: the notifier batches it like any P3
    (a receiver's `digest`), its key the event's id so a restart never sends it twice."""
    service = str(e.get("service") or "")
    text = str(e.get("text") or "")
    return Notification(
        key=f"event/{e.get('id')}", transition="info", rule=str(e.get("kind") or "deploy"),
        target=service or "-", severity="P3",
        labels=tuple(sorted({"service": service or "-", "kind": str(e.get("kind"))}.items())),
        summary=text, runbook=str(e.get("link") or ""), expr="", threshold="", value=None,
        detail=describe(e), at=_ts(e), group=f"event:{service}", incident=0)


class EventLog:
    """The events journal of a running console: followed, so events written by the CLI, the
    listener or another console arrive within a second; `on_event` callbacks see each once."""

    def __init__(self, path: Path, *, clock: Callable[[], float], keep_s: float = KEEP_S,
                 compact_bytes: int = COMPACT_BYTES) -> None:
        self.journal = Journal(path, clock=clock)
        self.keep_s = keep_s
        self.compact_bytes = compact_bytes
        self._compacted = 0  # the file's size after the last compaction
        self._listeners: list[Callable[[list[dict[str, Any]]], None]] = []
        self._task: asyncio.Task[None] | None = None
        self.opened = False

    async def open(self) -> None:
        """Open (and repair) the file and follow it; OSError if the directory is unusable."""
        report = await asyncio.to_thread(self.journal.open)
        del report
        self.opened = True
        self.journal.subscribe(self._new)
        self._task = asyncio.create_task(self._follow(), name="events:follow")

    async def _follow(self, interval: float = 0.25) -> None:
        """Other writers' events within a second; the retention once a minute."""
        every = max(1, round(COMPACT_EVERY_S / interval))
        n = 0
        while True:
            await asyncio.sleep(interval)
            self.journal.poll()
            n += 1
            if n % every == 0:
                await self.compact()

    async def compact(self) -> bool:
        """Drop the events past the retention from the file and from memory, when the file
        has grown past `compact_bytes` and four times its last compacted size. True when it
        was rewritten. A disk that refuses keeps the old file (tried again when it grew)."""
        try:
            size = self.journal.path.stat().st_size
        except OSError:
            return False
        if size <= max(self.compact_bytes, 4 * self._compacted):
            return False
        cutoff = self.journal.clock() - self.keep_s
        arrived: list[dict[str, Any]] = []

        def build(new: list[dict[str, Any]]) -> list[dict[str, Any]]:
            arrived.extend(new)  # appended by others since the last read: delivered below
            return [e for e in self.journal.entries
                    if e.get("type") != EVENT or _ts(e) >= cutoff]

        try:
            self._compacted = await asyncio.to_thread(self.journal.replace, build,
                                                      notify=False)
        except OSError as exc:
            self._compacted = size
            log.warning("events %s not compacted: %s", self.journal.path, exc.strerror or exc)
            return False
        finally:
            if arrived:
                self._new(arrived)
        return True

    def on_event(self, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        self._listeners.append(callback)

    def _new(self, entries: list[dict[str, Any]]) -> None:
        events = [e for e in entries if e.get("type") == EVENT]
        if not events:
            return
        for cb in list(self._listeners):
            with contextlib.suppress(Exception):
                cb(events)

    async def append(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Record an event (the listener's `/events`); durable or kept in memory (degraded)."""
        rec = await self.journal.append(entry)
        return dict(rec.entry)

    def recent(self, since: float, until: float | None = None, *,
               service: str | None = None, kinds: Iterable[str] | None = None
               ) -> list[dict[str, Any]]:
        wanted = set(kinds) if kinds else None
        return [e for e in self.journal.entries if e.get("type") == EVENT
                and _keep(e, since, until, wanted, service)]

    def deploys(self, since: float, until: float | None = None,
                services: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Deploys (and rollbacks) in the window, of any of `services` (None: all); an event
        naming no service is everyone's."""
        names = set(services) if services is not None else None
        return [e for e in self.recent(since, until, kinds=DEPLOY_KINDS)
                if names is None or not e.get("service") or e.get("service") in names]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.opened:
            await self.journal.close()
