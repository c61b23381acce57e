"""Derived metrics over two consecutive Prometheus scrapes: selectors, rate, ratio, quantiles.

A config names metrics by small expressions instead of full PromQL, because the console keeps
no time-series database: it holds only the current scrape and the one before it. The forms:

    selector                          sum of the matching samples (gauges, counters, untyped)
    rate(selector)                    per-second increase between the two scrapes
    ratio(sel_a, sel_b)               increase of a / increase of b between the two scrapes
    histogram_quantile(q, selector)   quantile of the observations made between the scrapes

each optionally followed by `* number` or `/ number` (e.g. `* 100` for a percentage,
`* 1000` for milliseconds). A selector is `name{label="v", label!="v", label=~"re",
label!~"re"}`; regexes are anchored at both ends, as in Prometheus.

Increases are taken per series, as Prometheus does: a value lower than the previous one is a
counter reset and counts from zero. A series absent from the previous scrape counts from zero
too, since clients such as prometheus_client create a labelled series on its first increment
(Prometheus's "created-timestamp zero injection" treats new series the same way).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

LabelKey = tuple[tuple[str, str], ...]

_METRIC_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_OPS = ("=~", "!~", "!=", "=")
_FORMS = (
    "write a selector such as http_requests_total{status=~\"5..\"}, or rate(selector), "
    "ratio(selector, selector), histogram_quantile(0.95, selector), optionally * or / a number"
)


class StopFlag(Protocol):
    """Anything with `is_set()`, such as threading.Event: tells a running parse to stop."""

    def is_set(self) -> bool: ...


class ScrapeCancelledError(Exception):
    """Raised inside the parser thread when the caller gave up (deadline passed)."""


# -- scrapes ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Scrape:
    """The samples of one scrape, by sample name, then by label set.

    `at` is a monotonic timestamp (seconds) of the scrape; `series` counts every sample in
    the body, kept or not. Only the sample names an expression needs are kept (`keep`), so a
    10 MB exposition does not stay in memory twice.
    """

    at: float
    samples: dict[str, dict[LabelKey, float]] = field(default_factory=dict)
    series: int = 0

    def get(self, name: str) -> dict[LabelKey, float]:
        return self.samples.get(name, {})


def parse_scrape(
    text: str,
    *,
    at: float,
    keep: Callable[[str], bool] | None = None,
    openmetrics: bool = False,
    cancel: StopFlag | None = None,
) -> Scrape:
    """Parse a Prometheus text (or OpenMetrics) exposition into a Scrape.

    The text format goes through `promtext.fast_families` (plain exporter output, exact to
    the reference) and otherwise, like OpenMetrics, through prometheus_client's parser, the
    well-kept reference. Raises ValueError on anything that is not the format. `cancel` lets
    a caller that runs this in a thread abandon it: the line feed checks it every few thousand
    lines and stops the parser.
    """
    if not openmetrics:
        from console.engine.lang.promtext import fast_families

        def check() -> None:
            if cancel is not None and cancel.is_set():
                raise ScrapeCancelledError

        fast = fast_families(text, check)
        if fast is not None:
            return _scrape_from(fast, at, keep)
    if openmetrics:
        from prometheus_client.openmetrics.parser import (
            text_fd_to_metric_families as om_families,
        )

        lines = _Lines(text, cancel)
        families: Iterable[object] = om_families(lines)
    else:
        from prometheus_client.parser import text_fd_to_metric_families

        lines = _Lines(text, cancel)
        # the ignore below: prometheus_client's parser takes a text file; _Lines gives it the lines
        # it reads
        families = text_fd_to_metric_families(lines)  # type: ignore[arg-type]
    scrape = Scrape(at=at)
    samples = scrape.samples
    count = 0
    try:
        for fam in families:
            # the ignores below: `families` is typed object (either parser's); both give
            # Metric objects with these attributes
            fam_name: str = fam.name  # type: ignore[attr-defined]
            fam_type: str = fam.type  # type: ignore[attr-defined]
            for s in fam.samples:  # type: ignore[attr-defined]
                count += 1
                names = [s.name]
                # The parser renames a counter `foo` (no _total) to `foo_total`; let the
                # selector `foo` still find it.
                if fam_type == "counter" and s.name == fam_name + "_total":
                    names.append(fam_name)
                for name in names:
                    if keep is not None and not keep(name):
                        continue
                    key = tuple(sorted(s.labels.items())) if s.labels else ()
                    samples.setdefault(name, {})[key] = float(s.value)
    except ScrapeCancelledError:
        raise
    except ValueError as exc:  # where: "could not convert string to float: '{'" alone
        raise ValueError(f"{_parse_error(exc)} (line {lines.at})") from None
    except (TypeError, IndexError, KeyError, AttributeError) as exc:
        # The parser is lax and some garbage reaches these instead of ValueError.
        raise ValueError(f"not the Prometheus text format ({type(exc).__name__}, line "
                         f"{lines.at})") from None
    scrape.series = count
    return scrape


def _scrape_from(families: list[tuple[str, str, list[tuple[str, LabelKey, float]]]],
                 at: float, keep: Callable[[str], bool] | None) -> Scrape:
    """`parse_scrape`'s loop over the fast path's families (same naming rules)."""
    scrape = Scrape(at=at)
    samples = scrape.samples
    count = 0
    for fam_name, fam_type, got in families:
        total = fam_name + "_total" if fam_type == "counter" else None
        count += len(got)
        for name, key, value in got:
            if keep is None or keep(name):
                samples.setdefault(name, {})[key] = value
            if name == total and (keep is None or keep(fam_name)):
                samples.setdefault(fam_name, {})[key] = value
    scrape.series = count
    return scrape


def _parse_error(exc: ValueError) -> str:
    msg = str(exc).strip()
    if not msg:
        return "not the Prometheus text format"
    from console.engine.text.sanitize import one_line

    return "not the Prometheus text format: " + one_line(msg, 160)


class _Lines:
    """Line iterator over a text that checks a cancel flag every 4096 lines."""

    __slots__ = ("_cancel", "_it", "_n")

    def __init__(self, text: str, cancel: StopFlag | None) -> None:
        self._it = iter(text.splitlines(keepends=True))
        self._cancel = cancel
        self._n = 0

    def __iter__(self) -> Iterator[str]:
        return self

    @property
    def at(self) -> int:
        """The number of the line read last (the parser reads as it goes: where it
        failed)."""
        return self._n

    def __next__(self) -> str:
        self._n += 1
        if self._cancel is not None and not self._n & 4095 and self._cancel.is_set():
            raise ScrapeCancelledError
        return next(self._it)

    def readline(self) -> str:  # the OpenMetrics parser only iterates, but be a file
        try:
            return next(self)
        except StopIteration:
            return ""


# -- expressions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: dict[str, str]) -> bool:
        v = labels.get(self.label, "")  # a missing label matches "" as in Prometheus
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True, slots=True)
class Selector:
    name: str
    matchers: tuple[Matcher, ...] = ()

    def select(self, scrape: Scrape, name: str | None = None) -> Iterator[tuple[LabelKey, float]]:
        """(labels, value) of every sample of `name` (default: the selector's) that matches."""
        series = scrape.get(name or self.name)
        if not self.matchers:
            yield from series.items()
            return
        for key, value in series.items():
            labels = dict(key)
            if all(m.matches(labels) for m in self.matchers):
                yield key, value

    def __str__(self) -> str:
        if not self.matchers:
            return self.name
        inner = ", ".join(f'{m.label}{m.op}"{_quote(m.value)}"' for m in self.matchers)
        return f"{self.name}{{{inner}}}"


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _increase(
    sel: Selector, cur: Scrape, prev: Scrape, name: str | None = None
) -> tuple[float, int]:
    """Sum of per-series increases, with resets and new series counted from zero."""
    old = prev.get(name or sel.name)
    total = 0.0
    n = 0
    for key, value in sel.select(cur, name):
        n += 1
        before = old.get(key)
        if before is None or value < before:
            total += value
        else:
            total += value - before
    return total, n


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed expression; `evaluate` gives its value for a scrape and the one before."""

    text: str
    kind: str  # "value" | "rate" | "ratio" | "quantile"
    selectors: tuple[Selector, ...]
    q: float | None = None
    scale: float = 1.0

    @property
    def needs_previous(self) -> bool:
        return self.kind != "value"

    def sample_names(self) -> frozenset[str]:
        """Sample names this expression reads (so a scrape may keep only these)."""
        if self.kind == "quantile":
            return frozenset({_bucket_name(self.selectors[0].name)})
        return frozenset(s.name for s in self.selectors)

    def evaluate(self, current: Scrape, previous: Scrape | None) -> float | None:
        """The value, or None when there is no data (no series, no previous scrape, 0/0)."""
        value = self._raw(current, previous)
        if value is None:
            return None
        value *= self.scale
        return value if math.isfinite(value) else None

    def _raw(self, cur: Scrape, prev: Scrape | None) -> float | None:
        if self.kind == "value":
            found = False
            total = 0.0
            for _, v in self.selectors[0].select(cur):
                found = True
                total += v
            return total if found else None
        if prev is None:
            return None
        if self.kind == "rate":
            dt = cur.at - prev.at
            if dt <= 0:
                return None
            inc, n = _increase(self.selectors[0], cur, prev)
            return inc / dt if n else None
        if self.kind == "ratio":
            den, nd = _increase(self.selectors[1], cur, prev)
            if nd == 0 or den == 0:
                return None
            # An absent numerator is no increase: many clients create a series (say, status
            # 500) only when it first happens.
            num, _ = _increase(self.selectors[0], cur, prev)
            return num / den
        return self._quantile(cur, prev)

    def _quantile(self, cur: Scrape, prev: Scrape) -> float | None:
        sel = self.selectors[0]
        name = _bucket_name(sel.name)
        old = prev.get(name)
        by_le: dict[float, float] = {}
        for key, value in sel.select(cur, name):
            le = dict(key).get("le")
            if le is None:
                continue
            try:
                bound = float(le)
            except ValueError:
                continue
            before = old.get(key)
            inc = value if before is None or value < before else value - before
            by_le[bound] = by_le.get(bound, 0.0) + inc
        if not by_le:
            return None
        assert self.q is not None
        result = bucket_quantile(self.q, list(by_le.items()))
        return None if math.isnan(result) else result


def _bucket_name(name: str) -> str:
    return name if name.endswith("_bucket") else name + "_bucket"


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's `bucketQuantile` (promql/quantile.go), step for step.

    `buckets` are (upper bound, cumulative count). Linear interpolation inside the bucket
    holding the rank; 0 is the lower bound of the lowest bucket if its bound is positive
    (otherwise that bound is returned); a rank in the +Inf bucket returns the second-highest
    bound. NaN when there is no +Inf bucket, fewer than 2 buckets or no observations.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not buckets:
        return math.nan
    b = sorted(buckets, key=lambda x: x[0])
    if not math.isinf(b[-1][0]) or b[-1][0] < 0:
        return math.nan
    # coalesceBuckets: merge equal upper bounds
    merged: list[list[float]] = []
    for bound, count in b:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    # correctPrecisionErrors(buckets, 1e-12)
    prev_count = merged[0][1]
    for i in range(1, len(merged)):
        curr = merged[i][1]
        delta = abs(curr - prev_count)
        if delta == 0:
            continue
        if curr != 0 and delta / curr <= 1e-12:
            merged[i][1] = prev_count
        else:
            prev_count = curr
    # ensureMonotonic
    top = merged[0][1]
    for i in range(1, len(merged)):
        if merged[i][1] > top:
            top = merged[i][1]
        elif merged[i][1] < top:
            merged[i][1] = top
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    # sort.Search(len-1, count >= rank): first index in [0, len-1) meeting it, else len-1
    idx = len(merged) - 1
    for i in range(len(merged) - 1):
        if merged[i][1] >= rank:
            idx = i
            break
    if idx == len(merged) - 1:
        return merged[-2][0]
    if idx == 0 and merged[0][0] <= 0:
        return merged[0][0]
    bucket_start = 0.0
    bucket_end = merged[idx][0]
    count = merged[idx][1]
    if idx > 0:
        bucket_start = merged[idx - 1][0]
        count -= merged[idx - 1][1]
        rank -= merged[idx - 1][1]
    return bucket_start + (bucket_end - bucket_start) * _ieee_div(rank, count)


def _ieee_div(a: float, b: float) -> float:
    """Division as Go does it on floats: x/0 is ±Inf, 0/0 is NaN (q=0 on an empty bucket)."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


# -- parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str, at: int | None = None, hint: str | None = None) -> ValueError:
        at = self.pos if at is None else at
        shown = self.text if len(self.text) <= 120 else self.text[:117] + "…"
        found = self.text[at : at + 12]
        where = f"at position {at + 1}" + (f" (found {found!r})" if found else " (at the end)")
        return ValueError(f"{what} {where} in {shown!r}" + (f"; {hint}" if hint else ""))

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self, s: str) -> bool:
        self.ws()
        return self.text.startswith(s, self.pos)

    def expect(self, s: str, what: str | None = None) -> None:
        if not self.peek(s):
            raise self.fail(f"expected {what or repr(s)}")
        self.pos += len(s)

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        self.ws()
        m = pattern.match(self.text, self.pos)
        if not m:
            raise self.fail(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def number(self) -> float:
        start = self.pos
        text = self.match(_NUMBER, "a number")
        value = float(text)
        if not math.isfinite(value):
            raise self.fail("expected a finite number", start)
        return value

    def string(self) -> str:
        self.ws()
        if self.pos >= len(self.text) or self.text[self.pos] not in "\"'":
            raise self.fail('expected a quoted value such as "200"')
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                nxt = self.text[self.pos + 1]
                out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
                self.pos += 2
                continue
            if ch == quote:
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.fail("unterminated string", start)

    def selector(self) -> Selector:
        self.ws()
        start = self.pos
        m = _METRIC_NAME.match(self.text, self.pos)
        if not m:
            if self.peek("{"):
                raise self.fail("a selector needs a metric name before '{'")
            raise self.fail("expected a metric name")
        name = m.group(0)
        self.pos = m.end()
        if self.peek("("):
            raise self.fail(f"unknown function {name!r}", start, _FORMS)
        matchers: list[Matcher] = []
        if self.peek("{"):
            self.pos += 1
            while not self.peek("}"):
                label = self.match(_LABEL_NAME, "a label name")
                self.ws()
                op = next((o for o in _OPS if self.text.startswith(o, self.pos)), None)
                if op is None:
                    raise self.fail("expected =, !=, =~ or !~")
                self.pos += len(op)
                value_at = self.pos
                value = self.string()
                regex = None
                if op in ("=~", "!~"):
                    try:
                        regex = re.compile(value)
                    except re.error as exc:
                        msg = f"bad regular expression {value!r} ({exc})"
                        raise self.fail(msg, value_at) from None
                matchers.append(Matcher(label, op, value, regex))
                if self.peek(","):
                    self.pos += 1
                elif not self.peek("}"):
                    raise self.fail("expected ',' or '}'")
            self.pos += 1
        if self.peek("["):
            raise self.fail(
                "a range selector such as [5m] is not used here",
                hint="rate(), ratio() and histogram_quantile() work over the time since the "
                "previous scrape",
            )
        return Selector(name, tuple(matchers))

    def parse(self) -> Expr:
        self.ws()
        if not self.text.strip():
            raise ValueError(f"empty expression; {_FORMS}")
        m = _METRIC_NAME.match(self.text, self.pos)
        word = m.group(0) if m else ""
        after = m.end() if m else self.pos
        is_call = m is not None and self.text[after:].lstrip().startswith("(")
        q: float | None = None
        sels: tuple[Selector, ...]
        if is_call:
            self.pos = after
            self.expect("(")
            if word == "rate":
                kind, sels = "rate", (self.selector(),)
            elif word == "ratio":
                a = self.selector()
                self.expect(",", "',' between the two selectors of ratio(a, b)")
                kind, sels = "ratio", (a, self.selector())
            elif word == "histogram_quantile":
                self.ws()
                q_at = self.pos
                q = self.number()
                if not 0 <= q <= 1:
                    raise self.fail("the quantile must be between 0 and 1 (0.95 is p95)", q_at)
                self.expect(",", "',' after the quantile")
                # PromQL habit: histogram_quantile(0.95, rate(x_bucket)) means the same here.
                inner_rate = False
                self.ws()
                if re.match(r"rate\s*\(", self.text[self.pos :]):
                    self.pos = self.text.index("(", self.pos) + 1
                    inner_rate = True
                kind, sels = "quantile", (self.selector(),)
                if inner_rate:
                    self.expect(")")
            else:
                raise self.fail(f"unknown function {word!r}", 0, _FORMS)
            self.expect(")")
        else:
            kind, sels = "value", (self.selector(),)
        scale = 1.0
        while True:
            self.ws()
            if self.pos >= len(self.text):
                break
            op = self.text[self.pos]
            if op not in "*/":
                raise self.fail("unexpected text", hint=_FORMS)
            self.pos += 1
            self.ws()
            num_at = self.pos
            k = self.number()
            if op == "/":
                if k == 0:
                    raise self.fail("division by zero", num_at)
                scale /= k
            else:
                scale *= k
        return Expr(self.text, kind, sels, q, scale)


def parse_expr(text: str) -> Expr:
    """Parse a metric expression; raises ValueError saying what was expected and where."""
    if not isinstance(text, str):
        raise ValueError(f"an expression must be a string; {_FORMS}")
    return _Parser(text).parse()


def sample_names(exprs: Iterable[Expr]) -> frozenset[str]:
    """Every sample name the expressions read (for `parse_scrape(keep=...)`)."""
    names: set[str] = set()
    for e in exprs:
        names |= e.sample_names()
    return frozenset(names)
