"""Where a headless console's memory goes: one process, N HTTP targets at 1 s.

Run as a script: `python bench/_memprobe.py N [--seconds S] [--trace FRAMES] [--out FILE]`.
Starts `bench/_endpoints.py` (its own process), then `opsconsole run --headless` *in this
process* on N targets, waits S seconds and reports, from a side thread while the console
runs: RSS and private memory by mapping kind (/proc/self/smaps), glibc's malloc figures
(mallinfo2), pymalloc's blocks, the live objects by type, and with --trace tracemalloc's
top allocation sites (numpy's buffers included: numpy reports them to tracemalloc). Run it
at two N and divide the difference by the difference in N for a per-target figure.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import io
import os
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from _endpoints import server  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def mallinfo() -> dict[str, int]:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    m = libc.mallinfo2()
    return {name: getattr(m, name) for name, _ in _MallInfo2._fields_}


def smaps() -> dict[str, int]:
    """Private (dirty + clean) KB by mapping kind: heap, anonymous, files, stack."""
    out: collections.Counter[str] = collections.Counter()
    kind = "?"
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts[0]) > 8 and not parts[0].endswith(":"):
                name = parts[5] if len(parts) > 5 else ""
                if name == "[heap]":
                    kind = "heap"
                elif name.startswith("["):
                    kind = name
                elif name:
                    kind = "file"
                else:
                    kind = "anon"
            elif parts[0] in ("Private_Dirty:", "Private_Clean:"):
                out[kind] += int(parts[1])
            elif parts[0] == "Rss:":
                out["rss"] += int(parts[1])
    return dict(out)


def report(n: int, trace: int, out: io.TextIOBase) -> None:
    def p(*a: object) -> None:
        print(*a, file=out, flush=True)

    gc.collect()
    mi = mallinfo()
    sm = smaps()
    p(f"N={n} rss_kb={sm['rss']} private_kb: " +
      " ".join(f"{k}={v}" for k, v in sorted(sm.items()) if k != "rss"))
    p(f"N={n} mallinfo2: sbrk_arena={mi['arena'] >> 10}K mmapped={mi['hblkhd'] >> 10}K "
      f"in_use={mi['uordblks'] >> 10}K free={mi['fordblks'] >> 10}K "
      f"free_chunks={mi['ordblks']} topfree={mi['keepcost'] >> 10}K")
    p(f"N={n} pymalloc allocated_blocks={sys.getallocatedblocks()}")
    err = io.StringIO()
    fd = sys.stderr
    # _debugmallocstats writes to C stderr: capture through a temp file on fd 2
    with tempfile.TemporaryFile(mode="w+") as tf:
        saved = os.dup(2)
        os.dup2(tf.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tf.seek(0)
        err.write(tf.read())
    del fd
    for line in err.getvalue().splitlines():
        if any(k in line for k in ("# arenas allocated current", "# bytes in allocated blocks",
                                   "# bytes in available blocks", "unused pools",
                                   "bytes lost to", "Total ", "# arenas highwater")):
            p(f"N={n} pymalloc {line.strip()}")
    if trace:
        snap = tracemalloc.take_snapshot()
        if os.environ.get("MEMPROBE_SNAPSHOT"):  # for Snapshot.compare_to between two N
            snap.dump(os.environ["MEMPROBE_SNAPSHOT"])
        total = sum(s.size for s in snap.statistics("filename"))
        p(f"N={n} tracemalloc total={total >> 10}K")
        for domain in sorted({t.domain for t in snap.traces}):
            sub = snap.filter_traces([tracemalloc.DomainFilter(True, domain)])
            p(f"N={n} tracemalloc domain {domain}: "
              f"{sum(s.size for s in sub.statistics('filename')) >> 10}K")
        for s in snap.statistics("lineno")[:45]:
            p(f"N={n} line {s.size >> 10:7d}K {s.count:8d} {s.traceback[0]}")
        for s in snap.statistics("traceback")[:25]:
            p(f"N={n} tb {s.size >> 10:7d}K {s.count:8d}")
            for fr in list(s.traceback)[-8:]:
                p(f"          {fr}")
    gc.unfreeze()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    p(f"N={n} gc objects {sum(types.values())}")
    for name, count in types.most_common(40):
        p(f"N={n} type {count:8d} {name}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--trace", type=int, default=0, help="tracemalloc frames (0: off)")
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    out = sys.stdout if a.out == "-" else open(a.out, "w")  # noqa: SIM115
    if a.trace:
        tracemalloc.start(a.trace)
    from console.cli import main as cli

    with server(a.n) as srv, tempfile.TemporaryDirectory(prefix="memprobe-") as tmp:
        cfg = Path(tmp) / "scale.toml"
        cfg.write_text("[console]\nrefresh = \"1s\"\n" + "\n".join(
            f'[[targets]]\nkind = "http"\nname = "svc-{i:04d}"\n'
            f'url = "http://127.0.0.1:{port}/health"\ninterval = "1s"\ntimeout = "2s"\n'
            for i, port in enumerate(srv.ports)))
        os.environ["XDG_CONFIG_HOME"] = str(Path(tmp) / "xdg")

        def later() -> None:
            time.sleep(a.seconds)
            r0 = srv.answered()
            time.sleep(5)
            print(f"N={a.n} cadence {(srv.answered() - r0) / (5 * a.n):.1%}", file=out)
            report(a.n, a.trace, out)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=later, daemon=True).start()
        rc = cli(["run", "--headless", "--config", str(cfg), "--data-dir",
                  str(Path(tmp) / "data")])
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
