"""One redaction function for every sink: screen, logs, journal, JSON output, exception text.

Secrets are known two ways: values resolved from `${ENV}` references at config load are
registered here and masked wherever they appear, in every form a peer may echo them (plain,
URL-encoded, base64, HTTP Basic and SMTP AUTH PLAIN with their user); and URL userinfo
passwords, `password=` keywords and token-like query parameters are masked by pattern,
whatever their origin.
"""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import quote, quote_plus

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()
_registered: set[tuple[str, str]] = set()
_secret_re: re.Pattern[str] | None = None

_USERINFO = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^\s/@:]*):(?P<pw>[^\s@]*)@", re.I)
_KEYWORD = re.compile(
    r"(?P<k>\b(?:password|passwd|pwd|sslpassword|secret|token|api_?key)\s*=\s*)"
    r"(?P<v>'[^']*'|\"[^\"]*\"|[^\s&;]+)", re.I)
_QUERY = re.compile(
    r"(?P<k>[?&](?:password|passwd|pwd|token|access_token|secret|key|api_?key|sig|signature)=)"
    r"(?P<v>[^&#\s]+)", re.I)
_AUTH_HEADER = re.compile(
    r"(?P<k>\b(?:authorization|cookie|x-api-key)\s*[:=]\s*)(?P<v>[^\r\n,;]+)", re.I)
_SLACK = re.compile(r"(hooks\.slack\.com/services/)[A-Za-z0-9/]+")


def _b64_forms(raw: bytes) -> set[str]:
    """Every text form base64 gives `raw`: the whole encoding (with and without padding), and
    the run of characters that encodes only `raw` whatever precedes it in a longer base64
    text (three alignments), in the standard and URL-safe alphabets.

    A server that echoes `AUTH LOGIN`'s base64 password, or a header carrying base64 of
    ``user:password``, must not show the secret: matching the plain form alone misses it.
    """
    out: set[str] = set()
    whole = base64.b64encode(raw).decode()
    out.update((whole, whole.rstrip("=")))
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode()
        start = -(-8 * k // 6)  # ceil: the first character made of `raw` bits only
        end = 8 * (k + len(raw)) // 6  # floor: the last full character before the end
        inner = enc[start:end]
        if len(inner) >= 6:  # shorter runs would mask ordinary words
            out.add(inner)
    out |= {f.replace("+", "-").replace("/", "_") for f in out}
    return {f for f in out if len(f) >= 6}


def secret_forms(value: str, user: str | None = None) -> set[str]:
    """The forms in which `value` (a password, token or URL) can come back in a peer's text:
    plain, URL-encoded, base64 (alone or inside a longer base64 text), and with `user`, the
    HTTP Basic ``user:password`` and SMTP AUTH PLAIN ``\\0user\\0password`` encodings."""
    forms = {value, quote(value, safe=""), quote_plus(value, safe="")}
    raw = value.encode()
    forms |= _b64_forms(raw)
    if user:
        u = user.encode()
        for pair in (u + b":" + raw, b"\0" + u + b"\0" + raw, u + b"\0" + u + b"\0" + raw):
            whole = base64.b64encode(pair).decode()
            forms.update((whole, whole.rstrip("=")))
    return {f for f in forms if len(f) >= 3}


def register_secret(value: str, *, user: str | None = None) -> None:
    """Remember a resolved secret so that it is masked wherever it later appears, in any of
    `secret_forms()` (give `user` for a password sent with a user name)."""
    global _secret_re
    if not value or len(value) < 3:
        return
    key = (value, user or "")
    with _lock:
        if key in _registered:
            return
        _registered.add(key)
        _secrets.update(secret_forms(value, user))
        alts = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(a) for a in alts))
        _generation[0] += 1


_generation = [0]


def generation() -> int:
    """Bumped whenever a secret is registered: a text redacted earlier may now redact
    differently, so a cache of redacted text keys on this (see `probes.http`)."""
    return _generation[0]


def redact(text: str) -> str:
    """Mask every known or recognisable secret in `text`."""
    if not text:
        return text
    pat = _secret_re
    if pat is not None:
        text = pat.sub(MASK, text)
    # Each pattern runs only when a literal it cannot match without is present: the same
    # result, but ~50 us less per 250-char text (it runs on every HTTP check's response).
    if "://" in text:
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    if "=" in text:
        text = _KEYWORD.sub(lambda m: f"{m['k']}{MASK}", text)
        text = _QUERY.sub(lambda m: f"{m['k']}{MASK}", text)
    low = text.lower()
    if "authorization" in low or "cookie" in low or "x-api-key" in low:
        text = _AUTH_HEADER.sub(lambda m: f"{m['k']}{MASK}", text)
    if "hooks.slack.com" in text:
        text = _SLACK.sub(rf"\1{MASK}", text)
    return text


def describe_exception(exc: BaseException) -> str:
    """A one-line, redacted description of an exception and its cause chain."""
    parts: list[str] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(parts) < 4:
        seen.add(id(cur))
        msg = str(cur).strip() or type(cur).__name__
        if not parts or msg not in parts[-1]:
            parts.append(msg if str(cur).strip() else type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    return redact(": ".join(parts))
