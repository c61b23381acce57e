"""Slack: the playbook's Block Kit messages by incoming webhook or by a bot token
(chat.postMessage to the route's channel), and the incident channel and status updates.

All text from data (summaries, details, targets, incident notes) is escaped (`&`, `<`, `>`)
and broadcast words are defanged, so nothing in a metric or a log line can ping a channel;
a mention is added only where a route asks for one (`mention_p0`) and only for P0.

Idempotency: Slack honours none. A webhook or chat.postMessage resent after a crash between
the post and the outbox's "sent" shows twice; an incident channel is created under a name
derived from the incident (date, title, id), so a resent create answers `name_taken` and
the existing channel is used.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.receivers.base import (
    SEVERITY,
    Batch,
    Outcome,
    SendContext,
    body_excerpt,
    counts_text,
    digest_counts,
    digest_entries,
    emoji,
    http_outcome,
    iso,
    label,
    retry_after,
    span,
    value_text,
)
from console.engine.config.rules import Receiver
from console.engine.text.sanitize import one_line

MAX_BLOCKS = 50  # Slack rejects a message with more
DIGEST_BLOCKS = 45  # alerts shown one section each in a digest
HEADER_MAX = 150  # plain_text in a header block
SECTION_MAX = 3000
FIELD_MAX = 2000
_BROADCAST = re.compile(r"@(?=(?:channel|here|everyone)\b)", re.IGNORECASE)
# Slack Web API errors worth retrying as they are; any other error refuses the message.
_TRANSIENT = {"ratelimited", "fatal_error", "internal_error", "service_unavailable",
              "request_timeout", "team_added_to_org"}
_URGENT = ("firing", "escalated", "reminder", "ack_expired")


def escape(text: object, max_len: int = 2000) -> str:
    """Remote or config text made inert for Slack: one line, `&`, `<`, `>` escaped (so no
    `<!channel>`, `<@U…>` or link can be written by data), `@here`-style words defanged."""
    t = one_line(text, max_len)
    t = t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@\u2060", t)


def plain(text: object, max_len: int) -> str:
    """Text for a plain_text object: escaped like any other (Slack's rule for all text),
    bounded after escaping."""
    return escape(text, max_len)[:max_len]


def mention(r: Receiver, notes: Sequence[Notification]) -> str:
    """The route's mention, for a P0 that fires or escalates; "" otherwise."""
    m = r.mention_p0
    if not m or not any(n.severity == "P0" and n.transition in _URGENT for n in notes):
        return ""
    if m in ("here", "channel", "everyone"):
        return f"<!{m}>"
    return f"<!subteam^{m}>" if m.startswith("S") else f"<@{m}>"


def _actions(r: Receiver) -> list[dict[str, Any]]:
    """The "View Logs"/"View Metrics" buttons, or no block (Slack rejects an empty one)."""
    buttons: list[dict[str, Any]] = []
    if r.logs_url:
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "View Logs"},
                        "url": r.logs_url, "style": "primary"})
    if r.metrics_url:
        buttons.append({"type": "button", "text": {"type": "plain_text",
                                                   "text": "View Metrics"},
                        "url": r.metrics_url})
    return [{"type": "actions", "elements": buttons}] if buttons else []


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:SECTION_MAX]}


def _with_mention(body: dict[str, Any], who: str) -> dict[str, Any]:
    if who:
        body["text"] = f"{who} {body['text']}"
        body["blocks"].insert(1, {"type": "section", "text": _mrkdwn(who)})
    return body


def payload(n: Notification, r: Receiver) -> dict[str, Any]:
    """The playbook's Block Kit layout: header, severity/time, message, metric fields, buttons."""
    title = plain(n.summary, 140)
    word = label(n)
    message = f"{escape(n.why)} — target `{escape(n.target, 64)}`"
    if n.runbook:
        message += f", runbook *{escape(n.runbook, 64)}*"
    if n.action and n.transition != "resolved":
        message += f"\n*What to do:* {escape(n.action, 300)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": f"{emoji(n)} {title}"[:HEADER_MAX]}},
        {"type": "section", "fields": [
            _mrkdwn(f"*Severity:*\n{word} ({n.severity})"),
            _mrkdwn(f"*Time:*\n{iso(n.at)}"),
        ]},
        {"type": "section", "text": _mrkdwn(message)},
        {"type": "section", "fields": [
            _mrkdwn(f"*Metric:*\n{escape(n.expr, 200)}"),
            _mrkdwn(f"*Threshold:*\n{escape(n.threshold, 100)}"),
            _mrkdwn(f"*Current Value:*\n{value_text(n)}"),
        ]},
        *_actions(r),
    ]
    body = {"text": f"{emoji(n)} {word}: {escape(n.summary, 140)}", "blocks": blocks}
    return _with_mention(body, mention(r, [n]))


