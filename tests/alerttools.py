"""Alert-test pieces shared by the engine, CLI and UI tests: the `api`/`api-down` configs
and a threaded local site that is both the monitored target and the webhook receiver."""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

T0 = 1_800_000_000.0  # a fixed epoch (2027-01-15) so times in assertions are stable


class Clock:
    """A clock the test moves by hand (``clock.t += 10``), for engines that take ``clock=``."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


_WEBHOOK_CONFIG = textwrap.dedent("""\
    [[targets]]
    name = "api"
    kind = "http"
    url = "{base}/health"
    interval = "200ms"
    timeout = "1s"
    expect_status = [200]

    [[rules]]
    name = "api-down"
    severity = "P0"
    expr = "down"
    failure_threshold = 2
    {success}
    [alerting]
    default_rules = false

    [[alerting.receivers]]
    name = "hook"
    kind = "webhook"
    url = "{hook_url}"
    rate = 20
    """)

_DEAD_API_CONFIG = textwrap.dedent("""\
    [[targets]]
    name = "api"
    kind = "http"
    url = "http://127.0.0.1:9/health"

    [[rules]]
    name = "api-down"
    expr = "down"
    severity = "P0"
    failure_threshold = 1
    {success}
    [alerting]
    default_rules = false
    """)


def _success(threshold: int | None) -> str:
    return "" if threshold is None else f"success_threshold = {threshold}\n"


def webhook_config(base: str, *, hook_url: str | None = None,
                   success_threshold: int | None = None) -> str:
    """`api` checked every 200 ms at ``{base}/health``; `api-down` (P0) fires after two failed
    checks and goes to the webhook receiver `hook` at ``{base}/hook`` (or `hook_url`, e.g. an
    ``${ENV}`` reference), so a test sees real notifications for a target it switches."""
    return _WEBHOOK_CONFIG.format(base=base, hook_url=hook_url or f"{base}/hook",
                                  success=_success(success_threshold))


def dead_api_config(*, success_threshold: int | None = None) -> str:
    """`api` on 127.0.0.1:9 (nothing listens) and `api-down` (P0) on its first failure, no
    receivers: for tests that record ``api:up`` samples into the store themselves."""
    return _DEAD_API_CONFIG.format(success=_success(success_threshold))


class HookSite:
    """``GET`` anything: 200 while `up`, else 503 (the monitored `api`); ``POST``: the JSON
    body appended to `hooks` (the webhook receiver).

    Threaded rather than asyncio so a synchronous test can block on a subprocess (an
    ``opsconsole run --headless``) while it answers. Use as a context manager.
    """

    def __init__(self, *, up: bool = False) -> None:
        self.up = up
        self.hooks: list[dict[str, Any]] = []
        self._posted = threading.Condition()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                self.send_response(200 if site.up else 503)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with site._posted:
                    site.hooks.append(json.loads(body))
                    site._posted.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> HookSite:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, transition: str, timeout: float = 30) -> dict[str, Any]:
        """The first notification received with this `transition`, waiting for it to
        arrive (AssertionError after `timeout` s without it)."""
        def found() -> dict[str, Any] | None:
            return next((h for h in self.hooks if h.get("transition") == transition), None)

        with self._posted:
            got = self._posted.wait_for(found, timeout)
        assert got, f"no {transition!r} notification reached the webhook: {self.sent_keys()}"
        return got

    def sent_keys(self) -> list[str]:
        """The notification keys received so far, in order."""
        return [str(h["key"]) for h in list(self.hooks)]


async def until(cond: Callable[[], bool], limit: float = 10.0) -> None:
    """Wait for `cond` (checked every 20 ms), failing after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
