"""A client of the Prometheus HTTP API (/api/v1): Prometheus, VictoriaMetrics, Thanos, Mimir.

Why our own thin client: every call needs the console's shared connection pool
(`HttpClients`), a hard deadline, a cap on the body (a careless `{__name__=~".+"}` must not
load a gigabyte) and errors an operator can act on, and the engines differ in small ways that
must show rather than hide:

* **a base path and headers**: Mimir serves the API under `/prometheus` and wants the tenant
  in `X-Scope-OrgID`; Thanos wants `partial_response=false` where a partial answer would be
  wrong (rule evaluation). Both are plain configuration here (`url`, `headers`, `params`).
* **warnings**: Prometheus and Thanos add `"warnings": [...]` to a successful answer (Thanos
  for a partial response), VictoriaMetrics `"isPartial": true`; they come back with the
  result, never dropped.
* **errors**: `{"status": "error", "errorType": "bad_data", "error": "..."}` with a 4xx/5xx,
  VictoriaMetrics with a numeric errorType ("422"), a Mimir gateway with plain text ("no org
  id"), an HTML login page, a timeout: each becomes one `PromAPIError` line naming what
  failed (`kind` says which family, for tests and the UI).
* **VictoriaMetrics' latency offset**: it hides samples newer than `-search.latencyOffset`
  (30 s by default) and answers with whole-second timestamps; `engine()` finds out which
  engine answers and, for VictoriaMetrics, its offset (from `/flags`), so the probe can say
  that every value is that much old.

A result with more series than `max_series` keeps the largest values and counts the rest
(`dropped`), so a huge answer costs a bounded amount of memory and the operator is told.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson

from console.engine.lang.durations import parse_duration
from console.engine.lang.serieskey import parse_series_key as parse_series_key  # re-exported
from console.engine.lang.serieskey import series_key as series_key  # re-exported
from console.engine.probes.http import _describe as _describe_http_error
from console.engine.probes.http_client import USER_AGENT, HttpClients, read_capped
from console.engine.text.fmt import format_bytes, format_duration
from console.engine.text.redact import redact
from console.engine.text.sanitize import one_line

__all__ = [
    "MAX_POINTS",
    "EngineInfo",
    "InstantResult",
    "PromAPI",
    "PromAPIError",
    "RangeResult",
    "RangeSeries",
    "Sample",
    "chart_step",
    "parse_series_key",
    "series_key",
]

MAX_POINTS = 11_000  # Prometheus refuses a range query of more points per series than this
THREAD_PARSE_BYTES = 1_000_000  # parse bigger JSON answers off the event loop
VM_DEFAULT_LATENCY_OFFSET = 30.0
Labels = tuple[tuple[str, str], ...]


class PromAPIError(Exception):
    """A call that failed; `str()` is one safe line for the operator, `kind` its family:
    bad_data, execution, timeout, unavailable, canceled, internal, not_found (the engine's
    own errorType), http, unreachable, too_large, format."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(one_line(redact(message), 400))
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Sample:
    """One series of an instant vector (a scalar is one sample without labels)."""

    labels: Labels
    t: float
    value: float


@dataclass(frozen=True, slots=True)
class InstantResult:
    samples: list[Sample]
    total: int  # series in the answer; len(samples) after the cap
    warnings: tuple[str, ...] = ()

    @property
    def dropped(self) -> int:
        return self.total - len(self.samples)


@dataclass(frozen=True, slots=True)
class RangeSeries:
    labels: Labels
    t: np.ndarray
    v: np.ndarray


@dataclass(frozen=True, slots=True)
class RangeResult:
    series: list[RangeSeries]
    total: int
    start: float
    end: float
    step: float
    warnings: tuple[str, ...] = ()

    @property
    def dropped(self) -> int:
        return self.total - len(self.series)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """Who answers: "Prometheus 2.42.0", "VictoriaMetrics", "Grafana Mimir 2.10"...;
    `latency_offset` is VictoriaMetrics' hiding of recent samples (0 elsewhere)."""

    name: str
    version: str = ""
    latency_offset: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        return f"{self.name} {self.version}".strip()


