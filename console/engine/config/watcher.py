"""Watch the config file and hand every good edit to the runtime; keep the last good one."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from console.engine.config.loader import decode_config, load_config_text
from console.engine.config.schema import Settings
from console.engine.errors import ConfigError, ConfigIssue

log = logging.getLogger(__name__)

# -- watching the file --------------------------------------------------------------------------

_Signature = tuple[int, int, int] | None


def _signature(path: Path) -> _Signature:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class ConfigWatcher:
    """Reload the config when its file changes; keep the last good one when an edit is broken.

    Polls (mtime_ns, size, inode) every `interval` seconds from an asyncio task in the caller's
    loop: a stat per second costs nothing and needs no thread or inotify. A change is acted on
    only once the file reads the same at two polls in a row: an editor that truncates and then
    rewrites the file in place can be caught half-way, and an empty or half-written file may
    well be *valid* (no targets), which must never replace the running config even for a
    moment. Because file timestamps are coarse, a file modified within the last two seconds is
    also compared by content, so two quick same-size edits are not mistaken for one.
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[Settings], None],
        on_error: Callable[[ConfigError], None],
        *,
        interval: float = 1.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.on_change = on_change
        self.on_error = on_error
        self.interval = interval
        self.env = env
        self.last_good: Settings | None = None
        self._task: asyncio.Task[None] | None = None
        self._sig: _Signature = None
        self._digest: bytes | None = None
        self._racy = False
        self._candidate: tuple[_Signature, bytes | None] | None = None  # seen once, unsettled
        self._broken = False

    async def start(self, current: Settings | None = None) -> None:
        """Remember the file as it is now (its settings as last_good) and start polling.

        `current` is the caller's copy of the config it runs on: when the file still says
        the same, last_good is that copy rather than a second one (a config of 2,000
        targets is ~3 MB of models); when the file was edited since the caller read it,
        the edit is applied like any other, once it reads the same at two polls.
        """
        if self._task is not None:
            return
        self._sig = _signature(self.path)
        settings, error, self._digest = await asyncio.to_thread(self._load)
        self._racy = self._is_racy(self._sig)
        if current is not None:
            self.last_good = current
            if settings != current:
                self._sig = self._digest = None  # seen as a change by the next polls
        elif settings is not None:
            self.last_good = settings
        elif error is not None:
            self._broken = True
            self._emit_error(error)
        self._task = asyncio.create_task(self._run(), name=f"config-watch:{self.path.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception:  # a watcher that dies silently would freeze the config
                log.exception("config watcher poll failed")

    async def poll(self) -> None:
        """One check of the file; public so tests and callers can force a check."""
        sig = _signature(self.path)
        if sig == self._sig and not self._racy and self._candidate is None:
            return
        settings, error, digest = await asyncio.to_thread(self._load)
        if (sig, digest) == (self._sig, self._digest):
            self._candidate = None  # changed and changed back before it settled
            self._racy = self._is_racy(sig)
            return
        if self._candidate != (sig, digest):
            self._candidate = (sig, digest)  # act only if the next poll reads the same
            return
        self._candidate = None
        self._sig, self._digest, self._racy = sig, digest, self._is_racy(sig)
        if error is not None:
            self._broken = True
            self._emit_error(error)
            return
        assert settings is not None
        if settings == self.last_good and not self._broken:
            return  # touched or reformatted: nothing to apply
        self._broken = False
        self.last_good = settings
        try:
            self.on_change(settings)
        except Exception:
            log.exception("config on_change callback failed")

    @staticmethod
    def _is_racy(sig: _Signature) -> bool:
        return sig is not None and time.time_ns() - sig[0] < 2_000_000_000

    def _load(self) -> tuple[Settings | None, ConfigError | None, bytes | None]:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            issue = ConfigIssue(str(self.path), None, "",
                                f"cannot read the config: {exc.strerror or exc}",
                                "the last good config stays in force")
            return None, ConfigError([issue]), None
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        text, issues = decode_config(raw, str(self.path))
        if text is None:
            return None, ConfigError(issues), digest
        if not text.strip():  # an editor's truncating save, `> config.toml` of a failed
            # command: as a config it is valid (no targets) and dropped every target
            issue = ConfigIssue(str(self.path), None, "", "the file is empty",
                                "the last good config stays in force until it has content")
            return None, ConfigError([issue]), digest
        try:
            return load_config_text(text, str(self.path), env=self.env), None, digest
        except ConfigError as exc:
            return None, exc, digest

    def _emit_error(self, error: ConfigError) -> None:
        try:
            self.on_error(error)
        except Exception:
            log.exception("config on_error callback failed")
