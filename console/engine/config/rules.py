"""The alerting part of the config schema: `[[rules]]` and `[alerting]` (receivers,
maintenance windows, lifecycle settings), as pydantic models (unknown keys rejected)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from console.engine.config.envref import ENV_REF
from console.engine.lang.durations import parse_duration
from console.engine.lang.ruleexpr import Expr, parse_expr, parse_matcher
from console.engine.model import Severity, TargetKind

Duration = Annotated[float, BeforeValidator(parse_duration)]

# -- config schema ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              populate_by_name=True)


class Rule(_Strict):
    """`[[rules]]`: one alert rule, evaluated for every target it selects."""

    name: str = Field(min_length=1, max_length=64)
    expr: str
    severity: Severity = "P2"
    targets: list[str] = Field(default_factory=list)
    kinds: list[TargetKind] = Field(
        default_factory=list)
    for_: Duration = Field(0.0, alias="for", ge=0, le=7 * 86400)
    keep_firing_for: Duration = Field(0.0, ge=0, le=7 * 86400)
    failure_threshold: int = Field(3, ge=1, le=1000)
    success_threshold: int = Field(2, ge=1, le=1000)
    nodata_intervals: int = Field(3, ge=1, le=1000)
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = ""
    runbook: str = ""
    # One line of "what to do" shown with every alert of this rule; empty: the runbook's.
    action: str = Field("", max_length=300)
    inhibits: list[str] = Field(default_factory=list)
    inhibit_equal: list[str] = Field(default_factory=lambda: ["service"])
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name_chars(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
            raise ValueError("use letters, digits and _ . - only (it keys alerts)")
        return v

    @field_validator("expr")
    @classmethod
    def _expr(cls, v: str) -> str:
        parse_expr(v)
        return v

    @property
    def condition(self) -> Expr:
        return parse_expr(self.expr)

    @property
    def explicit(self) -> bool:
        """Whether the rule names its targets (then a missing series is "nodata", not silence)."""
        return bool(self.targets or self.kinds)


class MaintenanceWindow(_Strict):
    """`[[alerting.maintenance]]`: a planned silence written in the config."""

    start: AwareDatetime
    end: AwareDatetime
    matchers: list[str] = Field(default_factory=list)
    reason: str = ""
    by: str = "config"

    @field_validator("matchers")
    @classmethod
    def _matchers(cls, v: list[str]) -> list[str]:
        for m in v:
            parse_matcher(m)
        return v

    @field_validator("end")
    @classmethod
    def _after_start(cls, v: datetime, info: object) -> datetime:
        start = getattr(info, "data", {}).get("start")
        if start is not None and v <= start:
            raise ValueError("end must come after start")
        return v


def _all_severities() -> list[Severity]:
    return ["P0", "P1", "P2", "P3"]


class Receiver(_Strict):
    """`[[alerting.receivers]]`: where notifications go: a Slack incoming webhook, a generic
    JSON webhook, or SMS through Twilio's REST API.

    The URL is usually a credential (a Slack webhook URL is one), so a Slack URL must be an
    `${ENV}` reference, as must a Twilio auth token; `rate` paces this receiver (Slack allows
    about one message a second). For Twilio, `url` is the API base (https://api.twilio.com).

    `digest = "1h"` batches the notifications of `digest_severities` (P3 by default, the
    playbook's "Slack (can be batched)") into one message per period, aligned to UTC (an
    hourly digest covers 10:00-11:00, a daily one a UTC day); the other severities this
    receiver takes are still sent at once. 0 (the default) sends everything at once.
    """

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["slack", "webhook", "twilio", "email"]
    url: str
    severities: list[Severity] = Field(default_factory=lambda: _all_severities())
    rate: float = Field(1.0, gt=0, le=50, description="messages per second at most")
    timeout: Duration = Field(5.0, gt=0, le=60)
    max_queue: int = Field(1000, ge=1, le=1_000_000)
    group_wait: Duration = Field(0.0, ge=0, le=3600, description=(
        "hold a group's first notification this long so the group's others join it "
        "(Alertmanager uses 30s; 0 sends each at once)"))
    group_max: int = Field(20, ge=1, le=40)
    digest: Duration = Field(0.0, ge=0, le=7 * 86400, description=(
        "collect digest_severities into one message per period (0: send each at once)"))
    digest_severities: list[Severity] = Field(default_factory=lambda: list[Severity](["P3"]))
    logs_url: str | None = None
    metrics_url: str | None = None
    account_sid: str | None = None  # twilio
    auth_token: str | None = None  # twilio, as ${ENV}
    sms_from: str | None = None  # twilio: the sending number
    sms_to: str | None = None  # twilio: the number to text
    mail_from: str | None = None  # email
    mail_to: list[str] = Field(default_factory=list)  # email
    smtp_user: str | None = None  # email
    smtp_password: str | None = None  # email, as ${ENV}
    starttls: bool = True  # email: refuse to send in clear text unless false
    ca_file: str | None = None  # email: extra CA for the SMTP server's certificate

    @field_validator("digest")
    @classmethod
    def _digest_period(cls, v: float) -> float:
        if 0 < v < 60:
            raise ValueError("digest must be at least 1m (or 0 to send each at once)")
        return v

    @model_validator(mode="after")
    def _twilio(self) -> Receiver:
        if self.kind == "email":
            missing = [k for k in ("mail_from", "mail_to") if not getattr(self, k)]
            if missing:
                raise ValueError(f"an email receiver needs {', '.join(missing)}")
            if self.smtp_password and not ENV_REF.search(self.smtp_password):
                raise ValueError("'smtp_password' is a secret; write "
                                 'smtp_password = "${SMTP_PASSWORD}"')
            return self
        if self.kind != "twilio":
            return self
        missing = [k for k in ("account_sid", "auth_token", "sms_from", "sms_to")
                   if not getattr(self, k)]
        if missing:
            raise ValueError(f"a twilio receiver needs {', '.join(missing)}")
        if not ENV_REF.search(self.auth_token or ""):
            raise ValueError("'auth_token' is a secret; write it as "
                             'auth_token = "${TWILIO_TOKEN}"')
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, v: str, info: object) -> str:
        if ENV_REF.fullmatch(v):
            return v
        if getattr(info, "data", {}).get("kind") == "email":
            if not re.match(r"^smtp://[^\s/:]+(:\d+)?/?$", v, re.IGNORECASE):
                raise ValueError("an email receiver needs url = \"smtp://host:587\"")
            return v
        if not re.match(r"^https?://[^\s/]+", v, re.IGNORECASE):
            raise ValueError("a receiver needs an http:// or https:// URL or an ${ENV} reference")
        if getattr(info, "data", {}).get("kind") == "slack":
            raise ValueError("a Slack webhook URL is a secret; put it in an environment variable "
                             "and write url = \"${SLACK_WEBHOOK_URL}\"")
        return v


class AlertingSection(_Strict):
    """`[alerting]`: lifecycle settings shared by every rule."""

    default_rules: bool = True
    flap_window: int = Field(21, ge=5, le=200)
    flap_high: float = Field(50.0, gt=0, le=100)
    flap_low: float = Field(25.0, ge=0, le=100)
    escalate_p0: Duration = Field(900.0, ge=0)
    escalate_p1: Duration = Field(1800.0, ge=0)
    ack_for: Duration = Field(3600.0, gt=0, description="how long an acknowledgement lasts")
    repeat_interval: Duration = Field(14400.0, ge=0, description=(
        "remind about an unacknowledged firing alert this often (Alertmanager: 4h; 0: never)"))

    @field_validator("repeat_interval")
    @classmethod
    def _reminders(cls, v: float) -> float:
        if 0 < v < 300:
            raise ValueError("repeat_interval must be at least 5m (or 0 for no reminders), "
                             "as gatus' minimum-reminder-interval")
        return v
    group_by: list[str] = Field(default_factory=lambda: ["service"])
    maintenance: list[MaintenanceWindow] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)

    @field_validator("flap_low")
    @classmethod
    def _hysteresis(cls, v: float, info: object) -> float:
        high = getattr(info, "data", {}).get("flap_high")
        if high is not None and v >= high:
            raise ValueError("flap_low must be below flap_high (the gap is the hysteresis)")
        return v


def check_unique_names(rules: Sequence[Rule]) -> None:
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise ValueError(f"rule names must be unique; {r.name!r} is repeated")
        seen.add(r.name)


def default_rules() -> list[Rule]:
    """The playbook's rule set, shipped as `console/data/rules/default.toml`."""
    text = resources.files("console").joinpath("data/rules/default.toml").read_text("utf-8")
    return load_rules_text(text)


def load_rules_text(text: str) -> list[Rule]:
    import tomllib

    data = tomllib.loads(text)
    rules = [Rule.model_validate(r) for r in data.get("rules", [])]
    check_unique_names(rules)
    return rules


