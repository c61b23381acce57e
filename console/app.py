"""The Textual app: owns the engine's lifetime on its own loop and joins engine and widgets."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.screen import Screen
from textual.theme import Theme
from textual.timer import Timer

import themes
from console.engine.paths import DataPaths

if TYPE_CHECKING:  # pydantic costs ~150 ms to import: keep it off the first frame's path
    from textual.notifications import SeverityLevel

    from console.demo.stack import DemoStack
    from console.engine.alerting.service import AlertService
    from console.engine.config.schema import Settings
    from console.engine.incidents.book import IncidentDesk
    from console.engine.incidents.links import Destination
    from console.engine.runtime import Applied, Runtime
    from console.engine.scheduler import Scheduler
    from console.engine.signals.recording import ReplayDriver

ANNOUNCE_AGAIN = 300.0  # seconds before an alert that fires again is toasted again
ENGINE_MODULES = ("console.engine.runtime", "console.engine.scheduler",
                  "console.engine.storage.store", "console.engine.config.loader")


def _preload(names: Iterable[str]) -> None:
    """Import the engine's heavy modules (pydantic, numpy, aiohttp) on a worker thread."""
    import importlib

    for name in names:
        importlib.import_module(name)


BANNER_LINES = 3  # the banner's max-height (themes/opsconsole.tcss)


def _banner_room(width: int) -> int:
    """Characters the banner's lines hold at `width` columns: its padding takes two, and a
    line broken at a space leaves up to a word's width unused (a dozen, twice)."""
    return BANNER_LINES * max(width - 2, 20) - 24


@functools.lru_cache(maxsize=64)
def _binds_key(screen_type: type, key: str) -> bool:
    """Whether a screen class (or a base) binds `key` itself, over the app's binding; once
    per class (the banner asks on every repaint)."""
    for cls in screen_type.__mro__:
        for b in cls.__dict__.get("BINDINGS", ()):
            keys = b.key if isinstance(b, Binding) else b[0]
            if key in (k.strip() for k in keys.split(",")):
                return True
    return False


