"""1,000 remote series from a real Prometheus: CPU per refresh and bytes from the store per minute.

Run: ``python bench/bench_promql.py`` (about a minute; needs /usr/bin/prometheus and promtool).

The board: 20 panels (10 hosts' CPU and 10 figures over all hosts) and 5 charts over 24 h, on
1,000 series `bench_cpu{host=...}` served by an exporter in its own process (its CPU is not
counted).

* **remote**: a `promql` target asks a real Prometheus 2.42 for the board every refresh: one
  instant query returning the 1,000 series (stored per label, as rules per label need) and
  nine aggregates (avg, max, min, p50, p95, sum, stddev, counts over 50 and 80), then the 5
  charts as `query_range` over 24 h at the step a 160-column chart needs (270 s, 321 points).
  Prometheus holds a real day: 24 h of 5-minute history backfilled with
  `promtool tsdb create-blocks-from openmetrics`, then live scrapes every 10 s.
* **baseline, the console's own polling** (measured in the same run): a `prometheus` scrape
  target polls the same exporter (all 1,000 series parsed every refresh), its panels are the
  10 hosts and what the console can sum itself, and the 5 charts come from the console's
  own store, filled with a day of 10 s samples.

Per refresh (one check, the 20 panels, the 5 charts) the CPU time of this process is taken
(time.process_time: the console's work only, Prometheus and the exporter are other
processes). Bytes per minute: what came over the wire from the store (remote) or the
exporter (baseline) at a 10 s refresh, the remote charts re-fetched at the detail view's
cadence (every span/1000 s: 86 s for 24 h) and, in brackets, if they were fetched every
refresh.

    remote: X ms CPU per refresh, Y KB/min from Prometheus (Z KB/min with charts every refresh)
    own polling: X' ms CPU per refresh, Y' KB/min from the exporter
    RESULT promql cpu_ms=X baseline_cpu_ms=X' cpu_ratio=X/X' kb_per_min=Y
           baseline_kb_per_min=Y' bytes_ratio=Y/Y' series=1000 panels=20 charts=5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from console.engine.config.schema import Settings  # noqa: E402
from console.engine.scheduler import Scheduler  # noqa: E402
from tests.promservers import PROMTOOL, Prometheus  # noqa: E402

SPAN = 86400.0
CHART_POINTS = 320  # a 160-column chart: two braille dots per cell
INTERVAL = 10.0
AGGREGATES = {
    "cpu_avg": "avg(bench_cpu)", "cpu_max": "max(bench_cpu)", "cpu_min": "min(bench_cpu)",
    "cpu_p50": "quantile(0.5, bench_cpu)", "cpu_p95": "quantile(0.95, bench_cpu)",
    "cpu_sum": "sum(bench_cpu)", "cpu_stddev": "stddev(bench_cpu)",
    "busy_hosts": "count(bench_cpu > 50)", "hot_hosts": "count(bench_cpu > 80) or vector(0)",
}
CHARTS = ["cpu_avg", "cpu_max", "cpu_p95", "cpu_sum", "busy_hosts"]


def start_exporter(n: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "_exporter.py"), str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(json.loads(line)["port"])


def backfill(prom: Prometheus, n: int, now: float) -> None:
    """A day of 5-minute samples of every series, written as TSDB blocks by promtool."""
    rng = random.Random(1)
    end = int(now) - 600
    lines = ["# HELP bench_cpu CPU busy percent", "# TYPE bench_cpu gauge"]
    for h in range(n):
        base = rng.random() * 80
        for k in range(int(SPAN // 300), 0, -1):
            lines.append(f'bench_cpu{{host="h{h:04d}"}} '
                         f"{base + 10 * ((k * 7 + h) % 13) / 13:.3f} {end - k * 300}")
    lines.append("# EOF")
    src = prom.dir / "backfill.om"
    src.write_text("\n".join(lines) + "\n")
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(src),
                    str(prom.dir / "data")], check=True, capture_output=True, timeout=300)
    src.unlink()


def remote_settings(url: str, n: int) -> Settings:
    hosts = [f"h{h:04d}" for h in range(10)]
    return Settings.model_validate({
        "targets": [{"name": "remote", "kind": "promql", "url": url, "interval": "10s",
                     "timeout": "10s", "max_series": max(n, 500), "alerts": False,
                     "metrics": {"cpu": "bench_cpu", **AGGREGATES}}],
        "panels": [{"title": f"cpu {h}", "target": "remote", "metric": f'cpu{{host="{h}"}}',
                    "unit": "%", "warn": 80, "crit": 95} for h in hosts]
        + [{"title": name, "target": "remote", "metric": name} for name in
           [*AGGREGATES, "latency_ms"][:10]],
        "console": {"playbook_dashboards": False}})


def own_settings(url: str) -> Settings:
    hosts = [f"h{h:04d}" for h in range(18)]
    metrics = {f"cpu_{h}": f'bench_cpu{{host="{h}"}}' for h in hosts}
    metrics["cpu_sum"] = "bench_cpu"
    metrics["cpu_avg"] = "bench_cpu * 0.001"
    return Settings.model_validate({
        "targets": [{"name": "own", "kind": "prometheus", "url": url, "interval": "10s",
                     "timeout": "10s", "metrics": metrics}],
        "panels": [{"title": name, "target": "own", "metric": name}
                   for name in list(metrics)[:20]],
        "console": {"playbook_dashboards": False}})


async def remote_run(url: str, n: int, refreshes: int) -> dict[str, float]:
    engine = Scheduler(remote_settings(url, n))
    await engine.start(poll=False)
    try:
        state = engine._states["remote"]
        probe = state.probe
        assert probe is not None
        await engine.check_target(state)  # warm-up: connections, buildinfo, first series
        for name in CHARTS:
            await engine.remote_history("remote", name, SPAN, CHART_POINTS)
        checks = charts = 0.0
        b0 = probe.bytes_read  # type: ignore[attr-defined]
        chart_bytes = 0
        for _ in range(refreshes):
            now = time.time()
            t0 = time.process_time()
            result = await engine.check_target(state)
            engine.panel_views(now=now)
            t1 = time.process_time()
            c0 = probe.bytes_read  # type: ignore[attr-defined]
            answers = await asyncio.gather(*(engine.remote_history(
                "remote", name, SPAN, CHART_POINTS, now) for name in CHARTS))
            checks += t1 - t0
            charts += time.process_time() - t1
            chart_bytes += probe.bytes_read - c0  # type: ignore[attr-defined]
            if result.error or any(a is None or a.get("error") for a in answers):
                raise SystemExit(f"the remote board failed: {result.error or answers}")
        total_bytes = probe.bytes_read - b0  # type: ignore[attr-defined]
        series = sum(1 for s in engine.store.series() if s.startswith("remote:cpu{"))
        store_mb = engine.store.memory_bytes() / 1e6
        points = [len(s["t"]) for a in answers if a for s in a["series"]]
    finally:
        await engine.stop()
    return {"check_ms": checks / refreshes * 1e3, "chart_ms": charts / refreshes * 1e3,
            "query_bytes": (total_bytes - chart_bytes) / refreshes,
            "chart_bytes": chart_bytes / refreshes, "series": series, "store_mb": store_mb,
            "points": float(max(points) if points else 0)}


async def own_run(url: str, refreshes: int) -> dict[str, float]:
    engine = Scheduler(own_settings(url))
    await engine.start(poll=False)
    try:
        state = engine._states["own"]
        # a day of 10 s samples for the charted series, as a console running for a day has
        now = time.time()
        ts = np.arange(now - SPAN, now - INTERVAL, INTERVAL)
        rng = np.random.default_rng(3)
        for name in CHARTS[:4] + ["latency_ms"]:
            engine.store.record_many(f"own:{name}", ts, rng.random(len(ts)) * 100)
        await engine.check_target(state)  # warm-up
        cpu = 0.0
        body = 0
        for _ in range(refreshes):
            now = time.time()
            t0 = time.process_time()
            result = await engine.check_target(state)
            engine.panel_views(now=now)
            for name in CHARTS[:4] + ["latency_ms"]:
                engine.store.history(f"own:{name}", SPAN, 120, now=now)
            cpu += time.process_time() - t0
            if result.error or result.response is None:
                raise SystemExit(f"the own board failed: {result.error}")
            body += result.response.body_bytes
    finally:
        await engine.stop()
    return {"cpu_ms": cpu / refreshes * 1e3, "bytes": body / refreshes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--refreshes", type=int, default=12)
    args = ap.parse_args()
    exporter, port = start_exporter(args.series)
    prom = Prometheus([f"127.0.0.1:{port}"], scrape="10s")
    try:
        t0 = time.monotonic()
        backfill(prom, args.series, time.time())
        prom.start()
        print(f"Prometheus up with a backfilled day of {args.series} series "
              f"({time.monotonic() - t0:.1f} s)")
        # the first live scrape: the instant queries need the exporter's current samples
        deadline = time.monotonic() + 60
        while True:
            answer = prom.query("count(bench_cpu)", time.time())
            if answer and int(float(answer[0]["value"][1])) >= args.series:
                break
            if time.monotonic() > deadline:
                raise SystemExit("Prometheus never scraped the exporter")
            time.sleep(0.5)
        remote = asyncio.run(remote_run(prom.url, args.series, args.refreshes))
        own = asyncio.run(own_run(f"http://127.0.0.1:{port}/metrics", args.refreshes))
    finally:
        prom.close()
        assert exporter.stdin is not None
        exporter.stdin.close()
        exporter.wait(10)
    per_min = 60.0 / INTERVAL
    chart_every = max(5.0, SPAN / 1000)  # the detail view's re-fetch of a 24 h chart
    remote_ms = remote["check_ms"] + remote["chart_ms"]
    remote_kb = (remote["query_bytes"] * per_min + remote["chart_bytes"] * 60 / chart_every) / 1e3
    remote_kb_all = (remote["query_bytes"] + remote["chart_bytes"]) * per_min / 1e3
    own_kb = own["bytes"] * per_min / 1e3
    print(f"remote: {remote['series']:.0f} series stored per label "
          f"({remote['store_mb']:.0f} MB of metric store), charts of {remote['points']:.0f} "
          "points")
    print(f"remote: {remote_ms:.1f} ms CPU per refresh (check and panels "
          f"{remote['check_ms']:.1f} ms, 5 charts {remote['chart_ms']:.1f} ms), "
          f"{remote_kb:.0f} KB/min from Prometheus ({remote_kb_all:.0f} KB/min with charts "
          f"every refresh)")
    print(f"own polling: {own['cpu_ms']:.1f} ms CPU per refresh, {own_kb:.0f} KB/min from "
          "the exporter")
    print(f"ratio remote/own: CPU {remote_ms / own['cpu_ms']:.2f}, bytes "
          f"{remote_kb / own_kb:.2f}")
    print(f"RESULT promql cpu_ms={remote_ms:.1f} baseline_cpu_ms={own['cpu_ms']:.1f} "
          f"cpu_ratio={remote_ms / own['cpu_ms']:.2f} kb_per_min={remote_kb:.0f} "
          f"baseline_kb_per_min={own_kb:.0f} bytes_ratio={remote_kb / own_kb:.2f} "
          f"series={remote['series']:.0f} store_mb={remote['store_mb']:.0f} panels=20 "
          "charts=5")


if __name__ == "__main__":
    main()
