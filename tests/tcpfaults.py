"""Raw TCP fault servers and leak checks shared by the PostgreSQL and Redis probe tests.

Protocol-level fakes (a PostgreSQL handshake that then goes silent, Redis protected mode)
subclass `Silent` in their own test modules; what is common lives here once.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import psutil

from console.engine.model import CheckResult


class Silent(asyncio.Protocol):
    """Accepts and never answers (a black-holed port)."""

    def __init__(self, server: FaultServer) -> None:
        self.server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.server.accepted += 1
        self.server.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)


class FaultServer:
    """A real listening socket on 127.0.0.1 speaking `protocol`; counts what it sees."""

    def __init__(self, protocol: type[Silent]) -> None:
        self.protocol = protocol
        self.accepted = 0
        self.cancel_requests = 0  # PostgreSQL CancelRequests, for the fakes that count them
        self.open: set[Silent] = set()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FaultServer:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: self.protocol(self), "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for p in list(self.open):
            p.transport.abort()  # type: ignore[attr-defined]
        await self.server.wait_closed()


def assert_no_secret(secret: str, probe: Any, *results: CheckResult) -> None:
    """The secret, raw or URL-encoded, is in no result, its JSON, nor the probe's repr."""
    forms = {secret, quote(secret, safe=""), quote(secret)}
    for r in results:
        blob = f"{r!r} {r.to_json()!r}"
        for form in forms:
            assert form not in blob
    for form in forms:
        assert form not in repr(probe)


def client_sockets_to(port: int) -> list[object]:
    """This process's TCP sockets whose remote end is `port` (i.e. the probe's side)."""
    return [c for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port]


def other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def settle() -> None:
    for _ in range(3):  # let transports run connection_lost callbacks
        await asyncio.sleep(0.01)
