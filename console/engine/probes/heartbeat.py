"""Heartbeat monitors: jobs that check in (success, start, fail), late is down.

Pings reach a running console through a spool file under the data directory (`pings.jsonl`,
the crash-safe journal of `storage/journal.py`), whoever sends them: `opsconsole ping NAME`
appends to it directly and the inbound listener's `/ping/NAME` appends to it too. Why a file
and not only the listener: the listener is off by default and needs a token and a port,
while a cron job on the same host can always run the CLI; a ping sent while the console
restarts (or before it starts) is not lost; and every console on the data directory sees
every ping (appends are flock'd lines; each probe follows the file with a cheap `fstat`).

The spool stays small: once it passes `COMPACT_BYTES` (and four times its size after the last
compaction) the console that follows it replaces it with one `ping-state` entry per job, the
job's folded state (`Journal.replace`), so a cron job pinging every minute for a year costs a
line, not 50 MB, and neither a console's start nor `opsconsole ping` reads every ping ever sent.

The probe only reads: late (no success for `period` + `grace`) is DOWN with the time of the
last success, never "no data"; a `fail` after the last success is DOWN; a run (start, then
success) reports its duration as `run_time_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from console.engine.config.schema import HeartbeatTarget
from console.engine.details import HeartbeatDetails
from console.engine.model import CheckResult, Status
from console.engine.storage.journal import Journal
from console.engine.text.fmt import format_duration, format_utc, is_number
from console.engine.text.sanitize import one_line

__all__ = ["PING", "SIGNALS", "HeartbeatProbe", "PingBook", "make_ping",
           "record_ping"]

log = logging.getLogger(__name__)

PING = "ping"  # the journal entry type
STATE = "ping-state"  # one job's folded state, written by a compaction
COMPACT_BYTES = 256 * 1024
"""The spool is compacted past this size (and four times its size after the last one)."""
SIGNALS = ("success", "start", "fail")


def make_ping(name: str, signal: str = "success", *, source: str = "cli",
              note: str | None = None, at: float | None = None) -> dict[str, Any]:
    """A spool entry for one check-in; ValueError for an unknown signal."""
    if signal not in SIGNALS:
        raise ValueError(f"signal {signal!r}: one of {', '.join(SIGNALS)}")
    entry: dict[str, Any] = {"type": PING, "name": one_line(name, 64), "signal": signal,
                             "source": source}
    if note:
        entry["note"] = one_line(note, 300)
    if at is not None:
        entry["ts"] = float(at)
    return entry


def record_ping(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Append one ping durably (blocking: the CLI). OSError when the disk refuses it."""
    journal = Journal(path)
    journal.open()
    try:
        rec = journal.append_sync(entry)
        if not rec.durable:
            raise OSError(journal.degraded or "the ping could not be written")
        return dict(rec.entry)
    finally:
        journal.close_sync()


@dataclass(slots=True)
class JobState:
    """What the pings of one job said, newest of each kind."""

    success: float | None = None
    start: float | None = None
    fail: float | None = None
    fail_note: str = ""
    run_time_s: float | None = None
    pings: int = 0
    last: str = ""  # the latest signal, in the order the spool holds them


