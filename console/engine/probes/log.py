"""Log probe: follow a JSON-lines (winston) file and turn each interval's lines into rates.

One `LogProbe` per `log` target. Each check reads what was appended since the previous one
(bounded per check by `max_read`, off the event loop; see `logtail`), parses it, and
reports per-second rates over the time since the previous check, cumulative counters for
`increase()` rules, and keeps the last `RING` parsed lines for the Logs screen. A missing or
unreadable file is DOWN with the reason; lines that are not JSON are counted, never fatal.

Error-level lines are also sorted into kinds (`errorkinds`: the message with numbers, ids and
quoted values normalised): a kind never seen before counts in `new_error_kinds_total` and its
message is shown in `details["new_errors"]` (the playbook's Sentry rule "first seen error",
P2). The kinds seen are kept in the user data dir (`log-errors/`, next to the metric
history), so a restart does not announce every known error again. On the very first run
(no saved state) the kinds in the last `SEED_BYTES` of the file before the follow point are
learnt silently, so errors the service was already throwing do not all look new.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from console.engine.config.schema import LogTarget
from console.engine.details import LogDetails, LogErrorCount
from console.engine.logs.errorkinds import ErrorKinds, state_path
from console.engine.logs.tail import (
    ERROR_LEVELS,
    WARN_LEVELS,
    LogFollower,
    LogLine,
    LogUnavailable,
    open_regular,
    parse_line,
)
from console.engine.model import CheckResult, Status
from console.engine.probes.catalog import LOG_OTHER_LEVELS as OTHER_LEVELS
from console.engine.text.redact import describe_exception
from console.engine.text.sanitize import one_line

__all__ = ["RING", "LogProbe"]

RING = 2000  # parsed lines kept for the UI
NON_JSON_SHOWN = 5  # excerpts of recent non-JSON lines in a result's details
SEED_BYTES = 1_000_000  # first run: error kinds learnt from this much of the file's tail
SAVE_EVERY = 60.0  # seconds between saves when only "last seen" order changed
ERROR_WINDOW = 60.0  # recent error messages (an alert's cause) are counted over this long
ERRORS_KEPT = 500


@dataclass(slots=True)
class _Batch:
    # only the last RING parsed lines are kept: a big catch-up read is counted line by line
    # without holding every parsed record at once
    lines: deque[LogLine] = field(default_factory=lambda: deque(maxlen=RING))
    count: int = 0
    by_level: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    warns: int = 0
    slow: int = 0
    non_json: int = 0
    json_lines: int = 0
    rotated: bool = False
    truncated: bool = False
    backlog: int = 0
    position: int = 0
    new_kinds: int = 0
    new_kinds_total: int = 0
    new_errors: list[str] = field(default_factory=list)
    error_messages: deque[str] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))
    non_json_seen: deque[str] = field(default_factory=lambda: deque(maxlen=NON_JSON_SHOWN))


class LogProbe:
    """Follows one LogTarget's file; `check()` never raises (except CancelledError)."""

    kind = "log"

    def __init__(
        self, target: LogTarget, *, clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        state_dir: Path | str | None = None, seed_bytes: int = SEED_BYTES,
    ) -> None:
        self.target = target
        self._clock = clock
        self._monotonic = monotonic
        self._slow_ms = float(target.slow_ms)
        self._follower = LogFollower(target.path, max_bytes=int(target.max_read))
        self._lock = threading.Lock()  # a read abandoned by a timeout finishes before the next
        self.recent: deque[LogLine] = deque(maxlen=RING)
        self.appended = 0  # lines ever added to `recent` (the UI's change counter)
        self.non_json_total = 0
        self.lines_total = 0
        self.errors_total = 0
        self._non_json_seen: deque[str] = deque(maxlen=NON_JSON_SHOWN)
        self._errors_seen: deque[tuple[float, str]] = deque(maxlen=ERRORS_KEPT)
        self._last_t = monotonic()
        # Without a state directory (a one-shot command) the kinds seen live in memory only.
        self.kinds = ErrorKinds(None if state_dir is None else
                                state_path(Path(state_dir), target.name, target.path))
        self._kinds_ready = False
        self._seed_bytes = max(0, seed_bytes)
        self._seed_end: int | None = None  # where following began: the seed reads before it
        self._saved_at = monotonic()
        # Open now (cheap, and errors are for check() to report) so lines written before
        # the first check already count for it.
        with contextlib.suppress(OSError):
            self._follower.read()
            self._seed_end = self._follower.position

    async def aclose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._follower.close()
            if self.kinds.dirty:
                self.kinds.save()

    def _prepare_kinds(self) -> None:
        """Load the saved kinds; on a first run, learn those already in the file's tail."""
        self._kinds_ready = True
        if self.kinds.load() or not self._seed_bytes or not self._seed_end:
            return
        end = self._seed_end
        start = max(0, end - self._seed_bytes)
        try:
            with open_regular(self.target.path) as fh:
                fh.seek(start)
                data = fh.read(end - start)
        except OSError:
            return
        lines = data.split(b"\n")
        if start > 0:
            lines = lines[1:]  # the first piece is the end of a line cut in two
        for raw in lines[:-1]:  # the last piece is after the follow point's last newline
            line = parse_line(raw)
            if line.record is not None and line.level in ERROR_LEVELS:
                self.kinds.remember(line.message or line.raw)
        self.kinds.save()

    def _read(self) -> _Batch:
        """Blocking: read and parse what was appended (runs in a worker thread)."""
        with self._lock:
            res = self._follower.read()
            b = _Batch(rotated=res.rotated, truncated=res.truncated, backlog=res.backlog,
                       position=self._follower.position)
            slow_ms = self._slow_ms
            if not self._kinds_ready:
                self._prepare_kinds()
            kinds = self.kinds
            for raw in res.lines:
                if not raw.strip():
                    continue
                line = parse_line(raw)
                b.lines.append(line)
                b.count += 1
                if line.record is None:
                    b.non_json += 1
                    b.non_json_seen.append(one_line(line.raw, 200))
                    continue
                b.json_lines += 1
                if line.level in OTHER_LEVELS:
                    b.by_level[line.level] = b.by_level.get(line.level, 0) + 1
                if line.level in ERROR_LEVELS:
                    b.errors += 1
                    b.error_messages.append(one_line(line.message or line.raw, 120))
                    if kinds.observe(line.message or line.raw):
                        b.new_kinds += 1
                elif line.level in WARN_LEVELS:
                    b.warns += 1
                if line.response_time is not None and line.response_time > slow_ms:
                    b.slow += 1
            b.new_kinds_total = kinds.total
            b.new_errors = list(kinds.recent)
            now = self._monotonic()
            if b.new_kinds or (kinds.dirty and now - self._saved_at >= SAVE_EVERY):
                kinds.save()
                self._saved_at = now
            return b

    async def check(self) -> CheckResult:
        started = self._clock()
        t0 = time.perf_counter()
        try:
            batch = await asyncio.to_thread(self._read)
        except LogUnavailable as exc:
            return self._down(started, str(exc))
        except OSError as exc:
            return self._down(started, f"cannot read {self.target.path}: "
                                       f"{describe_exception(exc)}")
        now = self._monotonic()
        elapsed = max(now - self._last_t, 1e-3)
        self._last_t = now
        n = batch.count
        self.lines_total += n
        self.errors_total += batch.errors
        self.non_json_total += batch.non_json
        self._non_json_seen.extend(batch.non_json_seen)
        self._errors_seen.extend((now, m) for m in batch.error_messages)
        self.recent.extend(batch.lines)
        self.appended += n
        metrics = {
            "lines_per_s": n / elapsed,
            "errors_per_s": batch.errors / elapsed,
            "warn_per_s": batch.warns / elapsed,
            "error_pct": 100.0 * batch.errors / batch.json_lines if batch.json_lines else 0.0,
            "slow_requests_per_s": batch.slow / elapsed,
            **{f"{lv}_per_s": batch.by_level.get(lv, 0) / elapsed for lv in OTHER_LEVELS},
            "non_json_lines_total": float(self.non_json_total),
            "lines_total": float(self.lines_total),
            "errors_total": float(self.errors_total),
            "new_error_kinds_total": float(batch.new_kinds_total),
        }
        details: LogDetails = {
            "path": one_line(self.target.path, 300),
            "interval_s": round(elapsed, 6),
            "lines": n, "errors": batch.errors, "warnings": batch.warns, "slow": batch.slow,
            "non_json": batch.non_json, "rotated": batch.rotated,
            "truncated": batch.truncated, "backlog_bytes": batch.backlog,
            "position": batch.position, "new_error_kinds": batch.new_kinds,
        }
        if batch.new_errors:
            details["new_errors"] = batch.new_errors  # newest first, one line each
        recent = self._recent_errors(now)
        if recent:
            details["recent_errors"] = recent
        if self._non_json_seen:
            details["recent_non_json"] = list(self._non_json_seen)
        reasons: tuple[str, ...] = ()
        if batch.backlog:
            reasons = (f"{batch.backlog} bytes behind (reading {self.target.max_read} "
                       f"bytes per check)",)
        return CheckResult(
            target=self.target.name, kind=self.kind, status=Status.UP, started_at=started,
            latency_ms=(time.perf_counter() - t0) * 1000.0, reasons=reasons,
            metrics=metrics, details=details,
        )

    def _recent_errors(self, now: float, top: int = 5) -> list[LogErrorCount]:
        """The commonest error messages of the last minute, with their counts: what an
        errors alert names as its cause."""
        seen = self._errors_seen
        while seen and now - seen[0][0] > ERROR_WINDOW:
            seen.popleft()
        counts: dict[str, int] = {}
        for _, message in seen:
            counts[message] = counts.get(message, 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return [{"message": m, "count": n} for m, n in ranked]

    def _down(self, started: float, error: str) -> CheckResult:
        self._last_t = self._monotonic()
        return CheckResult(
            target=self.target.name, kind=self.kind, status=Status.DOWN, started_at=started,
            latency_ms=None, error=one_line(error, 300),
        )
