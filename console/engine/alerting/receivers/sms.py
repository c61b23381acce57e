"""SMS through Twilio's Messages API, written the way Twilio bills it.

A message in the GSM-7 alphabet costs one segment up to 160 characters and 153 per segment
beyond (the rest of each part is the concatenation header); a character of the extension
table (``€ [ ] { } \\ ~ ^ |``) takes two of those, and never straddles two parts. One
character outside GSM-7 (an emoji, ``…``, a curly quote) turns the whole message into UCS-2:
70 characters, or 67 per part, counted in UTF-16 units (Twilio's "Messaging Segments"
documentation). So the text is kept in GSM-7 — typographic punctuation replaced by its
plain form, accents folded where GSM-7 lacks the letter — and cut to `sms_segments` parts
with ``...``, never ``…``; severity, target and cause come first, inside the first part.
The GSM 03.38 table itself is the ``gsm0338`` codec's.

Idempotency: Twilio's Messages API honours none. A message resent after a crash between
Twilio's 201 and the outbox's "sent" is sent (and billed) twice.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.receivers.base import (
    Batch,
    Outcome,
    SendContext,
    counts_text,
    digest_counts,
    digest_entries,
    http_outcome,
    label,
    span,
)
from console.engine.config.rules import Receiver
from console.engine.text.sanitize import one_line

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
ELLIPSIS = "..."
# Characters outside GSM-7 that have a plain GSM-7 form (Twilio's "smart encoding" does
# much the same on its side, but only when asked, and the length must be known before).
_PLAIN = {
    "…": "...", "‘": "'", "’": "'", "‚": ",", "‛": "'", "“": '"', "”": '"', "„": '"',
    "‟": '"', "′": "'", "″": '"', "–": "-", "—": "-", "―": "-", "−": "-", "‐": "-",
    "‑": "-", "•": "*", "·": ".", "\u00a0": " ", "\u2009": " ", "\u200a": " ", "\u202f": " ",
    "\u2007": " ", "\u2002": " ", "\u2003": " ", "\u2060": "", "\u200b": "", "⏎": "/",
    "«": '"', "»": '"', "‹": "<", "›": ">", "×": "x", "÷": "/", "✔": "OK", "✖": "X",
    "→": "->", "←": "<-", "≥": ">=", "≤": "<=", "≠": "!=", "ç": "Ç", "`": "'",
}


def gsm_septets(ch: str) -> int | None:
    """Septets one character takes in GSM-7 (2 for the extension table), None if it has no
    GSM-7 form."""
    try:
        return len(ch.encode("gsm03.38"))
    except UnicodeEncodeError:
        return None


def is_gsm(text: str) -> bool:
    try:
        text.encode("gsm03.38")
    except UnicodeEncodeError:
        return False
    return True


def to_gsm(text: str) -> str:
    """`text` in the GSM-7 alphabet: plain punctuation for typographic, accents folded
    where GSM-7 has no such letter, anything else (emoji, other scripts) as `?`."""
    out = []
    for ch in text:
        if gsm_septets(ch) is not None:
            out.append(ch)
            continue
        rep = _PLAIN.get(ch)
        if rep is None:
            base = "".join(c for c in unicodedata.normalize("NFKD", ch)
                           if not unicodedata.combining(c))
            rep = base if base and is_gsm(base) else (
                "" if unicodedata.category(ch) in ("Mn", "Cf", "So", "Sk") else "?")
        out.append(rep)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Segments:
    """How a text goes over SMS: its encoding, the parts it takes, and its length in the
    encoding's units (septets for GSM-7, UTF-16 units for UCS-2)."""

    encoding: str  # "GSM-7" | "UCS-2"
    units: int
    parts: int


def _split(units: Sequence[int], per_part: int) -> int:
    """Parts needed when no character (an escape pair, a surrogate pair) may straddle two."""
    parts, used = 1, 0
    for u in units:
        if used + u > per_part:
            parts, used = parts + 1, 0
        used += u
    return parts


