"""The postgres state backend in one process: the schema, the event log, two and three
runtimes on one database (separate data directories), the lease and its fencing token, a lost
notification, a reconnect, a pooler, a read-only console. Real PostgreSQL (the machine's,
a fresh schema per test); the multi-process and kill -9 rounds are in tests/test_state_*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths
from console.engine.runtime import Runtime
from console.engine.state import schema as db
from tests.statedb import StateDb, state_db  # noqa: F401

DEADLINE = 20.0  # generous: a loaded machine; the latency itself is measured in bench/


def _config(sdb: StateDb, url: str, **state: object) -> str:
    return f'''
[[targets]]
name = "api"
kind = "http"
url = "{url}"
interval = "0.5s"
timeout = "1s"

[[rules]]
name = "api-down"
expr = "down"
severity = "P1"
failure_threshold = 1
summary = "API down"

[alerting]
default_rules = false
''' + sdb.config(**state)


async def until(predicate: Callable[[], bool], within: float = DEADLINE) -> None:
    """Poll a condition (a last resort: the runtimes change from their own tasks)."""
    async with asyncio.timeout(within):
        while not predicate():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def runtimes(sdb: StateDb, url: str, root: Path, n: int, **kw: object
                   ) -> AsyncIterator[list[Runtime]]:
    out: list[Runtime] = []
    try:
        for i in range(n):
            settings = load_config_text(_config(sdb, url))
            rt = Runtime(settings, DataPaths(root / f"console{i}"), history=False,
                         role=f"console{i}", operator=f"op{i}@host{i}", **kw)  # type: ignore[arg-type]
            await rt.start()
            out.append(rt)
        yield out
    finally:
        for rt in out:
            await rt.stop()


async def test_schema_version_is_recorded_and_checked(state_db: StateDb) -> None:
    conn = await asyncpg.connect(state_db.url)
    try:
        assert await db.check(conn, state_db.schema) == db.SCHEMA_VERSION
        found, now = await db.init(conn, state_db.schema)  # again: nothing to migrate
        assert (found, now) == (db.SCHEMA_VERSION, db.SCHEMA_VERSION)
        await conn.execute(f"UPDATE {state_db.schema}.meta SET value = '0'")
        with pytest.raises(db.StateError, match="run `opsconsole state init` to migrate"):
            await db.check(conn, state_db.schema)
        await conn.execute(f"UPDATE {state_db.schema}.meta SET value = '99'")
        with pytest.raises(db.StateError, match="newer than this opsconsole knows"):
            await db.check(conn, state_db.schema)
        with pytest.raises(db.StateError, match="no opsconsole schema 'nosuch'"):
            await db.check(conn, "nosuch")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute(f"INSERT INTO {state_db.schema}.events (uid, stream, kind, ts, "
                               "body) VALUES ('x', 'incident', 'incident.note', 0, '{}');"
                               f"UPDATE {state_db.schema}.events SET ts = 1")
    finally:
        await conn.close()


async def test_incidents_notes_acks_and_silences_reach_every_console(
        state_db: StateDb, http_url: str, tmp_path: Path) -> None:
    async with runtimes(state_db, http_url + "/broken", tmp_path, 3) as (a, b, c):
        # one of them evaluates; the others follow
        await until(lambda: sum(rt.alerting.role == "owner" for rt in (a, b, c)) == 1)
        owner = next(rt for rt in (a, b, c) if rt.alerting.role == "owner")
        assert all(rt.alerting.role == "follower" for rt in (a, b, c) if rt is not owner)
        # the alert fires on the owner; every console shows it
        await until(lambda: all(rt.alerting.alerts.get("api-down", "api") is not None and
                                rt.alerting.alerts.get("api-down", "api").state.value ==
                                "firing" for rt in (a, b, c)))
        # an incident opened and noted on b shows on a and c, in the same order
        assert b.desk is not None
        inc = await b.desk.open("API down", "P1", alerts=["api-down/api"])
        await b.desk.note(inc.id, "looking at the load balancer")
        await until(lambda: all(rt.desk is not None and inc.id in rt.desk.book.incidents and
                                rt.desk.book.incidents[inc.id].notes for rt in (a, c)))
        note = a.desk.book.incidents[inc.id].notes[0]  # type: ignore[union-attr]
        assert (note.text, note.actor) == ("looking at the load balancer", "op1@host1")
        # c claims it: its owner shows everywhere
        await c.desk.handover(inc.id, c.operator)  # type: ignore[union-attr]
        await until(lambda: all(rt.desk.book.incidents[inc.id].owner == "op2@host2"
                                for rt in (a, b)))  # type: ignore[union-attr]
        # a follower acknowledges, with a comment: the owner applies it, everyone sees who
        follower = next(rt for rt in (a, b, c) if rt is not owner)
        alert = follower.alerting.alerts.get("api-down", "api")
        assert alert is not None
        await follower.alerting.submit("ack", rule="api-down", target="api",
                                       incident=alert.incident, by=follower.operator,
                                       comment="on it, LB drained")
        def acked(rt: Runtime) -> bool:
            x = rt.alerting.alerts.get("api-down", "api")
            return x is not None and x.state.value == "acknowledged" and \
                x.acked_by == follower.operator and x.ack_comment == "on it, LB drained"
        await until(lambda: all(acked(rt) for rt in (a, b, c)))
        # a silence from another console, with who and why
        await c.alerting.submit("silence", matchers=['target="api"'], duration=3600.0,
                                by=c.operator, reason="deploy in progress")
        await until(lambda: all(any(s.reason == "deploy in progress" and s.by == "op2@host2"
                                    for s in rt.alerting.alerts.silences())
                                for rt in (a, b, c)))
    # the events carry who and from where
    rows = await state_db.afetch("SELECT kind, actor, console, token FROM {s}.events "
                                 "WHERE kind IN ('alert.request', 'incident.note') ORDER BY id")
    assert [(r["kind"], r["actor"]) for r in rows] == [
        ("incident.note", "op1@host1"), ("alert.request", follower.operator),
        ("alert.request", "op2@host2")]
    assert all(r["console"] for r in rows)
    deltas = await state_db.afetch("SELECT DISTINCT token FROM {s}.events WHERE kind IN "
                                   "('alert.delta', 'alert.checkpoint')")
    assert len(deltas) == 1 and deltas[0]["token"] is not None  # one evaluator, fenced
