"""The config schema: what a config file may say, as pydantic models (unknown keys rejected).

Loading, locating errors by line and `${ENV}` resolution live in `config.py`; this module only
describes shapes and per-field rules so every error in a file is reported at once.
"""

from __future__ import annotations

import collections
import re
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from console.engine.config.envref import ENV_REF, check_secret_headers
from console.engine.config.factories import empty_dict, empty_list
from console.engine.config.rules import AlertingSection, Rule, check_unique_names
from console.engine.lang.durations import parse_duration, parse_size
from console.engine.model import Severity, TargetKind

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]

_STATUS_CLASS = re.compile(r"^[1-5]xx$")
_URL_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@:]*:([^/@]*)@", re.IGNORECASE)
_DSN_PASSWORD = re.compile(r"(?:^|\s)password\s*=", re.IGNORECASE)


def _no_literal_password(url: str) -> str:
    m = _URL_PASSWORD.match(url)
    if m and m.group(1) and not ENV_REF.search(m.group(1)) and not ENV_REF.fullmatch(url):
        raise ValueError(
            "a literal password in a URL is not allowed; put the whole URL or the password "
            "in an environment variable and write e.g. \"${PG_DSN}\""
        )
    if _DSN_PASSWORD.search(url) and not ENV_REF.search(url):
        raise ValueError("a literal password is not allowed; reference it as ${ENV_VAR}")
    return url


def _url_field(v: str | None, pattern: str, message: str) -> Any:
    """A target's URL field: an `${ENV}` reference, or a URL matching `pattern` (ValueError
    with `message` otherwise) that carries no literal password."""
    if v is None:
        return v
    if not ENV_REF.fullmatch(v) and not re.match(pattern, v, re.IGNORECASE):
        raise ValueError(message)
    return _no_literal_password(v)


class _Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates, not when the
    # module is imported, so `check URL` builds one target's and a panel's, not the config's
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              defer_build=True)


class ConsoleSection(_Strict):
    """`[console]`: how the console itself behaves."""

    theme: str = "opsconsole-dark"
    refresh: Duration = Field(1.0, ge=0.2, le=60, description="UI repaint interval")
    data_dir: str | None = None
    history: bool = True
    bell: bool = False
    # The playbook's four ready-made dashboards (console/engine/dashboards.py) are added
    # for the targets a config has, unless a config dashboard has the same name.
    playbook_dashboards: bool = True


class TargetBase(_Strict):
    name: str = Field(min_length=1, max_length=64)
    interval: Duration = Field(10.0, ge=0.2, le=86400)
    timeout: Duration = Field(5.0, gt=0, le=300)
    group: str | None = None
    tags: list[str] = Field(default_factory=empty_list)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name_chars(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:@-]+", v):
            raise ValueError("use letters, digits and _ . : @ - only (it names metric series)")
        return v


class HttpTarget(TargetBase):
    """An HTTP(S) health endpoint."""

    kind: Literal["http"] = "http"
    url: str
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=empty_dict)
    body: str | None = None
    expect_status: list[int | str] = Field(default_factory=lambda: list[int | str](["2xx", "3xx"]))
    keyword: str | None = None
    keyword_absent: str | None = None
    down_unless: list[str] = Field(default_factory=empty_list)
    degraded_unless: list[str] = Field(default_factory=empty_list)
    slow: Duration | None = None
    follow_redirects: bool = True
    max_redirects: int = Field(5, ge=0, le=30)
    insecure: bool = False
    ca_file: str | None = None
    max_body: Size = Field(1_000_000, ge=1, le=100_000_000)
    # Components of a health body (terminus/Spring/IETF) whose failure is a P1 (the shipped
    # `dependency-down` rule); the others' is a P2 (`dependency-degraded`). Empty: all core.
    core_components: list[str] = Field(default_factory=empty_list)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _url_field(v, r"^https?://[^\s/]+",
                          "an http target needs an http:// or https:// URL")

    @field_validator("expect_status")
    @classmethod
    def _statuses(cls, v: list[int | str]) -> list[int | str]:
        for s in v:
            if isinstance(s, int) and not 100 <= s <= 599:
                raise ValueError(f"{s} is not an HTTP status code")
            if isinstance(s, str) and not _STATUS_CLASS.match(s):
                raise ValueError(f"{s!r}: write a code (200) or a class (2xx)")
        return v

    @field_validator("headers")
    @classmethod
    def _secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        check_secret_headers(v)
        return v

    @field_validator("down_unless", "degraded_unless")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        from console.engine.lang.conditions import (
            parse_condition,  # local import: conditions imports nothing heavy
        )

        for text in v:
            parse_condition(text)  # raises ValueError with a readable message
        return v


