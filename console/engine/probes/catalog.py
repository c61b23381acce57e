"""What each probe kind reports, by name, importable without the probe and its client library.

`validate` checks runbook links and panels against these names; importing the probes for
them would load aiohttp and httpx (and aiohttp's TLS contexts), asyncpg and redis into a
command that sends no request. The probes import their tables from here.
"""

from __future__ import annotations

# What an HTTP check reports (the component counts only for a recognised health body).
HTTP_METRICS = frozenset({"latency_ms", "status_code", "body_bytes", "ttfb_ms",
                          "components_down", "core_components_down", "other_components_down"})

# What each metric means (units in the name); the UI and docs may show these.
POSTGRES_METRICS: dict[str, str] = {
    "latency_ms": "round trip of the stats query on an open connection",
    "connections_total": "client backends on the server (all databases)",
    "connections_active": "client backends running a query (this probe excluded)",
    "connections_idle_in_tx": "client backends idle inside a transaction",
    "connections_idle_in_tx_aborted": "client backends idle inside a failed transaction",
    "connections_waiting": "client backends waiting on a lock",
    "max_connections": "the server's max_connections setting",
    "connections_reserved": "superuser_reserved_connections + reserved_connections (16+)",
    "connections_usable": "max_connections - connections_reserved: what applications get",
    "pool_usage_pct": "connections_total / connections_usable * 100 (100: applications are "
                      "refused); above 80 means DEGRADED",
    "xact_total": "commits + rollbacks in this database (counter)",
    "rollbacks_total": "rollbacks in this database (counter)",
    "deadlocks_total": "deadlocks detected in this database (counter)",
    "cache_hit_pct": "buffer hits / block lookups since the previous check (absent if none)",
    "xact_per_s": "commits + rollbacks per second since the previous check",
    "rollbacks_per_s": "rollbacks per second since the previous check",
    "deadlocks_per_s": "deadlocks per second since the previous check",
    "temp_files_per_s": "temporary files created per second since the previous check",
    "temp_bytes_per_s": "bytes written to temporary files per second since the previous check",
    "rows_inserted_per_s": "rows inserted per second in this database since the previous check",
    "rows_updated_per_s": "rows updated per second in this database since the previous check",
    "rows_deleted_per_s": "rows deleted per second in this database since the previous check",
    "slow_queries": "queries running longer than the target's slow_query threshold",
    "longest_query_s": "age of the longest-running active query (0 if none)",
    "idle_in_tx_max_s": "longest time a session has sat idle inside a transaction (0 if none)",
    "blocked_sessions": "sessions waiting on a lock held by another session",
    "oldest_xact_s": "age of the oldest open transaction of a client backend (0 if none)",
    "long_transactions": "transactions open longer than the target's long_transaction",
    "xid_age": "oldest datfrozenxid age of the server's databases (transaction IDs)",
    "mxid_age": "oldest datminmxid age of the server's databases (multixact IDs)",
    "wraparound_pct": "the larger of xid_age and mxid_age as % of the 2^31 IDs before "
                      "wraparound (the server stops writing near 100)",
}
# Measured by the slow collectors, every `slow_interval`; absent when a collector is off or
# has nothing to measure yet (a rate needs two runs, a replica or a slot must exist).
POSTGRES_SLOW_METRICS: dict[str, str] = {
    "db_size_bytes": "pg_database_size of the target's database",
    "db_growth_bytes": "size change over the samples of the last 24 h (see db_growth_window_s)",
    "db_growth_window_s": "the time db_growth_bytes is measured over",
    "db_growth_bytes_per_day": "db_growth_bytes per day, once the window is at least 1 h",
    "unused_indexes": "non-unique indexes never scanned since the stats reset",
    "duplicate_indexes": "sets of indexes with the same table, columns, opclass and predicate",
    "dead_tuples_max_pct": "largest dead-tuple share of a table (of the tables listed)",
    "vacuums_running": "VACUUM / autovacuum workers running (pg_stat_progress_vacuum)",
    "replicas": "streaming replicas connected to this server (pg_stat_replication)",
    "replication_lag_s": "worst replay lag of the replicas, or this replica's replay delay "
                         "(0 when it has replayed everything it received)",
    "replication_lag_bytes": "worst WAL distance (bytes) between this server and a replica",
    "replication_slots": "replication slots on this server (pg_replication_slots)",
    "replication_slots_inactive": "slots with no consumer connected (they keep WAL)",
    "replication_slot_retained_bytes": "most WAL a slot keeps from being removed",
    "wal_bytes_per_s": "WAL written (primary) or received (replica) per second",
    "checkpoints_per_h": "checkpoints per hour between the last two runs",
    "checkpoints_req_pct": "share of those checkpoints that were requested, not timed",
    "statements_calls_per_s": "pg_stat_statements calls per second in this database",
    "statements_time_ms_per_s": "pg_stat_statements execution ms per second in this database",
    "statements_mean_ms": "average statement execution time between the last two runs",
    "statements_io_ms_per_s": "block read + write time per second (needs track_io_timing)",
}

