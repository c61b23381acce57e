"""The demo stack's ports, without the stack: `opsconsole demo --port N` checks them before
the first frame, and importing `console.demo.stack` (aiohttp's web server, prometheus_client)
there cost the first frame ~150 ms; the stack itself is imported after it, with the engine."""

from __future__ import annotations

import socket

DEFAULT_PORT = 18780  # API; frontend = +1, payments = +2
SERVICES = ("api", "frontend", "payments")


def port_taken(host: str, port: int) -> bool:
    """Whether `port` on `host` cannot be bound now (something listens, or it is reserved)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port_block(host: str = "127.0.0.1", n: int = len(SERVICES),
                    start: int = DEFAULT_PORT + 10, stop: int = DEFAULT_PORT + 400) -> int:
    """A first port from which `n` consecutive ports are free (for `--port`)."""
    for first in range(start, stop, n):
        if not any(port_taken(host, first + i) for i in range(n)):
            return first
    return 0  # none near the default: --port 0 picks free ones
