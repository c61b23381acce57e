"""Fixtures shared by the engine's probe tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from console.engine.probes.http_client import HttpClients
from console.engine.probes.postgres import PostgresProbe


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    """The engine's HTTP clients (one pooled session), closed after the test."""
    async with HttpClients() as c:
        yield c


@pytest.fixture
async def probes() -> AsyncIterator[list[PostgresProbe]]:
    """PostgreSQL probes a test makes (append them), closed after it."""
    made: list[PostgresProbe] = []
    yield made
    for p in made:
        await p.aclose()
