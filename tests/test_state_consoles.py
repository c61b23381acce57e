"""Several consoles as separate processes, each with its own data directory, one state
database (real PostgreSQL): what one operator does shows on every other console; one of them
evaluates and notifies; a paused evaluator resumed after its successor took over sends
nothing; the database stopped for 30 s loses and duplicates nothing. The kill -9 rounds are
in tests/test_state_failover.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.pgserver import pg_server_fixture, pg_server_session_fixture  # noqa: F401
from tests.statedb import StateDb, private_state_db_fixture, state_db_fixture  # noqa: F401
from tests.stateharness import Proc, Switch, console_config, headless, operator_console

WITHIN = 60.0  # ends a hung test only; how fast a change travels is bench/bench_state.py's
OUTAGE = float(__import__("os").environ.get("OPSTEST_OUTAGE", "30"))


@pytest.fixture
def procs() -> Any:
    started: list[Proc] = []
    yield started
    for p in started:
        p.resume()
        p.kill9()


def _views(p: Proc, pred: Any) -> dict[str, Any]:
    return p.wait_out(lambda x: "view" in x and pred(x["view"]), WITHIN)["view"]


@pytest.mark.parametrize("n", [2, 3])
def test_every_console_sees_what_any_operator_does(
        n: int, state_db: StateDb, tmp_path: Path, procs: list[Proc]) -> None:
    with Switch() as target:
        target.up = False
        consoles = []
        for i in range(n):
            config = tmp_path / f"c{i}.toml"
            config.write_text(console_config(target.url, state_db.config(), tmp_path / f"d{i}"))
            p = operator_console(config, f"op{i}@bastion{i}")
            procs.append(p)
            consoles.append(p)
        for p in consoles:
            p.said("ready")
        # one evaluates, every one shows the alert firing
        for p in consoles:
            _views(p, lambda v: (v["alert"] or {}).get("state") == "firing")
        first, second, last = consoles[0], consoles[1], consoles[-1]
        first.send({"op": "open", "title": "API down"})
        iid = first.wait_out(lambda x: "opened" in x, WITHIN)["opened"]
        second.send({"op": "note", "incident": iid, "text": "LB health checks failing"})
        last.send({"op": "claim", "incident": iid})
        last.send({"op": "ack", "comment": "draining the bad node"})
        second.send({"op": "silence", "reason": "deploy in progress", "duration": 3600})
        expected_note = ["LB health checks failing", "op1@bastion1"]
        for p in consoles:
            v = _views(p, lambda v: iid in v["incidents"]
                       and v["incidents"][iid]["notes"] == [expected_note]
                       and v["incidents"][iid]["owner"] == f"op{n - 1}@bastion{n - 1}"
                       and (v["alert"] or {}).get("state") == "acknowledged"
                       and ["deploy in progress", "op1@bastion1"] in v["silences"])
            assert v["alert"]["acked_by"] == f"op{n - 1}@bastion{n - 1}"
            assert v["alert"]["comment"] == "draining the bad node"
        roles = [p.out.items[-1]["view"]["role"] for p in consoles]
        assert sorted(roles) == ["follower"] * (n - 1) + ["owner"]
        for p in consoles:
            assert p.stop() == 0
    events = state_db.fetch("SELECT kind, actor FROM {s}.events WHERE kind IN "
                            "('incident.open', 'incident.note', 'incident.handover', "
                            "'alert.request') ORDER BY id")
    assert sorted((r["kind"], r["actor"]) for r in events) == sorted([
        ("incident.open", "op0@bastion0"), ("incident.note", "op1@bastion1"),
        ("incident.handover", f"op{n - 1}@bastion{n - 1}"),
        ("alert.request", f"op{n - 1}@bastion{n - 1}"), ("alert.request", "op1@bastion1")])


def _hook(base: str, extra: str = "") -> str:
    return f'''
[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{base}/ok"
{extra}
'''


def _owner(consoles: list[Proc], token: int, within: float = WITHIN) -> Proc:
    """The console that says it took the lease with `token`."""
    needle = f"this console evaluates alerts now (fencing token {token}"
    import time

    deadline = time.monotonic() + within
    while True:
        for p in consoles:
            if p.said_count(needle):
                return p
        assert time.monotonic() < deadline, f"nobody took token {token}"
        time.sleep(0.05)


def test_a_paused_evaluator_resumed_after_failover_never_sends(
        state_db: StateDb, tmp_path: Path, procs: list[Proc]) -> None:
    from tests.peers import WebhookPeer

    with Switch() as target, WebhookPeer() as hook:
        consoles = []
        for i in range(2):
            config = tmp_path / f"c{i}.toml"
            config.write_text(console_config(
                target.url, state_db.config(takeover="5s"), tmp_path / f"d{i}",
                _hook(hook.base, 'group_wait = "4s"')))
            p = headless(config)
            procs.append(p)
            consoles.append(p)
            p.said("running headless")
        old = _owner(consoles, 1)
        new = next(p for p in consoles if p is not old)
        # the firing is in the shared outbox, waiting out group_wait on the evaluator: freeze
        # the evaluator there (a SIGSTOP, a VM paused by its hypervisor)
        target.up = False
        state_db_wait(state_db, "SELECT count(*) = 1 AS ok FROM {s}.outbox")
        old.pause()
        _owner([new], 2)
        fired = hook.requests.wait(lambda r: len(r) == 1, WITHIN)[0]
        assert fired.headers["Idempotency-Key"] == "api-down/api/firing/1"
        assert fired.headers["Opsconsole-Fence"] == "2"
        # resumed: it finds its lease expired, learns it was replaced, sends nothing
        old.resume()
        old.said("alert evaluation handed over")
        target.up = True
        resolved = hook.requests.wait(lambda r: len(r) == 2, WITHIN)[1]
        assert resolved.headers["Idempotency-Key"] == "api-down/api/resolved/1"
        state_db_wait(state_db, "SELECT bool_and(status = 'sent') AS ok FROM {s}.outbox")
        for p in consoles:
            assert p.stop() == 0
    assert [r.headers["Opsconsole-Fence"] for r in hook.requests] == ["2", "2"]
    attempts = state_db.fetch("SELECT token FROM {s}.deliveries")
    assert {r["token"] for r in attempts} == {2}


def state_db_wait(sdb: StateDb, sql: str, within: float = WITHIN) -> None:
    """Until `sql` (one row, column ``ok``) is true (the consoles write from their tasks)."""
    import time

    deadline = time.monotonic() + within
    while not sdb.fetch(sql)[0]["ok"]:
        assert time.monotonic() < deadline, f"never true: {sql}"
        time.sleep(0.05)


def _spooled(data_dir: Path, key: str) -> bool:
    """Whether a console's local spool holds `key` for the webhook (read-only look)."""
    import sqlite3

    db = data_dir / "outbox.sqlite"
    if not db.exists():
        return False
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return bool(con.execute("SELECT count(*) FROM outbox WHERE key = ? AND receiver = "
                                "'hook'", (key,)).fetchone()[0])
    finally:
        con.close()


