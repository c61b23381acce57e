"""A shared-state database for the tests: a fresh opsconsole schema, dropped afterwards.

`state_db` (function scope) makes a schema of its own in the machine's PostgreSQL (database
``test`` on 127.0.0.1:5432, trust), created with `opsconsole state init`'s code, so tests
running at once never see each other's events. Tests that must stop the database use the
private server of `tests.pgserver` instead (`private_state_db`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest

from tests.pgserver import PgServer

MACHINE_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True, slots=True)
class StateDb:
    dsn: str  # as a config writes it (may hold ${VAR}s)
    schema: str
    direct: str = ""  # for the test's own queries (expanded)

    @property
    def url(self) -> str:
        return self.direct or self.dsn

    def config(self, **extra: object) -> str:
        """The `[state]` section for this database (extra keys as TOML values)."""
        lines = ['[state]', 'backend = "postgres"', f'dsn = "{self.dsn}"',
                 f'schema = "{self.schema}"']
        for k, v in extra.items():
            lines.append(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"')
        return "\n".join(lines) + "\n"

    def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        """Run `sql` (``{s}`` is the schema) on a connection of its own."""
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.url)
            try:
                return list(await conn.fetch(sql.format(s=self.schema), *args))
            finally:
                await conn.close()

        return asyncio.run(run())

    async def afetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url)
        try:
            return list(await conn.fetch(sql.format(s=self.schema), *args))
        finally:
            await conn.close()


def make_schema(dsn: str, schema: str) -> None:
    from console.engine.state.schema import init

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await init(conn, schema)
        finally:
            await conn.close()

    asyncio.run(run())


def drop_schema(dsn: str, schema: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(name="state_db")
def state_db_fixture() -> Iterator[StateDb]:
    """A fresh opsconsole schema in the machine's PostgreSQL (fails if it is not running)."""
    schema = f"opst_{os.getpid()}_{os.urandom(3).hex()}"
    make_schema(MACHINE_DSN, schema)
    try:
        yield StateDb(MACHINE_DSN, schema)
    finally:
        drop_schema(MACHINE_DSN, schema)


@pytest.fixture(name="private_state_db")
def private_state_db_fixture(pg_server: PgServer) -> Iterator[tuple[StateDb, PgServer]]:
    """A fresh opsconsole schema in a private server the test may stop and start."""
    from tests.pgserver import PASSWORD

    os.environ["OPSTEST_PG_PASSWORD"] = PASSWORD
    dsn = pg_server.dsn(password="${OPSTEST_PG_PASSWORD}")
    direct = pg_server.dsn(password=PASSWORD)
    schema = f"opst_{os.getpid()}_{os.urandom(3).hex()}"
    make_schema(direct, schema)
    try:
        yield StateDb(dsn, schema, direct), pg_server
    finally:
        if not pg_server.is_running():
            pg_server.start()
        drop_schema(direct, schema)