_QUERY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_SQL_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\w*)\$.*?\$\1\$", re.S)
_SQL_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
# Words that make a statement write, lock, wait or escape the session, outside literals.
_SQL_FORBIDDEN = re.compile(
    r"\b(insert|update|delete|merge|create|alter|drop|truncate|grant|revoke|copy|call|do|"
    r"vacuum|analyze|cluster|reindex|lock|listen|notify|set|reset|into|nextval|setval|"
    r"pg_sleep\w*|pg_terminate_backend|pg_cancel_backend|pg_advisory\w*|set_config|dblink\w*|"
    r"lo_\w+|pg_read_file|pg_read_binary_file|pg_ls_dir)\b",
    re.I,
)


def readonly_select(sql: str) -> str:
    """Accept one SELECT/WITH statement and nothing that writes, locks or waits (why: a
    monitoring console must never change or stall the database it watches; the read-only
    session is the second line of defence, the monitoring role's grants the first)."""
    body = _SQL_COMMENTS.sub(" ", _SQL_STRINGS.sub("''", sql)).strip()
    body = body[:-1].rstrip() if body.endswith(";") else body
    if not body:
        raise ValueError("the query is empty")
    if ";" in body:
        raise ValueError("one statement only (no ';' inside the query)")
    if not re.match(r"^(select|with)\b", body, re.I):
        raise ValueError("only a SELECT or WITH ... SELECT query is allowed")
    m = _SQL_FORBIDDEN.search(body)
    if m:
        raise ValueError(f"{m.group(1)!r} is not allowed in a read-only metric query")
    if re.search(r"\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b", body, re.I):
        raise ValueError("row locks (FOR UPDATE/SHARE) are not allowed")
    return sql.strip().rstrip(";").rstrip()


def _check_actions(allow: bool, separate: str | None, monitoring: str, key: str) -> None:
    """Actions need a connection of their own, never the monitoring one (why: the
    monitoring role stays read-only and harmless; the power to kill sits elsewhere)."""
    if allow and not separate:
        raise ValueError(f"allow_actions needs {key}: a separate role or user for actions")
    if separate and separate == monitoring:
        raise ValueError(f"{key} must not be the monitoring connection itself")


