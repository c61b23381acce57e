"""Soak: the console's resident memory over 30 minutes at 200 HTTP targets polled every second.

`make bench-soak` (not part of `make bench`: it takes ~33 minutes). A child process runs the
console's runtime exactly as `opsconsole run --headless` does (`--child`: the same
`Runtime`, history on, GC tuned, a temporary data directory) against local endpoints in a
separate process (`bench/_endpoints.py`), and reports every 30 s its RSS and the bytes its
metric store holds. Beside it, for the same 30 minutes, the bare aiohttp loop of the scale
bench (`bench/_bare_loop.py`) polls the same endpoints: the baseline.

Figures, after the first two minutes (start-up and warm caches excluded):

* RSS growth of the console (target <= 5 MB) and of the bare loop;
* of the console's growth, how much is its metric history filling its rings (which grow as
  data arrives, up to a fixed size per series: an hour of raw samples and of 10 s rows,
  24 h of 1 min rows) and how much is anything else (a leak would show there).

The last line starts with `RESULT soak`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

GROWTH_MB = 5.0


async def child(ports: list[int], minutes: float, every: float) -> None:
    """The console's runtime, reporting (t, rss, store bytes) as JSON lines on stdout."""
    from bench_scale import _config

    from console.engine.config.loader import load_config_text
    from console.engine.paths import DataPaths
    from console.engine.runtime import Runtime

    me = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="opsconsole-soak-") as tmp:
        rt = Runtime(load_config_text(_config(ports)), DataPaths(Path(tmp)), role="headless",
                     tune_gc=True)
        await rt.start()
        t0 = time.monotonic()
        try:
            while time.monotonic() - t0 < minutes * 60:
                print(json.dumps({"t": time.monotonic() - t0, "rss": me.memory_info().rss,
                                  "store": rt.store.memory_bytes()}), flush=True)
                await asyncio.sleep(every)
        finally:
            await rt.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=32.0)
    ap.add_argument("--every", type=float, default=30.0)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        asyncio.run(child(json.loads(a.child), a.minutes, a.every))
        return 0
    from _endpoints import server

    rows: list[dict[str, float]] = []
    bare_rss: list[tuple[float, int]] = []
    with server(a.targets * 2) as srv:
        ports = srv.ports[: a.targets]
        bare = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_bare_loop.py"), "1",
                                 *map(str, srv.ports[a.targets:])], stdin=subprocess.PIPE)
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(ports),
                                 "--minutes", str(a.minutes), "--every", str(a.every)],
                                stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        assert proc.stdout is not None
        t0 = time.monotonic()
        try:
            for line in proc.stdout:
                row = json.loads(line)
                rows.append(row)
                with_bare = psutil.Process(bare.pid).memory_info().rss
                bare_rss.append((time.monotonic() - t0, with_bare))
                print(f"  {row['t'] / 60:5.1f} min  console RSS {row['rss'] / 1e6:7.1f} MB "
                      f"(history {row['store'] / 1e6:6.1f} MB)  bare loop "
                      f"{with_bare / 1e6:6.1f} MB", flush=True)
        finally:
            proc.wait(60)
            assert bare.stdin is not None
            bare.stdin.close()
            bare.wait(20)
    after = [r for r in rows if r["t"] >= 120]
    if len(after) < 2:
        print("RESULT soak too short MISS")
        return 1
    first, last = after[0], after[-1]
    growth = (max(r["rss"] for r in after) - first["rss"]) / 1e6
    store = (last["store"] - first["store"]) / 1e6
    b_after = [rss for t, rss in bare_rss if t >= 120]
    b_growth = (max(b_after) - b_after[0]) / 1e6
    other = growth - store
    span = (last["t"] - first["t"]) / 60
    print(f"over {span:.0f} min after the first two: console RSS +{growth:.1f} MB "
          f"(target <= {GROWTH_MB:g}), of which metric history filling its rings "
          f"+{store:.1f} MB and the rest +{other:.1f} MB; bare loop +{b_growth:.1f} MB")
    ok = growth <= GROWTH_MB
    print(f"RESULT soak targets={a.targets} minutes={span:.0f} rss_growth_mb={growth:.1f} "
          f"history_growth_mb={store:.1f} other_growth_mb={other:.1f} "
          f"bare_growth_mb={b_growth:.1f} target_mb<={GROWTH_MB:g} {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
