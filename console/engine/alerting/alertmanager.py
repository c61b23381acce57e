"""A client of Alertmanager's API v2 for every replica of a cluster (v1 is gone in 0.27).

Why per replica: an Alertmanager cluster gossips silences and notification state, not alerts,
so a sender must post every alert to every replica (as Prometheus does), and a reader sees a
replica's own view. Here:

* **alerts** are read from every replica concurrently and merged by fingerprint (the same
  labels give the same fingerprint everywhere); the freshest copy wins and `replicas` says
  which replicas hold it;
* **silences** are read the same way, merged by id; one is created on the first replica that
  answers (gossip takes it to the others), expired the same way;
* **posting alerts** goes to every replica at once, each with its own deadline, so one that
  is down or hangs never delays the others, and the result says which took them.

A replica that fails is reported with a clear line (`replica 2 (127.0.0.1:9094): connection
refused`) while the answers of the others are used. Times are epoch seconds in and out;
RFC 3339 on the wire.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from console.engine.probes.http import _describe as _describe_http_error
from console.engine.probes.http_client import USER_AGENT, HttpClients, read_capped
from console.engine.text.fmt import format_bytes, format_duration
from console.engine.text.redact import redact
from console.engine.text.sanitize import one_line

__all__ = [
    "AMAlert",
    "AMError",
    "AMSilence",
    "Alertmanager",
    "Matcher",
    "iso",
    "parse_time",
]

MAX_BODY = 20_000_000


class AMError(Exception):
    """One replica's (or the cluster's) failure, as one safe line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(redact(message), 400))


def iso(t: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager writes it."""
    dt = datetime.fromtimestamp(t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_time(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time (None for missing, unparsable or Go's zero time)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
    return None if t < 0 else t


@dataclass(frozen=True, slots=True)
class Matcher:
    """A silence matcher as API v2 has it."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.is_regex:
            try:
                hit = re.fullmatch(self.value, got) is not None
            except re.error:
                return False
        else:
            hit = got == self.value
        return hit if self.is_equal else not hit

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex,
                "isEqual": self.is_equal}

    def describe(self) -> str:
        op = ("=~" if self.is_regex else "=") if self.is_equal else (
            "!~" if self.is_regex else "!=")
        return f'{self.name}{op}"{self.value}"'


@dataclass(frozen=True, slots=True)
class AMAlert:
    """An alert as Alertmanager holds it (merged over the replicas holding it)."""

    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # active, suppressed, unprocessed
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]
    starts_at: float | None
    ends_at: float | None
    updated_at: float | None
    receivers: tuple[str, ...]
    generator_url: str
    replicas: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any], replica: int) -> AMAlert:
        raw_status = d.get("status")
        status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
        return cls(
            fingerprint=str(d.get("fingerprint", "")),
            labels={str(k): str(v) for k, v in (d.get("labels") or {}).items()},
            annotations={str(k): str(v) for k, v in (d.get("annotations") or {}).items()},
            state=str(status.get("state", "unprocessed")),
            silenced_by=tuple(str(x) for x in status.get("silencedBy") or []),
            inhibited_by=tuple(str(x) for x in status.get("inhibitedBy") or []),
            starts_at=parse_time(d.get("startsAt")),
            ends_at=parse_time(d.get("endsAt")),
            updated_at=parse_time(d.get("updatedAt")),
            receivers=tuple(str(r.get("name", "")) for r in d.get("receivers") or []
                            if isinstance(r, dict)),
            generator_url=str(d.get("generatorURL") or ""),
            replicas=(replica,),
        )


