"""The shape of `CheckResult.details`, one TypedDict per target kind.

Each probe builds its kind's dict (so mypy checks what it writes) and every reader gets it
back typed through `CheckResult.details_of(kind)` (so mypy checks what it reads): the detail
view, the database, breakdown and health screens, the alert causes (`alerting/explain.py`)
and `check --json`. Details are plain JSON (a recording replays them, an older recording may
lack any key), so every TypedDict is `total=False`: a reader always asks with `.get`.

Table rows whose columns vary (a session, a statement, a breakdown group: the columns are
the table's own, read by column key by the record table) stay `Row`.
"""

from __future__ import annotations

from typing import Any, TypedDict

# A table row: its columns are named by the table (`columns`, or the screen's column list)
# and read by key, so its values are whatever JSON the probe put there.
Row = dict[str, Any]


# -- shared parts ---------------------------------------------------------------------------

class BreakdownTable(TypedDict, total=False):
    """One per-label table (`probes/breakdown.py` for scrapes, `probes/promql.py` for
    labelled query results): a row per label set, largest first."""

    by: list[str]
    columns: list[str]
    rows: list[Row]
    others: int
    others_requests: float | None
    others_rate_per_s: float | None
    groups: int
    total_rate_per_s: float | None
    window_s: float | None
    requests: str
    errors: str | None
    duration: str | None
    default: bool
    note: str


class HealthComponent(TypedDict, total=False):
    """One component of a health body (`probes/health.Component.to_json`)."""

    name: str
    status: str
    failing: bool
    message: str
    core: bool


class HealthJson(TypedDict, total=False):
    """A recognised health body (`probes/health.HealthBody.to_json`)."""

    format: str  # terminus | spring | ietf | plain
    status: str
    message: str
    components: list[HealthComponent]


# -- one per kind ---------------------------------------------------------------------------

class HttpDetails(TypedDict, total=False):
    health: HealthJson  # only when the body is a recognised health body


class PrometheusDetails(TypedDict, total=False):
    breakdowns: dict[str, BreakdownTable]
    breakdown_error: str  # a breakdown that failed (the scrape itself stands)


class PromqlQuery(TypedDict, total=False):
    """What one configured query answered."""

    expr: str
    error: str
    error_kind: str
    series: int
    kept: int
    labels: list[str]
    warnings: list[str]


class PromqlDetails(TypedDict, total=False):
    queries: dict[str, PromqlQuery]
    eval_time: float
    engine: str  # "VictoriaMetrics v1.2.3": which store answered
    latency_offset_s: float
    notes: list[str]
    breakdowns: dict[str, BreakdownTable]


class LogErrorCount(TypedDict, total=False):
    message: str
    count: int


class LogDetails(TypedDict, total=False):
    path: str
    interval_s: float
    lines: int
    errors: int
    warnings: int
    slow: int
    non_json: int
    rotated: bool
    truncated: bool
    backlog_bytes: int
    position: int
    new_error_kinds: int
    new_errors: list[str]  # first-seen messages, newest first
    recent_errors: list[LogErrorCount]  # the last minute's commonest
    recent_non_json: list[str]


class HostDetails(TypedDict, total=False):
    """The console's own machine (psutil) or a node_exporter's (`probes/nodehost.py`)."""

    cpus: int
    interval_s: float
    disk_path: str  # psutil
    mountpoint: str  # node_exporter from here on
    devices: list[str]
    interfaces: list[str]
    missing: str
    note: str
    url: str


class HeartbeatDetails(TypedDict, total=False):
    last_success: float | None
    last_start: float | None
    last_fail: float | None
    due: float
    pings: int
    running_s: float


class LighthouseDetails(TypedDict, total=False):
    lighthouse_version: str
    final_url: str
    fetched: str
    notes: list[str]
    report: str  # a Lighthouse CI report file: its name and age
    report_age_s: float
    run_s: float  # how long a run that failed took


class PgConnectionGroup(TypedDict, total=False):
    name: str
    connections: int


class PgConnectionGroups(TypedDict, total=False):
    """Connections per role, database, application and state, largest first."""

    by_role: list[PgConnectionGroup]
    by_database: list[PgConnectionGroup]
    by_application: list[PgConnectionGroup]
    by_state: list[PgConnectionGroup]


