"""Host probe: this machine's CPU, memory, load, disk and network through psutil.

With a `url` the target is another machine, read through its node_exporter
(`nodehost.NodeHostProbe`, to which `HostProbe` hands the checks); the metric names are the
same.

Rates (CPU %, bytes/s) are deltas between this probe's own consecutive samples, never
`psutil.cpu_percent()`'s process-wide "since the last call" state, which any other caller
would disturb. The first check takes a short second sample so it has a rate too. psutil
reads /proc, which is quick, but `disk_usage` on a stuck mount can block: every sample is
taken in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from console.engine.config.schema import HostTarget
from console.engine.details import HostDetails
from console.engine.model import CheckResult, Status
from console.engine.text.redact import describe_exception
from console.engine.text.sanitize import one_line

if TYPE_CHECKING:
    from console.engine.probes.http_client import HttpClients
    from console.engine.probes.nodehost import NodeHostProbe

__all__ = ["HostProbe", "HostSample", "sample_host"]

FIRST_GAP = 0.25  # seconds between the two samples of a first check


@dataclass(frozen=True, slots=True)
class HostSample:
    at: float  # monotonic
    cpu_busy: float
    cpu_total: float
    disk_read: int | None
    disk_write: int | None
    net_rx: int
    net_tx: int


def _psutil() -> Any:
    """psutil, imported when first needed: without it only host targets fail (DOWN)."""
    try:
        import psutil
    except ImportError:
        raise RuntimeError("psutil is not installed (pip install 'psutil>=7')") from None
    return psutil


def sample_host() -> HostSample:
    """Cumulative counters now (blocking, cheap)."""
    psutil = _psutil()
    t = psutil.cpu_times()
    # Linux counts guest time inside user/nice already: leave it out of the total, as
    # psutil.cpu_percent() does (and node_exporter's modes do, so remote hosts agree).
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    idle = t.idle + getattr(t, "iowait", 0.0)
    disk = psutil.disk_io_counters()  # None in some containers
    net = psutil.net_io_counters()
    return HostSample(
        at=time.monotonic(), cpu_busy=total - idle, cpu_total=total,
        disk_read=disk.read_bytes if disk else None,
        disk_write=disk.write_bytes if disk else None,
        net_rx=net.bytes_recv, net_tx=net.bytes_sent,
    )


def _rate(new: int | None, old: int | None, dt: float) -> float | None:
    if new is None or old is None or new < old:  # counter wrap or reset: no rate this time
        return None
    return (new - old) / dt


class HostProbe:
    """Samples the local host; `check()` never raises (except CancelledError)."""

    kind = "host"

    def __init__(
        self, target: HostTarget, clients: HttpClients | None = None, *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clients` (the engine's shared HTTP pool) is needed only for a remote host (url)."""
        self.target = target
        self._clock = clock
        self._prev: HostSample | None = None
        self._remote: NodeHostProbe | None = None
        if target.url is not None:
            from console.engine.probes.nodehost import NodeHostProbe

            if clients is None:
                raise ValueError("a remote host target (url) needs the shared HttpClients")
            self._remote = NodeHostProbe(target, clients, clock=clock)

    async def aclose(self) -> None:
        if self._remote is not None:
            await self._remote.aclose()

    def _collect(self) -> tuple[HostSample, HostSample, dict[str, Any]]:
        prev = self._prev
        if prev is None:
            prev = sample_host()
            time.sleep(FIRST_GAP)
        cur = sample_host()
        psutil = _psutil()
        vm = psutil.virtual_memory()
        du = psutil.disk_usage(self.target.disk_path)
        extra = {"memory_pct": vm.percent, "disk_used_pct": du.percent,
                 "load1": os.getloadavg()[0], "memory_used_bytes": vm.total - vm.available,
                 "memory_total_bytes": vm.total}
        return prev, cur, extra

    async def check(self) -> CheckResult:
        if self._remote is not None:
            return await self._remote.check()
        started = self._clock()
        t0 = time.perf_counter()
        # A first check waits FIRST_GAP between its two samples: that wait is not the time
        # reading the host took, and would sit in the latency p95 for an hour.
        waited = FIRST_GAP if self._prev is None else 0.0
        try:
            prev, cur, extra = await asyncio.to_thread(self._collect)
        except Exception as exc:  # noqa: BLE001 - a check reports, it never raises
            why = str(exc) if isinstance(exc, RuntimeError) else describe_exception(exc)
            return CheckResult(
                target=self.target.name, kind=self.kind, status=Status.DOWN,
                started_at=started, latency_ms=None,
                error=one_line(f"cannot read host metrics: {why}", 300),
            )
        self._prev = cur
        dt = max(cur.at - prev.at, 1e-3)
        metrics: dict[str, float] = {}
        busy, total = cur.cpu_busy - prev.cpu_busy, cur.cpu_total - prev.cpu_total
        if total > 0:
            metrics["cpu_pct"] = min(100.0, max(0.0, 100.0 * busy / total))
        metrics.update({k: float(v) for k, v in extra.items()})
        for name, new, old in (
            ("disk_read_bytes_per_s", cur.disk_read, prev.disk_read),
            ("disk_write_bytes_per_s", cur.disk_write, prev.disk_write),
            ("net_rx_bytes_per_s", cur.net_rx, prev.net_rx),
            ("net_tx_bytes_per_s", cur.net_tx, prev.net_tx),
        ):
            r = _rate(new, old, dt)
            if r is not None:
                metrics[name] = r
        details: HostDetails = {"cpus": os.cpu_count() or 0,
                                "disk_path": self.target.disk_path, "interval_s": round(dt, 6)}
        return CheckResult(
            target=self.target.name, kind=self.kind, status=Status.UP, started_at=started,
            latency_ms=max(0.0, time.perf_counter() - t0 - waited) * 1000.0, metrics=metrics,
            details=details,
        )
