"""Logs: the recent lines of a log target, live, with the playbook's queries one key away.

The screen reads the `LogProbe`'s ring of parsed lines (the engine's probe for a `log`
target) once a second and redraws only when new lines came or the query changed. Keys:
e errors (last hour), m errors by message, s slow requests, w failed Stripe webhooks,
c all lines, `/` a filter in the query language, t the next log target, Enter the line's
JSON pretty-printed. Every text from the file is sanitised and shown as plain Content.

A query whose time window reaches past the lines held (2,000: 11 s of the demo's traffic)
is answered from the file itself, as `opsconsole logs` answers it (`search_file`: it seeks
to the window's start), in a thread, again every FILE_EVERY_S while it stays open.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import orjson
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from console.engine.logs.query import LogQuery, SearchResult, parse_query, search_lines
from console.engine.logs.tail import LogLine
from console.engine.text.fmt import format_target
from console.engine.text.sanitize import clean, one_line
from console.screens.base import ConsoleModal, ConsoleScreen
from widgets.key_footer import KeyFooter

SHOWN = 500  # rows in the list: the latest matches
FILE_EVERY_S = 30.0
"""How often a query the held lines cannot answer searches the file again."""
FILE_TAIL_BYTES = 64 * 1024 * 1024
"""What of the file the screen reads at most (its end); `opsconsole logs` reads it all."""
KEY_QUERIES = {"e": "errors", "m": "errors-by-message", "s": "slow", "w": "stripe-failed"}


def line_row(line: LogLine, width: int = 76) -> str:
    """One row: time, level, message (or the raw text of a non-JSON line), sanitised."""
    if line.record is None:
        return one_line(f"{'':8} {'?raw':<5} {line.raw}", width)
    t = time.strftime("%H:%M:%S", time.gmtime(line.ts)) if line.ts is not None else " " * 8
    level = (line.level or "-")[:5]
    text = line.message or line.raw
    err = line.record.get("error") if isinstance(line.record, dict) else None
    if isinstance(err, str) and err and err != text:  # winston's { error: error.message }
        text += f" — {err}"
    if line.response_time is not None:
        text += f" ({line.response_time:g} ms)"
    return one_line(f"{t} {level:<5} {text}", width)


def pretty(line: LogLine) -> str:
    """The line's JSON, indented; the raw text when it is not JSON. Sanitised."""
    if line.record is None:
        return clean(line.raw, max_len=20_000, newlines=True)
    body = orjson.dumps(line.record, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return clean(body.decode(), max_len=20_000, newlines=True)


class LineDetail(ConsoleModal[None]):
    """A line's JSON, scrollable; Esc or Enter closes."""

    DEFAULT_CSS = """
    LineDetail { align: center middle; }
    LineDetail #line-body { width: 90%; height: 80%; border: round $accent;
                            background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="line_close"),
                Binding("enter", "close", show=False)]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="line-body"):
            yield Static(Content(self.text), id="line-json")

    def action_close(self) -> None:
        self.dismiss(None)


def covers(q: LogQuery | None, lines: Sequence[LogLine], now: float, held: int) -> bool:
    """Whether the `held` lines (the probe's ring, full) answer `q`: its time window, or
    for a grouped query without one ("count errors by type", as the playbook greps the
    whole file), the file itself: counts of the last 2,000 lines (7 s of the demo's
    traffic) read 55/25/1 where the file's were 852/349/17."""
    if q is None:
        return True
    if q.since is None:
        return not (q.group_by and held and len(lines) >= held)
    oldest = next((ln.ts for ln in lines if ln.ts is not None), None)
    return not (held and len(lines) >= held and oldest is not None and now - oldest < q.since)


def window_label(q: LogQuery | None, lines: Sequence[LogLine], now: float, held: int,
                 *, demo: bool = False, from_file: bool = False, skipped: bool = False
                 ) -> str:
    """What the screen searched: the query and its window. The screen holds only the last
    `held` lines; when those cover less than the window (a runbook's "errors in the last
    hour" on a busy log) it says how much they cover, and that `opsconsole logs` reads the
    whole file (`--demo`: the demo's), rather than letting "last 1h" stand for a few
    minutes."""
    label = f"query: {one_line(q.text, 40)}" if q else "all lines"
    if q is not None and q.since is None and from_file:
        return label + (" (the file's last 64 MB)" if skipped else " (the whole file)")
    if q is None or q.since is None:
        return label
    label += f" (last {format_target(q.since)}"
    if from_file:
        return label + ", from the file)"
    oldest = next((ln.ts for ln in lines if ln.ts is not None), None)
    if not covers(q, lines, now, held) and oldest is not None:
        label += (f"; the {len(lines)} lines held cover {format_target(max(now - oldest, 0))}"
                  f": `opsconsole logs{' --demo' if demo else ''}` reads the whole file")
    return label + ")"


class LogsScreen(ConsoleScreen[None]):
    """Recent lines of one log target filtered by a query; newest at the bottom."""

    DEFAULT_CSS = """
    LogsScreen #logs-title { height: auto; padding: 0 1; text-style: bold; }
    LogsScreen #logs-list { height: 1fr; }
    LogsScreen #logs-filter { dock: bottom; display: none; }
    LogsScreen #logs-filter.-open { display: block; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="logs_back"),
        Binding("e", "builtin('errors')", "Errors", id="logs_errors"),
        Binding("m", "builtin('errors-by-message')", "By message", id="logs_by_message"),
        Binding("s", "builtin('slow')", "Slow", id="logs_slow"),
        Binding("w", "builtin('stripe-failed')", "Stripe", id="logs_stripe"),
        Binding("c", "builtin('')", "All", id="logs_all"),
        Binding("slash", "filter", "Filter", key_display="/", id="logs_filter"),
        Binding("t", "next_target", "Target", id="logs_target"),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def __init__(self, engine: Any, names: list[str], *, target: str | None = None,
                 query: str | None = None, window: float | None = None) -> None:
        """`target`, `query` and `window` (seconds) open it ready: a runbook link's
        ``logs:stripe-failed?window=1h``."""
        super().__init__()
        self.engine = engine
        self.names = names
        self.target = target if target in names else (names[0] if names else "")
        self.log_query: LogQuery | None = None
        self._initial = (query, window)
        self._drawn: tuple[Any, ...] | None = None
        self._rows: list[LogLine] = []
        # A window the held lines do not cover (a runbook's "last hour" on a busy log: the
        # demo's 2,000 lines were 11 s) is searched in the file itself, as `opsconsole logs`
        # does, in a thread, at most every FILE_EVERY_S: (target, query, when, result).
        self._file: tuple[str, LogQuery, float, SearchResult | None] | None = None
        self._file_problem: str | None = None
        self._groups: list[tuple[str, int]] = []  # the grouped query's rows
        self._grouped: LogQuery | None = None  # the grouped query Enter drilled from
        self._searching: asyncio.Task[None] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Content(""), id="logs-title")
            yield OptionList(id="logs-list")
        yield Input(placeholder="level=error responseTime>1000 text   (Enter applies, Esc)",
                    id="logs-filter")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.set_interval(1.0, self.redraw, name="logs-tick")
        query, window = self._initial
        if query:
            self.set_query(query, since=window)
        self.redraw()

    # -- data -------------------------------------------------------------------------------

    def _now(self) -> float:
        return float(self.engine.clock())

    def _probe(self) -> Any:
        probe = self.engine.probe(self.target) if self.engine is not None else None
        return probe if hasattr(probe, "recent") else None

    def redraw(self, *, force: bool = False) -> None:
        probe = self._probe()
        appended = probe.appended if probe is not None else -1
        key = (self.target, self.log_query, appended)
        if not force and key == self._drawn:
            return
        self._drawn = key
        ol = self.query_one("#logs-list", OptionList)
        q = self.log_query
        if probe is None:
            label = window_label(q, [], self._now(), 0)
            self._title(f"Logs · {one_line(self.target, 30)} · no lines yet (is it a log "
                        "target, and has it been checked?)")
            ol.clear_options()
            self._rows = []
            return
        lines = list(probe.recent)
        now = self._now()
        held = probe.recent.maxlen or 0
        found = self._file_result(probe, q, lines, now, held)
        label = window_label(q, lines, now, held,
                             demo=bool(getattr(self.app, "demo_mode", False)),
                             from_file=found is not None,
                             skipped=found is not None and found.skipped > 0)
        at_end = ol.highlighted is None or ol.highlighted >= ol.option_count - 1
        keep = ol.highlighted
        ol.clear_options()
        scope = (f"{found.scanned} lines of the file" if found is not None
                 else f"the last {len(lines)} lines")
        if q is not None and q.group_by:
            res = found or search_lines(lines, q, now=now)
            groups = res.sorted_groups()
            self._groups = groups
            self._rows = []
            ol.add_options([Option(Content(one_line(f"{n:>7}  {k}", 76)), id=f"g{i}")
                            for i, (k, n) in enumerate(groups)])
            self._title(f"Logs · {one_line(self.target, 30)} · {label} · {res.matched} in "
                        f"{len(groups)} groups of {scope}")
            if groups:
                ol.highlighted = 0 if keep is None else min(keep, len(groups) - 1)
            return
        if q is not None:
            res = found or search_lines(lines, q, now=now, limit=SHOWN)
            rows = list(res.matches)
            summary = f"{res.matched} of {scope}"
        else:
            rows = lines[-SHOWN:]
            summary = f"{len(lines)} recent lines"
        self._rows = rows
        ol.add_options([Option(Content(line_row(ln))) for ln in rows])
        nonjson = probe.non_json_total
        self._title(f"Logs · {one_line(self.target, 30)} · {label} · {summary}"
                    + (f" · {nonjson} not JSON" if nonjson else ""))
        if rows:  # follow the tail while the cursor sits on the last row
            ol.highlighted = len(rows) - 1 if at_end or keep is None else min(keep,
                                                                               len(rows) - 1)

    def _file_result(self, probe: Any, q: LogQuery | None, lines: Sequence[LogLine],
                     now: float, held: int) -> SearchResult | None:
        """The file's answer to `q` when the held lines cannot give it (None otherwise, or
        until the first search is done); starts a search when none is fresh."""
        path = getattr(getattr(probe, "target", None), "path", None)
        if q is None or covers(q, lines, now, held) or not path:
            return None
        have = self._file
        result, age = None, math.inf
        if have is not None and have[0] == self.target and have[1] == q:
            result, age = have[3], now - have[2]
        if age >= FILE_EVERY_S and self._searching is None:
            self._searching = asyncio.create_task(self._search_file(str(path), q, now))
        return result

    async def _search_file(self, path: str, q: LogQuery, now: float) -> None:
        from console.engine.logs.query import search_file

        target = self.target
        res: SearchResult | None = None
        try:
            res = await asyncio.to_thread(search_file, path, q, now=now, limit=SHOWN,
                                          tail_bytes=FILE_TAIL_BYTES)
        except OSError as exc:  # said once; the held lines answer meanwhile
            problem = f"cannot search {path}: {exc.strerror or exc}"
            if problem != self._file_problem:
                self.notify(problem, severity="warning", markup=False, timeout=5)
            self._file_problem = problem
        finally:
            self._searching = None
        if self.is_mounted:
            self._file = (target, q, now, res)
            if res is not None:
                self._file_problem = None
                self.redraw(force=True)

    def _title(self, text: str) -> None:
        self.query_one("#logs-title", Static).update(
            Content(text + "\ne errors · m by message · s slow · w stripe · c all · / filter"
                    " · t target · Enter JSON"))

    def set_query(self, text: str, *, since: float | None = None) -> bool:
        """Apply a query (or clear it with ""), over the last `since` seconds if given (else
        a ready query's own window); a bad one is reported, the old one kept."""
        self._grouped = None  # a new query: Esc no longer returns to groups
        if not text.strip():
            self.log_query = None
        else:
            slow_ms = None
            probe = self._probe()
            if probe is not None:
                slow_ms = getattr(probe.target, "slow_ms", None)
            try:
                self.log_query = parse_query(text, slow_ms=slow_ms, since=since)
            except ValueError as exc:
                self.notify(one_line(str(exc), 200), severity="error", markup=False)
                return False
        self.redraw(force=True)
        return True

    # -- actions ------------------------------------------------------------------------------

    def action_builtin(self, name: str) -> None:
        self.set_query(name)

    def action_filter(self) -> None:
        box = self.query_one("#logs-filter", Input)
        box.add_class("-open")
        if self.log_query is not None and self.log_query.name is None:
            box.value = self.log_query.text
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.set_query(event.value):
            self._close_filter()

    def _close_filter(self) -> None:
        box = self.query_one("#logs-filter", Input)
        box.remove_class("-open")
        self.query_one("#logs-list", OptionList).focus()

    def _drill(self, q: LogQuery, index: int) -> None:
        """Enter on a group ("by message"): its lines, in the same window; Esc comes back
        to the groups. It did nothing, under a footer that said "Enter JSON"."""
        import shlex

        from console.engine.logs.query import BUILTIN

        groups = self._groups
        if not 0 <= index < len(groups) or groups[index][0] == "(other messages)":
            return
        base = BUILTIN[q.name].text if q.name in BUILTIN else q.text
        text = f"{base} {q.group_by}={shlex.quote(groups[index][0])}"
        if self.set_query(text, since=q.since):
            self._grouped = q

    def action_back(self) -> None:
        box = self.query_one("#logs-filter", Input)
        if box.has_class("-open"):
            self._close_filter()
            return
        if self._grouped is not None:  # from a group's lines back to the groups
            grouped, self._grouped = self._grouped, None
            self.log_query = grouped
            self.redraw(force=True)
            return
        initial = self._initial[0]
        opened_with = self.log_query is not None and initial is not None and (
            self.log_query.text == initial or self.log_query.name == initial)
        if self.log_query is not None and not opened_with:
            self.set_query("")  # back to all lines; a runbook link's own query goes back
            return
        self.app.pop_screen()

    def action_next_target(self) -> None:
        if len(self.names) > 1:
            i = self.names.index(self.target) if self.target in self.names else -1
            self.target = self.names[(i + 1) % len(self.names)]
            self.redraw(force=True)

    def action_cursor_down(self) -> None:
        self.query_one("#logs-list", OptionList).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#logs-list", OptionList).action_cursor_up()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        q = self.log_query
        if q is not None and q.group_by:
            self._drill(q, event.option_index)
            return
        i = event.option_index
        if 0 <= i < len(self._rows):
            self.app.push_screen(LineDetail(pretty(self._rows[i])))
