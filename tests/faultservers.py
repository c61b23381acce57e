"""Real HTTP(S) fault servers on 127.0.0.1 for tests: healthy, slow, silent, dripping, resetting.

Every server is a real asyncio TCP server on an ephemeral 127.0.0.1 port, used as an async
context manager inside the test's own event loop::

    async with json_server(terminus(redis="down")) as srv:
        probe = HttpProbe(HttpTarget(name="api", url=srv.url("/health")), clients)

Nothing is mocked below the socket, so deadlines, isolation and connection cleanup are tested
for real. Each server counts connections (`accepted`, `open_connections`) and records the
requests it parsed (`requests`), so tests can assert that a method, header or body reached it
and that no connection was leaked. On exit every connection is aborted and every handler task
cancelled, so a hanging behaviour never outlives its test.

Behaviours: `http_server` (routes or a function of the request), `json_server`,
`hang_server` (accepts, never answers), `one_request_per_connection_server` (the keep-alive
race), `drip_server` (headers then 1 byte per interval, or the
status line itself dripped), `reset_server` (RST), `huge_body_server` (50 MB by default),
`malformed_json_server`, `garbage_server` (not HTTP at all), `redirect_loop_server`,
`redirect_chain_server`, `escape_server` (terminal escapes and Rich/Textual markup in body,
headers and reason), and `tls_server` (good, self-signed, untrusted CA, wrong host, expired)
with `TlsMaterials` for the CA file a client should trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import struct
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trustme

__all__ = [
    "ESCAPE_BODY",
    "TERMINUS_OK",
    "FaultServer",
    "RecordedRequest",
    "Route",
    "TlsMaterials",
    "drip_server",
    "escape_server",
    "garbage_server",
    "hang_server",
    "http_server",
    "huge_body_server",
    "json_server",
    "malformed_json_server",
    "one_request_per_connection_server",
    "read_request",
    "redirect_chain_server",
    "redirect_loop_server",
    "reset_server",
    "response_bytes",
    "terminus",
    "tls_server",
]

HOST = "127.0.0.1"


def terminus(messages: dict[str, str] | None = None, **deps: str) -> dict[str, Any]:
    """A NestJS terminus health body; `terminus(database="up", redis="down")`.

    Dependencies that are "up" go to `info`, the others to `error`; `details` has all, and
    the top-level status is "ok" only when every dependency is up (as terminus does).
    `messages` adds a down indicator's `message` (TypeOrmHealthIndicator's, for example).
    """
    deps = deps or {"database": "up", "redis": "up"}
    messages = messages or {}

    def indicator(k: str, v: str) -> dict[str, Any]:
        return {"status": v, **({"message": messages[k]} if k in messages else {})}

    info = {k: indicator(k, v) for k, v in deps.items() if v == "up"}
    error = {k: indicator(k, v) for k, v in deps.items() if v != "up"}
    return {
        "status": "ok" if not error else "error",
        "info": info,
        "error": error,
        "details": {k: indicator(k, v) for k, v in deps.items()},
    }


TERMINUS_OK: dict[str, Any] = terminus(database="up", redis="up")

# Terminal escape sequences and markup a hostile or broken endpoint could send.
ESCAPE_BODY = (
    '{"status":"ok","note":"'
    "\x1b]52;c;cHduZWQ=\x07"  # OSC 52 clipboard write
    "\x1b[2J\x1b[H"  # clear screen, cursor home
    "\x1b]0;fake title\x07"
    "\u009b31m"  # C1 CSI
    "[red]pwn[/] [@click=app.quit]click[/] [link=https://evil.example]ok[/link] [/"
    "\u202eevil\u202c"  # right-to-left override
    'done"}'
)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server parsed it (header names lower-cased)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class Route:
    """What `http_server` answers: status, body (bytes, str, or JSON-able), headers, delay."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    reason: str | None = None


