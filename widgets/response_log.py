"""The last check results of one target, newest first, with the highlighted one's response."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from console.engine.model import CheckResult, ResponseInfo
from console.engine.text.fmt import STATUS_LABELS, STATUS_LEVEL, fmt_ms, fmt_number
from console.engine.text.sanitize import clean, one_line

from ._table import FillTable

_LEVELS = ("ok", "warn", "crit", "unknown", "muted")
_BODY_CHARS = 2000


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def _detail(result: CheckResult) -> str:
    if result.error:
        return one_line(result.error)
    if result.reasons:
        return one_line("; ".join(result.reasons))
    response = result.response
    if response is not None and (response.reason or response.final_url):
        return one_line(response.reason or response.final_url)
    return ""


def _response_line(response: ResponseInfo) -> str:
    parts = []
    head = " ".join(
        part for part in (
            one_line(response.http_version, max_len=16),
            str(response.status_code) if response.status_code is not None else "",
            one_line(response.reason, max_len=60),
        ) if part
    )
    if head:
        parts.append(head)
    size = f"{fmt_number(response.body_bytes)} B"
    parts.append(f"{size} (truncated)" if response.truncated else size)
    if response.final_url:
        redirects = f" after {response.redirects} redirect(s)" if response.redirects else ""
        parts.append(f"→ {one_line(response.final_url, max_len=300)}{redirects}")
    return " · ".join(parts)


class ResultTable(FillTable):
    """The table half of ResponseLog: time, state, latency, status code, error or reason."""

    COLUMNS = (
        ("time", "time", 8, False),
        ("state", "state", 6, False),
        ("latency", "ms", 5, True),
        ("code", "code", 4, True),
        ("detail", "error / reason", 12, False),
    )

    COMPONENT_CLASSES: ClassVar[set[str]] = {f"result-table--{level}" for level in _LEVELS}

    DEFAULT_CSS = """
    ResultTable {
        & > .result-table--ok { color: $status-ok; }
        & > .result-table--warn { color: $status-warn; text-style: bold; }
        & > .result-table--crit { color: $status-crit; text-style: bold; }
        & > .result-table--unknown { color: $status-unknown; }
        & > .result-table--muted { color: $text-muted; }
        &:ansi > .result-table--muted { color: ansi_default; text-style: dim; }
    }
    """

    STYLE_PREFIX = "result-table"
    STYLE_LEVELS = _LEVELS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: list[tuple[str, CheckResult]] = []

    def show(self, rows: list[tuple[str, CheckResult]]) -> None:
        """Replace the rows with (key, result) pairs, keeping the cursor on its key."""
        row = self.cursor_row
        selected = self._shown[row][0] if 0 <= row < len(self._shown) else None
        self.clear()
        for key, result in rows:
            self.add_row(*self._cells(result), key=key)
        self._shown = list(rows)
        keys = [key for key, _ in rows]
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False)

    def restyle(self) -> None:
        self.show(self._shown)

    def _cells(self, result: CheckResult) -> tuple[Text, ...]:
        level = STATUS_LEVEL.get(result.status, "unknown")
        response = result.response
        code = str(response.status_code) if response and response.status_code is not None else "—"
        detail_level = "muted" if not (result.error or result.reasons) else level

        def cell(text: str, style_level: str = "", right: bool = False) -> Text:
            return self.make_cell(text, self.cell_style(style_level), right=right)

        return (
            cell(_clock(result.started_at), "muted"),
            cell(STATUS_LABELS.get(result.status, "? ????"), level),
            cell(fmt_ms(result.latency_ms), right=True),
            cell(code, right=True),
            cell(_detail(result), detail_level),
        )


class ResponseLog(Vertical):
    """Recent check results of one target and, below them, the highlighted one in full.

    `show_results(results)` is cheap to call on every snapshot: it returns at once when
    the results are the ones already shown. Everything remote (errors, reasons, headers,
    body excerpts) is sanitised again here and rendered as `Text`, never as markup.
    """

    DEFAULT_CSS = """
    ResponseLog {
        height: 1fr;
        & > ResultTable { height: 1fr; min-height: 3; }
        & > .response-log--body {
            height: auto;
            max-height: 8;
            padding: 0 1;
            background: $boost;
            color: $text;
        }
        & > .response-log--body.-empty { display: none; }
        & > .response-log--body.-hidden { display: none; }
        &:ansi > .response-log--body { background: ansi_default; }
    }
    """

    class ResultHighlighted(Message):
        """The cursor moved to another result (its index in the list shown, 0 = newest)."""

        def __init__(self, log: ResponseLog, index: int, result: CheckResult) -> None:
            self.log = log
            self.index = index
            self.result = result
            super().__init__()

        @property
        def control(self) -> ResponseLog:
            return self.log

    def __init__(
        self,
        *,
        max_results: int = 50,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._max_results = max(1, max_results)
        self._results: list[CheckResult] = []
        self._keys: list[str] = []
        self._source: tuple[CheckResult, ...] = ()
        self._pending: Sequence[CheckResult] | None = None
        self._ready = False

    def compose(self) -> ComposeResult:
        yield ResultTable()
        yield Static("", markup=False, classes="response-log--body -empty")

    def on_mount(self) -> None:
        self.call_after_refresh(self._flush_pending)

    def _flush_pending(self) -> None:
        self._ready = True
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.show_results(pending)

    # -- public API --------------------------------------------------------------------

    @property
    def table(self) -> ResultTable:
        """The results table (focus it to move through results)."""
        return self.query_one(ResultTable)

    @property
    def results(self) -> list[CheckResult]:
        """The results shown, newest first."""
        return list(self._results)

    @property
    def selected_result(self) -> CheckResult | None:
        """The result under the cursor, or None when there is none."""
        if not self._results:
            return None
        row = self.table.cursor_row
        return self._results[row] if 0 <= row < len(self._results) else None

    def show_results(self, results: Sequence[CheckResult]) -> None:
        """Show the newest `max_results` of `results` (any order), newest first."""
        if not self._ready:
            self._pending = results  # shown once the table is mounted (see on_mount)
            return
        source = tuple(results)
        if len(source) == len(self._source) and all(
            a is b for a, b in zip(source, self._source, strict=True)
        ):
            return  # the same objects as last time: nothing to do
        self._source = source
        ordered = sorted(source, key=lambda r: r.started_at, reverse=True)[: self._max_results]
        if ordered == self._results:
            return
        keys: list[str] = []
        seen: dict[str, int] = {}
        for result in ordered:
            base = f"{result.started_at!r}"
            seen[base] = seen.get(base, -1) + 1
            keys.append(f"{base}#{seen[base]}")

        self.table.show(list(zip(keys, ordered, strict=True)))
        self._results = ordered
        self._keys = keys
        self._show_body()

    # -- rendering ---------------------------------------------------------------------

    def _body_text(self, result: CheckResult) -> Text:
        text = Text(no_wrap=False, end="")
        text.append(f"{_clock(result.started_at)}  {STATUS_LABELS.get(result.status, '')}")
        if result.latency_ms is not None:
            text.append(f"  {fmt_ms(result.latency_ms)} ms")
        if result.response is not None:
            text.append("\n" + _response_line(result.response))
        if result.error:
            text.append("\nerror: ", Style(bold=True))
            text.append(clean(result.error, max_len=1000, newlines=True))
        for reason in result.reasons[:10]:
            text.append("\n· " + one_line(reason, max_len=300))
        if result.response is not None and result.response.body_excerpt:
            text.append("\n")
            text.append(clean(result.response.body_excerpt, max_len=_BODY_CHARS, newlines=True),
                        Style(dim=True))
        return text

    def _show_body(self) -> None:
        body = self.query_one(".response-log--body", Static)
        result = self.selected_result
        if result is None:
            body.update("")
            body.add_class("-empty")
            return
        body.update(self._body_text(result))
        body.remove_class("-empty")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_body()
        result = self.selected_result
        if result is not None:
            self.post_message(self.ResultHighlighted(self, event.cursor_row, result))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        # Enter toggles the response pane, to give the table the room back at 80x24.
        event.stop()
        self.query_one(".response-log--body", Static).toggle_class("-hidden")
