"""The alert lifecycle: rule evaluations in, notification intents out, on an injectable clock.

One `Alert` per (rule, target) (deduplication by construction). States:

    inactive ─fail─► pending ─(failure_threshold samples and `for`)─► firing ─ack─► acknowledged
        ▲                │ok                                           │            │
        └────────────────┘              resolved ◄─(success_threshold samples and keep_firing_for)
    any state ─missing result─► nodata ─data back─► the state it left (never "resolved")

Consecutive counts move only on a *new* sample (an evaluation reading the same sample time as
the last one only advances timers), so evaluating more often than a target is polled never
counts one failure twice. Notifications are intents (`Notification`), each with an
idempotency key `rule/target/transition/sequence`; the outbox that sends them lives in
`notify.py`. What is held back and why:

* **silences** (label matchers, start/end, who, why) and config maintenance windows;
* **inhibition**: while an alert fires, the rules it lists in `inhibits` are held back for
  alerts whose labels are equal on `inhibit_equal` (default: same service);
* **flapping**, per target: an alert flaps when its weighted percent state change over the
  last 21 samples (Naemon's) reaches `flap_high`, or when it (or an alert of its target
  as severe) fires again within those 21 samples (and the hour) of being resolved — so
  people get at most two messages per alert (firing, resolved) before the "flapping"
  notice, whatever the thresholds. A flapping alert makes its target flap:
  one notice for the target, then every notification of its alerts is held (but the first
  firing of a rule more severe than the flapping ones) until every alert of the target is
  below `flap_low` and steady for half the window; then exactly one message tells the
  settled state (the worst alert whose state differs from what people were last told, or
  a "settled" notice when nothing differs).

A resolved notice is sent only after a firing one was. An acknowledgement lasts `ack_for`;
when it expires and the alert still fires, it is notified again ("ack_expired"). Unacknowledged
P0/P1 alerts escalate once after `escalate_p0`/`escalate_p1` (playbook: 15/30 min), and an
unacknowledged firing alert is reminded every `repeat_interval` (Alertmanager's 4 h). Time to
detect (first failing sample to firing) is kept per incident; `mttd()` averages it.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import time
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, cast

from console.engine.alerting.explain import cause_of
from console.engine.alerting.rules import Evaluation, detail_of
from console.engine.config.rules import AlertingSection, Rule
from console.engine.lang.ruleexpr import Expr, Matcher, parse_expr, parse_matcher
from console.engine.lang.summary import expand_summary
from console.engine.model import AlertEpisode, CheckResult
from console.engine.text.fmt import format_duration


class AlertState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    NODATA = "nodata"


_FIRING = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Expr | None:
    """A rule's condition, parsed once (None for one that does not parse: loaded from an
    older state, say)."""
    try:
        return parse_expr(text)
    except ValueError:
        return None


_QUIET = (AlertState.INACTIVE, AlertState.RESOLVED)
# A re-fire later than this after the resolved message is news, not a flap, however few
# samples a slowly polled target took in between.
REFIRE_MAX = 3600.0


@dataclass(frozen=True, slots=True)
class Silence:
    """Hold back notifications of alerts whose labels match every matcher, until `ends_at`."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    by: str
    reason: str

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": [f'{m.name}{m.op}"{m.value}"' for m in self.matchers],
                "starts_at": self.starts_at, "ends_at": self.ends_at, "by": self.by,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Notification:
    """Something to tell people; `key` makes sending it idempotent across retries/restarts."""

    key: str
    # firing resolved flapping settled escalated reminder ack_expired nodata acknowledged
    transition: str
    rule: str
    target: str
    severity: str
    labels: tuple[tuple[str, str], ...]
    summary: str
    runbook: str
    expr: str
    threshold: str
    value: float | None
    detail: str
    at: float
    group: str
    incident: int
    cause: str = ""  # what the probe saw (explain.cause_of): names the failing part
    action: str = ""  # one line of what to do, from the rule or its runbook

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Notification:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["labels"] = tuple(sorted(dict(d["labels"]).items()))
        return cls(**kw)

    @property
    def why(self) -> str:
        """The cause if the probe gave one, else the rule's own detail."""
        return self.cause or self.detail

    def text(self) -> str:
        """The one line every channel shows: summary, cause, what to do."""
        return alert_text(self.summary, self.why, self.action)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "transition": self.transition, "rule": self.rule,
            "target": self.target, "severity": self.severity, "labels": dict(self.labels),
            "summary": self.summary, "runbook": self.runbook, "expr": self.expr,
            "threshold": self.threshold, "value": self.value, "detail": self.detail,
            "at": self.at, "group": self.group, "incident": self.incident,
            "cause": self.cause, "action": self.action,
        }


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def alert_text(summary: str, cause: str, action: str = "") -> str:
    """``Core dependency down: redis: down — connect ECONNREFUSED … · do: check …``: what is
    wrong, why, and what to do, in the same words on every screen and channel."""
    text = summary
    if cause:
        text += f": {cause}"
    if action:
        text += f" · do: {action}"
    return text


class FlapWindow(list[bool]):
    """The flap window's last `maxlen` evaluations (True = failing): a bounded deque's
    `append` over a list, because every rule on every target keeps one and a deque's first
    block alone is ~620 bytes (64 slots) where 21 flags need ~250."""

    __slots__ = ("maxlen",)

    def __init__(self, items: Iterable[bool] = (), maxlen: int = 21) -> None:
        super().__init__(items)
        self.maxlen = maxlen
        if len(self) > maxlen:
            del self[: len(self) - maxlen]

    def append(self, x: bool) -> None:
        super().append(x)
        if len(self) > self.maxlen:
            del self[0]


