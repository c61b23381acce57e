"""What one Lighthouse run costs: wall time, CPU (Node and Chromium) and peak memory of the
lighthouse target's probe against the demo frontend, against a bare headless Chromium page
load (`chromium --headless --dump-dom`) of the same page measured in the same run.

Needs the CLI (`npm ci --prefix .ci/lighthouse`) and Chromium (`apt-get install chromium`).
Prints absolute figures and ratios; the RESULT line is informational (no target to meet: the
figures set the default interval, 15 min, and the one-run-at-a-time rule).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from console.demo.stack import DemoStack
from console.engine.config.schema import LighthouseTarget
from console.engine.probes.lighthouse import CHROME_FLAGS, LighthouseProbe

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".ci" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = "/usr/bin/chromium"


def _children() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024


async def _baseline(url: str) -> tuple[float, float]:
    cpu0, _ = _children()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="opsc-bench-") as tmp:
        await asyncio.to_thread(subprocess.run, [CHROMIUM, *CHROME_FLAGS,
                                                 f"--user-data-dir={tmp}", "--dump-dom", url],
                                capture_output=True, timeout=120, check=True)
    return time.monotonic() - t0, _children()[0] - cpu0


async def main(runs: int) -> None:
    async with DemoStack(port=None) as stack:
        url = stack.frontend_url
        await _baseline(url)  # warm-up: disk caches
        base = [await _baseline(url) for _ in range(runs)]
        rows = []
        for form in ("mobile", "desktop"):
            probe = LighthouseProbe(LighthouseTarget(
                name="bench", url=url, lighthouse=str(CLI), chromium=CHROMIUM,
                form_factor=form, timeout=180))
            for _ in range(runs):
                r = await probe.check()
                assert r.error is None, r.error
                rows.append((form, r.metrics["run_s"], r.metrics["run_cpu_s"],
                             r.metrics["performance_score"]))
    _, peak = _children()
    b_wall = sum(w for w, _ in base) / len(base)
    b_cpu = sum(c for _, c in base) / len(base)
    print(f"baseline chromium --dump-dom: wall {b_wall:.2f} s, CPU {b_cpu:.2f} s")
    for form in ("mobile", "desktop"):
        mine = [r for r in rows if r[0] == form]
        wall = sum(r[1] for r in mine) / len(mine)
        cpu = sum(r[2] for r in mine) / len(mine)
        print(f"lighthouse {form}: wall {wall:.1f} s ({wall / b_wall:.1f}x), CPU {cpu:.1f} s "
              f"({cpu / b_cpu:.1f}x), score {mine[-1][3]:g}")
    print(f"peak RSS of one child process (Chromium or Node): {peak:.0f} MB")
    mobile = [r for r in rows if r[0] == "mobile"]
    cpu = sum(r[2] for r in mobile) / len(mobile)
    print(f"RESULT lighthouse run: {cpu:.1f} s CPU ({cpu / b_cpu:.1f}x a bare page load), "
          f"{cpu / 900 * 100:.2f} % of a core at the default 15 min interval")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    asyncio.run(main(parser.parse_args().runs))
