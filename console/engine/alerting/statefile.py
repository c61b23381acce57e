"""The alert state on disk: a snapshot (``alerts.json``) plus an append-only log of changes.

Why two files
-------------
The evaluator used to rewrite and fsync the whole state every tick (535 KB for 200 targets
about every 1.7 s, ~1 GB/h), although between two ticks only a handful of alerts change in a
way that matters after a restart. Now a save appends *the change* — the rows of the alerts
whose durable fields changed, and any top-level part (silences, detections, unrecorded
episodes, applied requests) that changed — as one JSON line to ``alerts-changes.jsonl``,
fsynced. A steady console (every target answering) writes nothing at all. When the log has
grown past the snapshot's size (at least `COMPACT_MIN`), the whole state is written as a new
snapshot (temp file, fsync, rename, directory fsync) and the log is emptied; so is it on a
clean stop, which leaves ``alerts.json`` holding everything as before.

Each snapshot carries a sequence number ``seq`` and each log line its own, increasing; a
reader applies only log lines newer than the snapshot, so a crash between writing a new
snapshot and emptying the log replays nothing twice, and a torn last line (a crash mid
append) is ignored. A reader (a follower console, ``opsconsole alerts --history``) sees the
merged state through `read_state`, which never writes.

What counts as a durable change is `durable_key`: the fields the lifecycle decides on, not
the value and detail of the latest sample, which change every second and are recomputed on
the first evaluation after a restart.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import operator
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from console.engine.storage.fileio import append_durably, atomic_write, fsync_dir

if TYPE_CHECKING:  # the readers (`read_state`, `merge`) need none of the lifecycle: the
    # journal readers (`report`, post-mortems) import this module without it
    from console.engine.alerting.lifecycle import Alert, Alerts

COMPACT_MIN = 256 * 1024
"""The change log is folded into a new snapshot once it is larger than this and than the
last snapshot: the disk then holds at most about twice the state."""

TOP_LEVEL = ("silences", "detections", "unrecorded", "applied_requests", "target_flaps")
"""Parts of the state besides the alerts; each is logged whole when it changes (small)."""


def _alert_fields() -> tuple[str, ...]:
    from console.engine.alerting.lifecycle import _alert_field_names

    return _alert_field_names()


_VOLATILE = frozenset({"value", "detail", "last_sample_t", "flap_pct", "rule", "fails",
                       "oks", "history", "labels", "samples"})


@functools.cache
def _durable_fields() -> tuple[str, ...]:
    return tuple(n for n in _alert_fields() if n not in _VOLATILE)


@functools.cache
def _durable_values() -> operator.attrgetter[tuple[Any, ...]]:
    """The durable fields' values of an alert, read in one C call (a getattr per field and
    a `_freeze` call per value were ~5 % of all CPU at 1,000 targets under cProfile)."""
    return operator.attrgetter(*_durable_fields())


_PLAIN = frozenset({str, int, float, bool, type(None)})


def durable_key(a: Alert) -> tuple[Any, ...]:
    """What of an alert must survive a restart, as a cheap comparable value: every field
    but the latest sample's value and detail (recomputed on the first evaluation after a
    restart), whatever fields the lifecycle grows.

    Counts are capped where they stop mattering: consecutive samples at the rule's
    thresholds, samples since a resolved notice at the flap window (what the lifecycle
    compares them with), so a long-firing or long-healthy alert is not rewritten on every
    sample. The flap history counts through the flap percentage it gives (the row written
    carries the history itself): a history filling with the same state is no change.
    """
    rule = a.rule
    told = getattr(a, "told_resolved_sample", None)
    since_told = None if told is None else min(getattr(a, "samples", 0) - told, a.flap_window)
    return (rule.name, min(a.fails, rule.failure_threshold),
            min(a.oks, rule.success_threshold), round(a.flap_pct, 1),
            tuple(a.labels.items()), since_told,
            *[v if type(v) in _PLAIN else _freeze(v) for v in _durable_values()(a)])


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    if isinstance(v, list | set | deque):
        return tuple(_freeze(x) for x in v)
    return v


def alert_row(a: Alert, names: tuple[str, ...]) -> dict[str, Any]:
    """One alert as its snapshot row (the same shape `Alerts.snapshot` writes)."""
    row: dict[str, Any] = {}
    for name in names:
        v = getattr(a, name)
        if name == "rule":
            v = a.rule.name
        elif name == "history":
            v = list(v)
        elif isinstance(v, enum.Enum):  # AlertState
            v = v.value
        row[name] = v
    return row


def _row_id(row: dict[str, Any]) -> tuple[str, str]:
    return (str(row.get("rule")), str(row.get("target")))


def changes_path(state: Path) -> Path:
    """The change log beside a snapshot (``alerts.json`` → ``alerts-changes.jsonl``, as
    `DataPaths.alert_changes` names it): readers given only the state's path find it."""
    return state.with_name(state.stem + "-changes.jsonl")


