"""MetricStore: exact answers from raw samples, honest ones from rollups, flat memory, durable."""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from console.engine.storage.store import MetricStore, _shuffle, _unshuffle

T0 = 1_699_999_200.0  # a multiple of 3600: bucket edges fall on round offsets from T0
DAY = 86_400
PER_SERIES_BYTES = 3600 * 16 + (361 + 1441 + 169) * 9 * 4  # raw + rollup rows (float32)


def feed(store: MetricStore, name: str, ts: np.ndarray, vs: np.ndarray, chunk: int = 3600) -> None:
    for i in range(0, len(ts), chunk):
        store.record_many(name, ts[i : i + chunk], vs[i : i + chunk])


def one_hz(start: float, seconds: int) -> np.ndarray:
    return start + np.arange(seconds, dtype=np.float64)


# --------------------------------------------------------------------------- raw tier


def test_latest_and_values_window_edges() -> None:
    store = MetricStore()
    assert store.latest("cpu") is None
    assert not store.has("cpu")
    for i in range(11):
        store.record("cpu", T0 + i, float(i))
    assert store.has("cpu")
    assert store.series() == ["cpu"]
    assert store.latest("cpu") == (T0 + 10, 10.0)
    # The window is (now - window, now]: the left edge is excluded, the right included.
    t, v = store.values("cpu", 5, now=T0 + 10)
    assert t.tolist() == [T0 + i for i in range(6, 11)]
    assert v.tolist() == [6.0, 7.0, 8.0, 9.0, 10.0]
    t, v = store.values("cpu", 4.5, now=T0 + 7.5)
    assert v.tolist() == [4.0, 5.0, 6.0, 7.0]
    # A window in the past and a window after the data.
    assert store.values("cpu", 2, now=T0 + 1)[1].tolist() == [0.0, 1.0]
    assert len(store.values("cpu", 3, now=T0 + 100)[0]) == 0
    # Returned arrays are copies: changing them changes nothing in the store.
    v[:] = -1
    assert store.values("cpu", 4.5, now=T0 + 7.5)[1].tolist() == [4.0, 5.0, 6.0, 7.0]


def test_now_defaults_to_the_newest_timestamp_in_the_whole_store() -> None:
    store = MetricStore()
    for i in range(100):
        store.record("fresh", T0 + i, 1.0)
    for i in range(10):
        store.record("stale", T0 + i, 2.0)
    # 'now' is T0+99 (the store's clock), so a 30 s window holds nothing of 'stale'.
    assert len(store.values("stale", 30)[0]) == 0
    assert store.mean("stale", 30) is None
    assert store.mean("stale", 100) == 2.0
    assert len(store.values("fresh", 30)[0]) == 30


def test_ring_keeps_only_the_newest_raw_samples() -> None:
    store = MetricStore(raw_capacity=50)
    for i in range(120):
        store.record("x", T0 + i, float(i))
    t, v = store.values("x", 1000)
    assert len(t) == 50
    assert v.tolist() == [float(i) for i in range(70, 120)]


def test_a_row_drops_only_the_samples_older_than_their_series() -> None:
    store = MetricStore()
    store.record("a", T0 + 10, 1.0)
    store.record_row(T0 + 5, (("a", 2.0), ("b", 3.0)))  # late for a, first for b
    assert store.latest("a") == (T0 + 10, 1.0)
    assert store.latest("b") == (T0 + 5, 3.0)
    assert store.dropped == 1
    store.record_row(math.inf, (("a", 1.0), ("b", 1.0)))
    assert store.dropped == 3


def test_out_of_order_and_non_finite_samples() -> None:
    store = MetricStore()
    store.record("x", T0 + 10, 1.0)
    store.record("x", T0 + 5, 2.0)  # older than the latest: refused
    store.record("x", math.nan, 3.0)  # no time: refused
    store.record("x", T0 + 11, math.inf)  # a non-finite value means no data
    assert store.dropped == 2
    t, v = store.values("x", 100)
    assert t.tolist() == [T0 + 10, T0 + 11]
    assert v[0] == 1.0
    assert math.isnan(v[1])
    store.record_many("x", np.array([T0 + 3, T0 + 12, T0 + 13]), np.array([9.0, 4.0, 5.0]))
    assert store.dropped == 3
    assert store.values("x", 100)[1][2:].tolist() == [4.0, 5.0]


def test_nan_means_no_data_everywhere() -> None:
    store = MetricStore()
    vals = [1.0, math.nan, 3.0, math.nan, 5.0]
    for i, x in enumerate(vals):
        store.record("x", T0 + i, x)
    assert store.mean("x", 60) == 3.0
    assert store.quantiles("x", 60, qs=(0.5,)) == {0.5: 3.0}
    store.record("x", T0 + 5, math.nan)
    latest = store.latest("x")
    assert latest is not None
    assert latest[0] == T0 + 5
    assert math.isnan(latest[1])
    # A window of NaN only has no answer at all.
    for i in range(6, 20):
        store.record("x", T0 + i, math.nan)
    assert store.mean("x", 10) is None
    assert store.uptime("x", 10) is None
    assert store.quantiles("x", 10) is None
    assert store.rate("x", 10) is None
    assert np.isnan(store.sparkline("x", 1, 5)).all()


# --------------------------------------------------------------------------- answers


def test_rate_counts_resets_like_prometheus() -> None:
    store = MetricStore()
    # 10 -> 20 -> 30, reset to 5, -> 15 -> 25: increases 10 + 10 + 5 + 10 + 10 = 45 in 5 s.
    for i, x in enumerate([10.0, 20.0, 30.0, 5.0, 15.0, 25.0]):
        store.record("req", T0 + i, x)
    assert store.rate("req", 60) == pytest.approx(45 / 5, rel=1e-12)
    # Only samples with t > now - 3 count: 5, 15, 25 -> 20 in 2 s.
    assert store.rate("req", 3) == pytest.approx(10.0, rel=1e-12)
    # A missed scrape (NaN) is skipped, not treated as a reset.
    store.record("req", T0 + 6, math.nan)
    store.record("req", T0 + 7, 45.0)
    assert store.rate("req", 60) == pytest.approx((45 + 20) / 7, rel=1e-12)
    # One sample has no rate.
    store.record("one", T0, 1.0)
    assert store.rate("one", 60) is None


