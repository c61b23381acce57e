"""Inbound JSON to an alert: a small documented mapping (severity, summary, dedup key).

A source's fields (`[[inbound.sources]]`, see `config/schema.py: InboundSource`) are read
against the JSON body: a template such as ``{data.issue.title}`` takes that dotted path
(list items by index: ``{exception.values.0.type}``), ``{a|b}`` the first that is present;
a condition ``path=value`` (``value|other`` for any of several) or ``path~substring``. Each
`kind` has defaults, so ``kind = "sentry"`` alone turns Sentry's "new issue" into the
playbook's P2 titled with the issue's title, and its metric alerts into P1 (critical) or
P2 (warning); ``kind = "stripe"`` raises the failed-payment and failed-charge events.

Every value taken from a body is plain text: one line, control characters stripped, cut
to length (`text.sanitize`), never markup.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from console.engine.text.sanitize import one_line

__all__ = ["PRESETS", "Mapped", "lookup", "map_body", "matches", "render"]

PRESETS: dict[str, dict[str, Any]] = {
    # Sentry integration webhooks (Sentry-Hook-Resource: issue, event_alert, metric_alert):
    # a new or reopened issue, a triggered issue alert, a critical/warning metric alert.
    "sentry": {
        "severity": "P2", "severity_from": "action",
        "severity_map": {"critical": "P1", "warning": "P2"},
        "summary": "{data.issue.title|data.event.title|data.description_title|"
                   "data.metric_alert.title|data.metric_alert.alert_rule.name}",
        "dedup": "{data.issue.id|data.event.issue_id|data.metric_alert.id|"
                 "data.metric_alert.alert_rule.id|data.event.event_id}",
        "match": ["action=created|unresolved|triggered|critical|warning"],
        "resolve_when": "action=resolved",
        "cause": "{data.issue.culprit|data.event.culprit|data.description_text|action}",
        "link": "{data.issue.web_url|data.event.web_url|data.web_url}",
        "runbook": "high-error-rate",
    },
    # Stripe events: payments and charges that failed (Stripe's own retries and the
    # payment runbook follow); one alert per event type, not per payment.
    "stripe": {
        "severity": "P1",
        "summary": "Stripe {type}",
        "dedup": "{type}",
        "match": ["type~failed"],
        "cause": "{data.object.last_payment_error.message|data.object.failure_message|"
                 "data.object.id}",
        "runbook": "payment-processing-failure",
    },
    # Any tool that can POST JSON: {"summary", "severity", "dedup_key", "status"}.
    "json": {
        "severity": "P2", "severity_from": "severity",
        "severity_map": {"critical": "P0", "error": "P1", "warning": "P2", "info": "P3"},
        "summary": "{summary|title|message}",
        "dedup": "{dedup_key|id|summary|title}",
        "resolve_when": "status=resolved|ok",
        "cause": "{description|detail|details}",
        "link": "{url|link}",
    },
}
_TEMPLATE = re.compile(r"\{([^{}]+)\}")
_SEVERITIES = ("P0", "P1", "P2", "P3")


def lookup(body: Any, path: str) -> Any:
    """The value at a dotted path, or None."""
    node = body
    for part in path.split("."):
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


def _scalar(v: Any) -> str | None:
    if v is None or isinstance(v, dict | list):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render(template: str, body: Any, limit: int = 200) -> str:
    """A template with its ``{path|path}`` parts filled in (missing: empty), one line."""
    def sub(m: re.Match[str]) -> str:
        for path in m.group(1).split("|"):
            v = _scalar(lookup(body, path.strip()))
            if v:
                return v
        return ""

    return one_line(_TEMPLATE.sub(sub, template), limit)


def matches(condition: str, body: Any) -> bool:
    """``path=a|b`` (equal to any) or ``path~text`` (contains, case-insensitive)."""
    m = re.match(r"^([A-Za-z0-9_.]+)(=|~)(.*)$", condition)
    if not m:
        return False
    value = _scalar(lookup(body, m.group(1)))
    if value is None:
        return False
    if m.group(2) == "=":
        return value in m.group(3).split("|")
    return m.group(3).lower() in value.lower()


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one request means: fire, resolve or nothing (`action`), and the alert's words."""

    action: str  # fire | resolve | ignore
    severity: str
    summary: str
    dedup: str
    cause: str = ""
    link: str = ""
    runbook: str = ""


def _field(source: Any, name: str) -> Any:
    value = getattr(source, name, None)
    return value if value is not None else PRESETS[source.kind].get(name)


def map_body(source: Any, body: Any) -> Mapped:
    """The alert a request of `source` (an `InboundSource`) asks for."""
    severity = str(_field(source, "severity") or "P2")
    from_path = _field(source, "severity_from")
    table = {**PRESETS[source.kind].get("severity_map", {}), **(source.severity_map or {})}
    if from_path:
        raw = _scalar(lookup(body, from_path))
        if raw is not None:
            raw_key = raw.strip()
            if raw_key.upper() in _SEVERITIES:
                severity = raw_key.upper()
            elif raw_key.lower() in table:
                severity = table[raw_key.lower()]
    summary = render(str(_field(source, "summary") or ""), body) or f"{source.name} alert"
    dedup_raw = render(str(_field(source, "dedup") or ""), body, 500) or summary
    dedup = dedup_raw if len(dedup_raw) <= 64 else \
        hashlib.sha256(dedup_raw.encode()).hexdigest()[:32]
    cause = render(str(PRESETS[source.kind].get("cause", "")), body, 300)
    link = render(str(PRESETS[source.kind].get("link", "")), body, 300)
    runbook = str(PRESETS[source.kind].get("runbook", ""))
    resolve_when = _field(source, "resolve_when")
    if resolve_when and matches(str(resolve_when), body):
        action = "resolve"
    else:
        conditions = _field(source, "match") or []
        action = "fire" if all(matches(str(c), body) for c in conditions) else "ignore"
    return Mapped(action, severity, summary, dedup, cause, link, runbook)
