"""The PostgreSQL probe against real servers and real faults: deadlines, restarts, secrets.

Servers used: the machine's PostgreSQL (127.0.0.1:5432, trust auth, db `test`) for read-only
checks, a private cluster (tests/pgserver.py) for restarts and password authentication, and
in-process TCP fault servers (accept-and-silent; handshake-then-silent, the asyncpg#1326
shape) for deadlines. Nothing here mocks the library or the server.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import asyncpg
import pytest

from console.engine.config.schema import PostgresTarget
from console.engine.model import CheckResult, Status
from console.engine.probes.postgres import METRICS, PostgresProbe, statement_timeout_ms
from tests.pgserver import (  # noqa: F401  (the fixtures are used by name)
    PASSWORD,
    PgServer,
    free_port,
    pg_server_fixture,
    pg_server_session_fixture,
)
from tests.tcpfaults import (
    FaultServer,
    Silent,
    assert_no_secret,
    client_sockets_to,
    other_tasks,
    settle,
)

MACHINE_DSN = "postgresql://postgres@127.0.0.1:5432/test"
FAKE_SECRET = "Sup3r-s3cret:pw@x/%40ü"
MARGIN = 0.25  # CI-safe allowance over the 0.1 s contract on a loaded 2-core machine


def target(dsn: str, *, timeout: float = 2.0, interval: float = 5.0) -> PostgresTarget:
    return PostgresTarget(name="pg-test", dsn=dsn, timeout=timeout, interval=interval)


# -- in-process fault servers ------------------------------------------------------------

class _HandshakeThenSilent(Silent):
    """Completes the PostgreSQL startup (trust), then never answers a query.

    A CancelRequest connection is accepted and left hanging, as a black-holed server would:
    asyncpg waits on it with no timeout (asyncpg#1326), so only terminate() gets out.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.buf = b""
        self.started = False

    def data_received(self, data: bytes) -> None:
        if self.started:
            return
        self.buf += data
        if len(self.buf) < 8:
            return
        length, code = struct.unpack("!ii", self.buf[:8])
        if len(self.buf) < length:
            return
        self.started = True
        if code == 80877102:  # CancelRequest
            self.server.cancel_requests += 1
            return
        out = [b"R" + struct.pack("!ii", 8, 0)]  # AuthenticationOk
        for k, v in (("server_version", "15.0"), ("server_encoding", "UTF8"),
                     ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                     ("integer_datetimes", "on"), ("standard_conforming_strings", "on")):
            body = k.encode() + b"\0" + v.encode() + b"\0"
            out.append(b"S" + struct.pack("!i", 4 + len(body)) + body)
        out.append(b"K" + struct.pack("!iii", 12, 4242, 777))
        out.append(b"Z" + struct.pack("!i", 5) + b"I")
        self.transport.write(b"".join(out))  # type: ignore[attr-defined]


# -- the machine's server ----------------------------------------------------------------

async def test_up_with_sane_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    # Trust auth ignores the password, but it must still never surface anywhere.
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", FAKE_SECRET)
    dsn = "postgresql://postgres:${OPSCONSOLE_T_PG_PW}@127.0.0.1:5432/test"
    probe = PostgresProbe(target(dsn))
    try:
        first = await probe.check()
        assert first.status is Status.UP, first.error
        assert first.error is None
        assert (first.kind, first.target) == ("postgres", "pg-test")
        m = first.metrics
        assert 0 < first.latency_ms < 2000
        assert m["latency_ms"] == first.latency_ms
        admin = await asyncpg.connect(MACHINE_DSN, timeout=5)
        try:
            max_conn = float(await admin.fetchval("SHOW max_connections"))
            reserved = float(await admin.fetchval("SHOW superuser_reserved_connections"))
            for _ in range(5):  # committed transactions the probe should count
                await admin.execute("SELECT count(*) FROM pg_class")
            await admin.execute("SELECT pg_stat_force_next_flush()")
            await admin.execute("SELECT 1")  # the forced flush happens at transaction end
        finally:
            await admin.close()
        assert m["max_connections"] == max_conn
        assert 1 <= m["connections_total"] <= max_conn
        # Measured against what an application may use, as the server counts it (15 has
        # no reserved_connections).
        assert m["connections_reserved"] == reserved
        assert m["connections_usable"] == max_conn - reserved
        assert m["pool_usage_pct"] == pytest.approx(
            m["connections_total"] / (max_conn - reserved) * 100)
        for key in ("connections_active", "connections_idle_in_tx", "connections_waiting"):
            assert 0 <= m[key] <= m["connections_total"]
        assert m["xact_total"] >= m["rollbacks_total"] >= 0
        assert m["deadlocks_total"] >= 0
        assert "cache_hit_pct" not in m  # no previous poll to take a delta from

        second = first
        for _ in range(20):  # bounded: stats reach the view within about a second
            await asyncio.sleep(0.1)
            second = await probe.check()
            if second.metrics["xact_total"] >= m["xact_total"] + 5:
                break
        assert second.status is Status.UP
        assert second.metrics["xact_total"] >= m["xact_total"] + 5
        assert "cache_hit_pct" in second.metrics  # pg_class scans read (cached) blocks
        assert 0 <= second.metrics["cache_hit_pct"] <= 100
        assert set(second.metrics) == set(METRICS)  # every documented metric, nothing else
        assert_no_secret(FAKE_SECRET, probe, first, second)
    finally:
        await probe.aclose()


def test_cache_hit_pct_comes_from_deltas_between_polls() -> None:
    """Arithmetic only: a row shaped like the stats query's result."""
    probe = PostgresProbe(target(MACHINE_DSN))

    def row(hit: float, read: float) -> dict[str, float]:
        return {"total": 10, "active": 1, "idle_in_tx": 0, "waiting": 0,
                "max_connections": 100, "xact_commit": 5, "xact_rollback": 1,
                "blks_hit": hit, "blks_read": read, "deadlocks": 0}

    assert "cache_hit_pct" not in probe._metrics(row(1_000_000, 500_000), 1.0)  # 66 % lifetime
    assert probe._metrics(row(1_000_090, 500_010), 1.0)["cache_hit_pct"] == pytest.approx(90)
    assert "cache_hit_pct" not in probe._metrics(row(1_000_090, 500_010), 1.0)  # no lookups
    assert "cache_hit_pct" not in probe._metrics(row(10, 0), 1.0)  # counters reset
    assert probe._metrics(row(20, 10), 1.0)["cache_hit_pct"] == pytest.approx(50)
    m = probe._metrics(row(20, 10), 1.0)
    assert (m["xact_total"], m["rollbacks_total"], m["pool_usage_pct"]) == (6, 1, 10)


async def test_session_is_read_only_named_and_kept_alive() -> None:
    probe = PostgresProbe(target(MACHINE_DSN, timeout=2.0, interval=10.0))
    try:
        assert (await probe.check()).status is Status.UP
        conn = probe._conn
        assert conn is not None
        with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TABLE opsconsole_probe_must_not_write (i int)")
        settings = dict(await conn.fetch(
            "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
            ["statement_timeout", "lock_timeout", "default_transaction_read_only"]))
        assert statement_timeout_ms(probe.target) == 1000  # min(1 s, interval/2, 0.8 timeout)
        assert settings == {"statement_timeout": "1000", "lock_timeout": "100",
                            "default_transaction_read_only": "on"}
        sock = conn._transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        pid = conn.get_server_pid()
        admin = await asyncpg.connect(MACHINE_DSN, timeout=5)
        try:
            name = await admin.fetchval(
                "SELECT application_name FROM pg_stat_activity WHERE pid = $1", pid)
        finally:
            await admin.close()
        assert name == "opsconsole"
        assert (await probe.check()).status is Status.UP  # the failed write did not break it
    finally:
        await probe.aclose()


async def test_missing_database_is_a_clear_message() -> None:
    probe = PostgresProbe(target("postgresql://postgres@127.0.0.1:5432/opsconsole_no_such_db"))
    try:
        r = await probe.check()
    finally:
        await probe.aclose()
    assert r.status is Status.DOWN
    assert r.latency_ms is None
    assert r.metrics == {}
    assert r.error == 'database "opsconsole_no_such_db" does not exist'


async def test_missing_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSCONSOLE_T_UNSET_DSN", raising=False)
    probe = PostgresProbe(target("${OPSCONSOLE_T_UNSET_DSN}"))
    r = await probe.check()
    await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error == "environment variable OPSCONSOLE_T_UNSET_DSN is not set"


# -- faults ------------------------------------------------------------------------------

async def test_refused_port_is_down_fast() -> None:
    port = free_port()
    probe = PostgresProbe(target(f"postgresql://postgres@127.0.0.1:{port}/test"))
    t0 = time.monotonic()
    r = await probe.check()
    elapsed = time.monotonic() - t0
    await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error == f"connection refused by 127.0.0.1:{port}"
    assert elapsed < 1.0


async def test_black_holed_port_is_down_within_the_deadline_and_leaks_nothing() -> None:
    timeout = 0.5
    before = other_tasks()
    async with FaultServer(Silent) as bh:
        probe = PostgresProbe(target(f"postgresql://postgres@127.0.0.1:{bh.port}/test",
                                     timeout=timeout))
        for _ in range(3):
            t0 = time.monotonic()
            r = await probe.check()
            overshoot = time.monotonic() - t0 - timeout
            print(f"black hole: returned {overshoot * 1000:+.1f} ms after the deadline")
            assert r.status is Status.DOWN
            assert r.error == f"timed out after 0.5s connecting to 127.0.0.1:{bh.port}"
            assert -0.01 <= overshoot < MARGIN
        await probe.aclose()
        await settle()
        assert bh.accepted == 3  # one connection per check: no hidden retries
        assert not bh.open  # the server saw every connection closed
        assert client_sockets_to(bh.port) == []
    assert other_tasks() - before == set()


async def test_server_silent_after_handshake_never_hangs_the_cancel_path() -> None:
    """asyncpg#1326: a cancelled query opens a CancelRequest connection with no timeout."""
    timeout = 0.5
    before = other_tasks()
    async with FaultServer(_HandshakeThenSilent) as fake:
        probe = PostgresProbe(target(f"postgresql://postgres@127.0.0.1:{fake.port}/test",
                                     timeout=timeout))
        for _ in range(2):
            t0 = time.monotonic()
            r = await probe.check()
            overshoot = time.monotonic() - t0 - timeout
            print(f"stalled query: returned {overshoot * 1000:+.1f} ms after the deadline")
            assert r.status is Status.DOWN
            assert r.error == "timed out after 0.5s waiting for the stats query"
            assert overshoot < MARGIN
        await probe.aclose()
        await settle()
        assert not fake.open
        assert client_sockets_to(fake.port) == []
    assert other_tasks() - before == set()


async def test_cancelling_a_check_propagates_and_cleans_up() -> None:
    before = other_tasks()
    async with FaultServer(_HandshakeThenSilent) as fake:
        probe = PostgresProbe(target(f"postgresql://postgres@127.0.0.1:{fake.port}/test",
                                     timeout=5.0))
        task = asyncio.create_task(probe.check())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert probe._conn is None
        await probe.aclose()
        await settle()
        assert not fake.open
    assert other_tasks() - before == set()


# -- a private server: restarts, passwords, privileges, load -----------------------------

def opsconsole_backends(server: PgServer) -> int:
    return int(server.admin(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'opsconsole'"))


async def test_server_stopped_and_started_again(pg_server: PgServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)
    probe = PostgresProbe(target(pg_server.dsn(password="${OPSCONSOLE_T_PG_PW}")))
    try:
        results = [await probe.check()]
        assert results[0].status is Status.UP, results[0].error
        pg_server.stop()
        results.append(down := await probe.check())
        assert down.status is Status.DOWN
        assert down.error == f"connection refused by 127.0.0.1:{pg_server.port}"
        pg_server.start()
        results.append(up := await probe.check())
        assert up.status is Status.UP, up.error
        for _ in range(5):
            results.append(await probe.check())
        assert all(r.status is Status.UP for r in results[2:])
        assert opsconsole_backends(pg_server) == 1  # reconnects replaced, never added
        assert_no_secret(PASSWORD, probe, *results)
    finally:
        await probe.aclose()
    await settle()
    assert opsconsole_backends(pg_server) == 0


async def test_restart_between_checks_is_not_a_false_down(pg_server: PgServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)
    probe = PostgresProbe(target(pg_server.dsn(password="${OPSCONSOLE_T_PG_PW}")))
    try:
        assert (await probe.check()).status is Status.UP
        old_pid = probe._conn.get_server_pid()
        # Blocking calls: the loop does not run, so the probe cannot notice the restart
        # before its next query, which fails on the stale connection and is retried once.
        pg_server.stop()
        pg_server.start()
        assert not probe._conn.is_closed()  # stale, and the probe cannot know it yet
        r = await probe.check()
        assert r.status is Status.UP, r.error
        assert probe._conn.get_server_pid() != old_pid
        assert opsconsole_backends(pg_server) == 1
    finally:
        await probe.aclose()


async def test_wrong_password_and_secret_never_shown(pg_server: PgServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "Wr0ng-pw:@/%40ß"
    monkeypatch.setenv("OPSCONSOLE_T_PG_BAD", wrong)
    probe = PostgresProbe(target(pg_server.dsn(password="${OPSCONSOLE_T_PG_BAD}")))
    try:
        r = await probe.check()
    finally:
        await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error == 'password authentication failed for user "postgres"'
    assert_no_secret(wrong, probe, r)

    # The whole DSN in one variable: the password inside it must be masked as well.
    monkeypatch.setenv("OPSCONSOLE_T_PG_DSN", pg_server.dsn(password=PASSWORD))
    probe = PostgresProbe(target("${OPSCONSOLE_T_PG_DSN}"))
    try:
        ok = await probe.check()
    finally:
        await probe.aclose()
    assert ok.status is Status.UP, ok.error
    assert_no_secret(PASSWORD, probe, ok)


async def test_insufficient_privilege_and_unknown_role(pg_server: PgServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pg_server.admin("DROP DATABASE IF EXISTS opsc_locked")
    pg_server.admin("CREATE DATABASE opsc_locked")
    pg_server.admin("REVOKE CONNECT ON DATABASE opsc_locked FROM PUBLIC")
    pg_server.admin("DROP ROLE IF EXISTS opsc_monitor")
    pg_server.admin("CREATE ROLE opsc_monitor LOGIN PASSWORD 'monitor-pw-123'")
    monkeypatch.setenv("OPSCONSOLE_T_MON_PW", "monitor-pw-123")
    dsn = pg_server.dsn(user="opsc_monitor", password="${OPSCONSOLE_T_MON_PW}", db="opsc_locked")
    probe = PostgresProbe(target(dsn))
    try:
        r = await probe.check()
    finally:
        await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error is not None
    assert r.error.startswith(
        'insufficient privilege: permission denied for database "opsc_locked"')
    assert_no_secret("monitor-pw-123", probe, r)

    monkeypatch.setenv("OPSCONSOLE_T_NOBODY_PW", "x-pw-x")
    probe = PostgresProbe(target(pg_server.dsn(user="opsc_nobody",
                                               password="${OPSCONSOLE_T_NOBODY_PW}")))
    try:
        r = await probe.check()
    finally:
        await probe.aclose()
    assert r.status is Status.DOWN
    # scram hides whether the role exists: the server says the password failed.
    assert r.error == 'password authentication failed for user "opsc_nobody"'


async def test_degraded_when_connections_near_max(pg_server: PgServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)
    probe = PostgresProbe(target(pg_server.dsn(password="${OPSCONSOLE_T_PG_PW}")))
    hogs: list[asyncpg.Connection] = []
    try:
        assert (await probe.check()).status is Status.UP
        # max_connections=20 on the private server, 3 of them reserved for superusers
        # (superuser_reserved_connections' default): probe + 13 = 14 of 17 -> 82 %.
        assert pg_server.admin("SHOW superuser_reserved_connections") == "3"
        for _ in range(13):
            hogs.append(await asyncpg.connect(host=str(pg_server.sockdir), port=pg_server.port,
                                              user="postgres", database="postgres", timeout=5))
        r = await probe.check()
        assert r.status is Status.DEGRADED
        assert r.metrics["connections_total"] == 14
        assert r.metrics["connections_usable"] == 17
        assert r.metrics["pool_usage_pct"] == pytest.approx(14 / 17 * 100)
        assert r.reasons[0].startswith(
            "connections at 82% of the 17 applications may use (14 of max_connections 20, "
            "3 reserved for superusers); roles: postgres 14; applications: ")
    finally:
        await asyncio.gather(*(h.close() for h in hogs))
        hogs.clear()
    try:
        assert (await probe.check()).status is Status.UP
    finally:
        await probe.aclose()


async def test_tls_is_explicit_and_verified(pg_server: PgServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The DSN's sslmode is used as written; without one, loopback is plaintext (no 'prefer')."""
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)

    async def check(query: str) -> tuple[CheckResult, bool | None]:
        probe = PostgresProbe(target(pg_server.dsn(password="${OPSCONSOLE_T_PG_PW}",
                                                   query=query)))
        try:
            r = await probe.check()
            tls = None
            if r.status is Status.UP:
                tls = await probe._conn.fetchval(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert_no_secret(PASSWORD, probe, r)
            return r, tls
        finally:
            await probe.aclose()

    where = f"127.0.0.1:{pg_server.port}"
    assert await check("") == (ANY_UP, False)
    assert await check("sslmode=require") == (ANY_UP, True)
    assert await check(f"sslmode=verify-ca&sslrootcert={pg_server.ca_file}") == (ANY_UP, True)

    r, _ = await check(f"sslmode=verify-full&sslrootcert={pg_server.ca_file}")
    assert r.status is Status.DOWN
    assert r.error == (f"TLS certificate verification failed for {where}: "
                       "IP address mismatch, certificate is not valid for '127.0.0.1'.")
    r, _ = await check(f"sslmode=verify-ca&sslrootcert={pg_server.other_ca_file}")
    assert r.status is Status.DOWN
    assert r.error == (f"TLS certificate verification failed for {where}: "
                       "unable to get local issuer certificate")
    r, _ = await check("sslmode=verify-full&sslrootcert=/nonexistent/opsconsole-ca.pem")
    assert r.status is Status.DOWN
    assert r.error == "cannot read /nonexistent/opsconsole-ca.pem: No such file or directory"


class _AnyUp:
    """Equal to any UP result, so (result, tls) pairs compare in one assert."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CheckResult) and other.status is Status.UP

    def __repr__(self) -> str:
        return "<any UP result>"


ANY_UP = _AnyUp()
