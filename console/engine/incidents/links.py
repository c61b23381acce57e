"""Runbook links: an item of a playbook that opens the screen answering it, with its context.

A checklist item may carry ``link = "…"``; Enter on it goes there. The grammar, small on
purpose (a link is read in a TOML file, aloud, at 3 a.m.)::

    link    := URL | VIEW [":" ARG] ["?" PARAM ("&" PARAM)*]
    URL     := "https://…" | "http://…"     shown, and copied to the clipboard (OSC 52)
    PARAM   := "target=" NAME | "window=" DURATION

    VIEW:ARG              opens
    target:NAME           that target's detail view
    chart:METRIC          the detail view of the target reporting METRIC, charting METRIC
    logs:QUERY            the Logs screen of a log target with QUERY applied: a ready query
                          (errors, errors-by-message, slow, stripe-failed) or a filter
                          (`level=error responseTime>1000`); `window=1h` sets its time window
    db:TAB                a database drill-down on TAB: activity, locks, statements,
                          tables, indexes, connections, replication, vacuum (PostgreSQL);
                          keyspace, slowlog, server, commands, clients, bigkeys (Redis)
    endpoints[:COLUMN]    the per-endpoint breakdown of a Prometheus target, sorted by
                          COLUMN (error_pct, p95_ms, rate_per_s…)
    health                the health components of an HTTP target (terminus/Spring/IETF)
    deploys[:METRIC]      the deploys of the last `window` (default 1 h) next to METRIC
                          (default error_pct) of the target reporting it: "recent deploy?"
    kind:KIND, metric:M   older forms: a target of that kind; = chart:M

Without ``target=`` a link goes to the incident's own target when it fits, else to the
first target of the config that fits (a log target for logs:, a Prometheus target for
endpoints…). Links resolve against the running config (`resolve`); `check` is what
``opsconsole validate`` runs over every playbook: a link naming a target, metric, query or
tab that does not exist is reported with its playbook, section and item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from console.engine.lang.durations import parse_duration
from console.engine.model import TargetKind

if TYPE_CHECKING:
    from console.engine.incidents.playbooks import Playbook

__all__ = ["DB_TABS", "Destination", "Link", "LinkTarget", "parse_link", "resolve"]

VIEWS = ("target", "chart", "logs", "db", "endpoints", "health", "kind", "metric", "deploys")
DEPLOYS_WINDOW = 3600.0  # "recent": the deploys of the last hour, unless window= says
DB_TABS: dict[str, tuple[str, ...]] = {  # by kind: every one of DATABASE_KINDS
    "postgres": ("activity", "locks", "statements", "tables", "indexes", "connections",
                 "replication", "vacuum"),
    "redis": ("keyspace", "slowlog", "server", "commands", "clients", "bigkeys"),
}
ENDPOINT_COLUMNS = ("rate_per_s", "share_pct", "error_pct", "p50_ms", "p95_ms", "p99_ms",
                    "requests")
_PARAMS = ("target", "window")


@dataclass(frozen=True, slots=True)
class Link:
    """A parsed link: `view` is one of VIEWS or "url"."""

    raw: str
    view: str
    arg: str = ""
    target: str | None = None
    window: float | None = None

    @property
    def is_url(self) -> bool:
        return self.view == "url"


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """What resolution needs to know of a target: its name and kind."""

    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a link leads in the running console (the UI maps it to a screen)."""

    view: str  # detail | logs | database | endpoints | health | deploys | url
    target: str | None = None
    metric: str | None = None
    query: str | None = None
    window: float | None = None
    tab: str | None = None
    sort: str | None = None
    url: str | None = None

    def describe(self) -> str:
        """``logs of api-logs: errors (last 1 h)``: what Enter will open, for the screen."""
        if self.view == "url":
            return f"open {self.url}"
        where = self.target or "?"
        if self.view == "detail":
            return f"{where}: chart of {self.metric}" if self.metric else f"{where} detail"
        if self.view == "logs":
            span = "" if self.window is None else f" (last {_span(self.window)})"
            return f"logs of {where}: {self.query or 'all lines'}{span}"
        if self.view == "database":
            return f"{where} drill-down: {self.tab}"
        if self.view == "endpoints":
            return f"{where} endpoints" + (f" by {self.sort}" if self.sort else "")
        if self.view == "deploys":
            span = _span(self.window or DEPLOYS_WINDOW)
            return f"deploys of the last {span} next to {where} {self.metric}"
        return f"{where} health components"