def group_payload(notes: Sequence[Notification], r: Receiver) -> dict[str, Any]:
    """Several notifications of one group in one message: worst severity in the header."""
    worst = min(notes, key=lambda n: n.severity)
    word, icon = SEVERITY.get(worst.severity, ("info", "ℹ️"))
    title = f"{len(notes)} alerts: {one_line(worst.group, 100) or 'ungrouped'}"
    lines = [{"type": "section", "text": _mrkdwn(
        f"*{label(n)}* {n.severity} {escape(n.summary, 140)} — `{escape(n.target, 64)}`: "
        f"{escape(n.why, 300)}")} for n in notes[:40]]
    body = {"text": f"{icon} {word.upper()}: {escape(title, 200)}",
            "blocks": [{"type": "header", "text": {"type": "plain_text",
                                                   "text": plain(f"{icon} {title}", 150)}},
                       *lines, *_actions(r)]}
    return _with_mention(body, mention(r, notes))


def digest_payload(notes: Sequence[Notification], start: float, end: float,
                   r: Receiver) -> dict[str, Any]:
    """A period's notifications as one message: counts by state, then one section per
    alert (what it is now, and how it got there)."""
    entries = digest_entries(notes)
    counts = digest_counts(entries)
    icon = SEVERITY.get(entries[0].severity if entries else "P3", ("info", "ℹ️"))[1]
    title = f"Digest: {len(entries)} alert{'s' if len(entries) != 1 else ''}, {span(start, end)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{icon} {title}"}},
        {"type": "section", "fields": [
            _mrkdwn(f"*{k.capitalize()}:*\n{v}") for k, v in counts.items()][:10]},
    ]
    for e in entries[:DIGEST_BLOCKS]:
        text = (f"*{e.state.upper()}* {e.severity} {escape(e.summary, 140)} — "
                f"`{escape(e.target, 64)}`: {escape(e.last.why, 300)}")
        if e.history():
            text += f"\n_{escape(e.history(), 300)}_"
        blocks.append({"type": "section", "text": _mrkdwn(text)})
    if len(entries) > DIGEST_BLOCKS:
        blocks.append({"type": "section", "text": _mrkdwn(
            f"…and {len(entries) - DIGEST_BLOCKS} more")})
    blocks.extend(_actions(r))
    return {"text": f"{icon} {title} ({counts_text(counts)})", "blocks": blocks}


# -- incident channel and status updates ---------------------------------------------------------


