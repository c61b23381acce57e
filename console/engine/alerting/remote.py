"""The team's alerts beside the console's own: Alertmanager's and Prometheus's, read and acted on.

`RemoteAlerts` (owned by the Runtime) polls, each on its own interval and deadline so a slow
or dead source never holds up another or the UI:

* every `[[alerting.alertmanagers]]` cluster: its alerts (all replicas, merged) and
  silences;
* every `promql` target with `alerts = true`: the server's own `/api/v1/alerts` (pending and
  firing) and `/api/v1/rules` (each alerting rule with its `for` and health).

Acting on them uses the cluster's silences, as the team's other tools do:

* **acknowledge** is a silence matching every label of the alert, commented
  `ACK! <who>` (kthxbye's convention), lasting `ack_extend`. While the alert still fires the
  silence is extended before it runs out; once no alert matches it any more (resolved) it
  is expired. An ACK silence expired by someone else while its alert fires is reported, not
  quietly recreated (Alertmanager would turn an update of an expired silence into a new one).
* **silence** with a duration and a comment; **expire** a silence by id.

Every failure is one clear line in `errors` (per source) or a `RemoteError` from an action;
nothing here raises into the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from console.engine.alerting.alertmanager import (
    Alertmanager,
    AMAlert,
    AMError,
    AMSilence,
    Matcher,
    parse_time,
)
from console.engine.alerting.promrules import severity_of
from console.engine.config.envref import MissingEnv, expand, expand_url
from console.engine.config.rules import AlertmanagerConfig
from console.engine.probes.promapi import PromAPI, PromAPIError, series_key
from console.engine.text.fmt import format_duration
from console.engine.text.sanitize import one_line

_T = TypeVar("_T")

__all__ = ["RemoteAlert", "RemoteAlerts", "RemoteError", "RemoteRule"]

log = logging.getLogger(__name__)
_STATE_ORDER = {"firing": 0, "active": 0, "suppressed": 1, "unprocessed": 2, "pending": 3}


class RemoteError(Exception):
    """An action on a remote alert or silence that did not happen; the text says why."""


@dataclass(frozen=True, slots=True)
class RemoteAlert:
    """One alert of Alertmanager (`kind` "alertmanager") or of Prometheus ("prometheus")."""

    id: str
    kind: str
    origin: str  # the cluster's or the promql target's name
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # alertmanager: active / suppressed / unprocessed; prometheus: firing / pending
    since: float | None
    ends_at: float | None = None
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    acked_by: str | None = None
    value: str = ""
    for_s: float | None = None
    replicas: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "?")

    @property
    def severity(self) -> str | None:
        return severity_of(self.labels)

    @property
    def summary(self) -> str:
        return (self.annotations.get("summary") or self.annotations.get("description")
                or self.name)

    @property
    def runbook(self) -> str:
        return (self.labels.get("runbook") or self.annotations.get("runbook")
                or self.annotations.get("runbook_url") or "")

    @property
    def source(self) -> str:
        return f"{'Alertmanager' if self.kind == 'alertmanager' else 'Prometheus'} {self.origin}"

    @property
    def silenced(self) -> bool:
        return bool(self.silenced_by)

    @property
    def firing(self) -> bool:
        return self.state in ("firing", "active", "suppressed")

    def display_state(self) -> str:
        """active / silenced / inhibited / acked (Alertmanager); firing / pending, or acked /
        silenced by a silence in its Alertmanager (Prometheus)."""
        if self.kind == "alertmanager" and self.state == "suppressed":
            if self.acked_by:
                return "acked"
            return "silenced" if self.silenced_by else "inhibited"
        if self.kind == "prometheus" and self.state == "firing" and self.silenced_by:
            return "acked" if self.acked_by else "silenced"
        return self.state

    def incident_fields(self) -> dict[str, Any]:
        """What `IncidentDesk.open` takes to open an incident from this alert, as from a
        console alert: severity and runbook from labels/annotations, started when it fired."""
        target = self.labels.get("instance") or self.labels.get("target") or self.origin
        return {"title": f"{one_line(self.summary, 120)} ({one_line(target, 60)})",
                "severity": severity_of(self.labels, "P2"), "alerts": [self.id],
                "runbook": self.runbook or self.name, "started": self.since,
                "targets": [target]}

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id, "source": self.kind, "origin": self.origin, "alertname": self.name,
            "state": self.state, "shown_as": self.display_state(),
            "severity": self.severity, "labels": self.labels,
            "annotations": self.annotations, "since": self.since,
            "for_s": None if self.since is None else max(0.0, now - self.since),
            "rule_for_s": self.for_s, "ends_at": self.ends_at,
            "silenced_by": list(self.silenced_by), "inhibited_by": list(self.inhibited_by),
            "acked_by": self.acked_by, "value": self.value, "replicas": list(self.replicas),
        }


@dataclass(frozen=True, slots=True)
class RemoteRule:
    """An alerting rule of a Prometheus, as /api/v1/rules has it."""

    origin: str
    group: str
    name: str
    query: str
    state: str  # inactive, pending, firing
    for_s: float
    keep_firing_for_s: float
    health: str
    last_error: str
    alerts: int

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "group": self.group, "name": self.name,
                "query": self.query, "state": self.state, "for_s": self.for_s,
                "keep_firing_for_s": self.keep_firing_for_s, "health": self.health,
                "last_error": self.last_error, "alerts": self.alerts}


@dataclass(slots=True)
class _Cluster:
    cfg: AlertmanagerConfig
    api: Alertmanager | None
    setup_error: str | None = None
    alerts: list[AMAlert] = field(default_factory=list)
    silences: list[AMSilence] = field(default_factory=list)
    read_ok: bool = False


@dataclass(slots=True)
class _Prometheus:
    name: str
    api: PromAPI | None
    interval: float
    setup_error: str | None = None
    alerts: list[RemoteAlert] = field(default_factory=list)
    rules: list[RemoteRule] = field(default_factory=list)


ClientsFactory = Callable[[], Awaitable[Any]]


class RemoteAlerts:
    """The alerts of the configured Alertmanagers and Prometheus servers, kept fresh."""

    def __init__(self, settings: Any, clients: ClientsFactory, *,
                 clock: Callable[[], float] = time.time,
                 notice: Callable[[str, str], None] | None = None) -> None:
        self._clients_factory = clients
        self.clock = clock
        self._notice = notice
        self.settings = settings
        self._clusters: dict[str, _Cluster] = {}
        self._proms: dict[str, _Prometheus] = {}
        self.errors: dict[str, list[str]] = {}
        self.version = 0  # bumped on every change the UI would show
        self.updated_at: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._tended: dict[str, tuple[str, str]] = {}  # ACK id -> (cluster, what it acks)
        self._expiring: set[str] = set()  # ACK ids this console expires itself
        self._polling = False
        self._changed: asyncio.Event | None = None

    @staticmethod
    def wanted(settings: Any) -> bool:
        """Whether a config has anything for this to read."""
        return bool(settings.wants_remote_alerts)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _build(self, settings: Any) -> None:
        clients = await self._clients_factory()
        clusters: dict[str, _Cluster] = {}
        for cfg in settings.alerting.alertmanagers:
            try:
                urls = [expand_url(u) for u in cfg.urls]
                headers = {k: expand(v) for k, v in cfg.headers.items()}
                api = Alertmanager(cfg.name, urls, clients, headers=headers,
                                   timeout=cfg.timeout, insecure=cfg.insecure,
                                   ca_file=cfg.ca_file)
                clusters[cfg.name] = _Cluster(cfg, api)
            except MissingEnv as exc:
                clusters[cfg.name] = _Cluster(cfg, None, f"environment variable {exc.args[0]} "
                                                         "is not set")
            except Exception as exc:  # a bad URL, a bad ca_file: said, never raised
                clusters[cfg.name] = _Cluster(cfg, None, one_line(str(exc), 200))
        proms: dict[str, _Prometheus] = {}
        for t in settings.targets:
            if t.kind != "promql" or not t.alerts:
                continue
            interval = max(float(t.interval), 5.0)
            try:
                prom = PromAPI(expand_url(t.url), clients,
                              headers={k: expand(v) for k, v in t.headers.items()},
                              params={k: expand(v, secret=False) for k, v in t.params.items()},
                              timeout=float(t.timeout), insecure=t.insecure,
                              ca_file=t.ca_file, max_body=int(t.max_body))
                proms[t.name] = _Prometheus(t.name, prom, interval)
            except MissingEnv as exc:
                proms[t.name] = _Prometheus(t.name, None, interval,
                                            f"environment variable {exc.args[0]} is not set")
            except PromAPIError as exc:
                proms[t.name] = _Prometheus(t.name, None, interval, str(exc))
        self._clusters, self._proms = clusters, proms
        self.errors = {}
        for c in clusters.values():
            if c.setup_error:
                self.errors[self._key(c)] = [c.setup_error]
        for p in proms.values():
            if p.setup_error:
                self.errors[f"Prometheus {p.name}"] = [p.setup_error]
        self.version += 1

    async def start(self, *, poll: bool = True) -> None:
        """Set up every source; with `poll`, read each on its interval from now on (else
        only when `refresh()` is called)."""
        await self._build(self.settings)
        self._polling = poll
        if poll:
            self._spawn()

    def _spawn(self) -> None:
        for c in self._clusters.values():
            if c.api is not None and c.cfg.show:
                self._tasks.append(asyncio.create_task(
                    self._loop(c.cfg.interval, functools.partial(self._read_cluster, c)),
                    name=f"alertmanager:{c.cfg.name}"))
        for p in self._proms.values():
            if p.api is not None:
                self._tasks.append(asyncio.create_task(
                    self._loop(p.interval, functools.partial(self._read_prometheus, p)),
                    name=f"prometheus-alerts:{p.name}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def apply(self, settings: Any) -> None:
        """A reloaded config: sources rebuilt (what was read stays until read again)."""
        await self.stop()
        old_c, old_p = self._clusters, self._proms
        self.settings = settings
        await self._build(settings)
        for name, c in self._clusters.items():
            if name in old_c:
                c.alerts, c.silences = old_c[name].alerts, old_c[name].silences
        for name, p in self._proms.items():
            if name in old_p:
                p.alerts, p.rules = old_p[name].alerts, old_p[name].rules
        if self._polling:
            self._spawn()

    async def refresh(self) -> None:
        """Read every source once, concurrently (for one-shot commands and tests)."""
        if not self._clusters and not self._proms:
            await self._build(self.settings)
        await asyncio.gather(
            *(self._read_cluster(c) for c in self._clusters.values()
              if c.api is not None and c.cfg.show),
            *(self._read_prometheus(p) for p in self._proms.values() if p.api is not None))

    async def _loop(self, interval: float, read: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await read()
            except Exception:  # a bug here must not end the loop
                log.exception("reading remote alerts failed")
            await asyncio.sleep(interval)

    # -- reading -----------------------------------------------------------------------------

    @staticmethod
    def _key(c: _Cluster) -> str:
        return f"Alertmanager {c.cfg.name}"

    async def _read_cluster(self, c: _Cluster) -> None:
        assert c.api is not None
        alerts, silences = await asyncio.gather(c.api.alerts(), c.api.silences())
        errors = list(dict.fromkeys(alerts.errors + silences.errors))
        if alerts.answered:
            c.alerts = alerts.items
        if silences.answered:
            c.silences = silences.items
        c.read_ok = bool(alerts.answered and silences.answered)
        if not alerts.answered and not silences.answered:
            errors.insert(0, "no replica answered: showing what was read last")
        self._set_errors(self._key(c), errors)
        if c.read_ok:
            await self._tend(c)
        self.updated_at = self.clock()
        self._bump()

    async def _read_prometheus(self, p: _Prometheus) -> None:
        assert p.api is not None
        errors: list[str] = []
        results = await asyncio.gather(p.api.alerts(), p.api.rules(), return_exceptions=True)
        alerts_doc, rules_doc = results
        rules: list[RemoteRule] = []
        if isinstance(rules_doc, PromAPIError):
            if rules_doc.kind != "not_found":
                errors.append(f"rules: {rules_doc}")
        elif isinstance(rules_doc, list):
            rules, bad = _rules_of(p.name, rules_doc)
            p.rules = rules
            if bad:
                errors.append(_malformed("rules", bad))
        if isinstance(alerts_doc, PromAPIError):
            if alerts_doc.kind == "not_found":
                errors.append("this server has no /api/v1/alerts (VictoriaMetrics: its "
                              "vmalert has them); set alerts = false to stop asking")
            else:
                errors.append(f"alerts: {alerts_doc}")
        elif isinstance(alerts_doc, list):
            for_of = {r.name: r.for_s for r in (rules or p.rules)}
            p.alerts, bad = _parsed(alerts_doc, lambda d: _prom_alert(p.name, d, for_of))
            if bad:
                errors.append(_malformed("alerts", bad))
        elif isinstance(alerts_doc, BaseException):
            raise alerts_doc
        self._set_errors(f"Prometheus {p.name}", errors)
        self.updated_at = self.clock()
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until `predicate()` holds, woken by each read of a source (no polling); bound it
        with `asyncio.timeout`."""
        while not predicate():
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def _set_errors(self, key: str, errors: list[str]) -> None:
        if errors:
            self.errors[key] = errors
        else:
            self.errors.pop(key, None)

    # -- what the UI and the CLI read ---------------------------------------------------------

    def alerts(self) -> list[RemoteAlert]:
        """Every remote alert, worst severity first, then firing before pending, oldest
        first; an ACK silence's author shown as who acknowledged."""
        out: list[RemoteAlert] = []
        for c in self._clusters.values():
            # Silences are matched here too: a replica the gossip has not reached yet
            # would show a just-silenced alert as active.
            active = [x for x in c.silences if x.state == "active"]
            for a in c.alerts:
                matching = [x.id for x in active if x.matches(a.labels)]
                silenced = tuple(dict.fromkeys((*a.silenced_by, *matching)))
                acked = next((x.created_by for x in active if x.ack and x.id in silenced),
                             None)
                state = "suppressed" if silenced else a.state
                out.append(RemoteAlert(
                    id=f"am:{c.cfg.name}:{a.fingerprint}", kind="alertmanager",
                    origin=c.cfg.name, labels=a.labels, annotations=a.annotations,
                    state=state, since=a.starts_at, ends_at=a.ends_at,
                    silenced_by=silenced, inhibited_by=a.inhibited_by, acked_by=acked,
                    replicas=a.replicas))
        # A Prometheus alert is silenced (or acknowledged) in the Alertmanager it goes to:
        # say so on its row too, from the silences that match its labels.
        silences = [x for c in self._clusters.values() for x in c.silences
                    if x.state == "active"]
        for p in self._proms.values():
            for pa in p.alerts:
                hits = [x for x in silences if x.matches(pa.labels)]
                if hits:
                    pa = replace(pa, silenced_by=tuple(x.id for x in hits),
                                 acked_by=next((x.created_by for x in hits if x.ack), None))
                out.append(pa)
        out.sort(key=lambda a: (a.severity or "P9", _STATE_ORDER.get(a.state, 5),
                                a.since or math.inf, a.id))
        return out

    def get(self, alert_id: str) -> RemoteAlert | None:
        return next((a for a in self.alerts() if a.id == alert_id), None)

    def rules(self) -> list[RemoteRule]:
        return [r for p in self._proms.values() for r in p.rules]

    def silences(self, *, active_only: bool = True) -> list[tuple[str, AMSilence]]:
        """(cluster, silence) of every cluster, active (and pending) ones unless asked."""
        return [(name, s) for name, c in self._clusters.items() for s in c.silences
                if not active_only or s.state in ("active", "pending")]

    def clusters(self) -> list[str]:
        return list(self._clusters)

    def summary(self) -> str | None:
        """One line for the Alerts screen: how many remote alerts fire, where."""
        alerts = self.alerts()
        if not alerts and not self.errors:
            return None
        parts = []
        for source in dict.fromkeys(a.source for a in alerts):
            mine = [a for a in alerts if a.source == source]
            firing = sum(a.firing and not a.silenced for a in mine)
            parts.append(f"{source}: {firing} firing" + (
                f", {len(mine) - firing} pending/silenced" if len(mine) > firing else ""))
        if self.errors:
            parts.append(f"⚠ {len(self.errors)} source(s) failing")
        return " · ".join(parts)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "alerts": [a.to_json(now) for a in self.alerts()],
            "rules": [r.to_json() for r in self.rules()],
            "silences": [{"alertmanager": name, "id": s.id, "state": s.state,
                          "matchers": [m.describe() for m in s.matchers],
                          "created_by": s.created_by, "comment": s.comment,
                          "starts_at": s.starts_at, "ends_at": s.ends_at, "ack": s.ack}
                         for name, s in self.silences()],
            "errors": self.errors, "updated_at": self.updated_at,
        }

    # -- acting ------------------------------------------------------------------------------

    def _cluster_for(self, alert: RemoteAlert) -> _Cluster:
        """The cluster to silence `alert` in: its own, or for a Prometheus alert the one
        holding an alert with its labels (else the only one configured)."""
        usable = [c for c in self._clusters.values() if c.api is not None]
        if alert.kind == "alertmanager":
            c = self._clusters.get(alert.origin)
            if c is None or c.api is None:
                raise RemoteError(f"Alertmanager {alert.origin} is not usable "
                                  f"({c.setup_error if c else 'no longer configured'})")
            return c
        for c in usable:
            if any(all(a.labels.get(k) == v for k, v in alert.labels.items())
                   for a in c.alerts):
                return c
        if len(usable) == 1:
            return usable[0]
        if not usable:
            raise RemoteError("no [[alerting.alertmanagers]] configured to silence it in; "
                              "a Prometheus alert is silenced in its Alertmanager")
        raise RemoteError("this alert is in none of the Alertmanagers read, so which one to "
                          "silence it in is unclear; silence it there")

    async def ack(self, alert_id: str, by: str) -> str:
        """Acknowledge: an ACK! silence on every label of the alert, tended while it fires."""
        alert = self._alert(alert_id)
        if alert.acked_by:
            raise RemoteError(f"{alert.name} is already acknowledged by {alert.acked_by}")
        c = self._cluster_for(alert)
        assert c.api is not None
        now = self.clock()
        matchers = [Matcher(k, v) for k, v in sorted(alert.labels.items())]
        try:
            sid = await c.api.create_silence(matchers, starts_at=now,
                                             ends_at=now + c.cfg.ack_extend,
                                             created_by=by, comment=f"ACK! {by}")
        except AMError as exc:
            raise RemoteError(f"not acknowledged: {exc}") from None
        self._tended[sid] = (c.cfg.name, alert.name)
        await self._reread(c)
        return (f"acknowledged {alert.name} in Alertmanager {c.cfg.name} (silence {sid[:8]}, "
                f"extended while it fires)")

    async def silence(self, alert_id: str, duration: float, comment: str, by: str) -> str:
        alert = self._alert(alert_id)
        if duration <= 0 or not comment.strip():
            raise RemoteError("a silence needs a duration and a comment")
        c = self._cluster_for(alert)
        assert c.api is not None
        now = self.clock()
        matchers = [Matcher(k, v) for k, v in sorted(alert.labels.items())]
        try:
            sid = await c.api.create_silence(matchers, starts_at=now, ends_at=now + duration,
                                             created_by=by, comment=comment)
        except AMError as exc:
            raise RemoteError(f"not silenced: {exc}") from None
        await self._reread(c)
        return (f"silenced {alert.name} in Alertmanager {c.cfg.name} for "
                f"{format_duration(duration)} (silence {sid[:8]})")

    async def expire(self, cluster: str, silence_id: str) -> str:
        c = self._clusters.get(cluster)
        if c is None or c.api is None:
            raise RemoteError(f"Alertmanager {cluster} is not usable")
        try:
            current = await c.api.silence(silence_id)
        except AMError as exc:
            raise RemoteError(f"not expired: {exc}") from None
        if current.state == "expired":
            await self._reread(c)
            raise RemoteError(f"silence {silence_id[:8]} had already expired (elsewhere, "
                              f"at {_clock(current.ends_at)})")
        self._expiring.add(silence_id)
        try:
            await c.api.expire_silence(silence_id)
        except AMError as exc:
            self._expiring.discard(silence_id)
            raise RemoteError(f"not expired: {exc}") from None
        self._tended.pop(silence_id, None)
        await self._reread(c)
        return f"expired silence {silence_id[:8]} in Alertmanager {cluster}"

    def _alert(self, alert_id: str) -> RemoteAlert:
        alert = self.get(alert_id)
        if alert is None:
            raise RemoteError("that alert is gone (resolved since the list was read)")
        return alert

    async def _reread(self, c: _Cluster) -> None:
        """Show an action's effect at once rather than at the next poll."""
        with contextlib.suppress(Exception):
            await self._read_cluster(c)

    # -- acknowledgements: extended while firing, expired on resolve ------------------------

    async def _tend(self, c: _Cluster) -> None:
        assert c.api is not None
        now = self.clock()
        by_id = {s.id: s for s in c.silences}
        # ACK silences this console knew that someone else ended while their alert fires
        for sid, (cluster, what) in list(self._tended.items()):
            if cluster != c.cfg.name:
                continue
            s = by_id.get(sid)
            if s is not None and s.state in ("active", "pending"):
                continue
            del self._tended[sid]
            if sid in self._expiring:
                self._expiring.discard(sid)
                continue
            still = s is not None and any(s.matches(a.labels) for a in c.alerts)
            if still:
                self._say("warning", f"the acknowledgement of {what} in Alertmanager "
                          f"{c.cfg.name} (silence {sid[:8]}) was expired elsewhere; the "
                          "alert fires unacknowledged")
        for s in c.silences:
            if not s.ack or s.state != "active":
                continue
            matched = [a for a in c.alerts if s.matches(a.labels)]
            what = matched[0].labels.get("alertname", "?") if matched else _what(s)
            self._tended.setdefault(s.id, (c.cfg.name, what))
            if not matched:
                await self._expire_ack(c, s, what)
            elif s.ends_at is not None and s.ends_at - now < c.cfg.ack_extend / 2:
                await self._extend_ack(c, s, what, now)

    async def _expire_ack(self, c: _Cluster, s: AMSilence, what: str) -> None:
        assert c.api is not None
        self._expiring.add(s.id)
        try:
            await c.api.expire_silence(s.id)
        except AMError as exc:
            self._expiring.discard(s.id)
            self._say("warning", f"the acknowledgement of {what} was not expired: {exc}")
            return
        self._tended.pop(s.id, None)
        self._say("information", f"{what} resolved: its acknowledgement in Alertmanager "
                  f"{c.cfg.name} expired")

    async def _extend_ack(self, c: _Cluster, s: AMSilence, what: str, now: float) -> None:
        assert c.api is not None
        try:
            current = await c.api.silence(s.id)  # never extend one expired meanwhile
            if current.state != "active":
                return  # the next read says it was expired elsewhere
            new_id = await c.api.update_silence(current, now + c.cfg.ack_extend)
        except AMError as exc:
            self._say("warning", f"the acknowledgement of {what} was not extended: {exc}")
            return
        if new_id != s.id:
            self._tended.pop(s.id, None)
            self._tended[new_id] = (c.cfg.name, what)

    def _say(self, level: str, text: str) -> None:
        log.info("%s", text)
        if self._notice is not None:
            try:
                self._notice(level, one_line(text, 300))
            except Exception:
                log.exception("notice failed")


