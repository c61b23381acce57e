"""Another host's node_exporter read as the local host probe's metrics.

`node_metrics()` turns two scrapes of a node_exporter into the metric names the local host
probe reports (cpu_pct, memory_pct, disk_used_pct, load1, memory bytes, disk and network
bytes/s), so a dashboard, a rule or a panel treats every host alike.

Choices, made so a remote host's numbers agree with the local probe's (psutil):

- cpu_pct is 100 * (1 - Δ(idle + iowait) / Δ(all modes)) summed over every cpu, as
  `psutil.cpu_percent()` and `top` count it: iowait is time the CPU had nothing to run.
  node_exporter's modes (user, nice, system, idle, iowait, irq, softirq, steal) exclude guest
  time, which Linux already counts inside user/nice (node_cpu_guest_seconds_total is not read),
  matching psutil, which subtracts guest from its total.
- memory_pct is 100 * (1 - MemAvailable / MemTotal), psutil's `virtual_memory().percent`.
- disk_used_pct is psutil's (and df's) used / (used + available to non-root), with
  used = size - free; that is a little more than 1 - avail/size, because the blocks reserved
  for root count neither way. Without node_filesystem_free_bytes it falls back to
  1 - avail/size.
- Rates are per-second increases between the two scrapes, summed over the chosen devices or
  interfaces; if any of them went down (a counter reset: reboot, driver reload) that metric
  has no value for the interval, rather than a made-up one. A device that appears between
  scrapes is left out of that interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from console.engine.details import HostDetails
from console.engine.lang.promexpr import LabelKey, Scrape

__all__ = [
    "DEFAULT_DEVICE_EXCLUDE",
    "DEFAULT_INTERFACE_EXCLUDE",
    "NODE_FAMILIES",
    "node_metrics",
]

CPU = "node_cpu_seconds_total"
MEM_TOTAL = "node_memory_MemTotal_bytes"
MEM_AVAILABLE = "node_memory_MemAvailable_bytes"
FS_SIZE = "node_filesystem_size_bytes"
FS_FREE = "node_filesystem_free_bytes"
FS_AVAIL = "node_filesystem_avail_bytes"
FS_ERROR = "node_filesystem_device_error"
LOAD1 = "node_load1"
DISK_READ = "node_disk_read_bytes_total"
DISK_WRITTEN = "node_disk_written_bytes_total"
NET_RX = "node_network_receive_bytes_total"
NET_TX = "node_network_transmit_bytes_total"

# The sample names node_metrics() reads: a scrape keeps only these (a node_exporter body is
# ~2000 series, most of them irrelevant here).
NODE_FAMILIES = frozenset({CPU, MEM_TOTAL, MEM_AVAILABLE, FS_SIZE, FS_FREE, FS_AVAIL, FS_ERROR,
                           LOAD1, DISK_READ, DISK_WRITTEN, NET_RX, NET_TX})

# Pseudo devices, and partitions, whose bytes their whole disk already counts (node_exporter's
# own default exclude, plus loop/ram/zram, which it excludes too, and mmcblk partitions).
DEFAULT_DEVICE_EXCLUDE = re.compile(
    r"(z?ram|loop|fd|(h|s|v|xv)d[a-z]+|nvme\d+n\d+p|mmcblk\d+p)\d+")
DEFAULT_INTERFACE_EXCLUDE = re.compile(r"lo")
# node_exporter's diskstats default --collector.diskstats.device-exclude, for rendering.
NODE_EXPORTER_DISK_EXCLUDE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")
CPU_MODES = ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
_IDLE_MODES = frozenset({"idle", "iowait"})


# -- reading another host's --------------------------------------------------------------------


def _labels(key: LabelKey) -> dict[str, str]:
    return dict(key)


def _increase(cur: dict[LabelKey, float], prev: dict[LabelKey, float],
              use: Callable[[LabelKey], bool]) -> tuple[float, int] | None:
    """Summed increase of the chosen series present in both scrapes, and how many there
    were; None after a counter reset in any of them."""
    total = 0.0
    n = 0
    for key, value in cur.items():
        if not use(key):
            continue
        before = prev.get(key)
        if before is None:
            continue
        if value < before:
            return None
        total += value - before
        n += 1
    return total, n


def _chooser(pattern: str | None, default_exclude: re.Pattern[str]) -> Callable[[LabelKey], bool]:
    """Series filter on the `device` label: the configured regex, whole-name, or the default
    exclusions."""
    if pattern is not None:
        wanted = re.compile(pattern)
        return lambda key: wanted.fullmatch(_labels(key).get("device", "")) is not None
    return lambda key: default_exclude.fullmatch(_labels(key).get("device", "")) is None


def _filesystem(scrape: Scrape, mountpoint: str) -> tuple[float, float, float | None] | None:
    """(size, avail, free or None) of the filesystem mounted at `mountpoint`; of several
    (an old rootfs line next to the real one, a mount stacked on another) the largest."""
    errors = scrape.get(FS_ERROR)
    avail = scrape.get(FS_AVAIL)
    free = scrape.get(FS_FREE)
    best: tuple[float, float, float | None] | None = None
    for key, size in scrape.get(FS_SIZE).items():
        if _labels(key).get("mountpoint") != mountpoint or key not in avail:
            continue
        if errors.get(key, 0.0) or size <= 0 or not math.isfinite(size):
            continue
        if best is None or size > best[0]:
            best = (size, avail[key], free.get(key))
    return best


def node_metrics(
    cur: Scrape,
    prev: Scrape | None,
    *,
    mountpoint: str = "/",
    device: str | None = None,
    interface: str | None = None,
) -> tuple[dict[str, float], HostDetails]:
    """The local probe's metrics from a node_exporter scrape (and the one before, for rates),
    plus details: cpus, mountpoint, devices and interfaces summed, interval_s, and `missing`,
    a note naming what the body lacked. Raises ValueError when the body has none of the
    node_exporter families at all (the url is not a node_exporter)."""
    if not any(cur.get(name) for name in NODE_FAMILIES):
        raise ValueError(
            f"not a node_exporter /metrics: none of {CPU}, {MEM_TOTAL}, {LOAD1}, "
            f"{FS_SIZE}, {DISK_READ}, {NET_RX} among its {cur.series} series")
    metrics: dict[str, float] = {}
    missing: list[str] = []
    cpus = {_labels(k).get("cpu", "") for k in cur.get(CPU)}
    details: HostDetails = {"cpus": len(cpus), "mountpoint": mountpoint}

    total = cur.get(MEM_TOTAL)
    avail = cur.get(MEM_AVAILABLE)
    if total and avail and sum(total.values()) > 0:
        t, a = sum(total.values()), sum(avail.values())
        metrics["memory_pct"] = min(100.0, max(0.0, 100.0 * (1.0 - a / t)))
        metrics["memory_used_bytes"] = t - a
        metrics["memory_total_bytes"] = t
    else:
        missing.append(MEM_AVAILABLE if total else MEM_TOTAL)

    fs = _filesystem(cur, mountpoint)
    if fs is not None:
        size, free_user, free_root = fs
        if free_root is not None:
            used = size - free_root
            pct = 100.0 * used / (used + free_user) if used + free_user > 0 else 0.0
        else:
            pct = 100.0 * (1.0 - free_user / size)
        metrics["disk_used_pct"] = min(100.0, max(0.0, pct))
    elif cur.get(FS_SIZE):
        missing.append(f"filesystem at {mountpoint}")
    else:
        missing.append(FS_SIZE)

    load = cur.get(LOAD1)
    if load:
        metrics["load1"] = next(iter(load.values()))
    else:
        missing.append(LOAD1)

    use_disk = _chooser(device, DEFAULT_DEVICE_EXCLUDE)
    use_nic = _chooser(interface, DEFAULT_INTERFACE_EXCLUDE)
    details["devices"] = sorted({_labels(k).get("device", "") for k in cur.get(DISK_READ)
                                 if use_disk(k)})
    details["interfaces"] = sorted({_labels(k).get("device", "") for k in cur.get(NET_RX)
                                    if use_nic(k)})
    for name in (CPU, DISK_READ, DISK_WRITTEN, NET_RX, NET_TX):
        if not cur.get(name):
            missing.append(name)

    if prev is not None and cur.at > prev.at:
        dt = cur.at - prev.at
        details["interval_s"] = round(dt, 6)
        cpu_cur, cpu_prev = cur.get(CPU), prev.get(CPU)
        all_inc = _increase(cpu_cur, cpu_prev, lambda k: True)
        idle_inc = _increase(cpu_cur, cpu_prev,
                             lambda k: _labels(k).get("mode") in _IDLE_MODES)
        if all_inc is not None and idle_inc is not None and all_inc[0] > 0:
            busy = all_inc[0] - idle_inc[0]
            metrics["cpu_pct"] = min(100.0, max(0.0, 100.0 * busy / all_inc[0]))
        for metric, family, use in (
            ("disk_read_bytes_per_s", DISK_READ, use_disk),
            ("disk_write_bytes_per_s", DISK_WRITTEN, use_disk),
            ("net_rx_bytes_per_s", NET_RX, use_nic),
            ("net_tx_bytes_per_s", NET_TX, use_nic),
        ):
            inc = _increase(cur.get(family), prev.get(family), use)
            if inc is not None and inc[1]:
                metrics[metric] = inc[0] / dt
    if missing:
        details["missing"] = ", ".join(missing)
    return metrics, details