class PostgresTarget(TargetBase):
    """A PostgreSQL server, reached with a DSN (normally `${ENV}`).

    `slow_interval` paces the costly collectors (sizes, index usage, pg_stat_statements,
    replication, custom `queries`) so the fast loop stays one cheap query; `slow_query` is the
    threshold above which a running query is listed; `queries` names read-only SELECTs that
    return one number or one row of numbers (business metrics).
    """

    kind: Literal["postgres"] = "postgres"
    dsn: str
    slow_interval: Duration = Field(60.0, ge=1, le=86400)
    slow_query: Duration = Field(1.0, gt=0, le=86400)
    # A transaction open longer than this counts in `long_transactions` (the shipped P1).
    long_transaction: Duration = Field(300.0, gt=0, le=30 * 86400)
    top: int = Field(10, ge=1, le=100, description="rows kept per detail table")
    queries: dict[str, str] = Field(default_factory=empty_dict)
    # Per custom query: its statement_timeout (default: the session's, ≤ 1 s); it must leave
    # room inside the check's `timeout`.
    query_timeouts: dict[str, Duration] = Field(default_factory=empty_dict)
    # "auto": session settings at connect, switched to per-transaction guards (BEGIN READ
    # ONLY + SET LOCAL) when a pooler rejects or drops them; "transaction": always per
    # transaction (PgBouncer/Supavisor in transaction mode); "none": session settings only.
    pooler: Literal["auto", "transaction", "none"] = "auto"
    # Cancel a query / terminate a backend from the drill-down (pg_activity's c / k): off
    # unless set, and only through `actions_dsn`, a separate role (one with
    # pg_signal_backend, say) so the monitoring role itself never gets that power.
    allow_actions: bool = False
    actions_dsn: str | None = None

    @field_validator("dsn", "actions_dsn")
    @classmethod
    def _dsn(cls, v: str | None) -> str | None:
        return None if v is None else _no_literal_password(v)

    @field_validator("queries")
    @classmethod
    def _queries(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, sql in v.items():
            if not _QUERY_NAME.match(name):
                raise ValueError(
                    f"query name {name!r}: use letters, digits and _ (it names a metric)")
            try:
                out[name] = readonly_select(sql)
            except ValueError as exc:
                raise ValueError(f"query {name!r}: {exc}") from None
        return out

    @model_validator(mode="after")
    def _actions(self) -> PostgresTarget:
        _check_actions(self.allow_actions, self.actions_dsn, self.dsn, "actions_dsn")
        return self

    @model_validator(mode="after")
    def _query_timeouts(self) -> PostgresTarget:
        """A timeout for a query that does not exist, or one the check's deadline cannot
        hold, is a mistake worth reporting rather than a query that never runs."""
        for name, seconds in self.query_timeouts.items():
            if name not in self.queries:
                raise ValueError(f"query_timeouts names {name!r}, which is not in queries")
            if not 0.05 <= seconds <= self.timeout * 0.8:
                raise ValueError(
                    f"query_timeouts.{name} = {seconds:g}s: it must be between 50ms and 80% "
                    f"of the target's timeout ({self.timeout * 0.8:g}s); raise `timeout` "
                    "for a slower query")
        return self


class RedisTarget(TargetBase):
    """A Redis server, reached with a redis:// or rediss:// URL (normally `${ENV}`)."""

    kind: Literal["redis"] = "redis"
    url: str
    # CLIENT LIST on every check (idle and oldest clients); skipped above `client_list_max`
    # connected clients, where its reply would be large.
    client_list: bool = True
    client_list_max: int = Field(2000, ge=1, le=100_000)
    # Big keys: a bounded SCAN sample (`bigkeys_sample` keys, one MEMORY USAGE and one TYPE
    # each, in the check's deadline) every `bigkeys_interval`; 0 = off (the default: it
    # costs the server work).
    bigkeys_sample: int = Field(0, ge=0, le=1000)
    bigkeys_interval: Duration = Field(300.0, ge=10, le=86400)
    latency_samples: int = Field(8, ge=1, le=100, description="PINGs timed per check")
    # CLIENT KILL from the drill-down: off unless set, only through `actions_url` (an ACL
    # user of its own that may run CLIENT KILL).
    allow_actions: bool = False
    actions_url: str | None = None

    @field_validator("url", "actions_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _url_field(v, r"^rediss?://", "a redis target needs a redis:// or rediss:// URL")

    @model_validator(mode="after")
    def _actions(self) -> RedisTarget:
        _check_actions(self.allow_actions, self.actions_url, self.url, "actions_url")
        return self


_BREAKDOWN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,31}$")
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `le` is a bucket bound; the others name the breakdown's number columns.
_NOT_GROUP_LABELS = {"le", "requests", "rate_per_s", "share_pct", "error_pct", "p50_ms",
                     "p95_ms", "p99_ms"}


def _plain_selector(text: str, what: str) -> str:
    """A selector such as `http_requests_total{status=~"5.."}`: no function, no scale."""
    from console.engine.lang.promexpr import parse_expr

    expr = parse_expr(text)
    if expr.kind != "value" or expr.scale != 1.0:
        raise ValueError(f"{what}: write a plain selector such as "
                         f"http_requests_total{{status=~\"5..\"}}, not {text!r}")
    return text


class Breakdown(_Strict):
    """A per-label table of a request counter (e.g. per route, per status class).

    `by` names the grouping labels; `status_class` is a pseudo-label ("2xx", "5xx", ...)
    made from a `status` or `code` label. `requests` and `errors` are counter selectors;
    `duration` a histogram in seconds (Prometheus's base unit) giving p50/p95/p99 per group;
    `top` the rows kept (the rest are counted as others).
    """

    by: list[str] = Field(min_length=1, max_length=4)
    requests: str
    errors: str | None = None
    duration: str | None = None
    top: int = Field(20, ge=1, le=500)

    @field_validator("by")
    @classmethod
    def _labels(cls, v: list[str]) -> list[str]:
        for label in v:
            if not _LABEL.match(label) or label in _NOT_GROUP_LABELS:
                raise ValueError(f"{label!r} is not a label name to group by")
        if len(set(v)) != len(v):
            raise ValueError("each label once")
        return v

    @field_validator("requests", "errors")
    @classmethod
    def _counter(cls, v: str | None) -> str | None:
        return None if v is None else _plain_selector(v, "a counter")

    @field_validator("duration")
    @classmethod
    def _histogram(cls, v: str | None) -> str | None:
        return None if v is None else _plain_selector(v, "a histogram")


class PrometheusTarget(TargetBase):
    """A Prometheus/OpenMetrics text endpoint, with named derived metrics.

    `metrics` maps a name to an expression: `rate(sel)`, `ratio(sel_a, sel_b)`,
    `histogram_quantile(0.95, sel)` or a plain selector (gauge sum), each optionally `* k`.
    `breakdowns` names per-label tables (see Breakdown); with none, a scrape carrying the
    conventional `http_requests_total` gets "endpoints" and "status" tables by default.
    """

    kind: Literal["prometheus"] = "prometheus"
    url: str
    headers: dict[str, str] = Field(default_factory=empty_dict)
    insecure: bool = False
    max_body: Size = Field(20_000_000, ge=1, le=200_000_000)
    metrics: dict[str, str] = Field(default_factory=empty_dict)
    breakdowns: dict[str, Breakdown] = Field(default_factory=empty_dict)

    @field_validator("breakdowns")
    @classmethod
    def _breakdown_names(cls, v: dict[str, Breakdown]) -> dict[str, Breakdown]:
        for name in v:
            if not _BREAKDOWN_NAME.match(name):
                raise ValueError(f"breakdown name {name!r}: use letters, digits, _ and -")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _url_field(v, r"^https?://[^\s/]+",
                          "a prometheus target needs an http:// or https:// URL")

    @field_validator("metrics")
    @classmethod
    def _exprs(cls, v: dict[str, str]) -> dict[str, str]:
        from console.engine.lang.promexpr import parse_expr

        for text in v.values():
            parse_expr(text)
        return v


class PromqlTarget(TargetBase):
    """A Prometheus-compatible query API (Prometheus, VictoriaMetrics, Thanos, Mimir) whose
    named metrics are PromQL expressions, evaluated there at every check.

    `url` is the base the API paths are appended to: `http://prometheus:9090`, or with a
    path prefix, `https://mimir.example.com/prometheus`. `headers` go with every request
    (Mimir's tenant: `X-Scope-OrgID`; secrets as `${ENV}`), `params` with every query
    (Thanos: `dedup`; `partial_response` has its own key). An expression giving several
    series becomes one series per label set (`cpu_pct{instance="web-1"}`), at most
    `max_series` per metric (the largest values; the rest counted as dropped). `alerts`
    reads the server's own alerts and rules (/api/v1/alerts, /api/v1/rules) for the Alerts
    screen. `partial_response = false` (the default) asks Thanos to fail rather than answer
    from some stores only, since these values feed rules.
    """

    kind: Literal["promql"] = "promql"
    url: str
    headers: dict[str, str] = Field(default_factory=empty_dict)
    params: dict[str, str] = Field(default_factory=empty_dict)
    partial_response: bool = False
    insecure: bool = False
    ca_file: str | None = None
    max_body: Size = Field(20_000_000, ge=1024, le=500_000_000)
    # Each series kept is a series of the console's own store (~0.2 MB of history: see
    # bench/bench_promql.py), so the default keeps a labelled metric to ~20 MB.
    max_series: int = Field(100, ge=1, le=20_000)
    alerts: bool = True
    metrics: dict[str, str] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not ENV_REF.fullmatch(v) and not re.match(r"^https?://[^\s/]+", v, re.IGNORECASE):
            raise ValueError("a promql target needs the http:// or https:// base URL of a "
                             "query API, e.g. http://prometheus:9090")
        if re.search(r"/api/v1(/|$)", v):
            raise ValueError("give the base URL, without /api/v1/... (the console adds it)")
        return _no_literal_password(v)

    @field_validator("headers")
    @classmethod
    def _secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        return HttpTarget._secret_headers(v)

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, str]) -> dict[str, str]:
        reserved = sorted(set(v) & {"query", "time", "start", "end", "step", "timeout",
                                    "partial_response"})
        if reserved:
            raise ValueError(f"{', '.join(reserved)}: set by the console (partial_response "
                             "has its own key)")
        return v

    @field_validator("metrics")
    @classmethod
    def _exprs(cls, v: dict[str, str]) -> dict[str, str]:
        for name, expr in v.items():
            if not _QUERY_NAME.match(name):
                raise ValueError(f"metric name {name!r}: use letters, digits and _ "
                                 "(it names a series)")
            if not expr.strip():
                raise ValueError(f"metric {name!r}: the PromQL expression is empty")
        return v


