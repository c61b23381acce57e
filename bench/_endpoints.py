"""Benchmark HTTP endpoints served from a separate process, so their CPU never counts.

Run as a script: `python bench/_endpoints.py N` listens on N ephemeral 127.0.0.1 ports with a
minimal keep-alive HTTP/1.1 responder (raw asyncio protocol: the server must stay cheap so that
the client side, which is what the benchmark measures, is never starved on a 2-core machine),
prints the ports as one JSON line, and serves until stdin closes. Each line `count` on stdin
is answered with the number of requests answered so far (one JSON line): the scale bench
counts the checks a client achieved where they land, not where the client says they ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

BODY = (
    b'{"status":"ok","info":{"database":{"status":"up"},"redis":{"status":"up"}},'
    b'"error":{},"details":{"database":{"status":"up"},"redis":{"status":"up"}}}'
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(BODY)).encode()
    + b"\r\nConnection: keep-alive\r\n\r\n"
    + BODY
)


ANSWERED = 0  # requests answered by this process (all ports)
_RESPONSE = [RESPONSE]  # what every request gets (a body file may replace it: see server())


def _response(body: bytes, content_type: str) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode() +
            b"\r\nContent-Length: " + str(len(body)).encode() +
            b"\r\nConnection: keep-alive\r\n\r\n" + body)


class _Responder(asyncio.Protocol):
    """Answers every request head with the fixed JSON response; ignores request bodies."""

    def __init__(self) -> None:
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        global ANSWERED
        while (i := self.buf.find(b"\r\n\r\n")) >= 0:
            self.buf = self.buf[i + 4 :]
            assert self.transport is not None
            self.transport.write(_RESPONSE[0])
            ANSWERED += 1


async def _serve(n: int) -> None:
    loop = asyncio.get_running_loop()
    servers = [
        await loop.create_server(_Responder, "127.0.0.1", 0, backlog=512) for _ in range(n)
    ]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps(ports), flush=True)
    # Serve until the parent closes our stdin (or dies); answer `count` lines meanwhile.
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        if line.strip() == "count":
            print(json.dumps(ANSWERED), flush=True)
    for s in servers:
        s.close()


class Server:
    """The server process seen from the benchmark: its ports and its request count."""

    def __init__(self, proc: subprocess.Popen[bytes], ports: list[int]) -> None:
        self.proc = proc
        self.ports = ports

    def answered(self) -> int:
        """Requests answered so far, across every port."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(b"count\n")
        self.proc.stdin.flush()
        return int(json.loads(self.proc.stdout.readline()))


@contextlib.contextmanager
def endpoints(n: int) -> Iterator[list[int]]:
    """Start the server process; yield its ports; stop it."""
    with server(n) as srv:
        yield srv.ports


@contextlib.contextmanager
def server(n: int, body: Path | None = None,
           content_type: str = "text/plain; version=0.0.4") -> Iterator[Server]:
    """Start the server process; yield it (ports, request count); stop it. With `body`, a
    file whose bytes every request gets (with `content_type`) instead of the JSON health."""
    extra = [str(body), content_type] if body is not None else []
    proc = subprocess.Popen(
        [sys.executable, __file__, str(n), *extra], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())
        yield Server(proc, ports)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    if len(sys.argv) > 3:
        _RESPONSE[0] = _response(Path(sys.argv[2]).read_bytes(), sys.argv[3])
    # uvloop: 2,000 requests/s cost ~6 % of a core (30 us each); on asyncio's loop this one
    # process, sharing two cores with the client, was the limit at 2,000 targets
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(int(sys.argv[1])))
    else:
        uvloop.run(_serve(int(sys.argv[1])))
