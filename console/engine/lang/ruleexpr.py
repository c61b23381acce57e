"""The rule condition language: `fn(metric, window) [* k] op threshold`, and label matchers.

See `console.engine.alerting.rules` for what each function means on the store; this module
only parses, so the config schema can validate an expression without the store or numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from console.engine.lang.durations import parse_duration

# -- the condition language -------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?P<unit>ms|s|m|h|d)?(?![A-Za-z0-9_])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_:.]*)"
    r"|(?P<op>==|!=|>=|<=|>|<|\(|\)|,|\*|/|-))"
)
_CMP = ("==", "!=", ">=", "<=", ">", "<")
_WINDOWED = ("mean", "avg", "max", "min", "sum", "rate", "increase")
FUNCTIONS = (*_WINDOWED, "quantile", "count", "ratio", "absent")


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed rule condition: `fn(metric…) [* k] op threshold` (fn "latest" = no function)."""

    fn: str
    metric: str
    op: str = ">"
    threshold: float = 0.0
    window: float | None = None
    metric2: str | None = None  # ratio's denominator
    q: float | None = None  # quantile
    match_op: str | None = None  # count(metric match_op match_value, window)
    match_value: float | None = None
    intervals: int | None = None  # absent(metric, N)
    scale: float = 1.0
    text: str = ""

    @property
    def series(self) -> tuple[str, ...]:
        return (self.metric,) if self.metric2 is None else (self.metric, self.metric2)

    def describe_threshold(self) -> str:
        if self.fn == "absent":
            return f"no sample for {self.intervals} intervals"
        return f"{self.op} {self.threshold:g}"


def compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[tuple[str, str, str | None]] = []  # (kind, text, unit)
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if not m or m.end() == pos:
                bad = stripped[pos:].strip()[:12]
                raise ValueError(f"cannot read {bad!r} in rule expression {text!r}")
            pos = m.end()
            if m.group("num") is not None:
                self.toks.append(("num", m.group("num"), m.group("unit")))
            elif m.group("name") is not None:
                self.toks.append(("name", m.group("name"), None))
            else:
                self.toks.append(("op", m.group("op"), None))
        self.p = 0

    def fail(self, what: str) -> ValueError:
        got = self.toks[self.p][1] if self.p < len(self.toks) else "the end"
        return ValueError(
            f"rule expression {self.text!r}: expected {what}, found {got!r}; write e.g. "
            "'p95_ms > 2000', 'mean(cpu_pct, 5m) > 80' or 'absent(up, 3)'"
        )

    def peek(self) -> tuple[str, str, str | None] | None:
        return self.toks[self.p] if self.p < len(self.toks) else None

    def take(
        self, kind: str, text: str | None = None, what: str = ""
    ) -> tuple[str, str, str | None]:
        t = self.peek()
        if t is None or t[0] != kind or (text is not None and t[1] != text):
            raise self.fail(what or (repr(text) if text else kind))
        self.p += 1
        return t

    def number(self, what: str = "a number") -> float:
        sign = 1.0
        t = self.peek()
        if t is not None and t == ("op", "-", None):
            self.p += 1
            sign = -1.0
        tok = self.take("num", what=what)
        if tok[2] is not None:
            raise self.fail(what)
        return sign * float(tok[1])

    def duration(self) -> float:
        tok = self.take("num", what="a window such as 5m")
        if tok[2] is None:
            raise ValueError(f"rule expression {self.text!r}: give the window a unit, e.g. "
                             f"{tok[1]}s or {tok[1]}m")
        seconds = parse_duration(tok[1] + tok[2])
        if seconds <= 0:
            raise ValueError(f"rule expression {self.text!r}: a window must be longer than 0")
        return seconds

    def metric(self) -> str:
        return self.take("name", what="a metric name")[1]

    def cmp_op(self) -> str:
        t = self.peek()
        if t is None or t[0] != "op" or t[1] not in _CMP:
            raise self.fail("a comparison (> >= < <= == !=)")
        self.p += 1
        return t[1]

    def parse(self) -> Expr:
        if not self.toks:
            raise ValueError("a rule expression must not be empty")
        first = self.peek()
        assert first is not None
        if first == ("name", "down", None) and len(self.toks) == 1:
            return Expr(fn="latest", metric="up", op="==", threshold=0.0, text=self.text)
        name = self.take("name", what="a metric or a function")[1]
        fields: dict[str, object] = {}
        nxt = self.peek()
        if nxt != ("op", "(", None):
            fn = "latest"
            fields["metric"] = name
        else:
            fn = "mean" if name == "avg" else name
            if name not in FUNCTIONS:
                raise ValueError(f"rule expression {self.text!r}: unknown function {name!r} "
                                 f"(functions: {', '.join(FUNCTIONS)})")
            self.take("op", "(")
            if fn in _WINDOWED:
                fields["metric"] = self.metric()
                self.take("op", ",")
                fields["window"] = self.duration()
            elif fn == "quantile":
                q = self.number("a quantile between 0 and 1")
                if not 0.0 <= q <= 1.0:
                    raise ValueError(f"rule expression {self.text!r}: quantile {q:g} is "
                                     "outside 0..1 (write 0.95 for p95)")
                fields["q"] = q
                self.take("op", ",")
                fields["metric"] = self.metric()
                self.take("op", ",")
                fields["window"] = self.duration()
            elif fn == "count":
                fields["metric"] = self.metric()
                fields["match_op"] = self.cmp_op()
                fields["match_value"] = self.number()
                self.take("op", ",")
                fields["window"] = self.duration()
            elif fn == "ratio":
                fields["metric"] = self.metric()
                self.take("op", ",")
                fields["metric2"] = self.metric()
                if self.peek() == ("op", ",", None):
                    self.p += 1
                    fields["window"] = self.duration()
            else:  # absent
                fields["metric"] = self.metric()
                n = 3.0
                if self.peek() == ("op", ",", None):
                    self.p += 1
                    n = self.number("a number of intervals")
                if n < 1 or n != int(n):
                    raise ValueError(f"rule expression {self.text!r}: absent() needs a whole "
                                     "number of intervals, at least 1")
                fields["intervals"] = int(n)
            self.take("op", ")")
        if fn == "absent":
            if self.peek() is not None:
                raise self.fail("the end (absent() is a whole condition)")
            # the ignore below: Expr's fields are filled by name from what the parser read; their
            # types are checked by the parser above
            return Expr(fn=fn, text=self.text, **fields)  # type: ignore[arg-type]
        scale = 1.0
        while (t := self.peek()) is not None and t[0] == "op" and t[1] in ("*", "/"):
            self.p += 1
            k = self.number("a number to scale by")
            if t[1] == "/" and k == 0:
                raise ValueError(f"rule expression {self.text!r}: division by zero")
            scale = scale * k if t[1] == "*" else scale / k
        op = self.cmp_op()
        threshold = self.number("a threshold number")
        if self.peek() is not None:
            raise self.fail("the end of the expression")
        # the ignore below: as for absent() above, the fields' types are the parser's
        return Expr(fn=fn, op=op, threshold=threshold, scale=scale, text=self.text,
                    **fields)  # type: ignore[arg-type]


def parse_expr(text: str) -> Expr:
    """Parse a rule condition; raises ValueError with a message fit for `opsconsole validate`."""
    return _Parser(text.strip()).parse()


# -- matchers (silences, maintenance windows) ---------------------------------------------------

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    """An Alertmanager-style label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`."""

    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit


def parse_matcher(text: str) -> Matcher:
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a matcher; write e.g. service=\"app\" or "
                         "severity=~\"P[23]\"")
    name, op, value = m.groups()
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: bad regular expression ({exc})") from None
    return Matcher(name, op, value)