def merge(snapshot: dict[str, Any], lines: list[bytes]) -> dict[str, Any]:
    """`snapshot` with every log line newer than it applied; a torn line ends the log."""
    base = int(snapshot.get("seq", 0) or 0)
    rows = {_row_id(r): r for r in snapshot.get("alerts", [])}
    order = list(rows)
    out = dict(snapshot)
    for raw in lines:
        if not raw.strip():
            continue
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            break  # a crash mid-append: what follows cannot be trusted either
        if not isinstance(entry, dict) or int(entry.get("seq", 0)) <= base:
            continue
        for row in entry.get("alerts", []):
            key = _row_id(row)
            if key not in rows:
                order.append(key)
            rows[key] = row
        for part in TOP_LEVEL:
            if part in entry:
                out[part] = entry[part]
        out["seq"] = int(entry["seq"])
    out["alerts"] = [rows[k] for k in order]
    return out


def read_state(state: Path) -> dict[str, Any] | None:
    """The saved state (snapshot plus newer changes); None when neither file exists.
    Raises OSError or ValueError (orjson's decode error) for an unreadable snapshot."""
    log = changes_path(state)
    try:
        snap_bytes = state.read_bytes()
    except FileNotFoundError:
        snap_bytes = None
    try:
        log_bytes = log.read_bytes()
    except FileNotFoundError:
        log_bytes = b""
    if snap_bytes is None and not log_bytes:
        return None
    snapshot = orjson.loads(snap_bytes) if snap_bytes is not None else {"version": 1}
    if not isinstance(snapshot, dict):
        raise ValueError("alert state is not an object")
    return merge(snapshot, log_bytes.split(b"\n")) if log_bytes else snapshot


def signature(state: Path) -> tuple[int, int, int, int] | None:
    """Changes whenever either file does (a follower reloads then); None if neither exists."""
    sig: list[int] = []
    for p in (state, changes_path(state)):
        try:
            st = p.stat()
        except FileNotFoundError:
            sig += [0, -1]
        else:
            sig += [st.st_mtime_ns, st.st_size]
    return None if sig[1] == -1 and sig[3] == -1 else (sig[0], sig[1], sig[2], sig[3])


class StateWriter:
    """The owner's side: decides what changed since the last save and writes only that.

    `prepare` runs on the event loop (the lifecycle is not thread-safe) and returns the bytes
    to write; `write` runs in a worker thread. The snapshot bytes are built only when a
    compaction is due, so a save costs what changed, not what exists.
    """

    def __init__(self, state: Path) -> None:
        self.state = state
        self.log = changes_path(state)
        self._names = _alert_fields()
        # per alert, the hash of its durable key as last written (a hash, not the tuple:
        # ~30 bytes instead of ~500 per alert; a collision would only skip one rewrite)
        self._keys: dict[tuple[str, str], int] = {}
        self._top: dict[str, bytes] = {}
        self._seq = 0
        self._log_size = 0
        self._snap_size = 0
        self._full = True  # the first save writes a snapshot (and empties any old log)
        self.bytes_written = 0
        """Everything written to either file, for the disk-write figures."""

    def start_from(self, data: dict[str, Any] | None) -> None:
        """Continue the numbering of a loaded state (so our lines are newer than its)."""
        self._seq = int((data or {}).get("seq", 0) or 0)
        self._full = True

    def prepare(self, alerts: Alerts, applied: list[str], *, full: bool = False
                ) -> tuple[str, bytes] | None:
        """("snapshot" | "append", bytes) to write for this save, or None when nothing
        durable changed. Only the alerts the lifecycle stepped since the last save
        (`Alerts.take_changed`) are compared; the whole state is encoded only when a
        snapshot is due (first save, `full`, a failed write, or a log grown too big)."""
        changed = alerts.take_changed()
        top = {**alerts.snapshot_parts(), "applied_requests": applied[-500:]}
        if full or self._full or self._log_size > max(COMPACT_MIN, self._snap_size):
            self._seq += 1
            snapshot = {**alerts.snapshot(), "applied_requests": applied[-500:],
                        "seq": self._seq}
            self._keys = {a.key: hash(durable_key(a)) for a in alerts.alerts()}
            self._top = {p: orjson.dumps(top.get(p)) for p in TOP_LEVEL}
            return ("snapshot", orjson.dumps(snapshot))
        entry: dict[str, Any] = {}
        rows = []
        for a in changed:
            dk = hash(durable_key(a))
            if self._keys.get(a.key) != dk:
                self._keys[a.key] = dk
                rows.append(alert_row(a, self._names))
        if rows:
            entry["alerts"] = rows
        for part in TOP_LEVEL:
            enc = orjson.dumps(top.get(part))
            if self._top.get(part) != enc:
                self._top[part] = enc
                entry[part] = top.get(part)
        if not entry:
            return None
        self._seq += 1
        entry["seq"] = self._seq
        return ("append", orjson.dumps(entry) + b"\n")

    def write(self, kind: str, data: bytes) -> None:
        """Write what `prepare` returned (worker thread). On failure the next save writes a
        whole snapshot, so nothing is lost by a change that did not reach the log."""
        try:
            if kind == "snapshot":
                atomic_write(self.state, data)
                self._snap_size = len(data)
                # The snapshot holds everything: the log can go (a crash before this line
                # leaves only older lines, which readers skip by their sequence numbers).
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.log)
                    fsync_dir(self.log.parent)
                self._log_size = 0
                self._full = False
            else:
                append_durably(self.log, data)
                if self._log_size == 0:
                    fsync_dir(self.log.parent)  # a new file: its name must survive too
                self._log_size += len(data)
            self.bytes_written += len(data)
        except OSError:
            self._full = True
            raise
