"""The postgres state backend in one process: the schema, the event log, two and three
runtimes on one database (separate data directories), the lease and its fencing token, a lost
notification, a reconnect, a pooler, a read-only console. Real PostgreSQL (the machine's,
a fresh schema per test); the multi-process and kill -9 rounds are in tests/test_state_*.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths
from console.engine.runtime import Runtime
from console.engine.state import schema as db
from tests.pgserver import pg_server_fixture, pg_server_session_fixture  # noqa: F401
from tests.statedb import StateDb, private_state_db_fixture, state_db_fixture  # noqa: F401

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
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def until_sql(sdb: StateDb, sql: str, within: float = DEADLINE) -> None:
    """Until `sql` (one row, column ``ok``) says true: the consoles write from their tasks."""
    deadline = time.monotonic() + within
    while not (await sdb.afetch(sql))[0]["ok"]:
        assert time.monotonic() < deadline, f"never true: {sql}"
        await asyncio.sleep(0.05)


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
    assert len(deltas) == 1  # one evaluator, fenced
    assert deltas[0]["token"] is not None


async def _backend_pids(sdb: StateDb, purpose: str, console_pid: int) -> list[int]:
    rows = await sdb.afetch("SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1",
                            f"opsconsole-state {purpose} %:{console_pid}")
    assert rows, f"no {purpose} connection"
    return [int(r["pid"]) for r in rows]


async def _insert_note(sdb: StateDb, incident: str, text: str, *, notify: bool) -> None:
    """An incident note written by "another console" straight into the events table; with
    notify=False, as if its notification were lost."""
    import orjson

    body = orjson.dumps({"id": f"ext-{text}", "type": "incident.note", "incident": incident,
                         "ts": 1.0, "actor": "someone@elsewhere", "text": text}).decode()
    sql = ("INSERT INTO {s}.events (uid, stream, kind, ts, actor, body) VALUES ($1, "
           "'incident', 'incident.note', 1.0, 'someone@elsewhere', $2::jsonb)")
    if notify:
        sql = (f"WITH e AS ({sql} RETURNING id) SELECT pg_notify('{sdb.schema}_events', "
               "'e' || id) FROM e")
    await sdb.afetch(sql, f"ext-{text}", body)


def _notes(rt: Runtime, incident: str) -> list[str]:
    assert rt.desk is not None
    inc = rt.desk.book.incidents.get(incident)
    return [] if inc is None else [n.text for n in inc.notes]


async def test_a_notification_wakes_the_reader_and_a_lost_one_is_read_by_the_poll(
        state_db: StateDb, http_url: str, tmp_path: Path) -> None:
    import os

    # `poll` an hour: only the notification can bring the first note in time
    async with runtimes(state_db, http_url, tmp_path / "a", 1) as (a,):
        inc = await a.desk.open("disk full", "P2")  # type: ignore[union-attr]
    settings = load_config_text(_config(state_db, http_url, poll="1h"))
    slow = Runtime(settings, DataPaths(tmp_path / "slow"), history=False, operator="x@y")
    settings = load_config_text(_config(state_db, http_url, poll="0.2s"))
    fast = Runtime(settings, DataPaths(tmp_path / "fast"), history=False, operator="x@z")
    await slow.start()
    await fast.start()
    try:
        await _insert_note(state_db, inc.id, "notified", notify=True)
        await until(lambda: _notes(slow, inc.id) == ["notified"])
        await _insert_note(state_db, inc.id, "notification lost", notify=False)
        await until(lambda: _notes(fast, inc.id) == ["notified", "notification lost"])
        # the listening connection dies (a server restart, a proxy): events written
        # meanwhile (their notifications went nowhere) come with the resync
        for pid in await _backend_pids(state_db, "listen", os.getpid()):
            await state_db.afetch("SELECT pg_terminate_backend($1)", pid)
        await _insert_note(state_db, inc.id, "while reconnecting", notify=True)
        await until(lambda: _notes(slow, inc.id) == ["notified", "notification lost",
                                                     "while reconnecting"])
    finally:
        await slow.stop()
        await fast.stop()


async def test_a_replaced_evaluator_is_fenced_out_of_every_write(
        state_db: StateDb, tmp_path: Path) -> None:
    """The lease's token: once another console holds the lease, the old token writes no
    alert state, claims no notification and marks none sent."""
    from console.engine.state.lease import PgLease
    from console.engine.state.outbox import SharedQueue
    from console.engine.state.shared import EvaluatorWrite, SharedState

    cfg = load_config_text(state_db.config(takeover="5s")).state
    one = SharedState(cfg, DataPaths(tmp_path / "one"), actor="one")
    two = SharedState(cfg, DataPaths(tmp_path / "two"), actor="two")
    await one.start()
    await two.start()
    lease1, lease2 = PgLease(one, takeover=5.0), PgLease(two, takeover=5.0)
    try:
        assert await lease1.try_acquire()
        assert not await lease2.try_acquire()  # held
        one.token = lease1.token
        assert lease1.token is not None
        one.chain = [lease1.token]
        one.lease_valid = lease1.valid
        delta = {"uid": "d1", "kind": "alert.delta", "ts": 1.0, "body": {"alerts": []}}
        assert not (await one.flush(EvaluatorWrite(lease1.token, [delta]))).fenced
        one.spool.add("api-down/api/firing/1", "hook", b'{"x": 1}', 1.0, 100,
                      token=lease1.token)
        await one.flush()
        (row,) = await state_db.afetch("SELECT id, token FROM {s}.outbox")
        assert row["token"] == lease1.token
        # the owner's session ends (what idle_session_timeout does to a paused owner)
        await state_db.afetch("SELECT pg_terminate_backend($1)", lease1.pid)
        deadline = time.monotonic() + DEADLINE
        while not await lease2.try_acquire():
            assert time.monotonic() < deadline, "the lease was never free"
            await asyncio.sleep(0.05)
        assert lease2.token is not None
        assert lease1.token is not None
        assert lease2.token > lease1.token
        assert lease2.previous == lease1.token
        # the old owner, resumed, still believes: every write it tries is refused
        q1 = SharedQueue(one, lease1)
        lease1.valid_until = float("inf")  # as if its confirmation had not run out
        one.spool.add("api-down/api/resolved/1", "hook", b'{"x": 2}', 2.0, 100,
                      token=lease1.token)
        result = await one.flush(EvaluatorWrite(lease1.token, [{**delta, "uid": "d2"}]))
        assert result.fenced
        # what it spooled meanwhile never reaches the shared outbox
        assert [r["status"] for r in one.spool.rows()] == ["shipped", "abandoned"]
        assert await q1.claim([int(row["id"])], 2.0) == []
        q2 = SharedQueue(two, lease2)
        assert await q2.claim([int(row["id"])], 2.0) == [int(row["id"])]
        await q1.mark([int(row["id"])], "sent", now=3.0)  # not its claim: nothing happens
        (r,) = await state_db.afetch("SELECT status, claimed_by FROM {s}.outbox")
        assert (r["status"], r["claimed_by"]) == ("sending", lease2.token)
        await q2.mark([int(row["id"])], "sent", now=3.0)
        (r,) = await state_db.afetch("SELECT status FROM {s}.outbox")
        assert r["status"] == "sent"
        kinds = await state_db.afetch("SELECT uid, token FROM {s}.events ORDER BY id")
        assert [(k["uid"], k["token"]) for k in kinds] == [("d1", lease1.token)]
        attempts = await state_db.afetch("SELECT token, outcome FROM {s}.deliveries")
        assert [(a["token"], a["outcome"]) for a in attempts] == [(lease2.token, "sent")]
    finally:
        await lease1.release()
        await lease2.release()
        await one.stop()
        await two.stop()


async def test_a_read_only_console_sees_everything_and_changes_nothing(
        state_db: StateDb, http_url: str, tmp_path: Path) -> None:
    from console.engine.state.journal import ReadOnlyError

    settings = load_config_text(_config(state_db, http_url + "/broken"))
    viewer = Runtime(settings, DataPaths(tmp_path / "viewer"), history=False,
                     operator="viewer@x", read_only=True)
    await viewer.start()
    try:
        async with runtimes(state_db, http_url + "/broken", tmp_path, 1) as (a,):
            await until(lambda: a.alerting.role == "owner")
            inc = await a.desk.open("API down", "P1")  # type: ignore[union-attr]
            await until(lambda: viewer.desk is not None and
                        inc.id in viewer.desk.book.incidents)
            await until(lambda: (x := viewer.alerting.alerts.get("api-down", "api"))
                        is not None and x.state.value == "firing")
            with pytest.raises(ReadOnlyError):
                await viewer.desk.note(inc.id, "no")  # type: ignore[union-attr]
            with pytest.raises(PermissionError):
                await viewer.alerting.submit("ack", rule="api-down", target="api",
                                             incident=1, by="viewer@x")
        # the evaluator went away: a read-only console never takes its place, another does
        assert not viewer.alerting._eligible()
        async with runtimes(state_db, http_url + "/broken", tmp_path / "next", 1) as (b,):
            await until(lambda: b.alerting.role == "owner")
            assert viewer.alerting.role == "follower"
    finally:
        await viewer.stop()
    rows = await state_db.afetch("SELECT count(*) AS n FROM {s}.events WHERE actor = "
                                 "'viewer@x'")
    assert rows[0]["n"] == 0


async def test_one_sender_per_notification_and_the_next_evaluator_carries_on(
        state_db: StateDb, tmp_path: Path) -> None:
    """Firing sent once, by the evaluator, with its fencing token; the evaluator stops, the
    follower takes over (a higher token) and sends the resolved notice; every attempt is on
    record in `deliveries`."""
    from tests.peers import WebhookPeer
    from tests.stateharness import Switch, console_config

    with Switch() as target, WebhookPeer() as hook:
        receivers = f'''
[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{hook.base}/ok"
'''
        rts = []
        for i in range(2):
            text = console_config(target.url, state_db.config(), tmp_path / f"c{i}", receivers)
            rt = Runtime(load_config_text(text), DataPaths(tmp_path / f"c{i}"), history=False,
                         operator=f"op{i}")
            await rt.start()
            rts.append(rt)
        try:
            await until(lambda: any(rt.alerting.role == "owner" for rt in rts))
            first = next(rt for rt in rts if rt.alerting.role == "owner")
            other = next(rt for rt in rts if rt is not first)
            target.up = False
            (fired,) = await hook.requests.until(lambda r: len(r) == 1)
            assert fired.headers["Idempotency-Key"] == "api-down/api/firing/1"
            token1 = int(fired.headers["Opsconsole-Fence"])
            assert token1 == first.state.lease.token  # type: ignore[union-attr]
            await first.stop()
            await until(lambda: other.alerting.role == "owner")
            target.up = True
            resolved = (await hook.requests.until(lambda r: len(r) == 2))[1]
            assert resolved.headers["Idempotency-Key"] == "api-down/api/resolved/1"
            assert int(resolved.headers["Opsconsole-Fence"]) > token1
        finally:
            for rt in rts:
                await rt.stop()
    rows = await state_db.afetch("SELECT o.key, o.status, d.token, d.outcome FROM {s}.outbox o "
                                 "JOIN {s}.deliveries d ON d.outbox_id = o.id ORDER BY d.id")
    assert [(r["key"], r["status"], r["outcome"]) for r in rows] == [
        ("api-down/api/firing/1", "sent", "sent"), ("api-down/api/resolved/1", "sent", "sent")]
    assert rows[0]["token"] == token1 < rows[1]["token"]
    assert len(hook.requests) == 2


async def test_database_away_keeps_evaluating_queues_here_and_reconciles_once(
        private_state_db: tuple[StateDb, object], tmp_path: Path) -> None:
    from tests.peers import WebhookPeer
    from tests.pgserver import PgServer
    from tests.stateharness import Switch, console_config

    sdb, server = private_state_db
    assert isinstance(server, PgServer)
    with Switch() as target, WebhookPeer() as hook:
        receivers = f'''
[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{hook.base}/ok"
'''
        rts = []
        for i in range(2):
            text = console_config(target.url, sdb.config(), tmp_path / f"c{i}", receivers)
            rt = Runtime(load_config_text(text), DataPaths(tmp_path / f"c{i}"), history=False,
                         operator=f"op{i}")
            await rt.start()
            rts.append(rt)
        try:
            await until(lambda: any(rt.alerting.role == "owner" for rt in rts))
            owner = next(rt for rt in rts if rt.alerting.role == "owner")
            other = next(rt for rt in rts if rt is not owner)
            token = owner.state.lease.token  # type: ignore[union-attr]
            inc = await other.desk.open("API flaky", "P2")  # type: ignore[union-attr]
            await until(lambda: inc.id in owner.desk.book.incidents)  # type: ignore[union-attr]
            await asyncio.to_thread(server.stop)
            await until(lambda: all("shared state unreachable since" in
                                    rt.problems.get("state", "") for rt in rts))
            # the evaluator keeps evaluating: the firing waits in its spool, unsent
            target.up = False
            await until(lambda: any(r["key"] == "api-down/api/firing/1" and r["receiver"] ==
                                    "hook" for r in owner.state.state.spool.unshipped()))
            assert owner.alerting.alerts.get("api-down", "api").state.value == "firing"  # type: ignore[union-attr]
            # an operator's note on the follower is kept too, and shown there at once
            await other.desk.note(inc.id, "written while the database was away")  # type: ignore[union-attr]
            assert _notes(other, inc.id) == ["written while the database was away"]
            assert len(hook.requests) == 0
            await asyncio.to_thread(server.start)
            (fired,) = await hook.requests.until(lambda r: len(r) == 1)
            assert fired.headers["Idempotency-Key"] == "api-down/api/firing/1"
            await until(lambda: _notes(owner, inc.id) == ["written while the database was "
                                                          "away"])
            await until(lambda: all("state" not in rt.problems for rt in rts))
            # the evaluator carried on (nobody took over meanwhile), with a new token
            await until(lambda: (owner.state.lease.token or 0) > token)  # type: ignore[union-attr]
            assert owner.alerting.role == "owner"
            assert other.alerting.role == "follower"
            target.up = True
            await hook.requests.until(lambda r: len(r) == 2)
            await until_sql(sdb, "SELECT count(*) = 2 AS ok FROM {s}.outbox WHERE status = "
                            "'sent'")
        finally:
            for rt in rts:
                await rt.stop()
    keys = [r.headers["Idempotency-Key"] for r in hook.requests]
    assert keys == ["api-down/api/firing/1", "api-down/api/resolved/1"]
    rows = await sdb.afetch("SELECT key, status FROM {s}.outbox ORDER BY id")
    assert [(r["key"], r["status"]) for r in rows] == [("api-down/api/firing/1", "sent"),
                                                       ("api-down/api/resolved/1", "sent")]
    notes = await sdb.afetch("SELECT count(*) AS n FROM {s}.events WHERE kind = "
                             "'incident.note'")
    assert notes[0]["n"] == 1


async def test_a_transaction_mode_pooler_is_refused_a_session_mode_one_works(
        private_state_db: tuple[StateDb, object], tmp_path: Path, http_url: str) -> None:
    """The lease is a session advisory lock: through PgBouncer in transaction mode the
    console says why it cannot share its state (and keeps monitoring); in session mode it
    works."""
    from tests.pgbouncer import PgBouncer
    from tests.pgserver import PgServer

    sdb, server = private_state_db
    assert isinstance(server, PgServer)
    for mode in ("transaction", "session"):
        # (a session-mode pool holds a server connection per client: a console takes four)
        with PgBouncer(server, ["postgres"], pool_mode=mode, pool_size=8) as bouncer:
            through = StateDb(bouncer.dsn("postgres"), sdb.schema)
            settings = load_config_text(_config(through, http_url))
            rt = Runtime(settings, DataPaths(tmp_path / mode), history=False, operator="p@q")
            await rt.start()
            try:
                if mode == "transaction":
                    await until(lambda rt=rt: "transaction-mode pooler" in
                                rt.problems.get("state", ""))
                    assert "needs a direct connection" in rt.problems["state"]
                    await until(lambda rt=rt: rt.scheduler.snapshot()[0].status.value == "up")
                    assert rt.alerting.role == "follower"  # nobody evaluates through it
                else:
                    await until(lambda rt=rt: rt.alerting.role == "owner")
                    inc = await rt.desk.open("through a pool", "P3")  # type: ignore[union-attr]
                    rows = await sdb.afetch("SELECT count(*) AS n FROM {s}.events WHERE "
                                            "kind = 'incident.open'")
                    assert rows[0]["n"] == 1
                    assert inc.id in rt.desk.book.incidents  # type: ignore[union-attr]
            finally:
                await rt.stop()


async def test_the_self_watch_pings_only_from_the_evaluator_and_follows_a_failover(
        state_db: StateDb, tmp_path: Path) -> None:
    from tests.stateharness import Switch, console_config

    with Switch() as watch:
        rts = []
        for i in range(2):
            cfg = state_db.config(heartbeat_url=f"{watch.url.rsplit('/', 1)[0]}/ping/c{i}",
                                  heartbeat_every="1s")
            text = console_config(watch.url, cfg, tmp_path / f"c{i}")
            rt = Runtime(load_config_text(text), DataPaths(tmp_path / f"c{i}"), history=False,
                         operator=f"op{i}")
            await rt.start()
            rts.append(rt)
        try:
            await until(lambda: any(rt.alerting.role == "owner" for rt in rts))
            owner = next(i for i, rt in enumerate(rts) if rt.alerting.role == "owner")
            other = 1 - owner
            await watch.hits.until(lambda h: h.count(f"/ping/c{owner}") >= 2)
            assert f"/ping/c{other}" not in list(watch.hits)  # a follower never pings
            await rts[owner].stop()
            await watch.hits.until(lambda h: f"/ping/c{other}" in h)
        finally:
            for rt in rts:
                await rt.stop()
    hits = [h for h in watch.hits if h.startswith("/ping")]
    # one evaluator at a time: the follower's pings all come after the owner's last one
    last_owner = max(i for i, h in enumerate(hits) if h == f"/ping/c{owner}")
    first_other = min(i for i, h in enumerate(hits) if h == f"/ping/c{other}")
    assert last_owner < first_other


async def test_history_is_folded_not_announced_and_entries_missed_while_away_are(
        state_db: StateDb, tmp_path: Path) -> None:
    """A console starting folds every incident entry (the book has them) but tells its
    listeners (the notifier's incident channel, status updates) only of entries arriving
    afterwards, as the file journal does; entries written while it was cut off are news."""
    import os

    from console.engine.state.journal import SharedJournal
    from console.engine.state.shared import SharedState

    await _insert_note(state_db, "INC-1", "history", notify=False)
    cfg = load_config_text(state_db.config(poll="1h")).state
    state = SharedState(cfg, DataPaths(tmp_path / "c"), actor="me")
    journal = SharedJournal(state, root=tmp_path / "c", actor="me")
    heard: list[str] = []
    resets: list[int] = []
    journal.subscribe(lambda es: heard.extend(str(e.get("text")) for e in es))
    journal.on_reset(lambda: resets.append(len(journal.entries)))
    await state.start()
    try:
        assert [e.get("text") for e in journal.entries] == ["history"]
        assert resets == [1]  # the views fold the history
        assert heard == []  # nobody is told of it as news
        await _insert_note(state_db, "INC-1", "live", notify=True)
        await until(lambda: heard == ["live"])
        for pid in await _backend_pids(state_db, "listen", os.getpid()):
            await state_db.afetch("SELECT pg_terminate_backend($1)", pid)
        await _insert_note(state_db, "INC-1", "while away", notify=False)
        await until(lambda: heard == ["live", "while away"])
    finally:
        await state.stop()
