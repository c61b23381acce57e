"""promexpr: expression parsing, selectors, rates across resets, and Prometheus-exact quantiles.

Quantiles are checked against hand computations of Prometheus's `bucketQuantile`
(promql/quantile.go), and end to end against a prometheus_client Histogram with known
observations served by a real local aiohttp server.
"""

from __future__ import annotations

import math
import re
import threading
import time

import aiohttp
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from console.engine.lang.promexpr import (
    Scrape,
    ScrapeCancelledError,
    bucket_quantile,
    parse_expr,
    parse_scrape,
)


def scrape(text: str, at: float) -> Scrape:
    return parse_scrape(text, at=at)


# -- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "names", "q", "scale"),
    [
        ("up", "value", ["up"], None, 1.0),
        ("rate(http_requests_total)", "rate", ["http_requests_total"], None, 1.0),
        ('ratio(a{status=~"5.."}, a) * 100', "ratio", ["a", "a"], None, 100.0),
        ("histogram_quantile(0.95, lat_seconds) * 1000", "quantile", ["lat_seconds"], 0.95,
         1000.0),
        ("histogram_quantile(0.5, rate(lat_seconds_bucket))", "quantile", ["lat_seconds_bucket"],
         0.5, 1.0),
        ("  x{a='b',} / 4 * 2  ", "value", ["x"], None, 0.5),
        ("process_resident_memory_bytes / 1e6", "value", ["process_resident_memory_bytes"],
         None, 1e-6),
    ],
)
def test_parse_forms(text: str, kind: str, names: list[str], q: float | None,
                     scale: float) -> None:
    e = parse_expr(text)
    assert e.kind == kind
    assert [s.name for s in e.selectors] == names
    assert e.q == q
    assert e.scale == pytest.approx(scale)


def test_parse_matchers() -> None:
    e = parse_expr(r'x{a="1", b!="2", c=~"3|4", d!~"5.*", e="q\"uote"}')
    ms = e.selectors[0].matchers
    assert [(m.label, m.op, m.value) for m in ms] == [
        ("a", "=", "1"), ("b", "!=", "2"), ("c", "=~", "3|4"), ("d", "!~", "5.*"),
        ("e", "=", 'q"uote'),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty expression"),
        ("rate(", "expected a metric name"),
        ("rate(x", "expected ')'"),
        ("rate(x[5m])", "range selector such as [5m]"),
        ("sum(rate(x))", "unknown function 'sum'"),
        ('x{a="b}', "unterminated string"),
        ('x{a=~"("}', "bad regular expression"),
        ('x{a~"b"}', "expected =, !=, =~ or !~"),
        ('x{a="b" c="d"}', "expected ',' or '}'"),
        ("x{a=b}", "expected a quoted value"),
        ("histogram_quantile(1.5, x)", "between 0 and 1"),
        ("histogram_quantile(x, y)", "expected a number"),
        ("x / 0", "division by zero"),
        ("x + 1", "unexpected text"),
        ("x * ", "expected a number"),
        ('{a="b"}', "needs a metric name"),
        ("ratio(a)", "between the two selectors"),
        ("9lives", "expected a metric name"),
    ],
)
def test_parse_errors_are_readable(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)) as info:
        parse_expr(text)
    msg = str(info.value)
    if text.strip():
        assert "position" in msg  # says where...
        assert repr(text) in msg  # ...and in what


# -- selectors and values ----------------------------------------------------------------

EXPO = """\
# TYPE http_requests_total counter
http_requests_total{method="GET",status="200"} 10
http_requests_total{method="GET",status="500"} 2
http_requests_total{method="POST",status="201"} 5
http_requests_total{method="POST",status="503"} 1
# TYPE temp gauge
temp{room="a"} 20.5
temp{room="b",floor=""} 19.5
# TYPE legacy counter
legacy 7
"""


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("http_requests_total", 18.0),
        ('http_requests_total{method="GET"}', 12.0),
        ('http_requests_total{method!="GET"}', 6.0),
        ('http_requests_total{status=~"5.."}', 3.0),
        ('http_requests_total{status!~"5.."}', 15.0),
        ('http_requests_total{status=~"5"}', None),  # anchored: "5" does not match "500"
        ('temp{floor=""}', 40.0),  # a missing label equals ""
        ('temp{room="a"} * 2', 41.0),
        ("legacy", 7.0),  # the parser renames a counter without _total; still found
        ("nothing_here", None),
    ],
)
def test_selector_values(text: str, value: float | None) -> None:
    got = parse_expr(text).evaluate(scrape(EXPO, 0.0), None)
    assert got == (None if value is None else pytest.approx(value))