# What each metric means (units in the name); the UI and docs may show these.
REDIS_METRICS: dict[str, str] = {
    "latency_ms": "PING round trip on an open connection",
    "used_memory_bytes": "memory used by Redis (INFO used_memory)",
    "maxmemory_bytes": "configured maxmemory; 0 means no limit",
    "memory_pct": "used_memory / maxmemory * 100 (only when maxmemory is set)",
    "fragmentation_ratio": "RSS / used memory (INFO mem_fragmentation_ratio)",
    "connected_clients": "client connections, this probe included",
    "blocked_clients": "clients blocked in BLPOP, WAIT, etc.",
    "keyspace_hits_total": "successful key lookups (counter)",
    "keyspace_misses_total": "failed key lookups (counter)",
    "hit_rate_pct": "hits / lookups since the previous check (absent if no lookups)",
    "evicted_keys_total": "keys evicted by the maxmemory policy (counter)",
    "expired_keys_total": "keys removed on expiry (counter)",
    "ops_per_sec": "commands per second since the previous check (this probe's excluded)",
    "hits_per_s": "successful key lookups per second since the previous check",
    "misses_per_s": "failed key lookups per second since the previous check",
    "connections_per_s": "new client connections per second since the previous check",
    "rejected_connections_total": "connections refused at maxclients (counter)",
    "rejected_connections_per_s": "connections refused per second since the previous check",
    "keys_total": "keys in all databases",
    "evicted_per_s": "keys evicted per second since the previous check",
    "expired_per_s": "keys expired per second since the previous check",
    "slowlog_new": "slowlog entries added since the previous check",
    "latency_p50_ms": "median of the PING round trips timed in this check",
    "latency_p99_ms": "99th percentile (nearest rank) of those PING round trips",
    "clients_idle_max_s": "longest time a client connection has been idle (CLIENT LIST)",
    "clients_oldest_s": "age of the oldest client connection (CLIENT LIST)",
    "memory_noeviction_pct": "memory_pct when Redis cannot evict (noeviction, or volatile-* "
                             "with no key that has a TTL): writes fail at 100",
    "replicas_connected": "replicas connected to this server (INFO connected_slaves)",
    "rdb_changes_since_save": "writes since the last RDB save",
    "rdb_last_save_age_s": "seconds since the last successful RDB save",
    "aof_enabled": "1 when the append-only file is on",
}
# Present only where they apply.
REDIS_OTHER_METRICS: dict[str, str] = {
    "keys_db<N>": "keys in database N (one metric per non-empty database)",
    "master_link_up": "1 when this replica's link to its master is up, else 0",
    "master_last_io_s": "seconds since this replica last heard from its master",
    "replica_lag_bytes": "worst replication offset distance of the replicas (master only)",
}

# winston's other levels, each reported as <level>_per_s (a fixed set: level names come
# from the file, and each would otherwise become a new series)
LOG_OTHER_LEVELS = ("info", "http", "verbose", "debug")
# Every metric a check reports (a link or rule naming another is a typo `validate` reports).
LOG_METRICS = frozenset({
    "lines_per_s", "errors_per_s", "warn_per_s", "error_pct", "slow_requests_per_s",
    *(f"{lv}_per_s" for lv in LOG_OTHER_LEVELS), "non_json_lines_total", "lines_total",
    "errors_total", "new_error_kinds_total",
})

HEARTBEAT_METRICS = frozenset({"since_success_s", "run_time_s", "late_s"})
