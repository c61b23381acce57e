"""Operator actions on a database session: cancel or terminate a PostgreSQL backend, kill a
Redis client; each on a connection of its own, opened for the action and closed after.

Why a separate connection and role: the probe's monitoring session is read-only and its role
should not be able to signal other backends; the target's `actions_dsn` / `actions_url`
names a role that may (pg_signal_backend, or an ACL user allowed CLIENT KILL). Nothing here
runs unless the target sets `allow_actions` and the console is not read-only
(`refusal()` says why not). Every call is bounded by the target's `timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from console.engine.config.envref import expand_url
from console.engine.config.schema import PostgresTarget, RedisTarget
from console.engine.probes.postgres import _parse_endpoint, _ssl_choice, describe_error
from console.engine.probes.redis import describe_error as describe_redis_error
from console.engine.text.redact import redact, register_secret
from console.engine.text.sanitize import one_line

ACTION_APPLICATION = "opsconsole-action"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did, in words fit for the incident journal."""

    ok: bool
    text: str


def refusal(target: object, *, read_only: bool) -> str | None:
    """Why an action may not run on this target now, or None when it may."""
    if read_only:
        return "the console runs read-only: no actions on databases"
    if not getattr(target, "allow_actions", False):
        key = "actions_url" if isinstance(target, RedisTarget) else "actions_dsn"
        return (f"{getattr(target, 'name', 'this target')}: actions are off (set "
                f"allow_actions = true and {key}, a separate role for them)")
    return None


async def pg_signal(target: PostgresTarget, pid: int, *, terminate: bool) -> Outcome:
    """pg_cancel_backend(pid), or pg_terminate_backend(pid), as the actions role."""
    func = "pg_terminate_backend" if terminate else "pg_cancel_backend"
    if not target.actions_dsn:
        return Outcome(False, f"{func}({pid}) not sent: no actions_dsn")
    conn = None
    try:
        dsn = expand_url(target.actions_dsn)
        password = urlsplit(dsn).password
        if password:
            register_secret(unquote(password))
        async with asyncio.timeout(target.timeout):
            conn = await asyncpg.connect(
                dsn, timeout=target.timeout, command_timeout=None,
                ssl=_ssl_choice(_parse_endpoint(dsn)), statement_cache_size=0,
                server_settings={"application_name": ACTION_APPLICATION})
            done = await conn.fetchval(f"SELECT pg_catalog.{func}($1)", pid)
    except TimeoutError:
        return Outcome(False, f"{func}({pid}) timed out after {target.timeout:g}s")
    except Exception as exc:
        return Outcome(False, one_line(redact(
            f"{func}({pid}) failed: "
            f"{describe_error(exc, _parse_endpoint(target.actions_dsn), 0)}"), 300))
    finally:
        if conn is not None:
            conn.terminate()  # never wait on a close (asyncpg#1326)
    if not done:
        return Outcome(False, f"{func}({pid}) returned false: no such backend any more")
    return Outcome(True, f"{func}({pid}) sent")


async def redis_client_kill(target: RedisTarget, client_id: str) -> Outcome:
    """CLIENT KILL ID <id> as the actions user."""
    if not target.actions_url:
        return Outcome(False, f"CLIENT KILL ID {client_id} not sent: no actions_url")
    client = None
    try:
        url = expand_url(target.actions_url)
        parts = urlsplit(url)
        if parts.password:
            register_secret(unquote(parts.password))
        client = Redis.from_url(url, socket_timeout=target.timeout,
                                socket_connect_timeout=target.timeout, protocol=2,
                                retry=Retry(NoBackoff(), 0), decode_responses=True)
        async with asyncio.timeout(target.timeout):
            killed = await client.execute_command("CLIENT", "KILL", "ID", str(client_id))
    except TimeoutError:
        return Outcome(False, f"CLIENT KILL ID {client_id} timed out after {target.timeout:g}s")
    except Exception as exc:  # any failure is an outcome to report, never a crash
        return Outcome(False, one_line(redact(
            f"CLIENT KILL ID {client_id} failed: "
            f"{describe_redis_error(exc, parts_where(target.actions_url))}"), 300))
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await client.aclose()
    if not killed:
        return Outcome(False, f"CLIENT KILL ID {client_id}: no such client any more")
    return Outcome(True, f"CLIENT KILL ID {client_id} done")


def parts_where(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else "the server"
    except ValueError:
        return "the server"