class OpsConsoleApp(App[None]):
    """opsconsole: live status board, metric panels, detail views and (in the demo) faults."""

    TITLE = "opsconsole"
    CSS_PATH: ClassVar[list[str | PurePath]] = [*themes.CSS_PATHS]
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Keys", key_display="?", id="help"),
        Binding("f", "faults", "Faults", id="faults"),
        Binding("i", "incidents", "Incidents", id="incidents"),
        Binding("a", "alerts", "Alerts", id="alerts"),
        Binding("L", "logs", "Logs", show=False, id="logs"),
        Binding("T", "cycle_theme", "Theme", show=False, id="theme"),
        # a replay's time cursor (shown only in `opsconsole replay`)
        Binding("space", "replay_pause", "Pause", id="replay_pause"),
        Binding("right_square_bracket", "replay_jump(60)", "+1 min", key_display="]",
                id="replay_jump"),
    ]

    def __init__(
        self,
        *,
        settings: Settings | None,
        config_path: Path | None = None,
        paths: DataPaths | None = None,
        demo: bool = False,
        demo_port: int | None = None,
        demo_local: bool = True,
        theme_name: str | None = None,
        history: bool = True,
        tune_gc: bool = False,
        clock: Any = time.time,
        poll: bool = True,
        read_only: bool = False,
        demo_stack: DemoStack | None = None,
        record: Path | None = None,
        replay: ReplayDriver | None = None,
    ) -> None:
        requested = theme_name or (settings.console.theme if settings else None)
        theme = themes.pick_theme(requested, os.environ)
        themes.preselect_theme(self, theme)  # before App.__init__ picks its NO_COLOR filter
        super().__init__()
        self._settings = settings
        self.config_path = config_path
        if paths is None:
            from console.engine.paths import resolve_data_dir

            paths = resolve_data_dir(None, settings)
        # The demo is a world of its own: its incidents never reach the real journal.
        self.paths = paths.demo() if demo or demo_stack is not None else paths
        self.demo_mode = demo or demo_stack is not None
        self.demo: DemoStack | None = None
        self._demo_stack = demo_stack  # a stack made by the caller (tests: seeded, no traffic)
        self.read_only = read_only
        self._demo_port = demo_port
        self._demo_local = demo_local
        self._history = history
        self._tune_gc = tune_gc  # a real console process, not a test (engine.gctune)
        self.clock = clock
        self._poll = poll  # False in tests that feed results themselves
        self.runtime: Runtime | None = None
        self.boot_error: str | None = None  # why the runtime (or the demo) did not start
        self.runtime_ready = asyncio.Event()  # set once boot ends, whether or not it worked
        self._booted = False
        self._closing = False
        self._repaint: Timer | None = None
        self._banner_shown: dict[int, str] = {}  # banner widget id -> text it shows
        self._rung: set[tuple[str, str]] = set()  # loud alerts the bell has rung for
        # alerts firing since before the runtime started are not announced (the banner has
        # them): a restart toasted "P1 FIRING" for an alert already recovering
        self._runtime_from: float | None = None
        self._alert_toast: Any = None  # the one "P0/P1 FIRING" toast shown
        self._announced: dict[tuple[str, str], float] = {}  # alert -> when (monotonic)
        self.record = record  # `--record FILE`
        # `opsconsole replay`: recorded data on the same screens, read-only, its own clock
        self.replay = replay
        if replay is not None:
            self.clock = replay.clock
            self.read_only = True
        themes.register_themes(self)
        themes.activate_theme(self, theme)

    # -- the runtime, typed (None until it has started) -------------------------------------

    @property
    def settings(self) -> Settings | None:
        return self.runtime.settings if self.runtime is not None else self._settings

    @property
    def scheduler(self) -> Scheduler | None:
        return self.runtime.scheduler if self.runtime is not None else None

    @property
    def alerting(self) -> AlertService | None:
        return self.runtime.alerting if self.runtime is not None else None

    @property
    def desk(self) -> IncidentDesk | None:
        return self.runtime.desk if self.runtime is not None else None

    @property
    def config_problem(self) -> str | None:
        return self.runtime.problems.get("config") if self.runtime is not None else None

    # -- plumbing ----------------------------------------------------------------------------

    def get_driver_class(self) -> type[Driver]:
        if sys.platform.startswith("linux") or sys.platform == "darwin":
            from console.driver import ConsoleDriver

            return ConsoleDriver
        return super().get_driver_class()

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return {**super().get_theme_variable_defaults(), **themes.THEME_VARIABLE_DEFAULTS}

    @property
    def available_themes(self) -> dict[str, Theme]:
        """Textual's themes and ours (ours win a shared name), from `App.__init__` on: the
        stylesheet is built once from the chosen theme (themes.OWN_THEMES)."""
        return {**super().available_themes, **themes.OWN_THEMES}

    def get_default_screen(self) -> Screen[Any]:
        from console.screens.overview import OverviewScreen

        return OverviewScreen()

    async def on_mount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.hangup)

    def start_boot(self) -> None:
        """Start the runtime, once; called after the default screen's first paint, so the
        operator sees the console at once."""
        if not self._booted:
            self._booted = True
            self.run_worker(self._boot(), name="boot", group="boot", exit_on_error=False)

    async def _boot(self) -> None:
        """Start the demo (if any) and the runtime, after the first frame is up."""
        modules = ENGINE_MODULES + (("console.demo.stack",) if self.demo_mode else ())
        await asyncio.to_thread(_preload, modules)
        from console.engine.runtime import Runtime

        self._runtime_from = self.clock()
        try:
            if self.demo_mode:
                await self._start_demo()
            assert self._settings is not None
            replaying = self.replay is not None
            runtime = Runtime(
                self._settings, self.paths, config_path=self.config_path, clock=self.clock,
                history=self._history and not replaying, poll=self._poll and not replaying,
                role="tui", notifications=not self.demo_mode and not replaying,
                incidents=not replaying, lease=not replaying, read_only=self.read_only,
                record=None if replaying else self.record, tune_gc=self._tune_gc and not replaying)
            runtime.on_notice(self._notice)
            runtime.on_reload(self._reloaded)
            runtime.on_config_error(self._config_rejected)
            await runtime.start()
            if self.replay is not None:
                self.replay.runtime = runtime
                await self.replay.seek(self.replay.t)
                self.replay.start()
        except Exception as exc:  # shown to the operator, not raised; `q` exits non-zero
            from textual.content import Content
            from textual.widgets import Static

            from console.engine.text.redact import describe_exception

            self.boot_error = f"start-up failed: {describe_exception(exc)}"
            self.notify(self.boot_error, title="start-up failed", severity="error",
                        markup=False, timeout=30)
            for title in self.screen.query("#title").results(Static):
                title.update(Content(f"opsconsole · {self.boot_error} · q quits"))
            # the title grows to the lines the message needs: lay the screen out again now
            # and once more after this refresh (a loaded CI showed its first line only)
            self.screen.refresh(layout=True)
            self.call_after_refresh(self.screen.refresh, layout=True)
            self.runtime_ready.set()
            return
        if self._closing:  # the operator quit while we started
            await runtime.stop()
            return
        self.runtime = runtime
        self.runtime_ready.set()
        self._repaint = self.set_interval(runtime.settings.console.refresh, self.refresh_screen,
                                          name="repaint")
        self.refresh_screen()

    async def _start_demo(self) -> None:
        from console.demo.stack import DemoStack, probe_local_services
        from console.engine.config.loader import load_config_text

        self.demo = self._demo_stack or DemoStack(
            port=self._demo_port, log_path=str(self.paths.demo_log))
        await self.demo.start()
        pg, redis = await probe_local_services() if self._demo_local else (None, None)
        text = self.demo.config_toml(postgres_dsn=pg, redis_url=redis)
        self._settings = load_config_text(text, "<demo config>")
        # for `opsconsole alerts --demo`; best effort: a data directory that cannot be
        # written is reported by the journal and the history, which need it far more
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self._keep_demo_config, text)

    def _keep_demo_config(self, text: str) -> None:
        from console.engine.storage.fileio import atomic_write

        self.paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(self.paths.demo_config, text.encode("utf-8"))

    def _notice(self, level: str, text: str) -> None:
        severity: SeverityLevel = (
            "error" if level == "error" else "warning" if level == "warning" else "information")
        self.notify(text, severity=severity, markup=False,
                    timeout=10 if level == "error" else 5)

    def refresh_screen(self) -> None:
        """Push fresh snapshots into the visible screen, at most once per repaint tick."""
        runtime = self.runtime
        if runtime is None or self._closing:
            return
        self._announce_new_alerts()  # on every screen, this one's data or not
        screen = self.screen
        if not screen.is_mounted:
            return  # a screen just pushed has not composed its widgets yet: next tick
        refresh = getattr(screen, "refresh_data", None)
        with self.batch_update():
            if refresh is not None:
                try:
                    refresh(runtime, self.clock())
                except NoMatches:  # the screen is being torn down (popped mid-tick): skip it
                    return
                with contextlib.suppress(AttributeError):  # a screen that is not ours
                    screen.refreshed_at = time.monotonic()  # type: ignore[attr-defined]
            self._update_alert_banner()

    def refresh_if_stale(self) -> None:
        """The visible screen, now, if it has missed three repaint ticks (it was under
        another one): back on the board after two minutes elsewhere, the walk read cleared
        faults as firing until the next tick. A screen left for less is refreshed by the
        tick as usual: a full refresh of 1,000 rows on every Esc from the keys screen made
        the next key slower (bench_tui_keys: 107 ms median against 88; with a threshold of
        one tick, key presses that fell in step with the ticks still paid it)."""
        every = self.settings.console.refresh if self.settings is not None else 1.0
        if time.monotonic() - getattr(self.screen, "refreshed_at", 0.0) >= 3 * every:
            self.refresh_screen()

    def refresh_banner(self) -> None:
        """The banner of a screen just shown, without waiting for the next repaint tick."""
        if self.runtime is not None and not self._closing and self.screen.is_mounted:
            self._update_alert_banner()

    def _update_alert_banner(self) -> None:
        from textual.content import Content
        from textual.widgets import Static

        toast = self._alert_toast
        if toast is not None and getattr(self.screen, "SHOWS_ALERT_CAUSES", False):
            if toast in self._notifications:
                self._unnotify(toast)
                self._alert_toast = None
            elif toast.has_expired:
                self._alert_toast = None
            # else: its Notify message is still on its way; withdrawn at the next tick
        replay = self.replay.status() if self.replay is not None else None
        # Beside an alert the incidents are only counted (short); the alert gets the room
        # the banner's three lines have left, so it gives way rather than losing its end.
        short = self.incident_banner(short=True)
        others = sum(len(x) + 3 for x in (replay, short) if x)
        alert = self.alert_banner(room=_banner_room(self.size.width) - others)
        incidents = short if alert is not None or short is None else self.incident_banner()
        text = " · ".join(x for x in (replay, alert, incidents) if x)
        for banner in self.screen.query("#alert-banner").results(Static):
            if banner.display != bool(text):
                banner.display = bool(text)
            banner.set_class(alert is None and incidents is not None, "-warn")
            if text and self._banner_shown.get(id(banner)) != text:
                self._banner_shown[id(banner)] = text
                banner.update(Content(text), layout=False)
                # No layout for a new age each second, but one when the text now wraps to
                # more (or fewer) lines: the height stayed what the first text needed, so a
                # longer one lost its last line (the age and "a: alerts").
                width = banner.content_size.width
                if width and banner.get_content_height(
                        banner.size, self.size, width) != banner.content_size.height:
                    banner.refresh(layout=True)

    # -- config reload -------------------------------------------------------------------------

    def _reloaded(self, applied: Applied) -> None:
        settings = self.settings
        if settings is not None and "console" in applied.applied:
            self._apply_console(settings)
        self.notify(applied.describe(), timeout=5 if applied.restart else 3, markup=False,
                    severity="warning" if applied.restart else "information")
        self.refresh_screen()

    def _apply_console(self, settings: Settings) -> None:
        """`[console]` edits that apply at once: the theme and the repaint interval."""
        theme = themes.pick_theme(settings.console.theme, os.environ)
        if theme in self.available_themes and theme != self.theme:
            self.theme = theme
        if self._repaint is not None:
            self._repaint.stop()
        self._repaint = self.set_interval(settings.console.refresh, self.refresh_screen,
                                          name="repaint")

    def _config_rejected(self, text: str) -> None:
        self.notify(text, severity="error", markup=False, timeout=10)
        self.refresh_screen()

    def _announce_new_alerts(self) -> None:
        """Once per P0/P1 alert that starts to fire (loud), whether this console evaluates
        alerts or follows the one that does: a toast naming it and its cause, and the bell
        if `[console] bell` is on; never on a resolve. The banner stays until it is
        acknowledged."""
        if self.alerting is None:
            return
        loud = {a.key: a for a in self.alerting.alerts.loud()}
        now = time.monotonic()
        # An alert that fires again soon after (flapping) is not announced again: the banner
        # still shows it, the toast and the bell would only be noise.
        since = self._runtime_from
        new = [a for k, a in loud.items() if k not in self._rung
               and now - self._announced.get(k, -ANNOUNCE_AGAIN) >= ANNOUNCE_AGAIN
               and (since is None or a.fired_at is None or a.fired_at >= since)]
        self._rung = set(loud)
        for a in new:
            self._announced[a.key] = now
        if not new:
            return
        from textual.notifications import Notification, Notify

        from console.engine.text.sanitize import one_line

        if self.settings is not None and self.settings.console.bell:
            self.bell()
        if getattr(self.screen, "SHOWS_ALERT_CAUSES", False):
            return  # the screen lists it with its cause: a toast would only cover that
        # One alert toast at a time, the worst of the new ones (it replaces the previous
        # one): stacked toasts would cover an 80x24 screen. The banner keeps them all.
        worst = min(new, key=lambda a: a.rule.severity)
        more = f" (+{len(new) - 1} more)" if len(new) > 1 else ""
        cause = f"\n{worst.short_cause(70)}" if worst.cause else ""
        if self._alert_toast is not None:
            with contextlib.suppress(KeyError):
                self._unnotify(self._alert_toast)
        toast = Notification(
            f"{one_line(worst.summary, 70)}{cause}\na: alerts",
            f"{worst.rule.severity} FIRING · {one_line(worst.target, 30)}{more}",
            "error", 15, markup=False)
        self._alert_toast = toast
        self.post_message(Notify(toast))

    def alert_banner(self, room: int | None = None) -> str | None:
        """The P0/P1 line every screen shows while such an alert fires unacknowledged
        (within `room` characters when given: see `Alerts.banner`)."""
        if self.alerting is None:
            return None
        # "a: alerts" only where `a` opens them: on the alerts and incident screens `a`
        # acknowledges (the walk read the hint there and acknowledged the incident)
        hint = not _binds_key(type(self.screen), "a")
        return self.alerting.alerts.banner(self.clock(), hint=hint, room=room)

    def incident_banner(self, *, short: bool = False) -> str | None:
        """Open incidents, for the banner: the most severe (then oldest) one with its next
        step, or only their number when an alert already fills the line."""
        desk = self.desk
        if desk is None:
            return None
        open_ = desk.book.open_incidents()
        if not open_:
            return None
        n = len(open_)
        now = self.clock()
        if short:  # an alert fills the line: their number, and what is overdue (the walk
            # saw "OVERDUE by 13s" only inside the incident)
            over = sum(len(inc.overdue(now)) for inc in open_)
            return f"⚑ {n} incident{'s' if n > 1 else ''} open" + (
                f", {over} step{'s' if over > 1 else ''} OVERDUE" if over else "") + " (i)"
        from console.engine.text.fmt import INCIDENT_GLYPH, format_age
        from console.engine.text.sanitize import one_line

        inc = open_[0]
        text = (f"{INCIDENT_GLYPH} {inc.severity} {one_line(inc.title, max_len=40)} · "
                f"{format_age(now - inc.started)}")
        step = inc.next_step()
        if step is not None:
            late = " OVERDUE" if inc.step_status(step, now) == "overdue" else ""
            text += f" · next: {one_line(step.section.title, max_len=30)}{late}"
        if n > 1:
            text += f" · +{n - 1} more"
        return text + " (i)"

    def refuse_if_read_only(self, what: str) -> bool:
        """True (and a message saying so) when this console may not act: `--read-only`."""
        if self.read_only:
            self.notify(f"read-only console (--read-only): cannot {what}", severity="warning",
                        markup=False, timeout=4)
        return self.read_only

    async def action_quit(self) -> None:
        """q: quit, asking first while a P0 is open, or a P0/P1 incident or alert waits
        for someone to acknowledge it (nobody may be watching once this console is gone;
        q quit at once beside an unacknowledged P1 incident and firing P1s, a walk found)."""
        reason = self._quit_reason()
        if reason is None:
            self.exit()
            return
        from console.screens.prompt import Confirm

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit()

        self.push_screen(Confirm(f"{reason}. Quit anyway?"), answered)

    def _quit_reason(self) -> str | None:
        desk = self.desk
        open_ = desk.book.open_incidents() if desk else []
        p0 = [i for i in open_ if i.severity == "P0"]
        if p0:
            return f"{len(p0)} P0 incident{'s' if len(p0) > 1 else ''} open ({p0[0].id})"
        waiting = [i for i in open_ if i.severity == "P1" and i.acknowledged_at is None]
        if waiting:
            return f"P1 incident {waiting[0].id} is open, unacknowledged"
        if self.alerting is not None:
            loud = sorted(self.alerting.alerts.loud(), key=lambda a: a.rule.severity)
            if loud:
                a = loud[0]
                more = f" (+{len(loud) - 1} more)" if len(loud) > 1 else ""
                from console.screens.alerts import evaluator_elsewhere

                stops = "" if evaluator_elsewhere(self.alerting) else \
                    "; its alerts are evaluated here and stop with this console"
                return f"{a.rule.severity} alert {a.id} is firing, unacknowledged{more}{stops}"
        return None

    def action_alerts(self) -> None:
        if self.alerting is None:
            self.notify("alerting is starting…", timeout=3)
            return
        from console.screens.alerts import AlertsScreen

        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen(  # who acts: [state] operator, else user@host
                self.alerting, user=self.runtime.operator if self.runtime else None))

    def hangup(self) -> None:
        """The terminal went away (SIGHUP/EOF) or we were told to stop: exit cleanly, now."""
        if not self._closing:
            self.exit()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("replay_pause", "replay_jump"):  # the time cursor of a replay only
            return self.replay is not None
        return True

    def action_replay_pause(self) -> None:
        if self.replay is not None:
            self.replay.paused = not self.replay.paused
            self.refresh_screen()

    async def action_replay_jump(self, seconds: float) -> None:
        """Move the replay's cursor forward (what happened meanwhile is fed at once)."""
        if self.replay is not None and self.runtime is not None:
            await self.replay.seek(self.replay.t + seconds)
            self.refresh_screen()

    async def on_unmount(self) -> None:
        self._closing = True
        if self.replay is not None:
            await self.replay.stop()
        if self.runtime is not None:
            await self.runtime.stop()
        if self.demo is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.demo.stop()

    # -- actions -------------------------------------------------------------------------------

    def action_help(self) -> None:
        from console.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_incidents(self) -> None:
        from console.screens.incidents import IncidentListScreen, IncidentScreen

        if isinstance(self.screen, IncidentListScreen):
            return
        if isinstance(self.screen, IncidentScreen):  # in one: back to the list (the walk
            # pressed i there and nothing happened), the one below it when there is one
            stack = self.screen_stack
            at = [i for i, s in enumerate(stack) if isinstance(s, IncidentListScreen)]
            if at:
                for _ in range(len(stack) - 1 - at[-1]):
                    self.pop_screen()
                return
        self.push_screen(IncidentListScreen())

    def action_logs(self) -> None:
        from console.screens.logs import LogsScreen

        if isinstance(self.screen, LogsScreen):
            return
        scheduler = self.scheduler
        names = [] if scheduler is None else [
            v.name for v in scheduler.snapshot() if v.kind == "log"]
        if not names:
            self.notify("no log target: add one with kind = \"log\" and path = …", timeout=4)
            return
        assert scheduler is not None
        self.push_screen(LogsScreen(scheduler, names))

    def action_faults(self) -> None:
        if self.refuse_if_read_only("inject faults"):
            return
        if self.demo is None:
            self.notify("faults can be injected only into the demo (opsconsole demo)", timeout=4)
            return
        from console.screens.faults import FaultScreen

        if not isinstance(self.screen, FaultScreen):
            self.push_screen(FaultScreen())

    def action_cycle_theme(self) -> None:
        names = [t for t in themes.CYCLE if t in self.available_themes]
        if names:
            i = names.index(self.theme) if self.theme in names else -1
            self.theme = names[(i + 1) % len(names)]

    def toggle_fault(self, name: str) -> None:
        if self.demo is None:
            return
        on = self.demo.toggle(name)
        self.notify(f"fault {name.replace('_', ' ')} {'injected' if on else 'cleared'}",
                    timeout=3)
        self.refresh_screen()

    def clear_faults(self) -> None:
        if self.demo is not None:
            self.demo.clear_all()
            self.notify("all faults cleared", timeout=3)
            self.refresh_screen()

    def open_target(self, name: str, metric: str | None = None) -> None:
        from console.screens.detail import DetailScreen

        if self.scheduler is not None and name in self.scheduler.names():
            self.push_screen(DetailScreen(name, metric=metric))

    def open_destination(self, dest: Destination) -> None:
        """Go where a runbook link leads: a detail view and chart, the logs with a query,
        a drill-down tab, the endpoint breakdown, the health components, or an external
        page (shown, and copied to the clipboard with OSC 52: it works over SSH)."""
        scheduler = self.scheduler
        if dest.view == "url":
            url = dest.url or ""
            self.copy_to_clipboard(url)
            self.notify(f"{url}\ncopied to the clipboard: paste it into a browser",
                        title="external page", markup=False, timeout=15)
            return
        if scheduler is None or dest.target not in scheduler.names():
            self.notify(f"nothing to open: no target {dest.target!r}", markup=False)
            return
        target = dest.target
        assert target is not None
        if dest.view == "detail":
            self.open_target(target, dest.metric)
        elif dest.view == "logs":
            from console.screens.logs import LogsScreen

            names = [v.name for v in scheduler.snapshot() if v.kind == "log"]
            self.push_screen(LogsScreen(scheduler, names, target=target, query=dest.query,
                                        window=dest.window))
        elif dest.view == "database":
            from console.screens.database import DatabaseScreen

            kind = scheduler.settings.target(target).kind
            screen = DatabaseScreen(target, kind)
            self.push_screen(screen)
            tabs = list(screen.sections)
            if dest.tab in tabs:
                index = tabs.index(dest.tab)
                self.call_after_refresh(screen.action_section, index)
        elif dest.view == "endpoints":
            from console.screens.breakdown import BreakdownScreen

            self.push_screen(BreakdownScreen(target, sort=dest.sort))
        elif dest.view == "health":
            from console.screens.health import HealthScreen

            self.push_screen(HealthScreen(target))
        elif dest.view == "deploys":
            from console.screens.deploys import DeploysScreen

            self.push_screen(DeploysScreen(target, dest.metric or "error_pct",
                                           dest.window or 3600.0))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Keys help", "List every key binding", self.action_help)
        if self.scheduler is not None:
            for name in self.scheduler.names():
                yield SystemCommand(
                    f"Open {name}", "Detail view: latency chart, last responses",
                    lambda n=name: self.open_target(n), discover=False,
                )
        if self.demo is not None:
            from console.demo.stack import FAULTS, describe_fault

            for fault in FAULTS:
                yield SystemCommand(
                    f"Fault: toggle {fault.replace('_', ' ')}", describe_fault(fault),
                    lambda f=fault: self.toggle_fault(f),
                )
            yield SystemCommand("Fault: clear all", "Clear every injected fault",
                                self.clear_faults)
