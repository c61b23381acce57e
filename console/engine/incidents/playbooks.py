"""Playbooks as data: the response steps, runbooks and reviews, shipped and user-overridable.

Ours live in ``console/data/playbooks/*.toml``; the operator's in
``<config dir>/playbooks/*.toml``. A user playbook with the same ``name`` replaces ours whole
(copy, edit, done), which keeps the merge rule obvious. Every file is validated with pydantic
and every problem is reported at once with its file, line and key, as the config is.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from console.engine.config.factories import empty_dict
from console.engine.errors import ConfigError, ConfigIssue
from console.engine.lang.durations import parse_duration
from console.engine.model import Severity
from console.engine.text.fmt import format_target

RESPONSE_PLAYBOOK = "incident-response"
_NAME = r"^[a-z0-9][a-z0-9_.-]*$"


def _duration(v: Any) -> Any:
    return None if v is None else parse_duration(v)


def _item(v: Any) -> Any:
    return {"text": v} if isinstance(v, str) else v


Duration = Annotated[float, BeforeValidator(_duration)]


class Item(BaseModel):
    """One checklist item; `severities` limits it to incidents of those severities."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str = Field(min_length=1)
    severities: tuple[Severity, ...] = ()
    link: str | None = None
    # an action that does this item, so it is checked when that is done: "severity" (the
    # severity set with `s`, with why)
    done_by: Literal["severity"] | None = None

    @field_validator("link")
    @classmethod
    def _link(cls, v: str | None) -> str | None:
        if v is not None:
            from console.engine.incidents.links import parse_link

            parse_link(v)  # ValueError: reported with the file, line and key
        return v

    def applies(self, severity: str | None) -> bool:
        return not self.severities or severity is None or severity in self.severities


class Section(BaseModel):
    """A step (response playbooks) or a list (runbooks, reviews) with an optional time target."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=_NAME)
    title: str = Field(min_length=1)
    target: Duration | None = None
    targets: dict[Severity, Duration] = Field(default_factory=empty_dict)
    items: tuple[Annotated[Item, BeforeValidator(_item)], ...] = ()

    def target_for(self, severity: str | None) -> float | None:
        """Seconds from the incident's start by which this step is due, if it has a target."""
        if severity is not None and severity in self.targets:
            return self.targets[severity]
        return self.target

    def items_for(self, severity: str | None) -> list[tuple[int, Item]]:
        """(index, item) of the items that apply; the index is the item's stable key."""
        return [(i, it) for i, it in enumerate(self.items) if it.applies(severity)]

    def describe_target(self, severity: str | None = None) -> str:
        t = self.target_for(severity)
        if t is not None:
            return f"< {format_target(t)}"
        if self.targets:
            return ", ".join(f"< {format_target(v)} for {k}" for k, v in self.targets.items())
        return ""


class Playbook(BaseModel):
    """A response playbook, a runbook for one kind of incident, or a review checklist."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=_NAME)
    title: str = Field(min_length=1)
    kind: Literal["response", "runbook", "review"]
    description: str = ""
    # A runbook's first move in one line: shown with every alert that links to it, on
    # screen and in every notification ("what's wrong + how to fix").
    action: str = Field("", max_length=300)
    severities: tuple[Severity, ...] = ()
    alerts: tuple[str, ...] = ()
    schedule: str | None = None
    sections: tuple[Section, ...] = Field(min_length=1)
    source: str = ""  # the file it came from, filled in by the loader

    @model_validator(mode="after")
    def _unique_sections(self) -> Playbook:
        seen: set[str] = set()
        for s in self.sections:
            if s.id in seen:
                raise ValueError(f"section id {s.id!r} is used twice")
            seen.add(s.id)
        return self

    def section(self, section_id: str) -> Section | None:
        return next((s for s in self.sections if s.id == section_id), None)


@dataclass(slots=True)
class Playbooks:
    """Every playbook by name, with the selection rules the incident screens use."""

    by_name: dict[str, Playbook] = field(default_factory=dict)
    overridden: list[str] = field(default_factory=list)  # names a user file replaced

    def get(self, name: str) -> Playbook | None:
        return self.by_name.get(name)

    def of_kind(self, kind: str) -> list[Playbook]:
        return [p for p in self.by_name.values() if p.kind == kind]

    def response_for(self, severity: str | None = None) -> Playbook | None:
        """The response playbook for `severity`: one that lists it, else the default one."""
        responses = self.of_kind("response")
        if severity is not None:
            for p in responses:
                if p.name != RESPONSE_PLAYBOOK and severity in p.severities:
                    return p
        return self.by_name.get(RESPONSE_PLAYBOOK) or (responses[0] if responses else None)

    def runbook(self, ref: str | None) -> Playbook | None:
        """The runbook a rule's ``runbook`` link or an alert name points at.

        A link may be a bare name (``high-error-rate``), a file name or a URL ending in it.
        """
        if not ref:
            return None
        key = ref.strip().rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]
        key = key.removesuffix(".toml").removesuffix(".md").lower()
        p = self.by_name.get(key)
        if p is not None and p.kind == "runbook":
            return p
        for p in self.of_kind("runbook"):
            if ref in p.alerts or key in p.alerts:
                return p
        return None

    def advice(self, rule: Any) -> str:
        """The "what to do" line for an alert rule: its runbook's `action` (by the rule's
        `runbook`, else by the runbook's `alerts` list naming the rule)."""
        pb = self.runbook(getattr(rule, "runbook", None)) or self.runbook(
            getattr(rule, "name", None))
        return pb.action if pb is not None else ""

    def select(self, *, severity: str | None = None, runbook: str | None = None,
               alerts: Iterable[str] = ()) -> list[Playbook]:
        """What an incident works through: the response steps, then the matching runbooks."""
        out: list[Playbook] = []
        resp = self.response_for(severity)
        if resp is not None:
            out.append(resp)
        for ref in [runbook, *alerts]:
            rb = self.runbook(ref)
            if rb is not None and rb not in out:
                out.append(rb)
        return out


