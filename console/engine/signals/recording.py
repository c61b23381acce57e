"""Record what a console received, and play it back: `--record FILE`, `opsconsole replay`.

A recording is orjson lines (gzip when the name ends in ``.gz``, zstd for ``.zst``): a header
with the config the console ran (targets, panels, rules: `${ENV}` references, never the
secrets), then, in arrival order, every check result (``r``), every batch of alert
notifications (``n``) and every event (``e``). Lines are buffered and written by a thread
once a second, so recording never waits on the disk on the event loop; a disk that refuses
them stops the recording with a message, never the console.

Replay builds a read-only runtime (no polling, no notifications, its files in a scratch
directory) on the recorded config and feeds it the recorded results at the recorded times
on its own clock, so the same screens (board, detail charts, alerts, deploy markers) show
what the console showed; the alert lifecycle is evaluated again from those results, as it
was then. `ReplayDriver` holds the time cursor: start `--at HH:MM[:SS]` (UTC, the
recording's day), play at `--speed`, pause, jump forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson

from console.engine.model import CheckResult, Status

__all__ = ["Recorder", "Recording", "ReplayDriver", "open_recording", "parse_at"]

log = logging.getLogger(__name__)

VERSION = 1
FLUSH_EVERY = 1.0


def _open_write(path: Path) -> Any:
    raw = open(path, "xb")  # noqa: SIM115 - closed by the recorder; never overwrite one
    if path.suffix == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6)
    if path.suffix == ".zst":
        import zstandard

        return zstandard.ZstdCompressor(level=6).stream_writer(raw)
    return raw


def _open_read(path: Path) -> Any:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head == b"\x28\xb5\x2f\xfd":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw))
    return raw


def result_json(r: CheckResult) -> dict[str, Any]:
    out: dict[str, Any] = {"t": "r", "target": r.target, "kind": r.kind, "s": r.status.value,
                           "at": r.started_at, "ms": r.latency_ms}
    if r.error:
        out["error"] = r.error
    if r.reasons:
        out["reasons"] = list(r.reasons)
    if r.metrics:
        out["m"] = r.metrics
    if r.details:
        out["d"] = r.details
    return out


def result_from(d: dict[str, Any]) -> CheckResult:
    return CheckResult(
        target=str(d["target"]), kind=str(d.get("kind", "")), status=Status(d["s"]),
        started_at=float(d["at"]), latency_ms=d.get("ms"), error=d.get("error"),
        reasons=tuple(d.get("reasons") or ()),
        metrics={str(k): float(v) for k, v in (d.get("m") or {}).items()},
        details=dict(d.get("d") or {}))


class Recorder:
    """Appends what the runtime receives to a recording file, off the event loop."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time,
                 on_problem: Callable[[str | None], None] | None = None) -> None:
        self.path = path
        self.clock = clock
        self.on_problem = on_problem
        self.lines = 0
        self.error: str | None = None
        self._buf: list[bytes] = []
        self._fh: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self, config: dict[str, Any]) -> None:
        """Create the file (never an existing one) and write the header; OSError if not."""
        self._fh = await asyncio.to_thread(_open_write, self.path)
        self.add({"t": "header", "version": VERSION, "started": self.clock(),
                  "config": config})
        await self.flush()
        self._task = asyncio.create_task(self._loop(), name="record:flush")

    def add(self, line: dict[str, Any]) -> None:
        if self._fh is None or self.error is not None:
            return
        self._buf.append(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY,
                                      default=str) + b"\n")
        self.lines += 1

    def result(self, r: CheckResult) -> None:
        self.add(result_json(r))

    def notifications(self, notes: list[Any]) -> None:
        self.add({"t": "n", "at": self.clock(), "notes": [n.to_json() for n in notes]})

    def events(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            self.add({"t": "e", **e})

    async def flush(self) -> None:
        buf, self._buf = self._buf, []
        if not buf or self._fh is None:
            return
        try:
            await asyncio.to_thread(self._write, b"".join(buf))
        except OSError as exc:
            self.error = f"recording {self.path} stopped: {exc.strerror or exc}"
            log.warning("%s", self.error)
            if self.on_problem is not None:
                self.on_problem(self.error)

    def _write(self, data: bytes) -> None:
        with self._lock:
            assert self._fh is not None
            self._fh.write(data)
            self._fh.flush()

    async def _loop(self) -> None:
        while self.error is None:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(fh.close)


# -- reading and playing back -------------------------------------------------------------------


@dataclass(slots=True)
class Recording:
    """A recording read whole: its header and its lines in time order."""

    path: Path
    config: dict[str, Any]
    started: float
    items: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    torn: int = 0  # lines that could not be read (a recording cut by a crash ends torn)

    @property
    def end(self) -> float:
        return self.items[-1][0] if self.items else self.started


def _lines(fh: IO[bytes]) -> Iterator[bytes]:
    while True:
        try:
            line = fh.readline()
        except (EOFError, OSError):  # a compressed stream cut short by a crash
            return
        if not line:
            return
        yield line


def open_recording(path: Path) -> Recording:
    """Read a recording; ValueError (with what is wrong) for a file that is not one."""
    try:
        fh = _open_read(path)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    with fh:
        lines = _lines(fh)
        try:
            header = orjson.loads(next(lines))
        except (StopIteration, orjson.JSONDecodeError, OSError, EOFError):
            raise ValueError(f"{path}: not an opsconsole recording (no header)") from None
        if not isinstance(header, dict) or header.get("t") != "header":
            raise ValueError(f"{path}: not an opsconsole recording (no header)")
        if header.get("version") != VERSION:
            raise ValueError(f"{path}: recording version {header.get('version')} is not "
                             f"{VERSION}")
        rec = Recording(path, dict(header.get("config") or {}), float(header["started"]))
        for line in lines:
            try:
                d = orjson.loads(line)
            except orjson.JSONDecodeError:
                rec.torn += 1
                continue
            kind = d.get("t")
            at = d.get("at") if kind in ("r", "n") else d.get("ts")
            if kind in ("r", "n", "e") and isinstance(at, int | float):
                rec.items.append((float(at), str(kind), d))
    rec.items.sort(key=lambda x: x[0])
    return rec


def parse_at(text: str, rec: Recording) -> float:
    """``03:12`` or ``03:12:40`` (UTC) on the recording's day (the next day if that is
    before it started), or an ISO date-time; ValueError otherwise."""
    text = text.strip()
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        parts = []
    if 2 <= len(parts) <= 3:
        h, m, s = (*parts, 0) if len(parts) == 2 else parts
        if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60):
            raise ValueError(f"--at {text}: not a time of day")
        day = datetime.fromtimestamp(rec.started, UTC).replace(hour=h, minute=m, second=s,
                                                               microsecond=0)
        if day.timestamp() < rec.started - 1:
            day += timedelta(days=1)
        return day.timestamp()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--at {text}: write HH:MM[:SS] (UTC) or an ISO date-time") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


