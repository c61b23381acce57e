"""Prometheus scrape cost: CPU per scrape of a 200-series exposition, 200 targets at once.

Setup: 200 local endpoints (`bench/_endpoints.py`, a separate process, so the server's CPU
never counts) each serving the same realistic 200-series text exposition: Go runtime and
process gauges, an `http_requests_total` counter by handler/method/code and a request
duration histogram, as an instrumented web service exposes them. This process measures its
own CPU (`time.process_time`, all threads: the parser pool included) per scrape for:

  (a) baseline: a bare aiohttp GET of the body plus the fastest correct parse there is
      (`console.engine.lang.promtext.fast_families`, exact to prometheus_client);
  (b) opsconsole: `PrometheusProbe.check()` with two derived metrics (a rate and a
      histogram quantile) and the default breakdown tables (endpoints, status), as the
      console runs every 5 s;
  (c) informational: prometheus_client's parser alone on the same text, per scrape.

Rounds of 200 concurrent scrapes run in interleaved blocks; the figure is the median of
per-block ratios (b)/(a), and (b)'s absolute ms per scrape against the issue's target of
<= 3 ms. The last line starts with `RESULT prometheus`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _endpoints import server  # noqa: E402

from console.engine.config.schema import PrometheusTarget  # noqa: E402
from console.engine.lang.promtext import fast_families  # noqa: E402
from console.engine.model import Status  # noqa: E402
from console.engine.probes.http_client import HttpClients  # noqa: E402
from console.engine.probes.prometheus import PrometheusProbe  # noqa: E402

TARGET_MS = 3.0
Round = Callable[[], Awaitable[None]]


def exposition(series: int = 200) -> str:
    """A web service's /metrics with about `series` samples."""
    out = []
    for name, help_ in (("go_goroutines", "Goroutines."), ("go_threads", "Threads."),
                        ("process_resident_memory_bytes", "RSS."),
                        ("process_cpu_seconds_total", "CPU.")):
        kind = "counter" if name.endswith("_total") else "gauge"
        out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} 12345.5"]
    out += ["# HELP http_requests_total Requests.", "# TYPE http_requests_total counter"]
    handlers = [f"/api/v1/item{i}" for i in range(12)]
    n = 4
    for h in handlers:
        for method in ("GET", "POST"):
            for code in ("200", "404", "500"):
                out.append(f'http_requests_total{{handler="{h}",method="{method}",'
                           f'code="{code}"}} {n * 7919 % 100000}')
                n += 1
    out += ["# HELP http_request_duration_seconds Latency.",
            "# TYPE http_request_duration_seconds histogram"]
    les = ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "+Inf"]
    for h in handlers[: max(1, (series - n) // (len(les) + 2))]:
        acc = 0
        for le in les:
            acc += 13
            out.append(f'http_request_duration_seconds_bucket{{handler="{h}",le="{le}"}} {acc}')
        out.append(f'http_request_duration_seconds_sum{{handler="{h}"}} {acc * 0.031:.3f}')
        out.append(f'http_request_duration_seconds_count{{handler="{h}"}} {acc}')
        n += len(les) + 2
    while n < series:
        out.append(f'app_queue_depth{{queue="q{n}"}} {n % 17}')
        n += 1
    return "\n".join(out) + "\n"


async def _bare(urls: list[str]) -> tuple[Round, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def one(url: str) -> None:
        async with session.get(url) as r:
            text = (await r.read()).decode("utf-8", errors="replace")
        assert fast_families(text) is not None

    async def run() -> None:
        await asyncio.gather(*(one(u) for u in urls))

    return run, session.close


async def _probes(urls: list[str]) -> tuple[Round, Callable[[], Awaitable[None]]]:
    clients = HttpClients()
    probes = [PrometheusProbe(PrometheusTarget(
        name=f"svc{i}", url=u, interval=5, timeout=5,
        metrics={"req_rate": "rate(http_requests_total)",
                 "p95": "histogram_quantile(0.95, http_request_duration_seconds)"}),
        clients) for i, u in enumerate(urls)]

    async def run() -> None:
        results = await asyncio.gather(*(p.check() for p in probes))
        bad = [r for r in results if r.status is not Status.UP]
        assert not bad, bad[0].error

    async def close() -> None:
        for p in probes:
            await p.aclose()
        await clients.aclose()

    return run, close


async def _measure(run: Round, rounds: int) -> float:
    gc.collect()
    t0 = time.process_time()
    for _ in range(rounds):
        await run()
    return time.process_time() - t0


async def main(n: int, rounds: int, blocks: int) -> int:
    text = exposition()
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "metrics.txt"
        body.write_text(text)
        with server(n, body) as srv:
            urls = [f"http://127.0.0.1:{p}/metrics" for p in srv.ports]
            variants = {"bare fetch + fast parse": await _bare(urls),
                        "opsconsole PrometheusProbe": await _probes(urls)}
            for run, _ in variants.values():
                for _ in range(3):
                    await run()
            per: dict[str, list[float]] = {k: [] for k in variants}
            names = list(variants)
            for b in range(blocks):
                for name in names[b % 2:] + names[: b % 2]:
                    cpu = await _measure(variants[name][0], rounds)
                    per[name].append(cpu / (rounds * n) * 1000)
            for _, close in variants.values():
                await close()
    from prometheus_client.parser import text_string_to_metric_families

    t0 = time.process_time()
    for _ in range(20):
        for fam in text_string_to_metric_families(text):
            list(fam.samples)
    ref_ms = (time.process_time() - t0) / 20 * 1000
    t0 = time.process_time()
    for _ in range(20):
        fast_families(text)
    fast_ms = (time.process_time() - t0) / 20 * 1000
    base, probe = per["bare fetch + fast parse"], per["opsconsole PrometheusProbe"]
    ratio = statistics.median(p / b for p, b in zip(probe, base, strict=True))
    med_p, med_b = statistics.median(probe), statistics.median(base)
    print(f"{n} targets x {text.count(chr(10)) - text.count('# ')} samples, "
          f"{blocks} blocks x {rounds} rounds")
    print(f"  bare fetch + fast parse   {med_b:6.2f} ms CPU/scrape")
    print(f"  opsconsole probe          {med_p:6.2f} ms CPU/scrape  x{ratio:.2f}")
    print(f"  parse alone: prometheus_client {ref_ms:.2f} ms, fast path {fast_ms:.2f} ms")
    ok = med_p <= TARGET_MS
    print(f"RESULT prometheus probe_ms={med_p:.2f} baseline_ms={med_b:.2f} ratio={ratio:.2f} "
          f"reference_parse_ms={ref_ms:.2f} fast_parse_ms={fast_ms:.2f} "
          f"target_ms<={TARGET_MS} {'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=8)
    a = ap.parse_args()
    sys.exit(asyncio.run(main(a.targets, a.rounds, a.blocks)))
