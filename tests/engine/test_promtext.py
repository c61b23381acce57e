"""The fast text-format path against prometheus_client, the reference: on any text it either
gives up or yields exactly the reference's families, samples, labels and values."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from console.engine.lang.promexpr import parse_scrape
from console.engine.lang.promtext import Family, fast_families


def reference(text: str) -> list[Family] | None:
    """prometheus_client's families in the fast path's shape; None if it rejects the text."""
    try:
        out: list[Family] = []
        for fam in text_string_to_metric_families(text):
            out.append((fam.name, fam.type, [
                (s.name, tuple(sorted(s.labels.items())), float(s.value))
                for s in fam.samples]))
        return out
    except Exception:  # noqa: BLE001 - any rejection counts as "not the format"
        return None


def same(a: list[Family], b: list[Family]) -> bool:
    if len(a) != len(b):
        return False
    for (n1, t1, s1), (n2, t2, s2) in zip(a, b, strict=True):
        if (n1, t1, len(s1)) != (n2, t2, len(s2)):
            return False
        for (m1, k1, v1), (m2, k2, v2) in zip(s1, s2, strict=True):
            if (m1, k1) != (m2, k2):
                return False
            if not (v1 == v2 and math.copysign(1, v1) == math.copysign(1, v2)
                    or (math.isnan(v1) and math.isnan(v2))):
                return False
    return True


def check(text: str) -> bool:
    """The property: fast is None, or the reference accepts the text and agrees."""
    fast = fast_families(text)
    if fast is None:
        return False
    ref = reference(text)
    assert ref is not None, f"fast path accepted what the reference rejects: {text!r}"
    assert same(fast, ref), f"{text!r}:\nfast {fast}\nref  {ref}"
    return True


CORPUS = [
    # plain exporter output (must take the fast path)
    "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n"
    'http_requests_total{method="get",code="200"} 1027 1395066363000\n'
    'http_requests_total{method="post",code="400"} 3 1395066363000\n',
    "# TYPE rpc_duration_seconds summary\n"
    'rpc_duration_seconds{quantile="0.5"} 4773\nrpc_duration_seconds_sum 1.7560473e+07\n'
    "rpc_duration_seconds_count 2693\n",
    "# TYPE lat histogram\n"
    'lat_bucket{le="0.1"} 3\nlat_bucket{le="+Inf"} 9\nlat_sum 1.5\nlat_count 9\n',
    "# TYPE up gauge\nup 1\nup -0\nnan_metric NaN\ninf_metric +Inf\nneg -Inf\n",
    "# TYPE foo counter\nfoo 5\n",  # counter without _total: renamed by the reference
    "# TYPE foo counter\nfoo_total 5\n",  # not an allowed name: an untyped singleton
    "# HELP a doc with \"quotes\" and \\ backslash\n# TYPE a gauge\na 1\n",
    "# a comment\n#\n\n  spaced 2  \nx{a=\"1\",} 3\nx{} 4\n",
    'weird{path="/a{b}c",q="#x"} 7\n',
    "# TYPE g gauge\ng 1\nother 2\ng 3\n",
    "big 123456789012345678901234567890\nsmall 1e-300\n",
    "hexlike 0x10\n",
    # outside the plain shape: escapes, tabs, exemplars, OpenMetrics, UTF-8 names, errors
    'esc{a="x\\"y",b="line\\nbreak",c="back\\\\slash"} 1\n',
    "tab\t1\n",
    'ex{a="b"} 1 # {trace_id="abc"} 0.5 123\n',
    "# TYPE om counter\n# UNIT om seconds\nom_total 1\nom_created 123\n# EOF\n",
    '{"utf8.name"} 1\n',
    '{__name__="viaLabel",a="b"} 1\n',
    "# TYPE bad bogus\nbad 1\n",
    "noval\n",
    "und_score 1_000\n",
    'dup{a="1",a="2"} 1\n',
    'res{__x="1"} 1\n',
    "sp{a=\"1\", b=\"2\"} 1\n",
    "ts 1 2 3\n",
    "# TYPE\n",
    "# HELP\n",
]


@pytest.mark.parametrize("text", CORPUS)
def test_corpus_matches_the_reference_or_falls_back(text: str) -> None:
    check(text)


def test_plain_exporter_output_takes_the_fast_path() -> None:
    assert all(check(t) for t in CORPUS[:11])


def test_parse_scrape_is_the_same_either_way() -> None:
    text = CORPUS[0] + CORPUS[1] + CORPUS[2] + CORPUS[4] + CORPUS[5]
    fast = parse_scrape(text, at=0.0)
    slow = parse_scrape(text + 'esc{a="x\\"y"} 1\n', at=0.0)  # forces the reference
    slow.samples.pop("esc")
    assert fast.samples == slow.samples
    assert fast.series + 1 == slow.series
    assert fast.get("foo") == fast.get("foo_total") == {(): 5.0}


NAMES = st.sampled_from(["a", "b_total", "c_count", "c_sum", "c_bucket", "c", "d:e", "_f",
                         "x1", "B_total", "a_total", "bad-name", "9z", "é"])
TYPES = st.sampled_from(["counter", "gauge", "summary", "histogram", "untyped", "unknown",
                         "info", "stateset", "gaugehistogram", "bogus"])
LABEL_NAMES = st.sampled_from(["le", "quantile", "code", "a", "__x", "b c", "é"])
LABEL_VALUES = st.sampled_from(["", "0.5", "+Inf", "x y", "a,b", "{}", "#", 'q"', "b\\s",
                                "\\n", "é", "=", "}"])
VALUES = st.sampled_from(["1", "0", "-0", "+0", "3.5", "-2.25e3", "1e-9", ".5", "5.",
                          "NaN", "+Inf", "-Inf", "Inf", "nan", "inf", "1_0", "0x1f",
                          "123456789012345678901", "", "abc", "1.0.0"])
TIMESTAMPS = st.sampled_from(["", " 1395066363000", " -1", " 1.5", " x", "  7"])
SPACES = st.sampled_from([" ", "  ", "\t", ""])


@st.composite
def sample_line(draw: st.DrawFn) -> str:
    name = draw(NAMES)
    labels = draw(st.lists(st.tuples(LABEL_NAMES, LABEL_VALUES), max_size=3))
    body = ""
    if labels or draw(st.booleans()):
        sep = draw(st.sampled_from([",", ", "]))
        body = "{" + sep.join(f'{k}="{v}"' for k, v in labels) + \
            draw(st.sampled_from(["", ","])) + "}"
    exemplar = draw(st.sampled_from(["", ' # {trace_id="t"} 1']))
    return f"{name}{body}{draw(SPACES)}{draw(VALUES)}{draw(TIMESTAMPS)}{exemplar}"


@st.composite
def comment_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["HELP", "TYPE", "UNIT", "other"]))
    name = draw(NAMES)
    if kind == "HELP":
        doc = draw(st.sampled_from(["doc", 'a "q"', "", "x\\y"]))
        return f"# HELP {name} {doc}"
    if kind == "TYPE":
        return f"# TYPE {name} {draw(TYPES)}"
    if kind == "UNIT":
        return f"# UNIT {name} seconds"
    return draw(st.sampled_from(["# just words", "#", "# EOF", "#x"]))


TEXTS = st.lists(st.one_of(sample_line(), comment_line(), st.just("")), max_size=12).map(
    lambda lines: "\n".join(lines) + "\n")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
@example("# TYPE a counter\na 1\na_total 2\n")
def test_fuzz_fast_path_against_prometheus_client(text: str) -> None:
    check(text)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab_{}="\\,# \t\n.0123+-eINf')), max_size=60))
def test_fuzz_arbitrary_text(text: str) -> None:
    check(text)


def test_the_fast_path_stops_when_its_caller_gives_up() -> None:
    text = "".join(f'm{{i="{i}"}} {i}\n' for i in range(20_000))
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise TimeoutError  # what a cancel flag's check raises, here a stand-in type

    with pytest.raises(TimeoutError):
        fast_families(text, check)
    assert len(calls) == 2  # every 4096 lines: stopped after ~8k of 20k
