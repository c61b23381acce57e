"""The baseline of the scale bench: a bare aiohttp loop doing the checks the console does.

Run as a script: `python bench/_bare_loop.py INTERVAL PORT...` polls
``http://127.0.0.1:PORT/health`` for each port every INTERVAL seconds on a fixed grid (each
URL with its own phase, as the console's scheduler spreads its targets), reads the body and
looks at the status, until stdin closes. This is what a user would write instead of the
console, so its CPU per check is the floor the console's is compared with.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
import zlib

import aiohttp


async def _poll(session: aiohttp.ClientSession, url: str, interval: float) -> None:
    start = time.monotonic() + (zlib.crc32(url.encode()) / 2**32) * interval
    k = 0
    while True:
        delay = start + k * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                await r.read()
                _ = r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            pass
        k = max(k + 1, math.ceil((time.monotonic() - start) / interval))


async def main(interval: float, ports: list[int]) -> None:
    # No pool limit: the console keeps one pool per target, so neither side queues requests.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(_poll(session, f"http://127.0.0.1:{p}/health", interval))
                 for p in ports]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes stdin
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    args = float(sys.argv[1]), [int(p) for p in sys.argv[2:]]
    if os.environ.get("BARE_LOOP") == "uvloop":  # the same script on uvloop's loop
        import uvloop

        uvloop.run(main(*args))
    else:
        asyncio.run(main(*args))
