"""Immutable results that flow from probes to the store, the UI and the headless commands."""

from __future__ import annotations

import dataclasses
import struct
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from math import copysign
from typing import Literal, TypedDict, overload

from console.engine.details import (
    BreakdownTable,
    HeartbeatDetails,
    HostDetails,
    HttpDetails,
    LighthouseDetails,
    LogDetails,
    PostgresDetails,
    PrometheusDetails,
    PromqlDetails,
    RedisDetails,
)
from console.engine.status import Status as Status  # re-exported (it lives apart: see there)

# The playbook's severities, most urgent first.
Severity = Literal["P0", "P1", "P2", "P3"]
SEVERITIES: tuple[Severity, ...] = ("P0", "P1", "P2", "P3")


class AlertEpisode(TypedDict, total=False):
    """One firing episode of one alert, as the alert history keeps it and every reader gets
    it: the Alerts screen, `alerts --history`, the incident timeline, KPIs, post-mortems,
    the daily summary and the shared state. Written as JSON, so every field is optional to
    a reader of an older file."""

    type: Literal["episode"]
    key: str  # "<rule>/<target>/<incident number>"
    rule: str
    target: str
    severity: Severity
    summary: str
    incident: int
    fired_at: float
    acknowledged_at: float | None
    acknowledged_by: str | None
    resolved_at: float | None
    duration_s: float
    ongoing: bool
    peak: float | None
    flapping: bool
    silenced_by: str | None
    detect_s: float | None
    first_fail_at: float | None
    labels: dict[str, str]
    cause: str  # what the probe saw on the episode's latest failing sample
    # what the alert said when it fired (the words people were notified with); the
    # summary and cause above keep changing while the episode is ongoing
    fired_summary: str
    fired_cause: str
    metric: str
    pending_for_s: float  # the rule's `for`: it fires no sooner after the first failure
    window_s: float | None  # the rule's window when it aggregates over time: it resolves
    # only once the window holds no failure, up to this long after the service recovered
    expr: str  # the rule's condition: what `peak` measures ("increase(errors_total, 1m)")


class IncidentEntry(TypedDict, total=False):
    """One entry of the incident journal (`incidents/book.py` writes and folds them): the
    incident opened, a step checked, a note, a severity change, a snapshot, a handover, an
    action (acknowledge, mitigate, resolve, reopen…), a status update, the incident channel,
    another alert attached.
    Read back by the book, the timeline, KPIs, post-mortems, the runtime (Slack) and the
    screens; written as JSON by this and other consoles (and older versions), so every
    field is optional to a reader, which checks what it uses."""

    id: str  # unique: the book takes an entry once
    ts: float
    actor: str
    type: str  # "incident.open", "incident.note"… (book.OPEN, book.NOTE…)
    incident: str  # the incident's id
    # incident.open
    title: str
    severity: str
    alerts: list[str]
    started: float
    playbooks: list[str]
    runbook: str  # also incident.runbook: the runbook attached
    detected: float
    targets: list[str]
    episodes: list[str]  # alert history keys rule/target/n
    acknowledged: float  # its alert was acknowledged before (when, and by whom)
    acknowledged_by: str
    # incident.check, incident.uncheck, incident.note (a note may be on a step)
    section: str | None
    playbook: str | None
    item: int
    # a note's, a handover's, an action's or a status update's words
    text: str
    reason: str  # incident.severity, incident.reopen
    confirmed: bool  # incident.severity: the severity it had, confirmed
    draft: bool  # incident.postmortem: the draft written, not yet the post-mortem
    values: dict[str, float | None]  # incident.snapshot: series -> value
    label: str
    to: str  # incident.handover: the new owner
    false_positive: bool  # incident.resolve
    value: bool  # incident.false_positive
    user_facing: bool  # incident.status
    routes: list[str]  # incident.status: the receivers that post it (none: nobody told)
    name: str  # incident.channel
    channel_id: str
    # incident.alert: another alert attached (its id, target and history key)
    alert: str
    target: str
    episode: str


# What a target can be; `console.engine.config.schema.TARGET_KINDS` maps each to its schema.
TargetKind = Literal["http", "postgres", "redis", "prometheus", "promql", "log", "host",
                     "heartbeat", "lighthouse"]
