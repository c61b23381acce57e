"""The self-watch: a ping to an external dead-man's switch while this console evaluates.

Who pages the team when the bastion itself dies, or the evaluator hangs, or cannot reach
the database its notifications go through? Nobody inside: so the evaluator pings a URL
(healthchecks.io, Cronitor, Uptime Kuma's push monitor, Dead Man's Snitch…) every
``[state] heartbeat_every`` while it evaluates alerts *and* can send, and that service pages
when the pings stop. With several consoles sharing the state, whichever evaluates pings, so
a failover keeps the pings coming; an evaluator cut off from its database stops pinging.

The URL is usually a secret (``${HC_PING_URL}``): it is expanded at each ping and masked in
every message.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from console.engine.config.envref import MissingEnv, expand_url
from console.engine.text.redact import describe_exception, register_secret

TIMEOUT = 10.0


class Heartbeat:
    """One GET per `ping()`; a failure is a problem text, never an exception."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.clock = clock
        self.sent = 0
        self.last_ok: float | None = None
        self._client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=True)

    async def ping(self) -> str | None:
        """Ping once; None when the service took it, else why not (for the screen)."""
        try:
            url = expand_url(self.url)
        except MissingEnv as exc:
            return f"self-watch: [state] heartbeat_url: environment variable {exc.args[0]} " \
                   "is not set"
        register_secret(url)
        try:
            resp = await self._client.get(url, headers={"User-Agent": "opsconsole"})
        except httpx.HTTPError as exc:
            return f"self-watch ping failed: {describe_exception(exc)}"
        if resp.status_code >= 400:
            return f"self-watch ping refused: HTTP {resp.status_code}"
        self.sent += 1
        self.last_ok = self.clock()
        return None

    async def close(self) -> None:
        await self._client.aclose()
