"""A persisted outbox for notifications: never lost, never sent twice for one transition.

Why an outbox: a webhook can fail, rate-limit or hang, and the console can be killed in the
middle of a send. Every notification is first written to SQLite (one row per idempotency key
and receiver, `INSERT OR IGNORE`: enqueuing the same transition twice is a no-op, which is the
"at most once per transition"), and a row is marked sent only after the receiver answered 2xx
(the "at least once": a crash before that leaves it pending and it is sent again on restart,
carrying the same `Idempotency-Key` header so a receiver can drop the duplicate).

Each receiver has its own worker task, so a hanging receiver never delays another. A worker
sends its rows strictly in order (a resolved notice never overtakes its firing notice),
at most `rate` per second, retries with exponential backoff (1 s doubling to 5 min), and
honours `Retry-After` on 429/503 by pausing the whole receiver. A receiver's queue is bounded:
beyond `max_queue` pending rows the oldest are marked dropped and counted, visibly. Failures
are kept per receiver (`health()`) for the UI; nothing is dropped silently.

A receiver with `digest = "1h"` collects the notifications of its `digest_severities` (P3
by default, the playbook's "batched") into one message per period instead: such rows wait in
the outbox with status 'digest' and their period (aligned to UTC: an hourly digest covers
10:00-11:00, a daily one a UTC day), so a restart mid-period loses nothing, and the digest
goes out once the period has ended, under the idempotency key `digest:<receiver>:<start>`,
rows marked sent only on a 2xx as for any other message. A period in which nothing
happened sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import logging
import math
import smtplib
import sqlite3
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import orjson

from console.engine.alerting.lifecycle import Notification
from console.engine.config.envref import expand, expand_url
from console.engine.config.rules import Receiver
from console.engine.text.redact import describe_exception
from console.engine.text.sanitize import one_line

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    receiver TEXT NOT NULL,
    grp TEXT NOT NULL DEFAULT '',
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at REAL,
    digest_start REAL,
    digest_end REAL,
    UNIQUE (key, receiver)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (receiver, status, id);
"""
DIGEST_BLOCKS = 45  # alerts shown one section each in a Slack digest (Slack caps at 50 blocks)
RECHECK = 60.0  # a worker re-reads its due times at least this often (wall-clock jumps)

_SEVERITY = {"P0": ("critical", "🔴"), "P1": ("high", "🟡"), "P2": ("medium", "🟢"),
             "P3": ("low", "ℹ️")}


def _mrkdwn(text: object, max_len: int = 2000) -> str:
    """Remote or config text made inert for Slack: one line, `&`, `<`, `>` escaped."""
    t = one_line(text, max_len)
    return t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_actions(logs_url: str | None, metrics_url: str | None) -> list[dict[str, Any]]:
    """The "View Logs"/"View Metrics" buttons as an actions block, or no block at all when
    neither link is configured (Slack rejects an actions block without elements)."""
    buttons = []
    if logs_url:
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "View Logs"},
                        "url": logs_url, "style": "primary"})
    if metrics_url:
        buttons.append({"type": "button", "text": {"type": "plain_text",
                                                   "text": "View Metrics"}, "url": metrics_url})
    return [{"type": "actions", "elements": buttons}] if buttons else []