def _span(seconds: float) -> str:
    s = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size and s % size == 0:
            return f"{s // size} {unit}"
    return f"{s} s"


def parse_link(text: str) -> Link:
    """Parse one link; ValueError says what is wrong with it."""
    raw = text.strip()
    if not raw:
        raise ValueError("an empty link")
    low = raw.lower()
    if low.startswith(("https://", "http://")):
        if any(c.isspace() for c in raw):
            raise ValueError(f"{raw!r}: a URL has no spaces")
        return Link(raw, "url", raw)
    head, _, query = raw.partition("?")
    view, _, arg = head.partition(":")
    view, arg = view.strip(), arg.strip()
    if view not in VIEWS:
        raise ValueError(f"{raw!r}: unknown view {view!r}; one of "
                         f"{', '.join(VIEWS)}, or an http(s):// URL")
    target: str | None = None
    window: float | None = None
    for key, value in parse_qsl(query, keep_blank_values=True) if query else ():
        if key not in _PARAMS:
            raise ValueError(f"{raw!r}: unknown parameter {key!r} (target=, window=)")
        if not value:
            raise ValueError(f"{raw!r}: {key}= needs a value")
        if key == "target":
            target = value
        else:
            try:
                window = parse_duration(value)
            except ValueError as exc:
                raise ValueError(f"{raw!r}: window={value}: {exc}") from None
            if window <= 0:
                raise ValueError(f"{raw!r}: window must be more than 0")
    if query and not target and window is None:
        raise ValueError(f"{raw!r}: nothing after '?'")
    needs_arg = view in ("target", "chart", "logs", "db", "kind", "metric")
    if needs_arg and not arg:
        raise ValueError(f"{raw!r}: {view}: needs a value, e.g. {_EXAMPLES[view]}")
    if view == "db" and arg not in {t for tabs in DB_TABS.values() for t in tabs}:
        tabs = "; ".join(f"{k}: {', '.join(v)}" for k, v in DB_TABS.items())
        raise ValueError(f"{raw!r}: no drill-down tab {arg!r} ({tabs})")
    if view == "endpoints" and arg and arg not in ENDPOINT_COLUMNS:
        raise ValueError(f"{raw!r}: no endpoint column {arg!r} ({', '.join(ENDPOINT_COLUMNS)})")
    if view == "logs":
        from console.engine.logs.query import parse_query

        try:
            parse_query(arg)
        except ValueError as exc:
            raise ValueError(f"{raw!r}: {exc}") from None
    if window is not None and view not in ("logs", "deploys"):
        raise ValueError(f"{raw!r}: window= applies to logs: links only (and deploys:)")
    if view == "deploys" and not arg:
        arg = "error_pct"
    return Link(raw, view, arg, target, window)


_EXAMPLES = {"target": "target:api-health", "chart": "chart:p95_ms", "logs": "logs:errors",
             "db": "db:statements", "kind": "kind:postgres", "metric": "metric:error_pct"}
# Which kinds of target each view can open.
_KINDS: dict[str, tuple[TargetKind, ...]] = {
    "logs": ("log",), "endpoints": ("prometheus",), "health": ("http",),
}


def resolve(link: Link, targets: Sequence[LinkTarget], reports: Callable[[str, str], bool],
            prefer: Iterable[str] = ()) -> Destination:
    """Where `link` leads in a console watching `targets`.

    `reports(target, metric)` says whether a target reports a metric (the running console
    asks its store, `validate` the config); `prefer` are the incident's own targets, tried
    first. Raises ValueError naming what is missing (a target, a metric, a kind).
    """
    if link.is_url:
        return Destination("url", url=link.raw)
    by_name = {t.name: t for t in targets}
    order = [n for n in prefer if n in by_name] + [t.name for t in targets]
    view, arg = link.view, link.arg

    def fits(t: LinkTarget) -> bool:
        if view in ("chart", "metric", "deploys"):
            return reports(t.name, arg)
        if view == "kind":
            return t.kind == arg
        if view == "db":
            return arg in DB_TABS.get(t.kind, ())
        if view == "target":
            return t.name == arg
        return t.kind in _KINDS[view]

    name = arg if view == "target" else link.target
    if name is not None:
        t = by_name.get(name)
        if t is None:
            raise ValueError(f"no target {name!r} in the config")
        if not fits(t):
            raise ValueError(f"target {name!r} ({t.kind}) {_cannot(view, arg)}")
    else:
        name = next((n for n in order if fits(by_name[n])), None)
        if name is None:
            raise ValueError(f"no target {_cannot(view, arg)}")
    if view in ("chart", "metric"):
        return Destination("detail", name, metric=arg)
    if view in ("target", "kind"):
        return Destination("detail", name)
    if view == "logs":
        return Destination("logs", name, query=arg, window=link.window)
    if view == "db":
        return Destination("database", name, tab=arg)
    if view == "endpoints":
        return Destination("endpoints", name, sort=arg or None)
    if view == "deploys":
        return Destination("deploys", name, metric=arg, window=link.window or DEPLOYS_WINDOW)
    return Destination("health", name)


