"""A database target's drill-down: what a DBA reads for PostgreSQL and Redis, as tables.

PostgreSQL: sessions, locks, statements, tables, indexes, connections, replication, vacuums;
Redis: keyspace, slowlog, server state, commands, clients and big keys.

Everything shown comes from the last check's `details` (console/engine/probes/postgres.py):
the sessions every check, the rest from the slow collectors. Tables are sortable (`o` next
column, `O` reverse, or click a header) and filterable (`/`); `y` copies the selected row's
query with OSC 52, which reaches the local clipboard over SSH. Remote text is shown as plain
Text, never markup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.widgets import DataTable, Input, Static

from console.engine.details import PostgresDetails, RedisDetails, Row
from console.engine.text.fmt import NO_VALUE, format_bytes, format_duration, is_number
from console.engine.text.sanitize import one_line
from console.screens.base import ConsoleModal, ConsoleScreen
from widgets.key_footer import KeyFooter
from widgets.record_table import Column, RecordTable, fmt_plain

if TYPE_CHECKING:
    from console.engine.model import CheckResult
    from console.engine.runtime import Runtime
    from console.engine.scheduler import Scheduler


_num = fmt_plain


_bytes = format_bytes  # one unit system: SI, as the panels and the CLI


def _signed_bytes(value: float) -> str:
    """Growth: + or − in front of the size."""
    return ("+" if value >= 0 else "−") + format_bytes(abs(value))


def _age(value: Any) -> str:
    """Durations and ages in the console's one vocabulary (450ms, 1.5s, 3m05s), never
    negative (clock skew shows as 0); NULL ("never") is —."""
    return format_duration(max(0.0, value)) if is_number(value) else NO_VALUE


def _plural(n: float, word: str) -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


# What a section's table is made of: the rows it shows, from the last check's details.
Extract = Callable[[Mapping[str, object]], list[Row]]


def _pg(details: Mapping[str, object]) -> PostgresDetails:
    """A postgres target's details (the screen shows one target, of the kind it was opened
    for: `CheckResult.details_of("postgres")` of its last check)."""
    return cast(PostgresDetails, details)


def _redis(details: Mapping[str, object]) -> RedisDetails:
    """A redis target's details, as `_pg` is a postgres one's."""
    return cast(RedisDetails, details)


def _sessions(details: Mapping[str, object]) -> list[Row]:
    return list(_pg(details).get("sessions") or [])


def _locks(details: Mapping[str, object]) -> list[Row]:
    """The blocking tree flattened in order, indented by depth (blockers first)."""
    rows: list[Row] = []

    def walk(node: Row, depth: int) -> None:
        rows.append({"order": len(rows), "tree": "  " * depth + ("└ " if depth else "")
                     + str(node.get("pid")), **{k: node.get(k) for k in
                                                ("user", "state", "duration_s", "query")},
                     "blocking": len(node.get("blocked") or [])})
        for child in node.get("blocked") or []:
            walk(child, depth + 1)

    for root in _pg(details).get("blocking") or []:
        walk(root, 0)
    return rows


def _statements(details: Mapping[str, object]) -> list[Row]:
    st = _pg(details).get("statements") or {}
    rows: dict[str, Row] = {}
    for e in [*(st.get("by_recent") or []), *(st.get("by_total") or []),
              *(st.get("by_mean") or [])]:
        rows.setdefault(e.get("queryid", ""), e)
    return list(rows.values())


def _tables(details: Mapping[str, object]) -> list[Row]:
    t = _pg(details).get("tables") or {}
    rows: dict[str, Row] = {}
    for e in [*(t.get("by_size") or []), *(t.get("by_seq_read") or []),
              *(t.get("by_dead") or [])]:
        name = f"{e.get('schema', '')}.{e.get('name', '')}"
        rows.setdefault(name, {**e, "table": name})
    return list(rows.values())


def _indexes(details: Mapping[str, object]) -> list[Row]:
    """Every listed index with its scans and size, the unused and duplicate ones flagged."""
    ix = _pg(details).get("indexes") or {}
    rows: list[Row] = []
    seen = set()
    for e in ix.get("by_size") or []:
        problem = "unused" if e.get("unused") else "duplicate" if e.get("duplicate") else ""
        rows.append({"problem": problem, "table": f"{e.get('schema')}.{e.get('table')}",
                     "index": e.get("index", ""), "idx_scan": e.get("idx_scan"),
                     "bytes": e.get("bytes")})
        seen.add(e.get("index"))
    rows += [{"problem": "unused", "table": f"{e.get('schema')}.{e.get('table')}",
              "index": e.get("index", ""), "idx_scan": 0.0, "bytes": e.get("bytes")}
             for e in ix.get("unused") or [] if e.get("index") not in seen]
    rows += [{"problem": "duplicate", "table": f"{e.get('schema')}.{e.get('table')}",
              "index": ", ".join(e.get("indexes") or []), "idx_scan": None,
              "bytes": e.get("bytes")}
             for e in ix.get("duplicate") or []]
    return rows


def _connections(details: Mapping[str, object]) -> list[Row]:
    """Connections per role, database, application and state, as shares of what
    applications may use (max_connections minus the reserved slots)."""
    c = _pg(details).get("connections") or {}
    usable = c.get("usable") or 0
    rows: list[Row] = []
    for label, groups in (("role", c.get("by_role")), ("database", c.get("by_database")),
                          ("application", c.get("by_application")),
                          ("state", c.get("by_state"))):
        for g in groups or []:
            n = g.get("connections")
            rows.append({"group": label, "name": g.get("name") or "(none)", "connections": n,
                         "pct": n / usable * 100 if usable and n is not None else None})
    return rows


def _replication(details: Mapping[str, object]) -> list[Row]:
    rep = _pg(details).get("replication") or {}
    rows: list[Row] = [{"what": "replica", "name": r.get("name") or r.get("client") or "",
             "state": f"{r.get('state', '')} {r.get('sync_state', '')}".strip(),
             "lag_s": r.get("replay_lag_s"), "bytes": r.get("lag_bytes"),
             "detail": r.get("client") or ""} for r in rep.get("replicas") or []]
    rows += [{"what": "slot", "name": s.get("name", ""),
              "state": "active" if s.get("active") else "INACTIVE", "lag_s": None,
              "bytes": s.get("retained_bytes"),
              "detail": " ".join(filter(None, (s.get("type"), s.get("wal_status"),
                                               s.get("database"))))}
             for s in rep.get("slots") or []]
    return rows


def _vacuum(details: Mapping[str, object]) -> list[Row]:
    return [{**v, "auto": "auto" if v.get("auto") else "manual"}
            for v in (_pg(details).get("vacuum") or {}).get("running") or []]


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def _pct(v: Any) -> str:
    return _num(v, 1)


SECTIONS: dict[str, tuple[str, Extract, tuple[Column, ...]]] = {
    "activity": ("Activity", _sessions, (
        Column("pid", "pid", 7, lambda v: f"{v}" if v is not None else "—"),
        Column("user", "user", 8, _text, False),
        Column("application", "app", 8, _text, False),
        Column("state", "state", 8, _text, False),
        Column("duration_s", "secs", 6, _age),
        Column("blocked_by", "blocked by", 10,
               lambda v: ",".join(map(str, v or [])) or "", False),
        Column("xact_s", "tx", 6, _age),
        Column("query", "query", None, _text, False),
    )),
    "locks": ("Locks", _locks, (
        Column("order", "#", 3),
        Column("tree", "pid (blocker › blocked)", 24, _text, False),
        Column("user", "user", 8, _text, False),
        Column("state", "state", 8, _text, False),
        Column("duration_s", "secs", 6, _age),
        Column("query", "query", None, _text, False),
    )),
    "statements": ("Statements", _statements, (
        Column("calls", "calls", 8),
        Column("total_ms", "total ms", 9, lambda v: _num(v, 0)),
        Column("mean_ms", "mean ms", 8, lambda v: _num(v, 2)),
        Column("d_calls", "Δcalls", 6),
        Column("d_mean_ms", "Δmean ms", 8, lambda v: _num(v, 2)),
        Column("d_io_ms", "Δio ms", 7, lambda v: _num(v, 1)),
        Column("query", "query", None, _text, False),
    )),
    "tables": ("Tables", _tables, (
        Column("table", "table", None, _text, False, keep_end=True),
        Column("total_bytes", "total", 10, _bytes),
        Column("live_rows", "live rows", 9),
        Column("dead_pct", "dead %", 6, _pct),
        Column("last_autovacuum_s", "autovac", 7, _age),
        Column("last_autoanalyze_s", "analyze", 7, _age),
        Column("ins_per_s", "ins/s", 6, lambda v: _num(v, 1)),
        Column("upd_per_s", "upd/s", 6, lambda v: _num(v, 1)),
        Column("del_per_s", "del/s", 6, lambda v: _num(v, 1)),
        Column("seq_scan_pct", "seq %", 5, _pct),
    )),
    "indexes": ("Indexes", _indexes, (
        Column("problem", "problem", 9, _text, False),
        Column("table", "table", 18, _text, False, keep_end=True),
        Column("idx_scan", "scans", 8),
        Column("bytes", "size", 10, _bytes),
        Column("index", "index(es)", None, _text, False),
    )),
    "connections": ("Connections", _connections, (
        Column("group", "by", 11, _text, False),
        Column("name", "name", None, _text, False),
        Column("connections", "conns", 6),
        Column("pct", "% usable", 8, _pct),
    )),
    "replication": ("Replication", _replication, (
        Column("what", "what", 7, _text, False),
        Column("name", "name", 16, _text, False),
        Column("state", "state", 16, _text, False),
        Column("lag_s", "lag", 7, _age),
        Column("bytes", "WAL behind", 10, _bytes),
        Column("detail", "detail", None, _text, False),
    )),
    "vacuum": ("Vacuum", _vacuum, (
        Column("pid", "pid", 7, lambda v: f"{v}" if v is not None else "—"),
        Column("table", "table", None, _text, False, keep_end=True),
        Column("phase", "phase", 20, _text, False),
        Column("scanned_pct", "scanned %", 9, _pct),
        Column("running_s", "running", 8, _age),
        Column("auto", "by", 6, _text, False),
    )),
}


def _keyspace(details: Mapping[str, object]) -> list[Row]:
    return [{"db": db, **(v or {})} for db, v in (_redis(details).get("keyspace") or {}).items()]


def _slowlog(details: Mapping[str, object]) -> list[Row]:
    return [{**e, "new": "new" if e.get("new") else ""}
            for e in _redis(details).get("slowlog") or []]


def _server(details: Mapping[str, object]) -> list[Row]:
    rows: list[Row] = []
    d = _redis(details)
    sections: tuple[tuple[str, Mapping[str, object]], ...] = (
        ("memory", d.get("memory") or {}), ("replication", d.get("replication") or {}),
        ("persistence", d.get("persistence") or {}))
    for section, fields in sections:
        for key, value in fields.items():
            if key == "replicas":
                for i, rep in enumerate(value if isinstance(value, list) else []):
                    rows.append({"section": section, "key": f"replica {i}",
                                 "value": " ".join(f"{k}={v}" for k, v in rep.items())})
            else:
                rows.append({"section": section, "key": key,
                             "value": "—" if value is None else value})
    return rows


def _commands(details: Mapping[str, object]) -> list[Row]:
    return list(_redis(details).get("commands") or [])


def _clients(details: Mapping[str, object]) -> list[Row]:
    return list((_redis(details).get("clients") or {}).get("by_idle") or [])


def _bigkeys(details: Mapping[str, object]) -> list[Row]:
    return list((_redis(details).get("bigkeys") or {}).get("keys") or [])


REDIS_SECTIONS: dict[str, tuple[str, Extract, tuple[Column, ...]]] = {
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
    "commands": ("Commands", _commands, (
        Column("command", "command", None, _text, False),
        Column("calls", "calls", 10),
        Column("calls_per_s", "calls/s", 8, lambda v: _num(v, 1)),
        Column("d_usec_per_call", "µs/call", 8, lambda v: _num(v, 1)),
        Column("usec_per_call", "µs/call all", 11, lambda v: _num(v, 1)),
        Column("failed_calls", "failed", 7),
    )),
    "clients": ("Clients", _clients, (
        Column("id", "id", 6, _text),
        Column("name", "name", 14, _text, False),
        Column("addr", "addr", 21, _text, False),
        Column("age_s", "age", 7, _age),
        Column("idle_s", "idle", 7, _age),
        Column("cmd", "last cmd", None, _text, False),
    )),
    "bigkeys": ("Big keys", _bigkeys, (
        Column("key", "key (sampled)", None, _text, False),
        Column("type", "type", 8, _text, False),
        Column("bytes", "memory", 10, _bytes),
    )),
}
# (column index, descending) each section starts sorted by.
DEFAULT_SORT: dict[str, tuple[int, bool]] = {
    "activity": (4, True), "locks": (0, False), "statements": (1, True), "tables": (1, True),
    "indexes": (3, True), "connections": (2, True), "replication": (0, False),
    "vacuum": (4, True), "keyspace": (0, False), "slowlog": (0, True), "server": (0, False),
    "commands": (2, True), "clients": (4, True), "bigkeys": (2, True),
}


class ConfirmAction(ConsoleModal[bool]):
    """Asks before an action on a live session, naming it; y confirms, n or Esc does not."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm_yes"),
        Binding("n", "answer(False)", "No", id="confirm_no"),
        Binding("escape", "answer(False)", "No", show=False, id="confirm_escape"),
    ]
    DEFAULT_CSS = """
    ConfirmAction { align: center middle; }
    ConfirmAction > #confirm-body { width: 76; height: auto; border: round $error;
                                    background: $surface; padding: 0 1; }
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-body"):
            yield Static(Content(self.text), id="confirm-text")
            yield Static(Content("y: do it    n / Esc: leave it"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class DatabaseScreen(ConsoleScreen[None]):
    """1-8 switch section; o/O sort; / filter; y copy query (or command); n notes; Esc back.

    Guarded incident actions (pg_activity's c / k): on the Activity tab `c` cancels the
    selected session's query and `k` terminates its backend; on a Redis target's Clients tab
    `k` kills the selected client. Only when the target sets `allow_actions` (with a separate
    `actions_dsn` / `actions_url`), never in a read-only console, after a confirmation naming
    the session; each outcome is journaled into the open incident.

    PostgreSQL targets get sessions, locks, statements, tables, indexes, connections,
    replication and running vacuums; Redis targets their keyspace, slowlog, server state,
    commands, clients and big keys. Every note is listed under the header, scrollable (`n`
    puts the focus there, arrows scroll, Esc returns to the table).
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="db_back"),
        *(Binding(str(i), f"section({i - 1})", f"Section {i}", show=False, id=f"db_s{i}")
          for i in range(1, 10)),
        Binding("o", "sort(1)", "Sort", id="db_sort"),
        Binding("O", "reverse", "Reverse", id="db_reverse"),
        Binding("slash", "filter", "Filter", key_display="/", id="db_filter"),
        Binding("y", "copy", "Copy query", id="db_copy"),
        Binding("n", "notes", "Notes", show=False, id="db_notes"),  # the header says "(n)"
        Binding("c", "signal(False)", "Cancel query", id="db_cancel"),
        Binding("k", "signal(True)", "Kill", id="db_kill"),
    ]

    DEFAULT_CSS = """
    DatabaseScreen > #db-info { height: auto; max-height: 5; padding: 0 1; }
    DatabaseScreen > #db-notes { height: auto; max-height: 4; padding: 0 1; }
    DatabaseScreen > #db-notes:focus { background: $boost; }
    DatabaseScreen > #db-notes.empty { display: none; }
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
        self._details: Mapping[str, object] = {}
        self._seen: object = None

    def compose(self) -> ComposeResult:
        yield Static(Content(self.target), id="db-info")
        with VerticalScroll(id="db-notes", can_focus=True, classes="empty"):
            yield Static("", id="db-notes-text")
        yield Input(placeholder="filter rows (Esc clears)", id="db-filter")
        yield RecordTable(id="db-table")
        yield Static("", id="db-preview")
        yield KeyFooter()

    def on_mount(self) -> None:
        self._rebuild_columns()
        self.console.refresh_screen()
        self.table.focus()

    @property
    def table(self) -> RecordTable:
        return self.query_one(RecordTable)

    @property
    def _rows(self) -> list[dict[str, Any]]:
        """The records shown, in their order."""
        return self.table.records

    @property
    def filter_text(self) -> str:
        return self.table.filter_text

    # -- data ------------------------------------------------------------------------------

    def _new_result(self, engine: Scheduler, now: float) -> tuple[bool, CheckResult | None]:
        """``(changed, last)``: this target's latest CheckResult (or None) and whether it is
        new since the previous call, so a refresh redraws only when a check has run."""
        found = engine.view(self.target, now)  # this target's row alone
        last = found.last if found is not None else None
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

    def show_details(self, details: Mapping[str, object]) -> None:
        """Show these details directly (tests, or a caller holding a CheckResult)."""
        self._seen = object()
        self._details = details
        self._fill()

    def _summary(self) -> str:
        """The header's first line: what a DBA looks at before any table."""
        d, r = _pg(self._details), _redis(self._details)
        parts = [f"{self.target} · {'cache' if self.kind == 'redis' else 'database'}"]
        if self.kind == "redis":
            mem = r.get("memory") or {}
            used, maxmemory = mem.get("used_bytes"), mem.get("maxmemory_bytes")
            if used is not None:
                limit = (f" of {_bytes(maxmemory)} ({mem.get('pct') or 0:.0f}%)"
                         if maxmemory else " (no maxmemory)")
                policy = mem.get("policy") or "?"
                how = "evicting" if mem.get("evicting") else "cannot evict"
                frag = mem.get("fragmentation_ratio")
                parts.append(f"memory {_bytes(used)}{limit}, {policy} ({how})"
                             + (f", frag {frag:.2f}" if isinstance(frag, int | float) else ""))
        db = d.get("database") or {}
        size = db.get("size_bytes")
        if size is not None:
            text = f"size {_bytes(size)}"
            per_day, growth = db.get("growth_bytes_per_day"), db.get("growth_bytes")
            window = _age(db.get("growth_over_s"))
            if isinstance(per_day, int | float):
                text += f" ({_signed_bytes(per_day)}/day over {window})"
            elif isinstance(growth, int | float):
                text += f" ({_signed_bytes(growth)} over {window})"
            parts.append(text)
        conns = d.get("connections") or {}
        usable = conns.get("usable")
        if usable:
            parts.append(f"connections {conns.get('total', 0):g}/{usable:g} usable")
        oldest = (d.get("transactions") or {}).get("oldest")
        if oldest:
            parts.append(f"oldest tx {_age(oldest.get('xact_s'))} (pid {oldest.get('pid')})")
        # a postgres primary/replica, or a redis master/slave
        pg_rep, redis_rep = d.get("replication") or {}, r.get("replication") or {}
        if pg_rep or redis_rep:
            role = pg_rep.get("role") or redis_rep.get("role")
            replicas = pg_rep.get("replicas") or redis_rep.get("replicas") or []
            text = f"{role or '?'}, {_plural(len(replicas), 'replica')}"
            link = redis_rep.get("link_status")
            if link:
                text += f", link {link}"
            delay = pg_rep.get("replay_delay_s")
            if delay is not None:
                text += f", replay lag {_age(delay)}"
            wal = pg_rep.get("wal_bytes_per_s")
            if wal is not None:
                text += f", WAL {_bytes(wal)}/s"
            parts.append(text)
        ck = d.get("checkpoints") or {}
        over = ck.get("window_s")
        if over:
            n = (ck.get("d_timed") or 0) + (ck.get("d_requested") or 0)
            parts.append(f"{_plural(n, 'checkpoint')} in {_age(over)} "
                         f"({_num(ck.get('d_requested'))} requested)")
        return " · ".join(parts)

    def _info(self) -> Content:
        d = self._details
        st = _pg(d).get("statements") or {}
        _, _, cols = self.sections[self.section]
        col = cols[self.sort_index[self.section]]
        tabs = "  ".join(
            (f"[{i}] {v[0].upper()}" if k == self.section else f"[{i}] {v[0]}")
            for i, (k, v) in enumerate(self.sections.items(), 1))
        lines = [self._summary(), tabs,
                 f"sorted by {col.label} {'↓' if self.sort_reverse[self.section] else '↑'}"
                 + (f" · filter: {one_line(self.filter_text, 40)}" if self.filter_text else "")
                 + f" · {len(self._rows)} rows"
                 + (f" · {len(notes)} notes (n)" if (notes := self._notes_of()) else "")]
        if self.section == "statements" and st.get("available") is False:
            lines.append("pg_stat_statements is not available (see notes)")
        return Content("\n".join(lines))

    def _notes(self) -> None:
        """Every note, one per line (scrollable): collectors off or retrying, roles, slots."""
        notes = [one_line(n, 500) for n in self._notes_of()]
        box = self.query_one("#db-notes", VerticalScroll)
        box.set_class(not notes, "empty")
        self.query_one("#db-notes-text", Static).update(
            Content("\n".join(f"note: {n}" for n in notes)))

    def _notes_of(self) -> list[str]:
        """The notes of the details shown (postgres and redis details both have them)."""
        return _pg(self._details).get("notes") or []

    def _rebuild_columns(self) -> None:
        """The current section's columns, in the order it was last sorted by."""
        _, _, cols = self.sections[self.section]
        self.table.configure(cols, self.sort_index[self.section],
                             self.sort_reverse[self.section])

    def _fill(self) -> None:
        _, extract, _ = self.sections[self.section]
        self.table.show(extract(self._details))
        self._table_changed()

    def _table_changed(self) -> None:
        """After new rows, a sort or a filter: the header, the notes and the preview."""
        self.sort_index[self.section] = self.table.sort_index
        self.sort_reverse[self.section] = self.table.sort_reverse
        self.query_one("#db-info", Static).update(self._info())
        self._notes()
        self._preview()

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
        self.table.sort_next(step)
        self._table_changed()

    def action_reverse(self) -> None:
        self.table.reverse()
        self._table_changed()

    def on_record_table_sort_changed(self, event: RecordTable.SortChanged) -> None:
        self._table_changed()  # a header was clicked

    def action_filter(self) -> None:
        box = self.query_one("#db-filter", Input)
        box.add_class("visible")
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._table_changed()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "signal":
            wanted = "clients" if self.kind == "redis" else "activity"
            if self.section != wanted or (self.kind == "redis" and not parameters[0]):
                return False
        return True

    def _session_words(self, row: dict[str, Any]) -> str:
        if self.kind == "redis":
            return (f"client id {row.get('id')} {row.get('name') or '(no name)'} from "
                    f"{row.get('addr') or '?'}, idle {_age(row.get('idle_s'))}, last "
                    f"command {row.get('cmd') or '?'}")
        return (f"pid {row.get('pid')} ({row.get('user') or '?'}, "
                f"{row.get('application') or 'no application'}, {row.get('state') or '?'} "
                f"{_age(row.get('duration_s'))}): {one_line(row.get('query') or '', 160)}")

    def action_signal(self, kill: bool) -> None:
        """Cancel (c) or terminate/kill (k) the selected session, after asking."""
        from console.engine.probes.dbactions import refusal

        runtime = self.console.runtime
        settings = self.console.settings
        target = settings.target(self.target) if settings is not None else None
        # Runtime.read_only (the console's --read-only) is the lead's; absent means not set.
        read_only = bool(getattr(runtime, "read_only", False))
        why = refusal(target, read_only=read_only)
        row = self.table.current
        if why is None and row is None:
            why = "no session selected"
        if why is not None or target is None or row is None:
            self.notify(why or "no such target", severity="warning")
            return
        if self.kind == "redis":
            what = "Kill (CLIENT KILL)"
        else:
            what = "Terminate the backend of" if kill else "Cancel the query of"
        question = f"{what} {self._session_words(row)} on {self.target}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._act(target, row, kill), group="db-action")

        self.app.push_screen(ConfirmAction(question), answered)

    async def _act(self, target: Any, row: dict[str, Any], kill: bool) -> None:
        from console.engine.probes.dbactions import pg_signal, redis_client_kill

        if self.kind == "redis":
            outcome = await redis_client_kill(target, str(row.get("id")))
        else:
            outcome = await pg_signal(target, int(row.get("pid") or 0), terminate=kill)
        text = f"{self.target}: {outcome.text} — {self._session_words(row)}"
        journaled = await self._journal(text)
        self.notify(outcome.text + ("" if journaled else " (no open incident: not journaled)"),
                    severity="information" if outcome.ok else "error")

    async def _journal(self, text: str) -> bool:
        """Into the open incident about this target, else the latest open one."""
        runtime = self.console.runtime
        desk = None if runtime is None else (runtime.desk or await runtime.open_desk())
        if desk is None:
            return False
        incidents = desk.book.open_incidents()
        if not incidents:
            return False
        mine = [i for i in incidents if self.target in i.targets] or incidents
        incident = max(mine, key=lambda i: i.started)
        await desk.note(incident.id, text)
        return True

    def action_notes(self) -> None:
        notes = self.query_one("#db-notes", VerticalScroll)
        if notes.has_focus or notes.has_class("empty"):
            self.table.focus()
        else:
            notes.focus()

    def action_back(self) -> None:
        if self.query_one("#db-notes", VerticalScroll).has_focus:
            self.table.focus()
            return
        box = self.query_one("#db-filter", Input)
        if self.filter_text or box.has_focus:
            box.value = ""
            box.remove_class("visible")
            self.table.focus()
            self.table.set_filter("")
            self._table_changed()
            return
        self.app.pop_screen()

    def selected_query(self) -> str | None:
        row = self.table.current
        if row is None:
            return None
        query = row.get("query") or row.get("command")
        return str(query) if query else None

    def action_copy(self) -> None:
        query = self.selected_query()
        if query is None:
            self.notify("no query on this row", severity="warning")
            return
        self.app.copy_to_clipboard(query)
        self.notify(f"copied {len(query)} characters (OSC 52)")
