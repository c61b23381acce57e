"""Health bodies as components: terminus, Spring Boot actuator, IETF health+json, plain."""

from __future__ import annotations

from typing import Any

import pytest

from console.engine.probes.health import parse_health
from tests.faultservers import terminus


def test_terminus_failing_indicator_comes_from_details_and_error_with_its_message() -> None:
    body = terminus(messages={"redis": "connect ECONNREFUSED 10.0.3.7:6379"},
                    database="up", redis="down", stripe="up")
    h = parse_health(body)
    assert h is not None
    assert h.format == "terminus"
    assert h.failing_status
    assert [c.name for c in h.components] == ["database", "redis", "stripe"]
    assert h.reasons() == ["redis: down — connect ECONNREFUSED 10.0.3.7:6379"]


def test_terminus_without_details_still_reads_error_and_info() -> None:
    body = {"status": "error", "info": {"database": {"status": "up"}},
            "error": {"redis": {"status": "down", "error": "ETIMEDOUT"}}}
    h = parse_health(body)
    assert h is not None
    assert h.reasons() == ["redis: down — ETIMEDOUT"]


def test_terminus_all_up_has_no_reasons() -> None:
    h = parse_health(terminus(database="up", redis="up"))
    assert h is not None
    assert not h.failing_status
    assert h.reasons() == []


def test_spring_boot_actuator_nested_components() -> None:
    body: dict[str, Any] = {"status": "DOWN", "components": {
        "db": {"status": "DOWN", "details": {
            "error": "org.springframework.jdbc.CannotGetJdbcConnectionException: Failed"}},
        "diskSpace": {"status": "UP", "details": {"free": 1}},
        "redis": {"status": "UP", "components": {
            "primary": {"status": "UP"}, "replica": {"status": "OUT_OF_SERVICE"}}},
    }}
    h = parse_health(body)
    assert h is not None
    assert h.format == "spring"
    assert h.reasons() == [
        "db: down — org.springframework.jdbc.CannotGetJdbcConnectionException: Failed",
        "redis/replica: out_of_service"]


def test_ietf_health_json_checks() -> None:
    body = {"status": "fail", "checks": {
        "postgres:responseTime": [{"componentId": "pg-1", "status": "pass"}],
        "redis:connections": [{"status": "fail", "output": "connection refused"}],
    }}
    h = parse_health(body)
    assert h is not None
    assert h.format == "ietf"
    assert h.reasons() == ["redis:connections: fail — connection refused"]


def test_plain_error_body_gives_its_message() -> None:
    h = parse_health({"status": "error", "error": "idempotency store (redis) unreachable"})
    assert h is not None
    assert h.format == "plain"
    assert h.reasons() == ["health error: idempotency store (redis) unreachable"]


@pytest.mark.parametrize("doc", [None, [], "ok", {"status": 1}, {"name": "x"},
                                 {"status": "maybe"}])
def test_other_documents_are_not_health_bodies(doc: Any) -> None:
    assert parse_health(doc) is None


def test_hostile_component_text_is_one_safe_line() -> None:
    body = {"status": "error", "details": {"re\x1b[2Jdis": {
        "status": "down", "message": "x\n\x1b]52;c;AAAA\x07y" + "z" * 500}}}
    h = parse_health(body)
    assert h is not None
    (reason,) = h.reasons()
    assert "\x1b" not in reason
    assert "\n" not in reason
    assert len(reason) < 300