def slack_payload(n: Notification, *, logs_url: str | None = None,
                  metrics_url: str | None = None) -> dict[str, Any]:
    """The playbook's Block Kit layout: header, severity/time, message, metric fields, buttons."""
    word, emoji = _SEVERITY.get(n.severity, ("info", "ℹ️"))
    title = one_line(n.summary, 140)
    if n.transition == "resolved":
        emoji, label = "✅", "RESOLVED"
    elif n.transition == "flapping":
        label = "FLAPPING"
    elif n.transition == "nodata":
        label = "NO DATA"
    elif n.transition == "escalated":
        label = f"ESCALATED {word.upper()}"
    else:
        label = word.upper()
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(n.at))
    value = "no data" if n.value is None or math.isnan(n.value) else f"{n.value:.4g}"
    message = f"{_mrkdwn(n.why)} — target `{_mrkdwn(n.target, 64)}`"
    if n.runbook:
        message += f", runbook *{_mrkdwn(n.runbook, 64)}*"
    if n.action and n.transition != "resolved":
        message += f"\n*What to do:* {_mrkdwn(n.action, 300)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{emoji} {title}"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Severity:*\n{label} ({n.severity})"},
            {"type": "mrkdwn", "text": f"*Time:*\n{when}"},
        ]},
        {"type": "section", "text": {"type": "mrkdwn", "text": message}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Metric:*\n{_mrkdwn(n.expr, 200)}"},
            {"type": "mrkdwn", "text": f"*Threshold:*\n{_mrkdwn(n.threshold, 100)}"},
            {"type": "mrkdwn", "text": f"*Current Value:*\n{value}"},
        ]},
    ]
    blocks.extend(_slack_actions(logs_url, metrics_url))
    return {"text": f"{emoji} {label}: {title}", "blocks": blocks}


def slack_group_payload(notes: Sequence[Notification], *, logs_url: str | None = None,
                        metrics_url: str | None = None) -> dict[str, Any]:
    """Several notifications of one group in one message: worst severity in the header."""
    worst = min(notes, key=lambda n: n.severity)
    word, emoji = _SEVERITY.get(worst.severity, ("info", "ℹ️"))
    title = f"{len(notes)} alerts: {one_line(worst.group, 100) or 'ungrouped'}"
    lines = []
    for n in notes[:40]:  # Slack caps a message at 50 blocks
        state = "RESOLVED" if n.transition == "resolved" else n.transition.upper()
        lines.append({"type": "section", "text": {"type": "mrkdwn", "text": (
            f"*{state}* {n.severity} {_mrkdwn(n.summary, 140)} — `{_mrkdwn(n.target, 64)}`: "
            f"{_mrkdwn(n.why, 300)}")}})
    single = slack_payload(worst, logs_url=logs_url, metrics_url=metrics_url)
    actions = [b for b in single["blocks"] if b["type"] == "actions"]
    return {"text": f"{emoji} {word.upper()}: {title}",
            "blocks": [{"type": "header", "text": {"type": "plain_text",
                                                   "text": f"{emoji} {title}"}},
                       *lines, *actions]}


def sms_text(notes: Sequence[Notification], limit: int = 320) -> str:
    """A text message: the worst notification first, plain text, at most two SMS segments."""
    worst = min(notes, key=lambda n: n.severity)
    word, _ = _SEVERITY.get(worst.severity, ("info", ""))
    label = "RESOLVED" if worst.transition == "resolved" else word.upper()
    text = f"{label} {worst.severity}: {one_line(worst.summary, 100)} ({worst.target}) " \
           f"{one_line(worst.why, 120)}"
    if len(notes) > 1:
        text += f" +{len(notes) - 1} more"
    return one_line(text, limit)


class SmtpError(Exception):
    """The SMTP server cannot be used safely (no STARTTLS)."""


class _Sent:
    status_code = 250
    headers: dict[str, str] = {}


