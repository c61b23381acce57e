"""What every receiver kind shares: the message it is given, the outcome it reports, the
context it sends with (HTTP client, `${ENV}` expansion at send time), and the wording.

A receiver module (`slack`, `sms`, `email`, `webhook`, `pagerduty`) exposes one coroutine,
``send(ctx, receiver, batch) -> Outcome``: it renders the batch for its service, sends it,
and says whether the service accepted it. The notifier owns everything around that (the
outbox, ordering, pacing, retries), so a new service is one module.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from console.engine.alerting.lifecycle import Notification
from console.engine.config.envref import MissingEnv, expand, expand_url
from console.engine.config.rules import Receiver
from console.engine.text.redact import redact, register_secret
from console.engine.text.sanitize import one_line

# The playbook's words and emoji per severity.
SEVERITY: dict[str, tuple[str, str]] = {
    "P0": ("critical", "🔴"), "P1": ("high", "🟡"), "P2": ("medium", "🟢"), "P3": ("low", "ℹ️"),
}
# Fields a receiver may write as `${ENV}`: expanded when a message is sent, never before.
SECRET_FIELDS = ("auth_token", "smtp_password", "token", "routing_key")


def is_secret(r: Receiver, name: str) -> bool:
    """Whether a receiver field holds a secret: tokens, passwords, the routing key, and the
    URL of a Slack or generic webhook (whoever knows it can post)."""
    return name in SECRET_FIELDS or (name == "url" and r.kind in ("slack", "webhook")
                                     and not r.slack_bot)


class ReceiverConfigError(Exception):
    """A receiver cannot send as configured (an unset variable, a bad number): retried, since
    the environment or the config may be fixed while the console runs."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One message for one receiver: some notifications (one, a group or a period's digest),
    the daily summary, or an incident's channel or status update (`data`)."""

    key: str  # the idempotency key: the same on every resend of this message
    kind: str  # "notes" | "digest" | "summary" | "incident_channel" | "status"
    notes: tuple[Notification, ...] = ()
    start: float = 0.0  # digest and summary: the period covered
    end: float = 0.0
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def worst(self) -> Notification:
        return min(self.notes, key=lambda n: n.severity)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the service said. `retry_after`: pause the whole receiver this long (its rate
    limit, not the message's). `permanent`: the service refused the message itself (a 4xx
    other than a rate limit), so retrying it as is will not help."""

    ok: bool
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False
    result: Mapping[str, Any] = field(default_factory=dict)  # e.g. a created channel's id

    @classmethod
    def failed(cls, error: str, **kw: Any) -> Outcome:
        return cls(False, one_line(redact(error), 300), **kw)


@dataclass(slots=True)
class SendContext:
    """What a receiver sends with. Values are expanded at send time (`value`), so a
    variable set or fixed while the console runs is picked up on the next attempt."""

    client: httpx.AsyncClient
    env: Mapping[str, str] | None = None
    clock: Callable[[], float] = time.time
    # The sending evaluator's fencing token (shared state): a receiver that keeps the
    # highest one it has seen can refuse a request from an evaluator that was replaced.
    fence: int | None = None

    def value(self, r: Receiver, name: str, *, url: bool = False, user: str | None = None
              ) -> str:
        """A field with its `${ENV}` references expanded. Secrets (and a webhook's URL,
        which is one) are registered with the redactor, with `user` for the pairs a service
        encodes together; addresses, numbers and user names are not secrets."""
        raw = getattr(r, name)
        if raw is None:
            return ""
        secret = is_secret(r, name)
        try:
            out = expand_url(raw, self.env) if url and secret else \
                expand(raw, self.env, secret=secret)
        except MissingEnv as exc:
            raise ReceiverConfigError(f"environment variable {exc.args[0]} is not set "
                                      f"(receiver {r.name}, {name})") from None
        if secret and out:
            register_secret(out, user=user)
        return out

    def values(self, r: Receiver, name: str) -> list[str]:
        out = []
        for raw in getattr(r, name):
            try:
                out.append(expand(raw, self.env, secret=False))
            except MissingEnv as exc:
                raise ReceiverConfigError(f"environment variable {exc.args[0]} is not set "
                                          f"(receiver {r.name}, {name})") from None
        return out


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    import email.utils

    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def http_outcome(resp: httpx.Response, now: float, *, detail: str = "") -> Outcome:
    """A plain HTTP answer judged by its status: 2xx accepted; 429/503 pause the receiver
    for Retry-After; other 4xx (but 408) refuse the message itself."""
    code = resp.status_code
    if 200 <= code < 300:
        return Outcome(True)
    text = f"HTTP {code}" + (f": {detail}" if detail else "")
    if code in (429, 503):
        return Outcome.failed(text, retry_after=retry_after(resp.headers.get("Retry-After"),
                                                            now))
    return Outcome.failed(text, permanent=400 <= code < 500 and code != 408)


def body_excerpt(resp: httpx.Response, limit: int = 200) -> str:
    """A short, redacted, single-line excerpt of an answer's body for an error message."""
    try:
        text = resp.text
    except Exception:  # undecodable: the status says enough
        return ""
    return one_line(redact(text), limit)


