"""This machine rendered as node_exporter would serve it: the demo's "remote host" `web-1`.

`node_exporter_text()` renders this machine's psutil values under node_exporter's own family
names, labels and number formatting; `console.engine.probes.node_metrics` reads it back like
any other node_exporter.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from console.engine.probes.node_metrics import (
    CPU,
    CPU_MODES,
    DISK_READ,
    DISK_WRITTEN,
    FS_AVAIL,
    FS_FREE,
    FS_SIZE,
    LOAD1,
    NET_RX,
    NET_TX,
    NODE_EXPORTER_DISK_EXCLUDE,
)

__all__ = ["NodeSample", "collect_node_sample", "go_float", "node_exporter_text"]


# -- rendering this machine's --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSample:
    """This machine's counters as node_exporter reports them (all in bytes and seconds)."""

    cpus: list[dict[str, float]]  # per cpu: mode -> seconds (node_exporter's 8 modes)
    memory: dict[str, float]  # MemTotal, MemAvailable, MemFree, Buffers, Cached
    load: tuple[float, float, float]
    filesystems: list[tuple[str, str, str, float, float, float]] = field(default_factory=list)
    # ^ (device, fstype, mountpoint, size, free, avail)
    disks: dict[str, tuple[float, float]] = field(default_factory=dict)  # read, written
    nics: dict[str, tuple[float, float]] = field(default_factory=dict)  # receive, transmit
    guest: list[tuple[float, float]] = field(default_factory=list)  # per cpu: user, nice
    boot_time: float = 0.0


def collect_node_sample() -> NodeSample:
    """This machine's values now (blocking; psutil, imported here so the module loads
    without it). A filesystem that cannot be read is left out, as node_exporter does."""
    import psutil

    cpus: list[dict[str, float]] = []
    guest: list[tuple[float, float]] = []
    for t in psutil.cpu_times(percpu=True):
        cpus.append({m: float(getattr(t, m, 0.0)) for m in CPU_MODES})
        guest.append((float(getattr(t, "guest", 0.0)), float(getattr(t, "guest_nice", 0.0))))
    vm = psutil.virtual_memory()
    memory = {"MemTotal": vm.total, "MemAvailable": vm.available, "MemFree": vm.free,
              "Buffers": getattr(vm, "buffers", 0), "Cached": getattr(vm, "cached", 0)}
    filesystems = []
    for part in psutil.disk_partitions(all=False):
        try:
            du = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        # psutil: free = available to non-root; used = size - free-to-root
        filesystems.append((part.device, part.fstype, part.mountpoint, float(du.total),
                            float(du.total - du.used), float(du.free)))
    disks = {name: (float(d.read_bytes), float(d.write_bytes))
             for name, d in (psutil.disk_io_counters(perdisk=True) or {}).items()
             if not NODE_EXPORTER_DISK_EXCLUDE.match(name)}
    nics = {name: (float(n.bytes_recv), float(n.bytes_sent))
            for name, n in psutil.net_io_counters(pernic=True).items()}
    return NodeSample(cpus=cpus, memory={k: float(v) for k, v in memory.items()},
                      load=os.getloadavg(), filesystems=filesystems, disks=disks, nics=nics,
                      guest=guest, boot_time=float(psutil.boot_time()))


def go_float(v: float) -> str:
    """A number as node_exporter (Go's strconv 'g', shortest) writes it: 1.6589606912e+10,
    0.52, 123456."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "0"
    d = Decimal(repr(float(v)))
    sign, digits, exp = d.normalize().as_tuple()
    assert isinstance(exp, int)
    x = exp + len(digits) - 1  # exponent of the leading digit
    s = "-" if sign else ""
    if x < -4 or x >= 6:  # Go: %e below 1e-4 and from 1e6 on, when shortest
        mant = "".join(map(str, digits))
        mant = mant[0] + ("." + mant[1:] if len(mant) > 1 else "")
        return f"{s}{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    return s + format(abs(d.normalize()), "f")


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(out: list[str], name: str, kind: str, help_text: str,
            rows: Iterable[tuple[dict[str, str], float]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in rows:
        inner = ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))
        out.append(f"{name}{{{inner}}} {go_float(value)}" if inner
                   else f"{name} {go_float(value)}")


def node_exporter_text(sample: NodeSample | None = None) -> str:
    """`sample` (default: this machine now) in node_exporter 1.x's text exposition: families
    sorted by name, labels sorted, numbers in Go's format. A subset of its collectors: cpu,
    meminfo, filesystem, loadavg, diskstats (bytes), netdev (bytes), stat (boot time)."""
    s = sample if sample is not None else collect_node_sample()
    out: list[str] = []
    _family(out, "node_boot_time_seconds", "gauge", "Node boot time, in unixtime.",
            [({}, s.boot_time or time.time())])
    if s.guest:
        _family(out, "node_cpu_guest_seconds_total", "counter",
                "Seconds the CPUs spent in guests (VMs) for each mode.",
                [({"cpu": str(i), "mode": m}, v) for i, g in enumerate(s.guest)
                 for m, v in zip(("nice", "user"), (g[1], g[0]), strict=True)])
    _family(out, CPU, "counter", "Seconds the CPUs spent in each mode.",
            [({"cpu": str(i), "mode": m}, modes.get(m, 0.0)) for i, modes in enumerate(s.cpus)
             for m in CPU_MODES])
    if s.disks:
        _family(out, DISK_READ, "counter", "The total number of bytes read successfully.",
                [({"device": d}, rw[0]) for d, rw in sorted(s.disks.items())])
        _family(out, DISK_WRITTEN, "counter",
                "The total number of bytes written successfully.",
                [({"device": d}, rw[1]) for d, rw in sorted(s.disks.items())])
    fs_rows = sorted(s.filesystems, key=lambda f: (f[0], f[2]))

    def fs_labels(f: tuple[str, str, str, float, float, float]) -> dict[str, str]:
        return {"device": f[0], "device_error": "", "fstype": f[1], "mountpoint": f[2]}

    if fs_rows:
        _family(out, FS_AVAIL, "gauge", "Filesystem space available to non-root users in bytes.",
                [(fs_labels(f), f[5]) for f in fs_rows])
        _family(out, FS_FREE, "gauge", "Filesystem free space in bytes.",
                [(fs_labels(f), f[4]) for f in fs_rows])
        _family(out, FS_SIZE, "gauge", "Filesystem size in bytes.",
                [(fs_labels(f), f[3]) for f in fs_rows])
    _family(out, LOAD1, "gauge", "1m load average.", [({}, s.load[0])])
    _family(out, "node_load15", "gauge", "15m load average.", [({}, s.load[2])])
    _family(out, "node_load5", "gauge", "5m load average.", [({}, s.load[1])])
    for key in sorted(s.memory):
        name = f"node_memory_{key}_bytes"
        _family(out, name, "gauge", f"Memory information field {key}_bytes.",
                [({}, s.memory[key])])
    if s.nics:
        _family(out, NET_RX, "counter", "Network device statistic receive_bytes.",
                [({"device": d}, v[0]) for d, v in sorted(s.nics.items())])
        _family(out, NET_TX, "counter", "Network device statistic transmit_bytes.",
                [({"device": d}, v[1]) for d, v in sorted(s.nics.items())])
    return "\n".join(out) + "\n"