def test_rate_handles_counter_reset_and_new_series() -> None:
    prev = scrape('c_total{a="1"} 100\nc_total{a="2"} 50\n', 10.0)
    # a=1 grew by 30; a=2 restarted (reset) and is now 20; a=3 is new with 5.
    cur = scrape('c_total{a="1"} 130\nc_total{a="2"} 20\nc_total{a="3"} 5\n', 20.0)
    e = parse_expr("rate(c_total)")
    assert e.evaluate(cur, prev) == pytest.approx((30 + 20 + 5) / 10)
    assert parse_expr('rate(c_total{a="2"})').evaluate(cur, prev) == pytest.approx(2.0)
    assert e.evaluate(cur, None) is None  # a rate needs two scrapes
    assert e.evaluate(cur, scrape('c_total{a="1"} 1\n', 20.0)) is None  # Δt == 0
    assert parse_expr("rate(missing)").evaluate(cur, prev) is None
    # No change is a real zero, not "no data".
    flat = 'c_total{a="1"} 100\n'
    assert e.evaluate(scrape(flat, 12.0), scrape(flat, 10.0)) == 0.0


def test_ratio() -> None:
    prev = scrape(EXPO, 0.0)
    cur = scrape(EXPO.replace('status="200"} 10', 'status="200"} 46')
                 .replace('status="500"} 2', 'status="500"} 6'), 2.0)
    e = parse_expr('ratio(http_requests_total{status=~"5.."}, http_requests_total) * 100')
    assert e.evaluate(cur, prev) == pytest.approx(4 / 40 * 100)
    assert e.evaluate(prev, prev) is None  # no requests in between: 0/0 is no data
    # A numerator series that does not exist yet counts as no errors.
    only_ok = parse_expr('ratio(http_requests_total{status="418"}, http_requests_total)')
    assert only_ok.evaluate(cur, prev) == 0.0


# -- histogram_quantile ------------------------------------------------------------------


def buckets_text(counts: dict[str, float], labels: str = "") -> str:
    sep = "," if labels else ""
    return "".join(f'h_bucket{{{labels}{sep}le="{le}"}} {c}\n' for le, c in counts.items())


# Interval deltas: le 0.1: 20, 0.2: 70, 0.5: 95, 1.0: 99, +Inf: 100 (cumulative).
PREV = {"0.1": 10, "0.2": 10, "0.5": 10, "1.0": 10, "+Inf": 10}
CUR = {"0.1": 30, "0.2": 80, "0.5": 105, "1.0": 109, "+Inf": 110}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # rank = q * 100; bucket b = first with count >= rank;
        # start + (end - start) * (rank - count_below) / (count_in_bucket)
        (0.0, 0.0),                                  # lowest bucket starts at 0
        (0.1, 0.0 + 0.1 * (10 / 20)),                # 0.05
        (0.5, 0.1 + 0.1 * ((50 - 20) / 50)),         # 0.16
        (0.95, 0.2 + 0.3 * ((95 - 70) / 25)),        # 0.5
        (0.99, 0.5 + 0.5 * ((99 - 95) / 4)),         # 1.0
        (0.995, 1.0),                                # rank 99.5 is in +Inf: 2nd-highest bound
        (1.0, 1.0),
    ],
)
def test_histogram_quantile_matches_prometheus_by_hand(q: float, expected: float) -> None:
    e = parse_expr(f"histogram_quantile({q}, h)")
    got = e.evaluate(scrape(buckets_text(CUR), 2.0), scrape(buckets_text(PREV), 0.0))
    assert got == pytest.approx(expected)


