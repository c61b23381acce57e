"""Redis as a cache is judged, with the `redis-cli --stat` figures over the check interval
(issue 11, item 4), each compared with the INFO section, CLIENT LIST or MEMORY USAGE it
comes from, on private servers with maxmemory and eviction policies (tests/redisserver.py).

Rates are bounded the way tests/engine/test_redis_probe.py bounds them: the known delta over
the outer span (just before the first check to just after the second) and the inner span.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import pytest
import redis

from console.engine.alerting.rules import RuleSet, TargetInfo
from console.engine.config.rules import default_rules
from console.engine.config.schema import RedisTarget
from console.engine.model import CheckResult, Status
from console.engine.probes.redis import RedisProbe
from console.engine.storage.store import MetricStore
from tests.redisserver import RedisServer, redis_server_fixture  # noqa: F401


def target(url: str, **kw: Any) -> RedisTarget:
    return RedisTarget(name="cache", url=url, timeout=2.0, interval=5.0, **kw)


def rule_states(result: CheckResult) -> dict[str, str]:
    """The shipped rules on one real result, recorded for more than their `for`."""
    store = MetricStore()
    now = time.time()
    for t in (now - 400, now - 200, now - 60, now):
        for name, value in result.metrics.items():
            store.record(f"{result.target}:{name}", t, value)
    rules = RuleSet(default_rules(), [TargetInfo(result.target, "redis", 5.0)])
    return {e.rule.name: e.state for e in rules.evaluate(store, now)}


def fill_to_limit(admin: Any, policy: str, ttl: bool = False) -> None:
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory-policy", policy)
    admin.config_set("maxmemory", str(used + 300_000))
    pipe = admin.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"fill:{i}", "x" * 1000, ex=3600 if ttl else None)
    with contextlib.suppress(redis.exceptions.OutOfMemoryError):  # noeviction: writes fail
        pipe.execute()


async def test_an_evicting_cache_at_its_limit_is_healthy(redis_server: RedisServer) -> None:
    admin = redis_server.admin()
    probe = RedisProbe(target(redis_server.url))
    try:
        await probe.check()
        fill_to_limit(admin, "allkeys-lru")
        r = await probe.check()
        info = admin.info()
        assert r.status is Status.UP, r.reasons
        assert r.metrics["memory_pct"] > 90  # at its limit ...
        assert int(info["evicted_keys"]) > 0  # ... and evicting, as a cache does
        assert r.metrics["evicted_keys_total"] <= int(info["evicted_keys"])
        assert r.metrics["evicted_per_s"] > 0
        assert "memory_noeviction_pct" not in r.metrics
        assert r.details["memory"]["policy"] == info["maxmemory_policy"] == "allkeys-lru"
        assert r.details["memory"]["evicting"] is True
        assert r.details["memory"]["fragmentation_ratio"] == r.metrics["fragmentation_ratio"]
        assert any("evicting (allkeys-lru), as a cache at its limit does" in n
                   for n in r.details["notes"])
        states = rule_states(r)
        assert "memory-high" not in states  # a host rule now
        assert "redis-memory-full" not in states  # it may evict: the rule does not apply
    finally:
        await probe.aclose()
        admin.close()


@pytest.mark.parametrize(("policy", "ttl"), [("noeviction", False), ("volatile-lru", False)])
async def test_a_full_server_that_cannot_evict_is_the_alarm(redis_server: RedisServer,
                                                            policy: str, ttl: bool) -> None:
    """noeviction, or a volatile-* policy with no key that has a TTL: writes fail."""
    admin = redis_server.admin()
    probe = RedisProbe(target(redis_server.url))
    try:
        fill_to_limit(admin, policy, ttl)
        r = await probe.check()
        assert r.status is Status.DEGRADED
        assert r.metrics["memory_noeviction_pct"] == r.metrics["memory_pct"] > 90
        assert r.details["memory"]["evicting"] is False
        assert r.details["memory"]["keys_with_ttl"] == 0
        assert r.reasons[0].startswith("memory at ")
        assert f"with maxmemory-policy {policy} and nothing it may evict" in r.reasons[0]
        assert rule_states(r)["redis-memory-full"] == "fail"
    finally:
        await probe.aclose()
        admin.close()


async def test_rates_over_the_interval_like_redis_cli_stat(redis_server: RedisServer) -> None:
    """A burst, then idle: the rate is the burst over the interval, not Redis's own
    ~1.6 s sample (which is back to 0 by then)."""
    admin = redis_server.admin()
    data = redis_server.admin()
    data.ping()  # connected (and its handshake counted) before the first check
    probe = RedisProbe(target(redis_server.url))
    try:
        for i in range(5):
            data.set(f"k{i}", "v")
        t1a = time.monotonic()
        await probe.check()
        t1b = time.monotonic()
        n = 3000
        pipe = data.pipeline(transaction=False)
        for i in range(n - 40):
            pipe.set(f"burst:{i}", "x")
        for i in range(30):
            pipe.get(f"k{i % 5}")
        for i in range(10):
            pipe.get(f"missing:{i}")
        pipe.execute()
        await asyncio.sleep(1.8)  # idle longer than Redis's own ops sample window
        t2a = time.monotonic()
        r = await probe.check()
        t2b = time.monotonic()
        m = r.metrics
        for name, delta in (("ops_per_sec", n), ("hits_per_s", 30), ("misses_per_s", 10)):
            assert delta / (t2b - t1a) <= m[name] <= delta / (t2a - t1b), name
        assert int(admin.info("stats")["instantaneous_ops_per_sec"]) < m["ops_per_sec"] / 4
        assert m["hit_rate_pct"] == pytest.approx(75.0)

        # new connections, and connections refused at maxclients
        admin.config_set("maxclients", "6")
        before = admin.info("stats")
        extra: list[socket.socket] = []
        refused = 0
        for _ in range(8):  # raw sockets: one connection each, no client retries
            sock = socket.create_connection(("127.0.0.1", redis_server.port), timeout=5)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(256)
            if reply.startswith(b"+PONG"):
                extra.append(sock)
            else:
                assert b"max number of clients reached" in reply
                refused += 1
                sock.close()
        after = admin.info("stats")
        t3a = time.monotonic()
        r3 = await probe.check()
        t3b = time.monotonic()
        new = int(after["total_connections_received"]) - int(before["total_connections_received"])
        rejected = int(after["rejected_connections"]) - int(before["rejected_connections"])
        assert rejected == refused > 0
        assert r3.metrics["rejected_connections_total"] == int(after["rejected_connections"])
        assert rejected / (t3b - t2a) <= r3.metrics["rejected_connections_per_s"] \
            <= rejected / (t3a - t2b)
        assert new / (t3b - t2a) <= r3.metrics["connections_per_s"] <= new / (t3a - t2b)
        for c in extra:
            c.close()
    finally:
        await probe.aclose()
        admin.close()
        data.close()


async def test_commandstats_latency_and_clients(redis_server: RedisServer) -> None:
    admin = redis_server.admin()
    data = redis_server.admin()
    idle = redis_server.admin()
    idle.client_setname("opsc-idle")
    probe = RedisProbe(target(redis_server.url, latency_samples=8))
    try:
        data.set("a", "1")
        await probe.check()
        ref0 = admin.info("commandstats").get("cmdstat_get", {"calls": 0, "usec": 0})
        for _ in range(7):
            data.get("a")
        ref1 = admin.info("commandstats")["cmdstat_get"]
        await asyncio.sleep(1.1)  # CLIENT LIST counts idle time in whole seconds
        r = await probe.check()
        raw_clients = admin.client_list()
        clients_ref = {c["name"]: c for c in raw_clients}
        get = next(c for c in r.details["commands"] if c["command"] == "get")
        assert get["calls"] == ref1["calls"]
        assert get["d_calls"] == ref1["calls"] - ref0["calls"] == 7
        assert get["d_usec_per_call"] == pytest.approx((ref1["usec"] - ref0["usec"]) / 7,
                                                       abs=1e-3)
        assert get["usec_per_call"] == pytest.approx(ref1["usec_per_call"])
        # latency: the console's own PING samples, p50/p99 by nearest rank
        samples = r.details["latency"]["samples_ms"]
        assert len(samples) == 8
        assert r.metrics["latency_p50_ms"] == pytest.approx(sorted(samples)[3], abs=1e-3)
        assert r.metrics["latency_p99_ms"] == pytest.approx(max(samples), abs=1e-3)
        # clients: idle time and the oldest, from CLIENT LIST
        listed = {c["name"]: c for c in r.details["clients"]["by_idle"]}
        assert 1 <= listed["opsc-idle"]["idle_s"] <= int(clients_ref["opsc-idle"]["idle"])
        assert r.metrics["clients_idle_max_s"] >= listed["opsc-idle"]["idle_s"]
        assert r.details["clients"]["count"] == len(raw_clients)
        oldest = max(int(c["age"]) for c in raw_clients)
        assert oldest - 1 <= r.metrics["clients_oldest_s"] <= oldest
        assert r.details["bigkeys"] is None  # off by default
    finally:
        await probe.aclose()
        for c in (admin, data, idle):
            c.close()


async def test_big_keys_by_a_bounded_scan_sample(redis_server: RedisServer) -> None:
    admin = redis_server.admin()
    admin.mset({f"small:{i}": "x" for i in range(40)})
    admin.set("big:one", "y" * 100_000)
    admin.rpush("big:list", *[str(i) for i in range(2000)])
    probe = RedisProbe(target(redis_server.url, bigkeys_sample=100))
    try:
        r = await probe.check()
        big = r.details["bigkeys"]
        assert big["sampled"] == 42
        top = big["keys"][:2]
        assert [k["key"] for k in top] == ["big:one", "big:list"]
        assert top[0]["bytes"] == admin.memory_usage("big:one", samples=5)
        assert top[0]["type"] == "string"
        assert top[1]["type"] == "list"
        # not again before bigkeys_interval: the findings are carried, not re-sampled
        calls = admin.info("commandstats")["cmdstat_memory|usage"]["calls"]
        r2 = await probe.check()
        assert r2.details["bigkeys"]["keys"][0]["key"] == "big:one"
        assert admin.info("commandstats")["cmdstat_memory|usage"]["calls"] == calls
    finally:
        await probe.aclose()
        admin.close()
