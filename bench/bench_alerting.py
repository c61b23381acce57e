"""CPU cost of alerting: the playbook's rules on 100 targets, per check result and per tick.

Run: ``python bench/bench_alerting.py`` (a few seconds).

100 targets (half HTTP, half Prometheus with error_pct and p95_ms) hold 10 minutes of 1 s
samples; the shipped default rules apply to 400 (rule, target) pairs. It times

1. one rule round for one target, as `AlertService` runs on every check result;
2. one full round over every pair, as its tick does every 2 s;

and, as the baseline measured in the same run, the cost of recording one check result's
samples into the store (what the engine already pays per result). At 100 targets polled
once a second the per-result figure times 100 is the alerting CPU share of one core.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.engine.alerting.lifecycle import AlertEngine  # noqa: E402
from console.engine.alerting.rules import RuleSet, TargetInfo
from console.engine.config.rules import default_rules  # noqa: E402
from console.engine.storage.store import MetricStore  # noqa: E402

T0 = 1_800_000_000.0


def main() -> None:
    rng = random.Random(7)
    store = MetricStore()
    targets = [TargetInfo(f"t{i}", "http" if i % 2 else "prometheus", 1.0, "app")
               for i in range(100)]
    for k in range(600):
        for t in targets:
            store.record(f"{t.name}:up", T0 + k, 1.0)
            store.record(f"{t.name}:latency_ms", T0 + k, rng.random() * 100)
            if t.kind == "prometheus":
                store.record(f"{t.name}:error_pct", T0 + k, rng.random())
                store.record(f"{t.name}:p95_ms", T0 + k, rng.random() * 300)
    rules = RuleSet(default_rules(), targets)
    engine = AlertEngine(rules, store, clock=lambda: T0)
    now = T0 + 599
    engine.run(now)  # create the alerts

    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        engine.run(now)
    full = (time.perf_counter() - t0) / reps

    t0 = time.perf_counter()
    for _ in range(reps):
        for t in targets:
            engine.run(now, target=t.name)
    per_result = (time.perf_counter() - t0) / (reps * len(targets))

    t0 = time.perf_counter()
    k = 600
    for _ in range(reps):
        for t in targets:
            store.record(f"{t.name}:up", T0 + k, 1.0)
            store.record(f"{t.name}:latency_ms", T0 + k, 5.0)
            store.record(f"{t.name}:status", T0 + k, 0.0)
        k += 1
    record = (time.perf_counter() - t0) / (reps * len(targets))

    print(f"pairs: {len(rules.pairs(store))} (rules {len(rules.rules)}, targets {len(targets)})")
    print(f"per check result: {per_result * 1e3:.3f} ms "
          f"(recording its samples: {record * 1e3:.3f} ms, ratio {per_result / record:.1f}x)")
    print(f"full round (tick): {full * 1e3:.2f} ms")
    share = (per_result * 100 + full / 2) * 100
    print(f"100 targets at 1 Hz + tick every 2 s: {share:.1f} % of one core")
    print(f"RESULT alerting per_result_ms={per_result * 1e3:.3f} tick_ms={full * 1e3:.2f} "
          f"cpu_pct_100_targets={share:.1f} vs_record={per_result / record:.1f}x")


if __name__ == "__main__":
    main()
