"""The console's own load on a monitored PostgreSQL, against pg_activity's, in the same run.

A private PostgreSQL (tests/pgserver.py: pg_stat_statements preloaded, track=all) gets a light
workload (a few sessions running short queries, one idle in a transaction). Two monitors watch
it at the same time for `--seconds` (default 60), each at a 1 s refresh and each under a role
of its own, so pg_stat_statements splits the server's work by monitor:

* the console: the real engine (`Scheduler` with one postgres target, interval 1 s, the default
  60 s slow interval, pg_stat_statements installed so its collector runs too);
* pg_activity (`pip install pg_activity[psycopg]`), the real program running interactively in
  a pseudo-terminal (bench/pty_harness.py) with `--refresh 1`, as superuser like most users
  run it, with its defaults otherwise (db size and temp files on).

Both roles are superusers, so both collect everything they can. The figures are the sum of
`total_exec_time` and `calls` in pg_stat_statements per role, scaled to one minute (planning
time is not tracked for either). Target: the console's server time ≤ half of pg_activity's.
The last line starts with `RESULT pg_load`. Runs in about 70 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
from pty_harness import PtyProcess, terminal_env  # noqa: E402

from tests.pgserver import PgServer  # noqa: E402

DB = "bench"
CONSOLE_ROLE, PGA_ROLE = "bench_console", "bench_pg_activity"
ROLE_PW = "bench-Pw-1"


def fast_query(server: PgServer) -> tuple[int, float, float]:
    """(calls, mean ms, max ms) of the console's fast-loop query."""
    out = server.admin(
        "SELECT calls || ' ' || mean_exec_time || ' ' || max_exec_time FROM pg_stat_statements s "
        f"JOIN pg_roles r ON r.oid = s.userid WHERE r.rolname = '{CONSOLE_ROLE}' "
        "AND query LIKE '%pg_stat_activity%' AND query LIKE '%pg_stat_database%'", db=DB)
    calls, mean, peak = (out.split() + ["0", "0", "0"])[:3]
    return int(calls), float(mean), float(peak)


def per_role(server: PgServer) -> dict[str, tuple[float, int, int]]:
    """role -> (total_exec_time ms, calls, distinct statements), all databases."""
    out = server.admin(
        "SELECT r.rolname || ' ' || sum(s.total_exec_time) || ' ' || sum(s.calls) || ' ' "
        "|| count(*) FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid "
        f"WHERE r.rolname IN ('{CONSOLE_ROLE}', '{PGA_ROLE}') GROUP BY r.rolname", db=DB)
    res: dict[str, tuple[float, int, int]] = {}
    for line in filter(None, out.splitlines()):
        name, ms, calls, n = line.split()
        res[name] = (float(ms), int(calls), int(n))
    return res


async def workload(server: PgServer, stop: asyncio.Event) -> int:
    """A few busy sessions and one idle in a transaction, so there is activity to show."""
    conns = [await asyncpg.connect(host=str(server.sockdir), port=server.port, user="postgres",
                                   database=DB, server_settings={"application_name": f"app{i}"})
             for i in range(5)]
    await conns[0].execute("BEGIN; SELECT count(*) FROM work")
    done = 0

    async def busy(conn: asyncpg.Connection, i: int) -> None:
        nonlocal done
        while not stop.is_set():
            await conn.execute("UPDATE work SET v = v + 1 WHERE id = $1", i)
            await conn.fetchval("SELECT sum(v) FROM work WHERE id < 50")
            done += 1
            await asyncio.sleep(0.05)

    try:
        await asyncio.gather(*(busy(c, i) for i, c in enumerate(conns[1:], 1)))
    finally:
        for c in conns:
            with contextlib.suppress(Exception):
                await c.close()
    return done


async def run(seconds: float) -> int:
    from console.engine.config.schema import PostgresTarget, Settings
    from console.engine.scheduler import Scheduler

    if shutil.which("pg_activity") is None and not (Path(sys.executable).parent
                                                    / "pg_activity").exists():
        print("pg_activity is not installed: pip install 'pg_activity[psycopg]'")
        return 2
    pga = str(Path(sys.executable).parent / "pg_activity")
    server = PgServer()
    try:
        t0 = time.monotonic()
        server.init()
        server.start()
        server.admin(f"CREATE DATABASE {DB}")
        server.admin("CREATE EXTENSION pg_stat_statements;"
                     "CREATE TABLE work (id int PRIMARY KEY, v int);"
                     "INSERT INTO work SELECT g, 0 FROM generate_series(1, 1000) g", db=DB)
        for role in (CONSOLE_ROLE, PGA_ROLE):
            server.admin(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{ROLE_PW}'")
        print(f"private PostgreSQL ready in {time.monotonic() - t0:.1f}s (port {server.port})")

        stop = asyncio.Event()
        load = asyncio.create_task(workload(server, stop))
        await asyncio.sleep(0.5)
        import os

        os.environ["BENCH_PG_DSN"] = server.dsn(user=CONSOLE_ROLE, password=ROLE_PW, db=DB)
        settings = Settings(targets=[PostgresTarget(
            name="bench-pg", dsn="${BENCH_PG_DSN}", interval=1.0, timeout=2.0)])
        engine = Scheduler(settings)
        argv = [pga, "--refresh", "1", "-h", str(server.sockdir), "-p", str(server.port),
                "-U", PGA_ROLE, "-d", DB]
        with PtyProcess(argv, columns=160, lines=40, env=terminal_env()) as top:
            if top.wait_for_text("PostgreSQL", 15) is None:
                print("pg_activity did not draw its screen:\n" + top.text())
                return 1
            server.admin("SELECT pg_stat_statements_reset()", db=DB)
            await engine.start()
            started = time.monotonic()
            await asyncio.sleep(seconds)
            figures = per_role(server)
            fast = fast_query(server)
            elapsed = time.monotonic() - started
            await engine.stop()
            shown = top.text()
            alive = top.returncode is None
        stop.set()
        transactions = await load
        view = engine.snapshot()[0]  # counts every check (results keeps only the last 50)
        checks, failures = view.checks, view.failures
        if not alive or "bench" not in shown:
            print("pg_activity stopped or showed nothing:\n" + shown)
            return 1
    finally:
        server.destroy()

    scale = 60.0 / elapsed
    c_ms, c_calls, c_n = figures.get(CONSOLE_ROLE, (0.0, 0, 0))
    p_ms, p_calls, p_n = figures.get(PGA_ROLE, (0.0, 0, 0))
    c_min, p_min = c_ms * scale, p_ms * scale
    print(f"window {elapsed:.1f}s; workload {transactions} iterations; console checks "
          f"{checks} ({failures} down)")
    print(f"console     : {c_min:8.1f} ms/min server time, {c_calls * scale:6.0f} calls/min, "
          f"{c_n} distinct statements")
    print(f"console fast-loop query: {fast[0]} calls, mean {fast[1]:.2f} ms, "
          f"max {fast[2]:.2f} ms server time")
    print(f"pg_activity : {p_min:8.1f} ms/min server time, {p_calls * scale:6.0f} calls/min, "
          f"{p_n} distinct statements")
    ratio = c_min / p_min if p_min else float("inf")
    ok = ratio <= 0.5
    print(f"RESULT pg_load console_ms_per_min={c_min:.1f} console_calls_per_min="
          f"{c_calls * scale:.0f} pg_activity_ms_per_min={p_min:.1f} "
          f"pg_activity_calls_per_min={p_calls * scale:.0f} ratio={ratio:.2f} target<=0.50 "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    return asyncio.run(run(args.seconds))


if __name__ == "__main__":
    sys.exit(main())
