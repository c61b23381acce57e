"""Run every `bench/bench_*.py` in turn, stream its output, then summarise the RESULT lines.

`make bench` calls this. Each benchmark is its own process (a crash or a hang in one cannot
spoil the next) and prints a final line starting with `RESULT`; a benchmark that exits non-zero
or prints no RESULT line is reported as failed and makes this script exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent


def _stop(proc: subprocess.Popen[str]) -> None:
    """Interrupt a benchmark (its harness then ends its PTY apps); kill what is left."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for p in tree:  # the apps run in sessions of their own, out of reach of a group kill
        with contextlib.suppress(psutil.Error):
            p.kill()


def run_one(script: Path, timeout: float) -> tuple[int | None, list[str], float]:
    """Run one benchmark, echoing its output line by line; return (code, RESULT lines, s)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    results: list[str] = []
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=BENCH.parent, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )
    watchdog = threading.Timer(timeout, _stop, (proc,))
    watchdog.start()
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sys.stdout.write(f"  {line}")
            sys.stdout.flush()
            if line.startswith("RESULT"):
                results.append(line.rstrip("\n"))
        code: int | None = proc.wait()
    except KeyboardInterrupt:
        _stop(proc)
        raise
    finally:
        watchdog.cancel()
    if time.monotonic() - t0 >= timeout:
        print(f"  {script.name}: stopped after {timeout:g} s")
        code = None
    return code, results, time.monotonic() - t0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*",
                    help="run only these (e.g. startup tui); default: every bench_*.py")
    ap.add_argument("--timeout", type=float, default=900.0,
                    help="seconds one benchmark may take before it is stopped (default 900)")
    args = ap.parse_args(argv)

    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.names:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in args.names}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        missing = wanted - {s.stem.removeprefix("bench_") for s in scripts}
        if missing:
            print(f"no such benchmark: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2

    summary: list[tuple[str, int | None, list[str], float]] = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        code, results, took = run_one(script, args.timeout)
        status = "ok" if code == 0 and results else f"FAILED (exit {code})"
        print(f"== {script.name}: {status}, {took:.0f} s\n", flush=True)
        summary.append((script.name, code, results, took))

    print("== summary")
    failed = False
    for name, code, results, _took in summary:
        if code != 0 or not results:
            failed = True
            print(f"{name}: FAILED (exit {code}{', no RESULT line' if not results else ''})")
        for line in results:
            print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