class LogTarget(TargetBase):
    """A local JSON-lines log file (winston's format), followed from its end.

    `slow_ms` is the `responseTime` above which a request counts as slow; `max_read` bounds
    what one check reads, so a huge backlog is worked off over several checks.
    """

    kind: Literal["log"] = "log"
    path: str = Field(min_length=1)
    slow_ms: float = Field(1000.0, gt=0)
    max_read: Size = Field(8_000_000, ge=1024, le=1_000_000_000)


class HostTarget(TargetBase):
    """A host's CPU, memory, load, disk and network: this machine, or another through its
    node_exporter.

    Without `url` it is the machine the console runs on, read with psutil; `disk_path` names
    the filesystem whose fullness is reported. With `url` (a node_exporter /metrics, `${ENV}`
    allowed, no literal password) it is that host, scraped like a prometheus target (`headers`,
    `insecure`, `max_body`), with the same metric names: `mountpoint` names the filesystem,
    `device` and `interface` are regexes (whole-name match) choosing the disks and network
    interfaces whose byte rates are summed. By default loop, ram and zram devices, floppies
    and partitions (which would count their disk's bytes twice) and the `lo` interface are
    left out.
    """

    kind: Literal["host"] = "host"
    disk_path: str = "/"
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=empty_dict)
    insecure: bool = False
    max_body: Size = Field(20_000_000, ge=1, le=200_000_000)
    mountpoint: str = Field("/", min_length=1)
    device: str | None = None
    interface: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _url_field(v, r"^https?://[^\s/]+",
                          "a remote host needs the http:// or https:// URL of its /metrics")

    @field_validator("headers")
    @classmethod
    def _secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        return HttpTarget._secret_headers(v)

    @field_validator("device", "interface")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regular expression {v!r} ({exc})") from None
        return v

    @model_validator(mode="after")
    def _local_or_remote(self) -> HostTarget:
        """A field that means nothing for this kind of host is a mistake worth reporting."""
        given = self.model_fields_set
        if self.url is None:
            remote = sorted(given & {"headers", "insecure", "max_body", "mountpoint", "device",
                                     "interface"})
            if remote:
                raise ValueError(f"{', '.join(remote)}: only for a remote host (set url); "
                                 "the local machine uses disk_path")
        elif "disk_path" in given:
            raise ValueError("disk_path is for the local machine; a remote host (url) names "
                             "its filesystem with mountpoint")
        return self


