"""Prometheus scrape probe: fetch /metrics, parse it, derive the configured metrics.

One `PrometheusProbe` per target. A check fetches the exposition (capped at `max_body`),
parses it with prometheus_client's parser and evaluates each configured expression
(`promexpr`) against this scrape and the previous successful one. Fetch and parse share one
hard deadline (timeout + 0.1 s). Large bodies are parsed off the event loop, on a small
dedicated thread pool, so a 10 MB scrape (measured ~5 s of parser time here) never freezes
the UI; when the deadline passes the parser thread is told to stop, so it does not burn a
core for nothing. A failed scrape (error, malformed body) keeps the previous good one, so
the next rate is taken over the longer gap rather than lost.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from console.engine.config.envref import MissingEnv, expand
from console.engine.config.schema import PrometheusTarget
from console.engine.details import PrometheusDetails
from console.engine.lang.promexpr import (
    Expr,
    Scrape,
    ScrapeCancelledError,
    StopFlag,
    parse_expr,
    parse_scrape,
    sample_names,
)
from console.engine.model import CheckResult, ResponseInfo, Status
from console.engine.probes.breakdown import (
    CONVENTIONAL_NAMES,
    BreakdownSpec,
    compile_breakdowns,
    compute_breakdowns,
    default_breakdowns,
)
from console.engine.probes.breakdown import sample_names as breakdown_names
from console.engine.probes.http import _describe as _describe_http_error
from console.engine.probes.http_client import USER_AGENT, HttpClients, read_capped
from console.engine.text.fmt import format_bytes, format_duration
from console.engine.text.redact import describe_exception, redact
from console.engine.text.sanitize import clean, one_line

__all__ = ["PrometheusProbe"]

# Above this, parse in a thread. Measured here: prometheus_client parses ~45 us per sample
# line, so 64 KB (~700 lines) is ~30 ms, about the most the UI loop should stall for.
THREAD_PARSE_BYTES = 64 * 1024
EXCERPT_CHARS = 2048
_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
_NOT_METRICS_TYPES = ("text/html", "application/json", "application/xml", "text/xml",
                      "application/xhtml+xml")

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _parse_pool() -> ThreadPoolExecutor:
    """Two threads for every probe: parsing holds the GIL, so more would not go faster, and
    the loop's default executor stays free for everything else."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="opsconsole-prom")
        return _pool


class _ScrapeFailedError(Exception):
    """A failure detected here (status, size, format); the message is final and safe."""

    def __init__(self, message: str, response: ResponseInfo | None = None) -> None:
        super().__init__(message)
        self.response = response