Handler = Callable[["FaultServer", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RouteSpec = Route | Mapping[str, Route] | Callable[[RecordedRequest], Route | Awaitable[Route]]


@dataclass(eq=False)
class FaultServer:
    """A TCP (optionally TLS) server on 127.0.0.1:<ephemeral> running `handler` per connection."""

    handler: Handler
    ssl_context: ssl.SSLContext | None = None
    host: str = HOST
    port: int = 0
    accepted: int = 0
    open_connections: int = 0
    bytes_sent: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _cleanups: list[Callable[[], None]] = field(default_factory=list)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    def url(self, path: str = "/", *, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    async def __aenter__(self) -> FaultServer:
        # port=0 picks an ephemeral port; setting `port` first restarts a server in place.
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, ssl=self.ssl_context, backlog=256,
            ssl_handshake_timeout=5.0 if self.ssl_context else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None
        for cleanup in self._cleanups:
            cleanup()
        self._cleanups.clear()

    async def wait_idle(self, within: float = 2.0) -> bool:
        """Wait until no connection is open (the client closed them all); False on timeout."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.accepted += 1
        self.open_connections += 1
        self._idle.clear()
        try:
            await self.handler(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ssl.SSLError, OSError):
            pass
        except asyncio.CancelledError:
            # Our own shutdown: end quietly (asyncio's stream callback would log a
            # cancelled handler task as an error).
            pass
        finally:
            self.open_connections -= 1
            if not self.open_connections:
                self._idle.set()
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.transport.abort()

    async def send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        self.bytes_sent += len(data)
        await writer.drain()


# -- HTTP/1.1 plumbing -------------------------------------------------------------------


async def read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    """One request (Content-Length or chunked body); None when the client closed cleanly."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    elif (n := int(headers.get("content-length", "0") or 0)) > 0:
        body = await reader.readexactly(n)
    return RecordedRequest(method, target, headers, body)


def _body_bytes(body: bytes | str | dict[str, Any] | list[Any]) -> tuple[bytes, str | None]:
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return json.dumps(body).encode(), "application/json"


def response_bytes(
    status: int,
    body: bytes | str | dict[str, Any] | list[Any] = b"",
    headers: tuple[tuple[str, str], ...] | Mapping[str, str] = (),
    *,
    reason: str | None = None,
    head: bool = False,
) -> bytes:
    """A complete HTTP/1.1 response with Content-Length (raw bytes, so tests can break it)."""
    data, ctype = _body_bytes(body)
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    names = {k.lower() for k, _ in items}
    if ctype and "content-type" not in names:
        items.append(("Content-Type", ctype))
    if "content-length" not in names:
        items.append(("Content-Length", str(len(data))))
    phrase = reason if reason is not None else _REASONS.get(status, "Status")
    out = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    out += b"".join(f"{k}: {v}\r\n".encode() for k, v in items)
    return out + b"\r\n" + (b"" if head else data)


_REASONS = {200: "OK", 204: "No Content", 301: "Moved Permanently", 302: "Found",
            303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect",
            404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


def http_server(routes: RouteSpec, *, ssl_context: ssl.SSLContext | None = None) -> FaultServer:
    """A keep-alive HTTP/1.1 server; `routes` is one Route, {path: Route}, or f(request)."""

    async def handle(srv: FaultServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        while (req := await read_request(reader)) is not None:
            srv.requests.append(req)
            if isinstance(routes, Route):
                route = routes
            elif isinstance(routes, Mapping):
                route = routes.get(req.path, Route(404, {"error": "not found"}))
            else:
                got = routes(req)
                route = await got if asyncio.iscoroutine(got) else got  # type: ignore[assignment]
            if route.delay:
                await asyncio.sleep(route.delay)
            closing = req.headers.get("connection", "").lower() == "close"
            headers = route.headers + ((("Connection", "close"),) if closing else ())
            await srv.send(writer, response_bytes(
                route.status, route.body, headers, reason=route.reason,
                head=req.method == "HEAD",
            ))
            if closing:
                break

    return FaultServer(handle, ssl_context=ssl_context)


def json_server(
    body: dict[str, Any] | list[Any] | None = None, *, status: int = 200, delay: float = 0.0,
    headers: tuple[tuple[str, str], ...] = (),
) -> FaultServer:
    """Answers every path with one JSON body (terminus "all up" by default)."""
    return http_server(Route(status, TERMINUS_OK if body is None else body, headers, delay))


def hang_server() -> FaultServer:
    """Accepts connections, reads whatever comes, never answers (a black-holed service)."""

    async def handle(srv: FaultServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass  # say nothing; the connection ends only when the client closes it

    return FaultServer(handle)


def drip_server(*, interval: float = 1.0, headers_first: bool = True,
                length: int = 1000) -> FaultServer:
    """One byte per `interval`: of the body after prompt headers, or of the status line."""

    async def handle(srv: FaultServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if headers_first:
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {length}\r\n\r\n").encode()
            await srv.send(writer, head)
            data = b"x" * length
        else:
            data = response_bytes(200, "x" * length)
        for i in range(len(data)):
            await srv.send(writer, data[i:i + 1])
            await asyncio.sleep(interval)

    return FaultServer(handle)


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def reset_server(*, after_request: bool = False) -> FaultServer:
    """Sends a TCP RST right after accept (or after reading the request)."""

    async def handle(srv: FaultServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        if after_request:
            await read_request(reader)
        _rst(writer)

    return FaultServer(handle)


def huge_body_server(size: int = 50_000_000, *, chunk: int = 65536,
                     declare_length: bool = True) -> FaultServer:
    """A 200 with a `size`-byte body streamed as fast as the client reads it."""

    async def handle(srv: FaultServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        head += f"Content-Length: {size}\r\n\r\n" if declare_length else "Connection: close\r\n\r\n"
        await srv.send(writer, head.encode())
        block = b"A" * chunk
        sent = 0
        while sent < size:
            part = block if size - sent >= chunk else block[: size - sent]
            await srv.send(writer, part)
            sent += len(part)

    return FaultServer(handle)


def one_request_per_connection_server(body: dict[str, Any] | None = None) -> FaultServer:
    """Answers the first request on a connection; closes silently on the second.

    That is the race every keep-alive client meets: the server's idle timeout closes the
    connection just as the client reuses it. A correct client retries an idempotent request
    once on a fresh connection instead of reporting the server down.
    """

    async def handle(srv: FaultServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        req = await read_request(reader)
        if req is None:
            return
        srv.requests.append(req)
        await srv.send(writer, response_bytes(200, TERMINUS_OK if body is None else body))
        second = await read_request(reader)
        if second is not None:
            srv.extra["dropped"] = srv.extra.get("dropped", 0) + 1

    return FaultServer(handle)


def malformed_json_server() -> FaultServer:
    """200 application/json whose body is cut mid-object."""
    return http_server(Route(200, b'{"status": "ok", "info": {"database": {"sta',
                             (("Content-Type", "application/json"),)))


def garbage_server(data: bytes = b"SSH-2.0-OpenSSH_9.2p1\r\n\r\n") -> FaultServer:
    """Answers with bytes that are not HTTP at all, then closes."""

    async def handle(srv: FaultServer, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await srv.send(writer, data)
        writer.close()

    return FaultServer(handle)


def redirect_loop_server(status: int = 302) -> FaultServer:
    """/a -> /b -> /a -> ... forever."""

    def route(req: RecordedRequest) -> Route:
        nxt = "/b" if req.path == "/a" else "/a"
        return Route(status, b"", (("Location", nxt),))

    return http_server(route)


def redirect_chain_server(hops: int, *, status: int = 302,
                          final: Route | None = None) -> FaultServer:
    """/hop/N -> /hop/N-1 -> ... -> /hop/0, which answers `final` (terminus OK by default)."""
    end = final or Route(200, TERMINUS_OK)

    def route(req: RecordedRequest) -> Route:
        parts = req.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "hop" and parts[1].isdigit():
            n = int(parts[1])
            if n == 0:
                return end
            return Route(status, b"", (("Location", f"/hop/{n - 1}"),))
        return Route(404, {"error": "not found"})

    srv = http_server(route)
    srv.extra["start"] = f"/hop/{hops}"
    return srv


def escape_server() -> FaultServer:
    """A JSON body, headers and reason phrase full of terminal escapes and markup."""
    headers = (
        ("Content-Type", "application/json"),
        ("X-Markup", "[bold red]ALERT[/] [@click=app.quit]x[/]"),
        ("X-Escape", "before\x1b[2Jafter\x1b]52;c;cHduZWQ=\x07"),
    )
    return http_server(Route(200, ESCAPE_BODY.encode(), headers, reason="OK \x1b[31m[red]x[/]"))


# -- TLS -------------------------------------------------------------------------------------


class TlsMaterials:
    """A test CA (written to a temporary PEM file) and server contexts of every flavour."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        fd, self.ca_file = tempfile.mkstemp(prefix="opsconsole-test-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(self.ca.cert_pem.bytes())

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.ca_file)

    def server_context(self, kind: str = "good") -> ssl.SSLContext:
        """good | wrong_host | expired | untrusted (unknown CA) | self_signed."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if kind == "good":
            self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        elif kind == "wrong_host":
            self.ca.issue_cert("other.example").configure_cert(ctx)
        elif kind == "expired":
            now = dt.datetime.now(dt.UTC)
            self.ca.issue_cert(
                "127.0.0.1", "localhost", not_before=now - dt.timedelta(days=30),
                not_after=now - dt.timedelta(days=1),
            ).configure_cert(ctx)
        elif kind == "untrusted":
            trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        elif kind == "self_signed":
            other = trustme.CA()  # serve a CA's own self-signed certificate as the leaf
            with other.cert_pem.tempfile() as cert, other.private_key_pem.tempfile() as key:
                ctx.load_cert_chain(cert, key)
        else:
            raise ValueError(kind)
        return ctx


def tls_server(kind: str = "good", routes: RouteSpec | None = None) -> FaultServer:
    """An HTTPS server; `srv.extra["tls"].ca_file` is the CA a client should trust.

    For kind="good" the certificate is valid for 127.0.0.1 and localhost, signed by that CA.
    """
    tls = TlsMaterials()
    srv = http_server(routes if routes is not None else Route(200, TERMINUS_OK),
                      ssl_context=tls.server_context(kind))
    srv.extra["tls"] = tls
    srv._cleanups.append(tls.close)
    return srv