class ReplayDriver:
    """The time cursor of a replay: feeds the runtime what was recorded up to `now`."""

    def __init__(self, rec: Recording, runtime: Any, *, at: float | None = None,
                 speed: float = 1.0) -> None:
        self.rec = rec
        self.runtime = runtime
        self.t = rec.started if at is None else at
        self.speed = speed
        self.paused = False
        self._i = 0
        self._task: asyncio.Task[None] | None = None
        self.version = 0

    def clock(self) -> float:
        """The replayed moment: the runtime's clock."""
        return self.t

    @property
    def finished(self) -> bool:
        return self._i >= len(self.rec.items)

    def status(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.t))
        state = "paused" if self.paused else ("end" if self.finished else f"×{self.speed:g}")
        return f"REPLAY {when} {state} · {self.rec.path.name}"

    async def seek(self, t: float) -> None:
        """Feed everything recorded up to `t` (forward only), the clock following each
        item, so alert timers run as they did."""
        while self._i < len(self.rec.items) and self.rec.items[self._i][0] <= t:
            at, kind, d = self.rec.items[self._i]
            self._i += 1
            self.t = max(self.t, at)
            await self._feed(kind, d)
        self.t = max(self.t, t)
        alerting = self.runtime.alerting
        if alerting is not None:
            alerting.run(self.t)  # timers (for, keep_firing_for) up to the cursor
        self.version += 1

    async def _feed(self, kind: str, d: dict[str, Any]) -> None:
        if kind == "r":
            self.runtime.scheduler.replay_result(result_from(d))
        elif kind == "e" and self.runtime.events is not None:
            entry = {k: v for k, v in d.items() if k != "t"}
            await self.runtime.events.append(entry)

    async def play(self, tick: float = 0.25) -> None:
        """Advance `speed` recorded seconds per real second until the end (or cancelled)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if not self.paused and not self.finished:
                await self.seek(self.t + (now - last) * self.speed)
            last = now

    def start(self) -> None:
        self._task = asyncio.create_task(self.play(), name="replay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