def _what(s: AMSilence) -> str:
    names = [m.value for m in s.matchers if m.name == "alertname"]
    return names[0] if names else "an alert"


def _clock(t: float | None) -> str:
    return "?" if t is None else time.strftime("%H:%M:%S", time.localtime(t))


def _prom_alert(origin: str, d: dict[str, Any], for_of: dict[str, float]) -> RemoteAlert:
    labels = {str(k): str(v) for k, v in (d.get("labels") or {}).items()}
    name = labels.get("alertname", "?")
    rest = {k: v for k, v in labels.items() if k != "alertname"}
    return RemoteAlert(
        id=f"prom:{origin}:{name}{series_key(rest)}",
        kind="prometheus", origin=origin, labels=labels,
        annotations={str(k): str(v) for k, v in (d.get("annotations") or {}).items()},
        state=str(d.get("state", "")), since=parse_time(d.get("activeAt")),
        value=one_line(str(d.get("value", "")), 40), for_s=for_of.get(name))


def _parsed(items: Iterable[Any], make: Callable[[Any], _T | None]
            ) -> tuple[list[_T], list[str]]:
    """`make` of each item, and why each one it could not read failed. One malformed
    entry of 5,000 (`"labels": "oops"`) raised out of the whole read: the Alerts screen
    said "no alerts" and `opsconsole alerts` printed a traceback."""
    out: list[_T] = []
    bad: list[str] = []
    for item in items:
        try:
            made = make(item)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            bad.append(f"{type(exc).__name__}: {one_line(str(exc), 80)}")
            continue
        if made is not None:
            out.append(made)
    return out, bad