# -- loading ---------------------------------------------------------------------------------


def builtin_dir() -> Path:
    return Path(str(resources.files("console") / "data" / "playbooks"))


def user_dir() -> Path:
    """``playbooks/`` next to the config file (honours ``$OPSCONSOLE_CONFIG``)."""
    from console.engine.config.locate import default_config_path

    return default_config_path().parent / "playbooks"


def _issues_from(exc: ValidationError, path: Path, text: str) -> list[ConfigIssue]:
    from console.engine.config.loader import locate_keys

    loc = locate_keys(text)
    out: list[ConfigIssue] = []
    errors = exc.errors()
    for err in errors:
        parts = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(
            "function-")))
        key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in parts).replace(
            ".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "too_short" and any(
                len(e["loc"]) > len(err["loc"]) and e["loc"][:len(err["loc"])] == err["loc"]
                for e in errors):
            continue  # "no sections" only because every section was invalid: said below
        out.append(ConfigIssue(str(path), loc.line_of(parts), key, msg))
    return out


def parse_playbook(text: str, path: Path) -> tuple[Playbook | None, list[ConfigIssue]]:
    """One playbook from TOML `text`, or the issues that keep it from being one."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [ConfigIssue(str(path), None, "", f"not valid TOML: {exc}")]
    if isinstance(data, Mapping) and "source" in data:
        return None, [ConfigIssue(str(path), None, "source", "is set by opsconsole, remove it")]
    try:
        pb = Playbook.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        return None, _issues_from(exc, path, text)
    return pb, []


def _load_dir(directory: Path, issues: list[ConfigIssue]) -> dict[str, Playbook]:
    out: dict[str, Playbook] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.toml")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(str(path), None, "", f"cannot read: {exc}"))
            continue
        pb, errs = parse_playbook(text, path)
        issues.extend(errs)
        if pb is None:
            continue
        if pb.name in out:
            issues.append(ConfigIssue(str(path), None, "name",
                                      f"playbook {pb.name!r} is also defined in "
                                      f"{out[pb.name].source}"))
            continue
        out[pb.name] = pb
    return out


def validate_playbooks(directory: Path | None = None) -> list[ConfigIssue]:
    """Every problem in ours and in the user's playbooks (for ``opsconsole validate``)."""
    issues: list[ConfigIssue] = []
    _load_dir(builtin_dir(), issues)
    _load_dir(directory if directory is not None else user_dir(), issues)
    return issues


def load_playbooks(directory: Path | None = None, *, builtin: bool = True) -> Playbooks:
    """Ours, then the user's from `directory` (default: the config dir's ``playbooks/``)
    replacing ours by name. Raises ConfigError listing every problem found."""
    issues: list[ConfigIssue] = []
    ours = _load_dir(builtin_dir(), issues) if builtin else {}
    theirs = _load_dir(directory if directory is not None else user_dir(), issues)
    if issues:
        raise ConfigError(issues)
    return Playbooks({**ours, **theirs}, sorted(set(ours) & set(theirs)))
