"""The shared HTTP client layout: httpx as the API, one aiohttp connection pool underneath.

Why this shape (measured on this machine, 100 local endpoints polled concurrently, client CPU
per request; `bench/bench_http_cpu.py` re-measures it):

- httpx's default transport (httpcore) costs ~7.7 ms per request at that concurrency: its pool
  scans every connection on each request (encode/httpx#3215).
- `httpx.AsyncClient` over httpx_aiohttp's `AiohttpTransport` costs ~0.5 ms through
  `client.get()` and ~0.25 ms with prebuilt requests, against ~0.13-0.16 ms for a bare
  aiohttp loop: request building, cookie extraction (http.cookiejar, ~20 % of the profile),
  header conversion on every request and httpx's decoder/chunker stack.
- `LeanTransport` below (an httpx transport: httpx.Request in, httpx.Response out) costs the
  same as bare aiohttp: it caches the aiohttp form of a request (yarl URL, CIMultiDict
  headers) on the request itself, so a probe that reuses one prebuilt `httpx.Request` per
  target pays for URL parsing and header normalisation once, not on every check.

Isolation: one `aiohttp.TCPConnector` with no total and no per-host limit. aiohttp pools
connections per (host, port, TLS settings), so a hanging host only ever holds the
connections of its own in-flight checks (one per target, closed when the check's deadline
cancels it) and can never exhaust a slot that a healthy host needs. One session for every
target (rather than one per target) keeps one DNS cache and one cleanup timer.
A client (session + connector) per target was measured as well: the same CPU per check
(155 vs 150 us, 100 targets), but 100 sessions, cleanup timers, DNS caches and TLS contexts
(each loading the CA store) for no isolation gain over per-host pooling.

DNS: aiohttp's default resolver runs getaddrinfo on the loop's *default* executor, shared
with everything else that uses `run_in_executor(None, ...)` (cpython#112169): a few hosts
whose DNS hangs would queue every other lookup and every other user of that pool.
`DedicatedResolver` runs lookups on the console's own pool of daemon threads (so a stuck
lookup never delays quitting either); aiohttp already single-flights lookups per host, so a
hanging name holds at most one thread.

TLS: verification is on by default with the system trust store (where a bastion's internal
CA is normally installed; certifi when the system has none). `insecure=True` and `ca_file`
are per target; each distinct setting gets its own `ssl.SSLContext`, passed per request, so
all of them share the one pool (aiohttp keys pooled connections by TLS settings too).
"""

from __future__ import annotations

import asyncio
import os
import queue
import socket
import ssl
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDict
from yarl import URL

__all__ = [
    "DedicatedResolver",
    "HttpClients",
    "LeanTransport",
    "TlsConfigError",
    "read_capped",
]

USER_AGENT = "opsconsole/0.1 (health check)"
_AIOHTTP_FORM = "opsconsole.aiohttp"  # request.extensions key: cached (yarl URL, headers)
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)


class TlsConfigError(ValueError):
    """A ca_file that cannot be loaded; the message names the file, never its contents."""


# -- DNS ---------------------------------------------------------------------------------


GetAddrInfo = Callable[..., list[tuple[Any, ...]]]