def test_uptime_percent() -> None:
    store = MetricStore()
    ups = [1, 1, 0, 1, math.nan, 1, 1, 0, 1, 1]
    for i, x in enumerate(ups):
        store.record("up", T0 + i, float(x))
    assert store.uptime("up", 60) == pytest.approx(100 * 7 / 9)
    # Over the last 3 s: 0, 1, 1 -> two thirds up.
    assert store.uptime("up", 3) == pytest.approx(100 * 2 / 3)
    # The threshold is >= 0.5.
    store.record("half", T0, 0.5)
    store.record("half", T0 + 1, 0.49)
    assert store.uptime("half", 60) == 50.0


def test_quantiles_are_exact_within_raw_retention() -> None:
    rng = np.random.default_rng(7)
    store = MetricStore()
    n = 3000
    ts = one_hz(T0, n)
    vs = rng.lognormal(3, 1, n)
    vs[rng.random(n) < 0.05] = np.nan
    feed(store, "lat", ts, vs, chunk=700)
    qs = (0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
    for window in (10, 299, 300, 2999, 3000):
        got = store.quantiles("lat", window, qs=qs)
        assert got is not None
        sel = vs[ts > ts[-1] - window]
        want = np.percentile(sel[~np.isnan(sel)], [q * 100 for q in qs])
        np.testing.assert_allclose([got[q] for q in qs], want, rtol=1e-12)


def test_beyond_raw_mean_and_uptime_are_exact_over_whole_buckets() -> None:
    rng = np.random.default_rng(3)
    store = MetricStore()
    ts = one_hz(T0, 2 * DAY)
    vs = rng.normal(50, 10, len(ts))
    ups = (rng.random(len(ts)) < 0.97).astype(float)
    vs[rng.random(len(ts)) < 0.02] = np.nan
    feed(store, "v", ts, vs)
    feed(store, "up", ts, ups)
    now = float(ts[-1])
    # Past the raw hour: 1 min rows (the 10 s tier keeps an hour too), then 1 h rows.
    for window, width in ((6630, 60.0), (6 * 3600, 60.0), (DAY, 60.0),
                          (1.5 * DAY, 3600.0)):
        # Rollups count the buckets that lie wholly inside the window.
        start = math.ceil((now - window) / width) * width
        sel = vs[ts >= start]
        assert store.mean("v", window) == pytest.approx(np.nanmean(sel), rel=1e-6)
        up = ups[ts >= start]
        assert store.uptime("up", window) == pytest.approx(100 * up.mean(), rel=1e-9)


def test_beyond_raw_rate_of_a_steady_counter_with_a_reset() -> None:
    store = MetricStore()
    ts = one_hz(T0, DAY + 7200)
    counter = 5.0 * np.arange(len(ts))
    counter[50_000:] -= counter[50_000] - 3.0  # the process restarted: counter back to 3
    feed(store, "c", ts, counter)
    got = store.rate("c", DAY)
    assert got is not None
    assert got == pytest.approx(5.0, rel=0.01)


def test_beyond_raw_quantiles_match_when_buckets_share_a_distribution() -> None:
    rng = np.random.default_rng(11)
    store = MetricStore()
    minute = rng.normal(100, 15, 60)
    vs = np.tile(minute, 26 * 60)  # every 1-min bucket holds the very same 60 values
    ts = one_hz(T0, len(vs))
    feed(store, "x", ts, vs)
    got = store.quantiles("x", DAY)
    assert got is not None
    want = np.percentile(minute, [50, 95, 99])
    np.testing.assert_allclose([got[0.5], got[0.95], got[0.99]], want, rtol=1e-5)


def test_beyond_raw_quantiles_stay_close_on_noisy_data() -> None:
    rng = np.random.default_rng(5)
    store = MetricStore()
    ts = one_hz(T0, DAY + 3600)
    vs = rng.normal(200, 20, len(ts)) + 30 * np.sin(ts / 1800)
    feed(store, "x", ts, vs)
    now = float(ts[-1])
    got = store.quantiles("x", DAY)
    assert got is not None
    sel = vs[ts > now - DAY]
    want = np.percentile(sel, [50, 95, 99])
    # Approximate by design (documented); a few percent on smooth data.
    np.testing.assert_allclose([got[0.5], got[0.95], got[0.99]], want, rtol=0.03)
    for q in got.values():
        assert sel.min() <= q <= sel.max()


# --------------------------------------------------------------------------- charts


@pytest.fixture(scope="module")
def day_store() -> tuple[MetricStore, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    store = MetricStore()
    ts = one_hz(T0, DAY + 3600)
    vs = rng.gamma(4, 10, len(ts))
    feed(store, "lat", ts, vs)
    return store, ts, vs


def test_history_picks_the_finest_data_that_holds_the_span(day_store) -> None:
    store, ts, _ = day_store
    assert store.tier_width("lat", 300) == 0.0  # 5 min: raw samples
    assert store.tier_width("lat", 3600) == 0.0  # 1 h: exactly what the raw ring holds
    assert store.tier_width("lat", 3601) == 10.0  # just beyond raw: 40 s points of 10 s rows
    assert store.tier_width("lat", 6 * 3600) == 60.0  # 180 s points, filled from 1 min rows
    assert store.tier_width("lat", DAY) == 60.0  # 24 h: the 1 min tier
    assert store.tier_width("lat", 2 * DAY) == 3600.0  # beyond 24 h: the 1 h tier
    assert store.tier_width("nope", DAY) == 0.0


def test_history_from_raw_is_exact(day_store) -> None:
    store, ts, vs = day_store
    now = float(ts[-1])
    h = store.history("lat", 3600, points=120)
    assert set(h) == {"t", "mean", "min", "max", "p50", "p95", "p99", "count"}
    assert len(h["t"]) == 120
    assert np.all(np.diff(h["t"]) == 30.0)
    assert h["t"][-1] == math.floor(now / 30) * 30  # the current, incomplete point is last
    for i in (0, 57, 119):
        sel = vs[(ts >= h["t"][i]) & (ts < h["t"][i] + 30) & (ts > now - 3600)]
        assert h["count"][i] == len(sel)
        assert h["mean"][i] == pytest.approx(sel.mean(), rel=1e-12)
        assert h["min"][i] == sel.min()
        assert h["max"][i] == sel.max()
        np.testing.assert_allclose(
            [h["p50"][i], h["p95"][i], h["p99"][i]], np.percentile(sel, [50, 95, 99]), rtol=1e-12
        )
    h5 = store.history("lat", 300, points=120)
    assert len(h5["t"]) == 100
    assert np.all(np.diff(h5["t"]) == 3.0)


def test_history_over_a_day_from_rollups(day_store) -> None:
    store, ts, vs = day_store
    h = store.history("lat", DAY, points=120)
    assert len(h["t"]) == 120
    assert np.all(np.diff(h["t"]) == 720.0)
    assert h["t"][0] % 720 == 0
    full = h["count"][:-1]
    assert np.all(full == 720)  # 12 whole minutes per point, none lost
    for i in (1, 60, 118):
        sel = vs[(ts >= h["t"][i]) & (ts < h["t"][i] + 720)]
        assert h["mean"][i] == pytest.approx(sel.mean(), rel=1e-6)
        assert h["min"][i] == pytest.approx(sel.min(), rel=1e-6)
        assert h["max"][i] == pytest.approx(sel.max(), rel=1e-6)
        want = np.percentile(sel, [50, 95, 99])
        got = [h["p50"][i], h["p95"][i], h["p99"][i]]
        np.testing.assert_allclose(got, want, rtol=0.05)  # approximate by design
    # Empty points are NaN with a zero count; nothing was recorded before T0.
    early = store.history("lat", 3 * DAY, points=72)
    assert np.isnan(early["mean"][0])
    assert early["count"][0] == 0
    assert np.nansum(early["count"]) > 0


def test_history_shows_a_gap_as_empty_points() -> None:
    store = MetricStore()
    feed(store, "x", one_hz(T0, 3600), np.ones(3600))
    feed(store, "x", one_hz(T0 + 4 * 3600, 600), np.full(600, 2.0))  # 3 h of silence
    h = store.history("x", 6 * 3600, points=120)
    width = h["t"][1] - h["t"][0]
    gap = (h["t"] >= T0 + 3600) & (h["t"] + width <= T0 + 4 * 3600)
    assert gap.sum() > 50
    assert np.all(h["count"][gap] == 0)
    assert np.isnan(h["mean"][gap]).all()
    assert np.nanmax(h["mean"]) == 2.0
    assert np.nanmin(h["mean"]) == 1.0


@pytest.mark.parametrize("bucket", [1.0, 5.0, 10.0, 60.0])
def test_sparkline_changes_only_when_a_bucket_completes(bucket: float) -> None:
    store = MetricStore()
    points = 8
    values = [float((i * 37) % 11) for i in range(600)]
    prev: np.ndarray | None = None
    prev_slot: int | None = None
    changes = 0
    for i, x in enumerate(values):
        t = T0 + i
        store.record("x", t, x)
        line = store.sparkline("x", points, bucket)
        assert len(line) == points
        slot = math.floor(t / bucket)
        if prev is not None and slot == prev_slot:
            np.testing.assert_array_equal(line, prev)  # same slot: not a bit changes
        elif prev is not None:
            changes += 1
            np.testing.assert_array_equal(line[:-1], prev[1:])  # shifted left by one
            # The newest value is the mean of the slot that just completed.
            done = [
                v
                for j, v in enumerate(values[: i + 1])
                if math.floor((T0 + j) / bucket) == slot - 1
            ]
            assert line[-1] == pytest.approx(sum(done) / len(done), rel=1e-6)
        prev, prev_slot = line, slot
    assert changes == math.floor((T0 + 599) / bucket) - math.floor(T0 / bucket)


def test_sparkline_stays_stable_when_its_slot_closes_between_reads() -> None:
    # Read just after a slot completes (no sample of the new slot yet), then record the
    # sample that closes the rollup bucket: the line must not move.
    store = MetricStore()
    for i in range(600):
        store.record("x", T0 + i, float(i % 13) * 1.1)
    before = store.sparkline("x", 10, 60, now=T0 + 600.5)
    store.record("x", T0 + 600.9, 5.0)
    after = store.sparkline("x", 10, 60, now=T0 + 600.9)
    np.testing.assert_array_equal(before, after)


def test_recent_windows_read_across_the_ring_wrap_as_a_full_scan_would() -> None:
    # Windows and raw sparklines find their first sample by a binary search on the ring
    # (no ordering or copy of the whole ring); check them against a plain scan of every
    # sample, irregularly spaced, after the ring has wrapped several times.
    store = MetricStore(raw_capacity=500)
    rng = np.random.default_rng(7)
    ts = T0 + np.cumsum(rng.uniform(0.2, 2.5, 1700))
    vs = rng.normal(50.0, 10.0, len(ts))
    vs[rng.random(len(ts)) < 0.05] = np.nan
    for t, v in zip(ts, vs, strict=True):
        store.record("x", float(t), float(v))
    held_t, held_v = ts[-500:], vs[-500:]
    now = float(ts[-1]) + 0.3
    for window in (1.0, 7.5, 60.0, 300.0, 10_000.0):
        t, v = store.values("x", window, now=now)
        want = (held_t > now - window) & (held_t <= now)
        np.testing.assert_array_equal(t, held_t[want])
        np.testing.assert_array_equal(v, held_v[want])
    for bucket in (1.0, 3.0, 7.0):
        points = 40
        line = store.sparkline("x", points, bucket, now=now)
        g0 = math.floor(now / bucket) - points
        for i in range(points):
            lo, hi = (g0 + i) * bucket, (g0 + i + 1) * bucket
            sel = held_v[(held_t >= lo) & (held_t < hi) & ~np.isnan(held_v)]
            if held_t[0] > lo:  # the ring no longer reaches this slot's start
                continue
            if len(sel) == 0:
                assert math.isnan(line[i])
            else:
                assert line[i] == pytest.approx(sel.mean(), rel=1e-9)


def test_sparkline_unknown_series_is_all_nan() -> None:
    store = MetricStore()
    assert np.isnan(store.sparkline("nope", 5, 10, now=T0)).all()


# --------------------------------------------------------------------------- bulk equals single


def _state(store: MetricStore) -> dict[str, np.ndarray]:
    """Every array the store holds, read back through its own file format."""
    store.save()
    assert store.path is not None
    with np.load(store.path) as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("raw_capacity", [3600, 40])
def test_record_many_equals_repeated_record(tmp_path: Path, raw_capacity: int) -> None:
    # Irregular timestamps, NaNs and a counter reset; capacity 40 forces the path where
    # 1 min and 1 h buckets are merged from the finer tier because raw lost their start.
    rng = np.random.default_rng(2)
    n = 12_000
    ts = T0 + np.cumsum(rng.uniform(0.3, 1.7, n))
    vs = rng.normal(10, 3, n)
    vs[rng.random(n) < 0.03] = np.nan
    cs = np.cumsum(rng.integers(0, 9, n)).astype(float)
    cs[7000:] -= cs[7000]
    one = MetricStore(raw_capacity=raw_capacity, path=tmp_path / "one.npz")
    bulk = MetricStore(raw_capacity=raw_capacity, path=tmp_path / "bulk.npz")
    for t, v, c in zip(ts.tolist(), vs.tolist(), cs.tolist(), strict=True):
        one.record("v", t, v)
        one.record("c", t, c)
    cuts = [0, 1, 8, 341, 2389, 2400, 6000, n]
    for a, b in zip(cuts, cuts[1:], strict=False):
        bulk.record_many("v", ts[a:b], vs[a:b])
        bulk.record_many("c", ts[a:b], cs[a:b])
    # one check result's metrics at once, as the scheduler records them
    row = MetricStore(raw_capacity=raw_capacity, path=tmp_path / "row.npz")
    for t, v, c in zip(ts.tolist(), vs.tolist(), cs.tolist(), strict=True):
        row.record_row(t, (("v", v), ("c", c)))
    sa = _state(one)
    for other in (bulk, row):
        sb = _state(other)
        assert sa.keys() == sb.keys()
        for k in sa:
            if k == "index":
                continue
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    for span in (300, 3600, 6 * 3600):
        ha, hb = one.history("v", span), bulk.history("v", span)
        for key in ha:
            np.testing.assert_array_equal(ha[key], hb[key])
    assert one.quantiles("v", 5 * 3600) == bulk.quantiles("v", 5 * 3600)
    assert one.rate("c", 3 * 3600) == bulk.rate("c", 3 * 3600)


def _index(store: MetricStore) -> object:
    """The saved per-series state (counts, evicted sample, open buckets), as JSON."""
    raw = _state(store)["index"]
    return json.loads(bytes(np.asarray(raw, dtype=np.uint8)).decode("utf-8"))


def _ring_bytes(store: MetricStore) -> int:
    """What the raw timestamps would take with a ring per series."""
    return sum(s.t.nbytes for s in store._series.values())  # noqa: SLF001


@pytest.mark.parametrize("raw_capacity", [3600, 40])
def test_a_row_shares_one_ring_of_timestamps_and_answers_as_separate_series(
    tmp_path: Path, raw_capacity: int
) -> None:
    # Rows of four series (a check result's metrics); now and then a row leaves "c" out
    # (a failed check reports fewer metrics), names "c" twice, or "b" gets a sample of its
    # own that the next row's then drops for "b" alone. Each takes series out of a group
    # before the row writes; the store must answer exactly as one fed sample by sample,
    # series by series.
    rng = np.random.default_rng(5)
    n = 9_000
    ts = T0 + np.cumsum(rng.uniform(0.5, 1.5, n))
    vals = rng.normal(10, 3, (n, 3))
    vals[rng.random((n, 3)) < 0.02] = np.nan
    row = MetricStore(raw_capacity=raw_capacity, path=tmp_path / "row.npz")
    one = MetricStore(raw_capacity=raw_capacity, path=tmp_path / "one.npz")
    lone = {int(i) for i in rng.choice(n - 1, 4, replace=False)}
    for i, (t, (a, b, c)) in enumerate(zip(ts.tolist(), vals.tolist(), strict=True)):
        samples = [("a", a), ("b", b), ("d", 2 * a)] + (
            [] if 2000 < i < 2100 and i % 7 == 0 else [("c", c)])
        if i in (1, 3000):  # "c" twice in one row: a metric named like one of ours
            samples.append(("c", 7.0))
        row.record_row(t, samples)
        for name, v in samples:
            one.record(name, t, v)
        if i in lone:  # ahead of the next row: that row's sample of "b" is dropped
            t_b = float(ts[i + 1]) + 0.01
            row.record("b", t_b, 1.0)
            one.record("b", t_b, 1.0)
    assert row.dropped == one.dropped == len(lone)
    sa, sb = _state(row), _state(one)
    assert sa.keys() == sb.keys()
    for k in sa:
        if k != "index":
            np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    assert _index(row) == _index(one)
    for name in "abcd":
        for window in (60, 600, 3 * 3600):
            assert row.quantiles(name, window) == one.quantiles(name, window)
            assert row.values(name, window)[0].tolist() == one.values(name, window)[0].tolist()
    # "a" and "d" never missed a row: they still share one ring
    assert row._series["a"].t is row._series["d"].t  # noqa: SLF001
    assert row.memory_bytes() < one.memory_bytes() == _ring_bytes(one) + sum(
        s.v.nbytes + sum(r.nbytes for r in s.rollups) for s in one._series.values())  # noqa: SLF001


def test_series_recorded_together_hold_their_timestamps_once(tmp_path: Path) -> None:
    # Nine series per check result, as an HTTP target records them: one ring of times.
    path = tmp_path / "h.npz"
    store = MetricStore(path=path)
    names = [f"api:m{i}" for i in range(9)]
    for k in range(600):
        store.record_row(T0 + k, [(n, float(k % 7)) for n in names])
    t_bytes = store._series["api:m0"].t.nbytes  # noqa: SLF001
    assert store.memory_bytes() == _ring_bytes(store) - 8 * t_bytes + sum(
        s.v.nbytes + sum(r.nbytes for r in s.rollups) for s in store._series.values())  # noqa: SLF001
    held = store.memory_bytes()
    store.save()
    back = MetricStore(path=path)
    back.load()
    for n in names:  # loaded: shared again, and the same answers
        assert back.values(n, 3600)[0].tolist() == store.values(n, 3600)[0].tolist()
        assert back._series[n].t is back._series["api:m0"].t  # noqa: SLF001
    assert back.memory_bytes() < held + 9 * 4096
    # same count, same newest time, one time apart: two rings, not one
    ts = T0 + np.arange(100.0)
    store.record_many("x", ts, np.ones(100))
    ts[50] += 0.5
    store.record_many("y", ts, np.ones(100))
    store.save()
    again = MetricStore(path=path)
    again.load()
    assert again._series["x"].t is not again._series["y"].t  # noqa: SLF001
    assert again.values("y", 3600)[0].tolist() == ts.tolist()
    back.drop("api:m0")  # the others go on sharing, and recording
    back.record_row(T0 + 600, [(n, 1.0) for n in names[1:]])
    assert back.latest("api:m8") == (T0 + 600, 1.0)
    assert back._series["api:m1"].t is back._series["api:m8"].t  # noqa: SLF001


def test_small_raw_ring_still_gives_exact_counts_from_finer_tiers() -> None:
    # The raw ring holds 40 s, less than a 1 min bucket: 1 min rows are merged from 10 s
    # rows, which keeps count/sum/min/max/up exact.
    rng = np.random.default_rng(4)
    store = MetricStore(raw_capacity=40)
    ts = one_hz(T0, 5 * 3600)
    vs = rng.normal(0, 1, len(ts))
    feed(store, "x", ts, vs, chunk=30)
    now = float(ts[-1])
    h = store.history("x", 3 * 3600, points=60)
    assert store.tier_width("x", 3 * 3600, points=60) == 60.0
    for i in (3, 30, 58):
        sel = vs[(ts >= h["t"][i]) & (ts < h["t"][i] + 180)]
        assert h["count"][i] == len(sel) == 180
        assert h["mean"][i] == pytest.approx(sel.mean(), rel=1e-5, abs=1e-6)
        assert h["max"][i] == pytest.approx(sel.max(), rel=1e-6)
    start = math.ceil((now - 2 * 3600) / 10) * 10
    assert store.mean("x", 2 * 3600) == pytest.approx(vs[ts >= start].mean(), abs=1e-6)


# --------------------------------------------------------------------------- memory


def test_memory_is_flat_over_days() -> None:
    store = MetricStore()
    names = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    for name in names:
        store.record("warmup-" + name, T0, 1.0)
    for name in names:
        feed(store, name, one_hz(T0, DAY), rng.normal(size=DAY))
    after_day = store.memory_bytes()
    # A series holds what its data needs (a single sample: a few KB), a full one at most
    # its fixed size: the raw hour and the 10 s and 1 min tiers are full after a day, the
    # 1 h x 7 d tier after a week.
    warm = after_day - sum(_series_bytes(store, n) for n in names)
    assert warm < 3 * 4096
    for name in names:
        assert PER_SERIES_BYTES - 169 * 36 <= _series_bytes(store, name) <= PER_SERIES_BYTES
    for name in names:
        feed(store, name, one_hz(T0 + DAY, 2 * DAY), rng.normal(size=2 * DAY))
    assert after_day <= store.memory_bytes() <= 3 * PER_SERIES_BYTES + warm
    for name in names:  # a week later every ring is full: the size stays put from then on
        store.record(name, T0 + 8 * DAY, 1.0)
        store.record(name, T0 + 8 * DAY + 3600, 1.0)
    full = store.memory_bytes()
    assert full == 3 * PER_SERIES_BYTES + warm
    for name in names:
        feed(store, name, one_hz(T0 + 9 * DAY, 3600), rng.normal(size=3600))
    assert store.memory_bytes() == full
    store.drop("warmup-a")
    assert store.memory_bytes() < full
    assert "warmup-a" not in store.series()


def _series_bytes(store: MetricStore, name: str) -> int:
    """One series' buffers."""
    return store._series[name].nbytes()


def test_two_hundred_series_fit_the_budget() -> None:
    store = MetricStore()
    for i in range(200):
        store.record(f"s{i}", T0, 1.0)
    # allocated as data arrives: a series with one sample holds ~2 KB, not 193 KB
    assert store.memory_bytes() <= 200 * 4096
    assert 200 * PER_SERIES_BYTES <= 50 * 1024 * 1024  # and full ones still fit the budget


# --------------------------------------------------------------------------- persistence


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.npz"
    rng = np.random.default_rng(9)
    a = MetricStore(path=path)
    ts = one_hz(T0, 30 * 3600)
    vs = rng.normal(5, 1, len(ts))
    feed(a, "lat", ts, vs)
    feed(a, "up", ts, (rng.random(len(ts)) < 0.99).astype(float))
    a.record("tiny", T0 + 5, 1.5)
    a.save()
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]

    b = MetricStore(path=path)
    b.load()
    assert b.series() == a.series()
    assert b.memory_bytes() <= a.memory_bytes()  # rings sized by what they hold
    assert b.latest("lat") == a.latest("lat")
    assert b.latest("tiny") == (T0 + 5, 1.5)
    for name in ("lat", "up"):
        for span in (300, 3600, DAY):
            ha, hb = a.history(name, span), b.history(name, span)
            for key in ha:
                np.testing.assert_array_equal(ha[key], hb[key])
    assert b.uptime("up", DAY) == a.uptime("up", DAY)
    assert b.quantiles("lat", 3600) == a.quantiles("lat", 3600)

    # Recording goes on after a restart (with a gap) exactly as without the restart.
    later = one_hz(T0 + 31 * 3600, 1800)
    more = rng.normal(5, 1, len(later))
    feed(a, "lat", later, more)
    feed(b, "lat", later, more)
    for span in (3600, 6 * 3600, DAY):
        ha, hb = a.history("lat", span), b.history("lat", span)
        for key in ha:
            np.testing.assert_array_equal(ha[key], hb[key])


def test_save_is_a_no_op_without_path_or_changes(tmp_path: Path) -> None:
    MetricStore().save()  # no path: nothing happens, nothing raised
    path = tmp_path / "h.npz"
    store = MetricStore(path=path)
    store.record("x", T0, 1.0)
    store.save()
    first = path.stat().st_mtime_ns
    time.sleep(0.01)
    store.save()
    assert path.stat().st_mtime_ns == first
    store.record("x", T0 + 1, 2.0)
    store.save()
    assert path.stat().st_mtime_ns != first


def test_load_without_file_starts_empty(tmp_path: Path) -> None:
    store = MetricStore(path=tmp_path / "missing.npz")
    store.load()
    assert store.series() == []


@pytest.mark.parametrize(
    "damage",
    ["garbage", "truncated", "empty", "wrong-index", "bad-shape", "unsorted-times"],
)
def test_a_bad_file_is_set_aside_and_the_store_starts_empty(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.npz"
    good = MetricStore(path=path)
    feed(good, "x", one_hz(T0, 5000), np.arange(5000.0))
    good.save()
    blob = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00not a zip file at all" * 100)
    elif damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "wrong-index":
            arrays["index"] = np.frombuffer(b'{"format": "something else"}', dtype=np.uint8)
        elif damage == "bad-shape":  # fewer raw values than the index says
            arrays["v"] = arrays["v"][:80]
        else:  # the file keeps timestamps byte-shuffled (see store._shuffle)
            arrays["t"] = _shuffle(_unshuffle(arrays["t"], np.float64)[::-1].copy())
        with zipfile.ZipFile(path, "w") as zf:
            for k, arr in arrays.items():
                with zf.open(k + ".npy", "w") as fh:
                    np.lib.format.write_array(fh, arr)
    store = MetricStore(path=path)
    with caplog.at_level(logging.WARNING, logger="console.engine.storage.store"):
        store.load()  # never raises
    assert store.series() == []
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("history.npz.corrupt-")]
    assert len(aside) == 1
    assert not path.exists()
    assert "moved to" in caplog.text
    # The store works and saves over the old name again.
    store.record("y", T0, 1.0)
    store.save()
    again = MetricStore(path=path)
    again.load()
    assert again.series() == ["y"]


def test_load_adapts_to_other_capacities(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "h.npz"
    big = MetricStore(raw_capacity=600, path=path)
    ts = one_hz(T0, 8 * 3600)
    vs = np.arange(len(ts), dtype=float)
    feed(big, "x", ts, vs)
    big.save()
    with caplog.at_level(logging.WARNING, logger="console.engine.storage.store"):
        small = MetricStore(raw_capacity=100, path=path, tiers=((10.0, 3600.0), (60.0, 7200.0)))
        small.load()
    assert "raw capacity 600" in caplog.text
    assert "3600s tier" in caplog.text
    assert small.latest("x") == big.latest("x")
    t, v = small.values("x", 10_000)
    assert v.tolist() == vs[-100:].tolist()
    hs, hb = small.history("x", 3600, points=60), big.history("x", 3600, points=60)
    np.testing.assert_array_equal(hs["count"], hb["count"])
    np.testing.assert_allclose(hs["mean"], hb["mean"], rtol=1e-6)
    # Keeps recording correctly after the resize.
    feed(small, "x", one_hz(T0 + 8 * 3600, 600), np.zeros(600))
    assert small.mean("x", 300) == 0.0
    larger = MetricStore(raw_capacity=5000, path=path)
    larger.load()
    assert len(larger.values("x", 10_000)[0]) == 600


def test_save_from_a_thread_while_recording(tmp_path: Path) -> None:
    path = tmp_path / "h.npz"
    store = MetricStore(path=path)
    for i in range(20):
        feed(store, f"s{i}", one_hz(T0, 3600), np.ones(3600))
    errors: list[BaseException] = []
    stop = threading.Event()

    def saver() -> None:
        try:
            while not stop.is_set():
                store.save()
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=saver)
    thread.start()
    try:
        deadline = time.monotonic() + 1.0
        i = 0
        while time.monotonic() < deadline and i < 200_000:
            store.record(f"s{i % 20}", T0 + 3600 + i // 20, 2.0)
            i += 1
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert not errors
    store.save()
    copy = MetricStore(path=path)
    copy.load()
    assert copy.latest("s0") == store.latest("s0")
    assert len(copy.series()) == 20


# --------------------------------------------------------------------------- incremental saves


def _hist_equal(a: MetricStore, b: MetricStore, name: str, spans: tuple[int, ...]) -> None:
    """Same history, but for the newest point: the bucket still open at the crash lived
    only in the raw ring (at most one 10 s bucket of samples lost)."""
    for span in spans:
        ha, hb = a.history(name, span, points=60), b.history(name, span, points=60)
        np.testing.assert_array_equal(ha["count"][:-1], hb["count"][:-1], err_msg=f"{span}")
        np.testing.assert_allclose(ha["mean"][:-1], hb["mean"][:-1], rtol=1e-6)
        assert 0 <= ha["count"][-1] - hb["count"][-1] <= 10


def test_periodic_saves_append_only_the_closed_rows(tmp_path: Path) -> None:
    """After the first snapshot a periodic save appends what closed since the last one —
    bytes in proportion to the new buckets, never a rewrite — and snapshot plus log load
    back as the same history; a clean save folds the log into a new snapshot."""
    path = tmp_path / "history.npz"
    rng = np.random.default_rng(3)
    live = MetricStore(path=path)
    feed(live, "lat", one_hz(T0, 3600), rng.normal(5, 1, 3600))
    live.save_changes()  # no snapshot yet: writes one
    snap = path.stat()
    log = tmp_path / "history.npz.log"
    sizes = []
    for hour in range(1, 4):  # three more hours, saved every 10 minutes
        for part in range(6):
            start = T0 + hour * 3600 + part * 600
            feed(live, "lat", one_hz(start, 600), rng.normal(5, 1, 600))
            before = log.stat().st_size if log.exists() else 0
            live.save_changes()
            sizes.append(log.stat().st_size - before)
    assert (path.stat().st_mtime_ns, path.stat().st_size) == (snap.st_mtime_ns, snap.st_size)
    # 10 minutes of one series close 60 10 s rows and 10 1 min rows (36 B each, compressed)
    assert max(sizes) < 70 * 36 + 600
    assert all(x > 0 for x in sizes)

    crashed = MetricStore(path=path)  # as after a crash: the last snapshot plus the log
    crashed.load()
    assert crashed.series() == ["lat"]
    _hist_equal(live, crashed, "lat", (6 * 3600, DAY))
    # the raw hour is not in the log: windows that need it come from 10 s rows instead
    # (less the open bucket's 10 samples of 7,200)
    assert crashed.mean("lat", 2 * 3600) == pytest.approx(live.mean("lat", 2 * 3600), rel=1e-3)

    live.save()  # a clean stop: one snapshot, no log
    assert not log.exists()
    clean = MetricStore(path=path)
    clean.load()
    assert clean.quantiles("lat", 3600) == live.quantiles("lat", 3600)  # exact: raw kept


def test_recording_after_a_crash_reload_goes_on_from_the_rollups(tmp_path: Path) -> None:
    path = tmp_path / "history.npz"
    live = MetricStore(path=path)
    feed(live, "up", one_hz(T0, 1800), np.ones(1800))
    live.save()
    feed(live, "up", one_hz(T0 + 1800, 1800), np.zeros(1800))
    live.record("new", T0 + 1800, 1.0)
    feed(live, "new", one_hz(T0 + 1801, 1799), np.ones(1799))
    live.save_changes()
    back = MetricStore(path=path)
    back.load()
    assert set(back.series()) == {"up", "new"}
    assert back.uptime("up", 3600, now=T0 + 3600) == pytest.approx(50.0, abs=1.0)
    # new samples after the restart (a 10 min gap) are recorded and counted
    feed(back, "up", one_hz(T0 + 4200, 600), np.ones(600))
    feed(live, "up", one_hz(T0 + 4200, 600), np.ones(600))
    assert back.uptime("up", 1200, now=T0 + 4800) == pytest.approx(100.0)
    assert back.uptime("up", 2 * 3600, now=T0 + 4800) == pytest.approx(
        live.uptime("up", 2 * 3600, now=T0 + 4800), abs=0.5)
    h = back.history("up", 6 * 3600, points=36)
    assert np.nansum(h["count"]) == pytest.approx(4200, abs=20)


def test_a_cut_short_log_record_is_ignored_and_a_drop_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.npz"
    live = MetricStore(path=path)
    feed(live, "a", one_hz(T0, 600), np.ones(600))
    feed(live, "b", one_hz(T0, 600), np.ones(600))
    live.save()
    feed(live, "a", one_hz(T0 + 600, 600), np.ones(600))
    live.save_changes()
    live.drop("b")
    live.save_changes()
    feed(live, "a", one_hz(T0 + 1200, 600), np.ones(600))
    live.save_changes()
    log = tmp_path / "history.npz.log"
    data = log.read_bytes()
    log.write_bytes(data[:-7])  # the last append was cut short by a crash
    back = MetricStore(path=path)
    back.load()
    assert back.series() == ["a"]
    h = back.history("a", 3600, points=60)
    assert np.nansum(h["count"]) == pytest.approx(1200, abs=10)  # up to the cut record


def test_a_periodic_snapshot_leaves_the_raw_hour_out_and_a_crash_load_reads_rollups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from console.engine.storage import store as store_mod

    monkeypatch.setattr(store_mod, "LOG_MIN", 1)  # fold the log at every chance
    path = tmp_path / "history.npz"
    live = MetricStore(path=path)
    rng = np.random.default_rng(5)
    feed(live, "lat", one_hz(T0, 600), rng.normal(5, 1, 600))
    live.save_changes()  # the first snapshot
    for part in range(1, 7):
        feed(live, "lat", one_hz(T0 + part * 600, 600), rng.normal(5, 1, 600))
        live.save_changes()  # appends, or folds the log into a new snapshot
    with np.load(path) as z:
        assert len(z["v"]) == 0  # the periodic snapshot carries no raw samples
    back = MetricStore(path=path)
    back.load()
    _hist_equal(live, back, "lat", (6 * 3600,))
    assert len(back.values("lat", 600)[0]) == 0  # the raw hour: gone, as after a crash
    assert back.mean("lat", 3600) == pytest.approx(live.mean("lat", 3600), rel=1e-3)
    feed(back, "lat", one_hz(T0 + 4200, 60), np.full(60, 5.0))  # and it records on
    assert back.latest("lat") == (T0 + 4259, 5.0)


def test_held_from_is_the_first_sample_until_the_coarsest_tier_lets_go() -> None:
    """What a report over a long period is computed from: everything since the first sample
    while the store keeps it all, then the coarsest tier's retention."""
    store = MetricStore(raw_capacity=10, tiers=[(10.0, 100.0), (60.0, 600.0)])
    assert store.held_from("a:up") is None
    t0 = 60_000.0
    for i in range(300):
        store.record("a:up", t0 + i, 1.0)
    assert store.held_from("a:up") == t0
    for i in range(300, 2000):
        store.record("a:up", t0 + i, 1.0)
    last = t0 + 1999
    held = store.held_from("a:up")
    assert held is not None
    assert last - 660 <= held <= last - 540  # ~600 s of 1-minute buckets are kept
    assert store.uptime("a:up", 7 * 86400, now=last) == 100.0  # computed from those


# --------------------------------------------------------------------------- constant rings


def _states(store: MetricStore, name: str, now: float) -> tuple[object, ...]:
    t, v = store.values(name, 7200, now=now)
    return (t.tobytes(), v.tobytes(), store.quantiles(name, 3600, now=now),
            store.mean(name, 600, now=now), store.rate(name, 600, now=now),
            store.uptime(name, 3 * 3600, now=now), store.latest(name))


def test_a_series_holding_one_value_keeps_its_raw_values_in_eight_bytes() -> None:
    # status code 200 for half an hour at 1 s: 8 bytes of values, not 1,800 x 8.
    store = MetricStore()
    for k in range(1800):
        store.record_row(T0 + k, [("api:status_code", 200.0), ("api:latency_ms", 10.0 + k % 7)])
    s = store._series["api:status_code"]  # noqa: SLF001
    lat = store._series["api:latency_ms"]  # noqa: SLF001
    assert s.nbytes() - s.t.nbytes - sum(r.nbytes for r in s.rollups) == 8
    assert lat.nbytes() - lat.t.nbytes - sum(r.nbytes for r in lat.rollups) == lat.v.nbytes
    assert lat.v.nbytes >= 1800 * 8
    assert store.memory_bytes() < 1800 * 8 * 2 + 2 * 40 * 1024
    t, v = store.values("api:status_code", 60)
    assert v.tolist() == [200.0] * 60
    assert t.tolist() == [T0 + k for k in range(1740, 1800)]
    v[:] = -1  # a copy, as for any series
    assert store.values("api:status_code", 60)[1].tolist() == [200.0] * 60
    assert store.quantiles("api:status_code", 600) == {0.5: 200.0, 0.95: 200.0, 0.99: 200.0}
    assert store.mean("api:status_code", 3600) == 200.0


def test_series_holding_one_value_share_one_constant_ring_of_its_bits() -> None:
    # 200 targets' "up" rings are one object; a -0.0 ring is not the 0.0 ring
    store = MetricStore()
    for k in range(60):
        store.record_row(T0 + k, [(f"t{i}:up", 1.0) for i in range(200)]
                         + [("a:zero", 0.0), ("b:zero", -0.0)])
    rings = {id(store._series[f"t{i}:up"].v) for i in range(200)}  # noqa: SLF001
    assert len(rings) == 1
    zero, neg = store._series["a:zero"].v, store._series["b:zero"].v  # noqa: SLF001
    assert zero is not neg
    assert math.copysign(1.0, float(neg[0])) == -1.0
    assert store.values("b:zero", 10)[1].view(np.int64).tolist() == \
        np.full(10, -0.0).view(np.int64).tolist()
    store.record_row(T0 + 60, [("t0:up", 0.0)])  # one target goes down: only its ring changes
    assert store.values("t0:up", 2)[1].tolist() == [1.0, 0.0]
    assert store.values("t1:up", 10)[1].tolist() == [1.0] * 9
    assert store._series["t1:up"].v is store._series["t2:up"].v  # noqa: SLF001


@pytest.mark.parametrize("cap", [50, 3600])
def test_constant_rings_answer_as_real_rings_through_changes_wraps_and_reloads(
        tmp_path: Path, cap: int) -> None:
    # Long runs of one value broken by changes, NaN, -0.0 against 0.0, across ring wraps:
    # `record_row` (one sample at a time) and `record_many` (vectorised pieces) must agree
    # bit for bit with each other and with the plain samples, and so must a reloaded store.
    rng = np.random.default_rng(7)
    ts = one_hz(T0, 4000)
    runs = [(0.0, 700), (-0.0, 40), (1.0, 900), (math.nan, 30), (1.0, 400), (0.0, 1),
            (1.0, 929), (200.0, 1000)]
    vs = np.concatenate([np.full(n, v) for v, n in runs])
    noisy = rng.lognormal(3, 0.5, len(ts))
    one = MetricStore(raw_capacity=cap, path=tmp_path / "one.npz")
    many = MetricStore(raw_capacity=cap)
    for k, t in enumerate(ts):
        one.record_row(float(t), [("c", float(vs[k])), ("noise", float(noisy[k]))])
        if k in (0, 39, 699, 700, 739, 1639, 2500, 3999):
            now = float(t)
            lo = max(0, k + 1 - cap)
            _, held = one.values("c", 7200, now=now)
            np.testing.assert_array_equal(held, vs[lo : k + 1])
            assert held.view(np.int64).tolist() == vs[lo : k + 1].view(np.int64).tolist()
    feed(many, "c", ts, vs, chunk=333)
    now = float(ts[-1])
    assert _states(one, "c", now) == _states(many, "c", now)
    # the ring ends with 1,000 samples of 200.0: a full ring of them is constant again
    want = 200.0 if cap == 50 else None
    assert one._series["c"].cv == many._series["c"].cv == want  # noqa: SLF001
    one.save()
    back = MetricStore(raw_capacity=cap, path=tmp_path / "one.npz")
    back.load()
    assert _states(back, "c", now) == _states(one, "c", now)
    if cap == 50:  # the last 50 samples are all 200.0: the reloaded ring is constant again
        assert back._series["c"].cv == 200.0  # noqa: SLF001
        assert back._series["noise"].cv is None  # noqa: SLF001


# --------------------------------------------------------------------------- coded rollup rows


def _coded_workload(store: MetricStore, seconds: int) -> None:
    """A day of one check a second: a status code with an incident, an up that goes to NaN
    and back, a -0.0, a value that moves every half hour (more distinct rows over the day
    than a palette holds, few at any time), a counter, a noisy latency, and a long gap."""
    rng = np.random.default_rng(11)
    for k in range(seconds):
        if 30_000 <= k < 33_000:
            continue  # the console was off for 50 minutes
        t = T0 + k + rng.uniform(0.0, 0.2)
        code = 503.0 if 7_000 <= k < 7_400 else 200.0
        up = math.nan if 9_000 <= k < 9_030 else 1.0
        store.record_row(t, [("code", code), ("up", up), ("zero", -0.0 if k % 5000 < 20 else 0.0),
                             ("step", float(k // 1800)), ("count", float(k * 3)),
                             ("lat", float(rng.lognormal(3, 0.4)))])


@pytest.mark.parametrize("cap", [3600, 40])
def test_rollup_rows_of_few_distinct_values_are_coded_and_read_as_plain_rows(
        tmp_path: Path, cap: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same day into two stores: one codes its rows, one (a palette of one row) keeps
    # plain float32 arrays, as every ring did before. Every row, query and saved array
    # must be the same bit for bit, and so after a reload.
    from console.engine.storage import store as store_mod

    seconds = DAY + 2 * 3600
    coded = MetricStore(raw_capacity=cap, path=tmp_path / "coded.npz")
    _coded_workload(coded, seconds)
    monkeypatch.setattr(store_mod, "_PALETTE_MAX", 1)
    plain = MetricStore(raw_capacity=cap, path=tmp_path / "plain.npz")
    _coded_workload(plain, seconds)
    monkeypatch.undo()

    for name in ("code", "up", "zero", "step"):  # few distinct rows: coded, and small
        # (a day of "step" holds ~150 distinct minutes: its 1 min ring is plain)
        for r in coded._series[name].rollups[:1 if name == "step" else 2]:  # noqa: SLF001
            assert isinstance(r, store_mod._CodedRows), name  # noqa: SLF001
        assert not any(isinstance(r, store_mod._CodedRows)  # noqa: SLF001
                       for r in plain._series[name].rollups[:2])  # noqa: SLF001
        rows = [sum(r.nbytes for r in st._series[name].rollups)  # noqa: SLF001
                for st in (coded, plain)]
        assert rows[0] < rows[1] / (1 if name == "step" else 10), (name, rows)
    # the latency's rows all differ: a plain array, as before
    assert not isinstance(coded._series["lat"].rollups[0], store_mod._CodedRows)  # noqa: SLF001
    assert coded.memory_bytes() < plain.memory_bytes()

    sa, sb = _state(coded), _state(plain)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].tobytes() == sb[key].tobytes(), key
    now = T0 + seconds
    for name in ("code", "up", "zero", "step", "count", "lat"):
        for span in (600, 3600, 6 * 3600, DAY):
            ha, hb = coded.history(name, span), plain.history(name, span)
            for key in ha:
                assert ha[key].tobytes() == hb[key].tobytes(), (name, span, key)
        for window in (900, 5 * 3600, 20 * 3600):
            assert _states(coded, name, now - window / 3) == _states(plain, name, now - window / 3)
            assert coded.quantiles(name, window) == plain.quantiles(name, window)
            assert coded.rate(name, window) == plain.rate(name, window)
    back = MetricStore(raw_capacity=cap, path=tmp_path / "coded.npz")
    back.load()
    assert isinstance(back._series["code"].rollups[1], store_mod._CodedRows)  # noqa: SLF001
    for name in ("code", "step", "lat"):
        assert _states(back, name, now) == _states(coded, name, now)
        hb, hc = back.history(name, DAY), coded.history(name, DAY)
        for key in hb:
            assert hb[key].tobytes() == hc[key].tobytes(), (name, key)


def test_a_coded_ring_forgets_rows_no_bucket_holds_and_turns_plain_past_its_palette() -> None:
    from console.engine.storage import store as store_mod

    store = MetricStore()
    # a value that moves every 10 minutes for a day: ~290 distinct 10 s rows over the day,
    # at most ~130 in the 10 s ring at once (its hour); its palette forgets the rest
    for k in range(DAY):
        store.record("step", T0 + k, float(k // 600))
    rows = store._series["step"].rollups[0]  # noqa: SLF001
    assert isinstance(rows, store_mod._CodedRows)  # noqa: SLF001
    assert len(rows.palette) <= store_mod._PALETTE_MAX  # noqa: SLF001
    ids = np.arange(int((T0 + DAY - 3000) // 10), int((T0 + DAY - 10) // 10))
    for i, row in zip(ids.tolist(), rows[ids % len(rows)], strict=True):
        assert row[0] == 10.0, i
        assert row[2] == float((i * 10 - T0) // 600), i
    # a value that moves every minute: more distinct rows in the ring than a palette holds
    for k in range(3600):
        store.record("fast", T0 + DAY + k, float(k // 60))
    assert not isinstance(store._series["fast"].rollups[0], store_mod._CodedRows)  # noqa: SLF001