@dataclass(frozen=True, slots=True)
class AMSilence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float | None
    ends_at: float | None
    created_by: str
    comment: str
    state: str  # active, pending, expired
    updated_at: float | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AMSilence:
        raw_status = d.get("status")
        status: dict[str, Any] = raw_status if isinstance(raw_status, dict) else {}
        matchers = tuple(
            Matcher(str(m.get("name", "")), str(m.get("value", "")), bool(m.get("isRegex")),
                    bool(m.get("isEqual", True)))
            for m in d.get("matchers") or [] if isinstance(m, dict))
        return cls(str(d.get("id", "")), matchers, parse_time(d.get("startsAt")),
                   parse_time(d.get("endsAt")), str(d.get("createdBy") or ""),
                   str(d.get("comment") or ""), str(status.get("state", "")),
                   parse_time(d.get("updatedAt")))

    @property
    def ack(self) -> bool:
        """An acknowledgement (kthxbye's convention): a comment starting with ACK!."""
        return self.comment.startswith("ACK!")

    def matches(self, labels: Mapping[str, str]) -> bool:
        return bool(self.matchers) and all(m.matches(labels) for m in self.matchers)

    def body(self, *, ends_at: float | None = None) -> dict[str, Any]:
        """This silence as a POST body (with its id: an update)."""
        return {"id": self.id, "matchers": [m.to_json() for m in self.matchers],
                "startsAt": iso(self.starts_at or time.time()),
                "endsAt": iso(ends_at if ends_at is not None else (self.ends_at or 0.0)),
                "createdBy": self.created_by, "comment": self.comment}


@dataclass(slots=True)
class Read:
    """What one read of the cluster gave: merged items and each failing replica's line."""

    items: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answered: int = 0