def flap_percent(history: Sequence[bool], window: int) -> float:
    """Naemon's weighted percent state change: recent changes weigh 1.25, the oldest 0.75.

    The window counts as filled with the first known state (as Naemon initialises it), so a
    short history is judged by the same scale as a full one.
    """
    n = len(history)
    if n < 2 or window < 3:
        return 0.0
    offset = window - n
    total = 0.0
    for i in range(1, n):
        if history[i] != history[i - 1]:
            x = offset + i
            total += 0.75 + (x - 1) * 0.5 / (window - 2)
    return total * 100.0 / (window - 1)


@dataclass(slots=True)
class Alert:
    """The lifecycle of one rule on one target."""

    rule: Rule
    target: str
    labels: dict[str, str]
    flap_window: int = 21
    state: AlertState = AlertState.INACTIVE
    value: float | None = None
    # the latest sample's detail: `detail` reads it, from these two (see `Evaluation`)
    detail_text: str = ""
    detail_parts: tuple[str, str] | None = None
    fails: int = 0
    oks: int = 0
    first_fail_at: float | None = None
    last_fail_at: float | None = None
    # While firing: the first evaluation that found the condition false (keep_firing_for
    # counts from here, as Prometheus's keepFiringSince does); None while it fails.
    first_ok_at: float | None = None
    last_sample_t: float | None = None
    since: float | None = None  # when the current state began
    fired_at: float | None = None
    resolved_at: float | None = None
    escalate_from: float | None = None
    escalated: bool = False
    acked_by: str | None = None
    ack_comment: str = ""
    ack_until: float | None = None
    incident: int = 0
    reminders: int = 0
    notified: str | None = None  # "firing" or "resolved": the last state people were told
    notified_at: float | None = None
    nodata_from: AlertState | None = None
    nodata_notified: bool = False
    history: FlapWindow = field(default_factory=FlapWindow)
    flapping: bool = False
    flap_pct: float = 0.0
    flap_episodes: int = 0
    samples: int = 0  # new samples seen (the flap window is counted in samples)
    told_resolved_sample: int | None = None  # `samples` when "resolved" was last sent
    silenced_by: str | None = None
    inhibited_by: str | None = None
    detect_s: float | None = None
    cause: str = ""  # what the probe saw on the latest failing sample
    # the current (or last) episode, firing to resolved, for the alert history
    ep_acked_at: float | None = None
    ep_acked_by: str | None = None
    ep_peak: float | None = None
    ep_flapping: bool = False
    ep_silenced: str | None = None
    ep_summary: str = ""  # the summary and cause when it fired: what people were told
    ep_cause: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.name, self.target)

    @property
    def detail(self) -> str:
        return detail_of(self.detail_text, self.detail_parts, self.value)

    @detail.setter
    def detail(self, text: str) -> None:
        self.detail_text, self.detail_parts = text, None

    @property
    def id(self) -> str:
        return f"{self.rule.name}/{self.target}"

    @property
    def active(self) -> bool:
        return self.state not in _QUIET

    @property
    def firing(self) -> bool:
        """Firing, acknowledged or not."""
        return self.state in _FIRING

    @property
    def summary(self) -> str:
        """The rule's summary with its `{{ $labels.X }}`/`{{ $value }}` filled in."""
        if not self.rule.summary:
            return self.rule.name
        return expand_summary(self.rule.summary, self.labels, self.value, target=self.target)

    @property
    def action(self) -> str:
        return self.rule.action

    def text(self) -> str:
        """Summary, cause and what to do in one line (`alert_text`)."""
        return alert_text(self.summary, self.cause or self.detail, self.action)

    def short_cause(self, n: int = 60) -> str:
        """The cause's first clause, cut to `n` characters: for a banner or a toast."""
        first = (self.cause or "").split("; ", 1)[0]
        return first if len(first) <= n else first[: n - 1] + "…"

    def why(self, now: float) -> str:
        """Why the alert is (or is not) firing, in one line: what an operator asks first."""
        rule = self.rule
        parts = [self.detail or "not evaluated yet"]
        if self.state == AlertState.NODATA:
            parts.append("no data: neither firing nor resolved until data returns")
        elif self.state in (AlertState.PENDING, *_QUIET):
            if self.fails:
                need = rule.failure_threshold
                # "19/3 failing samples" read as a fraction: past the threshold, say so
                parts.append(f"{self.fails}/{need} failing samples" if self.fails <= need
                             else f"{self.fails} failing samples ({need} needed)")
                if rule.for_ and self.first_fail_at is not None:
                    left = rule.for_ - (now - self.first_fail_at)
                    if left > 0:
                        # "`for` met in 7.8s" beside "pending" read as a contradiction
                        parts.append(f"fires in {format_duration(left)} if it keeps failing")
        elif self.state in _FIRING:
            if self.fails == 0:
                parts.append(f"{self.oks}/{rule.success_threshold} good samples to resolve")
                if rule.keep_firing_for and self.first_ok_at is not None:
                    left = rule.keep_firing_for - (now - self.first_ok_at)
                    if left > 0:
                        parts.append(f"kept firing {format_duration(left)} more")
            if self.state == AlertState.ACKNOWLEDGED and self.ack_until is not None:
                parts.append(f"acknowledged by {self.acked_by} for "
                             f"{format_duration(max(0.0, self.ack_until - now))} more")
        if self.silenced_by:
            parts.append(f"silenced ({self.silenced_by})")
        if self.inhibited_by:
            parts.append(f"held back by {self.inhibited_by}")
        if self.flapping:
            parts.append(f"flapping ({self.flap_pct:.0f}% state change)")
        return "; ".join(parts)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id, "rule": self.rule.name, "target": self.target, "why": self.why(now),
            "severity": self.rule.severity, "state": self.state.value,
            "since": self.since, "for_s": None if self.since is None else now - self.since,
            "value": self.value, "detail": self.detail, "expr": self.rule.expr,
            "summary": self.rule.summary and self.summary, "runbook": self.rule.runbook,
            "cause": self.cause, "action": self.rule.action, "text": self.text(),
            "labels": self.labels, "fails": self.fails, "oks": self.oks,
            "failure_threshold": self.rule.failure_threshold,
            "success_threshold": self.rule.success_threshold,
            "pending_for_s": self.rule.for_, "fired_at": self.fired_at,
            "acked_by": self.acked_by, "ack_until": self.ack_until,
            "silenced_by": self.silenced_by, "inhibited_by": self.inhibited_by,
            "flapping": self.flapping, "flap_pct": round(self.flap_pct, 1),
            "incident": self.incident, "detect_s": self.detect_s,
        }

    def episode(self, now: float) -> AlertEpisode | None:
        """This alert's latest firing episode as a history record (None if it never fired);
        an unresolved one is `ongoing`, its duration counted up to `now`."""
        if self.fired_at is None:
            return None
        ongoing = self.state not in _QUIET
        end = now if ongoing or self.resolved_at is None else self.resolved_at
        parsed = _parsed(self.rule.expr)
        return {
            "type": "episode", "key": f"{self.id}/{self.incident}", "rule": self.rule.name,
            "target": self.target, "severity": self.rule.severity,
            "summary": self.summary, "incident": self.incident,
            "fired_at": self.fired_at, "acknowledged_at": self.ep_acked_at,
            "acknowledged_by": self.ep_acked_by,
            "resolved_at": None if ongoing else self.resolved_at,
            "duration_s": max(0.0, end - self.fired_at), "ongoing": ongoing,
            "peak": self.ep_peak, "flapping": self.ep_flapping or self.flapping,
            "silenced_by": self.ep_silenced or self.silenced_by, "detect_s": self.detect_s,
            "labels": dict(self.labels), "cause": self.cause,
            "fired_summary": self.ep_summary or self.summary,
            "fired_cause": self.ep_cause or self.cause,
            "metric": parsed.metric if parsed else "",
            "first_fail_at": None if self.detect_s is None else self.fired_at - self.detect_s,
            "pending_for_s": self.rule.for_,
            "window_s": parsed.window if parsed else None, "expr": self.rule.expr,
        }

    def _note_peak(self) -> None:
        """Keep the worst value of the episode: highest for `>` rules, lowest for `<`; none
        for equality rules."""
        parsed = _parsed(self.rule.expr)
        op = parsed.op if parsed else ">"
        if self.value is None or op not in ("<", "<=", ">", ">="):
            return  # `up == 0` and the like have no "worse" value
        low = op in ("<", "<=")
        if self.ep_peak is None or (self.value < self.ep_peak if low
                                    else self.value > self.ep_peak):
            self.ep_peak = self.value