class PingBook:
    """Every job's state, folded from the spool; shared by a scheduler's heartbeat probes.

    Opened on first use; `refresh()` reads what was appended since (a `stat` when nothing
    was). Entries are folded and dropped, so memory stays one `JobState` per job name.
    """

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.jobs: dict[str, JobState] = {}
        self.journal: Journal | None = None
        self.error: str | None = None
        self._lock = asyncio.Lock()
        self._compacted = 0  # the spool's size after the last compaction (or attempt)

    async def refresh(self) -> None:
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        if self.journal is None:
            journal = Journal(self.path, clock=self.clock)
            try:
                await asyncio.to_thread(journal.open)
            except OSError as exc:
                journal.close_sync()
                self.error = f"ping spool {self.path} unusable: {exc.strerror or exc}"
                return
            self.error = None
            self.journal = journal
            self._fold(journal.entries)
        else:
            self._fold(self.journal.poll())
        self.journal.entries.clear()
        await self._maybe_compact(self.journal)

    async def _maybe_compact(self, journal: Journal) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size <= max(COMPACT_BYTES, 4 * self._compacted):
            return

        def build(new: list[dict[str, Any]]) -> list[dict[str, Any]]:
            self._fold(new)  # appended by others since the last read
            return [self._state_entry(name, job) for name, job in self.jobs.items()]

        try:
            self._compacted = await asyncio.to_thread(journal.replace, build)
        except OSError as exc:  # the old spool is kept; tried again when it has grown
            self._compacted = size
            log.warning("ping spool %s not compacted: %s", self.path, exc.strerror or exc)
        journal.entries.clear()

    @staticmethod
    def _state_entry(name: str, job: JobState) -> dict[str, Any]:
        return {"type": STATE, "name": name, "success": job.success, "start": job.start,
                "fail": job.fail, "fail_note": job.fail_note, "run_time_s": job.run_time_s,
                "pings": job.pings, "last": job.last}

    def _fold(self, entries: list[dict[str, Any]]) -> None:
        for e in entries:
            if e.get("type") == STATE:  # a compaction's summary of every ping before it
                self.jobs[str(e.get("name"))] = JobState(
                    success=_num(e.get("success")), start=_num(e.get("start")),
                    fail=_num(e.get("fail")), fail_note=str(e.get("fail_note") or ""),
                    run_time_s=_num(e.get("run_time_s")), pings=int(e.get("pings") or 0),
                    last=str(e.get("last") or ""))
                continue
            if e.get("type") != PING or not isinstance(e.get("ts"), int | float):
                continue
            job = self.jobs.setdefault(str(e.get("name")), JobState())
            ts, signal = float(e["ts"]), e.get("signal")
            job.pings += 1
            job.last = str(signal)
            if signal == "start":
                job.start = ts
            elif signal == "fail":
                job.fail, job.fail_note = ts, str(e.get("note") or "")
            elif signal == "success":
                if job.start is not None and (job.success is None or job.start > job.success):
                    job.run_time_s = max(0.0, ts - job.start)
                job.success = ts

    async def append(self, entry: dict[str, Any]) -> None:
        """Record a ping from the listener (the spool opened if need be)."""
        async with self._lock:
            await self._refresh()
            if self.journal is None:
                raise OSError(self.error or "ping spool unusable")
            rec = await self.journal.append(entry)
            # what the append read back: this ping, and any another writer appended
            # meanwhile (folding only this one lost those)
            self._fold(self.journal.entries)
            if not rec.durable:  # kept in memory, not in the file: not read back
                self._fold([rec.entry])
            self.journal.entries.clear()

    async def aclose(self) -> None:
        if self.journal is not None:
            await self.journal.close()
            self.journal = None


def _num(v: Any) -> float | None:
    return float(v) if is_number(v) else None  # a time or duration a state line holds


def judge(target: HeartbeatTarget, job: JobState | None, watched_since: float, now: float
          ) -> tuple[Status, str | None, dict[str, float], HeartbeatDetails]:
    """(status, error, metrics, details) of a job at `now`: late or failed is DOWN."""
    job = job or JobState()
    metrics: dict[str, float] = {}
    base = job.success if job.success is not None else watched_since
    due = base + target.period
    late = now - due
    metrics["late_s"] = max(0.0, late)
    if job.success is not None:
        metrics["since_success_s"] = now - job.success
    if job.run_time_s is not None:
        metrics["run_time_s"] = job.run_time_s
    details: HeartbeatDetails = {
        "last_success": job.success, "last_start": job.start, "last_fail": job.fail,
        "due": due, "pings": job.pings}
    every = f"expected every {format_duration(target.period)}"
    if target.grace:
        every += f" + {format_duration(target.grace)} grace"
    last = ("never checked in" if job.success is None
            else f"last success {format_utc(job.success)} "
                 f"({format_duration(now - job.success)} ago)")
    if job.last == "fail" and job.fail is not None:
        note = f": {job.fail_note}" if job.fail_note else ""
        return Status.DOWN, f"the job reported a failure at {format_utc(job.fail)}{note}", \
            metrics, details
    if job.last == "start" and job.start is not None:
        details["running_s"] = now - job.start
        if target.max_runtime is not None and now - job.start > target.max_runtime:
            return Status.DOWN, (f"running for {format_duration(now - job.start)}, longer "
                                 f"than max_runtime {format_duration(target.max_runtime)}"), \
                metrics, details
    if late > target.grace:
        return Status.DOWN, f"late by {format_duration(late)}: {last}, {every}", metrics, \
            details
    if late > 0:
        return Status.DEGRADED, f"due {format_duration(late)} ago (within grace): {last}", \
            metrics, details
    return Status.UP, None, metrics, details


class HeartbeatProbe:
    """Reads the job's state from the shared `PingBook`; never touches the network."""

    def __init__(self, target: HeartbeatTarget, book: PingBook | None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.target = target
        self.book = book
        self.clock = clock
        self.watched_since = clock()  # a job never seen is late one period after this

    async def check(self) -> CheckResult:
        t = self.target
        now = self.clock()
        if self.book is None:
            return CheckResult(t.name, t.kind, Status.DOWN, now, None,
                               error="no data directory: pings have nowhere to arrive")
        await self.book.refresh()
        if self.book.error is not None:
            return CheckResult(t.name, t.kind, Status.DOWN, now, None, error=self.book.error)
        job = self.book.jobs.get(t.name)
        status, error, metrics, details = judge(t, job, self.watched_since, now)
        return CheckResult(t.name, t.kind, status, now, None, error=error,
                           reasons=(error,) if error and status != Status.UP else (),
                           metrics=metrics, details=details)

    async def aclose(self) -> None:
        return None
