"""Metric history on disk: 200 HTTP targets x 24 h of 1 s checks, saved as the console saves.

The store is fed what 200 HTTP targets record (6 series each: up, status, status code and
body size, near constant; latency and time to first byte, noisy lognormal), ``--save-every``
simulated minutes at a time (default 10; the runtime saves every minute, which `--save-every
1` reproduces exactly at ten times the bench's run time: each save's record then carries a
tenth of the rows and the same small header), with `save_changes()` after each piece, as the
runtime's periodic save does; a clean stop (`save()`) ends the day. Measured:

* bytes written per hour over the last 18 h (the first hours fill the rings; target
  <= 20 MB/h), against the baseline measured in the same run: rewriting the whole history
  every 5 minutes, as the console did before (one snapshot's size x 12 per hour);
* the files on disk after 24 h and their largest size during the day (snapshot + log,
  before the log is folded into a new snapshot; target <= 50 MB), and the in-memory size
  of the same history for comparison.

The last line starts with `RESULT history_disk`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from console.engine.storage.store import MetricStore  # noqa: E402

WRITE_MB_H = 20.0
DISK_MB = 50.0
T0 = 1_800_000_000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--save-every", type=int, default=10, help="simulated minutes")
    a = ap.parse_args()
    rng = np.random.default_rng(15)
    minutes = int(a.hours * 60)
    w0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="opsconsole-hist-") as tmp:
        path = Path(tmp) / "history.npz"
        store = MetricStore(path=path)
        phase = rng.uniform(0, 1, a.targets)
        scale = rng.uniform(5, 60, a.targets)
        written_at: list[tuple[float, int]] = []
        peak = 0  # snapshot + log, after any save of the day
        step = a.save_every
        k = 60 * step
        for m in range(0, minutes, step):
            for i in range(a.targets):
                ts = T0 + m * 60 + phase[i] + np.arange(float(k)) + rng.normal(0, 0.002, k)
                lat = scale[i] * rng.lognormal(0, 0.3, k)
                name = f"svc-{i:04d}"
                store.record_many(f"{name}:up", ts, np.ones(k))
                store.record_many(f"{name}:status", ts, np.zeros(k))
                store.record_many(f"{name}:latency_ms", ts, lat)
                store.record_many(f"{name}:status_code", ts, np.full(k, 200.0))
                store.record_many(f"{name}:body_bytes", ts, np.full(k, 183.0))
                store.record_many(f"{name}:ttfb_ms", ts, lat * 0.8)
            store.save_changes()
            written_at.append(((m + step) / 60, store.bytes_written))
            log = path.with_name(path.name + ".log")
            peak = max(peak, path.stat().st_size + (log.stat().st_size if log.exists() else 0))
        store.save()  # a clean stop
        log = path.with_name(path.name + ".log")
        disk = path.stat().st_size + (log.stat().st_size if log.exists() else 0)
        snap = path.stat().st_size
        memory = store.memory_bytes()
    lo_h = min(6.0, a.hours / 4)
    first = next(b for h, b in written_at if h >= lo_h)
    last_h, last_b = written_at[-1]
    per_h = (last_b - first) / (last_h - lo_h) / 1e6
    baseline = snap * 12 / 1e6  # the old way: the whole file every 5 minutes
    print(f"{a.targets} targets x 6 series x {a.hours:g} h, saved every {a.save_every} min "
          f"({time.perf_counter() - w0:.0f} s)")
    print(f"  writes: {per_h:.1f} MB/h over hours {lo_h:g}-{last_h:g} (target <= {WRITE_MB_H:g});"
          f" rewriting the whole history every 5 min: {baseline:.0f} MB/h; "
          f"ratio {per_h / baseline:.3f}")
    print(f"  on disk after {a.hours:g} h: {disk / 1e6:.1f} MB, at most {peak / 1e6:.1f} MB "
          f"during the day (target <= {DISK_MB:g}); in memory: {memory / 1e6:.1f} MB")
    ok = per_h <= WRITE_MB_H and max(disk, peak) / 1e6 <= DISK_MB
    print(f"RESULT history_disk write_mb_per_h={per_h:.1f} baseline_rewrite_mb_per_h="
          f"{baseline:.0f} ratio={per_h / baseline:.3f} disk_mb={disk / 1e6:.1f} "
          f"peak_disk_mb={peak / 1e6:.1f} "
          f"memory_mb={memory / 1e6:.1f} target_write<={WRITE_MB_H:g} target_disk<={DISK_MB:g} "
          f"{'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