def email_message(r: Receiver, notes: Sequence[Notification], key: str) -> EmailMessage:
    """A plain-text email: the playbook's fields, one block per notification."""
    worst = min(notes, key=lambda n: n.severity)
    word, emoji = _SEVERITY.get(worst.severity, ("info", ""))
    label = "RESOLVED" if worst.transition == "resolved" else word.upper()
    subject = f"{label} {worst.severity}: {one_line(worst.summary, 120)}"
    if len(notes) > 1:
        subject += f" (+{len(notes) - 1} more)"
    blocks = []
    for n in notes:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(n.at))
        value = "no data" if n.value is None or math.isnan(n.value) else f"{n.value:.4g}"
        blocks.append("\n".join([
            f"{n.transition.upper()}: {one_line(n.summary, 200)}",
            f"Severity: {n.severity}", f"Time: {when}", f"Target: {one_line(n.target, 64)}",
            f"Metric: {one_line(n.expr, 200)}", f"Threshold: {one_line(n.threshold, 100)}",
            f"Current value: {value}", f"Why: {one_line(n.why, 300)}",
            *( [f"What to do: {one_line(n.action, 300)}"] if n.action else []),
            *( [f"Runbook: {one_line(n.runbook, 100)}"] if n.runbook else []),
        ]))
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = r.mail_from or ""
    msg["To"] = ", ".join(r.mail_to)
    msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@opsconsole>"
    msg.set_content("\n\n".join(blocks) + "\n")
    return msg


def webhook_payload(n: Notification) -> dict[str, Any]:
    return {"version": 1, **n.to_json()}


# -- digests ------------------------------------------------------------------------------------


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _hhmm(t: float) -> str:
    return time.strftime("%H:%M", time.gmtime(t))


def _span(start: float, end: float) -> str:
    """`2026-11-27 10:00–11:00 UTC` (the end's date too when the period crosses midnight)."""
    day = time.strftime("%Y-%m-%d", time.gmtime(start))
    end_day = time.strftime("%Y-%m-%d", time.gmtime(end - 1))
    tail = _hhmm(end) if end_day == day and end - start < 86400 else \
        time.strftime("%Y-%m-%d %H:%M", time.gmtime(end))
    return f"{day} {_hhmm(start)}–{tail} UTC"


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
        return ", ".join(f"{words.get(n.transition, n.transition)} {_hhmm(n.at)}"
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


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def slack_digest_payload(notes: Sequence[Notification], start: float, end: float, *,
                         logs_url: str | None = None,
                         metrics_url: str | None = None) -> dict[str, Any]:
    """A period's notifications as one Block Kit message: counts by state, then one
    section per alert (what it is now, and how it got there)."""
    entries = digest_entries(notes)
    counts = digest_counts(entries)
    _, emoji = _SEVERITY.get(entries[0].severity if entries else "P3", ("info", "ℹ️"))
    title = f"Digest: {len(entries)} alert{'s' if len(entries) != 1 else ''}, {_span(start, end)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{emoji} {title}"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{k.capitalize()}:*\n{v}"} for k, v in counts.items()
        ][:10]},
    ]
    for e in entries[:DIGEST_BLOCKS]:
        n = e.last
        text = (f"*{e.state.upper()}* {e.severity} {_mrkdwn(e.summary, 140)} — "
                f"`{_mrkdwn(e.target, 64)}`: {_mrkdwn(n.why, 300)}")
        if e.history():
            text += f"\n_{_mrkdwn(e.history(), 300)}_"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if len(entries) > DIGEST_BLOCKS:
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": f"…and {len(entries) - DIGEST_BLOCKS} more"}})
    blocks.extend(_slack_actions(logs_url, metrics_url))
    return {"text": f"{emoji} DIGEST: {title} ({_counts_text(counts)})", "blocks": blocks}


def webhook_digest_payload(receiver: str, notes: Sequence[Notification], start: float,
                           end: float) -> dict[str, Any]:
    """A period's digest as JSON: counts by state and a list of alerts, each with its
    transitions in the period (the raw notifications, for a receiver that wants them)."""
    entries = digest_entries(notes)
    return {
        "version": 1, "kind": "digest", "receiver": receiver,
        "period": {"start": _iso(start), "end": _iso(end)},
        "counts": digest_counts(entries),
        "alerts": [{
            "rule": e.rule, "target": e.target, "severity": e.severity,
            "summary": one_line(e.summary, 300), "state": e.state,
            "transitions": [{"transition": n.transition, "at": _iso(n.at), "value": n.value,
                             "detail": one_line(n.why, 300), "key": n.key}
                            for n in e.notes],
        } for e in entries],
        "notifications": [n.to_json() for n in notes],
    }