def _moved(a: Alert) -> tuple[Any, ...]:
    """What of an alert a step can change that the saved state must follow (counts capped
    where they stop mattering): compared before and after each step, so only alerts that
    moved reach the state saver, not every alert a 1 s target's result steps."""
    rule = a.rule
    return (a.state, min(a.fails, rule.failure_threshold), min(a.oks, rule.success_threshold),
            a.first_fail_at, a.last_fail_at, a.since, a.fired_at, a.resolved_at, a.notified,
            a.notified_at, a.incident, a.reminders, a.escalated, a.escalate_from, a.acked_by,
            a.ack_until, a.nodata_from, a.nodata_notified, a.flapping, a.flap_episodes,
            round(a.flap_pct, 1), a.silenced_by, a.inhibited_by, a.detect_s, a.ep_peak,
            a.ep_flapping, a.ep_silenced, a.ep_acked_at, a.told_resolved_sample)


def _settled(a: Alert, ev: Evaluation) -> bool:
    """An "ok" evaluation of an alert that is quiet, was told nothing is firing, has passed
    its success threshold and has an all-ok flap window (`flap_pct` 0 with the last sample
    ok: no failing sample among the last `flap_window` >= 5): `_sample` then only records
    the value and counts the sample, and stepping the alert would change nothing (`_advance`
    skips it, `_reconcile` has nothing to tell, `_moved` stays equal). `observe` skips the
    step for it when nothing else could change it (no silence, inhibition or flapping
    target): at 1,000 targets most evaluations are this, and observing them was ~10 % of
    all CPU in py-spy.
    """
    return (ev.state == "ok" and a.state in _QUIET and not a.fails
            and a.notified != "firing" and a.first_fail_at is None and not a.flapping
            and a.flap_pct == 0.0 and a.oks >= a.rule.success_threshold
            and a.silenced_by is None and a.inhibited_by is None)


@functools.cache
def _alert_field_names() -> tuple[str, ...]:
    """The names an alert is saved under: `Alert`'s fields, looked up once
    (`dataclasses.fields` is slow per call), its detail as the text it reads as."""
    return tuple("detail" if f.name == "detail_text" else f.name for f in fields(Alert)
                 if f.name != "detail_parts")


