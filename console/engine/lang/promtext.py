"""A fast path for the Prometheus text format, exact to prometheus_client's parser or silent.

Why: prometheus_client's parser is pure Python and walks every line character by character
(`_next_unquoted_char`, `_split_quoted`); at 200 targets x 200 series every 5 s it was
most of a core. No maintained faster parser exists on PyPI, so this module parses the
lines that real exporters write — a legal metric name, labels as ``name="value"`` without
escapes or spaces, a number, an optional integer timestamp, single spaces — with two
precompiled regular expressions, and gives up (returns None) on the first line that is not
of that plain shape: an escape, a quoted name, a tab, an exemplar, an unknown ``TYPE``...
The caller then parses the whole text with prometheus_client, the reference. So a text is
either parsed here with exactly the reference's result — the same families (and with them
its renaming of counters to ``_total``), samples, labels and values — or by the reference
itself; `tests/engine/test_promtext.py` fuzzes the two against each other with Hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Callable

LabelKey = tuple[tuple[str, str], ...]
Family = tuple[str, str, list[tuple[str, LabelKey, float]]]
"""(family name, type, [(sample name, sorted labels, value)]) as the reference builds them."""

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN"
_SAMPLE = re.compile(
    rf"({_NAME})(?:\{{((?:{_LABEL}(?:,{_LABEL})*,?)?)\}})? +({_NUMBER})(?: +(?:{_NUMBER}))?")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"\\]*)"')
_LEGACY_NAME = re.compile(_NAME)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TYPES = frozenset({"counter", "gauge", "summary", "histogram", "gaugehistogram", "unknown",
                    "info", "stateset", "untyped"})
_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "summary": ("_count", "_sum", ""),
    "histogram": ("_count", "_sum", "_bucket"),
}


class _UnsureError(Exception):
    """A line outside the plain shape: the reference must parse the text."""


def _value(tok: str) -> float:
    v = float(tok)
    # The reference tries int() first, then float(): "-0" is then +0.0, not -0.0 (the only
    # difference: both round a long integer the same, correctly).
    if v == 0.0 and tok[0] == "-" and _INTEGER.fullmatch(tok):
        return 0.0
    return v


_LABEL_CACHE: dict[str, LabelKey] = {}
"""Label bodies seen before: a target's exposition repeats its label sets every scrape."""


def _labels(body: str | None) -> LabelKey:
    if not body:
        return ()
    got = _LABEL_CACHE.get(body)
    if got is not None:
        return got
    pairs = _PAIR.findall(body)
    names = [n for n, _ in pairs]
    if len(set(names)) != len(names) or any(n.startswith("__") for n in names):
        raise _UnsureError  # a duplicate or reserved label name: the reference decides (errors)
    got = tuple(sorted(pairs))
    if len(_LABEL_CACHE) >= 200_000:  # bounded: a churning exporter cannot grow it forever
        _LABEL_CACHE.clear()
    _LABEL_CACHE[body] = got
    return got


def fast_families(text: str, check: Callable[[], None] | None = None) -> list[Family] | None:
    """The families prometheus_client's text parser would build, or None when any line is
    not of the plain shape (the caller then uses the reference). `check` is called every
    4096 lines (a cancel flag may raise from it)."""
    try:
        return _parse(text, check)
    except _UnsureError:
        return None


def _parse(text: str, check: Callable[[], None] | None) -> list[Family]:
    out: list[Family] = []
    name = ""
    typ = "untyped"
    samples: list[tuple[str, LabelKey, float]] = []
    allowed: tuple[str, ...] = ()
    sample_re = _SAMPLE.fullmatch

    def build(fam: str, kind: str, got: list[tuple[str, LabelKey, float]]) -> Family:
        if kind == "counter":
            if fam.endswith("_total"):
                fam = fam[:-6]
            else:
                got = [(n + "_total", k, v) for n, k, v in got]
        return fam, ("unknown" if kind == "untyped" else kind), got

    for i, line in enumerate(text.splitlines()):
        if check is not None and not (i + 1) & 4095:
            check()
        line = line.strip()
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if "\t" in line or any('"' in p for p in parts[:3]):
                raise _UnsureError
            if len(parts) < 2:
                continue
            word = parts[1]
            if word not in ("TYPE", "HELP"):
                continue  # a comment
            if len(parts) < 3:
                raise _UnsureError  # "# TYPE" alone and the like: the reference's own business
            cand = parts[2]
            if not _LEGACY_NAME.fullmatch(cand):
                raise _UnsureError
            if word == "HELP":
                if cand != name:
                    if name:
                        out.append(build(name, typ, samples))
                    name, typ, samples, allowed = cand, "untyped", [], (cand,)
            else:
                if len(parts) < 4 or parts[3] not in _TYPES:
                    raise _UnsureError
                if cand != name:
                    if name:
                        out.append(build(name, typ, samples))
                    name, samples = cand, []
                typ = parts[3]
                allowed = tuple(name + s for s in _SUFFIXES.get(typ, ("",)))
            continue
        if "\t" in line:
            raise _UnsureError
        m = sample_re(line)
        if m is None:
            raise _UnsureError
        sname, body, tok = m.group(1, 2, 3)
        sample = (sname, _labels(body), _value(tok))
        if sname in allowed:
            samples.append(sample)
        else:
            if name:
                out.append(build(name, typ, samples))
            name, typ, samples, allowed = "", "untyped", [], ()
            out.append(build(sname, "untyped", [sample]))
    if name:
        out.append(build(name, typ, samples))
    return out