def _decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body with gzip/deflate undone, never more than `limit` bytes (no zip bombs)."""
    if not raw or encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise _ScrapeFailedError(f"response uses an unsupported encoding {one_line(encoding, 30)}")
    d = zlib.decompressobj(47 if encoding != "deflate" else 15)
    try:
        out = d.decompress(raw, limit)
    except zlib.error:
        raise _ScrapeFailedError(f"response body is not valid {encoding}") from None
    if d.unconsumed_tail:
        raise _ScrapeFailedError(f"response larger than {format_bytes(limit)} once decompressed")
    return out


def _parse(
    raw: bytes, encoding: str, limit: int, openmetrics: bool, at: float,
    keep: Callable[[str], bool], cancel: StopFlag,
) -> tuple[Scrape, str]:
    """Decompress, decode and parse (runs on the loop for small bodies, else in a thread)."""
    body = _decode_body(raw, encoding, limit)
    text = body.decode("utf-8", errors="replace")
    try:
        scrape = parse_scrape(text, at=at, keep=keep, openmetrics=openmetrics, cancel=cancel)
    except ValueError as exc:
        raise _ScrapeFailedError(one_line(redact(str(exc)), 300)) from None
    return scrape, text[: EXCERPT_CHARS * 2]


def _parse_and_break(
    parse_args: tuple[Any, ...], specs: dict[str, BreakdownSpec], previous: Scrape | None,
) -> tuple[Scrape, str, PrometheusDetails]:
    """Parse, then the breakdown tables against the previous scrape, on the same thread: a
    100k-series scrape's grouping costs a fair share of a second of GIL that must not land on
    the UI loop. No configured breakdowns means the conventional ones, if the scrape has
    their names."""
    scrape, text = _parse(*parse_args)
    cancel: StopFlag = parse_args[-1]
    chosen = specs or default_breakdowns(scrape)
    if not chosen:
        return scrape, text, {}
    try:
        details: PrometheusDetails = {
            "breakdowns": compute_breakdowns(chosen, scrape, previous, cancel)}
    except ScrapeCancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - a breakdown bug must not fail the scrape
        details = {"breakdown_error": one_line(describe_exception(exc), 300)}
    return scrape, text, details


class PrometheusProbe:
    """Scrapes one PrometheusTarget; `check()` never raises (except CancelledError)."""

    kind = "prometheus"

    def __init__(
        self,
        target: PrometheusTarget,
        clients: HttpClients,
        *,
        clock: Callable[[], float] = time.time,
        keep: Callable[[str], bool] | None = None,
    ) -> None:
        """`keep` overrides which sample names a scrape keeps (default: those the target's
        expressions read); the remote host probe scrapes node_exporter through this class."""
        self.target = target
        self._clock = clock
        self._timeout = float(target.timeout)
        self._timeout_text = format_duration(self._timeout)
        self._max_body = int(target.max_body)
        self._exprs: dict[str, Expr] = {n: parse_expr(t) for n, t in target.metrics.items()}
        self._breakdowns = compile_breakdowns(getattr(target, "breakdowns", {}))
        kept = sample_names(self._exprs.values()) | (
            breakdown_names(self._breakdowns.values()) if self._breakdowns
            else CONVENTIONAL_NAMES)
        self._keep = keep or kept.__contains__
        self._previous: Scrape | None = None
        self._setup_error: str | None = None
        self._closed = threading.Event()  # also stops a parse still running in a thread
        self._request: httpx.Request | None = None
        self._transport: httpx.AsyncBaseTransport | None = None
        self._url_text = ""
        try:
            url = expand(target.url)
            headers = {k: expand(v) for k, v in target.headers.items()}
        except MissingEnv as exc:
            self._setup_error = f"environment variable {exc.args[0]} is not set"
            return
        try:
            self._transport = clients.transport(insecure=target.insecure)
            h = httpx.Headers({"user-agent": USER_AGENT, "accept": _ACCEPT,
                               "accept-encoding": "gzip"})
            for k, v in headers.items():
                h[k] = v
            self._request = httpx.Request("GET", url, headers=h)
            if self._request.url.scheme not in ("http", "https") or not self._request.url.host:
                raise ValueError("an http:// or https:// URL with a host is required")
            self._url_text = one_line(redact(str(self._request.url)), 300)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError) as exc:
            self._setup_error = one_line(f"invalid request: {describe_exception(exc)}", 300)

    @property
    def previous(self) -> Scrape | None:
        """The last good scrape (rates are taken against it)."""
        return self._previous

    async def aclose(self) -> None:
        """Stop any parse still running; connections belong to the shared HttpClients."""
        self._closed.set()

    # -- one check -------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        """Scrape once within timeout + 0.1 s; UP with metrics or DOWN with an error."""
        started = self._clock()
        t0 = time.perf_counter()
        if self._setup_error is not None or self._request is None:
            return self._down(started, None, self._setup_error or "not configured")
        if self._closed.is_set():
            return self._down(started, None, "probe is closed")
        cancel = threading.Event()
        phase = ["no response headers"]
        deadline = asyncio.timeout(self._timeout + 0.1)
        try:
            async with deadline:
                return await self._run(started, t0, cancel, phase)
        except TimeoutError as exc:
            elapsed = (time.perf_counter() - t0) * 1000.0
            if deadline.expired():
                return self._down(started, elapsed,
                                  f"timed out after {self._timeout_text} ({phase[0]})")
            return self._down(started, elapsed, self._describe(exc, phase))
        except _ScrapeFailedError as exc:
            return self._down(started, (time.perf_counter() - t0) * 1000.0, str(exc),
                              exc.response)
        except Exception as exc:  # noqa: BLE001 - a check reports, it never raises
            return self._down(started, (time.perf_counter() - t0) * 1000.0,
                              self._describe(exc, phase))
        finally:
            cancel.set()  # a parse left running in its thread stops at its next check

    async def _run(
        self, started: float, t0: float, cancel: threading.Event, phase: list[str],
    ) -> CheckResult:
        assert self._request is not None
        assert self._transport is not None
        at = time.monotonic()
        response = await self._transport.handle_async_request(self._request)
        phase[0] = "body incomplete"
        try:
            raw, truncated = await read_capped(response, self._max_body)
        finally:
            await response.aclose()
        latency_ms = (time.perf_counter() - t0) * 1000.0
        code = response.status_code
        mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()

        def failed(message: str) -> _ScrapeFailedError:
            return _ScrapeFailedError(message, self._info(response, raw, truncated))

        if truncated:
            raise failed(f"response larger than {format_bytes(self._max_body)}")
        if not 200 <= code < 300:
            reason = f" {one_line(response.reason_phrase, 60)}" if response.reason_phrase else ""
            where = response.headers.get("location")
            if 300 <= code < 400 and where:
                # Prometheus follows redirects; a monitor should be pointed at the final URL.
                reason += f" (redirects to {one_line(redact(where), 120)}; use that as url)"
            raise failed(f"HTTP {code}{reason}")
        if mime in _NOT_METRICS_TYPES:
            raise failed(f"not the Prometheus text format (the server sent {one_line(mime, 60)})")
        phase[0] = "parsing"
        encoding = response.headers.get("content-encoding", "").strip().lower()
        openmetrics = mime == "application/openmetrics-text"
        stop = _Either(cancel, self._closed)  # our deadline passed, or aclose() was called
        args = (raw, encoding, self._max_body, openmetrics, at, self._keep, stop)
        previous = self._previous
        try:
            if len(raw) > THREAD_PARSE_BYTES or encoding:
                loop = asyncio.get_running_loop()
                scrape, text, details = await loop.run_in_executor(
                    _parse_pool(),
                    functools.partial(_parse_and_break, args, self._breakdowns, previous),
                )
            else:
                scrape, text, details = _parse_and_break(args, self._breakdowns, previous)
        except _ScrapeFailedError as exc:
            raise failed(str(exc)) from None
        except ScrapeCancelledError:
            raise failed("probe closed while parsing") from None
        metrics: dict[str, float] = {}
        for name, expr in self._exprs.items():
            value = expr.evaluate(scrape, previous)
            if value is not None:
                metrics[name] = value
        metrics["latency_ms"] = latency_ms
        metrics["series"] = float(scrape.series)
        self._previous = scrape
        excerpt = _excerpt(text)
        return CheckResult(
            target=self.target.name, kind=self.kind, status=Status.UP, started_at=started,
            latency_ms=latency_ms, metrics=metrics,
            response=ResponseInfo(
                status_code=code, reason=one_line(response.reason_phrase, 100),
                http_version=response.http_version, body_excerpt=excerpt, body_bytes=len(raw),
                final_url=self._url_text,
            ),
            details=details,
        )

    # -- results ---------------------------------------------------------------------------

    def _info(self, response: httpx.Response, raw: bytes, truncated: bool) -> ResponseInfo:
        """Status line and a short, safe excerpt of what came back (for the detail view)."""
        excerpt = "" if response.headers.get("content-encoding") else _excerpt(raw)
        return ResponseInfo(
            status_code=response.status_code,
            reason=one_line(response.reason_phrase, 100),
            http_version=response.http_version,
            body_excerpt=excerpt,
            body_bytes=len(raw),
            truncated=truncated,
            final_url=self._url_text,
        )

    def _down(
        self, started: float, latency_ms: float | None, error: str,
        response: ResponseInfo | None = None,
    ) -> CheckResult:
        metrics = {} if latency_ms is None else {"latency_ms": latency_ms}
        return CheckResult(
            target=self.target.name, kind=self.kind, status=Status.DOWN, started_at=started,
            latency_ms=latency_ms, error=error, metrics=metrics, response=response,
        )

    @staticmethod
    def _describe(exc: BaseException, phase: list[str]) -> str:
        return one_line(redact(_describe_http_error(exc, phase[0] != "no response headers")), 300)


def _excerpt(body: str | bytes) -> str:
    return redact(clean(body[: EXCERPT_CHARS * 2], max_len=EXCERPT_CHARS, newlines=True))


class _Either:
    """A stop flag for the parser: set when the check's deadline passed or the probe closed."""

    __slots__ = ("_a", "_b")

    def __init__(self, a: threading.Event, b: threading.Event) -> None:
        self._a = a
        self._b = b

    def is_set(self) -> bool:
        return self._a.is_set() or self._b.is_set()
