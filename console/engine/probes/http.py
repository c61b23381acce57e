"""HTTP(S) health checks: status, keyword and body conditions, latency, under one hard deadline.

One `HttpProbe` per target. Everything that can be decided once is decided in `__init__`:
`${ENV}` references are resolved, the `httpx.Request` is built (and reused by every check,
so URL parsing and header normalisation are paid once), conditions are parsed. A check then
runs the request, redirects and capped body read inside a single `asyncio.timeout`, so it
returns within the target's timeout whatever the failure: DNS, connect, TLS, a silent
server, a server that drips one byte a second, or a 50 MB body.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import httpx

from console.engine.config.envref import ENV_REF, SECRET_HEADERS, MissingEnv, expand
from console.engine.details import HealthJson, HttpDetails
from console.engine.lang.conditions import CheckContext, Condition, parse_condition
from console.engine.model import CheckResult, ResponseInfo, Status
from console.engine.probes.health import HealthBody, is_core, parse_health
from console.engine.probes.http_client import USER_AGENT, HttpClients, TlsConfigError, read_capped
from console.engine.text.fmt import format_duration
from console.engine.text.redact import MASK, describe_exception, redact
from console.engine.text.redact import generation as redact_generation
from console.engine.text.sanitize import clean, one_line

if TYPE_CHECKING:  # the model is only a type here: `check --once URL` runs without pydantic
    from console.engine.config.schema import HttpTarget

__all__ = ["HttpProbe"]

EXCERPT_CHARS = 2048
MAX_HEADERS_SHOWN = 64
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# aiohttp retries a request once on a stale pooled connection only for idempotent methods;
# these get a fresh connection per check instead (HttpClients.transport(fresh=True)).
_NOT_RETRIED = frozenset({"POST", "PATCH"})
_MASKED_RESPONSE_HEADERS = frozenset({"set-cookie", "authorization", "proxy-authenticate",
                                      "www-authenticate", "cookie"})
_DEFAULT_HEADERS = {
    "user-agent": USER_AGENT,
    "accept": "*/*",
    # Decoded here with a cap (no decompression bombs); br/zstd are never asked for.
    "accept-encoding": "gzip, deflate",
}


class _CheckFailedError(Exception):
    """A failure this module detected itself (redirects, decoding); message is final."""


class _Progress:
    """How far a check got, so a deadline can say where it stopped."""

    __slots__ = ("headers_at", "reason", "status_code")

    def __init__(self) -> None:
        self.headers_at: float | None = None
        self.status_code: int | None = None
        self.reason = ""


def _register_userinfo(url: str) -> None:
    """A password in the URL goes out as HTTP Basic, base64 of ``user:password``: a server
    that echoes request headers in its body must not show it either."""
    from urllib.parse import unquote, urlsplit

    from console.engine.text.redact import register_secret

    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return
    if password:
        register_secret(unquote(password), user=unquote(user or ""))


class HttpProbe:
    """Checks one HttpTarget; `check()` never raises (except CancelledError)."""

    kind = "http"
    keeps_deadline = True
    """`check()` runs wholly under its own `timeout` and turns its expiry into a DOWN
    result: the scheduler adds no backstop timer of its own."""

    def __init__(
        self, target: HttpTarget, clients: HttpClients, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.target = target
        self._clock = clock
        self._timeout = float(target.timeout)
        self._timeout_text = format_duration(self._timeout)
        self._setup_error: str | None = None
        self._closed = False
        self._request: httpx.Request | None = None
        self._url_text = ""
        self._transport: httpx.AsyncBaseTransport | None = None
        self._head = target.method == "HEAD"
        self._max_body = int(target.max_body)
        self._follow = target.follow_redirects
        self._max_redirects = target.max_redirects
        self._slow_ms = None if target.slow is None else target.slow * 1000.0
        self._keyword = target.keyword.encode() if target.keyword else None
        self._keyword_absent = target.keyword_absent.encode() if target.keyword_absent else None
        self._core = set(target.core_components)
        self._health_cache: tuple[bytes, list[str], dict[str, float],
                                  HttpDetails] | None = None
        # The last check's response and metrics: a check that sees what the previous one saw
        # keeps the previous one's objects (the scheduler holds a target's last 50 results,
        # and a healthy service answers the same headers and body every time).
        self._last_info: ResponseInfo | None = None
        self._last_metrics: dict[str, float] = {}
        self._down: tuple[Condition, ...] = ()
        self._degraded: tuple[Condition, ...] = ()
        try:  # validated with the config already; this guards hand-built targets
            self._down = tuple(parse_condition(t) for t in target.down_unless)
            self._degraded = tuple(parse_condition(t) for t in target.degraded_unless)
        except ValueError as exc:
            self._setup_error = one_line(f"invalid condition: {exc}", 300)
        codes: set[int] = set()
        classes: set[int] = set()
        for s in target.expect_status:
            if isinstance(s, int):
                codes.add(s)
            else:
                classes.add(int(s[0]))
        self._codes = frozenset(codes)
        self._classes = frozenset(classes)
        self._expect_text = ", ".join(str(s) for s in target.expect_status) or "any"
        # Headers never forwarded to another origin on a redirect: the usual secret-bearing
        # ones, plus any whose configured value came from the environment.
        self._secret_headers = frozenset(
            {h.lower() for h, v in target.headers.items() if ENV_REF.search(v)} | SECRET_HEADERS
        )
        if self._setup_error is not None:
            return
        try:
            url = expand(target.url)
            _register_userinfo(url)
            headers = {k: expand(v) for k, v in target.headers.items()}
            body = None if target.body is None else expand(target.body)
        except MissingEnv as exc:
            self._setup_error = f"environment variable {exc.args[0]} is not set"
            return
        try:
            self._transport = clients.transport(
                insecure=target.insecure, ca_file=target.ca_file,
                fresh=target.method in _NOT_RETRIED,
            )
        except TlsConfigError as exc:
            self._setup_error = one_line(redact(str(exc)), 300)
            return
        try:
            self._request = self._build_request(url, headers, body)
            self._url_text = _url_text(self._request.url)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            self._setup_error = one_line(f"invalid request: {describe_exception(exc)}", 300)

    def _build_request(
        self, url: str, headers: dict[str, str], body: str | None
    ) -> httpx.Request:
        h = httpx.Headers(_DEFAULT_HEADERS)
        for k, v in headers.items():
            h[k] = v
        request = httpx.Request(
            self.target.method, url, headers=h, content=None if body is None else body.encode()
        )
        if request.url.scheme not in ("http", "https") or not request.url.host:
            raise httpx.UnsupportedProtocol("an http:// or https:// URL with a host is required")
        return request

    async def aclose(self) -> None:
        """Nothing of its own to close: connections belong to the shared HttpClients."""
        self._closed = True

    # -- one check -----------------------------------------------------------------------

    async def check(self) -> CheckResult:
        """Run one check within `timeout`; DOWN/DEGRADED/UP with reasons. Never raises."""
        started = self._clock()
        t0 = time.perf_counter()
        if self._setup_error is not None or self._request is None:
            return self._result(Status.DOWN, started, None, error=self._setup_error)
        if self._closed:
            return self._result(Status.DOWN, started, None, error="probe is closed")
        progress = _Progress()
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                return await self._run(started, t0, progress)
        except TimeoutError as exc:
            elapsed = (time.perf_counter() - t0) * 1000.0
            if deadline.expired():
                phase = "body incomplete" if progress.headers_at else "no response headers"
                error = f"timed out after {self._timeout_text} ({phase})"
            else:
                error = self._describe(exc, progress)
            return self._failed(started, elapsed, error, progress, t0)
        except Exception as exc:  # noqa: BLE001 - a check reports, it never raises
            elapsed = (time.perf_counter() - t0) * 1000.0
            return self._failed(started, elapsed, self._describe(exc, progress), progress, t0)

    async def _run(self, started: float, t0: float, progress: _Progress) -> CheckResult:
        assert self._request is not None
        assert self._transport is not None
        transport = self._transport
        request = self._request
        redirects = 0
        seen: list[str] | None = None
        while True:
            response = await transport.handle_async_request(request)
            code = response.status_code
            if self._follow and code in _REDIRECT_CODES and "location" in response.headers:
                await response.aclose()
                if seen is None:
                    seen = [str(request.url)]
                redirects += 1
                nxt = self._redirect_request(request, response)
                url = str(nxt.url)
                if redirects > self._max_redirects:
                    loop_note = "; it loops" if url in seen else ""
                    raise _CheckFailedError(
                        f"too many redirects (more than {self._max_redirects}{loop_note})"
                    )
                seen.append(url)
                request = nxt
                continue
            break
        progress.headers_at = time.perf_counter()
        progress.status_code = code
        progress.reason = response.reason_phrase
        try:
            if self._head:
                raw, truncated = b"", False
            else:
                raw, truncated = await read_capped(response, self._max_body)
        finally:
            await response.aclose()
        t_end = time.perf_counter()
        body = raw
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if raw and encoding and encoding != "identity":
            body, truncated = self._decode(raw, encoding, truncated)
        return self._evaluate(
            started, response, request, body, len(raw), truncated, redirects,
            latency_ms=(t_end - t0) * 1000.0, ttfb_ms=(progress.headers_at - t0) * 1000.0,
        )

    def _decode(self, raw: bytes, encoding: str, truncated: bool) -> tuple[bytes, bool]:
        if encoding not in ("gzip", "x-gzip", "deflate"):
            return raw, truncated  # never asked for; keep the bytes as they are
        d = zlib.decompressobj(47 if encoding != "deflate" else 15)
        try:
            out = d.decompress(raw, self._max_body)
        except zlib.error:
            if encoding == "deflate":  # some servers send raw deflate without the zlib header
                try:
                    d = zlib.decompressobj(-15)
                    out = d.decompress(raw, self._max_body)
                except zlib.error:
                    raise _CheckFailedError(f"response body is not valid {encoding}") from None
            else:
                raise _CheckFailedError(f"response body is not valid {encoding}") from None
        return out, truncated or bool(d.unconsumed_tail)

    def _redirect_request(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        location = response.headers["location"]
        try:
            url = request.url.join(location)
        except httpx.InvalidURL:
            raise _CheckFailedError("redirect to an invalid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise _CheckFailedError(f"redirect to an unsupported URL ({one_line(url.scheme, 20)}:)")
        method = request.method
        status = response.status_code
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
        headers = httpx.Headers(request.headers)
        del headers["host"]
        same_origin = (url.scheme, url.host, url.port) == (
            request.url.scheme, request.url.host, request.url.port
        )
        if not same_origin:
            for name in self._secret_headers:
                if name in headers:
                    del headers[name]
        content: bytes | None = None
        if method == request.method:
            content = request.content or None
        else:
            for name in ("content-length", "content-type", "transfer-encoding"):
                if name in headers:
                    del headers[name]
        return httpx.Request(method, url, headers=headers, content=content)

    # -- results ---------------------------------------------------------------------------

    def _status_ok(self, code: int) -> bool:
        return code in self._codes or (code // 100) in self._classes

    def _evaluate(
        self, started: float, response: httpx.Response, request: httpx.Request, body: bytes,
        wire_bytes: int, truncated: bool, redirects: int, *, latency_ms: float, ttfb_ms: float,
    ) -> CheckResult:
        code = response.status_code
        down: list[str] = []
        degraded: list[str] = []
        if not self._status_ok(code):
            reason = f" {response.reason_phrase}" if response.reason_phrase else ""
            down.append(f"status {code}{reason}, expected {self._expect_text}")
        cut = f" (first {len(body)} bytes read)" if truncated else ""
        if self._keyword is not None and self._keyword not in body:
            down.append(f"keyword {self._show_kw(self._keyword)} not found in the body{cut}")
        if self._keyword_absent is not None and self._keyword_absent in body:
            down.append(f"keyword {self._show_kw(self._keyword_absent)} found in the body")
        ctx: CheckContext | None = None
        if self._down or self._degraded or _looks_like_json(body):
            size = wire_bytes
            if truncated:
                declared = response.headers.get("content-length", "")
                if declared.isdigit():
                    size = int(declared)
            ctx = CheckContext(
                latency_ms=latency_ms, status_code=code, headers=response.headers, body=body,
                body_bytes=size, truncated=truncated,
            )
            for cond in self._down:
                if not cond.holds(ctx):
                    down.append(cond.evaluate(ctx)[1])
            for cond in self._degraded:
                if not cond.holds(ctx):
                    degraded.append(cond.evaluate(ctx)[1])
        metrics = {"latency_ms": latency_ms, "status_code": float(code),
                   "body_bytes": float(wire_bytes), "ttfb_ms": ttfb_ms}
        causes, counts, details = self._health(ctx)
        metrics.update(counts)
        last_metrics = self._last_metrics
        for k in ("status_code", "body_bytes", *counts):  # the same floats as last time
            same = last_metrics.get(k)
            if same is not None and same == metrics[k]:
                metrics[k] = same
        self._last_metrics = metrics
        if self._slow_ms is not None and latency_ms > self._slow_ms:
            degraded.append(
                f"latency {latency_ms:.0f}ms above the slow threshold {self._slow_ms:.0f}ms"
            )
        # A failing component degrades the target even without a condition saying so.
        status = Status.DOWN if down else Status.DEGRADED if degraded or causes else Status.UP
        reasons = tuple(one_line(redact(r), 300) for r in (*causes, *down, *degraded))
        reason, headers, excerpt = _safe_response_text(
            response.reason_phrase, response.headers, body
        )
        last = self._last_info
        if last is not None:  # share what did not change with the previous result
            if headers == last.headers:
                headers = last.headers
            if excerpt == last.body_excerpt:
                excerpt = last.body_excerpt
            if reason == last.reason:
                reason = last.reason
        info = ResponseInfo(
            status_code=code,
            reason=reason,
            http_version=response.http_version,
            headers=headers,
            body_excerpt=excerpt,
            body_bytes=wire_bytes,
            truncated=truncated,
            final_url=self._url_text if request is self._request else _url_text(request.url),
            redirects=redirects,
        )
        if info == last:
            info = last
        self._last_info = info
        return CheckResult(
            target=self.target.name, kind=self.kind, status=status, started_at=started,
            latency_ms=latency_ms, reasons=reasons, metrics=metrics, response=info,
            details=details,
        )

    def _health(self, ctx: CheckContext | None) -> tuple[list[str], dict[str, float],
                                                           HttpDetails]:
        """(causes, component counts, the result's details) of a health body; the answer
        for the same bytes as the last check is reused, details included (a healthy
        service answers the same body every time, and this runs on every check)."""
        if ctx is None or not _looks_like_json(ctx.body):
            return [], {}, {}
        cached = self._health_cache
        if cached is not None and cached[0] == ctx.body:
            return cached[1], cached[2], cached[3]
        health = _health_of(ctx)
        causes: list[str] = []
        counts: dict[str, float] = {}
        health_json: HealthJson | None = None
        if health is not None:
            # The service's own words first: they name the dependency that failed.
            causes = health.reasons()
            if health.components:
                failing = health.failing()
                core = sum(1 for c in failing if is_core(c.name, self._core))
                counts = {"components_down": float(len(failing)),
                          "core_components_down": float(core),
                          "other_components_down": float(len(failing) - core)}
            health_json = health.to_json(self._core)
        details: HttpDetails = {"health": health_json} if health_json else {}
        self._health_cache = (bytes(ctx.body), causes, counts, details)
        return causes, counts, details

    @staticmethod
    def _show_kw(kw: bytes) -> str:
        return '"' + one_line(kw.decode("utf-8", "replace"), 80) + '"'

    def _failed(
        self, started: float, elapsed_ms: float, error: str, progress: _Progress, t0: float
    ) -> CheckResult:
        metrics: dict[str, float] = {"latency_ms": elapsed_ms}
        response = None
        if progress.status_code is not None:
            metrics["status_code"] = float(progress.status_code)
            if progress.headers_at is not None:
                metrics["ttfb_ms"] = (progress.headers_at - t0) * 1000.0
            response = ResponseInfo(
                status_code=progress.status_code, reason=one_line(progress.reason, 100)
            )
        return CheckResult(
            target=self.target.name, kind=self.kind, status=Status.DOWN, started_at=started,
            latency_ms=elapsed_ms, error=error, metrics=metrics, response=response,
        )

    def _result(
        self, status: Status, started: float, latency_ms: float | None, *, error: str | None
    ) -> CheckResult:
        return CheckResult(
            target=self.target.name, kind=self.kind, status=status, started_at=started,
            latency_ms=latency_ms, error=error,
        )

    # -- errors ----------------------------------------------------------------------------

    def _describe(self, exc: BaseException, progress: _Progress) -> str:
        """One redacted, sanitised line for the operator; library errors translated here."""
        return one_line(redact(_describe(exc, progress.headers_at is not None)), 300)


def _describe(exc: BaseException, had_headers: bool) -> str:
    if isinstance(exc, _CheckFailedError):
        return str(exc)
    cause: BaseException = exc
    if isinstance(exc, httpx.HTTPError) and exc.__cause__ is not None:
        cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        if cause.os_error.errno == socket.EAI_AGAIN:  # the DNS server, not the name
            return f"cannot resolve host {cause.host} (temporary DNS failure)"
        return f"cannot resolve host {cause.host}"
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        err = cause.certificate_error
        detail = getattr(err, "verify_message", None) or getattr(err, "reason", None) or str(err)
        return f"certificate verify failed: {detail} ({cause.host}:{cause.port})"
    if isinstance(cause, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        os_err = cause.os_error
        reason = getattr(os_err, "reason", None) or os_err.strerror or str(os_err)
        return f"TLS handshake failed: {str(reason).replace('_', ' ').lower()}"
    if isinstance(cause, aiohttp.ClientConnectorError):
        os_err = cause.os_error
        where = f"{cause.host}:{cause.port}"
        if isinstance(os_err, ConnectionRefusedError) or os_err.errno == errno.ECONNREFUSED:
            return f"connection refused ({where})"
        if os_err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"{os_err.strerror or 'unreachable'} ({where})".lower()
        if isinstance(os_err, TimeoutError) or os_err.errno == errno.ETIMEDOUT:
            return f"connect timed out ({where})"
        return f"cannot connect to {where}: {os_err.strerror or os_err}"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        if had_headers:
            return "server closed the connection before the body was complete"
        return "server closed the connection without a response"
    if isinstance(cause, aiohttp.ClientPayloadError):
        detail = str(cause).split(":", 1)[0]
        return f"response body incomplete ({detail})" if detail else "response body incomplete"
    if isinstance(cause, aiohttp.ClientResponseError):
        return f"malformed HTTP response: {_parser_message(cause.message)}"
    if isinstance(cause, ConnectionResetError) or getattr(cause, "errno", None) == errno.ECONNRESET:
        return "connection reset by peer"
    if isinstance(cause, aiohttp.ClientOSError):
        return f"connection error: {cause.strerror or cause}"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return f"invalid URL: {exc}"
    if isinstance(exc, httpx.HTTPError):
        return f"{type(exc).__name__}: {describe_exception(exc)}"
    return describe_exception(exc)


def _parser_message(message: object) -> str:
    """aiohttp's parser errors span lines with a caret diagram; keep the gist and the data."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    if not lines:
        return "unparseable"
    gist = lines[0].rstrip(":")
    data = next((ln for ln in lines[1:] if ln[:2] in ("b'", 'b"')), None)
    return f"{gist} ({data[:80]})" if data else gist


def _looks_like_json(body: bytes) -> bool:
    """A body worth reading as a health document: a JSON object, not too big to parse on
    every check."""
    head = body[:64].lstrip()
    return head.startswith(b"{") and len(body) <= _HEALTH_MAX


def _health_of(ctx: CheckContext | None) -> HealthBody | None:
    if ctx is None or not _looks_like_json(ctx.body):
        return None
    ok, doc = ctx.json()
    return parse_health(doc) if ok else None


_HEALTH_MAX = 256 * 1024


def _url_text(url: httpx.URL) -> str:
    return one_line(redact(str(url)), 300)


def _safe_response_text(
    reason: str, headers: httpx.Headers, body: bytes
) -> tuple[str, tuple[tuple[str, str], ...], str]:
    """Reason phrase, headers and a body excerpt fit to show: escapes gone, secrets masked.

    This runs on every check, so the three are joined into one text and sanitised and
    redacted in one pass each (per-header calls were ~15 % of a check's CPU). Lines map
    back because a header value cannot hold a newline (HTTP framing) and sanitising keeps
    newlines; if redaction merged lines (a quoted secret spanning them), each part is
    redone on its own.
    """
    raw = headers.raw[:MAX_HEADERS_SHOWN]
    n = len(raw)
    parts = [reason.encode("utf-8", "replace")]
    parts.extend(k + b": " + v for k, v in raw)
    parts.append(body[: EXCERPT_CHARS * 4])
    blob = b"\n".join(parts)
    # A target answers the same bytes check after check (a health endpoint without a Date
    # header): the text is sanitised and redacted once per distinct response, not per check
    # (~2 % of self time at 1,000 targets, py-spy). A newly registered secret empties the cache.
    gen = redact_generation()
    if _SAFE_CACHE_GEN[0] != gen or len(_SAFE_CACHE) >= _SAFE_CACHE_MAX:
        _SAFE_CACHE.clear()
        _SAFE_CACHE_GEN[0] = gen
    key = (n, blob)
    hit = _SAFE_CACHE.get(key)
    if hit is None:
        hit = _SAFE_CACHE[key] = _safe_text_of(blob, n)
    return hit


_SAFE_CACHE: dict[tuple[int, bytes], tuple[str, tuple[tuple[str, str], ...], str]] = {}
_SAFE_CACHE_GEN = [-1]
_SAFE_CACHE_MAX = 256  # distinct responses kept (a key is at most ~8 KB)


def _safe_text_of(blob: bytes, n: int) -> tuple[str, tuple[tuple[str, str], ...], str]:
    """`_safe_response_text` of the joined reason, `n` header lines and body excerpt."""
    if blob.translate(None, _PLAIN_BYTES):  # anything but printable ASCII and newlines
        text = clean(blob, max_len=1 << 20, newlines=True)
    else:  # the common case: nothing to sanitise, and one C pass proved it
        text = blob.decode("ascii")
    red = redact(text)
    if red.count("\n") != text.count("\n"):
        lines = text.split("\n")
        red = "\n".join(
            [redact(x) for x in lines[: n + 1]] + [redact("\n".join(lines[n + 1:]))]
        )
    lines = red.split("\n")
    out: list[tuple[str, str]] = []
    for line in lines[1 : n + 1]:
        name, _, value = line.partition(": ")
        if name.lower() in _MASKED_RESPONSE_HEADERS:
            value = MASK
        elif len(value) > 300:
            value = value[:299] + "…"
        out.append((name if len(name) <= 100 else name[:99] + "…", value))
    return _cut(lines[0], 100), tuple(out), _cut("\n".join(lines[n + 1:]), EXCERPT_CHARS)


# Printable ASCII and newline: bytes that `sanitize.clean(newlines=True)` leaves unchanged.
_PLAIN_BYTES = bytes(range(0x20, 0x7F)) + b"\n"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
