"""The inbound listener: events, heartbeat pings and webhooks over HTTP (aiohttp), off by
default, and the alerts webhooks raise.

Routes (every request authenticated; see `[inbound]` in `config/schema.py`):

    POST /events                       an event (JSON: text, kind, service, version, link)
    GET|POST /ping/NAME[/start|/fail]  a heartbeat check-in, as healthchecks.io
    POST /hooks/SOURCE                 a webhook of a configured source (Sentry, Stripe, JSON)

`/events` and `/ping` take ``Authorization: Bearer <[inbound] token>`` (a heartbeat's own
`token` if it has one); a source takes its sender's scheme: Stripe's ``Stripe-Signature``
(an HMAC of timestamp and body, refused when older than `tolerance`), Sentry's
``Sentry-Hook-Signature`` (an HMAC of the body), or a bearer token for `json`. Secrets are
`${ENV}` references, read per request. Bodies over `max_body` get 413 (before they are
read, when Content-Length says so), each client address gets `rate` requests a second (429
past its burst), a bad signature or token 401; each refusal is one log line and a count in
`stats`, never a crash. Request bodies are data: what is shown of them passes through
`text.sanitize`.

A webhook mapped to an alert (`mapping.py`) becomes a lifecycle alert of a rule made for
it (`inbound.SOURCE.KEY`, severity and summary from the mapping), fired at once and
resolved by the sender or `resolve_after` after the last request; it is also recorded as
an event, from which a restarted console rebuilds the alerts still open.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from console.engine.alerting.rules import Evaluation
from console.engine.config.envref import MissingEnv, expand
from console.engine.config.rules import Rule
from console.engine.config.schema import InboundSection, InboundSource, Settings
from console.engine.signals.events import EventLog, make_event
from console.engine.signals.mapping import Mapped, map_body
from console.engine.text.sanitize import one_line

__all__ = ["InboundAlerts", "Listener", "sentry_signature", "stripe_signature_ok"]

log = logging.getLogger(__name__)

MAX_ALERTS = 1000  # open inbound alerts kept; the oldest go first beyond this
ALERT_EVENT = "alert"  # the event kind a webhook is recorded as


# -- signatures ---------------------------------------------------------------------------------


def sentry_signature(secret: str, body: bytes) -> str:
    """Sentry's ``Sentry-Hook-Signature``: HMAC-SHA256 of the raw body, hex."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def stripe_signature_ok(header: str, secret: str, body: bytes, now: float,
                        tolerance: float) -> str | None:
    """None if ``Stripe-Signature`` (``t=…,v1=…``) signs `body` with `secret` within
    `tolerance` seconds of `now`; else why not (Stripe's scheme: HMAC-SHA256 of
    ``"{t}.{body}"``, any of several v1 signatures may match)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        k, _, v = item.strip().partition("=")
        parts.setdefault(k, []).append(v)
    try:
        ts = int(parts.get("t", [""])[0])
    except ValueError:
        return "Stripe-Signature has no timestamp"
    if abs(now - ts) > tolerance:
        return f"Stripe-Signature timestamp outside the tolerance ({tolerance:g}s)"
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, v) for v in parts.get("v1", [])):
        return "Stripe-Signature does not match"
    return None


# -- the alerts webhooks raise ------------------------------------------------------------------


@dataclass(slots=True)
class InboundAlert:
    rule: Rule
    source: str
    dedup: str
    last_at: float
    cause: str = ""
    resolved_at: float | None = None
    labels: dict[str, str] = field(default_factory=dict)


def _rule_name(source: str, dedup: str) -> str:
    return f"inbound.{source}.{hashlib.sha256(dedup.encode()).hexdigest()[:12]}"


class InboundAlerts:
    """Alerts raised by webhooks, as evaluations for the alert lifecycle (`AlertService`
    steps them every tick and at once on arrival): failing while open, ok once the sender
    resolved it or `resolve_after` passed."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 advice: Callable[[Rule], str] | None = None) -> None:
        self.clock = clock
        self.advice = advice
        self.sources: dict[str, InboundSource] = {}
        self._alerts: OrderedDict[str, InboundAlert] = OrderedDict()

    def configure(self, section: InboundSection) -> None:
        self.sources = {s.name: s for s in section.sources}

    def rules(self) -> list[Rule]:
        return [a.rule for a in self._alerts.values()]

    def open(self) -> list[InboundAlert]:
        return [a for a in self._alerts.values() if a.resolved_at is None]

    def apply(self, source: InboundSource, mapped: Mapped, at: float) -> str | None:
        """Fire or resolve the alert `mapped` names; its rule name (None: nothing to do)."""
        name = _rule_name(source.name, mapped.dedup)
        current = self._alerts.get(name)
        if mapped.action == "resolve":
            if current is None or current.resolved_at is not None:
                return None
            current.resolved_at = at
            return name
        if mapped.action != "fire":
            return None
        rule = Rule(name=name, expr="inbound > 0", severity=mapped.severity,
                    summary=mapped.summary, runbook=mapped.runbook, failure_threshold=1,
                    success_threshold=1, nodata_intervals=1000,
                    labels={"source": source.name})
        if self.advice is not None and not rule.action:
            with contextlib.suppress(Exception):
                rule = rule.model_copy(update={"action": self.advice(rule)[:300]})
        labels = {"service": source.service or source.name, "source": source.name,
                  "rule": name, "target": source.name, "severity": mapped.severity}
        if current is not None and current.rule.severity == rule.severity \
                and current.rule.summary == rule.summary:
            rule = current.rule  # the same alert again: keep its rule object
        cause = mapped.cause + (f" ({mapped.link})" if mapped.link else "")
        self._alerts[name] = InboundAlert(rule, source.name, mapped.dedup, at, cause,
                                          None, labels)
        self._alerts.move_to_end(name)
        while len(self._alerts) > MAX_ALERTS:
            self._alerts.popitem(last=False)
        return name

    def evaluations(self, now: float) -> list[Evaluation]:
        out = []
        done = []
        for name, a in self._alerts.items():
            source = self.sources.get(a.source)
            after = source.resolve_after if source is not None else 3600.0
            if a.resolved_at is None and now - a.last_at >= after:
                a.resolved_at = a.last_at + after
            firing = a.resolved_at is None
            sample_t = a.last_at if firing else a.resolved_at
            detail = (f"{a.source}: {a.dedup}" if firing else
                      f"{a.source}: resolved" + ("" if a.resolved_at != a.last_at + after
                                                 else f" (no request for {after:g}s)"))
            out.append(Evaluation(a.rule, a.source, "fail" if firing else "ok",
                                  1.0 if firing else 0.0, sample_t, now, detail,
                                  tuple(sorted(a.labels.items())), a.cause))
            if not firing and a.resolved_at is not None and now - a.resolved_at > 60:
                done.append(name)
        for name in done:  # seen resolved for a minute of ticks: forget it
            self._alerts.pop(name, None)
        return out

    def rebuild(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Open alerts again from recorded webhook events (a restart); returns how many."""
        for e in events:
            if e.get("kind") != ALERT_EVENT:
                continue
            source = self.sources.get(str(e.get("source_name")))
            if source is None:
                continue
            mapped = Mapped(str(e.get("action")), str(e.get("severity", "P2")),
                            str(e.get("text", "")), str(e.get("dedup", "")),
                            str(e.get("cause", "")), str(e.get("link") or ""),
                            str(e.get("runbook", "")))
            self.apply(source, mapped, float(e.get("ts") or 0.0))
        return len(self.open())


# -- the listener -------------------------------------------------------------------------------


class _Bucket:
    """A token bucket: `rate` per second, at most `burst` at once."""

    __slots__ = ("at", "tokens")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.at = now

    def take(self, rate: float, burst: int, now: float) -> float:
        """0 if a request may pass now, else the seconds until one may."""
        self.tokens = min(float(burst), self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


@dataclass(slots=True)
class ListenerStats:
    accepted: int = 0
    unauthorized: int = 0
    too_large: int = 0
    rate_limited: int = 0
    bad_request: int = 0


class Listener:
    """The aiohttp server; `start()` binds, `stop()` closes. `port` is the bound port."""

    def __init__(self, settings: Settings, *, events: EventLog | None, pings: Any,
                 alerts: InboundAlerts, on_alert: Callable[[], object],
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.section = settings.inbound
        self.events = events
        self.pings = pings
        self.alerts = alerts
        self.on_alert = on_alert
        self.clock = clock
        self.stats = ListenerStats()
        self.port: int | None = None
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._runner: Any = None

    def apply(self, settings: Settings) -> None:
        """New sources, tokens and heartbeats (a host, port or size change needs a restart of
        the listener, which the runtime does)."""
        self.settings = settings
        self.section = settings.inbound
        self.alerts.configure(settings.inbound)

    async def start(self) -> None:
        from aiohttp import web

        @web.middleware
        async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
            response: web.StreamResponse = await self._guard(request, handler)
            return response

        app = web.Application(client_max_size=self.section.max_body, middlewares=[guard])
        app.router.add_post("/events", self._events)
        for suffix in ("", "/{signal}"):
            app.router.add_route("GET", "/ping/{name}" + suffix, self._ping)
            app.router.add_route("POST", "/ping/{name}" + suffix, self._ping)
        app.router.add_post("/hooks/{source}", self._hook)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.section.host, self.section.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server  # aiohttp keeps the bound sockets here (port 0: which one)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.section.port
        log.info("inbound listener on %s:%s", self.section.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    # -- guards ------------------------------------------------------------------------------

    def _refuse(self, request: Any, status: int, why: str, **headers: str) -> Any:
        from aiohttp import web

        counter = {401: "unauthorized", 413: "too_large", 429: "rate_limited"}.get(
            status, "bad_request")
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        log.warning("inbound: %d %s %s from %s: %s", status, request.method,
                    one_line(request.path, 100), request.remote, why)
        return web.json_response({"error": why}, status=status, headers=headers or None)

    async def _guard(self, request: Any, handler: Any) -> Any:
        from aiohttp import web

        now = time.monotonic()
        client = str(request.remote or "?")
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(self.section.burst, now)
            while len(self._buckets) > 10_000:
                self._buckets.popitem(last=False)
        wait = bucket.take(self.section.rate, self.section.burst, now)
        if wait > 0:
            return self._refuse(request, 429, "too many requests",
                                **{"Retry-After": str(max(1, round(wait)))})
        length = request.content_length
        if length is not None and length > self.section.max_body:
            return self._refuse(request, 413, f"body over {self.section.max_body} bytes")
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(request, 413, f"body over {self.section.max_body} bytes")
        except web.HTTPException:
            raise
        except Exception as exc:  # a handler bug answers 500 and is logged, never a crash
            log.exception("inbound: %s %s failed", request.method, request.path)
            return web.json_response({"error": f"internal error: {type(exc).__name__}"},
                                     status=500)

    def _secret(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        try:
            return expand(ref)
        except MissingEnv as exc:
            log.error("inbound: secret ${%s} is not set", exc.args[0])
            return None

    def _bearer_ok(self, request: Any, ref: str | None) -> bool:
        secret = self._secret(ref)
        given = request.headers.get("Authorization", "")
        if not secret or not given.startswith("Bearer "):
            return False
        return hmac.compare_digest(given[7:].strip().encode(), secret.encode())

    # -- handlers ----------------------------------------------------------------------------

    async def _json(self, request: Any) -> tuple[bytes, Any]:
        from aiohttp import web

        body = await request.read()
        if not body:
            return body, {}
        import orjson

        try:
            return body, orjson.loads(body)
        except orjson.JSONDecodeError:
            raise web.HTTPBadRequest(text='{"error": "the body is not JSON"}',
                                     content_type="application/json") from None

    async def _events(self, request: Any) -> Any:
        from aiohttp import web

        if not self._bearer_ok(request, self.section.token):
            return self._refuse(request, 401, "a valid bearer token is required")
        _, body = await self._json(request)
        if not isinstance(body, dict):
            return self._refuse(request, 400, "an event is a JSON object")
        try:
            entry = make_event(str(body.get("text") or ""), kind=str(body.get("kind") or "info"),
                               service=_opt(body.get("service")),
                               version=_opt(body.get("version")), link=_opt(body.get("link")),
                               source="http")
        except ValueError as exc:
            return self._refuse(request, 400, str(exc))
        if self.events is None:
            return self._refuse(request, 503, "the events journal is unavailable")
        saved = await self.events.append(entry)
        self.stats.accepted += 1
        return web.json_response({"id": saved.get("id"), "ts": saved.get("ts")}, status=201)

    async def _ping(self, request: Any) -> Any:
        from aiohttp import web

        from console.engine.probes.heartbeat import SIGNALS, make_ping

        name = request.match_info["name"]
        signal = request.match_info.get("signal", "success")
        target = next((t for t in self.settings.targets
                       if t.name == name and t.kind == "heartbeat"), None)
        token = getattr(target, "token", None) or self.section.token
        if not self._bearer_ok(request, token):
            return self._refuse(request, 401, "a valid bearer token is required")
        if target is None:
            return self._refuse(request, 404, f"no heartbeat named {name!r}")
        if signal not in SIGNALS:
            return self._refuse(request, 404, f"signal {signal!r}: one of {', '.join(SIGNALS)}")
        note = None
        if request.method == "POST":
            raw = await request.read()
            note = raw[:300].decode("utf-8", "replace") if raw else None
        if self.pings is None:
            return self._refuse(request, 503, "no data directory: pings have nowhere to go")
        try:
            await self.pings.append(make_ping(name, signal, source="http", note=note))
        except OSError as exc:
            return self._refuse(request, 503, f"ping not recorded: {exc}")
        self.stats.accepted += 1
        return web.Response(text="OK\n")

    async def _hook(self, request: Any) -> Any:
        from aiohttp import web

        name = request.match_info["source"]
        source = self.alerts.sources.get(name)
        if source is None:
            return self._refuse(request, 404, f"no inbound source {name!r}")
        raw = await request.read()
        why = self._verify(source, request, raw)
        if why is not None:
            return self._refuse(request, 401, why)
        import orjson

        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return self._refuse(request, 400, "the body is not JSON")
        mapped = map_body(source, body)
        now = self.clock()
        rule = self.alerts.apply(source, mapped, now)
        if self.events is not None and mapped.action != "ignore":
            with contextlib.suppress(ValueError):
                await self.events.append(make_event(
                    mapped.summary, kind=ALERT_EVENT, service=source.service or source.name,
                    link=mapped.link or None, source=f"hook:{source.name}", extra={
                        "source_name": source.name, "action": mapped.action,
                        "severity": mapped.severity, "dedup": mapped.dedup,
                        "cause": mapped.cause, "runbook": mapped.runbook}))
        if rule is not None:
            self.on_alert()
        self.stats.accepted += 1
        return web.json_response({"action": mapped.action, "alert": rule,
                                  "severity": mapped.severity, "summary": mapped.summary},
                                 status=202 if rule else 200)

    def _verify(self, source: InboundSource, request: Any, raw: bytes) -> str | None:
        """None if the request is the sender's; else why it is refused."""
        secret = self._secret(source.secret)
        if not secret:
            return f"the secret of source {source.name} is not set"
        if source.kind == "stripe":
            header = request.headers.get("Stripe-Signature")
            if not header:
                return "no Stripe-Signature header"
            return stripe_signature_ok(header, secret, raw, time.time(), source.tolerance)
        if source.kind == "sentry":
            given = request.headers.get("Sentry-Hook-Signature", "")
            if not given:
                return "no Sentry-Hook-Signature header"
            if not hmac.compare_digest(sentry_signature(secret, raw), given.strip()):
                return "Sentry-Hook-Signature does not match"
            return None
        if not self._bearer_ok(request, source.secret):
            return "a valid bearer token is required"
        return None


def _opt(v: Any) -> str | None:
    return None if v is None or isinstance(v, dict | list) else str(v)