class PgConnections(PgConnectionGroups, total=False):
    total: float
    max_connections: float
    superuser_reserved: float
    reserved: float
    usable: float


class PgTransactions(TypedDict, total=False):
    oldest: Row | None  # the session holding the oldest transaction
    long_transaction_s: float
    xid_age: float | None
    mxid_age: float | None
    oldest_xid_db: str
    xid_wraparound_pct: float | None
    mxid_wraparound_pct: float | None


class PgRole(TypedDict, total=False):
    role: str
    superuser: bool
    pg_monitor: bool
    pg_read_all_stats: bool
    server_version_num: int
    track_io_timing: bool


class PgDatabase(TypedDict, total=False):
    size_bytes: float
    growth_bytes: float | None
    growth_over_s: float | None
    growth_bytes_per_day: float | None


class PgStatements(TypedDict, total=False):
    available: bool
    count: int
    interval_s: float | None
    track_io_timing: bool | None
    by_total: list[Row]
    by_mean: list[Row]
    by_recent: list[Row]
    d_calls: float
    d_total_ms: float
    d_io_ms: float
    mean_ms: float | None


class PgTables(TypedDict, total=False):
    by_size: list[Row]
    by_seq_read: list[Row]
    by_dead: list[Row]


class PgVacuum(TypedDict, total=False):
    running: list[Row]


class PgIndexes(TypedDict, total=False):
    by_size: list[Row]
    unused: list[Row]
    duplicate: list[Row]


class PgReplication(TypedDict, total=False):
    role: str  # primary | replica
    replicas: list[Row]
    replay_delay_s: float
    slots: list[Row]
    wal_bytes_per_s: float


class PgCheckpoints(TypedDict, total=False):
    timed: float
    requested: float
    window_s: float | None
    d_timed: float | None
    d_requested: float | None


class PgQueryResult(TypedDict, total=False):
    """A `[[targets.queries]]` custom query's last answer."""

    values: dict[str, float | None]  # None: the column was NULL
    rows: int
    at: float


class PgCollector(TypedDict, total=False):
    state: str
    ok_at: float | None
    reason: str | None
    failures: int
    retry_at: float | None


class PostgresDetails(TypedDict, total=False):
    slow_query_s: float
    sessions: list[Row]
    blocking: list[Row]  # trees: a blocker, its `blocked` sessions, theirs…
    connections: PgConnections
    transactions: PgTransactions
    guards: str  # "per transaction" (behind a pooler) or "session"
    # the slow collectors' last answers (absent until each has run)
    role: PgRole
    database: PgDatabase
    statements: PgStatements
    tables: PgTables
    vacuum: PgVacuum
    indexes: PgIndexes
    replication: PgReplication
    checkpoints: PgCheckpoints
    queries: dict[str, PgQueryResult]
    collectors: dict[str, PgCollector]
    notes: list[str]


class RedisMemoryPolicy(TypedDict, total=False):
    """What `maxmemory` means for a server: whether it can evict at its limit."""

    policy: str | None
    evicting: bool
    keys_with_ttl: float


class RedisMemory(RedisMemoryPolicy, total=False):
    used_bytes: float | None
    maxmemory_bytes: float | None
    pct: float | None
    fragmentation_ratio: float | None
    evicted_per_s: float | None


class RedisReplication(TypedDict, total=False):
    role: str | None  # master | slave
    master: str
    link_status: str
    last_io_s: float | None
    replicas: list[Row]


class RedisKeyspace(TypedDict, total=False):
    keys: float | None
    expires: float | None
    avg_ttl: float | None


class RedisClients(TypedDict, total=False):
    count: int
    by_idle: list[Row]
    oldest: Row | None


class RedisLatency(TypedDict, total=False):
    samples_ms: list[float]


class RedisBigkeys(TypedDict, total=False):
    sampled: int
    at: float
    keys: list[Row]


class RedisDetails(TypedDict, total=False):
    memory: RedisMemory
    replication: RedisReplication
    persistence: dict[str, object]  # INFO persistence fields, as the server names them
    keyspace: dict[str, RedisKeyspace]  # by database: "db0"…
    commands: list[Row]
    clients: RedisClients | None
    latency: RedisLatency
    bigkeys: RedisBigkeys | None
    slowlog: list[Row]
    notes: list[str]

