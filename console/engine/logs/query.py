"""The log filter language and the playbook's built-in log queries, over files or lines.

A query is whitespace-separated terms, all of which must hold (quote a term to keep its
spaces: `message="Gemini API failed"`):

- `field=value`, `field!=value` — equality, case-insensitive for text, numeric when both
  sides are numbers, `*` as a wildcard (`message=stripe.*`); dotted names reach into
  nested objects (`meta.userId=7`). A record without the field never equals anything
  (so `!=` holds for it); a line that is not JSON fails every field term.
- `field>n`, `field<n`, `field>=n`, `field<=n` — numeric (`responseTime>1000`).
- a bare word — a case-insensitive substring of the message or of the raw line, so it
  also finds lines that are not JSON.

Built-in queries (the playbook's "Log Queries"): `errors` (level=error in the last hour),
`errors-by-message` (errors grouped by message with counts, most frequent first), `slow`
(responseTime > 1000) and `stripe-failed` (`stripe.webhook.failed`).

`search_file()` streams a file line by line and keeps only the latest `limit` matches and
at most `max_groups` message groups, so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import shlex
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from console.engine.logs.tail import MAX_LINE, LogLine, open_regular, parse_line

__all__ = [
    "BUILTIN",
    "LogQuery",
    "SearchResult",
    "Term",
    "parse_query",
    "search_file",
    "search_lines",
]

_TERM = re.compile(r"^(?P<f>[A-Za-z_@$][\w.@$-]*)(?P<op>!=|>=|<=|=|>|<)(?P<v>.*)$", re.S)
_PLAIN = re.compile(r"^[\w.\-:/ @]+$")  # text safe to look for in the raw bytes first


@dataclass(frozen=True, slots=True)
class Builtin:
    text: str
    since: float | None = None
    group_by: str | None = None
    about: str = ""


BUILTIN: dict[str, Builtin] = {
    "errors": Builtin("level=error", since=3600.0, about="errors in the last hour"),
    "errors-by-message": Builtin("level=error", group_by="message",
                                 about="errors grouped by message, most frequent first"),
    "slow": Builtin("responseTime>1000", about="requests slower than 1 s"),
    "stripe-failed": Builtin("stripe.webhook.failed", about="failed Stripe webhooks"),
}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            v = float(value.strip().removesuffix("ms"))
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return None


@dataclass(frozen=True, slots=True)
class Term:
    """One condition; `field` is None for a bare word."""

    field: str | None
    op: str  # "text", "=", "!=", ">", "<", ">=", "<="
    value: str
    number: float | None = None
    needle: bytes | None = None  # lower-case bytes that must appear in the raw line, if known

    def _get(self, line: LogLine) -> Any:
        name = self.field
        if line.record is None or name is None:
            return None
        if name == "level":
            return line.level or None
        if name in ("message", "msg"):
            return line.message if ("message" in line.record or "msg" in line.record) else None
        return line.field(name)

    def matches(self, line: LogLine) -> bool:
        if self.op == "text":
            v = self.value.lower()
            return v in line.message.lower() or v in line.raw.lower()
        if line.record is None:  # a field term says nothing about a line that is not JSON
            return False
        got = self._get(line)
        if self.op in ("=", "!="):
            eq = self._equals(got)
            return eq if self.op == "=" else not eq
        n = _num(got)
        if n is None or self.number is None:
            return False
        if self.op == ">":
            return n > self.number
        if self.op == "<":
            return n < self.number
        if self.op == ">=":
            return n >= self.number
        return n <= self.number

    def _equals(self, got: Any) -> bool:
        if got is None:  # missing (or null): equal to nothing, so != holds
            return False
        if isinstance(got, bool):
            return self.value.lower() == ("true" if got else "false")
        if isinstance(got, int | float):
            return self.number is not None and float(got) == self.number
        text = got if isinstance(got, str) else str(got)
        if "*" in self.value or "?" in self.value:
            return fnmatch.fnmatchcase(text.lower(), self.value.lower())
        return text.lower() == self.value.lower()


@dataclass(frozen=True, slots=True)
class LogQuery:
    """A parsed query: terms (all must hold), an optional time window and grouping."""

    text: str
    terms: tuple[Term, ...]
    since: float | None = None  # seconds back from `now`; lines without a timestamp fail
    group_by: str | None = None
    name: str | None = None  # the built-in's name, if one

    def matches(self, line: LogLine, now: float) -> bool:
        if self.since is not None and (line.ts is None or line.ts < now - self.since):
            return False
        return all(t.matches(line) for t in self.terms)

    def prefilter(self, raw_lower: bytes) -> bool:
        """A cheap necessary condition on the raw bytes, before any JSON parsing."""
        return all(t.needle in raw_lower for t in self.terms if t.needle is not None)

    def with_since(self, since: float | None) -> LogQuery:
        return replace(self, since=since)


def _split(text: str | Sequence[str]) -> list[str]:
    if isinstance(text, str):
        try:
            return shlex.split(text)
        except ValueError as exc:  # unbalanced quote
            raise ValueError(f"cannot read the query: {exc}") from None
    if len(text) == 1:
        return _split(text[0])
    return [t for t in text if t.strip()]


def parse_query(
    text: str | Sequence[str], *, since: float | None = None, slow_ms: float | None = None,
) -> LogQuery:
    """A LogQuery from filter text or a built-in's name; raises ValueError with the reason.

    `since` (seconds) overrides a built-in's window; `slow_ms` sets the `slow` built-in's
    threshold (a log target's own `slow_ms`).
    """
    tokens = _split(text)
    if not tokens:
        raise ValueError("an empty query; write e.g. level=error or one of: "
                         + ", ".join(BUILTIN))
    shown = " ".join(tokens)
    if len(tokens) == 1 and tokens[0] in BUILTIN:
        b = BUILTIN[tokens[0]]
        body = b.text if tokens[0] != "slow" or slow_ms is None else f"responseTime>{slow_ms:g}"
        q = parse_query(body, since=since if since is not None else b.since)
        return replace(q, text=tokens[0], group_by=b.group_by, name=tokens[0])
    terms = []
    for tok in tokens:
        m = _TERM.match(tok)
        if m is None:
            needle = tok.lower().encode() if _PLAIN.match(tok) else None
            terms.append(Term(None, "text", tok, needle=needle))
            continue
        f, op, v = m["f"], m["op"], m["v"]
        number = _num(v)
        if op in (">", "<", ">=", "<=") and number is None:
            raise ValueError(f"{tok!r}: {op} needs a number, e.g. {f}{op}1000")
        if v == "" and op in ("=", "!="):
            raise ValueError(f"{tok!r}: give a value after {op}, e.g. {f}{op}error")
        needle = None
        if op == "=" and "*" not in v and "?" not in v and _PLAIN.match(v) and number is None:
            needle = v.lower().encode()
        terms.append(Term(f, op, v, number, needle))
    return LogQuery(text=shown, terms=tuple(terms), since=since)


@dataclass(slots=True)
class SearchResult:
    """Matches (the latest `limit`), counts, and message groups for a grouped query.

    `non_json` counts lines that are not JSON objects; a line the byte prefilter rejected
    without parsing is judged by its shape (`{...}`), so that count can miss a malformed
    object among lines the query would never match anyway.
    """

    query: LogQuery
    scanned: int = 0
    matched: int = 0
    non_json: int = 0
    matches: deque[LogLine] = field(default_factory=deque)
    groups: dict[str, int] = field(default_factory=dict)
    other: int = 0  # grouped matches beyond `max_groups` distinct keys
    skipped: int = 0  # bytes before a time window's start, never read

    def sorted_groups(self) -> list[tuple[str, int]]:
        out = sorted(self.groups.items(), key=lambda kv: (-kv[1], kv[0]))
        if self.other:
            out.append(("(other messages)", self.other))
        return out

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {
            "query": self.query.text, "scanned": self.scanned, "matched": self.matched,
            "non_json": self.non_json,
        }
        if self.skipped:
            d["skipped_bytes"] = self.skipped
        if self.query.since is not None:
            d["since_s"] = self.query.since
        if self.query.group_by:
            d["group_by"] = self.query.group_by
            d["groups"] = [{"key": k, "count": n} for k, n in self.sorted_groups()]
        else:
            d["lines"] = [ln.record if ln.record is not None else {"_raw": ln.raw}
                          for ln in self.matches]
        return d


def _group_key(line: LogLine, by: str) -> str:
    if by == "message":
        return line.message
    v = line.field(by)
    return "" if v is None else str(v)


class _Collector:
    def __init__(self, query: LogQuery, now: float, limit: int, max_groups: int) -> None:
        self.res = SearchResult(query=query, matches=deque(maxlen=max(1, limit)))
        self.now = now
        self.max_groups = max_groups

    def add(self, line: LogLine) -> None:
        res = self.res
        if not res.query.matches(line, self.now):
            return
        res.matched += 1
        by = res.query.group_by
        if by is None:
            res.matches.append(line)
            return
        key = _group_key(line, by)
        groups = res.groups
        if key in groups:
            groups[key] += 1
        elif len(groups) < self.max_groups:
            groups[key] = 1
        else:
            res.other += 1


def search_lines(
    lines: Iterable[LogLine], query: LogQuery, *, now: float | None = None,
    limit: int = 2000, max_groups: int = 10_000,
) -> SearchResult:
    """Run a query over lines already parsed (the Logs screen's ring)."""
    c = _Collector(query, time.time() if now is None else now, limit, max_groups)
    for line in lines:
        c.res.scanned += 1
        if line.record is None:
            c.res.non_json += 1
        c.add(line)
    return c.res


SEEK_MIN_BYTES = 16 * 1024 * 1024  # below this a windowed search just reads the whole file
SEEK_SLACK_S = 300.0  # start this much before the window: lines are only roughly in order


def _ts_at(f: IO[bytes], offset: int) -> float | None:
    """The timestamp of the first whole line after `offset` that has one (a few tried)."""
    f.seek(offset)
    if offset:
        f.readline(MAX_LINE * 4)  # the rest of the line we landed in
    for _ in range(16):
        raw = f.readline(MAX_LINE)
        if not raw:
            return None
        ts = parse_line(raw).ts
        if ts is not None:
            return ts
    return None


def _window_start(f: IO[bytes], size: int, cutoff: float) -> int:
    """A byte offset at or before the first line stamped `cutoff` or later, by bisection.

    Log files are appended in time order, so ~log2(size) probes find where the window
    starts instead of reading a 1 GB file from its beginning; SEEK_SLACK_S of margin
    covers lines written slightly out of order.
    """
    lo, hi = 0, size
    target = cutoff - SEEK_SLACK_S
    while hi - lo > 64 * 1024:
        mid = (lo + hi) // 2
        ts = _ts_at(f, mid)
        if ts is not None and ts < target:
            lo = mid
        else:
            hi = mid
    if lo:  # begin at a line boundary
        f.seek(lo)
        f.readline(MAX_LINE * 4)
        lo = f.tell()
    return lo


def search_file(
    path: str | os.PathLike[str], query: LogQuery, *, now: float | None = None,
    limit: int = 500, max_groups: int = 10_000, seek_min_bytes: int = SEEK_MIN_BYTES,
    tail_bytes: int | None = None,
) -> SearchResult:
    """Stream a file through a query in bounded memory (blocking; raises OSError).

    Lines are read one at a time (at most MAX_LINE bytes; the rest of a longer line is
    skipped), a cheap byte test rejects most lines before JSON parsing, and only the latest
    `limit` matches and `max_groups` groups are kept. A query with a time window on a file
    of `seek_min_bytes` or more starts near the window (`_window_start`); `tail_bytes`
    reads at most the file's last that many bytes (from a line's start); `skipped` says
    how many bytes before were never read.
    """
    at = time.time() if now is None else now
    c = _Collector(query, at, limit, max_groups)
    res = c.res
    prefilter = query.prefilter
    with open_regular(path) as f:  # a FIFO would block the reader for ever
        size = os.fstat(f.fileno()).st_size
        start = 0
        if query.since is not None and size >= seek_min_bytes:
            start = _window_start(f, size, at - query.since)
        if tail_bytes is not None and size - start > tail_bytes:
            f.seek(size - tail_bytes)
            f.readline(MAX_LINE * 4)  # the rest of the line we landed in
            start = f.tell()
        f.seek(start)
        res.skipped = start
        readline = f.readline
        while True:
            raw = readline(MAX_LINE)
            if not raw:
                break
            if len(raw) == MAX_LINE and not raw.endswith(b"\n"):  # skip the rest of it
                while (rest := readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass
            if not raw.strip():
                continue
            res.scanned += 1
            if not prefilter(raw.lower()):
                body = raw.strip()  # skipped unparsed: judged by its shape alone
                if body[:1] != b"{" or body[-1:] != b"}":
                    res.non_json += 1
                continue
            line = parse_line(raw)
            if line.record is None:
                res.non_json += 1
            c.add(line)
    return res