# The kinds whose results carry per-label tables (`CheckResult.breakdowns`, the breakdown
# screen) and the kinds with a database drill-down (`incidents.links.DB_TABS`, its tabs).
BREAKDOWN_KINDS: tuple[TargetKind, ...] = ("prometheus", "promql")
DATABASE_KINDS: tuple[TargetKind, ...] = ("postgres", "redis")


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """What came back over the network, already sanitised and truncated for display."""

    status_code: int | None = None
    reason: str = ""
    http_version: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body_excerpt: str = ""
    body_bytes: int = 0
    truncated: bool = False
    final_url: str = ""
    redirects: int = 0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of one target.

    `error` and every text field are sanitised (no control characters) and redacted (no
    secrets), so any consumer may show them; they are still plain text, never markup.
    `reasons` lists why a target is degraded or down (failed conditions), for the detail view.
    """

    target: str
    kind: str
    status: Status
    started_at: float  # wall-clock epoch seconds
    latency_ms: float | None
    error: str | None = None
    reasons: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    response: ResponseInfo | None = None
    # Structured drill-down data (e.g. a database's sessions, top statements, tables): plain
    # JSON types only, text already sanitised and redacted. Shown by the UI and `check --json`.
    # Its shape is the kind's TypedDict in `details.py`; read it through `details_of`.
    details: Mapping[str, object] = field(default_factory=dict)

    @overload
    def details_of(self, kind: Literal["http"]) -> HttpDetails: ...
    @overload
    def details_of(self, kind: Literal["postgres"]) -> PostgresDetails: ...
    @overload
    def details_of(self, kind: Literal["redis"]) -> RedisDetails: ...
    @overload
    def details_of(self, kind: Literal["prometheus"]) -> PrometheusDetails: ...
    @overload
    def details_of(self, kind: Literal["promql"]) -> PromqlDetails: ...
    @overload
    def details_of(self, kind: Literal["log"]) -> LogDetails: ...
    @overload
    def details_of(self, kind: Literal["host"]) -> HostDetails: ...
    @overload
    def details_of(self, kind: Literal["heartbeat"]) -> HeartbeatDetails: ...
    @overload
    def details_of(self, kind: Literal["lighthouse"]) -> LighthouseDetails: ...

    def details_of(self, kind: TargetKind) -> Mapping[str, object]:
        """This result's details as `kind`'s TypedDict (`details.py`), or empty ones when
        the result is of another kind: a reader asks for the shape it knows how to read, and
        never reads another kind's key of the same name as if it were its own."""
        if self.kind != kind:
            return {}
        return self.details

    @property
    def notes(self) -> list[str]:
        """What the probe notes about its answer (a collector off, series dropped, a
        Lighthouse warning…): promql, postgres, redis and lighthouse details have them."""
        if self.kind == "promql":
            return self.details_of("promql").get("notes") or []
        if self.kind == "postgres":
            return self.details_of("postgres").get("notes") or []
        if self.kind == "redis":
            return self.details_of("redis").get("notes") or []
        return self.details_of("lighthouse").get("notes") or []

    @property
    def breakdowns(self) -> dict[str, BreakdownTable] | None:
        """The per-label tables of a scrape (prometheus) or of labelled PromQL results
        (promql), by name; None for other kinds or when there are none."""
        if self.kind == "promql":
            return self.details_of("promql").get("breakdowns")
        return self.details_of("prometheus").get("breakdowns")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.target,
            "kind": self.kind,
            "status": self.status.value,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "error": self.error,
            "reasons": list(self.reasons),
            "checked_at": self.started_at,
            "metrics": self.metrics,
            **({"details": self.details} if self.details else {}),
        }


