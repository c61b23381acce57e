"""Alert rules: their config schema, a small condition language, and evaluation on the store.

A rule is a condition on one target's metric series (`<target>:<metric>` in the MetricStore),
written as one expression so a user can read it aloud and `opsconsole rules test` can replay
it on a synthetic series:

    p95_ms > 2000                            the latest sample
    mean(cpu_pct, 5m) > 80                   also max / min / sum over a window
    rate(errors_total, 1m) > 0.5             per-second increase of a counter
    increase(errors_total, 1m) > 10          increase of a counter over the window
    ratio(failed_total, payments_total, 5m) * 100 > 2    increase of a / increase of b
    ratio(used_bytes, max_bytes) > 0.8       latest a / latest b
    quantile(0.95, latency_ms, 5m) > 2000    exact over raw samples (rollups beyond)
    count(up == 0, 1m) > 3                   how many samples in the window match
    down                                     shorthand for `up == 0`
    absent(up, 3)                            no sample for 3 of the target's intervals

Evaluation never raises: a missing series, a NaN sample, a stale latest value (older than
`nodata_intervals` intervals) or an empty window gives the state "nodata", which the
lifecycle in `alerts.py` keeps apart from "ok" (a lost target must never look resolved).
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .durations import format_duration, parse_duration

if TYPE_CHECKING:
    from .store import MetricStore

Duration = Annotated[float, BeforeValidator(parse_duration)]
Severity = Literal["P0", "P1", "P2", "P3"]
SEVERITIES: tuple[str, ...] = ("P0", "P1", "P2", "P3")
EvalState = Literal["fail", "ok", "nodata"]

# -- the condition language -------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?P<unit>ms|s|m|h|d)?(?![A-Za-z0-9_])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_:.]*)"
    r"|(?P<op>==|!=|>=|<=|>|<|\(|\)|,|\*|/|-))"
)
_CMP = ("==", "!=", ">=", "<=", ">", "<")
_WINDOWED = ("mean", "avg", "max", "min", "sum", "rate", "increase")
FUNCTIONS = (*_WINDOWED, "quantile", "count", "ratio", "absent")


@dataclass(frozen=True, slots=True)
class Expr:
    """A parsed rule condition: `fn(metric…) [* k] op threshold` (fn "latest" = no function)."""

    fn: str
    metric: str
    op: str = ">"
    threshold: float = 0.0
    window: float | None = None
    metric2: str | None = None  # ratio's denominator
    q: float | None = None  # quantile
    match_op: str | None = None  # count(metric match_op match_value, window)
    match_value: float | None = None
    intervals: int | None = None  # absent(metric, N)
    scale: float = 1.0
    text: str = ""

    @property
    def series(self) -> tuple[str, ...]:
        return (self.metric,) if self.metric2 is None else (self.metric, self.metric2)

    def describe_threshold(self) -> str:
        if self.fn == "absent":
            return f"no sample for {self.intervals} intervals"
        return f"{self.op} {self.threshold:g}"


def compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    if op == "<=":
        return value <= threshold
    if op == "==":
        return value == threshold
    return value != threshold


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[tuple[str, str, str | None]] = []  # (kind, text, unit)
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if not m or m.end() == pos:
                bad = stripped[pos:].strip()[:12]
                raise ValueError(f"cannot read {bad!r} in rule expression {text!r}")
            pos = m.end()
            if m.group("num") is not None:
                self.toks.append(("num", m.group("num"), m.group("unit")))
            elif m.group("name") is not None:
                self.toks.append(("name", m.group("name"), None))
            else:
                self.toks.append(("op", m.group("op"), None))
        self.p = 0

    def fail(self, what: str) -> ValueError:
        got = self.toks[self.p][1] if self.p < len(self.toks) else "the end"
        return ValueError(
            f"rule expression {self.text!r}: expected {what}, found {got!r}; write e.g. "
            "'p95_ms > 2000', 'mean(cpu_pct, 5m) > 80' or 'absent(up, 3)'"
        )

    def peek(self) -> tuple[str, str, str | None] | None:
        return self.toks[self.p] if self.p < len(self.toks) else None

    def take(
        self, kind: str, text: str | None = None, what: str = ""
    ) -> tuple[str, str, str | None]:
        t = self.peek()
        if t is None or t[0] != kind or (text is not None and t[1] != text):
            raise self.fail(what or (repr(text) if text else kind))
        self.p += 1
        return t

    def number(self, what: str = "a number") -> float:
        sign = 1.0
        t = self.peek()
        if t is not None and t == ("op", "-", None):
            self.p += 1
            sign = -1.0
        tok = self.take("num", what=what)
        if tok[2] is not None:
            raise self.fail(what)
        return sign * float(tok[1])

    def duration(self) -> float:
        tok = self.take("num", what="a window such as 5m")
        if tok[2] is None:
            raise ValueError(f"rule expression {self.text!r}: give the window a unit, e.g. "
                             f"{tok[1]}s or {tok[1]}m")
        seconds = parse_duration(tok[1] + tok[2])
        if seconds <= 0:
            raise ValueError(f"rule expression {self.text!r}: a window must be longer than 0")
        return seconds

    def metric(self) -> str:
        return self.take("name", what="a metric name")[1]

    def cmp_op(self) -> str:
        t = self.peek()
        if t is None or t[0] != "op" or t[1] not in _CMP:
            raise self.fail("a comparison (> >= < <= == !=)")
        self.p += 1
        return t[1]

    def parse(self) -> Expr:
        if not self.toks:
            raise ValueError("a rule expression must not be empty")
        first = self.peek()
        assert first is not None
        if first == ("name", "down", None) and len(self.toks) == 1:
            return Expr(fn="latest", metric="up", op="==", threshold=0.0, text=self.text)
        name = self.take("name", what="a metric or a function")[1]
        fields: dict[str, object] = {}
        nxt = self.peek()
        if nxt != ("op", "(", None):
            fn = "latest"
            fields["metric"] = name
        else:
            fn = "mean" if name == "avg" else name
            if name not in FUNCTIONS:
                raise ValueError(f"rule expression {self.text!r}: unknown function {name!r} "
                                 f"(functions: {', '.join(FUNCTIONS)})")
            self.take("op", "(")
            if fn in _WINDOWED:
                fields["metric"] = self.metric()
                self.take("op", ",")
                fields["window"] = self.duration()
            elif fn == "quantile":
                q = self.number("a quantile between 0 and 1")
                if not 0.0 <= q <= 1.0:
                    raise ValueError(f"rule expression {self.text!r}: quantile {q:g} is "
                                     "outside 0..1 (write 0.95 for p95)")
                fields["q"] = q
                self.take("op", ",")
                fields["metric"] = self.metric()
                self.take("op", ",")
                fields["window"] = self.duration()
            elif fn == "count":
                fields["metric"] = self.metric()
                fields["match_op"] = self.cmp_op()
                fields["match_value"] = self.number()
                self.take("op", ",")
                fields["window"] = self.duration()
            elif fn == "ratio":
                fields["metric"] = self.metric()
                self.take("op", ",")
                fields["metric2"] = self.metric()
                if self.peek() == ("op", ",", None):
                    self.p += 1
                    fields["window"] = self.duration()
            else:  # absent
                fields["metric"] = self.metric()
                n = 3.0
                if self.peek() == ("op", ",", None):
                    self.p += 1
                    n = self.number("a number of intervals")
                if n < 1 or n != int(n):
                    raise ValueError(f"rule expression {self.text!r}: absent() needs a whole "
                                     "number of intervals, at least 1")
                fields["intervals"] = int(n)
            self.take("op", ")")
        if fn == "absent":
            if self.peek() is not None:
                raise self.fail("the end (absent() is a whole condition)")
            return Expr(fn=fn, text=self.text, **fields)  # type: ignore[arg-type]
        scale = 1.0
        while (t := self.peek()) is not None and t[0] == "op" and t[1] in ("*", "/"):
            self.p += 1
            k = self.number("a number to scale by")
            if t[1] == "/" and k == 0:
                raise ValueError(f"rule expression {self.text!r}: division by zero")
            scale = scale * k if t[1] == "*" else scale / k
        op = self.cmp_op()
        threshold = self.number("a threshold number")
        if self.peek() is not None:
            raise self.fail("the end of the expression")
        return Expr(fn=fn, op=op, threshold=threshold, scale=scale, text=self.text,
                    **fields)  # type: ignore[arg-type]


def parse_expr(text: str) -> Expr:
    """Parse a rule condition; raises ValueError with a message fit for `opsconsole validate`."""
    return _Parser(text.strip()).parse()


# -- matchers (silences, maintenance windows) ---------------------------------------------------

_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


@dataclass(frozen=True, slots=True)
class Matcher:
    """An Alertmanager-style label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`."""

    name: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        hit = re.fullmatch(self.value, got) is not None
        return hit if self.op == "=~" else not hit


def parse_matcher(text: str) -> Matcher:
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a matcher; write e.g. service=\"app\" or "
                         "severity=~\"P[23]\"")
    name, op, value = m.groups()
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: bad regular expression ({exc})") from None
    return Matcher(name, op, value)


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
    kinds: list[Literal["http", "postgres", "redis", "prometheus", "log", "host"]] = Field(
        default_factory=list)
    for_: Duration = Field(0.0, alias="for", ge=0, le=7 * 86400)
    keep_firing_for: Duration = Field(0.0, ge=0, le=7 * 86400)
    failure_threshold: int = Field(3, ge=1, le=1000)
    success_threshold: int = Field(2, ge=1, le=1000)
    nodata_intervals: int = Field(3, ge=1, le=1000)
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str = ""
    runbook: str = ""
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
    digest_severities: list[Severity] = Field(default_factory=lambda: ["P3"])
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
        from .settings import ENV_REF

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
        from .settings import ENV_REF  # local: settings imports this module

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


# -- evaluation ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """What rule selection and staleness need to know about a target."""

    name: str
    kind: str
    interval: float
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One rule on one target at one instant; `sample_t` is the newest sample it read."""

    rule: Rule
    target: str
    state: EvalState
    value: float | None
    sample_t: float | None
    at: float
    detail: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.rule.name, self.target)

    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def selects(rule: Rule, target: TargetInfo) -> bool:
    if rule.kinds and target.kind not in rule.kinds:
        return False
    return not rule.targets or any(fnmatch.fnmatchcase(target.name, p) for p in rule.targets)


def labels_for(rule: Rule, target: TargetInfo) -> dict[str, str]:
    labels = {"service": target.group or target.name}
    labels.update(rule.labels)
    labels.update({"rule": rule.name, "target": target.name, "severity": rule.severity})
    return labels


def _fmt(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "no data"
    return f"{v:.4g}"


def evaluate_expr(
    expr: Expr, store: MetricStore, target: TargetInfo, now: float, nodata_intervals: int = 3
) -> tuple[EvalState, float | None, float | None, str]:
    """(state, value, newest sample time, human detail) of one condition on one target."""
    series = f"{target.name}:{expr.metric}"
    latest = store.latest(series)
    sample_t = latest[0] if latest is not None else None
    if expr.fn == "absent":
        age = None if latest is None else now - latest[0]
        limit = expr.intervals * target.interval if expr.intervals else 0.0
        missing = age is None or age > limit
        detail = (f"{expr.metric}: no sample ever" if age is None
                  else f"{expr.metric}: last sample {format_duration(max(age, 0.0))} ago")
        # One observation per interval however often rules run, so absent()'s consecutive
        # count means intervals, not evaluation rounds.
        slot = math.floor(now / target.interval) * target.interval if target.interval else now
        return ("fail" if missing else "ok"), age, slot, detail

    stale_after = nodata_intervals * target.interval
    if latest is None:
        return "nodata", None, None, f"{expr.metric}: no such series yet"
    if now - latest[0] > stale_after:
        return "nodata", None, sample_t, (
            f"{expr.metric}: last sample {format_duration(now - latest[0])} ago")

    value: float | None
    what = expr.metric
    fn = expr.fn
    if fn == "latest":
        value = latest[1]
    elif fn == "mean":
        value = store.mean(series, expr.window or 0.0, now=now)
        what = f"mean({expr.metric}, {format_duration(expr.window or 0)})"
    elif fn in ("max", "min", "sum"):
        _, v = store.values(series, expr.window or 0.0, now=now)
        v = v[~np.isnan(v)]
        value = None if len(v) == 0 else float({"max": v.max, "min": v.min, "sum": v.sum}[fn]())
        what = f"{fn}({expr.metric}, {format_duration(expr.window or 0)})"
    elif fn in ("rate", "increase"):
        r = store.rate(series, expr.window or 0.0, now=now)
        value = r
        if r is not None and fn == "increase":
            # Like Prometheus, extrapolate past the first and last samples by at most one
            # step, never to the whole window: three samples in 20 s are not a minute's worth.
            t, _ = store.values(series, expr.window or 0.0, now=now)
            span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
            step = span / (len(t) - 1) if len(t) > 1 else 0.0
            value = r * min(expr.window or 0.0, span + step)
        what = f"{fn}({expr.metric}, {format_duration(expr.window or 0)})"
    elif fn == "quantile":
        qs = store.quantiles(series, expr.window or 0.0, (expr.q or 0.0,), now=now)
        value = None if not qs else qs[expr.q or 0.0]
        what = f"p{(expr.q or 0) * 100:g}({expr.metric}, {format_duration(expr.window or 0)})"
    elif fn == "count":
        _, v = store.values(series, expr.window or 0.0, now=now)
        v = v[~np.isnan(v)]
        if len(v) == 0:
            value = None
        else:
            value = float(sum(compare(float(x), expr.match_op or "==", expr.match_value or 0.0)
                              for x in v))
        what = (f"count({expr.metric} {expr.match_op} {expr.match_value:g}, "
                f"{format_duration(expr.window or 0)})")
    else:  # ratio
        series2 = f"{target.name}:{expr.metric2}"
        if expr.window is None:
            l2 = store.latest(series2)
            if l2 is None or now - l2[0] > stale_after:
                return "nodata", None, sample_t, f"{expr.metric2}: no recent sample"
            value = None if l2[1] == 0 or math.isnan(l2[1]) else latest[1] / l2[1]
        else:
            a = store.rate(series, expr.window, now=now)
            b = store.rate(series2, expr.window, now=now)
            value = None if a is None or b is None or b == 0 else a / b
        what = f"ratio({expr.metric}, {expr.metric2})"
    if value is None or math.isnan(value):
        return "nodata", None, sample_t, f"{what}: no data in the window"
    value = value * expr.scale
    ok = not compare(value, expr.op, expr.threshold)
    sign = "not " if ok else ""
    return ("ok" if ok else "fail"), value, sample_t, (
        f"{what} = {_fmt(value)} ({sign}{expr.op} {expr.threshold:g})")


class RuleSet:
    """Compiled rules plus the targets they may apply to; evaluates them against a store."""

    def __init__(self, rules: Iterable[Rule], targets: Iterable[TargetInfo]) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.targets = list(targets)
        self._exprs = {r.name: parse_expr(r.expr) for r in self.rules}
        # Which rules may apply to which target is fixed for a RuleSet (a reload builds a new
        # one), so it is worked out once here, not per result: a result of one target then
        # costs its own rules, not a scan of every rule against every target.
        self._selected: dict[str, list[tuple[Rule, TargetInfo, Expr]]] = {
            t.name: [] for t in self.targets}
        self._has: dict[str, bool] = {}  # store.has() answers, valid for one generation
        self._generation = -1
        for rule in self.rules:
            expr = self._exprs[rule.name]
            for t in self.targets:
                if selects(rule, t):
                    self._selected[t.name].append((rule, t, expr))

    @classmethod
    def from_settings(cls, settings: object) -> RuleSet:
        """Rules of a Settings: the config's own, plus the shipped defaults unless disabled."""
        rules: list[Rule] = list(getattr(settings, "rules", []))
        alerting = getattr(settings, "alerting", None)
        if alerting is None or alerting.default_rules:
            own = {r.name for r in rules}
            rules = [r for r in default_rules() if r.name not in own] + rules
        targets = [TargetInfo(t.name, t.kind, t.interval, t.group)
                   for t in getattr(settings, "targets", [])]
        return cls(rules, targets)

    def expr(self, rule: Rule) -> Expr:
        return self._exprs[rule.name]

    def pairs(self, store: MetricStore, target: str | None = None
              ) -> list[tuple[Rule, TargetInfo]]:
        """(rule, target) pairs that apply now.

        A rule that names its targets (or kinds) applies to each of them whatever the store
        holds, so a missing series shows as "nodata". A rule that names none applies only to
        targets that have reported its metric: a playbook rule on `cpu_pct` stays quiet on a
        target that never reports CPU (see `unmatched()` for such rules).
        """
        if target is None:
            # every target, in rule order (as listed by `opsconsole alerts`)
            order = {r.name: i for i, r in enumerate(self.rules)}
            chosen = sorted((x for v in self._selected.values() for x in v),
                            key=lambda x: order[x[0].name])
        else:
            chosen = self._selected.get(target, [])
        # Which series exist changes only when the store's generation does, so the answer
        # is kept until then instead of asked of the store (under its lock) every time.
        if store.generation != self._generation:
            self._generation = store.generation
            self._has.clear()
        has = self._has
        out = []
        for rule, t, expr in chosen:
            if not (rule.explicit or expr.fn == "absent"):
                series = f"{t.name}:{expr.metric}"
                there = has.get(series)
                if there is None:
                    there = has[series] = store.has(series)
                if not there:
                    continue
            out.append((rule, t))
        return out

    def unmatched(self, store: MetricStore) -> list[Rule]:
        """Rules that apply to no target yet (their metric does not exist anywhere)."""
        used = {r.name for r, _ in self.pairs(store)}
        return [r for r in self.rules if r.name not in used]

    def evaluate(
        self, store: MetricStore, now: float, *, target: str | None = None,
        skip: Container[str] = (),
    ) -> list[Evaluation]:
        """Every applicable (rule, target) pair, or one target's; `skip` names targets to
        leave out (the periodic tick skips those a check result evaluated moments ago)."""
        out = []
        for rule, t in self.pairs(store, target):
            if t.name in skip:
                continue
            state, value, sample_t, detail = evaluate_expr(
                self._exprs[rule.name], store, t, now, rule.nodata_intervals)
            out.append(Evaluation(rule, t.name, state, value, sample_t, now, detail,
                                  tuple(sorted(labels_for(rule, t).items()))))
        return out
