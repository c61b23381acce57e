"""Health conditions: parsing (readable config errors), evaluation semantics, never raising."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from console.engine.config.schema import HttpTarget
from console.engine.lang.conditions import CheckContext, parse_condition

BODY = {
    "status": "ok",
    "info": {"database": {"status": "up"}, "redis": {"status": "down"}},
    "checks": [{"name": "db", "ok": True, "ms": 12.5}, {"name": "cache", "ok": False}],
    "count": 3,
    "ratio": 0.25,
    "flag": True,
    "none": None,
    "a.b": "dotted key",
    "version": "1.4.2",
}


def ctx(body: Any = BODY, **kw: Any) -> CheckContext:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    kw.setdefault("latency_ms", 120.0)
    kw.setdefault("status_code", 200)
    kw.setdefault("headers", {"Content-Type": "application/json", "X-Version": "2.0"})
    return CheckContext(body=raw, **kw)


def check(text: str, c: CheckContext | None = None) -> tuple[bool, str]:
    cond = parse_condition(text)
    c = c or ctx()
    ok, desc = cond.evaluate(c)
    assert cond.holds(c) is ok, "the fast path must agree with evaluate()"
    return ok, desc


# -- evaluation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok", "desc"),
    [
        ('body.status == "ok"', True, 'body.status is "ok"'),
        ("body.status == ok", True, 'body.status is "ok"'),  # bare word
        ('body.info.redis.status == "up"', False,
         'body.info.redis.status is "down", expected == "up"'),
        ('body.info.redis.status != "up"', True, 'body.info.redis.status is "down"'),
        ('body.info.kafka.status == "up"', False,
         'body.info.kafka.status is missing (body.info has no key "kafka"), expected == "up"'),
        ("body.info.kafka missing", True, "body.info.kafka is missing"),
        ("body.info.kafka.status missing", True, "body.info.kafka.status is missing"),
        ("body.info.database exists", True, 'body.info.database exists ({"status":"up"})'),
        ("body.checks[0].ok == true", True, "body.checks[0].ok is true"),
        ("body.checks[-1].ok == false", True, "body.checks[-1].ok is false"),
        ("body.checks[5] exists", False,
         "body.checks[5] is missing (body.checks has 2 items), expected to exist"),
        ("body.checks.name == db", False,
         'body.checks.name is missing (body.checks is a list, not an object), expected == "db"'),
        ("body.checks[0].ms < 20", True, "body.checks[0].ms is 12.5"),
        ("body.count >= 3", True, "body.count is 3"),
        ("body.count > 3", False, "body.count is 3, expected > 3"),
        ("body.ratio <= 0.25", True, "body.ratio is 0.25"),
        ("body.count == 3.0", True, "body.count is 3"),  # JSON numbers: 3 == 3.0
        ("body.flag == 1", False, "body.flag is true, expected == 1"),  # true is not 1
        ("body.count == true", False, "body.count is 3, expected == true"),
        ("body.none == null", True, "body.none is null"),
        ('body["a.b"] == "dotted key"', True, 'body["a.b"] is "dotted key"'),
        ('body.version matches "^1\\\\.4"', True, 'body.version is "1.4.2"'),
        ('body.version matches "^2"', False, 'body.version is "1.4.2", expected to match "^2"'),
        ('body.status < "zzz"', True, 'body.status is "ok"'),
        ("body.status < 5", False, 'body.status is "ok", not comparable with < 5'),
        ('body.checks contains {"name":"cache","ok":false}', True,
         'body.checks is [{"name":"db","ok":true,"ms":12.5},{"name":"cache","ok":false}]'),
        ('body.info contains "redis"', True,
         'body.info is {"database":{"status":"up"},"redis":{"status":"down"}}'),
        ('body.count contains "3"', False, 'body.count is 3, a number cannot contain "3"'),
        ('body contains "database"', True, "body is 265 chars"),
        ('body contains "kafka"', False, 'body is 265 chars, expected to contain "kafka"'),
        ('body matches "\\"status\\":\\\\s*\\"ok\\""', True, "body is 265 chars"),
        ("status == 200", True, "status is 200"),
        ("status < 400", True, "status is 200"),
        ("latency < 300ms", True, "latency is 120ms"),
        ("latency < 0.1s", False, "latency is 120ms, expected < 100ms"),
        ("size < 1KB", True, "size is 265 bytes"),
        ("size > 1MB", False, "size is 265 bytes, expected > 1000000 bytes"),
        ('header.content-type contains "json"', True, 'header.content-type is "application/json"'),
        ('header.Content-Type == "application/json"', True,
         'header.content-type is "application/json"'),
        ("header.x-missing exists", False, "header.x-missing is missing, expected to exist"),
        ("header.x-missing missing", True, "header.x-missing is missing"),
        ('header.x-version == "2.0"', True, 'header.x-version is "2.0"'),
    ],
)
def test_evaluate(text: str, ok: bool, desc: str) -> None:
    assert check(text) == (ok, desc)


def test_non_json_and_empty_bodies_fail_clearly_for_every_body_path_operator() -> None:
    html = ctx(b"<html><body>502 Bad Gateway</body></html>")
    empty = ctx(b"")
    for op in ('== "ok"', "exists", "missing", "< 3", 'contains "x"', 'matches "x"'):
        ok, desc = check(f"body.status {op}", html)
        assert (ok, desc) == (
            False, "body.status: body is not JSON (unexpected character, expected a JSON value)")
        ok, desc = check(f"body.status {op}", empty)
        assert (ok, desc) == (False, "body.status: body is empty, not JSON")
    assert check('body contains "Bad Gateway"', html) == (True, "body is 41 chars")


def test_truncated_body_says_so() -> None:
    c = CheckContext(latency_ms=1, status_code=200, body=b'{"status": "o', truncated=True)
    assert check('body.status == "ok"', c) == (
        False, "body.status: body is not JSON (unexpected end of data, truncated at 13 bytes)")


def test_no_response_means_status_and_latency_fail_without_raising() -> None:
    c = CheckContext(latency_ms=None, status_code=None)
    assert check("status == 200", c) == (False, "status: no response")
    assert check("latency < 1s", c) == (False, "latency: no measurement")
    assert check("size == 0", c) == (True, "size is 0 bytes")


def test_size_uses_the_declared_count_when_given() -> None:
    c = CheckContext(latency_ms=1, status_code=200, body=b"x" * 10, body_bytes=5_000_000,
                     truncated=True)
    assert check("size > 1MB", c) == (True, "size is 5000000 bytes")


def test_remote_values_in_descriptions_are_sanitised_and_bounded() -> None:
    nasty = {"status": "\x1b]52;c;cHduZWQ=\x07\x1b[2J[red]x[/]\u202e" + "y" * 500}
    ok, desc = check('body.status == "ok"', ctx(nasty))
    assert not ok
    for bad in ("\x1b", "\x07", "\u202e"):
        assert bad not in desc
    assert "[red]x[/]" in desc  # markup stays literal text, for a markup-free renderer
    assert len(desc) < 160


def test_header_context_accepts_httpx_headers() -> None:
    import httpx

    c = CheckContext(latency_ms=1, status_code=200,
                     headers=httpx.Headers([(b"X-Multi", b"a"), (b"X-Multi", b"b")]))
    assert check('header.x-multi == "a, b"', c) == (True, 'header.x-multi is "a, b"')


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty condition"),
        ("   ", "empty condition"),
        ("foo == 1", "'foo' is not something a condition can test; start with latency"),
        ("bodyx == 1", "'bodyx' is not something a condition can test"),
        ('body.status = "ok"', "expected an operator after body.status"),
        ("body.status", "expected an operator after body.status"),
        ('body.status == "ok', "unterminated or invalid string"),
        ("body.status == ok ok", "cannot read the value 'ok ok'; quote text values"),
        ("body.status ==", "== needs a value on its right"),
        ("latency < 300", "latency needs a unit: write e.g. 300ms or 300s"),
        ("latency < soon", "'soon' is not a duration"),
        ("latency exists", "latency always exists"),
        ("status == ok", "status is a number"),
        ('status < "a"', "status < needs a number"),
        ("size < lots", "'lots' is not a size"),
        ('body.x matches "("', "invalid regular expression '('"),
        ("body.x matches 3", "matches needs a quoted regular expression"),
        ("body.x exists now", "exists takes no value"),
        ("body > 3", "the whole body can be tested with contains, matches, == or !="),
        ("body.x == {bad", "{bad is not valid JSON"),
        ("header. exists", "'header.' is not something a condition can test"),
    ],
)
def test_parse_errors_are_readable(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_condition(text)


def test_parse_keeps_the_text_and_structure() -> None:
    c = parse_condition('  body.info["redis cache"][0].status  ==  "up" ')
    assert c.text == 'body.info["redis cache"][0].status  ==  "up"'
    assert c.path == ("info", "redis cache", 0, "status")
    assert c.label == 'body.info["redis cache"][0].status'
    assert (c.op, c.value) == ("==", "up")
    assert c.needs_json
    assert parse_condition("latency<2s").value == 2000.0
    assert not parse_condition("latency<2s").needs_json


def test_settings_reject_bad_conditions_with_the_parser_message() -> None:
    with pytest.raises(ValidationError) as err:
        HttpTarget(name="x", url="http://127.0.0.1/", down_unless=["latency < 300"])
    assert "latency needs a unit" in str(err.value)
    t = HttpTarget(name="x", url="http://127.0.0.1/",
                   down_unless=['body.status == "ok"'], degraded_unless=["latency < 300ms"])
    assert t.degraded_unless == ["latency < 300ms"]


# -- never raises --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["status", "info", "a", "0", "x y"]), children, max_size=4),
    max_leaves=20,
)
conditions = st.sampled_from([
    'body.status == "ok"', "body.info.a.status != null", "body.a[0] exists", "body.a[-1] missing",
    'body.a contains "x"', 'body.status matches "o+"', "body.info > 3", 'body.info <= "m"',
    'body["x y"][2] == true', "size < 10", "latency >= 5ms", "status != 500",
    'body contains "status"', 'header.x matches "."', "body.0 == 1",
])


@settings(max_examples=300, deadline=None)
@given(value=json_values, text=conditions, raw=st.binary(max_size=40),
       use_raw=st.booleans())
def test_evaluate_never_raises_and_holds_agrees(value: Any, text: str, raw: bytes,
                                                use_raw: bool) -> None:
    body = raw if use_raw else json.dumps(value).encode()
    c = CheckContext(latency_ms=10, status_code=200, headers={"x": "y"}, body=body)
    cond = parse_condition(text)
    ok, desc = cond.evaluate(c)
    assert isinstance(desc, str)
    assert desc
    assert cond.holds(c) is ok


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_parse_raises_only_value_error(text: str) -> None:
    try:
        cond = parse_condition(text)
    except ValueError as exc:
        message = str(exc)
    else:
        message = cond.evaluate(ctx())[1]
    assert message
