"""`check --once` of HTTP TARGET URLs without pydantic (bench/bench_cli.py).

pydantic's import and the build of the config's models are ~100 ms: half of what a one-shot
check of a URL should take in all, against the script a user would write instead. The
scheduler and the HTTP probe read a target's fields as attributes and use the models only as
types, so a TARGET given on the command line can be checked as a plain object with the same
fields and defaults as `HttpTarget` (tests/test_cli_plaincheck.py holds the two equal, field
by field, and the output of both paths the same). Anything the plain path is not sure of
goes to `settings_from_targets`, which validates it as for any config and words the error.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from console.cli.check import target_fields
from console.engine.lang.durations import parse_duration

if TYPE_CHECKING:
    from console.engine.config.schema import Settings

_HTTP_URL = re.compile(r"^https?://[^\s/]+", re.IGNORECASE)  # HttpTarget's own check


@dataclass(frozen=True, slots=True)
class PlainHttpTarget:
    """An HTTP TARGET as `HttpTarget` would validate it: its fields, its defaults."""

    name: str
    url: str
    interval: float = 10.0
    timeout: float = 5.0
    insecure: bool = False
    slow: float | None = None
    kind: str = "http"
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    description: str = ""
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    expect_status: list[int | str] = field(default_factory=lambda: ["2xx", "3xx"])
    keyword: str | None = None
    keyword_absent: str | None = None
    down_unless: list[str] = field(default_factory=list)
    degraded_unless: list[str] = field(default_factory=list)
    follow_redirects: bool = True
    max_redirects: int = 5
    ca_file: str | None = None
    max_body: int = 1_000_000
    core_components: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _PlainConsole:
    playbook_dashboards: bool = False  # a one-shot check shows no dashboards


@dataclass(frozen=True, slots=True)
class PlainChecks:
    """What the scheduler reads of a config for a one-shot check (`keep_metrics=False`):
    its targets; no panels, no dashboards."""

    targets: list[PlainHttpTarget]
    panels: tuple[()] = ()
    dashboards: tuple[()] = ()
    console: _PlainConsole = field(default_factory=_PlainConsole)


def plain_checks(args: argparse.Namespace) -> Settings | None:
    """`check --once` of HTTP TARGETs without pydantic: the targets as `PlainHttpTarget`s
    when every URL and flag is one `HttpTarget` accepts as it is; None otherwise (another
    kind, or a value to reject), for `settings_from_targets` to validate and to word the
    error as for any config."""
    fields = target_fields(args)
    try:
        timeout = parse_duration(args.timeout)
        interval = parse_duration(args.interval)
        slow = parse_duration(args.slow) if args.slow else None
    except ValueError:
        return None
    if not (0 < timeout <= 300 and 0.2 <= interval <= 86400):  # TargetBase's bounds
        return None
    targets = []
    for t in fields:
        url = t.get("url", "")
        if (t["kind"] != "http" or url != url.strip()
                or not _HTTP_URL.match(url)):
            return None
        targets.append(PlainHttpTarget(name=t["name"], url=url, interval=interval,
                                       timeout=timeout, insecure=bool(args.insecure),
                                       slow=slow))
    # the scheduler reads `targets`, `panels`, `dashboards` and `console` of a config
    return cast("Settings", PlainChecks(targets=targets))
