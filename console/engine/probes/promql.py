"""`promql` targets: named PromQL expressions evaluated by the team's Prometheus-compatible store.

A check asks the store for every expression at one instant (concurrently, within the
target's timeout) and turns the answers into the same `CheckResult` every probe gives, so
panels, rules and alerts use them like any other target's metrics:

* a result without labels (`sum(rate(...))`, a scalar) is the metric itself: `rps`;
* a vector with labels is one series per label set, `cpu_pct{instance="web-1"}` (the
  `__name__` label left out when every series has the same one), at most `max_series` of
  them (the largest values; the rest are counted and said to be dropped). Metrics that share
  the same label names make one breakdown table (`b` on the detail view), one row per label
  set, one column per metric;
* what the store says about its answer is kept: warnings (a Thanos partial response, a
  VictoriaMetrics `isPartial`) make the target DEGRADED with the warning as the reason; an
  expression the store refuses (`bad_data`), a timeout or an error makes that metric fail
  (DEGRADED while others answer, DOWN when none does), with the store's own words;
* which engine answers is asked once (and again every ENGINE_EVERY): VictoriaMetrics hides
  samples newer than its `-search.latencyOffset` (30 s by default), which the detail view
  says next to every value, since a rule on that data fires that much later.

Charts come from the store too (`history()`): a `query_range` over the chart's span with a
step fitted to its width, so a 24 h chart costs one request and no local memory.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from console.engine.config.envref import MissingEnv, expand, expand_url
from console.engine.config.schema import PromqlTarget
from console.engine.details import BreakdownTable, PromqlDetails, PromqlQuery, Row
from console.engine.model import CheckResult, Status
from console.engine.probes.http_client import HttpClients
from console.engine.probes.promapi import (
    EngineInfo,
    InstantResult,
    PromAPI,
    PromAPIError,
    chart_step,
    series_key,
)
from console.engine.text.fmt import format_duration
from console.engine.text.sanitize import one_line

__all__ = ["PromqlProbe", "series_metrics"]

ENGINE_EVERY = 600.0  # seconds between two asks of which engine answers
CONCURRENCY = 8  # queries of one check in flight at once


@dataclass(frozen=True, slots=True)
class _Answer:
    name: str
    result: InstantResult | None = None
    error: PromAPIError | None = None


def series_metrics(name: str, result: InstantResult
                   ) -> list[tuple[str, dict[str, str], float]]:
    """(metric or metric{labels}, labels, value) per series of one answer.

    `__name__` is left out when every series carries the same one (a plain selector), kept
    when they differ (a regex on names), so keys never collide.
    """
    names = {dict(s.labels).get("__name__") for s in result.samples}
    drop_name = len(names) <= 1
    out = []
    for s in result.samples:
        labels = {k: v for k, v in s.labels if not (drop_name and k == "__name__")}
        out.append((name + series_key(labels), labels, s.value))
    return out


class PromqlProbe:
    """Evaluates one PromqlTarget's expressions; `check()` never raises (but CancelledError)."""

    kind = "promql"

    def __init__(self, target: PromqlTarget, clients: HttpClients, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.target = target
        self._clock = clock
        self._setup_error: str | None = None
        self._api: PromAPI | None = None
        self._chart_api: PromAPI | None = None
        self.engine: EngineInfo | None = None
        self._engine_at = -math.inf
        try:
            url = expand_url(target.url)
            headers = {k: expand(v) for k, v in target.headers.items()}
            params = {k: expand(v, secret=False) for k, v in target.params.items()}
        except MissingEnv as exc:
            self._setup_error = f"environment variable {exc.args[0]} is not set"
            return
        common: dict[str, Any] = {
            "headers": headers, "timeout": float(target.timeout), "insecure": target.insecure,
            "ca_file": target.ca_file, "max_body": int(target.max_body),
            "max_series": int(target.max_series)}
        try:
            # Rules read these values: ask Thanos for all stores or an error (a partial
            # answer would look like a drop). Charts may show what there is, with a warning.
            self._api = PromAPI(url, clients, params={
                **params, "partial_response": str(target.partial_response).lower()}, **common)
            self._chart_api = PromAPI(url, clients, params=params, **common)
        except PromAPIError as exc:
            self._setup_error = str(exc)

    @property
    def bytes_read(self) -> int:
        """Bytes of every answer the store sent this probe (queries and charts)."""
        return sum(api.bytes_read for api in (self._api, self._chart_api) if api is not None)

    async def aclose(self) -> None:
        """Nothing to close: connections belong to the shared HttpClients."""

    # -- one check ---------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        started = self._clock()
        t0 = time.perf_counter()
        if self._setup_error is not None or self._api is None:
            return self._result(started, None, Status.DOWN, self._setup_error or "not set up")
        deadline = asyncio.timeout(self.target.timeout + 0.2)
        try:
            async with deadline:
                await self._maybe_engine()
                answers = await self._ask_all(started)
        except TimeoutError:
            return self._result(started, (time.perf_counter() - t0) * 1000.0, Status.DOWN,
                                f"no answer within {format_duration(self.target.timeout)} "
                                f"from {self._api.where}")
        latency_ms = (time.perf_counter() - t0) * 1000.0
        return self._combine(started, latency_ms, answers)

    async def _maybe_engine(self) -> None:
        """Which engine answers: asked at the first check and every ENGINE_EVERY; a failure
        here is not the check's (the queries will say whether the store answers)."""
        assert self._api is not None
        now = time.monotonic()
        if now - self._engine_at < ENGINE_EVERY:
            return
        self._engine_at = now
        try:
            self.engine = await self._api.engine()
        except PromAPIError:
            self._engine_at = -math.inf  # ask again next check

    async def _ask_all(self, at: float) -> list[_Answer]:
        assert self._api is not None
        api = self._api
        gate = asyncio.Semaphore(CONCURRENCY)

        async def ask(name: str, expr: str) -> _Answer:
            async with gate:
                try:
                    return _Answer(name, await api.query(expr, at))
                except PromAPIError as exc:
                    return _Answer(name, error=exc)

        return list(await asyncio.gather(*(ask(n, e) for n, e in self.target.metrics.items())))

    def _combine(self, started: float, latency_ms: float, answers: list[_Answer]
                 ) -> CheckResult:
        metrics: dict[str, float] = {}
        queries: dict[str, PromqlQuery] = {}
        tables: dict[tuple[str, ...], list[str]] = {}
        labelled: dict[str, list[tuple[str, dict[str, str], float]]] = {}
        reasons: list[str] = []
        notes: list[str] = []
        failed = 0
        kept_total = 0
        for a in answers:
            info: PromqlQuery = {"expr": one_line(self.target.metrics[a.name], 300)}
            queries[a.name] = info
            if a.error is not None:
                failed += 1
                info["error"] = str(a.error)
                info["error_kind"] = a.error.kind
                reasons.append(f"{a.name}: {a.error}")
                continue
            assert a.result is not None
            values = series_metrics(a.name, a.result)
            metrics.update((key, value) for key, _, value in values)
            label_names = sorted({k for _, labels, _ in values for k in labels})
            kept_total += len(values)
            info.update({"series": a.result.total, "kept": len(values), "labels": label_names})
            if a.result.warnings:
                info["warnings"] = list(a.result.warnings)
                reasons += [f"{a.name}: warning: {w}" for w in a.result.warnings]
            if a.result.dropped:
                notes.append(f"{a.name}: {a.result.total} series, showing the "
                             f"{len(values)} largest ({a.result.dropped} dropped; "
                             "max_series raises the cap)")
            if not a.result.samples:
                notes.append(f"{a.name}: the query matched no series")
            if label_names:
                tables.setdefault(tuple(label_names), []).append(a.name)
                labelled[a.name] = values
        engine = self.engine
        if engine is not None and engine.latency_offset > 0:
            notes.insert(0, f"{engine.name} hides samples newer than "
                         f"{format_duration(engine.latency_offset)} (-search.latencyOffset): "
                         f"every value here is at least that old")
        metrics["latency_ms"] = latency_ms
        metrics["series"] = float(kept_total)
        metrics["queries_failed"] = float(failed)
        details: PromqlDetails = {"queries": queries, "eval_time": started}
        if engine is not None:
            details["engine"] = engine.describe()
            if engine.latency_offset:
                details["latency_offset_s"] = engine.latency_offset
        if notes:
            details["notes"] = notes
        if tables:
            details["breakdowns"] = _tables(tables, labelled, self.target.max_series)
        if failed == len(answers):
            first = reasons[0] if reasons else "every query failed"
            more = f" (and {failed - 1} more)" if failed > 1 else ""
            result = self._result(started, latency_ms, Status.DOWN, first + more, details)
            return result
        status = Status.DEGRADED if reasons else Status.UP
        return CheckResult(
            target=self.target.name, kind=self.kind, status=status, started_at=started,
            latency_ms=latency_ms, metrics=metrics, reasons=tuple(reasons), details=details)

    def _result(self, started: float, latency_ms: float | None, status: Status, error: str,
                details: PromqlDetails | None = None) -> CheckResult:
        metrics = {} if latency_ms is None else {"latency_ms": latency_ms}
        return CheckResult(
            target=self.target.name, kind=self.kind, status=status, started_at=started,
            latency_ms=latency_ms, error=one_line(error, 400), metrics=metrics,
            details=details or {})

    # -- charts ------------------------------------------------------------------------------

    async def history(self, metric: str, span: float, points: int,
                      now: float | None = None) -> dict[str, Any]:
        """A chart of `metric` over the last `span` seconds from the store (query_range),
        `points` wide (the step follows, at most 11,000 points): {"series": [{"key", "t",
        "v"}], "step", "total", "dropped", "warnings"} or {"error": text}."""
        if self._chart_api is None:
            return {"error": self._setup_error or "not set up"}
        expr = self.target.metrics.get(metric)
        if expr is None:
            return {"error": f"{metric} is not one of this target's metrics"}
        end = self._clock() if now is None else now
        step = chart_step(span, points)
        start = end - span
        try:
            res = await self._chart_api.query_range(expr, start, end, step)
        except PromAPIError as exc:
            return {"error": str(exc), "step": step}
        names = {dict(s.labels).get("__name__") for s in res.series}
        series = []
        for s in res.series:
            labels = {k: v for k, v in s.labels if not (len(names) <= 1 and k == "__name__")}
            series.append({"key": metric + series_key(labels), "t": s.t, "v": s.v})
        return {"series": series, "step": step, "start": start, "end": end,
                "total": res.total, "dropped": res.dropped, "warnings": list(res.warnings)}


def _tables(groups: dict[tuple[str, ...], list[str]],
            labelled: dict[str, list[tuple[str, dict[str, str], float]]],
            top: int) -> dict[str, BreakdownTable]:
    """One breakdown table per set of label names: a row per label set, a column per metric
    (the shape the breakdown screen shows for scrape targets); label values are remote text
    and come out through `one_line`."""
    out: dict[str, BreakdownTable] = {}
    for by, names in groups.items():
        rows: dict[tuple[str, ...], Row] = {}
        for name in names:
            for _, labels, value in labelled[name]:
                group = tuple(labels.get(b, "") for b in by)
                row = rows.get(group)
                if row is None:
                    row = rows[group] = {b: one_line(v, 200) for b, v in zip(by, group,
                                                                             strict=True)}
                row[name] = None if math.isnan(value) else value
        ranked = sorted(rows.values(), key=lambda r: _sort_value(r.get(names[0])))
        out["by " + ", ".join(by)] = {
            "by": list(by), "columns": [*by, *names], "rows": ranked[:top],
            "others": max(0, len(ranked) - top), "groups": len(ranked), "window_s": None,
            "default": False,
        }
    return out


def _sort_value(v: Any) -> float:
    return -float(v) if isinstance(v, int | float) and not math.isnan(v) else math.inf