class Alertmanager:
    """Every replica of one cluster, on the shared connection pool."""

    def __init__(self, name: str, urls: Sequence[str], clients: HttpClients, *,
                 headers: Mapping[str, str] | None = None, timeout: float = 5.0,
                 insecure: bool = False, ca_file: str | None = None) -> None:
        self.name = name
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = float(timeout)
        self._transport = clients.transport(insecure=insecure, ca_file=ca_file)
        self._fresh = clients.transport(insecure=insecure, ca_file=ca_file, fresh=True)
        h = httpx.Headers({"user-agent": USER_AGENT, "accept": "application/json"})
        for k, v in (headers or {}).items():
            h[k] = v
        self._headers = h

    def where(self, i: int) -> str:
        url = httpx.URL(self.urls[i])
        host = f"{url.host}:{url.port}" if url.port else str(url.host)
        return f"replica {i + 1} ({one_line(redact(host), 80)})"

    # -- one request -------------------------------------------------------------------------

    async def _call(self, i: int, method: str, path: str, body: Any = None) -> Any:
        """One request to replica `i`; its JSON (None for an empty body), else AMError."""
        url = self.urls[i] + path
        headers = self._headers
        content = None
        if body is not None:
            content = orjson.dumps(body)
            headers = httpx.Headers(headers)
            headers["content-type"] = "application/json"
        request = httpx.Request(method, url, headers=headers, content=content)
        # Writes go on connections of their own: aiohttp does not retry a POST whose pooled
        # connection the server had closed, which would read as a failed send.
        transport = self._transport if method == "GET" else self._fresh
        deadline = asyncio.timeout(self.timeout)
        had_headers = False
        try:
            async with deadline:
                response = await transport.handle_async_request(request)
                had_headers = True
                try:
                    raw, truncated = await read_capped(response, MAX_BODY)
                finally:
                    await response.aclose()
        except TimeoutError:
            if deadline.expired():
                raise AMError(f"{self.where(i)}: no answer within "
                              f"{format_duration(self.timeout)}") from None
            raise AMError(f"{self.where(i)}: timed out") from None
        except (httpx.HTTPError, OSError) as exc:
            text = _describe_http_error(exc, had_headers)
            host = httpx.URL(self.urls[i])
            text = text.removesuffix(f" ({host.host}:{host.port})")  # said once, in where()
            raise AMError(f"{self.where(i)}: {text}") from None
        if truncated:
            raise AMError(f"{self.where(i)}: answer larger than {format_bytes(MAX_BODY)}")
        code = response.status_code
        if code >= 300:
            detail = ""
            try:
                doc = orjson.loads(raw)
                detail = str(doc.get("message") or doc) if isinstance(doc, dict) else str(doc)
            except orjson.JSONDecodeError:
                detail = raw[:300].decode("utf-8", "replace").strip()
            if code == 404 and "/api/v2" in path and not detail.startswith("{"):
                detail = detail or "not found (an Alertmanager with API v2, 0.16 or newer?)"
            raise AMError(f"{self.where(i)}: HTTP {code}" + (f": {detail}" if detail else ""))
        if not raw.strip():
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise AMError(f"{self.where(i)}: not an Alertmanager API answer") from None

    async def _each(self, method: str, path: str, body: Any = None
                    ) -> list[tuple[int, Any, AMError | None]]:
        """The same request to every replica at once: (replica, answer, error) each."""
        async def one(i: int) -> tuple[int, Any, AMError | None]:
            try:
                return i, await self._call(i, method, path, body), None
            except AMError as exc:
                return i, None, exc

        return list(await asyncio.gather(*(one(i) for i in range(len(self.urls)))))

    async def _first(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The request on the first replica that answers (in order); AMError naming every
        replica's failure when none does."""
        errors = []
        for i in range(len(self.urls)):
            try:
                return i, await self._call(i, method, path, body)
            except AMError as exc:
                errors.append(str(exc))
        raise AMError(f"no replica of {self.name} answered: " + "; ".join(errors))

    # -- reading ----------------------------------------------------------------------------

    async def alerts(self) -> Read:
        """Every replica's alerts (active, silenced and inhibited), merged by fingerprint."""
        out = Read()
        merged: dict[str, AMAlert] = {}
        for i, doc, err in await self._each("GET", "/api/v2/alerts"):
            if err is not None:
                out.errors.append(str(err))
                continue
            out.answered += 1
            for d in doc if isinstance(doc, list) else []:
                if not isinstance(d, dict):
                    continue
                a = AMAlert.from_json(d, i)
                old = merged.get(a.fingerprint)
                if old is None:
                    merged[a.fingerprint] = a
                    continue
                newer = a if (a.updated_at or 0) > (old.updated_at or 0) else old
                merged[a.fingerprint] = replace(
                    newer, replicas=tuple(sorted(set(old.replicas + a.replicas))),
                    silenced_by=tuple(dict.fromkeys(old.silenced_by + a.silenced_by)),
                    inhibited_by=tuple(dict.fromkeys(old.inhibited_by + a.inhibited_by)))
        out.items = sorted(merged.values(), key=lambda a: (a.starts_at or 0, a.fingerprint))
        return out

    async def silences(self) -> Read:
        """Every replica's silences merged by id (the most recently updated copy)."""
        out = Read()
        merged: dict[str, AMSilence] = {}
        for _, doc, err in await self._each("GET", "/api/v2/silences"):
            if err is not None:
                out.errors.append(str(err))
                continue
            out.answered += 1
            for d in doc if isinstance(doc, list) else []:
                if isinstance(d, dict):
                    s = AMSilence.from_json(d)
                    old = merged.get(s.id)
                    if old is None or (s.updated_at or 0) > (old.updated_at or 0):
                        merged[s.id] = s
        out.items = sorted(merged.values(), key=lambda s: (s.ends_at or 0, s.id))
        return out

    async def silence(self, silence_id: str) -> AMSilence:
        """One silence as the first replica answering has it (AMError if none does)."""
        _, doc = await self._first("GET", f"/api/v2/silence/{silence_id}")
        if not isinstance(doc, dict):
            raise AMError(f"{self.name}: silence {silence_id} not found")
        return AMSilence.from_json(doc)

    # -- writing ----------------------------------------------------------------------------

    async def create_silence(self, matchers: Sequence[Matcher], *, starts_at: float,
                             ends_at: float, created_by: str, comment: str) -> str:
        """A new silence (on the first replica that answers; gossip spreads it); its id."""
        body = {"matchers": [m.to_json() for m in matchers], "startsAt": iso(starts_at),
                "endsAt": iso(ends_at), "createdBy": created_by, "comment": comment}
        return await self._post_silence(body)

    async def update_silence(self, silence: AMSilence, ends_at: float) -> str:
        """The silence with a new end; Alertmanager may answer with a new id (it replaces a
        silence it cannot change in place)."""
        return await self._post_silence(silence.body(ends_at=ends_at))

    async def _post_silence(self, body: dict[str, Any]) -> str:
        _, doc = await self._first("POST", "/api/v2/silences", body)
        sid = doc.get("silenceID") if isinstance(doc, dict) else None
        if not sid:
            raise AMError(f"{self.name}: the silence was not accepted (no silenceID)")
        return str(sid)

    async def expire_silence(self, silence_id: str) -> None:
        await self._first("DELETE", f"/api/v2/silence/{silence_id}")

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> list[AMError | None]:
        """POST the alerts to every replica at once; per replica None (taken) or its error."""
        results = await self._each("POST", "/api/v2/alerts", alerts)
        return [err for _, _, err in sorted(results, key=lambda r: r[0])]