class _DaemonPool(Executor):
    """A minimal thread pool of *daemon* threads, started on demand.

    `ThreadPoolExecutor` threads are joined at interpreter exit, so one getaddrinfo stuck on
    a black-holed DNS server (glibc waits 5 s x attempts x servers) would hold up quitting
    the console (measured: exit 4.7 s late with a 4 s lookup). A lookup has no state worth
    waiting for, so these threads are simply abandoned at exit.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max = max_workers
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]
                                       | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._pending = 0  # submitted and not finished: queued or running
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if kwargs:
            raise TypeError("keyword arguments are not supported")
        fut: Future[Any] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new lookups after shutdown")
            self._queue.put((fut, fn, args))
            self._pending += 1
            if self._pending > self._threads and self._threads < self._max:
                self._threads += 1
                threading.Thread(
                    target=self._work, name=f"{self._name}-{self._threads}", daemon=True
                ).start()
        return fut

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            fut, fn, args = item
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args))
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiter
                        fut.set_exception(exc)
            finally:
                with self._lock:
                    self._pending -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = self._threads
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None and item[0].cancel():
                    with self._lock:
                        self._pending -= 1
        for _ in range(threads):
            self._queue.put(None)  # idle workers exit; a stuck one exits when its call returns


class DedicatedResolver(AbstractResolver):
    """getaddrinfo on a private pool of daemon threads, never on the loop's default executor.

    `getaddrinfo` is injectable so tests can stand in for a black-holed or NXDOMAIN-ing DNS
    server without sending packets off the machine; production uses `socket.getaddrinfo`.
    Threads are created on demand, so a large `max_workers` costs nothing until names hang.
    """

    def __init__(self, *, max_workers: int = 64, getaddrinfo: GetAddrInfo | None = None) -> None:
        self._pool = _DaemonPool(max_workers, "opsconsole-dns")
        self._getaddrinfo = getaddrinfo or socket.getaddrinfo

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.run_in_executor(
            self._pool, self._lookup, host, port, family
        )
        hosts: list[ResolveResult] = []
        for fam, _, proto, _, address in infos:
            if fam == socket.AF_INET6:
                if len(address) < 3:  # IPv6 not supported by this Python build
                    continue
                if address[3]:  # link-local: keep the scope id
                    resolved, _port = socket.getnameinfo(
                        address, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
                    )
                    port_out = int(_port)
                else:
                    resolved, port_out = address[0], address[1]
            elif fam == socket.AF_INET:
                resolved, port_out = address[0], address[1]
            else:
                continue
            hosts.append(
                ResolveResult(
                    hostname=host, host=resolved, port=port_out, family=fam, proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not hosts:
            raise OSError(socket.EAI_NONAME, f"no usable address for {host}")
        return hosts

    def _lookup(self, host: str, port: int, family: int) -> list[tuple[Any, ...]]:
        return self._getaddrinfo(
            host, port, family, socket.SOCK_STREAM, 0, getattr(socket, "AI_ADDRCONFIG", 0)
        )

    async def close(self) -> None:
        # Never wait for a hung lookup: its thread finishes (or not) on its own.
        self._pool.shutdown(wait=False, cancel_futures=True)


# -- transport ---------------------------------------------------------------------------


def _to_httpx(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """The httpx exception matching an aiohttp one; the original stays as __cause__."""
    msg = str(exc) or type(exc).__name__
    cls: type[httpx.TransportError]
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        cls = httpx.ConnectTimeout
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        cls = httpx.ReadTimeout
    elif isinstance(exc, aiohttp.ClientConnectorError):  # DNS, refused, TLS, certificate
        cls = httpx.ConnectError
    elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
                    | aiohttp.ClientResponseError):
        cls = httpx.RemoteProtocolError
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        cls = httpx.UnsupportedProtocol
    elif isinstance(exc, OSError):  # ClientOSError: reset, broken pipe
        cls = httpx.ReadError
    else:
        cls = httpx.TransportError
    return cls(msg, request=request)


class _ResponseStream(httpx.AsyncByteStream):
    """The body straight from aiohttp's buffer, in whatever chunks have arrived."""

    __slots__ = ("_request", "_response")

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except (aiohttp.ClientError, OSError) as exc:
            raise _to_httpx(exc, self._request) from exc

    async def aclose(self) -> None:
        # An unfinished body makes aiohttp close the connection instead of pooling it.
        self._response.release()


