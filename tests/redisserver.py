"""A private `redis-server` for tests that stop, restart or reconfigure a real Redis.

The machine's Redis (127.0.0.1:6379) is shared with every other test, so exact counters and
restarts need a server of their own. This one is the machine's `redis-server` binary on a
free 127.0.0.1 port, run as a child process, with nothing kept on disk. It starts in about
10 ms and is stopped by the test that started it (use it as a context manager or with the
`redis_server` fixture).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """`start()`, `stop()`, `restart()`, `admin()`; extra config as `--name value` args.

    `binary` runs another `redis-server` than the machine's (another major version).
    """

    def __init__(self, *extra: str, password: str | None = None,
                 binary: str | None = None) -> None:
        binary = binary or shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server binary not found")
        self.binary = binary
        self.extra = list(extra)
        self.password = password
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="opsconsole-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"), *self.extra]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self._log_tail()}")
            with contextlib.suppress(OSError):
                if self._ping():
                    return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not answer within 10 s: {self._log_tail()}")

    def _ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def _log_tail(self) -> str:
        log = self.dir / "redis.log"
        return log.read_text(errors="replace")[-1000:] if log.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def admin(self, db: int = 0) -> redis.Redis:
        """A plain synchronous client for test setup (not the code under test)."""
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, password=self.password,
                           decode_responses=True, socket_timeout=5, protocol=2)

    def clients_named(self, name: str) -> int:
        with self.admin() as r:
            return sum(1 for c in r.client_list() if c.get("name") == name)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """A fresh private Redis (no password), stopped afterwards."""
    with RedisServer() as server:
        yield server
