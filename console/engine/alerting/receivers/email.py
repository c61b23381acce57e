"""Email over SMTP, as mail servers accept it.

Messages are built with `email.policy.SMTP`: CRLF line endings, headers folded and non-ASCII
ones RFC 2047-encoded, bodies quoted-printable so no line passes SMTP's 1000-octet limit
(a bare-LF message with long lines is refused with "500 Line too long"). Each has `Date`,
`MIME-Version`, a `Message-ID` derived from the idempotency key, and a plain-text part with
an HTML alternative. STARTTLS (verified, before any credential) for ``smtp://``, TLS from
the first byte for ``smtps://``, and AUTH when `smtp_user` is set.

Idempotency: SMTP has none, but the Message-ID is the same on every resend of a message, so
a mail client or a deduplicating MTA shows a duplicate once.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import smtplib
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.receivers.base import (
    Batch,
    Outcome,
    ReceiverConfigError,
    SendContext,
    counts_text,
    digest_counts,
    digest_entries,
    iso,
    label,
    notification_lines,
    span,
)
from console.engine.config.rules import Receiver
from console.engine.text.sanitize import one_line

DETAIL_MAX = 4000  # an email has room for the whole cause (quoted-printable folds it)


class SmtpError(Exception):
    """The SMTP server cannot be used safely (no STARTTLS)."""


def message_id(key: str, mail_from: str) -> str:
    """The same Message-ID for every resend of one message (its idempotency key)."""
    domain = mail_from.rpartition("@")[2].strip("<> ") or "opsconsole.invalid"
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


def build(subject: str, text: str, html_body: str, *, key: str, mail_from: str,
          mail_to: Sequence[str], now: float | None = None) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) under `email.policy.SMTP`."""
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = one_line(subject, 250)
    msg["From"] = mail_from
    msg["To"] = ", ".join(mail_to)
    msg["Date"] = format_datetime(datetime.fromtimestamp(time.time() if now is None else now,
                                                         UTC))
    msg["Message-ID"] = message_id(key, mail_from)
    msg["X-Opsconsole-Key"] = one_line(key, 200)
    # quoted-printable: 7-bit clean, so no server needs 8BITMIME, and no line is too long
    msg.set_content(text if text.endswith("\n") else text + "\n", cte="quoted-printable")
    msg.add_alternative(html_body, subtype="html", cte="quoted-printable")
    return msg


def _html_page(title: str, blocks: Sequence[str]) -> str:
    body = "\n".join(blocks)
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title></head>\n<body style=\"font-family: sans-serif\">\n{body}\n</body></html>\n")


def _html_table(rows: Sequence[tuple[str, str]]) -> str:
    cells = "\n".join(f"<tr><th align=\"left\">{html.escape(k)}</th><td>{html.escape(v)}</td>"
                      "</tr>" for k, v in rows)
    return f"<table>\n{cells}\n</table>"


def _subject(notes: Sequence[Notification]) -> str:
    worst = min(notes, key=lambda n: n.severity)
    subject = f"{label(worst)} {worst.severity}: {one_line(worst.summary, 120)} " \
              f"({one_line(worst.target, 40)})"
    if len(notes) > 1:
        subject += f" (+{len(notes) - 1} more)"
    return subject


def notes_message(r: Receiver, notes: Sequence[Notification], key: str, *, mail_from: str,
                  mail_to: Sequence[str], now: float | None = None) -> EmailMessage:
    """One or several notifications: the playbook's fields, one block each."""
    text_blocks = ["\n".join(notification_lines(n, DETAIL_MAX)) for n in notes]
    html_blocks = []
    for n in notes:
        lines = notification_lines(n, DETAIL_MAX)
        html_blocks.append(f"<h2>{html.escape(lines[0])}</h2>\n" + _html_table(
            [(k, v) for k, _, v in (x.partition(": ") for x in lines[1:])]))
    links = [f"{k}: {v}" for k, v in (("Logs", r.logs_url), ("Metrics", r.metrics_url)) if v]
    if links:
        text_blocks.append("\n".join(links))
        html_blocks.append("<p>" + " · ".join(
            f'<a href="{html.escape(v, quote=True)}">{html.escape(k)}</a>'
            for k, v in (("Logs", r.logs_url), ("Metrics", r.metrics_url)) if v) + "</p>")
    subject = _subject(notes)
    return build(subject, "\n\n".join(text_blocks), _html_page(subject, html_blocks),
                 key=key, mail_from=mail_from, mail_to=mail_to, now=now)


