"""`opsconsole state import`: a bastion's files into the shared state, once, losing nothing.

Moving from ``backend = "files"`` to ``"postgres"`` brings along the incident journal (each
entry keeps its ``id``, so the incidents, their timelines, KPIs and post-mortems are the same
on every console), the alert history (resolved episodes), the evaluator's alert state (a
checkpoint: acknowledgements, silences, flap state, incident counters — so idempotency keys
carry on), and the outbox (pending notifications are sent by the shared evaluator; what was
sent stays on record). Everything is written in one transaction with ``ON CONFLICT DO
NOTHING`` on each row's identity, so importing twice, or two bastions' files one after the
other, never makes a duplicate; the alert state is taken only if the shared state has none
yet (a running team's state is never overwritten by an old file).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from console.engine.alerting.history import read_episodes
from console.engine.model import AlertEpisode
from console.engine.paths import DataPaths
from console.engine.state import schema as db
from console.engine.state.reader import _lines
from console.engine.state.shared import body_json


@dataclass(slots=True)
class ImportReport:
    """What was read and what was new to the shared state."""

    read: dict[str, int] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"{what}: {self.added.get(what, 0)} added of {n} read"
                 for what, n in self.read.items()]
        return "; ".join(parts + self.notes) or "nothing to import"


def _outbox_rows(path: Any) -> list[tuple[Any, ...]]:
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT key, receiver, grp, payload, created, CASE status WHEN 'sending' THEN "
            "(CASE WHEN digest_end IS NULL THEN 'pending' ELSE 'digest' END) ELSE status END, "
            "attempts, next_at, last_error, sent_at, digest_start, digest_end FROM outbox "
            "WHERE receiver NOT LIKE '@%' ORDER BY id").fetchall()
    finally:
        con.close()


@dataclass(slots=True)
class _Files:
    entries: list[dict[str, Any]]
    episodes: list[AlertEpisode]
    state: dict[str, Any] | None
    state_digest: str
    state_mtime: float
    outbox: list[tuple[Any, ...]]
    notes: list[str]


def _read(paths: DataPaths) -> _Files:
    """Everything to import, read from the files (blocking)."""
    notes: list[str] = []
    state: dict[str, Any] | None = None
    digest, mtime = "", 0.0
    if paths.alert_state.exists():
        raw = paths.alert_state.read_bytes()
        try:
            loaded = orjson.loads(raw)
        except orjson.JSONDecodeError:
            notes.append(f"{paths.alert_state} unreadable: alert state not imported")
            loaded = None
        if isinstance(loaded, dict):
            state = loaded
            digest = hashlib.sha256(raw).hexdigest()[:16]
            mtime = paths.alert_state.stat().st_mtime
    return _Files(_lines(paths.journal),
                  read_episodes(paths.alert_history, since=0.0, limit=10**9, max_bytes=1 << 40),
                  state, digest, mtime, _outbox_rows(paths.outbox), notes)


async def import_files(conn: asyncpg.Connection, schema: str, paths: DataPaths
                       ) -> ImportReport:
    """Import `paths`' journal, alert history, alert state and outbox (see the module)."""
    import asyncio

    await db.check(conn, schema)
    s = schema
    files = await asyncio.to_thread(_read, paths)
    report = ImportReport(notes=list(files.notes))
    console = f"{socket.gethostname()}:{os.getpid()} (import)"
    events: list[tuple[Any, ...]] = []
    entries = files.entries
    report.read["incident entries"] = len(entries)
    for e in entries:
        if not isinstance(e.get("id"), str) or not str(e.get("type", "")).startswith(
                "incident."):
            continue
        events.append((e["id"], "incident", str(e["type"]), float(e.get("ts") or 0.0), None,
                       str(e.get("actor") or ""), console, None, body_json(e)))
    episodes = files.episodes
    report.read["alert episodes"] = len(episodes)
    for ep in episodes:
        events.append((f"episode:{ep.get('key')}", "alert", "alert.episode",
                       float(ep.get("resolved_at") or 0.0), float(ep.get("resolved_at") or 0.0),
                       "", console, None, body_json(ep)))
    state = files.state
    if state is not None:
        report.read["alert state"] = 1
    outbox = files.outbox
    report.read["notifications"] = len(outbox)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", db.lock_key(s, "events"))
        if state is not None:
            have = await conn.fetchval(f"SELECT count(*) FROM {s}.events WHERE kind = "
                                       "'alert.checkpoint'")
            if have:
                report.notes.append("the shared state has an alert state already: kept")
            else:
                meta = {k: state.get(k) for k in ("silences", "detections", "target_flaps")
                        if k in state}
                body = {"alerts": state.get("alerts", []), "meta": meta,
                        "applied": state.get("applied_requests", []), "imported": True}
                events.append((f"import-state-{files.state_digest}", "alert",
                               "alert.checkpoint", files.state_mtime, None, "", console, None,
                               body_json(body)))
                for ep in state.get("unrecorded", []):  # resolved, not yet in the history
                    if isinstance(ep, dict):
                        events.append((f"episode:{ep.get('key')}", "alert", "alert.episode",
                                       float(ep.get("resolved_at") or 0.0),
                                       float(ep.get("resolved_at") or 0.0), "", console, None,
                                       body_json(ep)))
        added_events: list[Any] = []
        if events:
            cols = list(zip(*events, strict=True))
            added_events = await conn.fetch(
                f"INSERT INTO {s}.events (uid, stream, kind, ts, at, actor, console, token, "
                "body) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], "
                "$5::float8[], $6::text[], $7::text[], $8::int8[], $9::jsonb[]) ON CONFLICT "
                "(uid) DO NOTHING RETURNING id, stream, kind", *cols)
        report.added["incident entries"] = sum(1 for r in added_events
                                               if r["stream"] == "incident")
        report.added["alert episodes"] = sum(1 for r in added_events
                                             if r["kind"] == "alert.episode")
        report.added["alert state"] = sum(1 for r in added_events
                                          if r["kind"] == "alert.checkpoint")
        added_notes: list[Any] = []
        if outbox:
            cols = list(zip(*[(*r[:3], bytes(r[3]), *r[4:]) for r in outbox], strict=True))
            added_notes = await conn.fetch(
                f"INSERT INTO {s}.outbox (key, receiver, grp, payload, created, status, "
                "attempts, next_at, last_error, sent_at, digest_start, digest_end, origin) "
                "SELECT *, $13 FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], "
                "$5::float8[], $6::text[], $7::int4[], $8::float8[], $9::text[], "
                "$10::float8[], $11::float8[], $12::float8[]) ON CONFLICT (key, receiver) DO "
                "NOTHING RETURNING id", *cols, console)
        report.added["notifications"] = len(added_notes)
        if added_events:
            top = max(int(r["id"]) for r in added_events)
            await conn.execute("SELECT pg_notify($1, $2)", db.channel(s), f"e{top}")
        if added_notes:
            await conn.execute("SELECT pg_notify($1, 'o')", db.channel(s))
    return report
