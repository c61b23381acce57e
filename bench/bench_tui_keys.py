"""TUI responsiveness at scale: key press → screen change, through tmux, at N targets vs 20.

A person's terminal, not a test pilot: the console runs in a tmux session (160x40,
``TERM=xterm-256color``) on a config of N HTTP targets polled every second (local endpoints
in a separate process, `bench/_endpoints.py`), with `--no-history` and a temporary data
directory. After the board is populated and a warm-up, the bench types ``?`` (the Keys
screen) and then Escape (back to the board), ``--presses`` times each, with ``tmux
send-keys``, and measures the time until ``tmux capture-pane`` first shows the change
(the "Keys" title appearing, then gone): what the person waits for.

Baselines, in the same run: a bare Textual app driven the same way (`baseline_keys.py`: what
tmux, the terminal and Textual take) and the console with 20 targets (what a person gets
when the console is small). Targets (issue 15): at 1,000 targets median <= 100 ms and p99 <= 250
ms. The last line starts with `RESULT tui_keys`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _endpoints import server  # noqa: E402

OPSCONSOLE = Path(sys.executable).with_name("opsconsole")
MEDIAN_MS = 100.0
P99_MS = 250.0


def _config(ports: list[int]) -> str:
    out = ['[console]\nrefresh = "1s"\n']
    for i, port in enumerate(ports):
        out.append(f'[[targets]]\nkind = "http"\nname = "svc-{i:04d}"\n'
                   f'url = "http://127.0.0.1:{port}/health"\ninterval = "1s"\ntimeout = "2s"\n')
    return "\n".join(out)


class Tmux:
    """One private tmux server (its own socket) running one session."""

    def __init__(self, sock: str) -> None:
        self.base = ["tmux", "-L", sock]

    def run(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True,
                              timeout=10, check=False).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "bench")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", "bench", *keys)

    def wait(self, cond: Callable[[str], bool], timeout: float) -> float | None:
        """Poll the pane until `cond` holds; the time it took, or None on timeout."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if cond(self.screen()):
                return time.perf_counter() - t0
            time.sleep(0.002)
        return None


@contextlib.contextmanager
def console(ports: list[int] | None, tmp: Path) -> Iterator[Tmux]:
    """The console on `ports` (None: the bare Textual baseline app) in a tmux session."""
    sock = f"opsbench-{os.getpid()}-{len(ports or ())}"
    t = Tmux(sock)
    env = (f"env -u TMUX TERM=xterm-256color COLORTERM=truecolor OPSCONSOLE_DATA_DIR={tmp}/d "
           f"XDG_CONFIG_HOME={tmp}/x XDG_DATA_HOME={tmp}/x")
    if ports is None:
        cmd = f"{env} {sys.executable} {ROOT / 'bench' / 'baseline_keys.py'}"
    else:
        cfg = tmp / "c.toml"
        cfg.write_text(_config(ports))
        cmd = f"{env} {OPSCONSOLE} --config {cfg} --no-history"
    t.run("new-session", "-d", "-x", "160", "-y", "40", "-s", "bench", cmd)
    try:
        yield t
    finally:
        t.keys("q")
        t.wait(lambda s: "opsconsole" not in s, 5.0)
        t.run("kill-server")


def measure(ports: list[int] | None, presses: int, warmup: float) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="opsconsole-keys-") as d, console(ports,
                                                                               Path(d)) as t:
        if t.wait(lambda s: "svc-0000" in s and "? Keys" in s, 120.0) is None:
            raise RuntimeError(f"the board never showed: {t.screen()[-400:]!r}")
        time.sleep(warmup)
        if os.environ.get("BENCH_SHOW"):
            print(t.screen())
        out: list[float] = []
        for _ in range(presses):
            t.keys("?")
            dt = t.wait(lambda s: "Keys" in s.splitlines()[0:6].__str__(), 10.0)
            if dt is None:
                raise RuntimeError("the Keys screen never showed")
            out.append(dt)
            time.sleep(0.3)
            t.keys("Escape")
            dt = t.wait(lambda s: "svc-0000" in s, 10.0)
            if dt is None:
                raise RuntimeError("the board never came back")
            out.append(dt)
            time.sleep(0.3)
        return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=1000)
    ap.add_argument("--presses", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=10.0)
    a = ap.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is not installed (apt-get install tmux)")
        return 1
    bare = measure(None, a.presses, 1.0)
    with server(a.targets) as srv:
        small = measure(srv.ports[:20], a.presses, a.warmup)
        big = measure(srv.ports[: a.targets], a.presses, a.warmup)
    if os.environ.get("BENCH_SHOW"):
        print("1000-target latencies (ms, in order):", [round(x * 1000) for x in big])
    fm = statistics.median(bare) * 1000
    sm, sp = statistics.median(small) * 1000, pct(small, 0.99) * 1000
    m, p = statistics.median(big) * 1000, pct(big, 0.99) * 1000
    print(f"bare Textual app (tmux, terminal, Textual): median {fm:.0f} ms, "
          f"p99 {pct(bare, 0.99) * 1000:.0f} ms")
    print(f"20 targets: key → screen change median {sm:.0f} ms, p99 {sp:.0f} ms")
    print(f"{a.targets} targets: median {m:.0f} ms, p99 {p:.0f} ms "
          f"(targets <= {MEDIAN_MS:.0f} / {P99_MS:.0f} ms); x{m / fm:.2f} the bare app, "
          f"x{m / sm:.2f} the 20-target console")
    ok = m <= MEDIAN_MS and p <= P99_MS
    print(f"RESULT tui_keys targets={a.targets} median_ms={m:.0f} p99_ms={p:.0f} "
          f"bare_median_ms={fm:.0f} small20_median_ms={sm:.0f} small20_p99_ms={sp:.0f} "
          f"ratio_bare={m / fm:.2f} ratio_small={m / sm:.2f} "
          f"target_median_ms<={MEDIAN_MS:.0f} target_p99_ms<={P99_MS:.0f} "
          f"{'PASS' if ok else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