def digest_message(r: Receiver, notes: Sequence[Notification], start: float, end: float,
                   key: str, *, mail_from: str, mail_to: Sequence[str],
                   now: float | None = None) -> EmailMessage:
    """A period's digest: counts, then one block per alert with its transitions."""
    entries = digest_entries(notes)
    counts = digest_counts(entries)
    n_alerts = f"{len(entries)} alert{'s' if len(entries) != 1 else ''}"
    subject = f"Digest: {n_alerts} ({counts_text(counts)}), {span(start, end)}"
    text = [f"opsconsole digest for {span(start, end)}: {counts_text(counts)}"]
    rows = []
    for e in entries:
        lines = [f"{e.state.upper()}: {one_line(e.summary, 200)}", f"Severity: {e.severity}",
                 f"Target: {one_line(e.target, 64)}", f"Rule: {one_line(e.rule, 64)}",
                 f"Why: {one_line(e.last.why, 300)}"]
        lines += [f"  {iso(x.at)} {x.transition}" for x in e.notes]
        text.append("\n".join(lines))
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (
            e.state.upper(), e.severity, one_line(e.summary, 200), one_line(e.target, 64),
            one_line(e.last.why, 300), e.history())) + "</tr>")
    table = ("<table>\n<tr><th>State</th><th>Severity</th><th>Alert</th><th>Target</th>"
             "<th>Why</th><th>History</th></tr>\n" + "\n".join(rows) + "\n</table>")
    page = _html_page(subject, [f"<h1>{html.escape(subject)}</h1>", table])
    return build(subject, "\n\n".join(text), page, key=key, mail_from=mail_from,
                 mail_to=mail_to, now=now)


def summary_message(data: dict[str, object], key: str, *, mail_from: str,
                    mail_to: Sequence[str], now: float | None = None) -> EmailMessage:
    """The daily summary (see `console.engine.alerting.summary`)."""
    from console.engine.alerting.summary import summary_html, summary_subject, summary_text

    return build(summary_subject(data), summary_text(data), summary_html(data), key=key,
                 mail_from=mail_from, mail_to=mail_to, now=now)


def render(ctx: SendContext | None, r: Receiver, batch: Batch, *,
           now: float | None = None) -> EmailMessage:
    """The message for any batch; addresses expanded from `${ENV}` when `ctx` is given."""
    mail_from = ctx.value(r, "mail_from") if ctx else (r.mail_from or "")
    mail_to = ctx.values(r, "mail_to") if ctx else list(r.mail_to)
    for a in (mail_from, *mail_to):
        try:
            Address(addr_spec=a.strip().rpartition("<")[2].rstrip(">"))
        except (ValueError, IndexError) as exc:
            raise ReceiverConfigError(f"{a!r} is not an email address ({exc})") from None
    if batch.kind == "digest":
        return digest_message(r, batch.notes, batch.start, batch.end, batch.key,
                              mail_from=mail_from, mail_to=mail_to, now=now)
    if batch.kind == "summary":
        return summary_message(dict(batch.data), batch.key, mail_from=mail_from,
                               mail_to=mail_to, now=now)
    return notes_message(r, batch.notes, batch.key, mail_from=mail_from, mail_to=mail_to,
                         now=now)


def _deliver(r: Receiver, url: str, user: str, password: str, msg: EmailMessage) -> None:
    """Send over SMTP in a worker thread; TLS (verified) before any credential."""
    parts = urllib.parse.urlsplit(url)
    implicit = parts.scheme.lower() == "smtps"
    host, port = parts.hostname or "localhost", parts.port or (465 if implicit else 587)
    ctx = ssl.create_default_context(cafile=r.ca_file)
    smtp: smtplib.SMTP = (smtplib.SMTP_SSL(host, port, timeout=r.timeout, context=ctx)
                          if implicit else smtplib.SMTP(host, port, timeout=r.timeout))
    with smtp:
        smtp.ehlo()
        if not implicit and r.starttls:
            if not smtp.has_extn("starttls"):
                raise SmtpError("the SMTP server does not offer STARTTLS")
            smtp.starttls(context=ctx)
            smtp.ehlo()
        if user:
            smtp.login(user, password)
        smtp.send_message(msg)


async def send(ctx: SendContext, r: Receiver, batch: Batch) -> Outcome:
    msg = render(ctx, r, batch, now=ctx.clock())
    user = ctx.value(r, "smtp_user")
    password = ctx.value(r, "smtp_password", user=user or None)
    url = ctx.value(r, "url", url=True)
    try:
        await asyncio.to_thread(_deliver, r, url, user, password, msg)
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        # 5xx: the server refuses (bad credentials, a refused address): retrying as is
        # will not help; 4xx is the server's "try again later".
        return Outcome.failed(f"SMTP {exc.smtp_code} {text}", permanent=exc.smtp_code >= 500)
    except smtplib.SMTPRecipientsRefused as exc:
        return Outcome.failed(f"recipients refused: {exc.recipients}", permanent=True)
    return Outcome(True)
