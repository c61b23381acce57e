"""A private PostgreSQL server for tests that must stop, restart or reconfigure a real server.

The machine's shared PostgreSQL (127.0.0.1:5432) must never be stopped by a test, so tests
that need a restart, or password authentication, use this one. It is built with `initdb`
from the machine's binaries into a temporary directory, once per session, because `initdb`
takes a few seconds. It listens on 127.0.0.1 and a free port. PostgreSQL refuses to run as
root, so when the tests run as root every command runs as the `postgres` user.

Authentication: Unix socket connections use `trust` (used by `admin()` for setup). TCP
connections use `scram-sha-256`, so a wrong password really fails. The superuser
`postgres` has the password `PASSWORD`.

`pg_stat_statements` is preloaded (track=all), so a test can `CREATE EXTENSION` it in a
database of its own and read what every client, the console included, ran there.

TLS is on (plaintext stays allowed). The server certificate is issued by a private CA
(`ca_file`) for the name `TLS_HOSTNAME` only, so that connecting to 127.0.0.1 with
`verify-full` fails on the hostname, with `verify-ca` it succeeds, and `other_ca_file` (an
unrelated CA) fails on the chain.

Use the `pg_server` fixture (session scope), which makes sure the server is running:

    from tests.pgserver import pg_server_fixture, pg_server_session_fixture  # noqa: F401

and ask for `pg_server: PgServer` in the test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "pg-Test-pw:@/%40é-9f3c"  # characters that break naive URL handling on purpose
TLS_HOSTNAME = "db.opsconsole.test"


def _bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.SubprocessError):
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One private cluster: `start()`, `stop()`, `admin(sql)`, `dsn(...)`.

    `bindir` picks other server binaries than the machine's (another major version, e.g.
    from a wheel); `pgss=False` leaves `pg_stat_statements` out of shared_preload_libraries,
    for builds that do not ship it, and `tls=False` leaves TLS off, for builds without it.
    """

    def __init__(self, bindir: Path | None = None, *, pgss: bool = True,
                 tls: bool = True) -> None:
        self.bindir = bindir if bindir is not None else _bindir()
        self.pgss, self.tls = pgss, tls
        self.root = Path(tempfile.mkdtemp(prefix="opsconsole-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.log = self.root / "server.log"
        self.ca_file = self.root / "ca.pem"
        self.other_ca_file = self.root / "other-ca.pem"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.sockdir.mkdir()
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockdir, "postgres", "postgres")
            if bindir is not None:
                self.bindir = self._reachable_copy(self.bindir)

    def _reachable_copy(self, bindir: Path) -> Path:
        """A build from a wheel lives in the project's venv, which the postgres user may not
        reach (a clone under `mktemp -d` is 0700): run a copy from our own root instead.

        The layout is the wheel's: `<pkg>/<install>/{bin,lib,share}` (relocatable) and the
        libraries auditwheel moved to `<pkg>.libs` beside the package, found through an
        RPATH of `$ORIGIN/../../../<pkg>.libs`, so both are copied keeping their places.
        """
        install, package = bindir.parent, bindir.parent.parent
        mirror = self.root / "install"
        shutil.copytree(install, mirror / package.name / install.name, symlinks=True)
        libs = package.with_name(package.name + ".libs")
        if libs.is_dir():
            shutil.copytree(libs, mirror / libs.name, symlinks=True)
        return mirror / package.name / install.name / bindir.name

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {out.stdout}{out.stderr}\n{log}")
        return out

    def init(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        pwfile.unlink()
        self._make_certs()

    def _make_certs(self) -> None:
        import trustme

        ca, other = trustme.CA(), trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        other.cert_pem.write_to_path(str(self.other_ca_file))
        leaf = ca.issue_cert(TLS_HOSTNAME)
        cert_file, key_file = self.datadir / "server.crt", self.datadir / "server.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert_file))
        leaf.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)
        if self._as_postgres:
            shutil.chown(cert_file, "postgres", "postgres")
            shutil.chown(key_file, "postgres", "postgres")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=20")
        if self.tls:
            opts += " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        if self.pgss:
            opts += (" -c shared_preload_libraries=pg_stat_statements"
                     " -c pg_stat_statements.track=all")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log),
                  "-w", "-t", "30", "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w",
                  "-t", "30", "stop")

    def start_replica(self, slot: str | None = None) -> int:
        """A streaming replica of this server (pg_basebackup -R), on a port of its own;
        with `slot`, it streams through a physical replication slot of that name (created).

        Returns the port. Stop it with `stop_replica()` before anything else expects the
        primary to have no replicas (it drops the slot too).
        """
        self.replica_dir = self.root / "replica"
        self.replica_port = free_port()
        self.replica_slot = slot
        self._run(str(self.bindir / "pg_basebackup"), "-D", str(self.replica_dir), "-R",
                  "-X", "stream", "-h", str(self.sockdir), "-p", str(self.port), "-U",
                  "postgres", "--no-sync", "--checkpoint=fast",
                  *(("-C", "-S", slot) if slot else ()))
        opts = (f"-p {self.replica_port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c max_connections=20 -c hot_standby=on -c ssl=on "
                "-c ssl_cert_file=server.crt -c ssl_key_file=server.key "
                "-c shared_preload_libraries=pg_stat_statements")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.replica_dir), "-l",
                  str(self.root / "replica.log"), "-w", "-t", "30", "-o", opts, "start")
        return self.replica_port

    def stop_replica(self) -> None:
        replica = getattr(self, "replica_dir", None)
        if replica is None or not replica.exists():
            return
        with contextlib.suppress(RuntimeError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(replica), "-m", "immediate",
                      "-w", "-t", "30", "stop")
        shutil.rmtree(replica, ignore_errors=True)
        slot, self.replica_slot = getattr(self, "replica_slot", None), None
        if slot and self.is_running():
            with contextlib.suppress(RuntimeError):  # the walsender may take a moment to go
                for _ in range(100):
                    if self.admin("SELECT count(*) FROM pg_replication_slots WHERE "
                                  f"slot_name = '{slot}' AND NOT active") == "1":
                        break
                    time.sleep(0.02)
                self.admin(f"SELECT pg_drop_replication_slot('{slot}')")

    def is_running(self) -> bool:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0

    def admin(self, sql: str, db: str = "postgres") -> str:
        """Run SQL as superuser over the Unix socket (trust); returns unaligned output."""
        out = self._run(str(self.bindir / "psql"), "-h", str(self.sockdir), "-p", str(self.port),
                        "-U", "postgres", "-d", db, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-c", sql, timeout=30)
        return out.stdout.strip()

    def dsn(self, user: str = "postgres", password: str | None = None,
            db: str = "postgres", query: str = "") -> str:
        from urllib.parse import quote

        if password is not None and not password.startswith("${"):
            password = quote(password, safe="")
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}" + (f"?{query}" if query else "")

    def destroy(self) -> None:
        self.stop_replica()
        with contextlib.suppress(Exception):
            if self.is_running():
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session", name="pg_server_session")
def pg_server_session_fixture() -> Iterator[PgServer]:
    server = PgServer()
    try:
        t0 = time.monotonic()
        server.init()
        server.start()
        print(f"private PostgreSQL on port {server.port} ready in {time.monotonic() - t0:.1f}s")
        yield server
    finally:
        server.destroy()


@pytest.fixture(name="pg_server")
def pg_server_fixture(pg_server_session: PgServer) -> PgServer:
    """The session's private server, started again if a previous test left it stopped."""
    if not pg_server_session.is_running():
        pg_server_session.start()
    return pg_server_session
