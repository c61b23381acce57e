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

from console.engine.config.envref import ENV_REF, check_secret_headers
from console.engine.config.factories import empty_dict, empty_list
from console.engine.lang.durations import parse_duration
from console.engine.lang.ruleexpr import Expr, parse_expr, parse_matcher
from console.engine.model import Severity, TargetKind

Duration = Annotated[float, BeforeValidator(parse_duration)]

# -- config schema ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True,
                              populate_by_name=True, defer_build=True)


class Rule(_Strict):
    """`[[rules]]`: one alert rule, evaluated for every target it selects."""

    name: str = Field(min_length=1, max_length=64)
    expr: str
    severity: Severity = "P2"
    targets: list[str] = Field(default_factory=empty_list)
    kinds: list[TargetKind] = Field(
        default_factory=empty_list)
    for_: Duration = Field(0.0, alias="for", ge=0, le=7 * 86400)
    keep_firing_for: Duration = Field(0.0, ge=0, le=7 * 86400)
    failure_threshold: int = Field(3, ge=1, le=1000)
    success_threshold: int = Field(2, ge=1, le=1000)
    nodata_intervals: int = Field(3, ge=1, le=1000)
    labels: dict[str, str] = Field(default_factory=empty_dict)
    summary: str = ""
    runbook: str = ""
    # One line of "what to do" shown with every alert of this rule; empty: the runbook's.
    action: str = Field("", max_length=300)
    inhibits: list[str] = Field(default_factory=empty_list)
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
    matchers: list[str] = Field(default_factory=empty_list)
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


class AlertmanagerConfig(_Strict):
    """`[[alerting.alertmanagers]]`: one Alertmanager cluster, every replica's base URL.

    Its alerts are read from every replica (merged and deduplicated) and shown beside the
    console's own; silences (and acknowledgements, which are silences with an `ACK!`
    comment) are made in it; a receiver of kind "alertmanager" naming it pushes the
    console's alerts to every replica. `url` may carry a path prefix (Mimir:
    `https://mimir.example.com/alertmanager`); `headers` go with every request (Mimir's
    `X-Scope-OrgID`; secrets as `${ENV}`). An acknowledgement's silence lasts `ack_extend`
    and is extended while the alert fires, expired when it resolves.
    """

    name: str = Field(min_length=1, max_length=64)
    urls: list[str] = Field(min_length=1, max_length=16)
    headers: dict[str, str] = Field(default_factory=empty_dict)
    timeout: Duration = Field(5.0, gt=0, le=60)
    interval: Duration = Field(15.0, ge=1, le=3600, description="how often alerts are read")
    insecure: bool = False
    ca_file: str | None = None
    ack_extend: Duration = Field(900.0, ge=60, le=7 * 86400)
    show: bool = True

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not ENV_REF.fullmatch(url) and not re.match(r"^https?://[^\s/]+", url,
                                                           re.IGNORECASE):
                raise ValueError(f"{url!r}: give each replica's http:// or https:// base URL")
            if re.search(r"/api/v[12](/|$)", url):
                raise ValueError(f"{url!r}: give the base URL, without /api/v2 (the console "
                                 "adds it)")
        if len(set(v)) != len(v):
            raise ValueError("each replica once")
        return v

    @field_validator("headers")
    @classmethod
    def _secret_headers(cls, v: dict[str, str]) -> dict[str, str]:
        check_secret_headers(v)
        return v


def _all_severities() -> list[Severity]:
    return ["P0", "P1", "P2", "P3"]


E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_SLACK_MENTION = re.compile(r"^(channel|here|everyone|[UW][A-Z0-9]{2,}|S[A-Z0-9]{2,})$")
_TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
# Where each kind sends when `url` is left out.
DEFAULT_URLS = {
    "twilio": "https://api.twilio.com",
    "pagerduty": "https://events.pagerduty.com/v2/enqueue",
    "slack": "https://slack.com/api",  # the Web API, for a bot token
}


def _secret(field: str, example: str) -> str:
    return f"{field!r} is a secret; put it in an environment variable and write " \
           f'{field} = "${{{example}}}"'


