"""A PostgreSQL target's drill-down: sessions, the lock tree, top statements, tables, indexes.

Everything shown comes from the last check's `details` (console/engine/probes/postgres.py):
the sessions every check, the rest from the slow collectors. Tables are sortable (`o` next
column, `O` reverse, or click a header) and filterable (`/`); `y` copies the selected row's
query with OSC 52, which reaches the local clipboard over SSH. Remote text is shown as plain
Text, never markup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.widgets import DataTable, Footer, Input, Static

from console.engine.text.fmt import fmt_count, format_bytes, is_number
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleScreen

if TYPE_CHECKING:
    from console.engine.runtime import Runtime


def _num(value: Any, digits: int = 0) -> str:
    """A number with separators; text (a pid's state, a name) as it is."""
    return fmt_count(value, digits) if value is None or is_number(value) else str(value)


_bytes = format_bytes  # one unit system: SI, as the panels and the CLI


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None  # None: the query column, whatever is left
    fmt: Callable[[Any], str] = _num
    right: bool = True
    style: Callable[[Any], Style | str] | None = None  # e.g. a threshold colour per value


def _sessions(details: dict[str, Any]) -> list[dict[str, Any]]:
    return list(details.get("sessions") or [])


def _locks(details: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocking tree flattened in order, indented by depth (blockers first)."""
    rows: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        rows.append({"order": len(rows), "tree": "  " * depth + ("└ " if depth else "")
                     + str(node.get("pid")), **{k: node.get(k) for k in
                                                ("user", "state", "duration_s", "query")},
                     "blocking": len(node.get("blocked") or [])})
        for child in node.get("blocked") or []:
            walk(child, depth + 1)

    for root in details.get("blocking") or []:
        walk(root, 0)
    return rows


def _statements(details: dict[str, Any]) -> list[dict[str, Any]]:
    st = details.get("statements") or {}
    rows: dict[str, dict[str, Any]] = {}
    for key in ("by_recent", "by_total", "by_mean"):
        for e in st.get(key) or []:
            rows.setdefault(e.get("queryid", ""), e)
    return list(rows.values())


def _tables(details: dict[str, Any]) -> list[dict[str, Any]]:
    t = details.get("tables") or {}
    rows: dict[str, dict[str, Any]] = {}
    for key in ("by_size", "by_seq_read"):
        for e in t.get(key) or []:
            name = f"{e.get('schema', '')}.{e.get('name', '')}"
            rows.setdefault(name, {**e, "table": name})
    return list(rows.values())


def _indexes(details: dict[str, Any]) -> list[dict[str, Any]]:
    ix = details.get("indexes") or {}
    rows = [{"problem": "unused", "table": f"{e.get('schema')}.{e.get('table')}",
             "index": e.get("index", ""), "bytes": e.get("bytes")}
            for e in ix.get("unused") or []]
    rows += [{"problem": "duplicate", "table": f"{e.get('schema')}.{e.get('table')}",
              "index": ", ".join(e.get("indexes") or []), "bytes": e.get("bytes")}
             for e in ix.get("duplicate") or []]
    return rows


def _text(v: Any) -> str:
    return "" if v is None else str(v)


SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], list[dict[str, Any]]],
                          tuple[Column, ...]]] = {
    "activity": ("Activity", _sessions, (
        Column("pid", "pid", 7, lambda v: f"{v}" if v is not None else "—"),
        Column("user", "user", 8, _text, False),
        Column("application", "app", 8, _text, False),
        Column("state", "state", 8, _text, False),
        Column("duration_s", "secs", 6, lambda v: _num(v, 1)),
        Column("blocked_by", "blocked by", 10,
               lambda v: ",".join(map(str, v or [])) or "", False),
        Column("query", "query", None, _text, False),
    )),
    "locks": ("Locks", _locks, (
        Column("order", "#", 3),
        Column("tree", "pid (blocker › blocked)", 24, _text, False),
        Column("user", "user", 8, _text, False),
        Column("state", "state", 8, _text, False),
        Column("duration_s", "secs", 6, lambda v: _num(v, 1)),
        Column("query", "query", None, _text, False),
    )),
    "statements": ("Top statements", _statements, (
        Column("calls", "calls", 8),
        Column("total_ms", "total ms", 9, lambda v: _num(v, 0)),
        Column("mean_ms", "mean ms", 8, lambda v: _num(v, 2)),
        Column("rows", "rows", 7),
        Column("d_calls", "Δcalls", 6),
        Column("d_total_ms", "Δms", 7, lambda v: _num(v, 0)),
        Column("query", "query", None, _text, False),
    )),
    "tables": ("Tables", _tables, (
        Column("table", "table", None, _text, False),
        Column("total_bytes", "total", 9, _bytes),
        Column("live_rows", "live rows", 9),
        Column("dead_rows", "dead", 7),
        Column("seq_scan", "seq scan", 8),
        Column("idx_scan", "idx scan", 8),
        Column("seq_scan_pct", "seq %", 5, lambda v: _num(v, 1)),
    )),
    "indexes": ("Indexes", _indexes, (
        Column("problem", "problem", 9, _text, False),
        Column("table", "table", 18, _text, False),
        Column("bytes", "size", 9, _bytes),
        Column("index", "index(es)", None, _text, False),
    )),
}


def _keyspace(details: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"db": db, **(v or {})} for db, v in (details.get("keyspace") or {}).items()]


def _slowlog(details: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**e, "new": "new" if e.get("new") else ""} for e in details.get("slowlog") or []]


def _server(details: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for section in ("replication", "persistence"):
        for key, value in (details.get(section) or {}).items():
            if key == "replicas":
                for i, rep in enumerate(value or []):
                    rows.append({"section": section, "key": f"replica {i}",
                                 "value": " ".join(f"{k}={v}" for k, v in rep.items())})
            else:
                rows.append({"section": section, "key": key, "value": value})
    return rows


REDIS_SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], list[dict[str, Any]]],
                                tuple[Column, ...]]] = {
    "keyspace": ("Keyspace", _keyspace, (
        Column("db", "db", 6, _text, False),
        Column("keys", "keys", 12),
        Column("expires", "with TTL", 12),
        Column("avg_ttl", "avg TTL ms", 12),
    )),
    "slowlog": ("Slowlog", _slowlog, (
        Column("id", "id", 7, lambda v: f"{v}" if v is not None else "—"),
        Column("new", "", 3, _text, False),
        Column("duration_us", "µs", 9),
        Column("client", "client", 21, _text, False),
        Column("command", "command (key only)", None, _text, False),
    )),
    "server": ("Replication & persistence", _server, (
        Column("section", "section", 11, _text, False),
        Column("key", "key", 28, _text, False),
        Column("value", "value", None, _text, False),
    )),
}
# (column index, descending) each section starts sorted by.
DEFAULT_SORT: dict[str, tuple[int, bool]] = {
    "activity": (4, True), "locks": (0, False), "statements": (1, True), "tables": (1, True),
    "indexes": (2, True), "keyspace": (0, False), "slowlog": (0, True), "server": (0, False),
}


def _sort_key(value: Any) -> tuple[int, Any]:
    """Missing values last; numbers by value, the rest as text."""
    if value is None:
        return (2, 0)
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, list):
        return (1, ",".join(map(str, value)))
    return (1, str(value).lower())


class DatabaseScreen(ConsoleScreen[None]):
    """1-5 switch section; o/O sort; / filter; y copy query (or command); Esc back.

    PostgreSQL targets get sessions, locks, statements, tables and indexes; Redis targets
    their keyspace, slowlog, and replication and persistence state.
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="db_back"),
        Binding("1", "section(0)", "Section 1", show=False, id="db_s1"),
        Binding("2", "section(1)", "Section 2", show=False, id="db_s2"),
        Binding("3", "section(2)", "Section 3", show=False, id="db_s3"),
        Binding("4", "section(3)", "Section 4", show=False, id="db_s4"),
        Binding("5", "section(4)", "Section 5", show=False, id="db_s5"),
        Binding("o", "sort(1)", "Sort", id="db_sort"),
        Binding("O", "reverse", "Reverse", id="db_reverse"),
        Binding("slash", "filter", "Filter", key_display="/", id="db_filter"),
        Binding("y", "copy", "Copy query", id="db_copy"),
    ]

    DEFAULT_CSS = """
    DatabaseScreen > #db-info { height: auto; max-height: 6; padding: 0 1; }
    DatabaseScreen > #db-filter { display: none; height: 3; }
    DatabaseScreen > #db-filter.visible { display: block; }
    DatabaseScreen > DataTable { height: 1fr; }
    DatabaseScreen > #db-preview { height: auto; max-height: 4; padding: 0 1; }
    """

    def __init__(self, target: str, kind: str = "postgres") -> None:
        super().__init__()
        self.target = target
        self.kind = kind
        self.sections = REDIS_SECTIONS if kind == "redis" else SECTIONS
        self.section = next(iter(self.sections))
        self.sort_index = {k: DEFAULT_SORT[k][0] for k in self.sections}
        self.sort_reverse = {k: DEFAULT_SORT[k][1] for k in self.sections}
        self.filter_text = ""
        self._details: dict[str, Any] = {}
        self._seen: object = None
        self._rows: list[dict[str, Any]] = []  # shown, in order
        self._width = 0

    def compose(self) -> ComposeResult:
        yield Static(Content(self.target), id="db-info")
        yield Input(placeholder="filter rows (Esc clears)", id="db-filter")
        yield DataTable(cursor_type="row", zebra_stripes=False, id="db-table")
        yield Static("", id="db-preview")
        yield Footer()

    def on_mount(self) -> None:
        self._rebuild_columns()
        self.console.refresh_screen()
        self.query_one(DataTable).focus()

    # -- data ------------------------------------------------------------------------------

    def _new_result(self, engine: Any, now: float) -> tuple[bool, Any]:
        """``(changed, last)``: this target's latest CheckResult (or None) and whether it is
        new since the previous call, so a refresh redraws only when a check has run."""
        views = [v for v in engine.snapshot(now) if v.name == self.target]
        last = views[0].last if views else None
        if last is self._seen:
            return False, last
        self._seen = last
        return True, last

    def refresh_data(self, runtime: Runtime, now: float) -> None:
        engine = runtime.scheduler
        changed, last = self._new_result(engine, now)
        if not changed:
            return
        self._details = dict(last.details) if last is not None else {}
        self._fill()

    def show_details(self, details: dict[str, Any]) -> None:
        """Show these details directly (tests, or a caller holding a CheckResult)."""
        self._seen = object()
        self._details = details
        self._fill()

    def _info(self) -> Content:
        d = self._details
        title, _, cols = self.sections[self.section]
        col = cols[self.sort_index[self.section]]
        tabs = "  ".join(
            (f"[{i}] {v[0].upper()}" if k == self.section else f"[{i}] {v[0]}")
            for i, (k, v) in enumerate(self.sections.items(), 1))
        db = d.get("database") or {}
        parts = [f"{self.target} · {'cache' if self.kind == 'redis' else 'database'}"]
        if db.get("size_bytes") is not None:
            growth = db.get("growth_bytes_per_day")
            parts.append(f"size {_bytes(db['size_bytes'])}"
                         + (f" ({'+' if growth >= 0 else '−'}{_bytes(abs(growth))}/day)"
                            if isinstance(growth, int | float) else ""))
        rep = d.get("replication") or {}
        if rep:
            parts.append(f"{rep.get('role', '?')}, {len(rep.get('replicas') or [])} replicas"
                         + (f", link {rep['link_status']}" if rep.get("link_status") else ""))
        lines = [" · ".join(parts), tabs,
                 f"sorted by {col.label} {'↓' if self.sort_reverse[self.section] else '↑'}"
                 + (f" · filter: {one_line(self.filter_text, 40)}" if self.filter_text else "")
                 + f" · {len(self._rows)} rows"]
        if self.section == "statements" and (d.get("statements") or {}).get("available") is False:
            lines.append("pg_stat_statements is not available (see notes)")
        for note in (d.get("notes") or [])[:3]:
            lines.append("note: " + one_line(note, 200))
        return Content("\n".join(lines))

    def _rebuild_columns(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        _, _, cols = self.sections[self.section]
        # DataTable pads each cell by one on both sides; 2 more for the vertical scrollbar.
        width = self.size.width or self.app.size.width or 80
        fixed = sum((c.width or 0) + 2 for c in cols) + 2
        fill = max(12, width - fixed - 2)
        self._width = width
        for c in cols:
            table.add_column(Text(c.label, justify="right" if c.right else "left"),
                             key=c.key, width=c.width or fill)

    def _fill(self) -> None:
        _, extract, cols = self.sections[self.section]
        rows = extract(self._details)
        if self.filter_text:
            needle = self.filter_text.lower()
            rows = [r for r in rows
                    if any(needle in c.fmt(r.get(c.key)).lower() for c in cols)]
        col = cols[self.sort_index[self.section]]
        rows.sort(key=lambda r: _sort_key(r.get(col.key)), reverse=self.sort_reverse[self.section])
        if self.sort_reverse[self.section]:  # keep missing values last either way
            rows.sort(key=lambda r: r.get(col.key) is None)
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for i, r in enumerate(rows):
            table.add_row(*(Text(one_line(c.fmt(r.get(c.key)), 1000), no_wrap=True,
                                 overflow="ellipsis", justify="right" if c.right else "left",
                                 style=c.style(r.get(c.key)) if c.style else "")
                            for c in cols), key=str(i))
        self._rows = rows
        if rows:
            table.move_cursor(row=min(keep, len(rows) - 1), animate=False)
        self.query_one("#db-info", Static).update(self._info())
        self._preview()

    def on_resize(self) -> None:
        if self.size.width != self._width:
            self._rebuild_columns()
            self._fill()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview()

    def _preview(self) -> None:
        """The cursor row's whole query (the column is cut at 80 cells), up to 4 lines."""
        query = self.selected_query()
        self.query_one("#db-preview", Static).update(Content(query or ""))

    # -- actions ---------------------------------------------------------------------------

    def action_section(self, index: int) -> None:
        names = list(self.sections)
        name = names[index] if 0 <= index < len(names) else self.section
        if name != self.section:
            self.section = name
            self._rebuild_columns()
            self._fill()

    def action_sort(self, step: int = 1) -> None:
        cols = self.sections[self.section][2]
        self.sort_index[self.section] = (self.sort_index[self.section] + step) % len(cols)
        self._fill()

    def action_reverse(self) -> None:
        self.sort_reverse[self.section] = not self.sort_reverse[self.section]
        self._fill()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        cols = self.sections[self.section][2]
        keys = [c.key for c in cols]
        index = keys.index(str(event.column_key.value))
        if index == self.sort_index[self.section]:
            self.sort_reverse[self.section] = not self.sort_reverse[self.section]
        else:
            self.sort_index[self.section] = index
        self._fill()

    def action_filter(self) -> None:
        box = self.query_one("#db-filter", Input)
        box.add_class("visible")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def action_back(self) -> None:
        box = self.query_one("#db-filter", Input)
        if self.filter_text or box.has_focus:
            box.value = ""
            self.filter_text = ""
            box.remove_class("visible")
            self.query_one(DataTable).focus()
            self._fill()
            return
        self.app.pop_screen()

    def selected_query(self) -> str | None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        if not 0 <= row < len(self._rows):
            return None
        query = self._rows[row].get("query") or self._rows[row].get("command")
        return str(query) if query else None

    def action_copy(self) -> None:
        query = self.selected_query()
        if query is None:
            self.notify("no query on this row", severity="warning")
            return
        self.app.copy_to_clipboard(query)
        self.notify(f"copied {len(query)} characters (OSC 52)")
