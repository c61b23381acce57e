"""Health conditions on an HTTP response: `body.status == "ok"`, `latency < 300ms` and the like.

A condition is parsed once, when the config is loaded (so a typo is a config error with a
readable message, never a check-time surprise), and evaluated on every check against a
`CheckContext`. Evaluation never raises: a missing JSON path, a body that is not JSON or a
value of the wrong type makes the condition *fail* with a description the operator can act on,
e.g. `body.details.redis.status is "down", expected == "up"`. Descriptions quote remote values
through `sanitize.one_line`, so they are safe to show and to journal.

Grammar (one condition per string)::

    condition := subject OP value | subject ("exists" | "missing")
    subject   := "latency" | "status" | "size" | "body" path? | "header." NAME
    path      := ("." KEY | "[" INT "]" | "[" JSON-STRING "]")*
    OP        := == | != | < | <= | > | >= | contains | matches
    value     := JSON literal ("ok", 1, 2.5, true, null) | bare word | duration (latency)
                 | size (size: 1MB) | "regex" (matches)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from console.engine.lang.durations import parse_duration, parse_size
from console.engine.text.sanitize import one_line

__all__ = ["CheckContext", "Condition", "parse_condition"]

_MISSING: Any = object()

_SUBJECT = re.compile(
    r"""\s*(?:
        (?P<simple>latency|status|size)\b
      | header\.(?P<header>[A-Za-z0-9!#$%&'*+.^_`|~-]+)
      | (?P<body>body)(?P<path>(?:\.[^\s.\[\]=!<>"]+|\[\s*(?:-?\d+|"(?:[^"\\]|\\.)*")\s*\])*)
    )""",
    re.VERBOSE,
)
_OP = re.compile(r"\s*(==|!=|<=|>=|<|>|contains\b|matches\b|exists\b|missing\b)")
_PATH_PART = re.compile(r"\.([^\s.\[\]=!<>\"]+)|\[\s*(-?\d+)\s*\]|\[\s*(\"(?:[^\"\\]|\\.)*\")\s*\]")
_BARE_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/+-]*")
_UNARY = {"exists", "missing"}
_ORDER = {"<", "<=", ">", ">="}


class CheckContext:
    """What one check observed, as conditions see it.

    `headers` is a case-insensitive mapping (httpx.Headers) or a dict; a plain dict is
    lower-cased once here. The JSON body is parsed lazily and at most once per check, so
    targets without `body.` conditions never pay for parsing.
    """

    __slots__ = ("_json", "_json_error", "_text", "body", "body_bytes", "headers",
                 "latency_ms", "status_code", "truncated")

    def __init__(
        self,
        *,
        latency_ms: float | None,
        status_code: int | None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        body_bytes: int | None = None,
        truncated: bool = False,
    ) -> None:
        self.latency_ms = latency_ms
        self.status_code = status_code
        if headers is None:
            headers = {}
        elif type(headers) is dict:
            headers = {k.lower(): v for k, v in headers.items()}
        self.headers: Mapping[str, str] = headers
        self.body = body
        self.body_bytes = len(body) if body_bytes is None else body_bytes
        self.truncated = truncated
        self._json: Any = _MISSING
        self._json_error: str | None = None
        self._text: str | None = None

    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        if self._text is None:
            self._text = self.body.decode("utf-8", errors="replace")
        return self._text

    def json(self) -> tuple[bool, Any]:
        """(True, value) for a JSON body, else (False, why-not text)."""
        if self._json is _MISSING and self._json_error is None:
            if not self.body.strip():
                self._json_error = "body is empty, not JSON"
            else:
                try:
                    self._json = orjson.loads(self.body)
                except orjson.JSONDecodeError as exc:
                    why = str(exc).split(":", 1)[0]
                    extra = f", truncated at {len(self.body)} bytes" if self.truncated else ""
                    self._json_error = f"body is not JSON ({one_line(why, 60)}{extra})"
        if self._json_error is not None:
            return False, self._json_error
        return True, self._json

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None and type(self.headers) is dict:
            value = self.headers.get(name.lower())
        return value


def _show(value: Any) -> str:
    """A short, safe rendering of a (possibly remote) value in JSON notation."""
    if value is _MISSING:
        return "missing"
    if isinstance(value, float) and not math.isfinite(value):
        text = str(value)
    else:
        try:
            text = orjson.dumps(value).decode()
        except TypeError:
            text = repr(value)
    return one_line(text, 80)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    return bool(a == b)


def _fmt_ms(ms: float) -> str:
    if ms >= 10_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms:.0f}ms"


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed condition; `text` is what the operator wrote."""

    text: str
    subject: str  # "latency" | "status" | "size" | "body" | "header"
    label: str  # how the subject is named in descriptions, e.g. body.details.redis.status
    path: tuple[str | int, ...]  # JSON path below `body`, or (header-name,)
    op: str
    value: Any  # parsed right-hand side (ms for latency, bytes for size)
    regex: re.Pattern[str] | None = None

    @property
    def needs_json(self) -> bool:
        return self.subject == "body" and bool(self.path)

    def holds(self, ctx: CheckContext) -> bool:
        """Whether the condition holds, without building a description (the hot path)."""
        try:
            state, actual, _ = self._resolve(ctx)
            if state != "found":
                return state == "absent" and self.op == "missing"
            if self.op in _UNARY:
                return self.op == "exists"
            ok, problem = self._compare(actual)
            return ok and problem is None
        except Exception:  # noqa: BLE001 - a condition must never break a check
            return False

    def evaluate(self, ctx: CheckContext) -> tuple[bool, str]:
        """(holds, description); never raises."""
        try:
            state, actual, why = self._resolve(ctx)
            if state == "error":  # no JSON to look into, or no response at all
                return False, f"{self.label}: {why}"
            if state == "absent":
                if self.op == "missing":
                    return True, f"{self.label} is missing"
                want = "to exist" if self.op == "exists" else self._expect()
                return False, f"{self.label} is missing{_paren(why)}, expected {want}"
            shown = self._show_actual(actual)
            if self.op == "exists":
                return True, f"{self.label} exists ({shown})"
            if self.op == "missing":
                return False, f"{self.label} is {shown}, expected to be missing"
            ok, problem = self._compare(actual)
            if problem:
                return False, f"{self.label} is {shown}, {problem}"
            if ok:
                return True, f"{self.label} is {shown}"
            return False, f"{self.label} is {shown}, expected {self._expect()}"
        except Exception as exc:  # noqa: BLE001 - a condition must never break a check
            return False, f"{self.label}: cannot evaluate ({one_line(type(exc).__name__)})"

    def _expect(self) -> str:
        if self.subject == "latency":
            return f"{self.op} {_fmt_ms(self.value)}"
        if self.op == "matches":
            return f"to match {_show(self.value)}"
        if self.op == "contains":
            return f"to contain {_show(self.value)}"
        if self.subject == "size":
            return f"{self.op} {self.value} bytes"
        return f"{self.op} {_show(self.value)}"

    def _show_actual(self, actual: Any) -> str:
        if self.subject == "latency":
            return _fmt_ms(actual)
        if self.subject == "body" and not self.path:
            return f"{len(actual)} chars"
        if self.subject == "size":
            return f"{actual} bytes"
        return _show(actual)

    def _resolve(self, ctx: CheckContext) -> tuple[str, Any, str | None]:
        """("found", value, None) | ("absent", None, why-or-None) | ("error", None, why)."""
        s = self.subject
        if s == "latency":
            if ctx.latency_ms is None:
                return "error", None, "no measurement"
            return "found", ctx.latency_ms, None
        if s == "status":
            if ctx.status_code is None:
                return "error", None, "no response"
            return "found", ctx.status_code, None
        if s == "size":
            return "found", ctx.body_bytes, None
        if s == "header":
            v = ctx.header(str(self.path[0]))  # (header-name,): always a str
            return ("absent", None, None) if v is None else ("found", v, None)
        if not self.path:
            return "found", ctx.text(), None
        ok, doc = ctx.json()
        if not ok:
            return "error", None, doc
        cur = doc
        last = len(self.path) - 1
        for i, part in enumerate(self.path):
            if isinstance(part, int):
                if not isinstance(cur, list):
                    return "absent", None, f"{self._walked(i)} is {_kind(cur)}, not a list"
                if not -len(cur) <= part < len(cur):
                    return "absent", None, f"{self._walked(i)} has {len(cur)} items"
            elif not isinstance(cur, dict):
                return "absent", None, f"{self._walked(i)} is {_kind(cur)}, not an object"
            elif part not in cur:
                why = None if i == last else f"{self._walked(i)} has no key {_show(part)}"
                return "absent", None, why
            cur = cur[part]
        return "found", cur, None

    def _walked(self, n: int) -> str:
        """The label of the first `n` path parts, for messages."""
        return "body" + "".join(
            f"[{p}]" if isinstance(p, int) else _label_key(p) for p in self.path[:n]
        )

    def _compare(self, actual: Any) -> tuple[bool, str | None]:
        op, want = self.op, self.value
        if op == "==":
            return _equal(actual, want), None
        if op == "!=":
            return not _equal(actual, want), None
        if op in _ORDER:
            both_numbers = _is_number(actual) and _is_number(want)
            if not both_numbers and not (isinstance(actual, str) and isinstance(want, str)):
                shown = _fmt_ms(want) if self.subject == "latency" else _show(want)
                return False, f"not comparable with {op} {shown}"
            return _ORDER_FN[op](actual, want), None
        if op == "contains":
            if isinstance(actual, str):
                return (str(want) if not isinstance(want, str) else want) in actual, None
            if isinstance(actual, list):
                return any(_equal(x, want) for x in actual), None
            if isinstance(actual, dict):
                return isinstance(want, str) and want in actual, None
            return False, f"{_kind(actual)} cannot contain {_show(want)}"
        if op == "matches":
            assert self.regex is not None
            if isinstance(actual, str):
                return self.regex.search(actual) is not None, None
            if _is_number(actual) or isinstance(actual, bool):
                return self.regex.search(_show(actual)) is not None, None
            return False, f"{_kind(actual)} cannot match a pattern"
        raise AssertionError(op)  # pragma: no cover


_ORDER_FN: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _paren(why: str | None) -> str:
    return f" ({why})" if why else ""


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if _is_number(v):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _label_key(key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
        return f".{key}"
    return f"[{_show(key)}]"


def _parse_path(text: str) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_PART.match(text, pos)
        if not m:  # pragma: no cover - the subject regex only admits valid paths
            raise ValueError(f"cannot read the path at {text[pos:]!r}")
        if m.group(1) is not None:
            parts.append(m.group(1))
        elif m.group(2) is not None:
            parts.append(int(m.group(2)))
        else:
            parts.append(orjson.loads(m.group(3)))
        pos = m.end()
    return tuple(parts)


def _parse_value(raw: str, subject: str, op: str) -> Any:
    raw = raw.strip()
    if not raw:
        raise ValueError(f"{op} needs a value on its right, e.g. {_EXAMPLE[subject]}")
    if subject == "latency":
        if re.fullmatch(r"\d+(?:\.\d+)?", raw):
            raise ValueError(f"latency needs a unit: write e.g. {raw}ms or {raw}s")
        try:
            return parse_duration(raw) * 1000.0
        except ValueError:
            raise ValueError(f"{raw!r} is not a duration; write e.g. 300ms or 2s") from None
    if subject == "size" and not re.fullmatch(r"-?\d+(?:\.\d+)?", raw):
        try:
            return parse_size(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a size; write e.g. 512 or 1MB") from None
    if raw[0] in "\"[{-0123456789" or raw in ("true", "false", "null"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            if raw[0] == '"':
                raise ValueError(f"unterminated or invalid string {raw}") from None
            if raw[0] in "[{":
                raise ValueError(f"{raw} is not valid JSON") from None
    if _BARE_WORD.fullmatch(raw):
        return raw
    raise ValueError(
        f"cannot read the value {raw!r}; quote text values, e.g. \"{raw.strip(chr(34))}\""
    )


_EXAMPLE = {
    "latency": "latency < 300ms",
    "status": "status == 200",
    "size": "size < 1MB",
    "body": 'body.status == "ok"',
    "header": 'header.content-type contains "json"',
}


def parse_condition(text: str) -> Condition:
    """Parse one condition; raises ValueError with a message fit for a config error."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('empty condition; write e.g. body.status == "ok" or latency < 300ms')
    src = text.strip()
    m = _SUBJECT.match(src)
    if not m or (m.end() < len(src) and not src[m.end()].isspace() and src[m.end()] not in "=!<>"):
        word = src.split()[0] if src.split() else src
        raise ValueError(
            f"{word!r} is not something a condition can test; start with latency, status, "
            "size, body, body.<path> or header.<name>"
        )
    path: tuple[str | int, ...] = ()
    if m.group("simple"):
        subject = m.group("simple")
        label = subject
    elif m.group("header"):
        subject = "header"
        name = m.group("header").lower()
        path = (name,)
        label = f"header.{name}"
    else:
        subject = "body"
        raw_path = m.group("path") or ""
        try:
            path = _parse_path(raw_path)
        except orjson.JSONDecodeError:
            raise ValueError(f"invalid quoted key in {raw_path!r}") from None
        label = "body" + "".join(f"[{p}]" if isinstance(p, int) else _label_key(p) for p in path)
    rest = src[m.end():]
    om = _OP.match(rest)
    if not om:
        got = rest.strip().split()[0] if rest.strip() else "nothing"
        raise ValueError(
            f"expected an operator after {label} (== != < <= > >= contains matches exists "
            f"missing), got {got!r}; e.g. {_EXAMPLE[subject]}"
        )
    op = om.group(1)
    rhs = rest[om.end():]
    if op in _UNARY:
        if rhs.strip():
            raise ValueError(f"{op} takes no value; write just `{label} {op}`")
        if subject in ("latency", "status", "size"):
            raise ValueError(f"{label} always exists; compare it instead, e.g. {_EXAMPLE[subject]}")
        return Condition(text=src, subject=subject, label=label, path=path, op=op, value=None)
    value = _parse_value(rhs, subject, op)
    regex = None
    if op == "matches":
        if not isinstance(value, str):
            raise ValueError(
                f'matches needs a quoted regular expression, e.g. {label} matches "^ok"'
            )
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    elif op in _ORDER and subject in ("latency", "status", "size") and not _is_number(value):
        raise ValueError(f"{label} {op} needs a number, got {_show(value)}")
    elif subject == "status" and op in ("==", "!=") and not _is_number(value):
        raise ValueError(f"status is a number; write e.g. status == 200, not {_show(value)}")
    if subject == "body" and not path and op not in ("contains", "matches", "==", "!="):
        raise ValueError(
            "the whole body can be tested with contains, matches, == or !=; "
            "for a JSON field write body.<path>"
        )
    return Condition(text=src, subject=subject, label=label, path=path, op=op, value=value,
                     regex=regex)
