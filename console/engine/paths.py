"""The one owner of every file path the console writes: all of it under one data directory.

The directory is chosen in one place, in this order: ``--data-dir``, ``[console] data_dir``,
``$OPSCONSOLE_DATA_DIR``, then the platform's user data directory
(``~/.local/share/opsconsole`` on Linux). Nothing the console writes goes anywhere else; the
demo writes under ``demo/`` inside it, so demo incidents never reach the real journal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.engine.config.schema import Settings

ENV_DATA_DIR = "OPSCONSOLE_DATA_DIR"
APP_NAME = "opsconsole"


def platform_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True, slots=True)
class DataPaths:
    """Every file under the data directory, by what it holds; `source` says who chose it."""

    root: Path
    source: str = "default"

    @property
    def journal(self) -> Path:
        """The incident journal (append-only JSONL)."""
        return self.root / "journal.jsonl"

    @property
    def alert_state(self) -> Path:
        """The alert evaluator's state: alerts, silences, acknowledgements."""
        return self.root / "alerts.json"

    @property
    def alert_changes(self) -> Path:
        """Changes to the alert state since its last snapshot (append-only JSONL)."""
        return self.root / "alerts-changes.jsonl"

    @property
    def alert_history(self) -> Path:
        """Resolved alert episodes and followers' requests (append-only JSONL)."""
        return self.root / "alerts-history.jsonl"

    @property
    def lease(self) -> Path:
        """Who evaluates alerts for this directory (an flock-held file)."""
        return self.root / "alerts.lease"

    @property
    def outbox(self) -> Path:
        """Notifications waiting to be sent, and what was sent (SQLite)."""
        return self.root / "outbox.sqlite"

    @property
    def metric_history(self) -> Path:
        """The metric store's rollups, reloaded on start."""
        return self.root / "history.npz"

    @property
    def error_kinds(self) -> Path:
        """First-seen error kinds per log target (a directory)."""
        return self.root / "log-errors"

    @property
    def demo_config(self) -> Path:
        """The config the running demo made for its stack (in its world; `alerts --demo`
        reads its rules)."""
        return self.root / "demo-config.toml"

    @property
    def demo_log(self) -> Path:
        """The demo API's winston-style log (written by the running demo, in its world)."""
        return self.root / "api-combined.log"

    @property
    def events(self) -> Path:
        """Events: deployments and other changes, inbound alerts (append-only JSONL)."""
        return self.root / "events.jsonl"

    @property
    def pings(self) -> Path:
        """Heartbeat check-ins (`opsconsole ping`, the listener): the spool a running console
        follows (append-only JSONL)."""
        return self.root / "pings.jsonl"

    def unusable(self) -> str | None:
        """Why this data directory cannot be one (it, or what would hold it, is a file), or
        None. Read-only and full directories are usable: each save says so and retries."""
        p = self.root
        while not p.exists() and p != p.parent:
            p = p.parent
        if p.exists() and not p.is_dir():
            what = "is a file, not a directory" if p == self.root else f"is under {p}, a file"
            return (f"the data directory {self.root} ({self.source}) {what}; "
                    "give --data-dir (or OPSCONSOLE_DATA_DIR) a directory")
        return None

    def demo(self) -> DataPaths:
        """The demo's own world, inside this one."""
        return DataPaths(self.root / "demo", source=f"{self.source}, demo")

    def listing(self) -> list[tuple[str, Path]]:
        """(what, path) for `opsconsole paths`."""
        return [
            ("data directory", self.root),
            ("incident journal", self.journal),
            ("alert state", self.alert_state),
            ("alert state changes", self.alert_changes),
            ("alert history", self.alert_history),
            ("evaluator lease", self.lease),
            ("notification outbox", self.outbox),
            ("metric history", self.metric_history),
            ("log error kinds", self.error_kinds),
            ("events", self.events),
            ("heartbeat pings", self.pings),
        ]

    def ensure(self) -> None:
        """Create the directory, and any parent it needs, 0700: they hold incident notes and
        notification payloads (`mkdir(parents=True)` would make the parents 0755)."""
        missing = []
        path = self.root
        while not path.exists() and path != path.parent:
            missing.append(path)
            path = path.parent
        for directory in reversed(missing):
            directory.mkdir(mode=0o700, exist_ok=True)


def resolve_data_dir(
    cli: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
) -> DataPaths:
    """The data directory by the documented order: flag, config, environment, platform."""
    env = os.environ if env is None else env
    if cli:
        return DataPaths(Path(cli).expanduser(), "--data-dir")
    if settings is not None and settings.console.data_dir:
        return DataPaths(Path(settings.console.data_dir).expanduser(), "[console] data_dir")
    if env.get(ENV_DATA_DIR):
        return DataPaths(Path(env[ENV_DATA_DIR]).expanduser(), f"${ENV_DATA_DIR}")
    return DataPaths(platform_data_dir(), "default")