def test_histogram_quantile_sums_series_and_handles_resets() -> None:
    prev = buckets_text({"1": 0, "2": 0, "+Inf": 0}, 'route="a"') + buckets_text(
        {"1": 50, "2": 80, "+Inf": 90}, 'route="b"'
    )
    # route b restarted: its counts start from zero again.
    cur = buckets_text({"1": 10, "2": 10, "+Inf": 10}, 'route="a"') + buckets_text(
        {"1": 0, "2": 10, "+Inf": 10}, 'route="b"'
    )
    # Summed deltas: le 1: 10, le 2: 20, +Inf: 20. q=0.75 → rank 15 → 1 + 1 * (5/10).
    e = parse_expr("histogram_quantile(0.75, h_bucket)")
    assert e.evaluate(scrape(cur, 1.0), scrape(prev, 0.0)) == pytest.approx(1.5)
    only_a = parse_expr('histogram_quantile(0.5, h{route="a"})')
    assert only_a.evaluate(scrape(cur, 1.0), scrape(prev, 0.0)) == pytest.approx(0.5)


def test_histogram_quantile_no_data_cases() -> None:
    e = parse_expr("histogram_quantile(0.5, h)")
    same = scrape(buckets_text(PREV), 0.0)
    assert e.evaluate(scrape(buckets_text(PREV), 1.0), same) is None  # no observations
    assert e.evaluate(same, None) is None  # no previous scrape
    no_inf = {"0.1": 5, "0.2": 9}
    assert e.evaluate(scrape(buckets_text(no_inf), 1.0), scrape("", 0.0)) is None
    assert e.evaluate(scrape("other 1\n", 1.0), scrape("", 0.0)) is None


def test_bucket_quantile_edge_rules() -> None:
    # Lowest bucket with a bound <= 0: that bound is returned, no interpolation from 0.
    assert bucket_quantile(0.2, [(-1.0, 5.0), (0.0, 10.0), (math.inf, 10.0)]) == -1.0
    # Unsorted input and duplicated bounds are sorted and merged (coalesceBuckets).
    assert bucket_quantile(
        0.5, [(math.inf, 6.0), (1.0, 1.0), (2.0, 3.0), (1.0, 1.0), (math.inf, 4.0)]
    ) == pytest.approx(bucket_quantile(0.5, [(1.0, 2.0), (2.0, 3.0), (math.inf, 10.0)]))
    # Non-monotonic counts are forced monotonic (ensureMonotonic).
    assert bucket_quantile(0.5, [(1.0, 10.0), (2.0, 5.0), (math.inf, 10.0)]) == pytest.approx(0.5)
    assert math.isnan(bucket_quantile(0.5, [(math.inf, 3.0)]))  # fewer than 2 buckets
    assert math.isnan(bucket_quantile(0.5, [(1.0, 3.0), (2.0, 3.0)]))  # no +Inf
    assert bucket_quantile(-0.1, [(1.0, 1.0), (math.inf, 1.0)]) == -math.inf
    assert bucket_quantile(1.1, [(1.0, 1.0), (math.inf, 1.0)]) == math.inf


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=8),
    st.floats(0, 1),
)
def test_bucket_quantile_lies_in_the_rank_bucket(increments: list[int], q: float) -> None:
    bounds = [0.01 * 2**i for i in range(len(increments))]
    cum: list[float] = []
    total = 0
    for inc in increments:
        total += inc
        cum.append(float(total))
    buckets = [*zip(bounds, cum, strict=True), (math.inf, float(total) + 3)]
    got = bucket_quantile(q, buckets)
    if total + 3 == 0:
        assert math.isnan(got)
        return
    rank = q * (total + 3)
    idx = next((i for i, c in enumerate(cum) if c >= rank), None)
    if idx is None:
        assert got == bounds[-1]  # rank in the +Inf bucket
    elif math.isnan(got):
        # Go's 0/0: the rank bucket is empty (only possible at rank 0), as in Prometheus.
        assert cum[idx] - (cum[idx - 1] if idx else 0.0) == 0
        assert rank == 0
    else:
        low = 0.0 if idx == 0 else bounds[idx - 1]
        assert low - 1e-12 <= got <= bounds[idx] + 1e-12


