"""Redis probe: one connection, a timed PING and one INFO per check, with library retries off.

Why it is built this way (see RELIABILITY-NOTES §2, §5.4–5.7):

* **One connection.** The probe uses a client on a single-connection pool, opened lazily and
  kept between checks.
* **No hidden retries.** With its defaults, redis-py 8.1 retries 10 times, each with a 5 s
  socket timeout. A black-holed server took 58.6 s to fail, and the retries hide flapping and
  inflate latency. Here the connection gets `retry=Retry(NoBackoff(), 0)`,
  `socket_timeout` = `socket_connect_timeout` = `target.timeout`, and
  `health_check_interval=0`. These settings override anything in the URL's query string,
  which redis-py would otherwise let win.
* **A hard deadline** (`target.timeout`) covers waiting for a concurrent check, connecting,
  AUTH and both commands. On expiry the socket is dropped at once with
  `disconnect(nowait=True)`. A connection whose command was cancelled is never reused (the
  CVE-2023-28858/9 off-by-one class).
* **RESP2 on purpose.** redis-py 8 defaults to RESP3, which sends `HELLO` and fails on
  Redis < 6. RESP2 works on every server and INFO is the same.
* **The client announces itself** as `opsconsole` (`CLIENT SETNAME`), like PostgreSQL's
  `application_name`. Servers that rename or forbid `CLIENT` still get checked. redis-py's
  `CLIENT SETINFO` is off: it ignores error replies, so it would hide a `DENIED`.
* **TCP keep-alive** is on (30 s idle, 5 s interval, 3 probes), so a vanished server is noticed
  between checks.
* **Honest retries.** The probe makes at most one immediate retry, on a fresh socket and inside
  the same deadline. It happens only after a connection-level error on a connection that was
  already good, so a restart between checks does not show a false DOWN.
* **TLS** (`rediss://`) keeps redis-py's defaults: certificate required, hostname checked.

**Figures as `redis-cli --stat` shows them, over the check interval.** Counters (`*_total`)
are reported raw for the store; `ops_per_sec`, `hits_per_s`, `misses_per_s`,
`connections_per_s`, `rejected_connections_per_s`, `evicted_per_s` and `expired_per_s` are
deltas since the previous check divided by the time between them (never Redis's own ~1.6 s
`instantaneous_ops_per_sec` sample), and `hit_rate_pct` is hits / lookups over the same
span (omitted when there were none). `ops_per_sec` leaves out the probe's own commands.
Each check also times `latency_samples` PINGs (p50/p99 of them), reads `INFO commandstats`
(calls and µs per call per command over the interval), `SLOWLOG GET` (entries newer than the
last one seen are reported), `CLIENT LIST` (idle time and age; skipped above
`client_list_max` clients), and, when `bigkeys_sample` is set, every `bigkeys_interval` a
bounded `SCAN` sample with one `MEMORY USAGE … SAMPLES 5` and one `TYPE` per key sampled (the
cursor goes on where it stopped, so repeated samples cover the keyspace; cost per run: about
sample/100 SCAN calls and 2 × `bigkeys_sample` round trips, inside the check's deadline,
which is why the sample is capped at 1000). A command an ACL user may not run gets a note
and that collector turns off; everything else keeps working. `REDIS_OTHER_METRICS`
(probes/catalog.py) appear only where they apply (per-database key counts, replication).
`CheckResult.details` carries the memory policy, role and link status, persistence state,
keys per database, commands, clients, big keys, the recent slowlog and notes.

**Memory is judged by the eviction policy.** A cache with an `allkeys-*` policy (or a
`volatile-*` one with keys that have a TTL) at its `maxmemory` evicts: that is its job, and
`evicted_per_s` shows it. Only a server that cannot evict (`noeviction`, or `volatile-*`
with no key to evict) refuses writes when full, so `memory_noeviction_pct` is reported, and
DEGRADED set, for that case alone.

DEGRADED: memory above 90 % of `maxmemory` with nothing to evict, a replica whose link to
its master is down, or a failed last RDB save / AOF write (the server may then refuse writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import (
    Connection,
    ConnectionPool,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    MaxConnectionsError,
    NoPermissionError,
    RedisError,
    ResponseError,
)

from console.engine.config.envref import MissingEnv, expand_url
from console.engine.config.schema import RedisTarget
from console.engine.details import (
    RedisBigkeys,
    RedisClients,
    RedisDetails,
    RedisKeyspace,
    RedisMemory,
    RedisMemoryPolicy,
    RedisReplication,
    Row,
)
from console.engine.model import CheckResult, Status
from console.engine.text.fmt import format_bytes
from console.engine.text.redact import describe_exception, redact, register_secret
from console.engine.text.sanitize import one_line

CLIENT_NAME = "opsconsole"
INFO_SECTIONS = ("memory", "clients", "stats", "keyspace", "replication", "persistence",
                 "commandstats")
MEMORY_DEGRADED_PCT = 90.0
SLOWLOG_FETCH = 16
TOP_ROWS = 20  # commands, clients and big keys kept in details
# Policies that evict any key; volatile-* ones evict only keys with a TTL.
_ALLKEYS = ("allkeys-lru", "allkeys-lfu", "allkeys-random")
# Commands whose arguments are secrets: only the command name is shown (others: name + key).
_SECRET_COMMANDS = {"auth", "hello", "migrate", "acl", "config"}
_KEEPALIVE_NAMES = {"TCP_KEEPIDLE": 30, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
KEEPALIVE_OPTIONS = {
    getattr(socket, name): value for name, value in _KEEPALIVE_NAMES.items()
    if hasattr(socket, name)
}
# Not "the connection broke": retrying these would only repeat the same answer.
_NOT_TRANSIENT = (AuthenticationError, AuthorizationError, BusyLoadingError, MaxConnectionsError)


async def _on_connect(conn: Any) -> None:
    """redis-py's handshake (AUTH, SELECT), then a best-effort `CLIENT SETNAME opsconsole`."""
    await conn.on_connect()
    try:
        await conn.send_command("CLIENT", "SETNAME", CLIENT_NAME, check_health=False)
        await conn.read_response()
    except NoPermissionError:
        pass  # an ACL user without CLIENT: naming is a courtesy, not a requirement
    except ResponseError as exc:
        if "unknown" not in str(exc).lower():  # renamed/disabled command; DENIED etc. matter
            raise