class LeanTransport(httpx.AsyncBaseTransport):
    """An httpx transport on a shared aiohttp session, with one TLS setting.

    Differences from httpx_aiohttp.AiohttpTransport, all for CPU or correctness:
    the aiohttp form of a request is cached on `request.extensions`, so a reused request is
    not re-parsed; timeouts are prebuilt objects; errors map to the precise httpx class
    (a server that disconnects is a RemoteProtocolError, not a ConnectTimeout); bodies are
    never decompressed here (the caller caps and decodes them). `aclose()` is a no-op when the
    session is shared: `HttpClients` owns it.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext],
        *,
        owns_session: bool = False,
    ) -> None:
        self._session = session
        # A factory is called on the first https:// request only: loading the CA bundle
        # costs tens of milliseconds, wasted on a plain-http target (`check --once URL`).
        self._ssl: ssl.SSLContext | None = None
        self._ssl_factory: Callable[[], ssl.SSLContext] | None = None
        if isinstance(ssl_context, ssl.SSLContext):
            self._ssl = ssl_context
        else:
            self._ssl_factory = ssl_context
        self._owns = owns_session
        self._timeouts: dict[tuple[Any, ...], aiohttp.ClientTimeout] = {}

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        t = request.extensions.get("timeout")
        if not t:
            return _NO_TIMEOUT
        key = (t.get("connect"), t.get("read"), t.get("pool"))
        found = self._timeouts.get(key)
        if found is None:
            found = aiohttp.ClientTimeout(
                total=None, sock_connect=key[0], sock_read=key[1], connect=key[2]
            )
            if len(self._timeouts) < 64:
                self._timeouts[key] = found
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        form = request.extensions.get(_AIOHTTP_FORM)
        if form is None:
            headers = CIMultiDict(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
            )
            form = (URL(str(request.url), encoded=True), headers)
            request.extensions[_AIOHTTP_FORM] = form
        url, headers = form
        tls: ssl.SSLContext | bool | None = self._ssl
        if tls is None:
            if url.scheme == "https":
                assert self._ssl_factory is not None
                tls = self._ssl = self._ssl_factory()
            else:
                tls = True  # aiohttp's default; a plain-http request never uses it
        data: Any
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = _iter_stream(request.stream)
        try:
            response = await self._session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False,
                auto_decompress=False, ssl=tls, timeout=self._timeout(request),
                server_hostname=request.extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise _to_httpx(exc, request) from exc
        ext: dict[str, Any] = {
            "http_version": b"HTTP/1.0" if response.version == (1, 0) else b"HTTP/1.1"
        }
        if response.reason:
            ext["reason_phrase"] = response.reason.encode("latin-1", "replace")
        return httpx.Response(
            response.status, headers=response.raw_headers,
            stream=_ResponseStream(response, request), request=request, extensions=ext,
        )

    async def aclose(self) -> None:
        if self._owns:
            await self._session.close()


async def _iter_stream(stream: Any) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The raw (still encoded) body, at most `limit` bytes, and whether more was left unread.

    Reads straight from the transport stream, so a 50 MB body costs `limit` bytes of memory
    and the connection is dropped rather than drained. The caller closes the response.
    """
    parts: list[bytes] = []
    size = 0
    stream = response.stream
    if isinstance(stream, _ResponseStream):
        # Our own transport: read aiohttp's buffer directly (no async generator per check).
        content = stream._response.content
        try:
            while chunk := await content.readany():
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    return b"".join(parts)[:limit], True
        except (aiohttp.ClientError, OSError) as exc:
            raise _to_httpx(exc, stream._request) from exc
    else:
        # the ignore below: httpx types Response.stream as sync-or-async; a response of our async
        # transport is always async
        async for chunk in stream:  # type: ignore[union-attr]
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(parts)[:limit], True
    return (parts[0] if len(parts) == 1 else b"".join(parts)), False


# -- the owner ---------------------------------------------------------------------------


def _default_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    paths = ssl.get_default_verify_paths()
    has_store = (paths.cafile and os.path.exists(paths.cafile)) or (
        paths.capath and os.path.isdir(paths.capath) and os.listdir(paths.capath)
    )
    if not has_store:  # a minimal container without a CA bundle: fall back to certifi
        import certifi

        ctx.load_verify_locations(certifi.where())
    return ctx


