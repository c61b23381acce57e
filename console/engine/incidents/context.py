"""What an incident's story is read from besides the journal: alert episodes and notifications.

The running console asks its alerting service (`Runtime.incident_sources`); the headless
commands (`postmortem`, `report`) read the same files under the data directory, read-only,
so they are safe beside a running console: the alert history, the evaluator's saved state
(episodes still open) and the notification outbox (what was sent to whom, and when).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any, cast

from console.engine.alerting.history import read_episodes
from console.engine.alerting.statefile import read_state
from console.engine.model import AlertEpisode
from console.engine.paths import DataPaths

__all__ = ["open_episodes", "open_episodes_of", "read_notifications", "read_sources"]

MAX_ROWS = 20_000


def open_episodes(state_path: Path, now: float) -> list[AlertEpisode]:
    """Episodes still firing, from the evaluator's ``alerts.json`` and the changes saved
    since it (no rules needed). The snapshot alone missed every alert that fired after it
    was last written whole: the daily summary said 'still firing 0' beside an alert
    `opsconsole alerts --history` showed ongoing for 8 minutes."""
    try:
        data = read_state(state_path)
    except (OSError, ValueError):
        return []
    return open_episodes_of(data, now) if data is not None else []


def open_episodes_of(data: Any, now: float) -> list[AlertEpisode]:
    """Episodes still firing, from an alert state snapshot (a file's, or the shared
    state's)."""
    out = []
    for row in data.get("alerts", []) if isinstance(data, dict) else []:
        if not isinstance(row, dict):
            continue
        state = row.get("state")
        if state == "nodata":
            state = row.get("nodata_from")
        fired = row.get("fired_at")
        if state not in ("firing", "acknowledged") or not isinstance(fired, int | float):
            continue
        detect = row.get("detect_s")
        out.append({
            "type": "episode", "key": f"{row.get('rule')}/{row.get('target')}/"
                                      f"{row.get('incident')}",
            "rule": row.get("rule"), "target": row.get("target"),
            "incident": row.get("incident"), "fired_at": fired,
            "acknowledged_at": row.get("ep_acked_at"),
            "acknowledged_by": row.get("ep_acked_by"), "resolved_at": None,
            "duration_s": max(0.0, now - fired), "ongoing": True, "peak": row.get("ep_peak"),
            "detect_s": detect, "cause": row.get("cause", ""),
            "fired_cause": row.get("ep_cause") or row.get("cause", ""),
            "fired_summary": row.get("ep_summary") or row.get("rule"),
            "first_fail_at": None if not isinstance(detect, int | float) else fired - detect,
            "severity": (row.get("labels") or {}).get("severity"),
            "summary": row.get("rule"),
        })
    return cast("list[AlertEpisode]", out)  # the same fields as Alert.episode()


def read_notifications(path: Path) -> list[dict[str, Any]]:
    """The outbox's rows (key, receiver, status, created, sent_at), read-only; [] if none."""
    if not path.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error:
        return []
    try:
        cur = con.execute("SELECT key, receiver, status, created, sent_at FROM outbox "
                          "ORDER BY id DESC LIMIT ?", (MAX_ROWS,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    except sqlite3.Error:
        return []
    finally:
        con.close()


def read_sources(paths: DataPaths, *, now: float | None = None, since: float | None = None
                 ) -> tuple[list[AlertEpisode], list[dict[str, Any]]]:
    """(episodes, notifications) from the files of a data directory."""
    now = time.time() if now is None else now
    episodes = open_episodes(paths.alert_state, now) + read_episodes(
        paths.alert_history, since=since, now=now, limit=100_000, max_bytes=64 * 1024 * 1024)
    return episodes, read_notifications(paths.outbox)
