"""Health bodies read as components: what a NestJS terminus, Spring Boot or IETF `/health` says.

An alert must name the dependency that failed, in the words the service used. The common
health-check formats carry that in different places:

* **NestJS terminus**: ``{"status": "ok"|"error"|"shutting_down", "info": {…}, "error": {…},
  "details": {…}}``; every indicator is in ``details``, the failing ones also in ``error`` (and
  *not* in ``info``), each ``{"status": "up"|"down", "message": …}`` (a custom indicator may
  say ``error`` instead of ``message``).
* **Spring Boot actuator**: ``{"status": "UP"|"DOWN"|"OUT_OF_SERVICE", "components": {"db":
  {"status": "DOWN", "details": {"error": …}}, …}}`` (``details`` instead of ``components``
  before 2.2), composites nesting ``components``.
* **IETF draft** (``application/health+json``): ``{"status": "pass"|"fail"|"warn", "checks":
  {"redis:responseTime": [{"status": "fail", "output": …}], …}}``.
* A plain ``{"status": "error", "error": "…"}`` (no components): its message is the cause.

`parse_health` turns any of these into a `HealthBody`; anything else gives None. Remote text
is cut to one sanitised line here, so reasons and details are safe to show and to journal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from console.engine.details import HealthComponent, HealthJson
from console.engine.text.redact import redact
from console.engine.text.sanitize import one_line

__all__ = ["Component", "HealthBody", "parse_health"]

# Statuses that mean "this part is failing", across the formats (compared lower-cased).
FAILING = frozenset({"down", "fail", "failed", "error", "out_of_service", "unhealthy", "red",
                     "critical", "shutting_down"})
_OK = frozenset({"up", "ok", "pass", "passed", "healthy", "green"})
_MESSAGE_KEYS = ("message", "error", "output", "reason", "description")
MAX_COMPONENTS = 64
_NAME_LEN = 60
_MESSAGE_LEN = 200


@dataclass(frozen=True, slots=True)
class Component:
    """One indicator of a health body: its name, its status as written, and its message."""

    name: str
    status: str
    message: str = ""

    @property
    def failing(self) -> bool:
        return self.status.lower() in FAILING

    def reason(self) -> str:
        """``redis: down — connect ECONNREFUSED 10.0.3.7:6379``: the cause, as the service said."""
        text = f"{self.name}: {self.status.lower()}"
        return f"{text} — {self.message}" if self.message else text

    def to_json(self, core: bool | None = None) -> HealthComponent:
        out: HealthComponent = {"name": self.name, "status": self.status,
                                  "failing": self.failing, "message": self.message}
        if core is not None:
            out["core"] = core
        return out


@dataclass(frozen=True, slots=True)
class HealthBody:
    """A recognised health body: its overall status and its components."""

    format: str  # terminus | spring | ietf | plain
    status: str
    components: tuple[Component, ...] = ()
    message: str = ""  # a top-level message (a plain body without components)

    @property
    def failing_status(self) -> bool:
        return self.status.lower() in FAILING

    def failing(self) -> list[Component]:
        return [c for c in self.components if c.failing]

    def reasons(self) -> list[str]:
        """One line per failing component; the top-level message when there are none."""
        out = [c.reason() for c in self.failing()]
        if not out and self.failing_status and self.message:
            out.append(f"health {self.status.lower()}: {self.message}")
        return out

    def to_json(self, core: Iterable[str] | None = None) -> HealthJson:
        cores = None if core is None else set(core)
        return {
            "format": self.format, "status": self.status, "message": self.message,
            "components": [c.to_json(None if cores is None else is_core(c.name, cores))
                           for c in self.components],
        }


def is_core(name: str, core: set[str]) -> bool:
    """A component is core when listed (an empty list: every component is core)."""
    return not core or name in core


def _text(v: Any, n: int) -> str:
    """A name or status word: one safe line (secrets are looked for in messages)."""
    return one_line(str(v), n) if v is not None else ""


def _said(v: Any, n: int) -> str:
    """A message: it may quote a connection string, so it is redacted too."""
    return one_line(redact(str(v)), n) if v is not None else ""


def _message(d: Mapping[str, Any]) -> str:
    """The first message-like string of an indicator (or of its ``details``)."""
    for key in _MESSAGE_KEYS:
        v = d.get(key)
        if isinstance(v, str) and v.strip():
            return _said(v, _MESSAGE_LEN)
        if isinstance(v, Mapping):  # {"error": {"message": …}}
            inner = _message(v)
            if inner:
                return inner
    details = d.get("details")
    if isinstance(details, Mapping):
        return _message(details)
    return ""


def _terminus(doc: Mapping[str, Any]) -> HealthBody:
    seen: dict[str, Component] = {}
    # details holds every indicator; error and info are its two halves (older versions
    # may send only those), so details wins and the others fill in.
    for part in ("details", "error", "info"):
        section = doc.get(part)
        if not isinstance(section, Mapping):
            continue
        for name, v in section.items():
            if name in seen or len(seen) >= MAX_COMPONENTS:
                continue
            if isinstance(v, Mapping):
                status = _text(v.get("status", "down" if part == "error" else "up"), 30)
                seen[name] = Component(_text(name, _NAME_LEN), status, _message(v))
            elif isinstance(v, str):  # {"error": {"api": "shutting down"}}
                seen[name] = Component(_text(name, _NAME_LEN),
                                       "down" if part == "error" else "up", _said(v, 200))
    return HealthBody("terminus", _text(doc.get("status"), 30), tuple(seen.values()),
                      _message({k: v for k, v in doc.items() if k in ("message",)}))


def _spring(doc: Mapping[str, Any]) -> HealthBody:
    out: list[Component] = []

    def walk(prefix: str, section: Mapping[str, Any]) -> None:
        for name, v in section.items():
            if len(out) >= MAX_COMPONENTS or not isinstance(v, Mapping):
                continue
            full = f"{prefix}{name}"
            nested = v.get("components")
            if isinstance(nested, Mapping) and nested:
                walk(f"{full}/", nested)
                continue
            if "status" in v:
                out.append(Component(_text(full, _NAME_LEN), _text(v.get("status"), 30),
                                     _message(v)))

    section = doc.get("components")
    if not isinstance(section, Mapping):
        section = doc.get("details")
    if isinstance(section, Mapping):
        walk("", section)
    return HealthBody("spring", _text(doc.get("status"), 30), tuple(out))


def _ietf(doc: Mapping[str, Any]) -> HealthBody:
    out: list[Component] = []
    checks = doc.get("checks")
    if isinstance(checks, Mapping):
        for name, entries in checks.items():
            items = entries if isinstance(entries, list) else [entries]
            for i, e in enumerate(items):
                if len(out) >= MAX_COMPONENTS or not isinstance(e, Mapping):
                    continue
                label = name if len(items) == 1 else f"{name}[{e.get('componentId', i)}]"
                out.append(Component(_text(label, _NAME_LEN), _text(e.get("status", ""), 30),
                                     _message(e)))
    return HealthBody("ietf", _text(doc.get("status"), 30), tuple(out),
                      _said(doc.get("output"), _MESSAGE_LEN) if doc.get("output") else "")


def parse_health(doc: Any) -> HealthBody | None:
    """The health body in a parsed JSON document, or None if it is not one."""
    if not isinstance(doc, Mapping):
        return None
    status = doc.get("status")
    if not isinstance(status, str):
        return None
    low = status.lower()
    if any(isinstance(doc.get(k), Mapping) for k in ("info", "error")) or (
            low in ("ok", "error", "shutting_down") and isinstance(doc.get("details"), Mapping)):
        return _terminus(doc)
    if isinstance(doc.get("components"), Mapping) or (
            status.isupper() and isinstance(doc.get("details"), Mapping)):
        return _spring(doc)
    if isinstance(doc.get("checks"), Mapping) or low in ("pass", "fail", "warn"):
        return _ietf(doc)
    if low in FAILING or low in _OK:
        return HealthBody("plain", _text(status, 30), (), _message(doc))
    return None