@pytest.mark.slow  # a 30 s outage: make test-slow (and CI)
def test_the_state_database_stopped_for_30s_loses_and_duplicates_nothing(
        private_state_db: tuple[StateDb, Any], tmp_path: Path, procs: list[Proc]) -> None:
    import time

    from tests.peers import WebhookPeer

    sdb, server = private_state_db
    with Switch() as target, WebhookPeer() as hook:
        consoles, dirs = [], []
        for i in range(2):
            config = tmp_path / f"c{i}.toml"
            dirs.append(tmp_path / f"d{i}")
            config.write_text(console_config(target.url, sdb.config(), dirs[-1],
                                             _hook(hook.base)))
            p = headless(config) if i == 0 else operator_console(config, "op@b1")
            procs.append(p)
            consoles.append(p)
        consoles[0].said("running headless")
        consoles[1].said("ready")
        owner = _owner(consoles, 1)
        owner_dir = dirs[consoles.index(owner)]
        operator = consoles[1]
        operator.send({"op": "open", "title": "API flaky"})
        iid = operator.wait_out(lambda x: "opened" in x, WITHIN)["opened"]
        started = time.monotonic()
        server.stop()
        for p in consoles:
            p.said("shared state unreachable since")
        # while it is away: the target fails and recovers, an operator writes a note
        target.up = False
        deadline = time.monotonic() + WITHIN
        while not _spooled(owner_dir, "api-down/api/firing/1"):
            assert time.monotonic() < deadline, "the firing was never queued"
            time.sleep(0.05)
        target.up = True
        while not _spooled(owner_dir, "api-down/api/resolved/1"):
            assert time.monotonic() < deadline, "the resolved was never queued"
            time.sleep(0.05)
        operator.send({"op": "note", "incident": iid, "text": "noted during the outage"})
        assert len(hook.requests) == 0  # nothing sent while the database is away
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - started)))  # the outage itself
        server.start()
        hook.requests.wait(lambda r: len(r) == 2, WITHIN)
        note = ["noted during the outage", "op@b1"]
        _views(operator, lambda v: v["incidents"].get(iid, {}).get("notes") == [note])
        # and the next episode is notified as usual
        target.up = False
        try:
            hook.requests.wait(lambda r: len(r) == 3, WITHIN)
        except AssertionError:
            for p in consoles:
                print("\n".join(p.err.items))
            raise
        target.up = True
        hook.requests.wait(lambda r: len(r) == 4, WITHIN)
        state_db_wait(sdb, "SELECT bool_and(status = 'sent') AS ok FROM {s}.outbox")
        for p in consoles:
            assert p.stop() == 0
    keys = [r.headers["Idempotency-Key"] for r in hook.requests]
    assert keys == ["api-down/api/firing/1", "api-down/api/resolved/1",
                    "api-down/api/firing/2", "api-down/api/resolved/2"]
    rows = sdb.fetch("SELECT key, status FROM {s}.outbox ORDER BY id")
    assert [(r["key"], r["status"]) for r in rows] == [(k, "sent") for k in keys]
    notes = sdb.fetch("SELECT count(*) AS n FROM {s}.events WHERE kind = 'incident.note'")
    assert notes[0]["n"] == 1
