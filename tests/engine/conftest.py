"""Fixtures shared by the engine's probe tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from console.engine.http_client import HttpClients


@pytest.fixture
async def clients() -> AsyncIterator[HttpClients]:
    """The engine's HTTP clients (one pooled session), closed after the test."""
    async with HttpClients() as c:
        yield c