def slug(text: str, limit: int = 40) -> str:
    """`API returning 500s (api)` → `api-returning-500s-api`: Slack channel name characters
    (lower-case letters, digits, hyphens), accents folded."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return s[:limit].rstrip("-") or "incident"


def incident_channel_name(incident_id: str, title: str, started: float) -> str:
    """The playbook's `incident-2025-01-20` plus what it is about and the incident's own
    suffix (unique across incidents of a day, the same on every resend): ≤ 80 chars."""
    day = time.strftime("%Y-%m-%d", time.gmtime(started))
    suffix = slug(incident_id.rsplit("-", 1)[-1], 8)
    return f"incident-{day}-{slug(title, 80 - 20 - len(suffix))}-{suffix}"


def incident_opening(data: Mapping[str, Any]) -> dict[str, Any]:
    """The first message in an incident channel: what, how bad, since when."""
    sev = str(data.get("severity") or "P2")
    word, icon = SEVERITY.get(sev, ("info", "ℹ️"))
    title = one_line(data.get("title") or data.get("incident"), 140)
    fields = [_mrkdwn(f"*Severity:*\n{word.upper()} ({sev})"),
              _mrkdwn(f"*Started:*\n{iso(float(data.get('started') or 0))}"),
              _mrkdwn(f"*Incident:*\n`{escape(data.get('incident'), 64)}`")]
    if data.get("alerts"):
        fields.append(_mrkdwn("*Alerts:*\n" + escape(", ".join(map(str, data["alerts"])), 500)))
    return {"text": f"{icon} {word.upper()}: {escape(title, 140)}", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": plain(f"{icon} {title}", 150)}},
        {"type": "section", "fields": fields},
    ]}


def status_payload(data: Mapping[str, Any]) -> dict[str, Any]:
    """A status update as posted (incident channel, and the general one when user-facing)."""
    sev = str(data.get("severity") or "P2")
    icon = SEVERITY.get(sev, ("info", "ℹ️"))[1]
    title = one_line(data.get("title") or data.get("incident"), 120)
    text = escape(data.get("text"), SECTION_MAX - 200)
    who = escape(data.get("actor") or "", 64)
    return {"text": f"{icon} Status update: {escape(title, 120)}: {text}"[:3000], "blocks": [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": plain(f"{icon} Status update: {title}", 150)}},
        {"type": "section", "text": _mrkdwn(text or "_(no text)_")},
        {"type": "context", "elements": [_mrkdwn(
            f"{sev} · `{escape(data.get('incident'), 64)}` · {iso(float(data.get('at') or 0))}"
            + (f" · {who}" if who else ""))]},
    ]}


# -- sending ------------------------------------------------------------------------------------


def render(r: Receiver, batch: Batch) -> dict[str, Any]:
    """The Block Kit message (text + blocks) for any batch this receiver may send."""
    if batch.kind == "digest":
        return digest_payload(batch.notes, batch.start, batch.end, r)
    if batch.kind == "summary":
        from console.engine.alerting.summary import slack_blocks

        return slack_blocks(batch.data, r)
    if batch.kind == "status":
        return status_payload(batch.data)
    if len(batch.notes) == 1:
        return payload(batch.notes[0], r)
    return group_payload(batch.notes, r)


class _Api:
    """Slack Web API calls with a bot token: JSON bodies, answers judged by `ok`."""

    def __init__(self, ctx: SendContext, r: Receiver) -> None:
        self.ctx, self.r = ctx, r
        self.base = ctx.value(r, "url", url=True).rstrip("/") if r.url else r.endpoint
        self.token = ctx.value(r, "token")

    async def call(self, method: str, body: Mapping[str, Any], *, form: bool = False
                   ) -> tuple[Outcome, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.token}"}
        url = f"{self.base}/{method}"
        if form:
            resp = await self.ctx.client.post(url, data=dict(body), headers=headers,
                                              timeout=self.r.timeout)
        else:
            resp = await self.ctx.client.post(
                url, json=dict(body), timeout=self.r.timeout,
                headers={**headers, "Content-Type": "application/json; charset=utf-8"})
        return _judge(resp, self.ctx.clock(), method)


def _judge(resp: httpx.Response, now: float, method: str) -> tuple[Outcome, dict[str, Any]]:
    if resp.status_code == 429:
        return Outcome.failed(f"{method}: rate limited (HTTP 429)", retry_after=retry_after(
            resp.headers.get("Retry-After"), now) or 1.0), {}
    if resp.status_code != 200:
        return http_outcome(resp, now, detail=f"{method}: {body_excerpt(resp)}"), {}
    try:
        data = resp.json()
    except ValueError:
        return Outcome.failed(f"{method}: not a Web API answer: {body_excerpt(resp)}"), {}
    if not isinstance(data, dict):
        return Outcome.failed(f"{method}: not a Web API answer"), {}
    if data.get("ok") is True:
        return Outcome(True, result=data), data
    error = str(data.get("error") or "unknown error")
    return Outcome.failed(f"{method}: {error}", permanent=error not in _TRANSIENT), data


async def _post_message(api: _Api, channel: str, message: Mapping[str, Any]) -> Outcome:
    outcome, _ = await api.call("chat.postMessage", {
        "channel": channel, **message, "unfurl_links": False, "unfurl_media": False,
        "link_names": False})
    return outcome


async def _channel_id(api: _Api, name: str) -> tuple[Outcome, str | None]:
    """Create the channel, or find it when an earlier attempt did (`name_taken`)."""
    outcome, data = await api.call("conversations.create", {"name": name, "is_private": False})
    if outcome.ok:
        return outcome, str(data["channel"]["id"])
    if data.get("error") != "name_taken":
        return outcome, None
    cursor = ""
    for _ in range(50):  # 50 pages of 200: 10,000 channels
        outcome, data = await api.call("conversations.list", {
            "types": "public_channel", "exclude_archived": "true", "limit": "200",
            **({"cursor": cursor} if cursor else {})}, form=True)
        if not outcome.ok:
            return outcome, None
        for ch in data.get("channels") or []:
            if isinstance(ch, dict) and ch.get("name") == name:
                return Outcome(True), str(ch["id"])
        cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
        if not cursor:
            break
    return Outcome.failed(f"conversations.create: name_taken, and no channel #{name} is "
                          "visible to the bot", permanent=True), None


async def _incident_channel(ctx: SendContext, r: Receiver, data: Mapping[str, Any]) -> Outcome:
    api = _Api(ctx, r)
    name = str(data["name"])
    outcome, channel = await _channel_id(api, name)
    if channel is None:
        return outcome
    users = ctx.values(r, "responders")
    if users:
        outcome, answer = await api.call("conversations.invite",
                                         {"channel": channel, "users": ",".join(users)})
        if not outcome.ok and answer.get("error") not in ("already_in_channel",
                                                           "cant_invite_self"):
            return outcome
    opened = await _post_message(api, channel, incident_opening(data))
    if not opened.ok:
        return opened
    return Outcome(True, result={"channel_id": channel, "name": name})


async def send(ctx: SendContext, r: Receiver, batch: Batch) -> Outcome:
    if batch.kind == "incident_channel":
        return await _incident_channel(ctx, r, batch.data)
    message = render(r, batch)
    if r.slack_bot:
        api = _Api(ctx, r)
        channel = str(batch.data.get("channel") or "") if batch.kind == "status" else ""
        return await _post_message(api, channel or ctx.value(r, "channel"), message)
    url = ctx.value(r, "url", url=True)
    resp = await ctx.client.post(url, json=message, timeout=r.timeout,
                                 headers={"Idempotency-Key": batch.key})
    # An incoming webhook answers "ok", or a plain-text error code (invalid_payload…).
    return http_outcome(resp, ctx.clock(), detail=body_excerpt(resp, 100))
