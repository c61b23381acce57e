"""The event loop a console process runs on: uvloop where it is installed, asyncio's own
otherwise (or when ``OPSCONSOLE_LOOP=asyncio`` asks for it).

Why: at 1,000 HTTP targets polled every second, asyncio's pure-Python loop (selector,
transports, handles, timers) was ~11 % of the console's self time in py-spy and its socket
transports much of aiohttp's ~15 %. uvloop (MagicStack, the authors of asyncpg) runs the
same asyncio API on libuv; aiohttp, httpx, asyncpg, redis-py and Textual all run on it
unchanged. `bench/bench_scale.py` measures the console with it against a bare aiohttp loop
on asyncio's loop, as a user would script it (`--bare-loop uvloop` runs that script on
uvloop too, `--console-loop asyncio` the console on asyncio's loop).

Only the long-running processes use it (`run --headless`, the TUI and `replay`'s TUI); the
one-shot commands keep `asyncio.run` (importing uvloop is a few ms of their start-up for a
loop that runs one check), the test suite's loops stay asyncio's, and
``OPSCONSOLE_LOOP=asyncio`` gives a console on asyncio's loop for comparison or if uvloop
misbehaves somewhere.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "OPSCONSOLE_LOOP"


def _factory() -> Any:
    """uvloop's loop factory, or None for asyncio's own."""
    if os.environ.get(ENV, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # not installed (a platform without wheels): asyncio's own
        return None
    return uvloop.new_event_loop


def name() -> str:
    """Which loop `run` gives: "uvloop" or "asyncio"."""
    return "asyncio" if _factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the console's loop."""
    with asyncio.Runner(loop_factory=_factory()) as runner:
        return runner.run(main)

