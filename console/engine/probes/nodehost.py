"""Remote host probe: another machine's CPU, memory, load, disk and network via node_exporter.

The scrape is the prometheus probe's own (one fetch, size cap, off-loop parse, hard deadline
of timeout + 0.1 s, errors worded the same), told to keep only the node_exporter families
`nodeexp.node_metrics` reads; this module only turns two consecutive good scrapes into the
local host probe's metric names. The first check has no rates (CPU %, bytes/s): a second
scrape a fraction of a second later, as the local probe takes, would double the load on the
host and its cost against the deadline, and node_exporter's CPU counters move in 10 ms steps,
too coarse for a short gap. A failed scrape keeps the previous good one, so the next rate is
taken over the longer gap.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from console.engine.config.schema import HostTarget, PrometheusTarget
from console.engine.lang.promexpr import Scrape
from console.engine.model import CheckResult, Status
from console.engine.probes.http_client import HttpClients
from console.engine.probes.node_metrics import NODE_FAMILIES, node_metrics
from console.engine.probes.prometheus import PrometheusProbe
from console.engine.text.sanitize import one_line

__all__ = ["NodeHostProbe"]

MAX_NAMES = 64  # devices/interfaces listed in details (a host may have hundreds of veths)


class NodeHostProbe:
    """Scrapes one remote HostTarget (with `url`); `check()` never raises (except
    CancelledError)."""

    kind = "host"

    def __init__(
        self, target: HostTarget, clients: HttpClients, *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if target.url is None:
            raise ValueError("a remote host target needs a url")
        self.target = target
        scrape_target = PrometheusTarget(
            name=target.name, url=target.url, headers=dict(target.headers),
            insecure=target.insecure, max_body=target.max_body, timeout=target.timeout,
            interval=target.interval,
        )
        self._scraper = PrometheusProbe(scrape_target, clients, clock=clock,
                                        keep=NODE_FAMILIES.__contains__)
        self._base: Scrape | None = None  # the last good node_exporter scrape

    async def aclose(self) -> None:
        await self._scraper.aclose()

    async def check(self) -> CheckResult:
        r = await self._scraper.check()
        r = dataclasses.replace(r, kind=self.kind)
        if r.status is not Status.UP:
            return r
        cur = self._scraper.previous
        assert cur is not None  # an UP scrape is kept as the previous one
        t = self.target
        before = self._base
        try:
            metrics, details = node_metrics(cur, before, mountpoint=t.mountpoint,
                                            device=t.device, interface=t.interface)
        except ValueError as exc:
            # Not a node_exporter: this scrape is no base for a later good one's rates.
            return dataclasses.replace(r, status=Status.DOWN, error=one_line(str(exc), 300),
                                       metrics={"latency_ms": r.metrics.get("latency_ms", 0.0)})
        self._base = cur
        if before is None:
            details["note"] = "rates (cpu_pct, bytes/s) start with the next check"
        metrics["latency_ms"] = r.metrics.get("latency_ms", r.latency_ms or 0.0)
        # names from the remote body: clean, bounded
        if "devices" in details:
            details["devices"] = _names(details["devices"])
        if "interfaces" in details:
            details["interfaces"] = _names(details["interfaces"])
        details["url"] = r.response.final_url if r.response is not None else ""
        return dataclasses.replace(r, metrics=metrics, details=details)


def _names(names: list[str]) -> list[str]:
    return [one_line(str(n), 64) for n in names[:MAX_NAMES]]