def _env_secret(v: str | None, what: str) -> str | None:
    """A secret is written as `${ENV}`, never literally in the config file."""
    if v is not None and not ENV_REF.search(v):
        raise ValueError(f"{what}: reference the secret as ${{ENV_VAR}}, not literally")
    return v


class HeartbeatTarget(TargetBase):
    """A job that must check in (a dead-man's switch, as healthchecks.io): `opsconsole ping
    NAME` or the listener's `/ping/NAME` (`/start`, `/fail`) at least every `period`.

    Late (no success for `period` + `grace`) is DOWN, never "no data"; a `fail` signal is
    DOWN at once; `/start` then success measures the run time (`run_time_s`); a run longer
    than `max_runtime` (if set) is DOWN. `token` (`${ENV}`) authenticates this job's HTTP
    pings instead of the listener's token. The probe only reads what the pings recorded, so
    `interval` (how often it looks) can stay short.
    """

    kind: Literal["heartbeat"] = "heartbeat"
    period: Duration = Field(ge=1, le=90 * 86400)
    grace: Duration = Field(60.0, ge=0, le=30 * 86400)
    max_runtime: Duration | None = Field(None, gt=0, le=30 * 86400)
    token: str | None = None

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        return _env_secret(v, "token")


class LighthouseTarget(TargetBase):
    """A page's Lighthouse performance: the Lighthouse CLI run against `url` with the
    machine's Chromium, or the newest JSON report Lighthouse CI wrote matching `reports`
    (a glob). Reports the performance score (0-100) and FCP, LCP, TTI, TBT (ms) and CLS.

    A run costs a headless Chromium for tens of seconds (see the README), so the default
    interval is 15 min, one run at a time, each bounded by `timeout`.
    """

    kind: Literal["lighthouse"] = "lighthouse"
    interval: Duration = Field(900.0, ge=10, le=86400)
    timeout: Duration = Field(120.0, gt=0, le=300)
    url: str | None = None
    reports: str | None = None
    lighthouse: str = Field("lighthouse", min_length=1, description="the CLI (PATH or a path)")
    chromium: str = Field("/usr/bin/chromium", min_length=1)
    form_factor: Literal["mobile", "desktop"] = "mobile"
    throttling: Literal["simulate", "devtools", "provided"] = "simulate"
    chrome_flags: list[str] = Field(default_factory=empty_list)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return _url_field(v, r"^https?://[^\s/]+",
                          "a lighthouse target needs the http:// or https:// URL of a page")

    @model_validator(mode="after")
    def _one_source(self) -> LighthouseTarget:
        if (self.url is None) == (self.reports is None):
            raise ValueError("give url (run the Lighthouse CLI) or reports (read Lighthouse "
                             "CI's JSON reports), one of them")
        return self