def segments(text: str) -> Segments:
    """Twilio's segment count for `text` (see the module's docstring for the rules)."""
    if is_gsm(text):
        units = [gsm_septets(c) or 1 for c in text]
        total = sum(units)
        parts = 1 if total <= GSM_SINGLE else _split(units, GSM_PART)
        return Segments("GSM-7", total, parts)
    units = [len(c.encode("utf-16-le")) // 2 for c in text]
    total = sum(units)
    parts = 1 if total <= UCS2_SINGLE else _split(units, UCS2_PART)
    return Segments("UCS-2", total, parts)


def capacity(parts: int) -> int:
    """GSM-7 septets that fit in `parts` segments."""
    return GSM_SINGLE if parts == 1 else GSM_PART * parts


def cut(text: str, parts: int) -> str:
    """`text` (GSM-7) cut to fit `parts` segments, ending in `...` when cut: at a word
    boundary when one is near, never in the middle of an escape pair."""
    if segments(text).parts <= parts:
        return text
    room = capacity(parts) - len(ELLIPSIS)
    while room > 0:
        out: list[str] = []
        used = 0
        for ch in text:
            n = gsm_septets(ch) or 1
            if used + n > room:
                break
            out.append(ch)
            used += n
        head = "".join(out)
        space = head.rfind(" ")
        if space > len(head) - 20:
            head = head[:space]
        candidate = head.rstrip(" ,;:-") + ELLIPSIS
        if segments(candidate).parts <= parts:
            return candidate
        room -= 1  # an escape pair at a part boundary moved the split: take one less
    return ELLIPSIS


def _fit(text: str, septets: int) -> str:
    """The longest prefix of GSM-7 `text` within `septets`."""
    out: list[str] = []
    used = 0
    for ch in text:
        n = gsm_septets(ch) or 1
        if used + n > septets:
            return "".join(out).rstrip() + ELLIPSIS if out else ""
        out.append(ch)
        used += n
    return text


def sms_text(notes: Sequence[Notification], parts: int = 2) -> str:
    """The worst notification: `CRITICAL P0 api: <cause> | <summary> +N more`, in GSM-7.

    Severity, target and cause are kept within the first segment's 153 septets (what a
    phone shows first), the summary and the count after them, the whole cut to `parts`.
    """
    worst = min(notes, key=lambda n: n.severity)
    head = to_gsm(f"{label(worst)} {worst.severity} {one_line(worst.target, 40)}: ")
    cause = to_gsm(("was " if worst.transition == "resolved" else "") + one_line(worst.why, 300))
    first = head + _fit(cause, GSM_PART - sum(gsm_septets(c) or 1 for c in head))
    tail = ""
    summary = to_gsm(one_line(worst.summary, 200))
    if summary and summary not in first:
        tail += f" | {summary}"
    if len(notes) > 1:
        tail += f" +{len(notes) - 1} more"
    return cut(first + tail, parts)


def digest_text(notes: Sequence[Notification], start: float, end: float, parts: int = 2) -> str:
    """A digest by SMS: the counts and the first alerts' summaries."""
    entries = digest_entries(notes)
    text = f"DIGEST {span(start, end)}: {counts_text(digest_counts(entries))}: " + "; ".join(
        f"{e.state} {one_line(e.summary, 60)}" for e in entries[:5])
    return cut(to_gsm(text), parts)


def form(r: Receiver, ctx: SendContext, body: str) -> dict[str, str]:
    """The form fields of Twilio's Messages create, as its own library sends them."""
    return {"To": ctx.value(r, "sms_to"), "From": ctx.value(r, "sms_from"), "Body": body}


async def send(ctx: SendContext, r: Receiver, batch: Batch) -> Outcome:
    from console.engine.config.rules import E164

    body = digest_text(batch.notes, batch.start, batch.end, r.sms_segments) \
        if batch.kind == "digest" else sms_text(batch.notes, r.sms_segments)
    fields = form(r, ctx, body)
    for name, key in (("sms_to", "To"), ("sms_from", "From")):
        if not E164.fullmatch(fields[key]):
            return Outcome.failed(f"{name} is not an E.164 number (+ and up to 15 digits)",
                                  permanent=True)
    sid = ctx.value(r, "account_sid")
    token = ctx.value(r, "auth_token", user=sid)
    base = (ctx.value(r, "url", url=True) if r.url else r.endpoint).rstrip("/")
    resp = await ctx.client.post(f"{base}/2010-04-01/Accounts/{sid}/Messages.json",
                                 data=fields, auth=(sid, token), timeout=r.timeout,
                                 headers={"Accept": "application/json"})
    detail = ""
    if resp.status_code >= 300:
        try:
            err = resp.json()
            detail = f"{err.get('code')}: {err.get('message')}"
        except ValueError:
            detail = resp.text[:200]
    return http_outcome(resp, ctx.clock(), detail=detail)