def _cannot(view: str, arg: str) -> str:
    return {
        "chart": f"reports the metric {arg!r}", "metric": f"reports the metric {arg!r}",
        "deploys": f"reports the metric {arg!r}",
        "kind": f"is of kind {arg!r}", "db": f"has a drill-down tab {arg!r}",
        "logs": "is a log target", "endpoints": "is a Prometheus target with endpoints",
        "health": "is an HTTP health check", "target": f"is named {arg!r}",
    }[view]


# -- against a config (``opsconsole validate``) -----------------------------------------------

ALWAYS = frozenset({"up", "latency_ms", "status"})  # every target's series


def config_metrics(target: object) -> frozenset[str]:
    """Every metric a target of this config can report (by its kind and definition)."""
    from console.engine.config.dashboards import HOST_METRICS, query_metrics
    from console.engine.config.schema import PostgresTarget, PrometheusTarget
    from console.engine.probes import catalog

    kind = getattr(target, "kind", "")
    if isinstance(target, PrometheusTarget):
        return ALWAYS | frozenset(target.metrics)
    if kind == "http":
        return ALWAYS | catalog.HTTP_METRICS
    if kind == "log":
        return ALWAYS | catalog.LOG_METRICS
    if kind == "host":
        return ALWAYS | HOST_METRICS
    if kind == "lighthouse":
        from console.engine.config.dashboards import LIGHTHOUSE_METRICS

        return ALWAYS | frozenset(LIGHTHOUSE_METRICS)
    if kind == "heartbeat":
        return ALWAYS | catalog.HEARTBEAT_METRICS
    if isinstance(target, PostgresTarget):
        extra = [m for name, sql in target.queries.items() for m in query_metrics(name, sql)]
        return ALWAYS | frozenset(catalog.POSTGRES_METRICS) \
            | frozenset(catalog.POSTGRES_SLOW_METRICS) | frozenset(extra)
    if kind == "redis":
        return ALWAYS | frozenset(catalog.REDIS_METRICS) | frozenset(catalog.REDIS_OTHER_METRICS)
    return ALWAYS


def check_links(playbooks: Iterable[Playbook], settings: object, *,
                builtin_dir: str | None = None) -> tuple[list[object], list[str]]:
    """(issues, notes) for every link of `playbooks` against `settings`' targets.

    A link that names a target, or any link in the operator's own playbooks, that does not
    resolve is an issue (``validate`` fails). A shipped playbook's generic link that finds
    no fitting target (``db:statements`` in a config without PostgreSQL) is a note: the
    runbook says so when the link is followed.
    """
    from console.engine.errors import ConfigIssue

    targets_cfg = list(getattr(settings, "targets", []))
    targets = [LinkTarget(t.name, t.kind) for t in targets_cfg]
    metrics = {t.name: config_metrics(t) for t in targets_cfg}

    def reports(name: str, metric: str) -> bool:
        return metric in metrics.get(name, ())

    issues: list[object] = []
    notes: list[str] = []
    for pb in playbooks:
        source = str(getattr(pb, "source", ""))
        ours = builtin_dir is not None and source.startswith(builtin_dir)
        for section in getattr(pb, "sections", ()):
            for i, item in enumerate(section.items):
                if not item.link:
                    continue
                where = f"sections.{section.id}.items[{i}].link"
                try:
                    link = parse_link(item.link)
                    resolve(link, targets, reports)
                except ValueError as exc:
                    explicit = link_names_target(item.link)
                    text = f"{item.link!r}: {exc}"
                    if ours and not explicit:
                        notes.append(f"{pb.name}/{section.id}: {text}")
                    else:
                        issues.append(ConfigIssue(source, None, where, text,
                                                  "name a target of this config, or leave "
                                                  "target= out to use the incident's own"))
    return issues, notes


def link_names_target(text: str) -> bool:
    try:
        link = parse_link(text)
    except ValueError:
        return True  # a malformed link is always reported
    return link.view == "target" or link.target is not None