def digest_email(r: Receiver, notes: Sequence[Notification], start: float, end: float,
                 key: str) -> EmailMessage:
    """A period's digest as a plain-text email: counts, then one block per alert."""
    entries = digest_entries(notes)
    counts = digest_counts(entries)
    subject = (f"DIGEST: {len(entries)} alert{'s' if len(entries) != 1 else ''} "
               f"({_counts_text(counts)}), {_span(start, end)}")
    blocks = [f"opsconsole digest for {_span(start, end)}: {_counts_text(counts)}"]
    for e in entries:
        n = e.last
        lines = [f"{e.state.upper()}: {one_line(e.summary, 200)}",
                 f"Severity: {e.severity}", f"Target: {one_line(e.target, 64)}",
                 f"Rule: {one_line(e.rule, 64)}", f"Why: {one_line(n.why, 300)}"]
        lines += [f"  {_iso(x.at)} {x.transition}" for x in e.notes]
        blocks.append("\n".join(lines))
    msg = EmailMessage()
    msg["Subject"] = one_line(subject, 200)
    msg["From"] = r.mail_from or ""
    msg["To"] = ", ".join(r.mail_to)
    msg["Message-ID"] = f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@opsconsole>"
    msg.set_content("\n\n".join(blocks) + "\n")
    return msg


def digest_sms_text(notes: Sequence[Notification], start: float, end: float,
                    limit: int = 320) -> str:
    """A digest by SMS: the counts and the first alerts' summaries, two segments at most."""
    entries = digest_entries(notes)
    text = f"DIGEST {_span(start, end)}: {_counts_text(digest_counts(entries))}: " + "; ".join(
        f"{e.state} {one_line(e.summary, 60)}" for e in entries[:5])
    return one_line(text, limit)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
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


@dataclass(slots=True)
class ReceiverHealth:
    """What the UI shows per receiver: is it delivering, and if not, why."""

    name: str
    sent: int = 0
    pending: int = 0
    dropped: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    paused_until: float = 0.0
    collected: int = 0  # rows waiting for their digest period to end

    @property
    def failing(self) -> bool:
        return self.consecutive_failures > 0


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    key: str
    grp: str
    payload: bytes
    attempts: int
    next_at: float
    created: float