class HttpClients:
    """Every HTTP connection the console makes: one pool, one transport per TLS setting.

    Create it inside the running loop (aiohttp binds its session to the loop) and close it
    with `aclose()`; `async with HttpClients() as clients:` does both.
    """

    def __init__(
        self,
        *,
        resolver: AbstractResolver | None = None,
        keepalive: float = 15.0,
        dns_ttl: int = 10,
    ) -> None:
        asyncio.get_running_loop()  # fail early and clearly outside a loop
        self._resolver = resolver if resolver is not None else DedicatedResolver()
        self._owns_resolver = resolver is None
        extra: dict[str, Any] = {}
        if sys.version_info < (3, 12, 7):
            # CPython before 3.12.7 could leak SSL transports that never finish closing.
            extra["enable_cleanup_closed"] = True
        self._connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, resolver=self._resolver, ttl_dns_cache=dns_ttl,
            keepalive_timeout=keepalive, **extra,
        )
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # a health check carries no state across checks
            timeout=_NO_TIMEOUT,  # every caller has its own hard deadline
            auto_decompress=False,
            trust_env=False,
        )
        self._fresh_session: aiohttp.ClientSession | None = None
        self._keepalive = keepalive
        self._dns_ttl = dns_ttl
        self._extra = extra
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}
        self._transports: dict[tuple[bool, str | None, bool], LeanTransport] = {}
        self._closed = False

    async def __aenter__(self) -> HttpClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._closed

    def ssl_context(self, *, insecure: bool = False, ca_file: str | None = None) -> ssl.SSLContext:
        """The (cached) context for one TLS setting; raises TlsConfigError for a bad ca_file.

        With `ca_file`, only that CA is trusted (an internal CA for an internal target).
        `insecure` disables verification entirely, for this target only.
        """
        key = (bool(insecure), None if insecure else ca_file)
        ctx = self._contexts.get(key)
        if ctx is not None:
            return ctx
        if insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CA store to load: nothing checked
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif ca_file:
            path = os.path.expanduser(ca_file)
            try:
                ctx = ssl.create_default_context(cafile=path)
            except FileNotFoundError:
                raise TlsConfigError(f"ca_file {ca_file} does not exist") from None
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
                raise TlsConfigError(f"ca_file {ca_file} cannot be loaded ({reason})") from None
        else:
            ctx = _default_context()
        self._contexts[key] = ctx
        return ctx

    def transport(
        self, *, insecure: bool = False, ca_file: str | None = None, fresh: bool = False
    ) -> LeanTransport:
        """The shared transport for one TLS setting (cheap to call; cached).

        `fresh=True` gives a transport that never reuses or keeps a connection: for POST and
        PATCH checks, which aiohttp (rightly) does not retry when a pooled connection turns
        out to have been closed by the server, so a reused one could report a false DOWN.
        """
        if self._closed:
            raise RuntimeError("HttpClients is closed")
        key = (bool(insecure), None if insecure else ca_file, fresh)
        t = self._transports.get(key)
        if t is None:
            ctx: ssl.SSLContext | Callable[[], ssl.SSLContext]
            if insecure or ca_file:  # built now: a bad ca_file is a setup error, said early
                ctx = self.ssl_context(insecure=insecure, ca_file=ca_file)
            else:
                ctx = self.ssl_context  # the CA bundle: loaded on the first https request
            t = LeanTransport(self._fresh() if fresh else self._session, ctx)
            self._transports[key] = t
        return t

    def _fresh(self) -> aiohttp.ClientSession:
        if self._fresh_session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, resolver=self._resolver, ttl_dns_cache=self._dns_ttl,
                force_close=True, **self._extra,
            )
            self._fresh_session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), timeout=_NO_TIMEOUT,
                auto_decompress=False, trust_env=False,
            )
        return self._fresh_session

    def client(
        self, *, insecure: bool = False, ca_file: str | None = None, **kwargs: Any
    ) -> httpx.AsyncClient:
        """A plain `httpx.AsyncClient` on the shared pool, for code that wants the client API.

        Closing it does not close the pool. Probes on a hot path should rather prebuild one
        `httpx.Request` and call `transport(...).handle_async_request()` (see probes/http.py).
        """
        kwargs.setdefault("headers", {"user-agent": USER_AGENT})
        return httpx.AsyncClient(
            transport=self.transport(insecure=insecure, ca_file=ca_file), **kwargs
        )

    async def aclose(self) -> None:
        """Close every connection; never waits on a hung DNS lookup."""
        if self._closed:
            return
        self._closed = True
        await self._session.close()
        if self._fresh_session is not None:
            await self._fresh_session.close()
        if self._owns_resolver:
            await self._resolver.close()
