"""CLI start-up: each headless command's wall time against a bare aiohttp script, same run.

The baseline is what a user would write instead of `opsconsole check --once --json URL`: a
Python script that imports aiohttp and does one GET (`BARE` below). Each command runs as a
fresh process against a local endpoint (`bench/_endpoints.py`, its own process), with the
bytecode compiled first (as an installed console runs), in a temporary data directory with
an empty journal:

    check --once --json URL, validate, incidents --json, report --json, alerts --json

Runs alternate (bare, then each command, ``--runs`` times) so drift hits all alike; the
figure is each command's median over the bare script's median. Target: every ratio <= 1.3.
The last line starts with `RESULT cli`.

The console is measured as a user installs it: a throwaway virtualenv in a temporary
directory, `pip install ROOT` (not editable) with every dependency pinned to the version the
running interpreter's environment has (`pip freeze` as constraints; pip's cache makes this
~1-2 minutes), bytecode compiled; both the bare script and `opsconsole` run with that
virtualenv's interpreter. A development venv differs from a user's install in what it
imports: an editable install's finder, and `click` (which import-linter brings) makes httpx
import its own command line (rich, pygments: ~44 ms, encode/httpx#3547). If the install
fails, the bench says so and measures the running environment instead (`--venv current`
asks for that directly). The venv measured is printed.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _endpoints import endpoints  # noqa: E402
from _install import install_for  # noqa: E402

OPSCONSOLE = Path(sys.executable).with_name("opsconsole")
TARGET = 1.3
BARE = """
import asyncio, sys
import aiohttp

async def main():
    async with aiohttp.ClientSession() as s:
        async with s.get(sys.argv[1]) as r:
            await r.read()
            print(r.status)

asyncio.run(main())
"""


def _time(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run, to the process's exit. The wait is a blocking waitpid with a
    watchdog thread, not `subprocess.run(timeout=...)`: with a timeout, Popen.wait polls
    with sleeps of up to 50 ms, which rounded every figure up to the next 50 ms step
    (215, 265, 415 ms), ±20 % of the bare script's time."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        proc.wait()
    finally:
        watchdog.cancel()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--venv", choices=["install", "current"], default="install",
                    help="install: a fresh non-editable install (default); current: the "
                    "running interpreter's environment")
    a = ap.parse_args()
    with contextlib.ExitStack() as stack:
        python, oc = sys.executable, str(OPSCONSOLE)
        installed = install_for(stack, a.venv, "opsconsole-cli-venv-")
        if installed is not None:
            python, oc = installed
            measured = f"a fresh non-editable install ({Path(python).parent.parent})"
        else:
            compileall.compile_dir(str(ROOT / "console"), quiet=1)
            measured = f"the current environment ({sys.prefix})"
        print(f"measuring: {measured}")
        return _measure(a.runs, python, oc)


def _measure(runs: int, python: str, oc: str) -> int:
    with endpoints(1) as ports, tempfile.TemporaryDirectory(prefix="opsconsole-cli-") as tmp:
        url = f"http://127.0.0.1:{ports[0]}/health"
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE)
        cfg = Path(tmp) / "c.toml"
        cfg.write_text(f'[[targets]]\nkind = "http"\nname = "api"\nurl = "{url}"\n'
                       'interval = "10s"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPSCONSOLE_")}
        env.update(OPSCONSOLE_DATA_DIR=str(Path(tmp) / "data"),
                   XDG_CONFIG_HOME=str(Path(tmp) / "xdg"), XDG_DATA_HOME=str(Path(tmp) / "xdg"))
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        (data / "journal.jsonl").touch()  # an empty journal: report and incidents run whole
        commands = {
            "check": [oc, "check", "--once", "--json", url],
            "validate": [oc, "validate", "--config", str(cfg)],
            "incidents": [oc, "incidents", "--json", "--all", "--config", str(cfg)],
            "report": [oc, "report", "--json", "--config", str(cfg)],
            "alerts": [oc, "alerts", "--json", "--config", str(cfg)],
        }
        variants = {"bare": [python, str(bare), url], **commands}
        for argv in variants.values():  # warm-up: page cache, bytecode
            _time(argv, env)
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(runs):
            for name, argv in variants.items():
                times[name].append(_time(argv, env))
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["bare"]
    print(f"bare aiohttp script (import + one GET): {base * 1000:.0f} ms (median of {runs})")
    ratios = {}
    for name in commands:
        ratios[name] = med[name] / base
        print(f"  {name:10s} {med[name] * 1000:6.0f} ms  x{ratios[name]:.2f}")
    ok = all(r <= TARGET for r in ratios.values())
    parts = " ".join(f"{k}_ratio={v:.2f}" for k, v in ratios.items())
    print(f"RESULT cli bare_ms={base * 1000:.0f} {parts} target<={TARGET} "
          f"{'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