async def test_histogram_quantile_end_to_end_from_prometheus_client() -> None:
    """A real Histogram, served over HTTP by aiohttp, scraped twice."""
    registry = CollectorRegistry()
    hist = Histogram("lat_seconds", "latency", ("route",), buckets=(0.1, 0.2, 0.5, 1.0),
                     registry=registry)
    reqs = Counter("reqs", "requests", ("status",), registry=registry)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site.port}/metrics"
    try:
        async with aiohttp.ClientSession() as session:

            async def fetch() -> Scrape:
                async with session.get(url) as r:
                    text = await r.text()
                return parse_scrape(text, at=time.monotonic())

            for v in [0.05] * 10:
                hist.labels("a").observe(v)
            reqs.labels("200").inc(10)
            first = await fetch()
            for v, n in ((0.05, 20), (0.15, 50), (0.3, 25), (0.7, 4), (2.0, 1)):
                for _ in range(n):
                    hist.labels("a" if n % 2 else "b").observe(v)
            reqs.labels("200").inc(97)
            reqs.labels("500").inc(3)
            second = await fetch()
    finally:
        await runner.cleanup()

    def q(x: float) -> float | None:
        return parse_expr(f"histogram_quantile({x}, lat_seconds) * 1000").evaluate(second, first)

    assert q(0.5) == pytest.approx(160.0)   # 0.1 + 0.1 * 30/50 s
    assert q(0.95) == pytest.approx(500.0)  # 0.2 + 0.3 * 25/25 s
    assert q(0.99) == pytest.approx(1000.0)
    assert q(0.999) == pytest.approx(1000.0)
    err = parse_expr('ratio(reqs_total{status=~"5.."}, reqs_total) * 100')
    assert err.evaluate(second, first) == pytest.approx(3.0)
    rate = parse_expr("rate(reqs_total)").evaluate(second, first)
    assert rate == pytest.approx(100 / (second.at - first.at))
    avg = parse_expr("ratio(lat_seconds_sum, lat_seconds_count)").evaluate(second, first)
    assert avg == pytest.approx((0.05 * 20 + 0.15 * 50 + 0.3 * 25 + 0.7 * 4 + 2.0) / 100)


# -- scrapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "<!doctype html><html><body>Login</body></html>\n",
        '{"status": "ok"}\n',
        'x_total{method="GET" 12\n',
        "x_total abc\n",
        "just some words\n",
    ],
)
def test_parse_scrape_rejects_what_is_not_the_format(body: str) -> None:
    with pytest.raises(ValueError, match="not the Prometheus text format"):
        parse_scrape(body, at=0.0)


def test_a_malformed_line_is_named_by_its_number() -> None:
    """A walk's `this is { not valid` read "could not convert string to float: '{'"."""
    body = "# HELP a x\n# TYPE a gauge\na 1\nthis is { not valid\nb 2\n"
    with pytest.raises(ValueError, match=r"^not the Prometheus text format: .* \(line 4\)$"):
        parse_scrape(body, at=0.0)


def test_parse_scrape_keeps_only_what_is_needed_but_counts_everything() -> None:
    s = parse_scrape(EXPO, at=1.0, keep={"temp"}.__contains__)
    assert set(s.samples) == {"temp"}
    assert s.series == 7
    assert s.at == 1.0


def test_parse_scrape_openmetrics() -> None:
    text = "# TYPE a counter\na_total 3\n# TYPE g gauge\ng 1.5\n# EOF\n"
    s = parse_scrape(text, at=0.0, openmetrics=True)
    assert parse_expr("a_total").evaluate(s, None) == 3.0
    assert parse_expr("g").evaluate(s, None) == 1.5
    with pytest.raises(ValueError, match="EOF"):
        parse_scrape(text.replace("# EOF\n", ""), at=0.0, openmetrics=True)


def test_parse_scrape_stops_when_cancelled() -> None:
    text = "".join(f'x{{i="{i}"}} {i}\n' for i in range(50_000))
    flag = threading.Event()
    flag.set()
    t0 = time.perf_counter()
    with pytest.raises(ScrapeCancelledError):
        parse_scrape(text, at=0.0, cancel=flag)
    assert time.perf_counter() - t0 < 0.5  # stopped within the first few thousand lines
