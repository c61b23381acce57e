"""The HTTP probe against real local servers: faults, deadlines, isolation, TLS, secrets, leaks.

Every server is a real asyncio server on 127.0.0.1 (tests/faultservers.py): nothing below the
socket is mocked. The only stand-in is DNS (an injected getaddrinfo behind the real resolver
and thread pool), because a black-holed or NXDOMAIN name cannot be produced without sending
packets off the machine.

Deadline contract: a check returns within timeout + 0.1 s. Assertions allow timeout +
MARGIN to stay green on a loaded 2-core CI machine; the measured overshoot is printed
(`pytest -s`) so a regression towards the margin is visible.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import time
from typing import Any

import psutil
import pytest

from console.engine.config.schema import HttpTarget
from console.engine.model import CheckResult, Status
from console.engine.probes.http import HttpProbe
from console.engine.probes.http_client import DedicatedResolver, HttpClients
from tests.faultservers import (
    ESCAPE_BODY,
    FaultServer,
    RecordedRequest,
    Route,
    drip_server,
    escape_server,
    garbage_server,
    hang_server,
    http_server,
    huge_body_server,
    json_server,
    malformed_json_server,
    one_request_per_connection_server,
    redirect_chain_server,
    redirect_loop_server,
    reset_server,
    terminus,
    tls_server,
)

CONTRACT = 0.1  # the probe's promise: timeout + 0.1 s at most
MARGIN = 0.35  # what the assertions allow on a loaded CI machine
FAULT_TIMEOUT = 0.5


def target(url: str, **kw: Any) -> HttpTarget:
    kw.setdefault("timeout", 2.0)
    return HttpTarget(name="http-test", url=url, **kw)


async def timed_check(probe: HttpProbe) -> tuple[CheckResult, float]:
    t0 = time.perf_counter()
    result = await probe.check()
    return result, time.perf_counter() - t0


def assert_deadline(elapsed: float, timeout: float, label: str) -> None:
    overshoot = elapsed - timeout
    print(f"[deadline] {label}: elapsed {elapsed * 1000:.0f} ms, "
          f"overshoot {overshoot * 1000:+.0f} ms (contract +{CONTRACT * 1000:.0f} ms)")
    assert elapsed >= timeout - 0.02, f"{label} returned before its deadline"
    assert elapsed < timeout + MARGIN, f"{label}: {elapsed:.3f}s exceeds {timeout}+{MARGIN}s"


def all_text(result: CheckResult) -> str:
    """Every text field of a result, as a consumer would show or store it."""
    parts = [result.error or "", *result.reasons, repr(result.to_json())]
    if result.response:
        r = result.response
        parts += [r.reason, r.body_excerpt, r.final_url, r.http_version]
        parts += [f"{k}: {v}" for k, v in r.headers]
    return "\n".join(parts)


def client_sockets_to(port: int) -> list[Any]:
    return [c for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# -- healthy ---------------------------------------------------------------------------------


async def test_healthy_terminus_endpoint_is_up_with_metrics_and_response(
    clients: HttpClients,
) -> None:
    async with json_server() as srv:
        probe = HttpProbe(target(srv.url("/health"), down_unless=['body.status == "ok"'],
                                 degraded_unless=['body.info.database.status == "up"']), clients)
        r1, _ = await timed_check(probe)
        r2, _ = await timed_check(probe)  # second check reuses the pooled connection
    for r in (r1, r2):
        assert r.status is Status.UP, r
        assert r.error is None
        assert r.reasons == ()
        assert r.kind == "http"
        assert set(r.metrics) == {"latency_ms", "status_code", "body_bytes", "ttfb_ms",
                                  "components_down", "core_components_down",
                                  "other_components_down"}
        assert r.metrics["components_down"] == r.metrics["core_components_down"] == 0
        assert r.details["health"]["format"] == "terminus"
        assert r.metrics["status_code"] == 200
        assert 0 < r.metrics["ttfb_ms"] <= r.metrics["latency_ms"] == r.latency_ms
        assert r.response is not None
        assert r.response.status_code == 200
        assert r.response.reason == "OK"
        assert r.response.http_version == "HTTP/1.1"
        assert ("Content-Type", "application/json") in r.response.headers
        assert json.loads(r.response.body_excerpt) == terminus(database="up", redis="up")
        assert r.response.body_bytes == r.metrics["body_bytes"] > 0
        assert not r.response.truncated
        assert r.response.final_url.endswith("/health")
    assert srv.accepted == 1, "keep-alive: the second check should reuse the connection"
    assert srv.requests[0].headers["user-agent"].startswith("opsconsole/")


async def test_localhost_resolves_through_the_dedicated_resolver(clients: HttpClients) -> None:
    async with json_server() as srv:
        r, _ = await timed_check(HttpProbe(target(srv.url("/", host="localhost")), clients))
    assert r.status is Status.UP, r


async def test_head_reads_no_body(clients: HttpClients) -> None:
    async with json_server() as srv:
        r, _ = await timed_check(HttpProbe(target(srv.url(), method="HEAD"), clients))
    assert r.status is Status.UP
    assert srv.requests[0].method == "HEAD"
    assert r.metrics["body_bytes"] == 0


# -- faults that must hit the deadline -------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "scheme", "expected"),
    [
        (hang_server, "http", "timed out after 500ms (no response headers)"),
        # An https URL on the silent server: the TLS ClientHello is never answered.
        (hang_server, "https", "timed out after 500ms (no response headers)"),
        (lambda: drip_server(interval=1.0), "http", "timed out after 500ms (body incomplete)"),
        (lambda: drip_server(interval=0.2, headers_first=False), "http",
         "timed out after 500ms (no response headers)"),
        (lambda: http_server(Route(200, "late", delay=5)), "http",
         "timed out after 500ms (no response headers)"),
    ],
    ids=["accept-never-answer", "tls-handshake-never-answered", "headers-then-drip-1B/s",
         "status-line-dripped", "answers-after-5s"],
)
async def test_hanging_faults_are_down_at_the_deadline(
    clients: HttpClients, factory: Any, scheme: str, expected: str
) -> None:
    async with factory() as srv:
        url = srv.url("/health").replace("http://", f"{scheme}://")
        probe = HttpProbe(target(url, timeout=FAULT_TIMEOUT), clients)
        r, elapsed = await timed_check(probe)
        assert r.status is Status.DOWN
        assert r.error == expected
        assert_deadline(elapsed, FAULT_TIMEOUT, expected)
        assert r.latency_ms == pytest.approx(elapsed * 1000, abs=50)
        # The connection of a timed-out check is closed at once, not left to hang.
        await asyncio.sleep(0.05)
        assert client_sockets_to(srv.port) == [], "the probe kept its socket after the deadline"


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        (reset_server, "connection reset by peer"),
        (lambda: reset_server(after_request=True), "connection reset by peer"),
        (garbage_server, "malformed HTTP response: Bad status line (b'SSH-2.0-OpenSSH_9.2p1')"),
        (lambda: garbage_server(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"),
         "malformed HTTP response"),
        (lambda: garbage_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"),
         "response body incomplete"),
        (lambda: garbage_server(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"),
         "malformed HTTP response: Got more than 8190 bytes when reading"),
        (lambda: garbage_server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
         "malformed HTTP response: Invalid character in chunk size (b'zz')"),
        (lambda: garbage_server(b""), "server closed the connection without a response"),
    ],
    ids=["rst-on-accept", "rst-after-request", "not-http", "bad-header-line", "body-cut-short",
         "100KB-header", "bad-chunk", "closed-without-response"],
)
async def test_failing_faults_are_down_quickly(
    clients: HttpClients, factory: Any, expected: str
) -> None:
    async with factory() as srv:
        r, elapsed = await timed_check(HttpProbe(target(srv.url()), clients))
    assert r.status is Status.DOWN
    assert r.error is not None
    assert r.error.startswith(expected), r.error
    assert "\n" not in r.error
    assert elapsed < 1.0


async def test_connection_refused(clients: HttpClients) -> None:
    port = closed_port()
    r, elapsed = await timed_check(HttpProbe(target(f"http://127.0.0.1:{port}/"), clients))
    assert r.status is Status.DOWN
    assert r.error == f"connection refused (127.0.0.1:{port})"
    assert r.response is None
    assert elapsed < 1.0


# -- huge, malformed, compressed bodies ------------------------------------------------------


async def test_50mb_body_is_truncated_at_max_body_and_counted(clients: HttpClients) -> None:
    async with huge_body_server(50_000_000) as srv:
        probe = HttpProbe(target(srv.url(), max_body="1MB", keyword="never-there"), clients)
        r, elapsed = await timed_check(probe)
        assert await srv.wait_idle(2.0)
    assert r.response is not None
    assert r.response.truncated
    assert r.response.body_bytes == r.metrics["body_bytes"] == 1_000_000
    assert len(r.response.body_excerpt) <= 2048
    # Truncation itself is not a failure; the keyword reason says how much was searched.
    assert r.status is Status.DOWN
    assert r.reasons == ('keyword "never-there" not found in the body (first 1000000 bytes read)',)
    assert elapsed < 2.0
    # The client stopped reading: far fewer than 50 MB left the server (socket buffers aside).
    assert srv.bytes_sent < 20_000_000, srv.bytes_sent


async def test_huge_body_without_keyword_is_up(clients: HttpClients) -> None:
    async with huge_body_server(5_000_000, declare_length=False) as srv:
        r, _ = await timed_check(HttpProbe(target(srv.url(), max_body="64KiB"), clients))
    assert r.status is Status.UP
    assert r.response is not None
    assert r.response.truncated
    assert r.metrics["body_bytes"] == 65536


async def test_malformed_json_fails_the_condition_with_a_reason(clients: HttpClients) -> None:
    async with malformed_json_server() as srv:
        probe = HttpProbe(target(srv.url(), down_unless=['body.status == "ok"']), clients)
        r, _ = await timed_check(probe)
    assert r.status is Status.DOWN
    assert r.error is None
    assert r.reasons == ("body.status: body is not JSON (unexpected end of data)",)


async def test_gzip_body_is_decoded_and_a_gzip_bomb_is_capped(clients: HttpClients) -> None:
    payload = gzip.compress(json.dumps(terminus(redis="down")).encode())
    bomb = gzip.compress(b"\0" * 20_000_000)
    routes = {
        "/ok": Route(200, payload, (("Content-Encoding", "gzip"),
                                    ("Content-Type", "application/json"))),
        "/bomb": Route(200, bomb, (("Content-Encoding", "gzip"),)),
        "/broken": Route(200, b"not gzip at all", (("Content-Encoding", "gzip"),)),
    }
    async with http_server(routes) as srv:
        ok = HttpProbe(target(srv.url("/ok"), degraded_unless=['body.info.redis exists']),
                       clients)
        r, _ = await timed_check(ok)
        assert srv.requests[0].headers["accept-encoding"] == "gzip, deflate"
        assert r.status is Status.DEGRADED
        assert r.reasons == ("redis: down", "body.info.redis is missing, expected to exist")
        rb, _ = await timed_check(HttpProbe(target(srv.url("/bomb"), max_body="1MB"), clients))
        assert rb.status is Status.UP
        assert rb.response is not None
        assert rb.response.truncated
        assert rb.metrics["body_bytes"] == len(bomb)  # wire bytes; decoded output was capped
        rx, _ = await timed_check(HttpProbe(target(srv.url("/broken")), clients))
        assert rx.status is Status.DOWN
        assert rx.error == "response body is not valid gzip"


# -- redirects -------------------------------------------------------------------------------


async def test_redirect_chain_is_followed(clients: HttpClients) -> None:
    async with redirect_chain_server(3) as srv:
        r, _ = await timed_check(HttpProbe(target(srv.url(srv.extra["start"])), clients))
    assert r.status is Status.UP, r
    assert r.response is not None
    assert r.response.redirects == 3
    assert r.response.final_url.endswith("/hop/0")
    assert [q.path for q in srv.requests] == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]


async def test_redirect_loop_is_down_too_many_redirects(clients: HttpClients) -> None:
    async with redirect_loop_server() as srv:
        r, elapsed = await timed_check(HttpProbe(target(srv.url("/a")), clients))
    assert r.status is Status.DOWN
    assert r.error == "too many redirects (more than 5; it loops)"
    assert len(srv.requests) == 6
    assert elapsed < 1.0


async def test_max_redirects_and_follow_redirects_off(clients: HttpClients) -> None:
    async with redirect_chain_server(3) as srv:
        start = srv.url(srv.extra["start"])
        limited, _ = await timed_check(HttpProbe(target(start, max_redirects=2), clients))
        assert limited.status is Status.DOWN
        assert limited.error == "too many redirects (more than 2)"
        off = HttpProbe(target(start, follow_redirects=False), clients)
        r, _ = await timed_check(off)
        assert r.status is Status.UP  # default expect_status accepts 3xx
        assert r.metrics["status_code"] == 302
        strict = HttpProbe(target(start, follow_redirects=False, expect_status=[200]), clients)
        r, _ = await timed_check(strict)
        assert r.status is Status.DOWN
        assert r.reasons == ("status 302 Found, expected 200",)


async def test_redirect_to_another_origin_drops_secret_headers(
    clients: HttpClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSC_TEST_TOKEN", "tok-redirect-1234")
    async with json_server() as other:
        routes = {
            "/same": Route(302, b"", (("Location", "/final"),)),
            "/final": Route(200, TERMINUS_BODY),
            "/away": Route(302, b"", (("Location", other.url("/landing")),)),
        }
        async with http_server(routes) as srv:
            headers = {"Authorization": "Bearer ${OPSC_TEST_TOKEN}", "X-Trace": "keep-me"}
            same, _ = await timed_check(HttpProbe(target(srv.url("/same"), headers=headers),
                                                  clients))
            away, _ = await timed_check(HttpProbe(target(srv.url("/away"), headers=headers),
                                                  clients))
    assert same.status is Status.UP
    assert away.status is Status.UP
    final = next(q for q in srv.requests if q.path == "/final")
    assert final.headers["authorization"] == "Bearer tok-redirect-1234"
    landed = other.requests[0]
    assert "authorization" not in landed.headers
    assert landed.headers["x-trace"] == "keep-me"


TERMINUS_BODY = terminus(database="up", redis="up")


async def test_303_turns_post_into_get_and_307_keeps_it(clients: HttpClients) -> None:
    routes = {
        "/see-other": Route(303, b"", (("Location", "/done"),)),
        "/temporary": Route(307, b"", (("Location", "/done"),)),
        "/done": Route(200, TERMINUS_BODY),
    }
    async with http_server(routes) as srv:
        for path in ("/see-other", "/temporary"):
            probe = HttpProbe(target(srv.url(path), method="POST", body='{"ping":1}',
                                     headers={"Content-Type": "application/json"}), clients)
            r, _ = await timed_check(probe)
            assert r.status is Status.UP
    done = [q for q in srv.requests if q.path == "/done"]
    assert (done[0].method, done[0].body) == ("GET", b"")
    assert (done[1].method, done[1].body) == ("POST", b'{"ping":1}')
    assert done[1].headers["content-type"] == "application/json"


# -- what reaches the server -----------------------------------------------------------------


async def test_method_body_and_headers_reach_the_server(clients: HttpClients) -> None:
    async with json_server() as srv:
        probe = HttpProbe(target(srv.url("/rpc?x=1"), method="PUT", body="hello body",
                                 headers={"X-Check": "yes", "User-Agent": "custom/1"}), clients)
        r, _ = await timed_check(probe)
    assert r.status is Status.UP
    req = srv.requests[0]
    assert (req.method, req.target, req.body) == ("PUT", "/rpc?x=1", b"hello body")
    assert req.headers["x-check"] == "yes"
    assert req.headers["user-agent"] == "custom/1"  # a configured header wins over the default
    assert req.headers["content-length"] == "10"


# -- status, keyword, conditions, degraded ---------------------------------------------------


async def test_status_expectations(clients: HttpClients) -> None:
    routes = {"/503": Route(503, "busy"), "/404": Route(404, "nope"), "/204": Route(204)}
    async with http_server(routes) as srv:
        r503, _ = await timed_check(HttpProbe(target(srv.url("/503")), clients))
        r404, _ = await timed_check(HttpProbe(target(srv.url("/404"), expect_status=[404]),
                                              clients))
        r204, _ = await timed_check(HttpProbe(target(srv.url("/204"), expect_status=["2xx"]),
                                              clients))
    assert r503.status is Status.DOWN
    assert r503.reasons == ("status 503 Service Unavailable, expected 2xx, 3xx",)
    assert r404.status is Status.UP
    assert r204.status is Status.UP


async def test_keyword_present_and_absent(clients: HttpClients) -> None:
    # The body's failing component degrades the target and is named first in any case.
    async with json_server(terminus(database="up", redis="down")) as srv:
        cases = {
            "present": ({"keyword": '"database": {"status": "up"}'}, Status.DEGRADED,
                        ("redis: down",)),
            "missing": ({"keyword": "kafka"}, Status.DOWN,
                        ("redis: down", 'keyword "kafka" not found in the body')),
            "absent-ok": ({"keyword_absent": "maintenance"}, Status.DEGRADED, ("redis: down",)),
            "absent-found": ({"keyword_absent": '"status": "down"'}, Status.DOWN,
                             ("redis: down", 'keyword ""status": "down"" found in the body')),
        }
        for name, (kw, status, reasons) in cases.items():
            r, _ = await timed_check(HttpProbe(target(srv.url(), **kw), clients))
            assert (r.status, r.reasons) == (status, reasons), name


async def test_one_dependency_down_in_terminus_body_is_degraded(clients: HttpClients) -> None:
    body = terminus(messages={"redis": "connect ECONNREFUSED 10.0.3.7:6379"}, database="up",
                    redis="down", gemini="up")
    async with json_server(body) as srv:
        probe = HttpProbe(target(
            srv.url("/health"),
            down_unless=['body.details.database.status == "up"'],
            degraded_unless=['body.details.redis.status == "up"', 'body.status == "ok"'],
            core_components=["database", "redis"],
        ), clients)
        r, _ = await timed_check(probe)
    assert r.status is Status.DEGRADED
    assert r.error is None
    # The service's own words first: which dependency, and its message.
    assert r.reasons == (
        "redis: down — connect ECONNREFUSED 10.0.3.7:6379",
        'body.details.redis.status is "down", expected == "up"',
        'body.status is "error", expected == "ok"',
    )
    assert (r.metrics["components_down"], r.metrics["core_components_down"],
            r.metrics["other_components_down"]) == (1, 1, 0)
    comps = {c["name"]: c for c in r.details["health"]["components"]}
    assert comps["redis"] == {"name": "redis", "status": "down", "failing": True,
                              "message": "connect ECONNREFUSED 10.0.3.7:6379", "core": True}
    assert comps["gemini"]["core"] is False
    assert not comps["gemini"]["failing"]


async def test_terminus_database_down_is_named_from_details_not_info(
        clients: HttpClients) -> None:
    """Terminus moves a failing indicator out of `info` into `error` (and keeps it in
    `details`): the down condition on `details` reads "down", and the reason names it."""
    body = terminus(messages={"database": "Connection terminated due to connection timeout"},
                    database="down", redis="up")
    assert "database" not in body["info"]
    async with json_server(body, status=503) as srv:
        probe = HttpProbe(target(srv.url("/health"), expect_status=[200, 503],
                                 down_unless=['body.details.database.status == "up"']),
                          clients)
        r, _ = await timed_check(probe)
    assert r.status is Status.DOWN
    assert r.reasons == (
        "database: down — Connection terminated due to connection timeout",
        'body.details.database.status is "down", expected == "up"',
    )


async def test_slow_but_answering_is_degraded_and_latency_conditions(
    clients: HttpClients,
) -> None:
    async with json_server(delay=0.15) as srv:
        slow = HttpProbe(target(srv.url(), slow="50ms"), clients)
        r, _ = await timed_check(slow)
        assert r.status is Status.DEGRADED
        assert len(r.reasons) == 1
        assert r.reasons[0].startswith("latency ")
        assert r.reasons[0].endswith("above the slow threshold 50ms")
        assert r.latency_ms is not None
        assert r.latency_ms >= 150
        cond = HttpProbe(target(srv.url(), down_unless=["latency < 100ms"]), clients)
        r, _ = await timed_check(cond)
        assert r.status is Status.DOWN
        assert r.reasons[0].startswith("latency is ")
        assert r.reasons[0].endswith(", expected < 100ms")
        fine = HttpProbe(target(srv.url(), slow="2s", down_unless=["latency < 2s"]), clients)
        r, _ = await timed_check(fine)
        assert r.status is Status.UP


async def test_conditions_on_status_headers_size_and_missing_paths(clients: HttpClients) -> None:
    async with json_server(headers=(("X-Version", "1.4.2"),)) as srv:
        probe = HttpProbe(target(srv.url(), down_unless=[
            "status == 200", 'header.x-version matches "^1\\\\."', "header.content-type exists",
            "size < 1KB", "body.maintenance missing",
        ], degraded_unless=['body.info.kafka.status == "up"', "header.x-absent exists"]),
            clients)
        r, _ = await timed_check(probe)
    assert r.status is Status.DEGRADED
    assert r.reasons == (
        'body.info.kafka.status is missing (body.info has no key "kafka"), expected == "up"',
        "header.x-absent is missing, expected to exist",
    )


# -- TLS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "use_ca", "expected"),
    [
        ("self_signed", False, "certificate verify failed: self-signed certificate"),
        ("untrusted", True, "certificate verify failed: unable to get local issuer certificate"),
        ("wrong_host", True,
         "certificate verify failed: IP address mismatch, certificate is not valid for "
         "'127.0.0.1'."),
        ("expired", True, "certificate verify failed: certificate has expired"),
        ("good", False, "certificate verify failed: unable to get local issuer certificate"),
    ],
)
async def test_tls_verification_fails_closed(
    clients: HttpClients, kind: str, use_ca: bool, expected: str
) -> None:
    async with tls_server(kind) as srv:
        ca_file = srv.extra["tls"].ca_file if use_ca else None
        r, elapsed = await timed_check(HttpProbe(target(srv.url(), ca_file=ca_file), clients))
    assert r.status is Status.DOWN
    assert r.error == f"{expected} (127.0.0.1:{srv.port})"
    assert elapsed < 1.5


async def test_tls_succeeds_with_ca_file_or_explicit_insecure(clients: HttpClients) -> None:
    async with tls_server("good") as good, tls_server("self_signed") as selfsigned:
        ca_file = good.extra["tls"].ca_file
        r1, _ = await timed_check(HttpProbe(target(good.url(), ca_file=ca_file), clients))
        r2, _ = await timed_check(HttpProbe(target(good.url("/", host="localhost"),
                                                   ca_file=ca_file), clients))
        r3, _ = await timed_check(HttpProbe(target(selfsigned.url(), insecure=True), clients))
        # The insecure target's setting never leaks to other targets on the same pool.
        r4, _ = await timed_check(HttpProbe(target(selfsigned.url()), clients))
    assert (r1.status, r2.status, r3.status) == (Status.UP, Status.UP, Status.UP)
    assert r4.status is Status.DOWN
    assert r4.error is not None
    assert "self-signed" in r4.error


async def test_unreadable_ca_file_is_down_on_every_check(clients: HttpClients) -> None:
    probe = HttpProbe(target("https://127.0.0.1:9/", ca_file="/nonexistent/ca.pem"), clients)
    for _ in range(2):
        r, _ = await timed_check(probe)
        assert r.status is Status.DOWN
        assert r.error == "ca_file /nonexistent/ca.pem does not exist"


# -- environment references and secrets ------------------------------------------------------


async def test_missing_env_var_is_down_on_every_check(clients: HttpClients,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSC_TEST_UNSET", raising=False)
    async with json_server() as srv:
        probe = HttpProbe(target(srv.url("/"), headers={"X-Api-Key": "${OPSC_TEST_UNSET}"}),
                          clients)
        for _ in range(2):
            r = await probe.check()
            assert r.status is Status.DOWN
            assert r.error == "environment variable OPSC_TEST_UNSET is not set"
        # said before any request: the server never saw a connection (it was `elapsed <
        # 0.05`, a clock standing in for "no network" that a loaded machine can miss)
        assert srv.accepted == 0


async def test_env_secret_in_header_never_reaches_any_result_text(
    clients: HttpClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Tok:en/%40-xyz"
    monkeypatch.setenv("OPSC_TEST_SECRET", secret)

    def echo(req: RecordedRequest) -> Route:
        auth = req.headers.get("x-api-key", "")
        return Route(500, {"received": auth, "status": "bad"},
                     (("X-Echo", auth), ("Www-Authenticate", f"Bearer {auth}")),
                     reason=f"Denied {auth}")

    async with http_server(echo) as srv:
        probe = HttpProbe(target(srv.url(), headers={"X-Api-Key": "${OPSC_TEST_SECRET}"},
                                 down_unless=['body.received == "nothing"']), clients)
        r, _ = await timed_check(probe)
        assert srv.requests[0].headers["x-api-key"] == secret  # it was really sent
    assert r.status is Status.DOWN
    text = all_text(r)
    assert secret not in text
    assert "***" in text
    assert 'body.received is "***", expected == "nothing"' in r.reasons


async def test_token_in_url_query_is_redacted_from_final_url(clients: HttpClients) -> None:
    async with json_server() as srv:
        r, _ = await timed_check(HttpProbe(target(srv.url("/h?token=abc123secret")), clients))
    assert r.response is not None
    assert "abc123secret" not in all_text(r)
    assert r.response.final_url.endswith("/h?token=***")


# -- remote text is plain and sanitised ------------------------------------------------------


async def test_escape_sequences_and_markup_come_out_as_plain_text(clients: HttpClients) -> None:
    async with escape_server() as srv:
        probe = HttpProbe(target(srv.url(), down_unless=['body.note == "x"']), clients)
        r, _ = await timed_check(probe)
    assert r.status is Status.DOWN
    assert r.reasons == ("body.note: body is not JSON (unexpected control character in string)",)
    text = all_text(r)
    for bad in ("\x1b", "\x9b", "\x07", "\u202e", "\x00"):
        assert bad not in text
    assert r.response is not None
    headers = dict(r.response.headers)
    assert headers["X-Markup"] == "[bold red]ALERT[/] [@click=app.quit]x[/]"  # literal text
    assert headers["X-Escape"] == "beforeafter"
    assert r.response.reason == "OK [red]x[/]"
    assert "[red]pwn[/] [@click=app.quit]click[/]" in r.response.body_excerpt
    assert "<U+202E>evil" in r.response.body_excerpt  # bidi override made visible
    assert "\x1b" in ESCAPE_BODY  # the server really sent them


async def test_escapes_inside_json_values_are_plain_in_reasons(clients: HttpClients) -> None:
    note = "\x1b[2J\x1b]52;c;cHduZWQ=\x07[red]pwn[/]\u202e\u009b31m"
    async with http_server(Route(200, {"status": "ok", "note": note})) as srv:
        probe = HttpProbe(target(srv.url(), degraded_unless=['body.note == "x"']), clients)
        r, _ = await timed_check(probe)
    assert r.status is Status.DEGRADED
    (reason,) = r.reasons
    for bad in ("\x1b", "\x9b", "\x07", "\u202e"):
        assert bad not in all_text(r)
    assert reason.startswith('body.note is "')
    assert "[red]pwn[/]" in reason
    assert reason.endswith('", expected == "x"')


# -- isolation, DNS, cancellation, leaks -----------------------------------------------------


async def test_ten_hanging_targets_never_delay_ten_healthy_ones(clients: HttpClients) -> None:
    timeout = 1.5

    def mixed(req: RecordedRequest) -> Route:
        # The same host serves a hanging path and a healthy one: no per-host queueing.
        return Route(200, TERMINUS_BODY, delay=3600 if req.path == "/hang" else 0)

    async with hang_server() as hang, json_server() as ok, http_server(mixed) as same_host:
        hanging = [HttpProbe(target(hang.url(f"/{i}"), timeout=timeout), clients)
                   for i in range(7)]
        hanging += [HttpProbe(target(same_host.url("/hang"), timeout=timeout), clients)
                    for _ in range(3)]
        healthy = [HttpProbe(target(ok.url(f"/{i}"), timeout=timeout), clients)
                   for i in range(7)]
        healthy += [HttpProbe(target(same_host.url("/ok"), timeout=timeout), clients)
                    for _ in range(3)]

        async def run(p: HttpProbe) -> tuple[CheckResult, float]:
            return await timed_check(p)

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(run(p)) for p in hanging + healthy]
        await asyncio.wait(tasks[10:])
        # every healthy check was answered while all ten hanging ones still waited (it was
        # "the slowest healthy one took < 0.5 s": the order is what isolation means)
        assert not any(t.done() for t in tasks[:10]), "a healthy target waited on hanging ones"
        results = await asyncio.gather(*tasks)
        total = time.perf_counter() - t0
    bad, good = results[:10], results[10:]
    slowest_healthy = max(e for _, e in good)
    print(f"[isolation] slowest healthy {slowest_healthy * 1000:.0f} ms while 10 hang; "
          f"all done in {total * 1000:.0f} ms")
    assert all(r.status is Status.UP for r, _ in good)
    for r, elapsed in bad:
        assert r.status is Status.DOWN
        assert r.error == "timed out after 1.5s (no response headers)"
        assert elapsed < timeout + MARGIN
    assert total < timeout + MARGIN


async def test_dns_failures_and_black_holes_stay_isolated() -> None:
    release = threading.Event()
    lookups: list[str] = []

    def fake_getaddrinfo(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        if host.startswith("blackhole"):
            release.wait(10)  # a resolver that never answers (until the test ends)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host == "nx.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "servfail.test":
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return socket.getaddrinfo("127.0.0.1", port, *args)

    resolver = DedicatedResolver(getaddrinfo=fake_getaddrinfo)
    try:
        async with HttpClients(resolver=resolver) as c, json_server() as ok:
            holes = [HttpProbe(target(f"http://blackhole{i}.test:{ok.port}/", timeout=0.6), c)
                     for i in range(8)]
            nx = HttpProbe(target(f"http://nx.invalid:{ok.port}/", timeout=0.6), c)
            servfail = HttpProbe(target(f"http://servfail.test:{ok.port}/", timeout=0.6), c)
            r_sf = await servfail.check()
            assert r_sf.error == "cannot resolve host servfail.test (temporary DNS failure)"
            good = [HttpProbe(target(f"http://svc{i}.test:{ok.port}/", timeout=0.6), c)
                    for i in range(5)]
            tasks = [asyncio.create_task(timed_check(p)) for p in [*holes, nx, *good]]
            await asyncio.wait(tasks[8:])
            # the unknown name and the healthy ones were answered while every black-holed
            # lookup still hung (it was "< 0.5 s" and "< 0.4 s": the order is the point)
            assert not any(t.done() for t in tasks[:8]), "a lookup waited on a black hole"
            results = await asyncio.gather(*tasks)
            # A second round: black-holed names hold at most one lookup thread each.
            again = await asyncio.gather(*(timed_check(p) for p in holes[:2]))
    finally:
        release.set()
        await resolver.close()
    for r, elapsed in results[:8] + again:
        assert r.status is Status.DOWN
        assert r.error == "timed out after 600ms (no response headers)"
        assert_deadline(elapsed, 0.6, "dns black hole")
    r_nx, _ = results[8]
    assert r_nx.error == "cannot resolve host nx.invalid"
    for r, _ in results[9:]:
        assert r.status is Status.UP, r
    assert lookups.count("blackhole0.test") == 1  # single-flight: the retry joined it


async def test_cancelling_a_check_propagates(clients: HttpClients) -> None:
    async with hang_server() as srv:
        task = asyncio.create_task(HttpProbe(target(srv.url()), clients).check())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await srv.wait_idle(1.0)


async def test_no_connections_or_tasks_leak_after_aclose() -> None:
    before = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    async with (json_server() as ok, hang_server() as hang, drip_server() as drip,
                huge_body_server(10_000_000) as huge, reset_server() as rst,
                redirect_loop_server() as loop_srv):
        servers: list[FaultServer] = [ok, hang, drip, huge, rst, loop_srv]
        clients = HttpClients()
        probes = [HttpProbe(target(ok.url(), timeout=0.4), clients),
                  HttpProbe(target(hang.url(), timeout=0.4), clients),
                  HttpProbe(target(drip.url(), timeout=0.4), clients),
                  HttpProbe(target(huge.url(), timeout=0.4, max_body="100KB"), clients),
                  HttpProbe(target(rst.url(), timeout=0.4), clients),
                  HttpProbe(target(loop_srv.url("/a"), timeout=0.4), clients)]
        for _ in range(3):
            results = await asyncio.gather(*(p.check() for p in probes))
            assert [r.status for r in results] == [Status.UP, Status.DOWN, Status.DOWN,
                                                   Status.UP, Status.DOWN, Status.DOWN]
        for p in probes:
            await p.aclose()
        await clients.aclose()
        for srv in servers:
            assert await srv.wait_idle(2.0), f"{srv.port} still has open connections"
            assert client_sockets_to(srv.port) == []
        assert ok.accepted == 1  # the healthy target reused one keep-alive connection
    await asyncio.sleep(0)
    after = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
    assert after - before == set()
    late = await probes[0].check()  # a closed probe still answers, and says why
    assert (late.status, late.error) == (Status.DOWN, "probe is closed")


# -- pooled connections: restarts and the keep-alive race -------------------------------------


async def test_server_restart_gives_no_spurious_down(clients: HttpClients) -> None:
    async with json_server() as first:
        probe = HttpProbe(target(first.url(), timeout=1.0), clients)
        assert (await probe.check()).status is Status.UP
        port = first.port
    gone = await probe.check()
    assert gone.error == f"connection refused (127.0.0.1:{port})"
    second = json_server()
    second.port = port  # the same service, restarted on its port
    async with second:
        r = await probe.check()
    assert r.status is Status.UP, r


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_connection_closed_by_server_on_reuse_is_not_a_failure(
    clients: HttpClients, method: str
) -> None:
    async with one_request_per_connection_server() as srv:
        probe = HttpProbe(target(srv.url(), method=method, body="{}" if method == "POST" else None),
                          clients)
        results = [await probe.check() for _ in range(4)]
    assert [r.status for r in results] == [Status.UP] * 4, [r.error for r in results]
    assert len(srv.requests) == 4
    if method == "GET":
        # GET reused the pooled connection, met the race, and retried once on a fresh one.
        assert srv.extra.get("dropped", 0) >= 1
    else:
        # POST is never retried by the library, so it never reuses a connection at all.
        assert srv.extra.get("dropped", 0) == 0
        assert srv.accepted == 4


async def test_httpx_client_on_the_shared_pool(clients: HttpClients) -> None:
    async with json_server() as srv:
        async with clients.client() as client:
            response = await client.get(srv.url("/x"))
            assert response.status_code == 200
            assert response.json() == TERMINUS_BODY
        # Closing that client did not close the shared pool.
        r, _ = await timed_check(HttpProbe(target(srv.url()), clients))
    assert r.status is Status.UP
    assert srv.requests[0].headers["user-agent"].startswith("opsconsole/")


async def test_invalid_hand_built_condition_is_down_not_a_crash(clients: HttpClients) -> None:
    t = HttpTarget.model_construct(**{**target("http://127.0.0.1:9/").model_dump(),
                                      "down_unless": ["latency < 5"]})
    r = await HttpProbe(t, clients).check()
    assert r.status is Status.DOWN
    assert r.error == "invalid condition: latency needs a unit: write e.g. 5ms or 5s"


def test_a_hung_dns_lookup_never_delays_process_exit() -> None:
    """Lookup threads are daemons: quitting never waits for a black-holed resolver. The
    lookup here never returns, so the process ends only if exit does not wait for it (no
    time bound to tune: a wait would hang until the subprocess timeout)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import asyncio, threading\n"
        "from console.engine.probes.http_client import HttpClients, DedicatedResolver\n"
        "from console.engine.probes.http import HttpProbe\n"
        "from console.engine.config.schema import HttpTarget\n"
        "def hung(*a):\n"
        "    threading.Event().wait()\n"
        "async def main():\n"
        "    async with HttpClients(resolver=DedicatedResolver(getaddrinfo=hung)) as c:\n"
        "        t = HttpTarget(name='t', url='http://hung.test/', timeout=0.2)\n"
        "        print((await HttpProbe(t, c).check()).error, flush=True)\n"
        "asyncio.run(main())\n"
    )
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                             text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("exit waited for the hung lookup")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "timed out after 200ms (no response headers)"


async def test_the_ca_bundle_is_loaded_only_for_the_first_https_request(
        clients: HttpClients) -> None:
    """A plain-http target never builds a TLS context (loading the CA bundle costs tens of
    milliseconds of `check --once URL`); the first https one builds it, once."""
    async with json_server({"status": "ok"}) as plain, tls_server("self_signed") as tls:
        r, _ = await timed_check(HttpProbe(target(plain.url()), clients))
        assert r.status is Status.UP
        assert clients._contexts == {}
        for _ in range(2):
            r, _ = await timed_check(HttpProbe(target(tls.url()), clients))
            assert r.status is Status.DOWN  # verified against the system CAs: refused
            assert r.error is not None
            assert "self-signed" in r.error
        assert list(clients._contexts) == [(False, None)]
