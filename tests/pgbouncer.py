"""A private PgBouncer (Debian's /usr/sbin/pgbouncer) in front of the private PostgreSQL.

Poolers in transaction mode (PgBouncer, Supabase's Supavisor) refuse startup parameters they
do not track and hand each transaction to any server connection, which is what the probe's
per-transaction guards are for. This runs the real program on a free 127.0.0.1 port, with
`pool_mode = transaction` by default, `auth_type = trust` for its clients (the user must be
listed in its auth file) and the server reached over its Unix socket (trust). PgBouncer
refuses to run as root, so as root it runs as the `postgres` user, like tests/pgserver.py.
A missing binary fails the test: `.ci/run` installs the `pgbouncer` package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.pgserver import PgServer, free_port

BINARY = "/usr/sbin/pgbouncer"


class PgBouncer:
    """`start()`, `stop()`, `dsn(db)`; as a context manager it starts and cleans up."""

    def __init__(self, server: PgServer, databases: list[str], *, pool_mode: str = "transaction",
                 ignore_startup_parameters: str = "", users: tuple[str, ...] = ("postgres",),
                 pool_size: int = 3) -> None:
        if not Path(BINARY).exists():
            raise RuntimeError(f"{BINARY} not found: install Debian's pgbouncer package "
                               "(apt-get install pgbouncer; .ci/run does)")
        self.server = server
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="opsconsole-pgbouncer-"))
        self.log = self.root / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None
        dbs = "\n".join(f"{db} = host={server.sockdir} port={server.port} dbname={db} "
                        "user=postgres" for db in databases)
        (self.root / "users.txt").write_text("".join(f'"{u}" ""\n' for u in users))
        ignore = (f"ignore_startup_parameters = {ignore_startup_parameters}\n"
                  if ignore_startup_parameters else "")
        (self.root / "pgbouncer.ini").write_text(
            f"[databases]\n{dbs}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\nunix_socket_dir =\nauth_type = trust\n"
            f"auth_file = {self.root / 'users.txt'}\npool_mode = {pool_mode}\n"
            f"default_pool_size = {pool_size}\nlogfile = {self.log}\n"
            f"pidfile = {self.root / 'pid'}\n"
            f"{ignore}")
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            for f in self.root.iterdir():
                shutil.chown(f, "postgres", "postgres")

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        cmd = [BINARY, str(self.root / "pgbouncer.ini")]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self._log_tail()}")
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.01)
        raise RuntimeError(f"pgbouncer did not listen within 10 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""

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

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