AnyTarget = (HttpTarget | PostgresTarget | RedisTarget | PrometheusTarget | PromqlTarget
             | LogTarget | HostTarget | HeartbeatTarget | LighthouseTarget)
Target = Annotated[AnyTarget, Field(discriminator="kind")]
# The registry of target kinds, in the order of `AnyTarget` (the one list of them): every
# place that lists kinds reads it (or `TargetKind`, its names, for mypy).
TARGET_KINDS: dict[TargetKind, type[TargetBase]] = {
    cls.model_fields["kind"].default: cls for cls in get_args(AnyTarget)
}
if set(TARGET_KINDS) != set(get_args(TargetKind)):  # a kind added to one and not the other
    raise AssertionError(f"model.TargetKind {sorted(get_args(TargetKind))} and the targets "
                         f"of config/schema.py {sorted(TARGET_KINDS)} differ")



class Panel(_Strict):
    """A live metric panel: one series of one target, with optional thresholds."""

    id: str | None = None
    title: str
    target: str
    metric: str = "latency_ms"
    unit: str = ""
    warn: float | None = None
    crit: float | None = None
    lower_is_better: bool = True

    @property
    def key(self) -> str:
        return self.id or re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


class Dashboard(_Strict):
    name: str
    panels: list[str] = Field(default_factory=empty_list)