class Alerts:
    """All alerts, silences and the notification decisions; pure state on an injected clock."""

    def __init__(
        self,
        alerting: AlertingSection | None = None,
        *,
        clock: Callable[[], float] = time.time,
        on_ack: Callable[[Alert], None] | None = None,
    ) -> None:
        self.cfg = alerting if alerting is not None else AlertingSection.model_validate({})
        self.clock = clock
        # told of every acknowledgement, however it came (this console's screen, a
        # follower's request): the service acknowledges the alert's incident with it
        self.on_ack = on_ack
        self._alerts: dict[tuple[str, str], Alert] = {}
        self._silences: dict[str, Silence] = {}
        self._ids = itertools.count(1)
        self.detections: list[float] = []
        # episodes that resolved but are not yet durably in the history (the service drains
        # them; they are saved with the state so a crash in between replays them)
        self.closed: list[AlertEpisode] = []
        # Firing alerts of rules that inhibit others, kept between results: recomputed only
        # after a change that can alter it (see `_sources`), never scanned per result.
        self._sources_cache: list[Alert] | None = None
        # Alerts stepped (or acknowledged) since the saver last asked: only these can have
        # changed, so saving the state costs what moved, not every alert (see statefile).
        self._changed: dict[tuple[str, str], Alert] = {}
        # Targets flapping now: {target: {"since", "severity" (worst flapping rule), "by"
        # (the alert whose notice was sent), "notified"}}
        self.target_flaps: dict[str, dict[str, Any]] = {}
        # Notifications made outside an evaluation (an acknowledgement), sent with the next
        self.outbound: list[Notification] = []
        self._add_maintenance()

    def _add_maintenance(self) -> None:
        for i, w in enumerate(self.cfg.maintenance):
            sid = f"maintenance-{i + 1}"
            self._silences[sid] = Silence(
                sid, tuple(parse_matcher(m) for m in w.matchers), w.start.timestamp(),
                w.end.timestamp(), w.by, w.reason or "maintenance window")

    def reconfigure(self, alerting: AlertingSection) -> None:
        """A reloaded `[alerting]`: its maintenance windows replace the config's old ones
        (silences set by operators stay), and every other setting applies from now on."""
        self.cfg = alerting
        for sid in [k for k in self._silences if k.startswith("maintenance-")]:
            del self._silences[sid]
        self._add_maintenance()

    # -- queries -------------------------------------------------------------------------------

    def alerts(self) -> list[Alert]:
        return list(self._alerts.values())

    def get(self, rule: str, target: str) -> Alert | None:
        return self._alerts.get((rule, target))

    def current(self) -> list[Alert]:
        """Alerts worth showing (not inactive/resolved), worst severity first."""
        order = {AlertState.FIRING: 0, AlertState.ACKNOWLEDGED: 1, AlertState.NODATA: 2,
                 AlertState.PENDING: 3}
        out = [a for a in self._alerts.values() if a.active]
        out.sort(key=lambda a: (a.rule.severity, order.get(a.state, 9), a.id))
        return out

    def silences(self, now: float | None = None) -> list[Silence]:
        now = self.clock() if now is None else now
        return [s for s in self._silences.values() if now < s.ends_at]

    def group_of(self, alert: Alert) -> str:
        return ",".join(f"{k}={alert.labels.get(k, '')}" for k in self.cfg.group_by)

    def groups(self) -> dict[str, list[Alert]]:
        out: dict[str, list[Alert]] = {}
        for a in self.current():
            out.setdefault(self.group_of(a), []).append(a)
        return out

    def loud(self) -> list[Alert]:
        """P0/P1 alerts firing unacknowledged, unsilenced and not held back: the banner's
        (and the terminal bell's) business."""
        return [a for a in self.current() if a.state == AlertState.FIRING
                and a.rule.severity in ("P0", "P1") and not a.silenced_by
                and not a.inhibited_by]

    def banner(self, now: float | None = None, *, hint: bool = True,
               room: int | None = None) -> str | None:
        """One line for a banner on every screen while a P0/P1 fires unacknowledged and
        unsilenced; None otherwise (acknowledged or held-back alerts do not shout). `hint`:
        end with "a: alerts" (not where `a` acknowledges instead). `room`: the characters
        the banner has for it; a longer text gives up the cause's tail first, then the
        second alert's summary, so that its end (the age, the key) is never cut off."""
        now = self.clock() if now is None else now
        loud = self.loud()
        if not loud:
            return None
        a = loud[0]
        age = format_duration(max(0.0, now - (a.fired_at or now)))
        n = len(loud)
        head = (f"✖ {n} P0/P1 firing · " if n > 1 else "✖ ") + \
            f"{a.rule.severity} {_cut(a.summary, 64)} · {a.target}"
        cause = a.short_cause(60) if a.cause else ""
        also = short_also = ""
        if n > 1:  # the next one by name: an unrelated second outage is not just a count
            b = loud[1]
            more = f" (+{n - 2} more)" if n > 2 else ""
            also = f" · also {b.rule.severity} {_cut(b.summary, 28)} · {b.target}{more}"
            short_also = f" · also {b.rule.severity} · {b.target}{more}"
        tail = f" · for {age}"  # how long it has fired (the walk read a bare "3m04s")
        hint_text = " · a: alerts" if hint else ""

        def text() -> str:
            return head + (f" · {cause}" if cause else "") + tail + also + hint_text

        if room is not None and len(text()) > room and cause:
            cause = _cut(cause, max(len(cause) - (len(text()) - room), 16))
        if room is not None and len(text()) > room:
            also = short_also
        return text()

    def mttd(self) -> float | None:
        """Mean time to detect over every incident so far: first failing sample to firing."""
        return sum(self.detections) / len(self.detections) if self.detections else None

    # -- operator actions ---------------------------------------------------------------------

    def ack(self, rule: str, target: str, by: str, *, duration: float | None = None,
            comment: str = "", now: float | None = None) -> bool:
        """Acknowledge a firing alert: no escalation, no re-notification until it expires."""
        now = self.clock() if now is None else now
        a = self._alerts.get((rule, target))
        if a is None or a.state != AlertState.FIRING:
            return False
        a.state, a.since = AlertState.ACKNOWLEDGED, now
        self._changed[a.key] = a
        a.acked_by, a.ack_comment = by, comment
        if a.ep_acked_at is None:
            a.ep_acked_at, a.ep_acked_by = now, by
        a.ack_until = now + (duration if duration is not None else self.cfg.ack_for)
        if a.notified == "firing":  # PagerDuty (and webhooks) learn it: no paging on
            detail = f"acknowledged by {by}" + (f": {comment}" if comment else "")
            self.outbound.append(self._note(a, "acknowledged", f"{a.incident}.{a.reminders}",
                                            now, detail=detail))
        if self.on_ack is not None:
            self.on_ack(a)
        return True

    def silence(self, matchers: Iterable[str], *, duration: float, by: str, reason: str,
                now: float | None = None) -> Silence:
        """Silence matching alerts for `duration` seconds; who and why are required."""
        now = self.clock() if now is None else now
        if not by.strip() or not reason.strip():
            raise ValueError("a silence needs who set it and why")
        parsed = tuple(parse_matcher(m) for m in matchers)
        if not parsed:
            raise ValueError("a silence needs at least one matcher")
        s = Silence(f"s{next(self._ids)}", parsed, now, now + duration, by, reason)
        self._silences[s.id] = s
        return s

    def expire(self, silence_id: str, now: float | None = None) -> bool:
        now = self.clock() if now is None else now
        s = self._silences.get(silence_id)
        if s is None or now >= s.ends_at:
            return False
        self._silences[silence_id] = Silence(s.id, s.matchers, s.starts_at, now, s.by, s.reason)
        return True

    # -- evaluation ---------------------------------------------------------------------------

    def observe(self, evaluations: Iterable[Evaluation], now: float | None = None
                ) -> list[Notification]:
        """Feed one round of evaluations; returns the notifications it causes, in order."""
        now = self.clock() if now is None else now
        out: list[Notification] = []
        touched: dict[tuple[str, str], Alert] = {}
        before: dict[tuple[str, str], tuple[Any, ...]] = {}
        # With no silence, no inhibiting alert firing and no flapping target, an "ok" sample
        # of a settled quiet alert changes nothing a step would act on (see `_settled`).
        calm = not self.target_flaps and not self._sources() \
            and not any(s.active(now) for s in self._silences.values())
        settled: list[Alert] = []
        for ev in evaluations:
            key = ev.key  # == a.key: looked up once per evaluation, not per use
            a = self._alerts.get(key)
            if calm and a is not None and a.rule is ev.rule and _settled(a, ev):
                self._sample(a, ev, now, out)
                settled.append(a)
                continue
            if a is None:
                a = Alert(ev.rule, ev.target, ev.label_dict(), self.cfg.flap_window,
                          history=FlapWindow(maxlen=self.cfg.flap_window))
                self._alerts[key] = a
                self._changed[key] = a
            elif a.rule is not ev.rule and a.rule != ev.rule:  # edited rule: keep the state,
                # take the new definition
                a.rule = ev.rule
                a.labels = ev.label_dict()
                self._sources_cache = None
                self._changed[key] = a
            before[key] = _moved(a)
            self._sample(a, ev, now, out)
            touched[key] = a
        out += self._step(list(touched.values()), now, before, settled)
        return out

    def tick(self, now: float | None = None) -> list[Notification]:
        """Advance timers (`for`, keep_firing_for, acks, escalation, silences) without data."""
        now = self.clock() if now is None else now
        return self._step(list(self._alerts.values()), now)

    def _step(self, alerts: list[Alert], now: float,
              before: dict[tuple[str, str], tuple[Any, ...]] | None = None,
              settled: Sequence[Alert] = ()) -> list[Notification]:
        """Advance and notify `alerts`; every alert when the set of inhibiting alerts changed.

        Only the alerts a check result touched are stepped on that result (a few rules of one
        target), so evaluating on every result stays cheap with hundreds of alerts; the
        periodic tick steps them all.
        """
        out, self.outbound = self.outbound, []
        if before is None:
            before = {a.key: _moved(a) for a in alerts}
        # Only the alerts stepped here can start or stop firing, so only they can change
        # the set of inhibiting alerts (this runs on every check result: no full scans).
        inhibitors = [(a, a.state in _FIRING) for a in alerts if a.rule.inhibits]
        for a in alerts:
            # Most results leave a quiet alert quiet: with no failing sample `_advance` has
            # nothing to do for it, so it is not called (one of the top entries per result).
            if a.fails or a.state not in _QUIET:
                self._advance(a, now, out)
        if any((a.state in _FIRING) != was for a, was in inhibitors):
            self._sources_cache = None
            # `settled` alerts sampled without a step are as they were: compared from here
            before.update((a.key, _moved(a)) for a in settled)
            alerts = list(self._alerts.values())
        self._inhibit(alerts)
        changed = self._changed
        for a in alerts:
            self._reconcile(a, now, out)
            was = before.get(a.key)
            if was is None or _moved(a) != was:
                changed[a.key] = a
        for target in {a.target for a in alerts} & self.target_flaps.keys():
            self._maybe_settle(target, now, out)
        return out

    def retire(self, gone: Callable[[Alert], bool], why: str,
               now: float | None = None) -> list[Notification]:
        """A config reload removed what some alerts were evaluated on (their target, their
        rule): nothing would ever evaluate them again, so a firing one stayed firing for
        good (the walk's banner kept a removed target "down"). Those `gone` says so
        resolve now, saying `why`, and people are told as for any resolve; pending ones go
        quiet. They stay known, quiet, so a target that comes back carries on."""
        now = self.clock() if now is None else now
        out: list[Notification] = []
        for a in [a for a in self._alerts.values() if a.state not in _QUIET and gone(a)]:
            if a.state in _FIRING:
                a.cause = why
                a.state, a.since, a.resolved_at = AlertState.RESOLVED, now, now
                a.acked_by, a.ack_until = None, None
                ep = a.episode(now)
                if ep is not None:
                    self.closed.append(ep)
                    del self.closed[:-1000]
            else:
                a.state, a.since = AlertState.INACTIVE, now
            a.fails, a.first_fail_at, a.first_ok_at = 0, None, None
            self._sources_cache = None
            self._reconcile(a, now, out)
            self._changed[a.key] = a
        return out

    def take_changed(self) -> list[Alert]:
        """Alerts stepped or acknowledged since the last call (the state saver's input)."""
        out = list(self._changed.values())
        self._changed = {}
        return out

    def _sources(self) -> list[Alert]:
        """Firing alerts whose rule inhibits others.

        Kept between calls: a scan of every alert here ran on every check result (17 % of
        all CPU at 1,000 targets). Only a change of an inhibiting alert's firing state (seen
        by `_step` and `_sample`), an edited rule or a restore can change the answer, and
        each of those drops the cached list.
        """
        if self._sources_cache is None:
            self._sources_cache = [a for a in self._alerts.values()
                                   if a.state in _FIRING and a.rule.inhibits]
        return self._sources_cache

    def _sample(self, a: Alert, ev: Evaluation, now: float, out: list[Notification]) -> None:
        a.detail_text, a.detail_parts = ev.detail_text, ev.detail_parts  # written when read
        if ev.state == "nodata":
            a.value = None
            if a.state != AlertState.NODATA:
                if a.rule.inhibits and a.state in _FIRING:
                    self._sources_cache = None
                a.nodata_from, a.state, a.since = a.state, AlertState.NODATA, now
                if a.nodata_from in _FIRING and a.notified == "firing" \
                        and not a.nodata_notified and not self._suppressed(a, now):
                    a.nodata_notified = True
                    out.append(self._note(a, "nodata", str(a.incident), now))
            return
        a.value = ev.value
        if a.state == AlertState.NODATA:  # data is back: pick up where it left off
            a.state = a.nodata_from or AlertState.INACTIVE
            if a.rule.inhibits and a.state in _FIRING:
                self._sources_cache = None
            a.nodata_from = None
            a.since = now
        if ev.sample_t is not None and ev.sample_t == a.last_sample_t:
            return  # same sample as last time: timers only
        a.last_sample_t = ev.sample_t
        a.samples += 1
        t = ev.sample_t if ev.sample_t is not None else now
        failing = ev.state == "fail"
        if failing:
            a.cause = ev.cause or ev.detail
            a.fails += 1
            a.oks = 0
            if a.first_fail_at is None:
                a.first_fail_at = t
            a.last_fail_at = t
            a.first_ok_at = None
        else:
            a.oks += 1
            a.fails = 0
            if a.state not in _FIRING:
                a.first_fail_at = None
            elif a.first_ok_at is None:
                a.first_ok_at = now
        h = a.history
        if h.count(failing) == len(h):  # the window holds no change, nor does this sample
            h.append(failing)
            a.flap_pct = 0.0
        else:
            h.append(failing)
            a.flap_pct = flap_percent(h, self.cfg.flap_window)
        if not a.flapping and a.flap_pct >= self.cfg.flap_high:
            self._start_flapping(a, now, out, f"{a.flap_pct:.0f}% state change")
        elif a.flapping and a.flap_pct < self.cfg.flap_low and self._steady(a):
            a.flapping = False
        if a.state in _FIRING:
            if failing:
                a._note_peak()
            a.ep_flapping = a.ep_flapping or a.flapping

    def _steady(self, a: Alert) -> bool:
        """No state change over the last half of the flap window (at least 3 samples)."""
        k = max(3, self.cfg.flap_window // 2)
        recent = list(a.history)[-k:]
        return len(recent) == k and len(set(recent)) == 1

    def _start_flapping(self, a: Alert, now: float, out: list[Notification], why: str) -> None:
        """The alert flaps, and so does its target: one notice per target flapping."""
        a.flapping = True
        a.flap_episodes += 1
        if a.state in _FIRING:
            a.ep_flapping = True
        tf = self.target_flaps.get(a.target)
        if tf is not None:
            tf["severity"] = min(str(tf["severity"]), a.rule.severity)
            return
        tf = {"since": now, "severity": a.rule.severity, "by": a.id, "notified": False}
        self.target_flaps[a.target] = tf
        if not self._silenced(a, now):
            tf["notified"] = True
            out.append(self._note(a, "flapping", str(a.flap_episodes), now,
                                  detail=f"{a.target} is flapping ({why}): notifications of "
                                  f"its alerts are held until it settles; {a.detail}"))

    def _target_holds(self, a: Alert) -> bool:
        """Whether the target's flapping holds this alert's notifications: all of them, but
        the firing of a rule more severe than every flapping one (a worse problem is news)."""
        tf = self.target_flaps.get(a.target)
        if tf is None:
            return False
        worse = a.rule.severity < str(tf["severity"]) and not a.flapping
        return not (worse and a.state == AlertState.FIRING and a.notified != "firing")

    def _refire(self, a: Alert, now: float) -> bool:
        """Whether `a` fires within the flap window of people being told that it, or
        another alert of its target, resolved (counted in that alert's samples)."""
        w = self.cfg.flap_window

        def recent(y: Alert) -> bool:
            return y.notified == "resolved" and y.told_resolved_sample is not None and \
                y.samples - y.told_resolved_sample < w and \
                now - (y.notified_at or now) <= REFIRE_MAX

        return recent(a) or any(recent(y) for y in self._alerts.values()  # as severe or more
                                if y.target == a.target and y is not a
                                and y.rule.severity <= a.rule.severity)

    @staticmethod
    def _told_differs(a: Alert) -> bool:
        return (a.state in _FIRING and a.notified != "firing") or (
            a.state in _QUIET and a.notified == "firing")

    def _maybe_settle(self, target: str, now: float, out: list[Notification]) -> None:
        """A flapping target whose alerts all settled: one message with the settled state."""
        mine = [x for x in self._alerts.values() if x.target == target]
        if any(x.flapping for x in mine):
            return
        tf = self.target_flaps.pop(target)
        differ = [x for x in mine if self._told_differs(x) and not self._silenced(x, now)
                  and x.inhibited_by is None]
        if differ:
            differ.sort(key=lambda x: (x.rule.severity, x.id))
            x = differ[0]
            transition = "firing" if x.state in _FIRING else "resolved"
            others = ", ".join(f"{y.rule.name} {'firing' if y.state in _FIRING else 'resolved'}"
                               for y in differ[1:])
            detail = f"{target} settled after flapping: {x.detail}" + (
                f"; also {others}" if others else "")
            for y in differ:
                self._told(y, "firing" if y.state in _FIRING else "resolved", now)
            out.append(self._note(x, transition, str(x.incident), now, detail=detail))
        elif tf.get("notified"):
            by = next((x for x in mine if x.id == tf.get("by")), mine[0] if mine else None)
            if by is not None:
                state = "firing" if by.state in _FIRING else "fine"
                out.append(self._note(by, "settled", str(by.flap_episodes), now,
                                      detail=f"{target} settled after flapping: {state}; "
                                      f"{by.detail}"))

    def _told(self, a: Alert, what: str, now: float) -> None:
        a.notified, a.notified_at = what, now
        if what == "resolved":
            a.told_resolved_sample = a.samples

    def _advance(self, a: Alert, now: float, out: list[Notification]) -> None:
        rule = a.rule
        if a.state in (*_QUIET, AlertState.PENDING):
            if a.fails > 0:
                if a.state != AlertState.PENDING:
                    a.state, a.since = AlertState.PENDING, a.first_fail_at or now
                first = a.first_fail_at if a.first_fail_at is not None else now
                if a.fails >= rule.failure_threshold and now - first >= rule.for_:
                    self._fire(a, now)
            elif a.state == AlertState.PENDING:
                a.state, a.since = AlertState.INACTIVE, now
        elif a.state in _FIRING:
            # Prometheus: keep_firing_for counts from the first evaluation that found the
            # condition false (keepFiringSince), not from the last failing sample.
            held = a.first_ok_at is not None and now - a.first_ok_at < rule.keep_firing_for
            if a.fails == 0 and a.oks >= rule.success_threshold and not held:
                a.state, a.since, a.resolved_at = AlertState.RESOLVED, now, now
                a.first_fail_at = a.first_ok_at = None
                a.acked_by, a.ack_until = None, None
                ep = a.episode(now)
                if ep is not None:
                    self.closed.append(ep)
                    del self.closed[:-1000]
                return
            if a.state == AlertState.ACKNOWLEDGED and a.ack_until is not None \
                    and now >= a.ack_until:
                a.state, a.since = AlertState.FIRING, now
                a.acked_by, a.ack_until = None, None
                a.reminders += 1
                a.escalate_from = now
                if not self._suppressed(a, now):
                    a.notified_at = now
                    out.append(self._note(a, "ack_expired", f"{a.incident}.{a.reminders}", now))
            repeat = self.cfg.repeat_interval
            if a.state == AlertState.FIRING and repeat and a.notified == "firing" \
                    and a.notified_at is not None and now - a.notified_at >= repeat \
                    and not self._suppressed(a, now):
                a.reminders += 1
                a.notified_at = now
                out.append(self._note(a, "reminder", f"{a.incident}.{a.reminders}", now))
            limit = {"P0": self.cfg.escalate_p0, "P1": self.cfg.escalate_p1}.get(rule.severity)
            if a.state == AlertState.FIRING and limit and not a.escalated \
                    and a.escalate_from is not None and now - a.escalate_from >= limit \
                    and not self._suppressed(a, now):
                a.escalated = True
                out.append(self._note(a, "escalated", str(a.incident), now))

    def _fire(self, a: Alert, now: float) -> None:
        a.state, a.since, a.fired_at, a.escalate_from = AlertState.FIRING, now, now, now
        a.first_ok_at = None
        a.incident += 1
        a.escalated, a.reminders, a.nodata_notified = False, 0, False
        a.resolved_at = None
        a.ep_acked_at = a.ep_acked_by = a.ep_silenced = None
        a.ep_peak, a.ep_flapping = None, a.flapping
        a.ep_summary, a.ep_cause = a.summary, a.cause
        a._note_peak()
        if a.first_fail_at is not None:
            a.detect_s = max(0.0, now - a.first_fail_at)
            self.detections.append(a.detect_s)

    def _inhibit(self, alerts: Iterable[Alert]) -> None:
        sources = self._sources()
        for a in alerts:
            a.inhibited_by = None
            for s in sources:
                if s is a or not any(fnmatch.fnmatchcase(a.rule.name, p) for p in s.rule.inhibits):
                    continue
                if all(a.labels.get(k) == s.labels.get(k) for k in s.rule.inhibit_equal):
                    a.inhibited_by = s.id
                    break

    def _silenced(self, a: Alert, now: float) -> bool:
        a.silenced_by = next(
            (s.id for s in self._silences.values() if s.active(now) and s.matches(a.labels)),
            None)
        if a.silenced_by is not None and a.state in _FIRING:
            a.ep_silenced = a.silenced_by
        return a.silenced_by is not None

    def _suppressed(self, a: Alert, now: float) -> bool:
        return self._silenced(a, now) or a.inhibited_by is not None or a.flapping or \
            self._target_holds(a)

    def _reconcile(self, a: Alert, now: float, out: list[Notification]) -> None:
        """Tell people the alert's state if it differs from what they were last told."""
        if a.state in _QUIET and a.notified != "firing":  # nothing to tell (the usual case)
            self._silenced(a, now)  # keeps `silenced_by` current, as `_suppressed` would
            return
        if self._suppressed(a, now):
            return
        if a.state == AlertState.FIRING and a.notified != "firing":
            if self._refire(a, now):
                # fired again right after people were told it resolved: a third message
                # would be the start of a storm; it is the flapping notice instead
                self._start_flapping(a, now, out, "fired again right after resolving")
                return
            self._told(a, "firing", now)
            out.append(self._note(a, "firing", str(a.incident), now))
        elif a.state in _QUIET and a.notified == "firing":
            self._told(a, "resolved", now)
            out.append(self._note(a, "resolved", str(a.incident), now))

    # -- persistence (shared by the TUI and a headless runner; keeps idempotency keys) -------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to carry on after a restart, as JSON-ready data."""
        alerts = []
        names = _alert_field_names()
        for a in self._alerts.values():
            row: dict[str, Any] = {}
            for name in names:
                v = getattr(a, name)
                if name == "rule":
                    v = a.rule.name
                elif name == "history":
                    v = list(v)
                elif isinstance(v, AlertState):
                    v = v.value
                row[name] = v
            alerts.append(row)
        return {"version": 1, "alerts": alerts, **self.snapshot_parts()}

    def snapshot_parts(self) -> dict[str, Any]:
        """The state besides the alerts: silences set by operators, detection times and
        episodes not yet in the history (small; the saver compares them each save)."""
        silences = [s.to_json() for s in self._silences.values()
                    if not s.id.startswith("maintenance-")]
        return {"silences": silences, "detections": self.detections[-1000:],
                "unrecorded": list(self.closed), "target_flaps": dict(self.target_flaps)}

    def restore(self, data: dict[str, Any], rules: Iterable[Rule]) -> int:
        """Load a `snapshot()`; alerts of rules that no longer exist are dropped. Returns how
        many alerts were restored. Bad data raises ValueError (the caller starts afresh)."""
        if data.get("version") != 1:
            raise ValueError("unknown alert state version")
        by_name = {r.name: r for r in rules}
        names = set(_alert_field_names())  # the row's names, as `snapshot` writes them
        self._sources_cache = None
        n = 0
        for row in data.get("alerts", []):
            rule = by_name.get(row.get("rule"))
            if rule is None:
                continue
            kw = {k: v for k, v in row.items() if k in names and k not in ("rule", "history")}
            if "detail" in kw:
                kw["detail_text"] = kw.pop("detail")
            kw["state"] = AlertState(kw.get("state", "inactive"))
            if kw.get("nodata_from") is not None:
                kw["nodata_from"] = AlertState(kw["nodata_from"])
            a = Alert(rule=rule, **kw)
            a.flap_window = self.cfg.flap_window
            a.history = FlapWindow((bool(x) for x in row.get("history", [])),
                                   maxlen=self.cfg.flap_window)
            self._alerts[a.key] = a
            n += 1
        top = 0
        for s in data.get("silences", []):
            sil = Silence(str(s["id"]), tuple(parse_matcher(m) for m in s["matchers"]),
                          float(s["starts_at"]), float(s["ends_at"]), str(s["by"]),
                          str(s["reason"]))
            self._silences[sil.id] = sil
            if sil.id[1:].isdigit():
                top = max(top, int(sil.id[1:]))
        self._ids = itertools.count(top + 1)
        self.detections = [float(x) for x in data.get("detections", [])]
        self.closed = [cast(AlertEpisode, dict(e)) for e in data.get("unrecorded", [])
                       if isinstance(e, dict)]
        flaps = data.get("target_flaps", {})
        self.target_flaps = {str(k): dict(v) for k, v in flaps.items()
                             if isinstance(v, dict)} if isinstance(flaps, dict) else {}
        return n

    def _note(self, a: Alert, transition: str, seq: str, now: float, *,
              detail: str | None = None) -> Notification:
        expr = parse_expr(a.rule.expr)
        return Notification(
            key=f"{a.rule.name}/{a.target}/{transition}/{seq}", transition=transition,
            rule=a.rule.name, target=a.target, severity=a.rule.severity,
            labels=tuple(sorted(a.labels.items())), summary=a.summary,
            runbook=a.rule.runbook, expr=a.rule.expr, threshold=expr.describe_threshold(),
            value=a.value, detail=a.detail if detail is None else detail, at=now,
            group=self.group_of(a),
            # a flapping/settled/acknowledged notice says its own detail, not the cause
            incident=a.incident, cause=a.cause if detail is None else "",
            action=a.rule.action,
        )


class AlertEngine:
    """Rules evaluated on the store, fed to the lifecycle: what the TUI and headless share."""

    def __init__(
        self,
        ruleset: Any,
        store: Any,
        alerting: AlertingSection | None = None,
        *,
        clock: Callable[[], float] = time.time,
        results: Callable[[str], CheckResult | None] | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.store = store
        self.alerts = Alerts(alerting, clock=clock)
        self.clock = clock
        self.results = results  # a target's latest check result: what a cause is read from

    def run(self, now: float | None = None, *, target: str | None = None,
            skip: Container[str] = (), extra: Iterable[Evaluation] = (),
            present: Container[str] = ()) -> list[Notification]:
        """Evaluate every rule (or one target's; none of `skip`'s; `present`: see
        `RuleSet.evaluate`) at `now` and advance the lifecycle; `extra` are evaluations from
        outside the rules (inbound webhooks)."""
        now = self.clock() if now is None else now
        evals = self.ruleset.evaluate(self.store, now, target=target, skip=skip,
                                      present=present)
        return self.alerts.observe([*(self._explained(ev) for ev in evals), *extra], now)

    def _explained(self, ev: Evaluation) -> Evaluation:
        """A failing evaluation with its cause, from the target's latest result."""
        if ev.state != "fail":
            return ev
        result = self.results(ev.target) if self.results is not None else None
        cause = cause_of(self.ruleset.expr(ev.rule), ev.value, result, ev.detail)
        return replace(ev, cause=cause)
