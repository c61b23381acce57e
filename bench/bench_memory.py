"""Memory of the metric store for 200 series x 24 h of 1 s samples, against a naive baseline.

Run: ``python bench/bench_memory.py`` (about half a minute on 2 cores).

What it does, all in one process and one run:

1. feeds a ``MetricStore`` 200 series x 86,400 one-second samples (``record_many`` in
   one-hour chunks, hour by hour across all series as a live console would), then measures
   ``memory_bytes()`` and the growth of the process RSS (psutil);
2. feeds a second day and checks that both stay bounded: the store's rings grow as data
   arrives, so on day 2 only the 1 h x 7 d tier still grows (a few hundred KB), never past
   each series' full size (``bounded``), and the RSS stays flat (``flat``);
3. times ``record()`` one sample at a time (200 series x 300 s) and, for scale, the naive
   baseline's own per-sample cost (a list append);
4. measures the baseline: the same kind of samples kept naively as a Python list of
   ``(t, value)`` tuples per series. To keep this script's own peak memory reasonable the
   baseline is built for 10 of the 200 series and scaled linearly (x20), which is exact for
   lists of equal length; the script says so in its output.

MB here means 10**6 bytes.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.engine.storage.store import MetricStore  # noqa: E402

SERIES = 200
DAY = 86_400
CHUNK = 3_600
BASELINE_SERIES = 10
TARGET_MB = 50.0
T0 = 1_699_999_200.0  # on an hour boundary, like a console started on the hour
MB = 1e6

_proc = psutil.Process(os.getpid())


def rss() -> int:
    gc.collect()
    return int(_proc.memory_info().rss)


def hour_values(rng: np.random.Generator, kind: int, start: float) -> np.ndarray:
    """One hour of one series: latency-like, 0/1 up, a counter or a gauge, with gaps."""
    if kind == 0:
        v = rng.lognormal(3.0, 0.6, CHUNK)
    elif kind == 1:
        v = (rng.random(CHUNK) < 0.999).astype(np.float64)
    elif kind == 2:
        v = start * 3.0 + np.cumsum(rng.integers(0, 20, CHUNK)).astype(np.float64)
    else:
        v = 50.0 + 10.0 * np.sin(np.arange(CHUNK) / 300.0) + rng.normal(0, 2, CHUNK)
    v[rng.random(CHUNK) < 0.001] = np.nan  # a failed poll now and then
    return v


def feed_day(store: MetricStore, rng: np.random.Generator, day: int) -> float:
    began = time.perf_counter()
    for hour in range(24):
        start = T0 + day * DAY + hour * 3600
        ts = start + np.arange(CHUNK, dtype=np.float64)
        for i in range(SERIES):
            store.record_many(f"series-{i:03d}", ts, hour_values(rng, i % 4, start))
    return time.perf_counter() - began


def time_record(store: MetricStore, day: int, seconds: int = 300) -> tuple[float, int]:
    """µs per record() call, one sample at a time, walking time forward across all series."""
    calls = 0
    start = T0 + day * DAY
    names = [f"series-{i:03d}" for i in range(SERIES)]
    began = time.perf_counter()
    for s in range(seconds):
        t = start + s
        value = float(s % 17)
        for name in names:
            store.record(name, t, value)
        calls += len(names)
    return (time.perf_counter() - began) / calls * 1e6, calls


def time_list_append(n: int = 60_000) -> float:
    rows: list[tuple[float, float]] = []
    began = time.perf_counter()
    for s in range(n):
        rows.append((T0 + s, float(s % 17)))
    return (time.perf_counter() - began) / n * 1e6


def naive_baseline(rng: np.random.Generator) -> tuple[float, float]:
    """RSS growth and tuple/list accounting for BASELINE_SERIES series x one day."""
    before = rss()
    kept: list[list[tuple[float, float]]] = []
    for i in range(BASELINE_SERIES):
        rows: list[tuple[float, float]] = []
        for hour in range(24):
            start = T0 + hour * 3600
            ts = (start + np.arange(CHUNK, dtype=np.float64)).tolist()
            vs = hour_values(rng, i % 4, start).tolist()
            rows.extend(zip(ts, vs, strict=True))
        kept.append(rows)
    grown = rss() - before
    # Cross-check by accounting: list slots + tuple + two float objects per sample.
    one = kept[0][1]
    accounted = sum(sys.getsizeof(r) for r in kept) + sum(len(r) for r in kept) * (
        sys.getsizeof(one) + sys.getsizeof(one[0]) + sys.getsizeof(one[1])
    )
    del kept
    gc.collect()
    return grown / MB, accounted / MB


def main() -> None:
    rng = np.random.default_rng(20240601)
    print(f"metric store memory: {SERIES} series x {DAY} samples/day (1 s), MB = 10^6 bytes")

    rss0 = rss()
    store = MetricStore()
    feed1 = feed_day(store, rng, 0)
    mem1 = store.memory_bytes() / MB
    rss1 = rss()
    print(f"day 1 fed in {feed1:.1f} s with record_many ({SERIES * 24} calls of {CHUNK})")

    feed2 = feed_day(store, rng, 1)
    mem2 = store.memory_bytes() / MB
    rss2 = rss()
    print(f"day 2 fed in {feed2:.1f} s")

    rec_us, calls = time_record(store, 2)
    mem3 = store.memory_bytes() / MB
    rss3 = rss()
    append_us = time_list_append()
    print(
        f"record(): {rec_us:.2f} µs/call over {calls} calls "
        f"(naive list append: {append_us:.2f} µs/call, ratio {rec_us / append_us:.1f}x)"
    )

    base_sub, base_acc_sub = naive_baseline(rng)
    scale = SERIES / BASELINE_SERIES
    baseline = base_sub * scale
    print(
        f"naive baseline measured on {BASELINE_SERIES} series and scaled x{scale:g} to "
        f"{SERIES}: RSS growth {base_sub:.1f} MB -> {baseline:.0f} MB "
        f"(accounting check: {base_acc_sub * scale:.0f} MB)"
    )

    rss_growth1 = (rss1 - rss0) / MB
    rss_growth2 = (rss2 - rss1) / MB
    rss_growth3 = (rss3 - rss2) / MB
    full_mb = SERIES * _full_series_bytes() / MB
    bounded = mem1 <= mem2 <= full_mb and mem3 <= full_mb
    flat = abs(rss_growth2) < 0.05 * rss_growth1 + 1.0
    ratio = mem1 / baseline
    print(
        f"process RSS: +{rss_growth1:.1f} MB after day 1, {rss_growth2:+.1f} MB during day 2, "
        f"{rss_growth3:+.1f} MB during the record() loop"
    )
    print(
        f"store: {mem1:.2f} MB (target <= {TARGET_MB:g} MB); naive baseline: {baseline:.0f} MB; "
        f"ratio store/baseline = {ratio:.4f}; after day 2: {mem2:.2f} MB, full size "
        f"{full_mb:.2f} MB (bounded: {'yes' if bounded else 'no'}; RSS flat: "
        f"{'yes' if flat else 'no'})"
    )
    print(
        f"RESULT memory store_mb={mem1:.2f} target_mb={TARGET_MB:g} "
        f"within_target={'yes' if mem1 <= TARGET_MB else 'no'} baseline_mb={baseline:.0f} "
        f"baseline_scaled_from={BASELINE_SERIES}_series ratio={ratio:.4f} day2_mb={mem2:.2f} "
        f"bounded={'yes' if bounded else 'no'} full_mb={full_mb:.2f} "
        f"flat={'yes' if flat else 'no'} rss_day1_mb={rss_growth1:.1f} "
        f"rss_day2_growth_mb={rss_growth2:+.1f} record_us={rec_us:.2f} "
        f"append_us={append_us:.2f} feed_day_s={feed1:.1f}"
    )


def _full_series_bytes() -> int:
    """One series' buffers once every ring has reached its capacity."""
    from console.engine.storage.store import DEFAULT_TIERS, NFIELDS

    rows = sum(int(round(retention / width)) + 1 for width, retention in DEFAULT_TIERS)
    return 3600 * 16 + rows * NFIELDS * 4


if __name__ == "__main__":
    main()