# -- wording shared by the text forms ------------------------------------------------------------


def label(n: Notification) -> str:
    """CRITICAL, RESOLVED, FLAPPING…: what happened, in one word or two."""
    word, _ = SEVERITY.get(n.severity, ("info", ""))
    return {"resolved": "RESOLVED", "flapping": "FLAPPING", "nodata": "NO DATA",
            "settled": "SETTLED", "acknowledged": "ACKNOWLEDGED",
            "escalated": f"ESCALATED {word.upper()}"}.get(n.transition, word.upper())


def emoji(n: Notification) -> str:
    return "✅" if n.transition == "resolved" else SEVERITY.get(n.severity, ("", "ℹ️"))[1]


def value_text(n: Notification) -> str:
    return "no data" if n.value is None or math.isnan(n.value) else f"{n.value:.4g}"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def hhmm(t: float) -> str:
    return time.strftime("%H:%M", time.gmtime(t))


def span(start: float, end: float) -> str:
    """`2026-11-27 10:00–11:00 UTC` (the end's date too when the period crosses midnight)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(start))
    end_day = time.strftime("%Y-%m-%d", time.gmtime(end - 1))
    tail = hhmm(end) if end_day == day and end - start < 86400 else \
        time.strftime("%Y-%m-%d %H:%M", time.gmtime(end))
    return f"{day} {hhmm(start)}–{tail} UTC"


@dataclass(slots=True)
class DigestEntry:
    """One alert (rule on target) in a digest: every transition it made in the period."""

    rule: str
    target: str
    severity: str
    summary: str
    notes: list[Notification]

    @property
    def last(self) -> Notification:
        return self.notes[-1]

    @property
    def state(self) -> str:
        """The alert's state at the end of the period: its last transition."""
        return self.last.transition

    def history(self) -> str:
        """`fired 10:02, resolved 10:40`: how it got there, when it moved more than once."""
        if len(self.notes) < 2:
            return ""
        words = {"firing": "fired", "resolved": "resolved", "nodata": "no data",
                 "flapping": "flapping", "escalated": "escalated"}
        return ", ".join(f"{words.get(n.transition, n.transition)} {hhmm(n.at)}"
                         for n in self.notes[-6:])


def digest_entries(notes: Sequence[Notification]) -> list[DigestEntry]:
    """Notifications folded per alert, worst severity first, then in order of appearance."""
    by_alert: dict[tuple[str, str], DigestEntry] = {}
    for n in sorted(notes, key=lambda x: x.at):
        e = by_alert.get((n.rule, n.target))
        if e is None:
            by_alert[(n.rule, n.target)] = DigestEntry(n.rule, n.target, n.severity,
                                                       n.summary, [n])
        else:
            e.notes.append(n)
            e.severity = min(e.severity, n.severity)
    return sorted(by_alert.values(), key=lambda e: e.severity)


def digest_counts(entries: Sequence[DigestEntry]) -> dict[str, int]:
    """How many alerts ended the period in each state, e.g. {"firing": 2, "resolved": 1}."""
    out: dict[str, int] = {}
    for e in entries:
        out[e.state] = out.get(e.state, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def counts_text(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def notification_lines(n: Notification, detail_max: int = 300) -> list[str]:
    """The playbook's fields of one notification, as plain text lines (email, markdown)."""
    return [
        f"{label(n)}: {one_line(n.summary, 200)}",
        f"Severity: {n.severity}", f"Time: {iso(n.at)}", f"Target: {one_line(n.target, 64)}",
        f"Metric: {one_line(n.expr, 200)}", f"Threshold: {one_line(n.threshold, 100)}",
        f"Current value: {value_text(n)}",
        # a resolved alert's cause is what it was, not what is wrong now
        f"{'Was' if n.transition == 'resolved' else 'Why'}: {one_line(n.why, detail_max)}",
        *([f"What to do: {one_line(n.action, 300)}"]
          if n.action and n.transition != "resolved" else []),
        *([f"Runbook: {one_line(n.runbook, 100)}"] if n.runbook else []),
    ]
