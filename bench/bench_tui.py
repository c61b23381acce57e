"""The console with 100 panels updating at 1 Hz in a 160×40 PTY: CPU and bytes written to the
terminal, against 100 plain Textual `Sparkline`s updated at 1 Hz in the same run.

The console polls 20 local HTTP endpoints every second (served by a separate process, so its
CPU is not counted) and shows 100 panels over their metrics with `[console] refresh = "1s"`.
After a warm-up, CPU is user+system time of the whole process tree (psutil) as a percentage of
one core, and bytes are everything read from the PTY master, over the same measured window.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _endpoints import endpoints  # noqa: E402
from bench_startup import frame_drawn  # noqa: E402
from pty_harness import (  # noqa: E402
    ROOT,
    PtyProcess,
    opsconsole_command,
    python_command,
    terminal_env,
)

TARGET_CPU_PCT = 4.0
TARGET_BYTES_PER_S = 8_000  # 8 KB/s, KB = 1000 bytes
COLUMNS, LINES = 160, 40
# Five panels per target, over the series the engine records for every HTTP check.
PANEL_METRICS = [
    ("latency", "latency_ms", "ms", 'warn = 250.0\ncrit = 1000.0\n'),
    ("latency raw", "latency_ms", "ms", ""),
    ("up", "up", "", 'warn = 0.5\ncrit = 0.5\nlower_is_better = false\n'),
    ("uptime", "uptime", "%", ""),
    ("status", "status", "", ""),
]


@dataclass(frozen=True)
class Measure:
    cpu_pct: float
    bytes_per_s: float
    seconds: float
    screen_top: str


def write_config(path: Path, ports: Sequence[int], panels: int) -> None:
    """20 HTTP targets polled every second and `panels` panels spread over them."""
    out = ['[console]\nrefresh = "1s"\nhistory = false\n']
    names = [f"svc{i:02d}" for i in range(1, len(ports) + 1)]
    for name, port in zip(names, ports, strict=True):
        out.append(
            f'[[targets]]\nkind = "http"\nname = "{name}"\n'
            f'url = "http://127.0.0.1:{port}/health"\ninterval = "1s"\ntimeout = "2s"\n'
        )
    for i in range(panels):
        name = names[i % len(names)]
        label, metric, unit, extra = PANEL_METRICS[(i // len(names)) % len(PANEL_METRICS)]
        out.append(
            f'[[panels]]\nid = "p{i:03d}"\ntitle = "{name} {label}"\ntarget = "{name}"\n'
            f'metric = "{metric}"\nunit = "{unit}"\n{extra}'
        )
    path.write_text("\n".join(out))


def measure(argv: Sequence[str], ready: Callable[[PtyProcess], bool], *, warmup: float,
            seconds: float, env: dict[str, str], quit_key: bytes | None = b"q",
            rows: bool = False) -> Measure:
    """Run `argv` at 160×40; once `ready` holds and `warmup` seconds later, measure for
    `seconds`."""
    with PtyProcess(argv, columns=COLUMNS, lines=LINES, env=env, keep_output=rows) as p:
        if p.wait_for(ready, 60) is None:
            raise RuntimeError(f"{' '.join(argv)}: never ready (exit code {p.returncode})"
                               "\n" + "\n".join(p.display()))
        time.sleep(warmup)
        screen = p.display()
        top = "\n".join(row.rstrip() for row in screen[:3])
        p.stop_screen()  # decoding 100 KB/s of output would compete with the app for CPU
        if p.returncode is not None:
            raise RuntimeError(f"{' '.join(argv)} exited during warm-up ({p.returncode})")
        assert p.cpu is not None
        c0, b0, t0 = p.cpu.sample(), p.bytes_read, time.monotonic()
        start = len(p.output)
        time.sleep(seconds)
        c1, b1, t1 = p.cpu.sample(), p.bytes_read, time.monotonic()
        if rows:
            print_row_bytes(p.snapshot()[start:], screen, t1 - t0)
        if p.returncode is not None:
            raise RuntimeError(f"{' '.join(argv)} exited while measured ({p.returncode})")
        if quit_key:
            p.send(quit_key)
            p.wait(10)
        span = t1 - t0
        return Measure((c1 - c0) / span * 100, (b1 - b0) / span, span, top)


def print_row_bytes(out: bytes, screen: list[str], seconds: float) -> None:
    """Bytes/s written per screen row: Textual starts every update with `ESC[row;colH`."""
    per_row: dict[int, int] = {}
    moves = [(m.start(), int(m.group(1))) for m in re.finditer(rb"\x1b\[(\d+);\d+H", out)]
    for (a, row), (b, _) in zip(moves, [*moves[1:], (len(out), 0)], strict=True):
        per_row[row] = per_row.get(row, 0) + b - a
    print("  bytes/s per screen row:")
    for row, text in enumerate(screen, 1):
        print(f"  {row:3d} {per_row.get(row, 0) / seconds:7.0f} |{text[:100].rstrip()}")


def _board_ready(p: PtyProcess) -> bool:
    """The console's first frame is up and the status board lists the first target."""
    return frame_drawn("opsconsole")(p) and "svc01" in p.text()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds (default 30)")
    ap.add_argument("--targets", type=int, default=20)
    ap.add_argument("--panels", type=int, default=100)
    ap.add_argument("--rows", action="store_true",
                    help="also print the console's bytes/s per screen row (which widget writes)")
    ap.add_argument("--no-split", dest="split", action="store_false",
                    help="skip the headless run (`opsconsole check`) that splits the console's "
                    "CPU into engine and UI")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="opsconsole-bench-") as tmp, \
            endpoints(args.targets) as ports:
        env = terminal_env({
            "OPSCONSOLE_DATA_DIR": tmp,
            "XDG_DATA_HOME": f"{tmp}/data",
            "XDG_CONFIG_HOME": f"{tmp}/config",
            "XDG_STATE_HOME": f"{tmp}/state",
            "XDG_CACHE_HOME": f"{tmp}/cache",
        })
        config = Path(tmp) / "bench.toml"
        write_config(config, ports, args.panels)
        check = subprocess.run(opsconsole_command("validate", "--config", str(config)),
                               capture_output=True, text=True, env=env, timeout=60)
        if check.returncode != 0:
            print(f"generated config rejected:\n{check.stdout}{check.stderr}")
            return 1
        app_cmd = opsconsole_command("--config", str(config), "--no-history")
        base_cmd = python_command(str(ROOT / "bench" / "baseline_sparklines.py"))
        print(f"console:  {' '.join(app_cmd)}  ({args.targets} HTTP targets every 1 s, "
              f"{args.panels} panels, refresh 1 s)", flush=True)
        print(f"baseline: {' '.join(base_cmd)}  (100 Sparklines, new random point each second)",
              flush=True)
        print(f"terminal: {COLUMNS}×{LINES}; warm-up {args.warmup:g} s, then "
              f"{args.seconds:g} s measured", flush=True)
        app = measure(app_cmd, _board_ready, warmup=args.warmup, seconds=args.seconds, env=env,
                      rows=args.rows)
        print("  console screen top:\n    " + app.screen_top.replace("\n", "\n    "), flush=True)
        base = measure(base_cmd, frame_drawn("baseline"), warmup=args.warmup,
                       seconds=args.seconds, env=env)
        headless = None
        if args.split:
            # The same polling without any UI: how much of the console's CPU is the engine.
            last = f"svc{args.targets:02d}"
            headless = measure(
                opsconsole_command("check", "--config", str(config)),
                lambda p: last in p.text(), warmup=args.warmup, seconds=args.seconds,
                env=env, quit_key=None,
            )

    cpu_ok = app.cpu_pct <= TARGET_CPU_PCT
    bytes_ok = app.bytes_per_s <= TARGET_BYTES_PER_S
    cpu_ratio = app.cpu_pct / base.cpu_pct if base.cpu_pct else float("nan")
    bytes_ratio = app.bytes_per_s / base.bytes_per_s if base.bytes_per_s else float("nan")
    print(f"console: CPU {app.cpu_pct:.2f} % of one core (target ≤ {TARGET_CPU_PCT:g} %), "
          f"{app.bytes_per_s / 1000:.2f} KB/s to the terminal (target ≤ "
          f"{TARGET_BYTES_PER_S / 1000:g} KB/s)")
    print(f"baseline 100 Sparklines: CPU {base.cpu_pct:.2f} % of one core, "
          f"{base.bytes_per_s / 1000:.2f} KB/s "
          "(architecture notes: 11.5 %, 105 KB/s)")
    print(f"ratio console/baseline: CPU {cpu_ratio:.2f}, bytes {bytes_ratio:.3f}")
    if headless is not None:
        print(f"of the console's CPU, the same polling headless (opsconsole check) takes "
              f"{headless.cpu_pct:.2f} %; UI and snapshots the other "
              f"{app.cpu_pct - headless.cpu_pct:.2f} %")
    verdict = "PASS" if cpu_ok and bytes_ok else "MISS"
    print(f"RESULT tui cpu_pct={app.cpu_pct:.2f} kb_per_s={app.bytes_per_s / 1000:.2f} "
          f"baseline_cpu_pct={base.cpu_pct:.2f} baseline_kb_per_s={base.bytes_per_s / 1000:.2f} "
          f"cpu_ratio={cpu_ratio:.2f} bytes_ratio={bytes_ratio:.3f} "
          f"target_cpu_pct<={TARGET_CPU_PCT:g} target_kb_per_s<={TARGET_BYTES_PER_S / 1000:g} "
          f"{verdict}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
