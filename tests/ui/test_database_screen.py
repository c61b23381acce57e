"""The database drill-down screen on a real check of the machine's PostgreSQL.

A session of our own runs `pg_sleep` with markup-like text in its query; the probe's real
result is recorded into the engine (nothing polls), and the screen must list that session,
show its text literally, sort, filter, switch sections and copy the query (OSC 52).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from console.app import OpsConsoleApp
from console.engine.config.schema import HttpTarget, PostgresTarget, Settings
from console.engine.text.sanitize import one_line
from console.screens.database import ConfirmAction, DatabaseScreen
from console.screens.detail import DetailScreen
from tests.pgserver import pg_server_fixture, pg_server_session_fixture  # noqa: F401
from tests.ui.apptools import screen_text, wait_for, wait_started

MACHINE_DSN = "postgresql://postgres@127.0.0.1:5432/test"
# Long enough to outlast a slow engine start in a loaded CI run; cancelled at the end.
QUERY = "SELECT pg_sleep(60) /* [b]ui-marker[/b] */"


async def test_database_screen_lists_sorts_filters_and_copies(tmp_path: Path,
                                                             ui_env: None) -> None:
    settings = Settings(targets=[
        PostgresTarget(name="db", dsn=MACHINE_DSN, slow_query=0.2, interval=5.0),
        HttpTarget(name="web", url="http://127.0.0.1:9/health"),
    ])
    app = OpsConsoleApp(settings=settings, history=False, poll=False)
    sleeper = await asyncpg.connect(MACHINE_DSN, timeout=5,
                                    server_settings={"application_name": "ui-sleeper"})
    sleeping = asyncio.create_task(sleeper.execute(QUERY))
    # A lock held by one session and awaited by another (advisory: no table needed).
    holder = await asyncpg.connect(MACHINE_DSN, timeout=5)
    waiter = await asyncpg.connect(MACHINE_DSN, timeout=5)
    key = 0x0B5C0DE0 + holder.get_server_pid()
    await holder.execute("SELECT pg_advisory_lock($1)", key)
    waiting = asyncio.create_task(waiter.execute("SELECT pg_advisory_lock($1)", key))
    try:
        async with app.run_test(size=(120, 32)) as pilot:
            await wait_started(pilot)
            await asyncio.sleep(0.4)  # past slow_query
            state = app.scheduler._states["db"]
            result = await state.probe.check()
            assert result.error is None
            app.scheduler.record(state, result)

            app.push_screen(DetailScreen("web"))
            await pilot.pause()
            assert app.screen.check_action("database", ()) is False  # http: no database view
            app.pop_screen()
            app.push_screen(DetailScreen("db"))
            await pilot.pause()
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, DatabaseScreen), 5,
                           "database screen")
            screen: Any = app.screen
            await wait_for(pilot, lambda: "ui-marker" in screen_text(app), 5, "the session")
            # the header grows from one line to its full height on the next layout
            await wait_for(pilot, lambda: "ACTIVITY" in screen_text(app), 5, "the header")
            text = screen_text(app)
            assert "[b]ui-marker[/b]" in text  # remote text is never markup
            assert "ACTIVITY" in text, text
            assert "sorted by secs ↓" in text

            index = next(i for i, r in enumerate(screen._rows)
                         if r["application"] == "ui-sleeper")
            screen.query_one("#db-table").move_cursor(row=index)
            await pilot.press("y")
            assert app.clipboard == QUERY

            await pilot.press("slash")
            await pilot.press(*"ui-sleeper")
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(screen._rows) == 1, 5, "filtered to one row")
            assert "filter: ui-sleeper" in screen_text(app)
            await pilot.press("escape")  # clears the filter first
            assert screen.filter_text == ""
            assert isinstance(app.screen, DatabaseScreen)

            await pilot.press("o")  # next column: sorted by the blockers now
            assert "sorted by blocked by ↓" in screen_text(app)
            await pilot.press("O")
            assert "sorted by blocked by ↑" in screen_text(app)

            await pilot.press("2")
            await pilot.pause()
            text = screen_text(app)
            assert "LOCKS" in text
            hp, wp = holder.get_server_pid(), waiter.get_server_pid()
            trees = [r["tree"] for r in screen._rows]
            assert trees[trees.index(str(hp)) + 1] == f"  └ {wp}"  # blocked under its blocker
            assert f"└ {wp}" in text
            await pilot.press("3")
            await pilot.pause()
            assert "pg_stat_statements is not available" in screen_text(app)
            await pilot.press("4")
            await pilot.pause()
            assert "TABLES" in screen_text(app)
            assert "sorted by total ↓" in screen_text(app)

            await pilot.press("escape")
            assert isinstance(app.screen, DetailScreen)
    finally:
        await holder.close()  # releases the advisory lock: the waiter gets it
        await asyncio.wait_for(waiting, 5)
        await waiter.close()
        admin = await asyncpg.connect(MACHINE_DSN, timeout=5)
        try:
            await admin.execute("SELECT pg_cancel_backend($1)", sleeper.get_server_pid())
        finally:
            await admin.close()
        with contextlib.suppress(asyncpg.exceptions.QueryCanceledError):
            await asyncio.wait_for(sleeping, 5)
        await sleeper.close()


async def test_redis_drill_down_shows_keyspace_slowlog_and_state(ui_env: None) -> None:
    from console.engine.config.schema import RedisTarget
    from tests.redisserver import RedisServer

    with RedisServer() as server:
        data = server.admin(db=2)
        data.mset({f"k{i}": "v" for i in range(4)})
        data.config_set("slowlog-log-slower-than", "0")
        settings = Settings(targets=[RedisTarget(name="cache", url=server.url)])
        app = OpsConsoleApp(settings=settings, history=False, poll=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_started(pilot)
            state = app.scheduler._states["cache"]
            app.scheduler.record(state, await state.probe.check())
            data.set("[b]marker[/b]", "secret-value")
            app.scheduler.record(state, await state.probe.check())
            app.push_screen(DetailScreen("cache"))
            await pilot.pause()
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, DatabaseScreen), 5,
                           "drill-down")
            screen: Any = app.screen
            await wait_for(pilot, lambda: "KEYSPACE" in screen_text(app), 5, "keyspace")
            assert [(r["db"], r["keys"]) for r in screen._rows] == [("db2", 5.0)]  # 4 + marker
            await pilot.press("2")
            await wait_for(pilot, lambda: "SLOWLOG" in screen_text(app), 5, "slowlog")
            text = screen_text(app)
            assert "SET [b]marker[/b] …(+1 args)" in text  # literal, and no value shown
            assert "secret-value" not in text
            index = next(i for i, r in enumerate(screen._rows)
                         if r["command"].startswith("SET [b]marker"))
            screen.query_one("#db-table").move_cursor(row=index)
            await pilot.press("y")
            assert app.clipboard == "SET [b]marker[/b] …(+1 args)"
            await pilot.press("3")
            await wait_for(pilot, lambda: "REPLICATION & PERSISTENCE" in screen_text(app), 5,
                           "server state")
            assert any(r["key"] == "role" and r["value"] == "master" for r in screen._rows)
            assert any(r["key"] == "rdb_last_bgsave_status" for r in screen._rows)
        data.close()


async def test_dba_tabs_and_every_note_at_80x24(ui_env: None, pg_server: Any,
                                               monkeypatch: Any) -> None:
    """The new tabs and the notes, keyboard only on an 80x24 terminal (issue 11): every
    note is there (more than the 3 the header used to show), scrollable with `n`."""
    from tests.engine.test_postgres_deep import fresh_db
    from tests.pgserver import PASSWORD

    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)
    fresh_db(pg_server, "opsc_ui")
    pg_server.admin("SELECT pg_create_physical_replication_slot('opsc_ui_slot', true)")
    try:
        settings = Settings(targets=[PostgresTarget(
            name="db", interval=5.0, dsn=pg_server.dsn(password="${OPSCONSOLE_T_PG_PW}",
                                                       db="opsc_ui"),
            queries={"broken": "select count(*) frm t", "later": "select count(*) from t",
                     "nothing": "select null::int"})])
        app = OpsConsoleApp(settings=settings, history=False, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_started(pilot)
            state = app.scheduler._states["db"]
            result = await state.probe.check()
            assert result.error is None
            notes = result.details["notes"]
            assert len(notes) >= 5, notes  # superuser, pgss, broken, later, slot
            app.scheduler.record(state, result)
            app.push_screen(DetailScreen("db"))
            await pilot.pause()
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, DatabaseScreen), 5, "drill-down")
            screen: Any = app.screen
            await wait_for(pilot, lambda: "ACTIVITY" in screen_text(app), 5, "activity")
            assert f"{len(notes)} notes (n)" in screen_text(app)
            assert "primary, 0 replicas" in screen_text(app)
            box = screen.query_one("#db-notes")
            text = str(screen.query_one("#db-notes-text").render())
            assert all(one_line(n, 500) in text for n in notes)
            assert box.max_scroll_y > 0  # more notes than lines: it scrolls
            await pilot.press("n")
            assert box.has_focus
            await pilot.press("end")
            await pilot.pause()
            assert box.scroll_y == box.max_scroll_y
            assert one_line(notes[-1], 60)[:40] in screen_text(app)
            await pilot.press("escape")  # back to the table, not out of the screen
            assert isinstance(app.screen, DatabaseScreen)
            assert screen.query_one("#db-table").has_focus

            await pilot.press("6")
            await wait_for(pilot, lambda: "CONNECTIONS" in screen_text(app), 5, "connections")
            assert {(r["group"], r["name"]) for r in screen._rows} >= {("role", "postgres"),
                                                                      ("database", "opsc_ui")}
            await pilot.press("7")
            await wait_for(pilot, lambda: "REPLICATION" in screen_text(app), 5, "replication")
            slot = next(r for r in screen._rows if r["name"] == "opsc_ui_slot")
            assert slot["state"] == "INACTIVE"
            assert "INACTIVE" in screen_text(app)
            await pilot.press("8")
            await wait_for(pilot, lambda: "VACUUM" in screen_text(app), 5, "vacuum")
            await pilot.press("5")
            await wait_for(pilot, lambda: "INDEXES" in screen_text(app), 5, "indexes")
            await pilot.press("escape")
            assert isinstance(app.screen, DetailScreen)
    finally:
        pg_server.admin("SELECT pg_drop_replication_slot('opsc_ui_slot')")


async def test_redis_commands_clients_and_big_keys_at_80x24(ui_env: None) -> None:
    from console.engine.config.schema import RedisTarget
    from tests.redisserver import RedisServer

    with RedisServer("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru") as server:
        data = server.admin()
        data.client_setname("ui-idle-client")
        data.set("big:[b]key[/b]", "x" * 50_000)
        settings = Settings(targets=[RedisTarget(name="cache", url=server.url,
                                                 bigkeys_sample=50)])
        app = OpsConsoleApp(settings=settings, history=False, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_started(pilot)
            state = app.scheduler._states["cache"]
            app.scheduler.record(state, await state.probe.check())
            for _ in range(3):
                data.get("big:[b]key[/b]")
            app.scheduler.record(state, await state.probe.check())
            app.push_screen(DetailScreen("cache"))
            await pilot.pause()
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, DatabaseScreen), 5, "drill-down")
            screen: Any = app.screen
            await wait_for(pilot, lambda: "KEYSPACE" in screen_text(app), 5, "keyspace")
            assert "allkeys-lru (evicting)" in screen_text(app)
            await pilot.press("4")
            await wait_for(pilot, lambda: "COMMANDS" in screen_text(app), 5, "commands")
            get = next(r for r in screen._rows if r["command"] == "get")
            assert get["d_calls"] == 3
            await pilot.press("5")
            await wait_for(pilot, lambda: "CLIENTS" in screen_text(app), 5, "clients")
            assert "ui-idle-client" in {r["name"] for r in screen._rows}
            await pilot.press("6")
            await wait_for(pilot, lambda: "BIG KEYS" in screen_text(app), 5, "big keys")
            assert screen._rows[0]["key"] == "big:[b]key[/b]"
            assert "big:[b]key[/b]" in screen_text(app)  # plain text, never markup
            await pilot.press("escape")
            assert isinstance(app.screen, DetailScreen)
        data.close()


async def test_guarded_cancel_and_terminate_journaled_into_the_incident(
        ui_env: None, pg_server: Any, monkeypatch: Any) -> None:
    """pg_activity's c / k, through a separate role, confirmed by naming the session, and
    written into the open incident; refused without allow_actions or in a read-only
    console (issue 11, item 8). The server is the witness: the queries really end."""
    from tests.engine.test_postgres_deep import MON_PW, fresh_db, make_role
    from tests.pgserver import PASSWORD

    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)
    monkeypatch.setenv("OPSCONSOLE_T_KILL_PW", MON_PW)
    fresh_db(pg_server, "opsc_act")
    make_role(pg_server, "opsc_killer", monitor=False)
    pg_server.admin("GRANT pg_signal_backend TO opsc_killer")
    dsn = pg_server.dsn(password="${OPSCONSOLE_T_PG_PW}", db="opsc_act")
    actions = pg_server.dsn(user="opsc_killer", password="${OPSCONSOLE_T_KILL_PW}",
                            db="opsc_act")
    settings = Settings(targets=[
        PostgresTarget(name="db", dsn=dsn, slow_query=0.2, interval=5.0, allow_actions=True,
                       actions_dsn=actions),
        PostgresTarget(name="plain", dsn=dsn, slow_query=0.2, interval=5.0)])
    # sessions of an ordinary role: pg_signal_backend may not signal a superuser's
    make_role(pg_server, "opsc_worker", monitor=False)
    workers = [await asyncpg.connect(host="127.0.0.1", port=pg_server.port, user="opsc_worker",
                                     password=MON_PW, database="opsc_act", timeout=5,
                                     server_settings={"application_name": f"opsc-w{i}"})
               for i in range(2)]
    sleeping = [asyncio.create_task(w.execute("SELECT pg_sleep(60)")) for w in workers]
    app = OpsConsoleApp(settings=settings, history=False, poll=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_started(pilot)
            desk = await app.runtime.open_desk()
            incident = await desk.open("db sessions piling up", "P1", targets=["db"])
            await asyncio.sleep(0.3)  # past slow_query: the sleepers are listed
            for name in ("db", "plain"):
                state = app.scheduler._states[name]
                app.scheduler.record(state, await state.probe.check())

            async def open_drill_down(name: str, app_name: str) -> Any:
                app.push_screen(DetailScreen(name))
                await pilot.pause()
                await pilot.press("d")
                await wait_for(pilot, lambda: isinstance(app.screen, DatabaseScreen), 5,
                               "drill-down")
                screen: Any = app.screen
                await wait_for(pilot, lambda: any(r["application"] == app_name
                                                  for r in screen._rows), 5, "the session")
                index = next(i for i, r in enumerate(screen._rows)
                             if r["application"] == app_name)
                screen.query_one("#db-table").move_cursor(row=index)
                return screen

            # a target without allow_actions: refused, nothing asked
            await open_drill_down("plain", "opsc-w0")
            await pilot.press("c")
            await pilot.pause()
            assert isinstance(app.screen, DatabaseScreen)
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), 5, "detail")
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, DetailScreen), 5, "board")

            screen = await open_drill_down("db", "opsc-w0")
            pid0, pid1 = (w.get_server_pid() for w in workers)
            await pilot.press("c")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), 5, "confirm")
            question = str(app.screen.query_one("#confirm-text").render())
            assert question.startswith(f"Cancel the query of pid {pid0} (opsc_worker, "
                                       "opsc-w0, active ")
            assert "SELECT pg_sleep(60)" in question
            await pilot.press("y")
            with pytest.raises(asyncpg.exceptions.QueryCanceledError):
                await asyncio.wait_for(sleeping[0], 10)
            await wait_for(pilot, lambda: any(
                f"pg_cancel_backend({pid0}) sent" in n.text
                for n in desk.book.get(incident.id).notes), 10, "journaled")

            index = next(i for i, r in enumerate(screen._rows) if r["pid"] == pid1)
            screen.query_one("#db-table").move_cursor(row=index)
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), 5, "confirm")
            await pilot.press("n")  # not this time: nothing happens
            await pilot.pause()
            assert not sleeping[1].done()
            app.runtime.read_only = True  # the console's read-only mode (Runtime.read_only)
            await pilot.press("k")
            await pilot.pause()
            assert isinstance(app.screen, DatabaseScreen)  # refused before asking
            app.runtime.read_only = False
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), 5, "confirm")
            assert str(app.screen.query_one("#confirm-text").render()).startswith(
                f"Terminate the backend of pid {pid1} ")
            await pilot.press("y")
            with pytest.raises((asyncpg.exceptions.AdminShutdownError,
                                asyncpg.exceptions.ConnectionDoesNotExistError)):
                await asyncio.wait_for(sleeping[1], 10)
            await wait_for(pilot, lambda: any(
                f"pg_terminate_backend({pid1}) sent" in n.text
                for n in desk.book.get(incident.id).notes), 10, "journaled")
            notes = [n.text for n in desk.book.get(incident.id).notes]
            assert len(notes) == 2  # the refused and declined ones left no trace
            assert pg_server.admin(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid1}") \
                == "0"
    finally:
        for task in sleeping:
            task.cancel()
        for w in workers:
            w.terminate()


async def test_redis_client_kill_confirmed_and_journaled(ui_env: None) -> None:
    from console.engine.config.schema import RedisTarget
    from tests.redisserver import RedisServer

    with RedisServer() as server:
        victim = server.admin()
        victim.client_setname("opsc-victim")
        victim_id = victim.client_id()
        settings = Settings(targets=[RedisTarget(
            name="cache", url=server.url, allow_actions=True,
            actions_url=server.url + "/0?client_name=actions")])
        app = OpsConsoleApp(settings=settings, history=False, poll=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_started(pilot)
            desk = await app.runtime.open_desk()
            incident = await desk.open("cache clients stuck", "P2")
            state = app.scheduler._states["cache"]
            app.scheduler.record(state, await state.probe.check())
            app.push_screen(DetailScreen("cache"))
            await pilot.pause()
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(app.screen, DatabaseScreen), 5, "drill")
            screen: Any = app.screen
            await pilot.press("c")  # no "cancel" for Redis
            await pilot.pause()
            assert isinstance(app.screen, DatabaseScreen)
            await pilot.press("5")
            await wait_for(pilot, lambda: "CLIENTS" in screen_text(app), 5, "clients")
            await wait_for(pilot, lambda: any(r["name"] == "opsc-victim" for r in screen._rows),
                           5, "the client listed")
            index = [r["name"] for r in screen._rows].index("opsc-victim")
            screen.query_one("#db-table").move_cursor(row=index)
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmAction), 5, "confirm")
            assert str(app.screen.query_one("#confirm-text").render()).startswith(
                f"Kill (CLIENT KILL) client id {victim_id} opsc-victim from 127.0.0.1:")
            await pilot.press("y")
            await wait_for(pilot, lambda: any(
                f"CLIENT KILL ID {victim_id} done" in n.text
                for n in desk.book.get(incident.id).notes), 10, "journaled")
            with server.admin() as admin:
                assert "opsc-victim" not in {c["name"] for c in admin.client_list()}
        victim.close()