class Outbox:
    """The SQLite store behind the notifier; every method is short and thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        for col in ("digest_start", "digest_end"):  # an outbox written before digests
            if col not in columns:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {col} REAL")
        # A row left 'sending' by a crash was maybe delivered, maybe not: send it again
        # (a digest's rows go back to waiting for their digest, not to the plain queue).
        self._db.execute("UPDATE outbox SET status=CASE WHEN digest_end IS NULL THEN "
                         "'pending' ELSE 'digest' END WHERE status='sending'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, key: str, receiver: str, payload: bytes, now: float, max_queue: int,
            group: str = "", digest: tuple[float, float] | None = None) -> tuple[bool, int]:
        """Insert unless (key, receiver) exists; returns (inserted, rows dropped to make room).

        With `digest` = (period start, period end) the row waits for that period's digest
        (status 'digest', due at the period's end) instead of the plain queue; the bound
        applies to each of the two separately.
        """
        status = "pending" if digest is None else "digest"
        start, end = digest if digest is not None else (None, None)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO outbox (key, receiver, grp, payload, created, next_at, "
                "status, digest_start, digest_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, receiver, group, payload, now, end or 0.0, status, start, end))
            if cur.rowcount == 0:
                return False, 0
            (pending,) = self._db.execute(
                "SELECT count(*) FROM outbox WHERE receiver=? AND status=?",
                (receiver, status)).fetchone()
            excess = pending - max_queue
            if excess > 0:
                self._db.execute(
                    "UPDATE outbox SET status='dropped', last_error='queue full' WHERE id IN "
                    "(SELECT id FROM outbox WHERE receiver=? AND status=? "
                    "ORDER BY id LIMIT ?)", (receiver, status, excess))
            return True, max(excess, 0)

    def digest_head(self, receiver: str) -> tuple[float, float, float, int] | None:
        """The earliest-due waiting digest: (period start, period end, due at, attempts)."""
        with self._lock:
            row = self._db.execute(
                "SELECT digest_start, digest_end, max(next_at), max(attempts) FROM outbox "
                "WHERE receiver=? AND status='digest' GROUP BY digest_end "
                "ORDER BY max(next_at), digest_end LIMIT 1", (receiver,)).fetchone()
        return None if row is None else (float(row[0]), float(row[1]), float(row[2]),
                                         int(row[3]))

    def digest_rows(self, receiver: str, end: float) -> list[Row]:
        """Every row waiting for the digest of the period ending at `end`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, grp, payload, attempts, next_at, created FROM outbox "
                "WHERE receiver=? AND status='digest' AND digest_end=? ORDER BY id",
                (receiver, end)).fetchall()
        return [Row(*r) for r in rows]

    def head(self, receiver: str) -> Row | None:
        """The oldest pending row."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, key, grp, payload, attempts, next_at, created FROM outbox "
                "WHERE receiver=? AND status='pending' ORDER BY id LIMIT 1",
                (receiver,)).fetchone()
        return None if row is None else Row(*row)

    def batch(self, receiver: str, head: Row, limit: int) -> list[Row]:
        """The head row and the later pending rows of its group, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, key, grp, payload, attempts, next_at, created FROM outbox "
                "WHERE receiver=? AND status='pending' AND grp=? AND id>=? ORDER BY id LIMIT ?",
                (receiver, head.grp, head.id, limit)).fetchall()
        return [Row(*r) for r in rows]

    def mark(self, ids: Sequence[int], status: str, *, now: float, next_at: float = 0.0,
             error: str | None = None) -> None:
        """Move rows to 'sending', 'sent' or back to 'pending' or 'digest' (with the next
        attempt time), all in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._mark(ids, status, now, next_at, error)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _mark(self, ids: Sequence[int], status: str, now: float, next_at: float,
              error: str | None) -> None:
        for row_id in ids:
            if status == "sent":
                self._db.execute("UPDATE outbox SET status='sent', sent_at=?, "
                                 "attempts=attempts+1 WHERE id=?", (now, row_id))
            elif status == "sending":
                self._db.execute("UPDATE outbox SET status='sending' WHERE id=?",
                                 (row_id,))
            else:
                self._db.execute(
                    "UPDATE outbox SET status=?, attempts=attempts+1, next_at=?, "
                    "last_error=? WHERE id=?",
                    ("digest" if status == "digest" else "pending", next_at, error, row_id))

    def rows(self, receiver: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            q = ("SELECT id, key, receiver, status, attempts, last_error, sent_at FROM outbox"
                 + (" WHERE receiver=?" if receiver else "") + " ORDER BY id")
            cur = self._db.execute(q, (receiver,) if receiver else ())
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def counts(self, receiver: str) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute(
                "SELECT status, count(*) FROM outbox WHERE receiver=? GROUP BY status",
                (receiver,)).fetchall())


class Notifier:
    """Routes notifications to receivers by severity and delivers them from the outbox."""

    def __init__(
        self,
        path: Path,
        receivers: Sequence[Receiver],
        *,
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        backoff_first: float = BACKOFF_FIRST,
    ) -> None:
        self.outbox = Outbox(path)
        self.backoff_first = backoff_first
        self.clock = clock
        self._env = env
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._last_send: dict[str, float] = {}
        self._health: dict[str, ReceiverHealth] = {}
        self._set_receivers(receivers)

    def _set_receivers(self, receivers: Sequence[Receiver]) -> None:
        env = self._env
        self.receivers = {r.name: r for r in receivers}
        self._urls = {r.name: expand_url(r.url, env) for r in receivers}
        self._sids = {r.name: expand(r.account_sid or "", env) for r in receivers}
        self._tokens = {r.name: expand(r.auth_token or "", env) for r in receivers}
        self._smtp_pw = {r.name: expand(r.smtp_password or "", env) for r in receivers}
        self._health = {r.name: self._health.get(r.name) or ReceiverHealth(r.name)
                        for r in receivers}
        self._wake = {r.name: asyncio.Event() for r in receivers}

    async def reconfigure(self, receivers: Sequence[Receiver]) -> None:
        """A reloaded config's receivers: workers restart on the new list; what waits in
        the outbox for a receiver that still exists is sent, the rest stays on record."""
        running = bool(self._tasks)
        await self._stop_workers()
        self._set_receivers(receivers)
        if running:
            self._start_workers()

    # -- producing ------------------------------------------------------------------------

    def enqueue(self, notes: Iterable[Notification]) -> int:
        """Persist each notification for every receiver its severity routes to; returns rows
        added (a notification already in the outbox for a receiver is not added again)."""
        added = 0
        now = self.clock()
        for n in notes:
            for r in self.receivers.values():
                if n.severity not in r.severities:
                    continue
                period = None
                if r.digest > 0 and n.severity in r.digest_severities:
                    start = math.floor(now / r.digest) * r.digest
                    period = (start, start + r.digest)
                inserted, dropped = self.outbox.add(n.key, r.name, orjson.dumps(n.to_json()),
                                                    now, r.max_queue, n.group, period)
                if dropped:
                    self._health[r.name].dropped += dropped
                    log.warning("receiver %s: queue full, dropped %d oldest", r.name, dropped)
                if inserted:
                    added += 1
                    self._wake[r.name].set()
        return added

    # -- delivering -----------------------------------------------------------------------

    async def start(self) -> None:
        """One worker per receiver, on the running loop."""
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._start_workers()

    def _start_workers(self) -> None:
        for name in self.receivers:
            self._tasks.append(asyncio.create_task(self._worker(name), name=f"notify:{name}"))

    async def _stop_workers(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()

    async def stop(self) -> None:
        await self._stop_workers()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
        self.outbox.close()

    def health(self) -> list[ReceiverHealth]:
        out = []
        for name, h in self._health.items():
            c = self.outbox.counts(name)
            h.pending = c.get("pending", 0) + c.get("sending", 0)
            h.sent = c.get("sent", 0)
            h.dropped = c.get("dropped", 0)
            h.collected = c.get("digest", 0)
            out.append(h)
        return out

    def wake(self) -> None:
        """Make every worker re-read its due times now (after the clock moved, in tests)."""
        for event in self._wake.values():
            event.set()

    async def _worker(self, name: str) -> None:
        wake = self._wake[name]
        while True:
            due = await asyncio.to_thread(self._next_due, name)
            if due is None:
                wake.clear()
                await wake.wait()
                continue
            delay, digest = due
            if delay > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, RECHECK)):
                        await wake.wait()
                continue
            if digest:
                await self.send_digest(name)
            else:
                await self.send_next(name)

    def _next_due(self, name: str) -> tuple[float, bool] | None:
        """(seconds until it may be sent, whether it is a digest) of this receiver's next
        message: its oldest pending row or its earliest digest; None if neither."""
        plain = self._due_in(name)
        digest = self._digest_due_in(name)
        if digest is not None and (plain is None or digest < plain):
            return digest, True
        return None if plain is None else (plain, False)

    def _held(self, name: str, now: float) -> float:
        """Seconds this receiver must wait whatever it sends: pacing, a Retry-After pause."""
        paced = self._last_send.get(name, -math.inf) + 1.0 / self.receivers[name].rate
        return max(0.0, paced - now, self._health[name].paused_until - now)

    def _due_in(self, name: str) -> float | None:
        """Seconds until this receiver may send its oldest pending row; None if none."""
        head = self.outbox.head(name)
        if head is None:
            return None
        r = self.receivers[name]
        now = self.clock()
        gathered = head.created + r.group_wait if head.attempts == 0 else 0.0
        return max(self._held(name, now), head.next_at - now, gathered - now)

    def _digest_due_in(self, name: str) -> float | None:
        """Seconds until this receiver's earliest digest is due (its period over); None if
        no notification waits for a digest."""
        head = self.outbox.digest_head(name)
        if head is None:
            return None
        now = self.clock()
        return max(self._held(name, now), head[2] - now)

    def render(self, r: Receiver, rows: Sequence[Row]) -> tuple[bytes, str]:
        """(body, idempotency key) for one row or a group of rows."""
        notes = [Notification.from_json(orjson.loads(row.payload)) for row in rows]
        if r.kind == "email":
            key = rows[0].key if len(rows) == 1 else "group:" + hashlib.sha256(
                "\n".join(x.key for x in rows).encode()).hexdigest()[:32]
            return email_message(r, notes, key).as_bytes(), key
        if r.kind == "twilio":
            key = rows[0].key if len(rows) == 1 else "group:" + hashlib.sha256(
                "\n".join(x.key for x in rows).encode()).hexdigest()[:32]
            form = {"From": r.sms_from or "", "To": r.sms_to or "",
                    "Body": sms_text(notes)}
            return urllib.parse.urlencode(form).encode(), key
        if len(notes) == 1:
            body = slack_payload(notes[0], logs_url=r.logs_url, metrics_url=r.metrics_url) \
                if r.kind == "slack" else webhook_payload(notes[0])
            return orjson.dumps(body), rows[0].key
        key = "group:" + hashlib.sha256("\n".join(x.key for x in rows).encode()).hexdigest()[:32]
        if r.kind == "slack":
            body = slack_group_payload(notes, logs_url=r.logs_url, metrics_url=r.metrics_url)
        else:
            body = {"version": 1, "group": rows[0].grp,
                    "notifications": [n.to_json() for n in notes]}
        return orjson.dumps(body), key

    async def _post(self, r: Receiver, payload: bytes, key: str) -> Any:
        assert self._client is not None
        if r.kind == "email":
            await asyncio.to_thread(self._smtp_send, r, payload)
            return _Sent()
        if r.kind == "twilio":
            sid = self._sids[r.name]
            url = f"{self._urls[r.name].rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
            return await self._client.post(
                url, content=payload, timeout=r.timeout, auth=(sid, self._tokens[r.name]),
                headers={"Content-Type": "application/x-www-form-urlencoded",
                         "I-Twilio-Idempotency-Token": key[:64]})
        return await self._client.post(
            self._urls[r.name], content=payload, timeout=r.timeout,
            headers={"Content-Type": "application/json", "Idempotency-Key": key})

    def _smtp_send(self, r: Receiver, message: bytes) -> None:
        """Send over SMTP in a worker thread; STARTTLS (verified) before any credential."""
        url = urllib.parse.urlsplit(self._urls[r.name])
        host, port = url.hostname or "localhost", url.port or 587
        with smtplib.SMTP(host, port, timeout=r.timeout) as smtp:
            smtp.ehlo()
            if r.starttls:
                if not smtp.has_extn("starttls"):
                    raise SmtpError("the SMTP server does not offer STARTTLS")
                ctx = ssl.create_default_context(cafile=r.ca_file)
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if r.smtp_user:
                smtp.login(r.smtp_user, self._smtp_pw[r.name])
            smtp.sendmail(r.mail_from or "", list(r.mail_to), message)

    async def send_next(self, name: str) -> bool | None:
        """Send the receiver's oldest pending row once; True sent, False failed, None none."""
        head = await asyncio.to_thread(self.outbox.head, name)
        if head is None:
            return None
        r = self.receivers[name]
        rows = [head]
        if r.group_wait > 0:
            rows = await asyncio.to_thread(self.outbox.batch, name, head, r.group_max)
        payload, key = self.render(r, rows)
        return await self._deliver(r, [row.id for row in rows], payload, key, head.attempts,
                                   "pending")

    async def send_digest(self, name: str) -> bool | None:
        """Send the receiver's earliest waiting digest once, whether or not its period is
        over (the worker waits for that); True sent, False failed, None none waiting."""
        head = await asyncio.to_thread(self.outbox.digest_head, name)
        if head is None:
            return None
        start, end, _, attempts = head
        rows = await asyncio.to_thread(self.outbox.digest_rows, name, end)
        if not rows:
            return None
        r = self.receivers[name]
        payload, key = self.render_digest(r, rows, start, end)
        return await self._deliver(r, [row.id for row in rows], payload, key, attempts,
                                   "digest")

    def render_digest(self, r: Receiver, rows: Sequence[Row], start: float,
                      end: float) -> tuple[bytes, str]:
        """(body, idempotency key) of one period's digest: the key names the receiver and
        the period, so a resend after a crash carries the same one."""
        notes = [Notification.from_json(orjson.loads(row.payload)) for row in rows]
        key = f"digest:{r.name}:{_iso(start)}"
        if r.kind == "email":
            return digest_email(r, notes, start, end, key).as_bytes(), key
        if r.kind == "twilio":
            form = {"From": r.sms_from or "", "To": r.sms_to or "",
                    "Body": digest_sms_text(notes, start, end)}
            return urllib.parse.urlencode(form).encode(), key
        if r.kind == "slack":
            body = slack_digest_payload(notes, start, end, logs_url=r.logs_url,
                                        metrics_url=r.metrics_url)
        else:
            body = webhook_digest_payload(r.name, notes, start, end)
        return orjson.dumps(body), key

    async def _deliver(self, r: Receiver, ids: list[int], payload: bytes, key: str,
                       attempts: int, retry_status: str) -> bool:
        """Post one message for `ids`; on failure they go back to `retry_status` with a
        backoff (or the receiver's Retry-After)."""
        name = r.name
        h = self._health[name]
        assert self._client is not None, "start() the notifier first"
        await asyncio.to_thread(self.outbox.mark, ids, "sending", now=self.clock())
        self._last_send[name] = self.clock()
        error: str | None = None
        wait: float | None = None
        try:
            async with asyncio.timeout(r.timeout + 0.5):
                resp = await self._post(r, payload, key)
            if 200 <= resp.status_code < 300:
                await asyncio.to_thread(self.outbox.mark, ids, "sent", now=self.clock())
                h.consecutive_failures, h.last_error = 0, None
                return True
            error = f"HTTP {resp.status_code}"
            if resp.status_code in (429, 503):
                wait = retry_after(resp.headers.get("Retry-After"), self.clock())
        except (TimeoutError, httpx.TimeoutException):
            error = f"no answer within {r.timeout:g}s"
        except (httpx.HTTPError, smtplib.SMTPException, OSError, SmtpError) as exc:
            error = describe_exception(exc)
        now = self.clock()
        backoff = min(BACKOFF_MAX, self.backoff_first * 2 ** min(attempts, 20))
        if wait is not None:
            backoff = max(wait, 1.0 / r.rate)
            h.paused_until = now + wait  # the limit is the receiver's, not the message's
        h.consecutive_failures += 1
        h.last_error, h.last_error_at = one_line(error, 200), now
        await asyncio.to_thread(self.outbox.mark, ids, retry_status, now=now,
                                next_at=now + backoff, error=h.last_error)
        log.warning("receiver %s: %s (retry in %.1fs)", name, h.last_error, backoff)
        return False