def _malformed(what: str, bad: Sequence[str]) -> str:
    n = len(bad)
    return f"{what}: {n} malformed entr{'y' if n == 1 else 'ies'} left out ({bad[0]})"


def _rule_of(origin: str, group: str, r: Any) -> RemoteRule | None:
    if not isinstance(r, dict):
        raise TypeError(f"a rule is {type(r).__name__}, not an object")
    if r.get("type") not in (None, "alerting"):
        return None
    return RemoteRule(
        origin=origin, group=group, name=str(r.get("name", "")),
        query=str(r.get("query", "")), state=str(r.get("state", "inactive")),
        for_s=float(r.get("duration") or 0), keep_firing_for_s=float(
            r.get("keepFiringFor") or 0),
        health=str(r.get("health", "")), last_error=str(r.get("lastError") or ""),
        alerts=len(r.get("alerts") or []))


def _rules_of(origin: str, groups: Sequence[Any]) -> tuple[list[RemoteRule], list[str]]:
    """The alerting rules of /api/v1/rules' groups, and why each malformed one was left
    out (see `_parsed`)."""
    out: list[RemoteRule] = []
    bad: list[str] = []
    for g in groups:
        if not isinstance(g, dict) or not isinstance(g.get("rules") or [], list):
            bad.append("a rule group is not an object with a list of rules")
            continue
        rules, wrong = _parsed(g.get("rules") or [],
                               functools.partial(_rule_of, origin, str(g.get("name", ""))))
        out += rules
        bad += wrong
    return out, bad