class Receiver(_Strict):
    """`[[alerting.receivers]]`: where notifications go.

    Kinds: `slack` (an incoming webhook `url`, or a bot `token` posting with chat.postMessage
    to `channel`), `webhook` (a documented, versioned JSON payload), `twilio` (SMS through
    Twilio's REST API), `email` (SMTP with STARTTLS or TLS and AUTH) and `pagerduty` (Events
    API v2, so an unacknowledged P0 reaches a phone through the team's on-call service).

    Every field that may hold a secret or an address accepts `${ENV}` references, expanded
    each time a message is sent; secrets (a webhook URL, tokens, passwords, the routing key)
    must be references. `rate` paces this receiver (Slack allows about one message a second,
    PagerDuty 120 events a minute per key).

    `digest = "1h"` batches the notifications of `digest_severities` (P3 by default, the
    playbook's "Slack (can be batched)") into one message per period, aligned to UTC; the
    other severities are still sent at once. `summary_at = "08:00"` sends the daily summary
    (uptime, alerts, incidents and KPIs, the P3 batched since the last one) at that time
    every day in `summary_tz`, quiet day or not.
    """

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["slack", "webhook", "twilio", "email", "pagerduty", "alertmanager"]
    url: str | None = None
    alertmanager: str | None = None  # kind "alertmanager": the [[alerting.alertmanagers]]
    resend: Duration = Field(60.0, ge=5, le=60, description=(
        "alertmanager: re-send firing alerts this often (endsAt is 4 times it ahead)"))
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
    summary_at: str | None = Field(None, description="daily summary at HH:MM[:SS]")
    summary_tz: str = "UTC"
    logs_url: str | None = None
    metrics_url: str | None = None
    account_sid: str | None = None  # twilio
    auth_token: str | None = None  # twilio, as ${ENV}
    sms_from: str | None = None  # twilio: the sending number (E.164)
    sms_to: str | None = None  # twilio: the number to text (E.164)
    sms_segments: int = Field(2, ge=1, le=10, description="SMS parts a message may use")
    mail_from: str | None = None  # email
    mail_to: list[str] = Field(default_factory=empty_list)  # email
    smtp_user: str | None = None  # email
    smtp_password: str | None = None  # email, as ${ENV}
    starttls: bool = True  # email: refuse to send in clear text unless false
    ca_file: str | None = None  # email: extra CA for the SMTP server's certificate
    token: str | None = None  # slack: a bot token (xoxb-…), as ${ENV}
    channel: str | None = None  # slack with a token: where this route posts
    mention_p0: str | None = None  # slack: "here", "channel", a user U… or group S…, for P0
    incident_channels: bool = False  # slack with a token: #incident-… per incident
    responders: list[str] = Field(default_factory=empty_list)  # slack user ids to invite
    status_channel: str | None = None  # slack: user-facing status updates also go here
    status_severities: list[Severity] = Field(
        default_factory=lambda: list[Severity](["P0", "P1"]),
        description="incidents of these severities are user-facing: status to status_channel")
    routing_key: str | None = None  # pagerduty: the integration's key, as ${ENV}

    @field_validator("digest")
    @classmethod
    def _digest_period(cls, v: float) -> float:
        if 0 < v < 60:
            raise ValueError("digest must be at least 1m (or 0 to send each at once)")
        return v

    @field_validator("sms_from", "sms_to")
    @classmethod
    def _e164(cls, v: str | None) -> str | None:
        if v is not None and not ENV_REF.search(v) and not E164.fullmatch(v):
            raise ValueError(f"{v!r} is not an E.164 number: + then up to 15 digits, "
                             "no spaces (e.g. +14155550100)")
        return v

    @field_validator("mention_p0")
    @classmethod
    def _mention(cls, v: str | None) -> str | None:
        if v is not None and not _SLACK_MENTION.fullmatch(v):
            raise ValueError('use "here", "channel", "everyone", a user id (U…) or a user '
                             "group id (S…)")
        return v

    @field_validator("summary_at")
    @classmethod
    def _time_of_day(cls, v: str | None) -> str | None:
        if v is not None and not _TIME_OF_DAY.fullmatch(v):
            raise ValueError('write the time of day as "HH:MM" (24-hour), e.g. "08:00"')
        return v

    @field_validator("summary_tz")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name such as "
                             '"Europe/Berlin", or "UTC")') from None
        return v

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: float, info: object) -> float:
        if getattr(info, "data", {}).get("kind") == "pagerduty" and v > 2:
            raise ValueError("PagerDuty takes at most 120 events a minute per routing key: "
                             "rate = 2 at most")
        return v

    @model_validator(mode="after")
    def _per_kind(self) -> Receiver:
        def need(*names: str) -> None:
            missing = [k for k in names if not getattr(self, k)]
            if missing:
                raise ValueError(f"a {self.kind} receiver needs {', '.join(missing)}")

        def secret(name: str, example: str) -> None:
            if getattr(self, name) and not ENV_REF.search(getattr(self, name)):
                raise ValueError(_secret(name, example))

        if self.kind == "email":
            need("url", "mail_from", "mail_to")
            secret("smtp_password", "SMTP_PASSWORD")
        elif self.kind == "twilio":
            need("account_sid", "auth_token", "sms_from", "sms_to")
            secret("auth_token", "TWILIO_AUTH_TOKEN")
        elif self.kind == "pagerduty":
            need("routing_key")
            secret("routing_key", "PAGERDUTY_ROUTING_KEY")
        elif self.kind == "slack":
            secret("token", "SLACK_BOT_TOKEN")
            if self.token:
                need("channel")
            elif self.url and not ENV_REF.search(self.url):
                raise ValueError("a Slack webhook URL is a secret; put it in an environment "
                                 'variable and write url = "${SLACK_WEBHOOK_URL}"')
            elif not self.url:
                raise ValueError('a slack receiver needs an incoming webhook url = '
                                 '"${SLACK_WEBHOOK_URL}", or a bot token = '
                                 '"${SLACK_BOT_TOKEN}" and a channel')
            if (self.incident_channels or self.status_channel) and not self.token:
                raise ValueError("incident channels and status updates need a bot token "
                                 "(conversations.create and chat.postMessage)")
        elif self.kind == "webhook":
            need("url")
        elif self.kind == "alertmanager":
            if not self.alertmanager:
                raise ValueError('an alertmanager receiver names its cluster: alertmanager = '
                                 '"team" (an [[alerting.alertmanagers]] entry)')
            if self.url:
                raise ValueError("an alertmanager receiver takes the urls of its "
                                 "[[alerting.alertmanagers]] entry, not url")
            if self.summary_at is not None or self.digest:
                raise ValueError("an alertmanager receiver keeps Alertmanager in step with "
                                 "the alerts: no digest or daily summary")
        if self.alertmanager and self.kind != "alertmanager":
            raise ValueError('alertmanager is only for a receiver of kind "alertmanager"')
        if self.summary_at is not None:
            if self.kind in ("twilio", "pagerduty"):
                raise ValueError("the daily summary goes by email, Slack or webhook, not by "
                                 f"{self.kind}")
            if self.digest:
                raise ValueError("with summary_at, the digest severities go into the daily "
                                 "summary: leave digest out")
        return self

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None, info: object) -> str | None:
        if v is None or ENV_REF.fullmatch(v):
            return v
        data = getattr(info, "data", {})
        kind = data.get("kind")
        if kind == "email":
            if not re.match(r"^smtps?://[^\s/:]+(:\d+)?/?$", v, re.IGNORECASE):
                raise ValueError('an email receiver needs url = "smtp://host:587" (STARTTLS) '
                                 'or "smtps://host:465" (TLS)')
            return v
        if not re.match(r"^https?://[^\s/]+", v, re.IGNORECASE):
            raise ValueError("a receiver needs an http:// or https:// URL or an ${ENV} reference")
        if kind == "slack" and "hooks.slack.com" in v.lower():
            raise ValueError("a Slack webhook URL is a secret; put it in an environment variable "
                             "and write url = \"${SLACK_WEBHOOK_URL}\"")
        return v

    @property
    def slack_bot(self) -> bool:
        return self.kind == "slack" and bool(self.token)

    @property
    def endpoint(self) -> str:
        """`url`, or where this kind sends by default."""
        return self.url or DEFAULT_URLS.get(self.kind, "")

    def env_fields(self) -> list[tuple[str, str | list[str]]]:
        """(field, value) of every field that may hold `${ENV}` references."""
        names = ("url", "logs_url", "metrics_url", "account_sid", "auth_token", "sms_from",
                 "sms_to", "mail_from", "mail_to", "smtp_user", "smtp_password", "token",
                 "channel", "responders", "status_channel", "routing_key")
        return [(k, getattr(self, k)) for k in names if getattr(self, k)]


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
    maintenance: list[MaintenanceWindow] = Field(default_factory=empty_list)
    receivers: list[Receiver] = Field(default_factory=empty_list)
    alertmanagers: list[AlertmanagerConfig] = Field(default_factory=empty_list)

    @model_validator(mode="after")
    def _alertmanager_names(self) -> AlertingSection:
        names = [a.name for a in self.alertmanagers]
        if len(set(names)) != len(names):
            raise ValueError("alertmanager names must be unique")
        for r in self.receivers:
            if r.alertmanager is not None and r.alertmanager not in names:
                raise ValueError(f"receiver {r.name!r} names alertmanager {r.alertmanager!r}, "
                                 "which no [[alerting.alertmanagers]] entry defines")
        return self

    @field_validator("receivers")
    @classmethod
    def _unique_receivers(cls, v: list[Receiver]) -> list[Receiver]:
        names = [r.name for r in v]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"receiver names must be unique (the outbox keys by them); "
                             f"{dup!r} is repeated")
        return v

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
    from console.engine.config.locate import toml_loads

    data = toml_loads(text)
    rules = [Rule.model_validate(r) for r in data.get("rules", [])]
    check_unique_names(rules)
    return rules


