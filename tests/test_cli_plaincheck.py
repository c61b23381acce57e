"""`check --once URL` without pydantic (console/cli/plaincheck.py) is the same check as with
the config's models: the same fields and defaults, the same output, the same errors."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import socket
from typing import Any

import pytest

from console.cli.check import _check, add_target_flags, settings_from_targets
from console.cli.plaincheck import PlainHttpTarget, plain_checks
from console.engine.config.schema import HttpTarget

# what differs from one check to the next of the same server
_TIMINGS = {"latency_ms", "checked_at", "since", "p95_ms"}
_TIMING_METRICS = {"latency_ms", "ttfb_ms", "connect_ms", "tls_ms", "dns_ms"}


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_target_flags(p)
    return p.parse_args(argv)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/health"


def test_the_plain_target_has_every_field_of_the_model_with_its_default() -> None:
    plain = {f.name: f for f in dataclasses.fields(PlainHttpTarget)}
    assert set(plain) == set(HttpTarget.model_fields)
    for name, info in HttpTarget.model_fields.items():
        f = plain[name]
        if info.is_required():
            assert f.default is dataclasses.MISSING, name
            continue
        model_default = info.get_default(call_default_factory=True)
        plain_default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                         else f.default)
        assert plain_default == model_default, name


@pytest.mark.parametrize("argv", [
    ["http://127.0.0.1:8080/health"],
    ["https://example.test/api/v1/status", "--insecure", "--slow", "300ms"],
    ["http://bob:pa ss@127.0.0.1:9/x", "http://127.0.0.1:9/x", "--timeout", "750ms",
     "--interval", "1m"],
])
def test_plain_targets_are_what_the_model_validates(argv: list[str]) -> None:
    args = _args(*argv)
    plain = plain_checks(args)
    assert plain is not None
    models = settings_from_targets(args).targets
    assert len(plain.targets) == len(models)
    for p, m in zip(plain.targets, models, strict=True):
        assert dataclasses.asdict(p) == m.model_dump()  # type: ignore[call-overload]


@pytest.mark.parametrize("argv", [
    ["http://127.0.0.1:8080/", "--timeout", "0s"],      # out of TargetBase's bounds
    ["http://127.0.0.1:8080/", "--interval", "50ms"],
    ["http://127.0.0.1:8080/", "--slow", "soon"],       # not a duration
    ["http:///no-host"],                                 # no host
    ["http://127.0.0.1:8080/", "redis://127.0.0.1:6379"],  # another kind beside
])
def test_what_the_plain_path_is_not_sure_of_goes_to_the_models(argv: list[str]) -> None:
    assert plain_checks(_args(*argv)) is None


def _run(settings: Any, capfd: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    rc = asyncio.run(_check(settings, once=True, as_json=True))
    out = json.loads(capfd.readouterr().out)
    for item in out:
        for k in _TIMINGS:
            item.pop(k)
        for k in _TIMING_METRICS:
            item["metrics"].pop(k, None)
        item["reasons"] = [re.sub(r"latency \d+ms", "latency Nms", r) for r in item["reasons"]]
    return rc, out


def test_both_paths_print_the_same_check(http_url: str, capfd: pytest.CaptureFixture[str]
                                         ) -> None:
    args = _args(f"{http_url}/health", f"{http_url}/broken", f"{http_url}/slow", _dead_url(),
                 "--slow", "200ms", "--timeout", "2s")
    plain = plain_checks(args)
    assert plain is not None
    rc_plain, out_plain = _run(plain, capfd)
    rc_model, out_model = _run(settings_from_targets(args), capfd)
    assert rc_plain == rc_model == 1
    assert [d["status"] for d in out_plain] == ["up", "down", "degraded", "down"]
    assert out_plain == out_model