def chart_step(span: float, points: int) -> float:
    """The step of a range query drawing `span` seconds in `points` points: whole seconds
    (VictoriaMetrics rounds timestamps to seconds anyway), never more than MAX_POINTS."""
    if span <= 0 or points < 1:
        raise ValueError("a chart needs a span > 0 and at least one point")
    step = max(1.0, span / points, span / (MAX_POINTS - 1))
    return float(math.ceil(step))


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _labels(metric: Any) -> Labels:
    if not isinstance(metric, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in metric.items()))


def _rank(value: float) -> float:
    """Sort key keeping the largest values first and NaN last."""
    return -value if not math.isnan(value) else math.inf


class PromAPI:
    """One query API endpoint (base URL, headers, extra parameters), on the shared pool.

    `url` is the base the API paths are appended to (`http://prom:9090`,
    `https://mimir.example.com/prometheus`), already expanded (no `${ENV}` left); headers
    likewise. Every method raises PromAPIError, never anything else (but CancelledError).
    """

    def __init__(
        self,
        url: str,
        clients: HttpClients,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        insecure: bool = False,
        ca_file: str | None = None,
        max_body: int = 20_000_000,
        max_series: int = 500,
    ) -> None:
        self.base = url.rstrip("/")
        self.timeout = float(timeout)
        self.max_body = int(max_body)
        self.max_series = int(max_series)
        self.params = dict(params or {})
        try:
            self._transport = clients.transport(insecure=insecure, ca_file=ca_file)
            h = httpx.Headers({"user-agent": USER_AGENT, "accept": "application/json",
                               "accept-encoding": "gzip"})
            for k, v in (headers or {}).items():
                h[k] = v
            self._headers = h
            probe = httpx.URL(self.base + "/api/v1/query")
            if probe.scheme not in ("http", "https") or not probe.host:
                raise ValueError("an http:// or https:// URL with a host is required")
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise PromAPIError("format", f"invalid URL {self.base}: {exc}") from None
        self.where = one_line(redact(self.base), 200)
        self.bytes_read = 0  # answer bytes as they came over the wire (before inflating)
        self.requests = 0

    # -- the calls -------------------------------------------------------------------------

    async def query(self, expr: str, at: float | None = None, *,
                    within: float | None = None) -> InstantResult:
        """An instant query at `at` (epoch seconds; the server's now if None)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data, warnings = await self._api("/api/v1/query", params, within, server_timeout=True)
        kind = data.get("resultType")
        result = data.get("result")
        if kind == "scalar":
            t, v = result if isinstance(result, list) and len(result) == 2 else (0, "NaN")
            return InstantResult([Sample((), _float(t), _float(v))], 1, warnings)
        if kind == "string":
            raise PromAPIError("bad_data", "the query gives a string, not a number")
        if kind == "matrix":
            raise PromAPIError("bad_data", "the query gives a range vector (e.g. metric[5m]); "
                               "wrap it in a function such as rate(...) or avg_over_time(...)")
        if kind != "vector" or not isinstance(result, list):
            raise PromAPIError("format", f"unexpected resultType {one_line(kind, 40)!r}")
        samples = []
        for item in result:
            if not isinstance(item, dict):
                continue
            value = item.get("value")
            if not isinstance(value, list) or len(value) != 2:
                continue  # a native histogram ("histogram"): not a number to chart
            samples.append(Sample(_labels(item.get("metric")), _float(value[0]),
                                  _float(value[1])))
        total = len(samples)
        if total > self.max_series:
            samples.sort(key=lambda s: _rank(s.value))
            samples = samples[: self.max_series]
        return InstantResult(samples, total, warnings)

    async def query_range(self, expr: str, start: float, end: float, step: float, *,
                          within: float | None = None) -> RangeResult:
        """A range query; at most MAX_POINTS points per series (else ValueError)."""
        if step <= 0 or end <= start:
            raise ValueError("a range query needs end > start and a step > 0")
        if (end - start) / step + 1 > MAX_POINTS:
            raise ValueError(f"{(end - start) / step + 1:.0f} points per series: more than "
                             f"the {MAX_POINTS} Prometheus allows; use a longer step")
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                  "step": f"{step:g}"}
        data, warnings = await self._api("/api/v1/query_range", params, within,
                                         server_timeout=True)
        result = data.get("result")
        if data.get("resultType") != "matrix" or not isinstance(result, list):
            raise PromAPIError("format", "a range query did not answer with a matrix")
        series = []
        for item in result:
            if not isinstance(item, dict) or not isinstance(item.get("values"), list):
                continue
            values = item["values"]
            t = np.fromiter((_float(p[0]) for p in values), float, len(values))
            v = np.fromiter((_float(p[1]) for p in values), float, len(values))
            series.append(RangeSeries(_labels(item.get("metric")), t, v))
        total = len(series)
        if total > self.max_series:
            series.sort(key=lambda s: _rank(float(np.nanmax(s.v)) if len(s.v) and
                                            not np.isnan(s.v).all() else math.nan))
            series = series[: self.max_series]
        return RangeResult(series, total, start, end, step, warnings)

    async def alerts(self) -> list[dict[str, Any]]:
        """/api/v1/alerts: the alerts the server's rules hold (pending and firing)."""
        data, _ = await self._api("/api/v1/alerts", {}, None)
        alerts = data.get("alerts")
        return [a for a in alerts if isinstance(a, dict)] if isinstance(alerts, list) else []

    async def rules(self) -> list[dict[str, Any]]:
        """/api/v1/rules: the rule groups (alerting rules with their state and `for`)."""
        data, _ = await self._api("/api/v1/rules", {"type": "alert"}, None)
        groups = data.get("groups")
        return [g for g in groups if isinstance(g, dict)] if isinstance(groups, list) else []

    async def engine(self) -> EngineInfo:
        """Which engine answers (buildinfo, else VictoriaMetrics' /flags), and its latency
        offset; PromAPIError only when the API itself cannot be reached."""
        try:
            data, _ = await self._api("/api/v1/status/buildinfo", {}, None)
        except PromAPIError as exc:
            if exc.kind not in ("not_found", "http", "format"):
                raise
            data = {}
        version = str(data.get("version") or "")
        app = str(data.get("application") or "")
        if version:
            return EngineInfo(one_line(app or "Prometheus", 40), one_line(version, 40))
        flags = await self._flags()
        if flags is not None:
            offset = VM_DEFAULT_LATENCY_OFFSET
            m = re.search(r'^-search\.latencyOffset="?([^"\s]+)"?', flags, re.M)
            if m:
                with contextlib.suppress(ValueError):
                    offset = parse_duration(m.group(1))
            return EngineInfo("VictoriaMetrics", latency_offset=offset)
        return EngineInfo("Prometheus-compatible API")

    async def _flags(self) -> str | None:
        """VictoriaMetrics' `/flags` (its non-default flags, one per line) at the server's
        root, or None if that is not what answers there."""
        url = httpx.URL(self.base)
        root = str(url.copy_with(path="/", query=None)).rstrip("/")
        try:
            code, body, _ = await self._get(root + "/flags", {}, self.timeout)
        except PromAPIError:
            return None
        text = body.decode("utf-8", "replace")
        if code != 200 or (text.strip() and not text.lstrip().startswith("-")):
            return None
        return text

    # -- plumbing --------------------------------------------------------------------------

    async def _api(self, path: str, params: dict[str, str], within: float | None, *,
                   server_timeout: bool = False) -> tuple[dict[str, Any], tuple[str, ...]]:
        """GET base+path within `within` seconds (default: the timeout); the `data` of a
        success answer and its warnings, else raise."""
        limit = self.timeout if within is None else float(within)
        all_params = {**self.params, **params}
        if server_timeout:
            # The server gives up a little before we do, so its own "timeout" error (which
            # names the phase) is what the operator reads, not our bare deadline.
            # Whole milliseconds: Prometheus parses Go-style durations without fractions.
            all_params.setdefault("timeout", f"{max(int((limit - 0.2) * 1000), 100)}ms")
        code, body, mime = await self._get(self.base + path, all_params, limit)
        doc = await self._decode(body)
        if not isinstance(doc, dict) or "status" not in doc:
            if code == 404:
                raise PromAPIError("not_found", f"{path} not found (HTTP 404) at {self.where}")
            if code >= 300 or doc is None:
                raise PromAPIError("http" if code >= 300 else "format",
                                   _http_problem(code, body, mime))
            raise PromAPIError("format", "not a Prometheus API answer")
        warnings = tuple(one_line(w, 300) for w in doc.get("warnings") or [] if w)
        if doc.get("isPartial") is True:  # VictoriaMetrics
            warnings += ("partial response: some storage nodes did not answer",)
        if doc.get("status") != "success":
            kind = one_line(doc.get("errorType") or "error", 30)
            error = one_line(doc.get("error") or "", 300)
            if kind.isdigit():  # VictoriaMetrics: the HTTP status as errorType
                raise PromAPIError("bad_data" if kind in ("400", "422") else "execution",
                                   f"query rejected (HTTP {kind}): {error}")
            raise PromAPIError(kind, f"{kind}: {error}")
        data = doc.get("data")
        if not isinstance(data, dict):
            if isinstance(data, list):  # e.g. /api/v1/labels; not used here
                return {"result": data}, warnings
            raise PromAPIError("format", "a success answer without data")
        return data, warnings

    async def _decode(self, body: bytes) -> Any:
        if not body:
            return None
        try:
            if len(body) > THREAD_PARSE_BYTES:
                return await asyncio.to_thread(orjson.loads, body)
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return None

    async def _get(self, url: str, params: dict[str, str], limit: float
                   ) -> tuple[int, bytes, str]:
        request = httpx.Request("GET", url, params=params, headers=self._headers)
        had_headers = False
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                response = await self._transport.handle_async_request(request)
                had_headers = True
                try:
                    body, truncated = await read_capped(response, self.max_body)
                finally:
                    await response.aclose()
        except TimeoutError:
            if deadline.expired():
                raise PromAPIError("timeout", f"no answer within {format_duration(limit)} "
                                   f"from {self.where}") from None
            raise PromAPIError("unreachable", _describe_http_error(TimeoutError(), False)
                               ) from None
        except httpx.HTTPError as exc:
            raise PromAPIError("unreachable", f"{_describe_http_error(exc, had_headers)}"
                               ) from None
        except OSError as exc:
            raise PromAPIError("unreachable", str(exc)) from None
        self.requests += 1
        self.bytes_read += len(body)
        if truncated:
            raise PromAPIError("too_large", f"answer larger than {format_bytes(self.max_body)}"
                               ": narrow the query (sum by ...) or raise max_body")
        mime = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            body = self._inflate(body, encoding)
        return response.status_code, body, mime

    def _inflate(self, raw: bytes, encoding: str) -> bytes:
        """gzip/deflate undone, never past max_body (no zip bombs)."""
        if encoding not in ("gzip", "x-gzip", "deflate"):
            raise PromAPIError("format", f"unsupported content encoding {one_line(encoding, 30)}")
        d = zlib.decompressobj(47 if encoding != "deflate" else 15)
        try:
            out = d.decompress(raw, self.max_body)
        except zlib.error:
            raise PromAPIError("format", f"the answer is not valid {encoding}") from None
        if d.unconsumed_tail:
            raise PromAPIError("too_large", f"answer larger than {format_bytes(self.max_body)} "
                               "once decompressed: narrow the query or raise max_body")
        return out


def _http_problem(code: int, body: bytes, mime: str) -> str:
    """`HTTP 401: no org id` — the status and the gist of a non-API body."""
    text = ""
    if mime not in ("text/html", "application/xhtml+xml"):
        text = one_line(body[:400].decode("utf-8", "replace").strip(), 200)
    elif body:
        text = f"the server sent an HTML page ({format_bytes(len(body))})"
    head = f"HTTP {code}" if code >= 300 else "not a Prometheus API answer"
    return f"{head}: {text}" if text else head
