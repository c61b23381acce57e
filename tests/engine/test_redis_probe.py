"""The Redis probe against real servers and real faults: deadlines, restarts, auth, secrets.

Servers used: the machine's Redis (127.0.0.1:6379) for a read-only check, private
`redis-server` processes (tests/redisserver.py) for exact counters, restarts and passwords,
and in-process TCP fault servers (accept-and-silent; a server that answers DENIED like
protected mode). Nothing here mocks redis-py or the server.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import pytest
from redis.backoff import NoBackoff

from console.engine.config.schema import RedisTarget
from console.engine.model import Status
from console.engine.probes.catalog import REDIS_METRICS as METRICS
from console.engine.probes.redis import CLIENT_NAME, RedisProbe
from tests.redisserver import RedisServer, free_port, redis_server_fixture  # noqa: F401
from tests.tcpfaults import (
    FaultServer,
    Silent,
    assert_no_secret,
    client_sockets_to,
    other_tasks,
    settle,
)

MARGIN = 0.25  # CI-safe allowance over the 0.1 s contract on a loaded 2-core machine
SECRET = "r3dis-Pw:@/%40ü&x=1"


def target(url: str, *, timeout: float = 2.0) -> RedisTarget:
    return RedisTarget(name="redis-test", url=url, timeout=timeout, interval=5.0)


class _ProtectedMode(Silent):
    """What Redis in protected mode sends to a non-loopback client, then hangs up.

    Over a real network the DENIED line and the FIN reach the client before its first command
    reaches the server. Here client and server share one loop on loopback, so the server
    half-closes first and closes fully once the client's command has arrived, which gives
    the same order (closing with unread data would send an RST that a remote client never
    sees this early).
    """

    DENIED = (b"-DENIED Redis is running in protected mode because protected mode is enabled "
              b"and no password is set for the default user. In this mode connections are "
              b"only accepted from the loopback interface.\r\n")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        transport.write(self.DENIED)  # type: ignore[attr-defined]
        transport.write_eof()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.transport.close()


# -- healthy servers -----------------------------------------------------------------------

async def test_machine_redis_up_with_sane_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_REDIS_URL", "redis://127.0.0.1:6379/0")
    probe = RedisProbe(target("${OPSCONSOLE_T_REDIS_URL}"))
    try:
        r = await probe.check()
        assert r.status is Status.UP, r.error
        assert r.error is None
        assert (r.kind, r.target) == ("redis", "redis-test")
        m = r.metrics
        assert 0 < r.latency_ms < 2000
        assert m["latency_ms"] == r.latency_ms
        assert m["used_memory_bytes"] > 0
        assert m["maxmemory_bytes"] >= 0
        assert m["fragmentation_ratio"] > 0
        assert m["connected_clients"] >= 1
        assert m["blocked_clients"] >= 0
        assert m["keys_total"] >= 0
        for key in ("keyspace_hits_total", "keyspace_misses_total", "evicted_keys_total",
                    "expired_keys_total"):
            assert m[key] >= 0
        assert "hit_rate_pct" not in m  # no previous poll to take a delta from
        assert "ops_per_sec" not in m  # a rate over the interval: needs a previous check
        assert all(isinstance(v, float) for v in m.values())
        # A rate needs an interval: checks less than 1 ms apart report none (on this
        # machine the second check once came back that fast). The sleep makes the interval
        # the rate is taken over; it waits for nothing to happen.
        await asyncio.sleep(0.01)
        second = await probe.check()
        assert second.metrics["ops_per_sec"] >= 0
    finally:
        await probe.aclose()


async def test_connection_settings_disable_library_retries(redis_server: RedisServer) -> None:
    # Query-string options must not loosen the probe's own limits.
    probe = RedisProbe(target(redis_server.url + "/0?socket_timeout=60&health_check_interval=5",
                              timeout=1.5))
    try:
        assert (await probe.check()).status is Status.UP
        conn = probe._client.connection
        assert conn.retry.get_retries() == 0
        assert isinstance(conn.retry._backoff, NoBackoff)
        assert conn.socket_timeout == 1.5
        assert conn.socket_connect_timeout == 1.5
        assert conn.health_check_interval == 0
        assert conn.protocol == 2
        assert conn.socket_keepalive is True
        assert redis_server.clients_named(CLIENT_NAME) == 1
    finally:
        await probe.aclose()
    assert redis_server.clients_named(CLIENT_NAME) == 0


async def test_hit_rate_and_counters_from_deltas(monkeypatch: pytest.MonkeyPatch) -> None:
    with RedisServer("--maxmemory", "64mb") as server:
        monkeypatch.setenv("OPSCONSOLE_T_REDIS_URL", server.url + "/3")
        data = server.admin(db=3)  # a database of its own: keys_total is exact
        for i in range(5):
            data.set(f"hr:{i}", "x")
        probe = RedisProbe(target("${OPSCONSOLE_T_REDIS_URL}"))
        try:
            first = await probe.check()
            assert first.status is Status.UP, first.error
            assert first.metrics["keys_total"] == 5
            assert first.metrics["maxmemory_bytes"] == 64 * 1024 * 1024
            assert first.metrics["memory_pct"] == pytest.approx(
                first.metrics["used_memory_bytes"] / (64 * 1024 * 1024) * 100)
            hits, misses = 30, 10
            for i in range(hits):
                assert data.get(f"hr:{i % 5}") == "x"
            for i in range(misses):
                assert data.get(f"hr:missing:{i}") is None
            second = await probe.check()
            assert second.metrics["hit_rate_pct"] == pytest.approx(hits / (hits + misses) * 100)
            assert second.metrics["keyspace_hits_total"] - first.metrics["keyspace_hits_total"] \
                == hits
            assert second.metrics["keyspace_misses_total"] \
                - first.metrics["keyspace_misses_total"] == misses

            third = await probe.check()  # PING and INFO are not lookups
            assert "hit_rate_pct" not in third.metrics

            data.set("hr:short", "x", px=1)
            await asyncio.sleep(0.02)
            assert data.get("hr:short") is None  # lazily expired on access
            fourth = await probe.check()
            assert fourth.metrics["expired_keys_total"] \
                == third.metrics["expired_keys_total"] + 1
            assert fourth.metrics["hit_rate_pct"] == 0.0
            assert fourth.metrics["keys_total"] == 5
            # Every documented metric, nothing else (keys_db<N> is per non-empty database).
            assert set(fourth.metrics) == set(METRICS) | {"keys_db3"}
            assert fourth.metrics["keys_db3"] == 5
        finally:
            await probe.aclose()
            data.close()


# -- faults --------------------------------------------------------------------------------

async def test_refused_port_is_down_fast() -> None:
    port = free_port()
    probe = RedisProbe(target(f"redis://127.0.0.1:{port}"))
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
        probe = RedisProbe(target(f"redis://127.0.0.1:{bh.port}", timeout=timeout))
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
        assert bh.accepted == 3  # one connection per check: the library does not retry
        assert not bh.open
        assert client_sockets_to(bh.port) == []
    assert other_tasks() - before == set()


async def test_protected_mode_is_a_clear_message() -> None:
    async with FaultServer(_ProtectedMode) as fake:
        probe = RedisProbe(target(f"redis://127.0.0.1:{fake.port}"))
        try:
            r = await probe.check()
        finally:
            await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error == ("Redis refused the connection: protected mode is on (DENIED); "
                       "set a password on the server or allow this client")


async def test_missing_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSCONSOLE_T_UNSET_URL", raising=False)
    probe = RedisProbe(target("${OPSCONSOLE_T_UNSET_URL}"))
    r = await probe.check()
    await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error == "environment variable OPSCONSOLE_T_UNSET_URL is not set"


async def test_invalid_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_BAD_URL", "http://127.0.0.1:6379")
    probe = RedisProbe(target("${OPSCONSOLE_T_BAD_URL}"))
    r = await probe.check()
    await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error is not None
    assert r.error.startswith("invalid Redis URL: Redis URL must specify one of")


async def test_server_stopped_and_started_again(redis_server: RedisServer) -> None:
    probe = RedisProbe(target(redis_server.url))
    try:
        assert (await probe.check()).status is Status.UP
        redis_server.stop()
        down = await probe.check()
        assert down.status is Status.DOWN
        assert down.error == f"connection refused by 127.0.0.1:{redis_server.port}"
        redis_server.start()
        up = await probe.check()
        assert up.status is Status.UP, up.error
        for _ in range(5):
            assert (await probe.check()).status is Status.UP
        assert redis_server.clients_named(CLIENT_NAME) == 1  # replaced, never added
    finally:
        await probe.aclose()
    assert redis_server.clients_named(CLIENT_NAME) == 0


async def test_restart_between_checks_is_not_a_false_down(redis_server: RedisServer) -> None:
    probe = RedisProbe(target(redis_server.url))
    try:
        first = await probe.check()
        assert first.status is Status.UP
        # Blocking restart: the loop does not run, so the probe's socket is stale and its next
        # PING fails; the single retry on a fresh socket makes the check UP.
        redis_server.restart()
        assert probe._client.connection.is_connected
        r = await probe.check()
        assert r.status is Status.UP, r.error
        assert redis_server.clients_named(CLIENT_NAME) == 1
    finally:
        await probe.aclose()


async def test_password_required(monkeypatch: pytest.MonkeyPatch) -> None:
    with RedisServer(password=SECRET) as server:
        probe = RedisProbe(target(server.url))
        try:
            noauth = await probe.check()
        finally:
            await probe.aclose()
        assert noauth.status is Status.DOWN
        assert noauth.error == "Redis requires a password (NOAUTH)"

        monkeypatch.setenv("OPSCONSOLE_T_REDIS_PW", "not-" + SECRET)
        probe = RedisProbe(target(f"redis://:${{OPSCONSOLE_T_REDIS_PW}}@127.0.0.1:{server.port}"))
        try:
            wrong = await probe.check()
        finally:
            await probe.aclose()
        assert wrong.status is Status.DOWN
        assert wrong.error == "authentication failed: wrong password or username (WRONGPASS)"
        assert_no_secret("not-" + SECRET, probe, wrong)

        monkeypatch.setenv("OPSCONSOLE_T_REDIS_PW", SECRET)
        probe = RedisProbe(target(f"redis://:${{OPSCONSOLE_T_REDIS_PW}}@127.0.0.1:{server.port}/1"))
        try:
            ok = [await probe.check(), await probe.check()]
            assert server.clients_named(CLIENT_NAME) == 1
        finally:
            await probe.aclose()
        assert all(r.status is Status.UP for r in ok), ok[0].error
        assert_no_secret(SECRET, probe, noauth, wrong, *ok)

        # The whole URL in one variable: the password inside it is masked too.
        monkeypatch.setenv("OPSCONSOLE_T_REDIS_URL",
                           f"redis://:{quote(SECRET, safe='')}@127.0.0.1:{server.port}/0")
        probe = RedisProbe(target("${OPSCONSOLE_T_REDIS_URL}"))
        try:
            whole = await probe.check()
        finally:
            await probe.aclose()
        assert whole.status is Status.UP, whole.error
        assert_no_secret(SECRET, probe, whole)


async def test_cancelling_a_check_propagates_and_cleans_up() -> None:
    before = other_tasks()
    async with FaultServer(Silent) as bh:
        probe = RedisProbe(target(f"redis://127.0.0.1:{bh.port}", timeout=5.0))
        task = asyncio.create_task(probe.check())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await probe.aclose()
        await settle()
        assert not bh.open
        assert client_sockets_to(bh.port) == []
    assert other_tasks() - before == set()


async def test_password_given_but_server_has_none(redis_server: RedisServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_REDIS_PW", SECRET)
    probe = RedisProbe(target(f"redis://:${{OPSCONSOLE_T_REDIS_PW}}@127.0.0.1:{redis_server.port}"))
    try:
        r = await probe.check()
    finally:
        await probe.aclose()
    assert r.status is Status.DOWN
    assert r.error == "a password was given but the server has none configured"
    assert_no_secret(SECRET, probe, r)


# -- deeper metrics: rates, keyspace, slowlog, replication, persistence, memory --------------

async def test_eviction_and_expiry_rates_and_keys_per_db(redis_server: RedisServer) -> None:
    admin = redis_server.admin(db=0)
    other = redis_server.admin(db=5)
    probe = RedisProbe(target(redis_server.url))
    try:
        other.mset({f"k{i}": "v" for i in range(7)})
        t1a = time.monotonic()
        first = await probe.check()
        t1b = time.monotonic()
        assert first.status is Status.UP, first.error
        assert "evicted_per_s" not in first.metrics  # no previous check to take a delta from
        assert first.metrics["keys_db5"] == 7
        assert "keys_db0" not in first.metrics
        assert first.details["keyspace"]["db5"]["keys"] == 7
        for i in range(3):  # three keys that expire, lazily removed on access (before any eviction)
            admin.set(f"exp:{i}", "x", px=1)
        await asyncio.sleep(0.02)
        assert all(admin.get(f"exp:{i}") is None for i in range(3))
        # Evictions: a tiny maxmemory with a random-eviction policy and a burst of writes.
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "allkeys-random")
        admin.config_set("maxmemory", str(used + 200_000))
        pipe = admin.pipeline(transaction=False)
        for i in range(2000):
            pipe.set(f"big:{i}", "x" * 1000)
        pipe.execute()
        t2a = time.monotonic()
        second = await probe.check()
        t2b = time.monotonic()
        m1, m2 = first.metrics, second.metrics
        evicted = m2["evicted_keys_total"] - m1["evicted_keys_total"]
        expired = m2["expired_keys_total"] - m1["expired_keys_total"]
        assert evicted > 0
        assert expired == 3
        # The rate is delta / time between the two checks, bounded by the outer and inner spans.
        for name, delta in (("evicted_per_s", evicted), ("expired_per_s", expired)):
            assert delta / (t2b - t1a) <= m2[name] <= delta / (t2a - t1b), name
    finally:
        await probe.aclose()
        admin.close()
        other.close()


async def test_degraded_when_memory_above_90_pct_of_maxmemory(redis_server: RedisServer) -> None:
    admin = redis_server.admin()
    probe = RedisProbe(target(redis_server.url))
    try:
        assert (await probe.check()).status is Status.UP  # maxmemory 0: no limit, no pct
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", str(int(used / 0.95)))
        r = await probe.check()
        assert r.status is Status.DEGRADED
        assert r.metrics["memory_pct"] > 90
        assert len(r.reasons) == 1
        assert r.reasons[0].startswith("memory at 9")
        admin.config_set("maxmemory", str(used * 4))
        r = await probe.check()
        assert r.status is Status.UP
        assert r.reasons == ()
        assert r.metrics["memory_pct"] < 30
    finally:
        await probe.aclose()
        admin.close()


async def test_slowlog_reports_only_new_entries(redis_server: RedisServer) -> None:
    admin = redis_server.admin()
    probe = RedisProbe(target(redis_server.url))
    try:
        admin.config_set("slowlog-log-slower-than", "0")  # log every command
        admin.set("before:first", "x")
        first = await probe.check()
        assert "slowlog_new" not in first.metrics  # the first check sets the baseline
        assert not any(e["new"] for e in first.details["slowlog"])
        admin.set("marker:one", "x")
        admin.config_get("requirepass")  # arguments of CONFIG are never shown
        second = await probe.check()
        truth = admin.slowlog_get(128)
        baseline = max(e["id"] for e in first.details["slowlog"])
        newest_seen = max(e["id"] for e in second.details["slowlog"])
        expected = sum(1 for e in truth if baseline < e["id"] <= newest_seen)
        assert second.metrics["slowlog_new"] == expected >= 2
        new_cmds = [e["command"] for e in second.details["slowlog"] if e["new"]]
        assert "SET marker:one …(+1 args)" in new_cmds  # values are never shown
        assert not any(c.startswith("SET before:first") for c in new_cmds)
        assert "CONFIG …(+2 args)" in new_cmds
        assert not any("requirepass" in c for c in new_cmds)
        admin.slowlog_reset()  # ids restart: everything listed afterwards is new
        admin.set("after:reset", "x")
        third = await probe.check()
        assert "SET after:reset …(+1 args)" in [
            e["command"] for e in third.details["slowlog"] if e["new"]]
    finally:
        await probe.aclose()
        admin.close()


async def test_replication_role_link_and_persistence() -> None:
    # No diskless-sync delay (5 s by default in Redis 7): the replica syncs at once. The
    # AOF is on the master (killed below), not the replica: a replica stopped during its
    # post-sync AOF rewrite took 10 s to exit.
    with RedisServer("--repl-diskless-sync-delay", "0", "--appendonly", "yes") as master, \
            RedisServer() as replica:
        with replica.admin() as r:
            r.execute_command("REPLICAOF", "127.0.0.1", str(master.port))
        probe_m, probe_r = RedisProbe(target(master.url)), RedisProbe(target(replica.url))
        try:
            deadline = time.monotonic() + 15  # generous: a loaded machine; ~0.1 s idle
            while True:
                rr = await probe_r.check()
                if rr.metrics.get("master_link_up") == 1.0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            assert rr.status is Status.UP, rr.reasons
            assert rr.details["replication"]["role"] == "slave"
            assert rr.details["replication"]["link_status"] == "up"
            assert rr.details["replication"]["master"] == f"127.0.0.1:{master.port}"
            assert rr.metrics["aof_enabled"] == 0.0
            assert rr.details["persistence"]["rdb_last_bgsave_status"] == "ok"
            rm = await probe_m.check()
            assert rm.details["replication"]["role"] == "master"
            assert rm.metrics["replicas_connected"] == 1
            assert rm.metrics["aof_enabled"] == 1.0
            assert rm.details["persistence"]["aof_last_write_status"] == "ok"
            assert rm.metrics["replica_lag_bytes"] >= 0
            assert rm.details["replication"]["replicas"][0]["port"] == str(replica.port)
            # Killed, as in a crash (a SIGTERM'd Redis 7 master first waits up to
            # shutdown-timeout, 10 s, for its replicas to catch up).
            assert master.proc is not None
            master.proc.kill()
            master.proc.wait(5)
            master.proc = None
            for _ in range(100):
                rr = await probe_r.check()
                if rr.status is Status.DEGRADED:
                    break
                await asyncio.sleep(0.05)
            assert rr.status is Status.DEGRADED
            assert rr.metrics["master_link_up"] == 0.0
            assert "replica: link to master is down" in rr.reasons
        finally:
            await probe_m.aclose()
            await probe_r.aclose()
