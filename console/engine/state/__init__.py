"""Where the team's shared state lives: the data directory's files, or a PostgreSQL database.

One setting chooses (``[state] backend``), and the `Runtime` builds the backend once
(`open_backend`); every part that keeps state asks it for its piece — the incident journal,
the alerting service with its evaluator lease, the notifier's outbox — so nothing else knows
which backend runs. ``files`` (`state.files`) is a single bastion's behaviour: a JSONL
journal, ``alerts.json``, an flock lease and a SQLite outbox. ``postgres``
(`state.postgres`) keeps append-only events in a database every console of the team reads
and writes (`state.shared`), elects one evaluator through a session advisory lock with a
fencing token (`state.lease`, `state.alerts`), sends from a shared outbox (`state.outbox`)
and queues locally while the database is away. `state.reader` gives the headless commands
the same data whatever the backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.engine.config.schema import Settings
    from console.engine.paths import DataPaths
    from console.engine.state.files import FilesBackend
    from console.engine.state.postgres import PostgresBackend

ENV_OPERATOR = "OPSCONSOLE_OPERATOR"


def operator_identity(settings: Settings | None = None,
                      env: dict[str, str] | None = None) -> str:
    """Who acts: ``$OPSCONSOLE_OPERATOR`` (several people on one shared account), else
    ``[state] operator``, else ``user@host`` (with the SSH client's address)."""
    import os

    from console.engine.storage.journal import current_actor
    from console.engine.text.sanitize import one_line

    env = dict(os.environ) if env is None else env
    named = env.get(ENV_OPERATOR) or (settings.state.operator if settings is not None else None)
    if named and named.strip():
        return one_line(named.strip(), 80)
    return current_actor(env)


def open_backend(settings: Settings, paths: DataPaths, *,
                 clock: Callable[[], float], actor: str, read_only: bool = False,
                 on_problem: Callable[[str | None], None] | None = None
                 ) -> FilesBackend | PostgresBackend:
    """The backend `[state]` names (not started: `await backend.start()`)."""
    if settings.state.backend == "postgres":
        from console.engine.state.postgres import PostgresBackend

        return PostgresBackend(settings.state, paths, clock=clock, actor=actor,
                               read_only=read_only, on_problem=on_problem)
    from console.engine.state.files import FilesBackend

    return FilesBackend(paths, clock=clock, actor=actor, read_only=read_only)