def _where_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"socket {parts.path}"
        if parts.hostname:
            return f"{parts.hostname}:{parts.port or 6379}"
    except ValueError:
        pass
    return "the server"


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(out) < 5 and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def describe_error(exc: BaseException, where: str) -> str:
    """An operator-facing message for a failed check: specific, one line, no secrets."""
    msg = str(exc)
    low = msg.lower()
    chain = _chain(exc)
    text: str
    if isinstance(exc, MissingEnv):
        text = f"environment variable {exc.args[0]} is not set"
    elif isinstance(exc, ValueError) and not isinstance(exc, RedisError):
        text = f"invalid Redis URL: {msg}"
    elif "denied" in low and "protected mode" in low:
        text = ("Redis refused the connection: protected mode is on (DENIED); "
                "set a password on the server or allow this client")
    elif "authentication required" in low or low.startswith("noauth"):
        text = "Redis requires a password (NOAUTH)"
    elif "invalid username-password" in low or "invalid password" in low or "wrongpass" in low:
        text = "authentication failed: wrong password or username (WRONGPASS)"
    elif "without any password configured" in low or "client sent auth, but no password" in low:
        text = "a password was given but the server has none configured"
    elif isinstance(exc, AuthenticationError):
        text = f"authentication failed: {msg}"
    elif isinstance(exc, BusyLoadingError):
        text = "Redis is loading the dataset into memory (LOADING)"
    elif isinstance(exc, NoPermissionError):
        text = f"insufficient permission: {msg} (NOPERM)"
    elif "max number of clients reached" in low:
        text = "Redis refused the connection: max number of clients reached"
    elif any(isinstance(e, socket.gaierror) for e in chain):
        text = f"cannot resolve the host of {where}"
    elif any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        err = next(e for e in chain if isinstance(e, ssl.SSLCertVerificationError))
        text = f"TLS certificate verification failed for {where}: {err.verify_message or err}"
    elif any(isinstance(e, ssl.SSLError) for e in chain):
        text = f"TLS error with {where}: {msg}"
    elif (any(isinstance(e, OSError) and e.errno == errno.ECONNREFUSED for e in chain)
          or "connection refused" in low or "connect call failed" in low):
        text = f"connection refused by {where}"
    elif "closed by server" in low or isinstance(exc, ConnectionResetError):
        text = f"connection to {where} closed by the server"
    elif isinstance(exc, ResponseError):
        text = f"Redis error: {msg}"
    elif isinstance(exc, redis_errors.ConnectionError | OSError):
        text = f"cannot connect to {where}: {describe_exception(exc)}"
    else:
        text = describe_exception(exc)
    return one_line(redact(text))


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            f = float(value)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _text(value: Any) -> str:
    """redis-py may hand back bytes here even with decode_responses (SLOWLOG GET)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile: a value that was measured, never an interpolation."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def memory_policy(info: dict[str, Any]) -> RedisMemoryPolicy:
    """What `maxmemory` means for this server: whether it can evict at its limit."""
    policy = str(info.get("maxmemory_policy") or "")
    expires = sum(_num(v.get("expires")) or 0.0 for k, v in info.items()
                  if str(k).startswith("db") and str(k)[2:].isdigit() and isinstance(v, dict))
    if policy in _ALLKEYS:
        evicting = True
    elif policy.startswith("volatile-"):
        evicting = expires > 0  # only keys with a TTL may go
    else:
        evicting = False  # noeviction (or unknown): writes fail when full
    return {"policy": one_line(policy, 32) or None, "evicting": evicting,
            "keys_with_ttl": expires}


@dataclass(slots=True)
class _Round:
    """What one check read from the server."""

    pings_ms: list[float]
    info: dict[str, Any]
    own_before_info: int  # commands this probe had sent when INFO ran (cumulative)
    fresh: bool  # the connection was opened during this check
    slowlog: list[Any] | None = None
    clients: list[dict[str, Any]] | None = None
    bigkeys: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)


class RedisProbe:
    """Checks one Redis target over a single persistent connection."""

    kind = "redis"

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self._where = _where_of(target.url)
        self._client: Redis | None = None
        self._lock = asyncio.Lock()
        self._good = False  # the current connection has answered a full check
        self._sections: tuple[str, ...] = INFO_SECTIONS  # () once a server rejects several
        self._lookups: tuple[float, float] | None = None  # (hits, misses) at the last check
        # (monotonic, counters, own commands sent) at the previous check
        self._counts: tuple[float, dict[str, float], int] | None = None
        self._cmd_prev: dict[str, tuple[float, float]] = {}  # command -> (calls, usec)
        self._own = 0  # commands this probe has sent and the server counted
        self._slowlog_on = True
        self._slowlog_note: str | None = None
        self._slowlog_last: int | None = None  # highest slowlog id seen
        self._slowlog_recent: list[dict[str, Any]] = []
        self._clients_note: str | None = None
        self._bigkeys_note: str | None = None
        self._bigkeys_due = 0.0
        self._bigkeys_cursor = 0
        self._bigkeys: RedisBigkeys | None = None  # the last sample's findings
        self._last_dt: float | None = None  # seconds between the last two checks
        self._phase = "starting"

    def __repr__(self) -> str:
        return f"RedisProbe({self.target.name!r}, {redact(self.target.url)!r})"

    # -- connection ------------------------------------------------------------------------

    def _build_client(self) -> Redis:
        url = expand_url(self.target.url)  # percent-encodes a ${PW} inside the userinfo
        self._where = _where_of(url)
        kwargs: dict[str, Any] = dict(parse_url(url))
        if kwargs.get("password"):  # the URL may be one ${VAR}: mask its parts
            register_secret(kwargs["password"], user=kwargs.get("username"))
        connection_class = kwargs.pop("connection_class", Connection)
        timeout = self.target.timeout
        # Ours win over the URL's query string (redis-py would let the URL win).
        kwargs.update(
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
            decode_responses=True,
            protocol=2,
            redis_connect_func=_on_connect,
            # No CLIENT SETINFO: its replies are read with errors ignored, so it would swallow
            # a protected-mode DENIED line; CLIENT SETNAME identifies us instead.
            driver_info=None,
        )
        kwargs.pop("retry_on_error", None)
        if connection_class is not UnixDomainSocketConnection:
            kwargs.update(socket_keepalive=True, socket_keepalive_options=KEEPALIVE_OPTIONS)
        pool = ConnectionPool(connection_class=connection_class, max_connections=1, **kwargs)
        return Redis(connection_pool=pool, single_connection_client=True)

    async def _drop_socket(self) -> None:
        """Close the socket now, without waiting for the peer (it may be black-holed)."""
        self._good = False
        client = self._client
        conn = client.connection if client is not None else None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def _cmd(self, client: Redis, *args: Any, **options: Any) -> Any:
        """One command, counted as ours once the server has answered it."""
        reply = await client.execute_command(*args, **options)
        self._own += 1
        return reply

    async def _once(self, client: Redis) -> _Round:
        self._phase = f"connecting to {self._where}"
        await client.initialize()
        conn = client.connection
        fresh = conn is None or not conn.is_connected
        if conn is not None and not conn.is_connected:
            await conn.connect()
        self._phase = "waiting for PING"
        pings = []
        for _ in range(self.target.latency_samples):
            t0 = time.perf_counter()
            await self._cmd(client, "PING")
            pings.append((time.perf_counter() - t0) * 1000)
        self._phase = "waiting for INFO"
        own = self._own
        try:
            info = await self._cmd(client, "INFO", *self._sections)
        except NoPermissionError:
            raise
        except ResponseError:
            if not self._sections:
                raise
            self._sections = ()  # Redis < 7 takes one section; the default set has ours
            own = self._own
            info = await self._cmd(client, "INFO")
        info = info if isinstance(info, dict) else {}
        out = _Round(pings, info, own, fresh)
        if not self._sections:
            with contextlib.suppress(ResponseError):  # INFO's default set lacks it
                extra = await self._cmd(client, "INFO", "commandstats")
                if isinstance(extra, dict):
                    info.update(extra)
        if self._slowlog_on:
            self._phase = "waiting for SLOWLOG GET"
            try:
                out.slowlog = await client.slowlog_get(SLOWLOG_FETCH)
                self._own += 1
            except NoPermissionError as exc:
                self._slowlog_on = False
                self._slowlog_note = one_line(redact(
                    f"slowlog: turned off, this user may not run SLOWLOG ({exc})"), 300)
            except ResponseError as exc:
                self._slowlog_on = False
                self._slowlog_note = one_line(redact(
                    f"slowlog: turned off, the server refused SLOWLOG GET ({exc})"), 300)
            except (TypeError, ValueError, KeyError, IndexError) as exc:  # an odd reply shape
                self._slowlog_on = False
                self._slowlog_note = one_line(redact(
                    f"slowlog: turned off, unexpected SLOWLOG GET reply ({exc})"), 300)
        out.clients = await self._client_list(client, info)
        out.bigkeys = await self._big_keys(client)
        return out

    async def _client_list(self, client: Redis,
                           info: dict[str, Any]) -> list[dict[str, Any]] | None:
        if not self.target.client_list or "turned off" in (self._clients_note or ""):
            return None
        connected = _num(info.get("connected_clients")) or 0.0
        if connected > self.target.client_list_max:
            self._clients_note = (f"clients: {connected:.0f} connected, more than client_list_max "
                                  f"({self.target.client_list_max}): CLIENT LIST skipped")
            return None
        self._phase = "waiting for CLIENT LIST"
        try:
            listed = await client.client_list()
            self._own += 1
        except (NoPermissionError, ResponseError) as exc:
            self._clients_note = one_line(redact(
                f"clients: turned off, the server refused CLIENT LIST ({exc})"), 300)
            return None
        self._clients_note = None
        return [c for c in listed if isinstance(c, dict)]

    async def _big_keys(self, client: Redis) -> list[dict[str, Any]] | None:
        """A bounded SCAN sample with MEMORY USAGE per key, every bigkeys_interval."""
        sample = self.target.bigkeys_sample
        now = time.monotonic()
        if not sample or now < self._bigkeys_due or (
                self._bigkeys_note and "turned off" in self._bigkeys_note):
            return None
        self._phase = "sampling keys (SCAN, MEMORY USAGE)"
        found: list[dict[str, Any]] = []
        try:
            cursor, keys = self._bigkeys_cursor, []
            for _ in range(max(1, sample // 100) * 4):  # SCAN may return fewer than COUNT
                cursor, batch = await client.scan(cursor=cursor, count=100)
                self._own += 1
                keys += batch
                if len(keys) >= sample or cursor == 0:
                    break
            self._bigkeys_cursor = int(cursor)
            keys = keys[:sample]
            # One by one: the probe's single connection cannot lend itself to a pipeline,
            # and sequential round trips keep the server's work per call small.
            replies = []
            for key in keys:
                replies.append(await self._cmd(client, "MEMORY", "USAGE", key, "SAMPLES", 5))
                replies.append(await self._cmd(client, "TYPE", key))
        except (NoPermissionError, ResponseError) as exc:
            self._bigkeys_note = one_line(redact(
                f"big keys: turned off, the server refused SCAN or MEMORY USAGE ({exc})"), 300)
            return None
        for i, key in enumerate(keys):
            size = _num(replies[2 * i])
            if size is not None:  # None: the key went away between SCAN and MEMORY USAGE
                found.append({"key": one_line(redact(_text(key)), 200), "bytes": size,
                              "type": one_line(_text(replies[2 * i + 1]), 16)})
        self._bigkeys_due = now + self.target.bigkeys_interval
        found.sort(key=lambda k: k["bytes"], reverse=True)
        self._bigkeys = {"sampled": len(keys), "at": time.time(), "keys": found[:TOP_ROWS]}
        return found

    async def _run(self) -> _Round:
        if self._client is None:
            self._client = self._build_client()
        reused = self._good
        try:
            return await self._once(self._client)
        except _NOT_TRANSIENT:
            raise
        except (redis_errors.ConnectionError, ConnectionError):
            if not reused:
                raise
            await self._drop_socket()
        # One retry, on a fresh socket, inside the same deadline: a restart is not DOWN.
        return await self._once(self._client)

    # -- public ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        """One check; never raises except CancelledError, returns by `timeout` (+ a few ms)."""
        target = self.target
        started = time.time()
        loop = asyncio.get_running_loop()
        self._phase = "waiting for the previous check"
        cm = asyncio.timeout_at(loop.time() + target.timeout)
        try:
            async with cm, self._lock:
                rnd = await self._run()
        except asyncio.CancelledError:
            await self._drop_socket()  # a cancelled command leaves an unread reply behind
            raise
        except Exception as exc:
            await self._drop_socket()
            if cm.expired() or isinstance(exc, redis_errors.TimeoutError | TimeoutError):
                error = one_line(redact(f"timed out after {target.timeout:g}s {self._phase}"))
            else:
                error = describe_error(exc, self._where)
            return CheckResult(
                target=target.name, kind=self.kind, status=Status.DOWN, started_at=started,
                latency_ms=None, error=error,
            )
        self._good = True
        latency_ms = rnd.pings_ms[0]
        metrics = self._metrics(rnd, latency_ms)
        details = self._details(rnd, metrics)
        reasons = self._problems(rnd.info, metrics)
        return CheckResult(
            target=target.name, kind=self.kind,
            status=Status.DEGRADED if reasons else Status.UP, started_at=started,
            latency_ms=latency_ms, reasons=reasons, metrics=metrics, details=details,
        )

    @staticmethod
    def _problems(info: dict[str, Any], m: dict[str, float]) -> tuple[str, ...]:
        out: list[str] = []
        pct = m.get("memory_noeviction_pct")
        if pct is not None and pct > MEMORY_DEGRADED_PCT:
            policy = memory_policy(info)["policy"] or "noeviction"
            out.append(f"memory at {pct:.0f}% of maxmemory "
                       f"({format_bytes(m['used_memory_bytes'])} of "
                       f"{format_bytes(m['maxmemory_bytes'])}) with maxmemory-policy {policy} "
                       "and nothing it may evict: writes fail (OOM) when full")
        if m.get("master_link_up") == 0.0:
            out.append("replica: link to master is down")
        if str(info.get("rdb_last_bgsave_status", "ok")) == "err":
            out.append("last RDB save failed (rdb_last_bgsave_status:err)")
        if str(info.get("aof_last_write_status", "ok")) == "err":
            out.append("last AOF write failed (aof_last_write_status:err)")
        return tuple(out)

    def _slowlog(self, entries: list[Any] | None, m: dict[str, float]) -> list[Row]:
        """Entries newer than the last id seen; ids are sequential, so gaps count too."""
        if entries is None:
            return self._slowlog_recent
        parsed = [e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), int)]
        newest = max((e["id"] for e in parsed), default=None)
        last = self._slowlog_last
        if newest is not None and last is not None and newest < last:
            last = -1  # SLOWLOG RESET or a restart: everything listed is new
        if last is not None:
            m["slowlog_new"] = float(max(0, newest - last)) if newest is not None else 0.0
        if newest is not None:
            self._slowlog_last = newest
        elif last is None:
            self._slowlog_last = -1  # empty slowlog: the next entry (id 0) is new
        recent = []
        for e in parsed:
            words = _text(e.get("command", "")).split(" ")
            cmd = words[0] if words else ""
            # The command and its key: values may be application secrets, never shown.
            shown = words[:1] if cmd.lower() in _SECRET_COMMANDS else words[:2]
            hidden = len(words) - len(shown)
            text = " ".join(shown) + (f" …(+{hidden} args)" if hidden else "")
            recent.append({
                "id": e["id"], "new": last is not None and e["id"] > last,
                "start_time": e.get("start_time"), "duration_us": e.get("duration"),
                "command": one_line(redact(text), 300),
                "client": one_line(_text(e.get("client_address", "")), 64),
                "client_name": one_line(_text(e.get("client_name", "")), 64),
            })
        self._slowlog_recent = recent
        return recent

    def _commands(self, info: dict[str, Any], dt: float | None) -> list[Row]:
        """Per-command calls and µs per call, over the interval where there is one."""
        rows, current = [], {}
        for key, v in info.items():
            if not (str(key).startswith("cmdstat_") and isinstance(v, dict)):
                continue
            name = one_line(str(key)[len("cmdstat_"):], 64)
            calls, usec = _num(v.get("calls")) or 0.0, _num(v.get("usec")) or 0.0
            current[name] = (calls, usec)
            old = self._cmd_prev.get(name) if dt else None
            d_calls = d_usec = None
            if dt and calls >= (old or (0.0, 0.0))[0]:
                o_calls, o_usec = old or (0.0, 0.0)
                d_calls, d_usec = calls - o_calls, usec - o_usec
            rows.append({
                "command": name, "calls": calls, "usec_per_call": _num(v.get("usec_per_call")),
                "rejected_calls": _num(v.get("rejected_calls")),
                "failed_calls": _num(v.get("failed_calls")), "d_calls": d_calls,
                "calls_per_s": None if d_calls is None or not dt else round(d_calls / dt, 3),
                "d_usec_per_call": (round(d_usec / d_calls, 3) if d_calls and d_usec is not None
                                    else None),
            })
        self._cmd_prev = current
        rows.sort(key=lambda r: (r["d_calls"] or 0.0, r["calls"]), reverse=True)
        return rows[:TOP_ROWS * 2]

    def _details(self, rnd: _Round, m: dict[str, float]) -> RedisDetails:
        info = rnd.info
        role = str(info.get("role", ""))
        replication: RedisReplication = {"role": role or None}
        if role == "slave":
            replication.update({
                "master": one_line(f"{info.get('master_host', '')}:"
                                   f"{info.get('master_port', '')}", 128),
                "link_status": one_line(info.get("master_link_status", ""), 16),
                "last_io_s": _num(info.get("master_last_io_seconds_ago")),
            })
        elif role == "master":
            replicas: list[Row] = []
            for key, value in info.items():
                if re.fullmatch(r"slave\d+", str(key)) and isinstance(value, dict):
                    replicas.append({k: one_line(value.get(k, ""), 64)
                                     for k in ("ip", "port", "state", "offset", "lag")})
            replication["replicas"] = replicas
        persistence = {
            k: (one_line(v, 32) if isinstance(v, str) else v) for k, v in info.items()
            if k in ("loading", "rdb_bgsave_in_progress", "rdb_last_bgsave_status",
                     "rdb_changes_since_last_save", "rdb_last_save_time", "aof_enabled",
                     "aof_rewrite_in_progress", "aof_last_bgrewrite_status",
                     "aof_last_write_status")
        }
        keyspace: dict[str, RedisKeyspace] = {
            k: {"keys": _num(v.get("keys")), "expires": _num(v.get("expires")),
                "avg_ttl": _num(v.get("avg_ttl"))}
            for k, v in info.items()
            if str(k).startswith("db") and str(k)[2:].isdigit() and isinstance(v, dict)
        }
        policy = memory_policy(info)
        memory: RedisMemory = {**policy, "used_bytes": m.get("used_memory_bytes"),
                  "maxmemory_bytes": m.get("maxmemory_bytes"), "pct": m.get("memory_pct"),
                  "fragmentation_ratio": m.get("fragmentation_ratio"),
                  "evicted_per_s": m.get("evicted_per_s")}
        clients: RedisClients | None = None
        if rnd.clients is not None:
            rows = [{"id": one_line(str(c.get("id", "")), 20),
                     "name": one_line(_text(c.get("name", "")), 64),
                     "addr": one_line(_text(c.get("addr", "")), 64),
                     "age_s": _num(c.get("age")), "idle_s": _num(c.get("idle")),
                     "db": _num(c.get("db")), "cmd": one_line(_text(c.get("cmd", "")), 32),
                     "flags": one_line(_text(c.get("flags", "")), 16),
                     "user": one_line(_text(c.get("user", "")), 64)} for c in rnd.clients]
            by_idle = sorted(rows, key=lambda c: c["idle_s"] or 0.0, reverse=True)
            clients = {"count": len(rows), "by_idle": by_idle[:TOP_ROWS],
                       "oldest": max(rows, key=lambda c: c["age_s"] or 0.0, default=None)}
        notes = [n for n in (self._slowlog_note, self._clients_note, self._bigkeys_note) if n]
        if policy["evicting"] and (m.get("memory_pct") or 0.0) > MEMORY_DEGRADED_PCT:
            notes.append(f"memory at {m['memory_pct']:.0f}% of maxmemory: evicting "
                         f"({policy['policy']}), as a cache at its limit does")
        return {"memory": memory, "replication": replication, "persistence": persistence,
                "keyspace": keyspace, "commands": self._commands(info, self._last_dt),
                "clients": clients, "latency": {"samples_ms": [round(x, 3) for x in
                                                               rnd.pings_ms]},
                "bigkeys": self._bigkeys, "slowlog": self._slowlog(rnd.slowlog, m),
                "notes": notes}

    def _metrics(self, rnd: _Round, latency_ms: float) -> dict[str, float]:
        info = rnd.info
        m: dict[str, float] = {"latency_ms": latency_ms,
                               "latency_p50_ms": _percentile(rnd.pings_ms, 50),
                               "latency_p99_ms": _percentile(rnd.pings_ms, 99)}
        for name, key in (
            ("used_memory_bytes", "used_memory"),
            ("maxmemory_bytes", "maxmemory"),
            ("fragmentation_ratio", "mem_fragmentation_ratio"),
            ("connected_clients", "connected_clients"),
            ("blocked_clients", "blocked_clients"),
            ("keyspace_hits_total", "keyspace_hits"),
            ("keyspace_misses_total", "keyspace_misses"),
            ("evicted_keys_total", "evicted_keys"),
            ("expired_keys_total", "expired_keys"),
            ("rejected_connections_total", "rejected_connections"),
        ):
            value = _num(info.get(key))
            if value is not None:
                m[name] = value
        used, maxmem = m.get("used_memory_bytes"), m.get("maxmemory_bytes")
        if used is not None and maxmem:
            m["memory_pct"] = used / maxmem * 100
            if not memory_policy(info)["evicting"]:
                m["memory_noeviction_pct"] = m["memory_pct"]
        m["keys_total"] = sum(
            _num(v.get("keys")) or 0.0 for k, v in info.items()
            if k.startswith("db") and k[2:].isdigit() and isinstance(v, dict)
        ) + 0.0
        for k, v in info.items():
            if str(k).startswith("db") and str(k)[2:].isdigit() and isinstance(v, dict):
                keys = _num(v.get("keys"))
                if keys is not None:
                    m[f"keys_{k}"] = keys
        for name, key in (("replicas_connected", "connected_slaves"),
                          ("rdb_changes_since_save", "rdb_changes_since_last_save"),
                          ("aof_enabled", "aof_enabled")):
            value = _num(info.get(key))
            if value is not None:
                m[name] = value
        saved = _num(info.get("rdb_last_save_time"))
        if saved is not None:
            m["rdb_last_save_age_s"] = max(0.0, time.time() - saved)
        if info.get("role") == "slave":
            m["master_link_up"] = 1.0 if info.get("master_link_status") == "up" else 0.0
            last_io = _num(info.get("master_last_io_seconds_ago"))
            if last_io is not None and last_io >= 0:
                m["master_last_io_s"] = last_io
        offset = _num(info.get("master_repl_offset"))
        lags = [offset - o for k, v in info.items()
                if re.fullmatch(r"slave\d+", str(k)) and isinstance(v, dict)
                and offset is not None and (o := _num(v.get("offset"))) is not None]
        if lags:
            m["replica_lag_bytes"] = max(0.0, max(lags))
        if rnd.clients:
            m["clients_idle_max_s"] = max(_num(c.get("idle")) or 0.0 for c in rnd.clients)
            m["clients_oldest_s"] = max(_num(c.get("age")) or 0.0 for c in rnd.clients)
        # Rates over the check interval, from counters (the redis-cli --stat columns).
        now = time.monotonic()
        counts = {name: value for name, key in (
            ("evicted_per_s", "evicted_keys"), ("expired_per_s", "expired_keys"),
            ("hits_per_s", "keyspace_hits"), ("misses_per_s", "keyspace_misses"),
            ("connections_per_s", "total_connections_received"),
            ("rejected_connections_per_s", "rejected_connections"),
            ("ops_per_sec", "total_commands_processed"),
        ) if (value := _num(info.get(key))) is not None}
        before, self._counts = self._counts, (now, counts, rnd.own_before_info)
        self._last_dt = None
        if before is not None and now - before[0] > 1e-3:
            dt = self._last_dt = now - before[0]
            for name, value in counts.items():
                old = before[1].get(name)
                if old is None or value < old:  # a drop is a restart or RESETSTAT
                    continue
                delta = value - old
                if name == "ops_per_sec":
                    if rnd.fresh:  # the handshake's commands were not counted as ours
                        continue
                    delta = max(0.0, delta - (rnd.own_before_info - before[2]))
                m[name] = delta / dt
        hits, misses = m.get("keyspace_hits_total"), m.get("keyspace_misses_total")
        if hits is not None and misses is not None:
            prev, self._lookups = self._lookups, (hits, misses)
            if prev is not None:
                d_hits, d_misses = hits - prev[0], misses - prev[1]
                # Negative: restart or CONFIG RESETSTAT; zero: no lookups, no ratio.
                if d_hits >= 0 and d_misses >= 0 and d_hits + d_misses > 0:
                    m["hit_rate_pct"] = d_hits / (d_hits + d_misses) * 100
        return m

    async def aclose(self) -> None:
        """Release the connection; never hangs (the socket is closed without waiting)."""
        await self._drop_socket()
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(0.5):
                await client.aclose(close_connection_pool=True)