class StateSection(_Strict):
    """`[state]`: where incidents, acknowledgements, silences, alert state and the outbox live.

    ``files`` (the default) keeps them in the data directory, for one bastion. ``postgres``
    shares them through a PostgreSQL database the team chooses (``opsconsole state init``
    creates its schema), so several consoles show one world and one of them evaluates.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              populate_by_name=True, defer_build=True)

    backend: Literal["files", "postgres"] = "files"
    # A direct connection (not through a transaction-mode pooler: the evaluator's lease is a
    # session advisory lock), normally "${OPS_STATE_DSN}".
    dsn: str | None = None
    db_schema: str = Field("opsconsole", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,47}$")
    # Who acts, on every incident action, acknowledgement and silence: this name, else
    # $OPSCONSOLE_OPERATOR, else user@host.
    operator: str | None = Field(None, min_length=1, max_length=80)
    # How long the evaluator may be silent (dead, paused, cut off) before a follower takes
    # over; the evaluator stops sending well before that.
    takeover: Duration = Field(15.0, ge=3, le=600)
    # Another console's change arrives by LISTEN/NOTIFY at once; this is how often the events
    # are read anyway, so a lost notification delays nothing longer than this.
    poll: Duration = Field(5.0, ge=0.05, le=3600)
    # The self-watch: the evaluator pings this URL (a dead-man's switch such as
    # healthchecks.io) every `heartbeat_every` while it evaluates and can notify.
    heartbeat_url: str | None = None
    heartbeat_every: Duration = Field(60.0, ge=1, le=86400)

    @field_validator("dsn")
    @classmethod
    def _dsn_secret(cls, v: str | None) -> str | None:
        return None if v is None else _no_literal_password(v)

    @field_validator("heartbeat_url")
    @classmethod
    def _ping_url(cls, v: str | None) -> str | None:
        if v is not None and not ENV_REF.fullmatch(v) and \
                not re.match(r"^https?://", v, re.IGNORECASE):
            raise ValueError("an http(s):// URL, or one ${VAR} holding it")
        return v

    @model_validator(mode="after")
    def _postgres_needs_dsn(self) -> StateSection:
        if self.backend == "postgres" and not self.dsn:
            raise ValueError('backend = "postgres" needs a dsn, e.g. dsn = "${OPS_STATE_DSN}"')
        return self


_SOURCE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_MATCH = re.compile(r"^[A-Za-z0-9_.]+(=|~)[^=~]*$")


class InboundSource(_Strict):
    """`[[inbound.sources]]`: one sender of webhooks, at `POST /hooks/<name>`.

    `kind` picks how requests are authenticated and the mapping's defaults: `sentry`
    (`Sentry-Hook-Signature`: HMAC-SHA256 of the body with the integration's client secret),
    `stripe` (`Stripe-Signature`: Stripe's signed timestamp and body, with the endpoint's
    `whsec_` secret, at most `tolerance` old), `json` (any tool: `Authorization: Bearer`
    with the secret). The mapping turns the JSON body into an alert: `summary` and `dedup`
    are templates of dotted paths (`{data.issue.title}`; `a|b` takes the first present),
    `severity` the default, `severity_from` a path whose value `severity_map` maps (or a
    P0-P3 value itself), `match` conditions (`path=value`, `path~substring`) a request must
    meet to raise anything, `resolve_when` one that resolves the alert of its dedup key
    instead; an alert no request resolves ends `resolve_after` after the last one.
    """

    name: str
    kind: Literal["sentry", "stripe", "json"] = "json"
    secret: str
    severity: Severity | None = None
    severity_from: str | None = None
    severity_map: dict[str, Severity] = Field(default_factory=empty_dict)
    summary: str | None = None
    dedup: str | None = None
    match: list[str] | None = None
    resolve_when: str | None = None
    resolve_after: Duration = Field(3600.0, ge=60, le=30 * 86400)
    tolerance: Duration = Field(300.0, ge=1, le=86400)
    service: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _SOURCE_NAME.match(v):
            raise ValueError("use letters, digits, _ and - (it is the URL path /hooks/NAME)")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        return _env_secret(v, "secret") or v

    @field_validator("match")
    @classmethod
    def _match(cls, v: list[str] | None) -> list[str] | None:
        for m in v or []:
            if not _MATCH.match(m):
                raise ValueError(f"{m!r}: write path=value or path~substring")
        return v

    @field_validator("resolve_when")
    @classmethod
    def _resolve_when(cls, v: str | None) -> str | None:
        if v is not None and not _MATCH.match(v):
            raise ValueError(f"{v!r}: write path=value or path~substring")
        return v


class InboundSection(_Strict):
    """`[inbound]`: the small HTTP listener for events, heartbeat pings and webhooks; off
    unless `enabled`. It binds `host` (127.0.0.1 unless set otherwise) on `port`; every
    request is authenticated (`token`, `${ENV}`, as `Authorization: Bearer` for `/events`
    and `/ping`; a source's own scheme for `/hooks/NAME`), bodies over `max_body` get 413,
    and each client address may make `rate` requests a second (bursts of `burst`)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(18790, ge=0, le=65535)
    token: str | None = None
    max_body: Size = Field(256 * 1024, ge=1024, le=10_000_000)
    rate: float = Field(10.0, gt=0, le=10_000)
    burst: int = Field(20, ge=1, le=100_000)
    sources: list[InboundSource] = Field(default_factory=empty_list)

    @field_validator("token")
    @classmethod
    def _token(cls, v: str | None) -> str | None:
        return _env_secret(v, "token")

    @model_validator(mode="after")
    def _unique(self) -> InboundSection:
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("inbound source names must be unique")
        return self


class Settings(_Strict):
    """A whole config file."""

    console: ConsoleSection = Field(default_factory=ConsoleSection)
    targets: list[Target] = Field(default_factory=empty_list)
    panels: list[Panel] = Field(default_factory=empty_list)
    dashboards: list[Dashboard] = Field(default_factory=empty_list)
    rules: list[Rule] = Field(default_factory=empty_list)
    alerting: AlertingSection = Field(default_factory=AlertingSection)
    state: StateSection = Field(default_factory=StateSection)
    inbound: InboundSection = Field(default_factory=InboundSection)

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, v: list[Rule]) -> list[Rule]:
        check_unique_names(v)
        return v

    @model_validator(mode="after")
    def _references(self) -> Settings:
        names = [t.name for t in self.targets]
        # counted once (list.count per name made 16,000 targets take 13 s to validate)
        dupes = sorted(n for n, k in collections.Counter(names).items() if k > 1)
        if dupes:
            raise ValueError(f"target names must be unique; repeated: {', '.join(dupes)}")
        known = set(names)
        for p in self.panels:
            if p.target not in known:
                raise ValueError(f"panel {p.title!r} refers to unknown target {p.target!r}")
        keys = {p.key for p in self.panels}
        for d in self.dashboards:
            for k in d.panels:
                if k not in keys:
                    raise ValueError(f"dashboard {d.name!r} refers to unknown panel {k!r}")
        return self

    @property
    def wants_remote_alerts(self) -> bool:
        """Whether the config names a source of the team's alerts to read: an
        `[[alerting.alertmanagers]]` shown in the console, or a `promql` target with
        `alerts` (so a command imports the remote alert clients only then)."""
        return any(a.show for a in self.alerting.alertmanagers) or any(
            t.kind == "promql" and t.alerts for t in self.targets)

    def target(self, name: str) -> AnyTarget:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)