class RecentResults:
    """A target's last `maxlen` check results, newest last, in a fraction of the memory.

    Why: the scheduler keeps 50 results per target (the detail view's response log). As
    full objects that was ~27 KB a target (each result a slotted object, its metrics dict and
    float objects), about a third of the console's per-target memory at 1,000 targets
    (`bench/bench_scale.py`, RSS 100 MB + 50 KB per target). A healthy target's results
    differ from one another only in their time, latency and metric values, so the newest
    `full` are kept as they are and an older one that matches the last full one kept (its
    "prototype": every field but `started_at`, `latency_ms` and the metrics' values the
    same object or equal, the metrics with the same keys in the same order) is kept as the
    prototype and its numbers packed as float64 bytes; any other result stays whole and
    becomes the next prototype. A packed entry holds only the metric values that differ
    from the prototype's (a bit mask says which): a healthy HTTP target's status code, body
    size and component counts repeat, so an entry is 33 bytes instead of up to 72: 40 bytes
    less for each of ~45 packed entries, ~3.6 MB at 2,000 targets. Reading rebuilds
    equal results (a metric that was an int is read back as the equal float).
    """

    __slots__ = ("_base", "_full", "_items", "_proto", "maxlen")

    def __init__(self, maxlen: int = 50, full: int = 5) -> None:
        self.maxlen = maxlen
        self._full = max(1, full)
        # A packed entry is bytes; its prototype is the nearest whole result before it, or
        # `_base` (the last whole result that left the deque) when there is none. Not a
        # (prototype, bytes) tuple per entry: at 1,000 targets those tuples were 2.5 KB a
        # target (`bench/_memprobe.py`).
        self._items: deque[CheckResult | bytes] = deque(maxlen=maxlen)
        self._base: CheckResult | None = None
        self._proto: CheckResult | None = None  # the prototype of the next entry packed

    def append(self, result: CheckResult) -> None:
        items = self._items
        if len(items) == self.maxlen and isinstance(first := items[0], CheckResult):
            self._base = first  # leaves now: the prototype of the packed entries after it
        items.append(result)
        k = len(items) - 1 - self._full  # the result that just left the newest `full`
        if k < 0:
            return
        item = items[k]
        assert isinstance(item, CheckResult)
        proto = self._proto
        if proto is not None and (packed := _pack(item, proto)) is not None:
            items[k] = packed
        else:
            self._proto = item  # kept whole: the prototype of what follows

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[CheckResult]:
        proto = self._base
        for item in list(self._items):
            if isinstance(item, CheckResult):
                proto = item
                yield item
            else:
                assert proto is not None
                yield _unpack(proto, item)

    def __getitem__(self, i: int) -> CheckResult:
        items = self._items
        item = items[i]
        if isinstance(item, CheckResult):
            return item
        j = (i % len(items)) - 1
        while j >= 0 and not isinstance(items[j], CheckResult):
            j -= 1
        proto = items[j] if j >= 0 else self._base
        assert isinstance(proto, CheckResult)
        return _unpack(proto, item)


def _pack(r: CheckResult, proto: CheckResult) -> bytes | None:
    """`r`'s numbers as bytes when every other field is `proto`'s; None when it is not."""
    if (r.latency_ms is None or type(r.latency_ms) is not float
            or r.status is not proto.status or r.target != proto.target
            or r.kind != proto.kind or r.error != proto.error
            or (r.reasons is not proto.reasons and r.reasons != proto.reasons)
            or (r.response is not proto.response and r.response != proto.response)
            or (r.details is not proto.details and r.details != proto.details)):
        return None
    m, pm = r.metrics, proto.metrics
    if len(m) != len(pm):
        return None
    values = [r.started_at, r.latency_ms]
    mask = 0
    bit = 1
    for (k, v), (pk, pv) in zip(m.items(), pm.items(), strict=True):
        if k != pk or type(v) is not float:
            return None
        # the prototype's value, bit for bit (a zero's sign too; any NaN for a NaN), is
        # left out; an int there is not (it would read back as an int)
        if type(pv) is not float or (
                (v != pv or (v == 0.0 and copysign(1.0, v) != copysign(1.0, pv)))
                and (v == v or pv == pv)):
            values.append(v)
            mask |= bit
        bit <<= 1
    return (struct.pack("2d", values[0], values[1]) + mask.to_bytes((len(m) + 7) // 8, "little")
            + struct.pack(f"{len(values) - 2}d", *values[2:]))


def _unpack(proto: CheckResult, packed: bytes) -> CheckResult:
    started_at, latency_ms = struct.unpack_from("2d", packed)
    pm = proto.metrics
    at = 16 + (len(pm) + 7) // 8
    mask = int.from_bytes(packed[16:at], "little")
    differ = iter(struct.unpack_from(f"{(len(packed) - at) // 8}d", packed, at))
    metrics = {k: next(differ) if mask >> i & 1 else v for i, (k, v) in enumerate(pm.items())}
    return dataclasses.replace(proto, started_at=started_at, latency_ms=latency_ms,
                               metrics=metrics)
