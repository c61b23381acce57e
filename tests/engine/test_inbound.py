"""The inbound listener with real clients: a Stripe event signed by Stripe's own library, a
Sentry webhook signed as Sentry documents (HMAC-SHA256 of the body), events and heartbeat
pings with a bearer token (curl), and every refusal (401, 413, 429) a log line, never a
crash."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import stripe

from console.engine.alerting.lifecycle import AlertState
from console.engine.config.loader import load_config_text
from console.engine.model import Status
from console.engine.paths import DataPaths
from console.engine.runtime import Runtime
from console.engine.signals.inbound import stripe_signature_ok

WHSEC = "whsec_test_3f9a1c0e5b7d4e2f8a6c"
SENTRY_SECRET = "sentry-client-secret-8c1d"
TOKEN = "inbound-token-5e2b"

CONFIG = '''
[[targets]]
name = "nightly-backup"
kind = "heartbeat"
period = "1h"

[inbound]
enabled = true
port = 0
token = "${{INBOUND_TOKEN}}"
max_body = "4KiB"
rate = {rate}
burst = {burst}

[[inbound.sources]]
name = "stripe"
kind = "stripe"
secret = "${{STRIPE_WHSEC}}"
service = "payments"

[[inbound.sources]]
name = "sentry"
kind = "sentry"
secret = "${{SENTRY_SECRET}}"
service = "api"

[[inbound.sources]]
name = "ci"
kind = "json"
secret = "${{INBOUND_TOKEN}}"
'''


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WHSEC", WHSEC)
    monkeypatch.setenv("SENTRY_SECRET", SENTRY_SECRET)
    monkeypatch.setenv("INBOUND_TOKEN", TOKEN)


async def _runtime(tmp_path: Path, *, rate: float = 1000, burst: int = 1000) -> Runtime:
    settings = load_config_text(CONFIG.format(rate=rate, burst=burst))
    rt = Runtime(settings, DataPaths(tmp_path), incidents=False)
    await rt.start()
    assert rt.listener is not None, rt.problems
    return rt


@pytest.fixture
async def console(tmp_path: Path, secrets: None) -> AsyncIterator[Runtime]:
    rt = await _runtime(tmp_path)
    yield rt
    await rt.stop()


def base(rt: Runtime) -> str:
    assert rt.listener is not None
    return f"http://127.0.0.1:{rt.listener.port}"


def stripe_event(kind: str = "payment_intent.payment_failed") -> bytes:
    return orjson.dumps({
        "id": "evt_1PqR8sT2uV3wX4yZ", "object": "event", "api_version": "2024-06-20",
        "created": int(time.time()), "type": kind, "livemode": False,
        "data": {"object": {"id": "pi_3PqR8s", "object": "payment_intent", "amount": 4900,
                            "last_payment_error": {"message": "Your card was declined."}}},
    })


def sentry_issue(action: str = "created", title: str = "TypeError: Cannot read "
                 "properties of undefined (reading 'id')") -> bytes:
    return orjson.dumps({
        "action": action, "installation": {"uuid": "7a485448-a9e2-4c85-8a3c-4f44175783c9"},
        "data": {"issue": {"id": "1170820242", "shortId": "API-3Q", "title": title,
                           "culprit": "signals/create in handler", "level": "error",
                           "status": "unresolved" if action != "resolved" else "resolved",
                           "web_url": "https://sentry.io/organizations/t/issues/1170820242/"}},
        "actor": {"type": "application", "id": "sentry", "name": "Sentry"},
    })


def sentry_headers(body: bytes, secret: str = SENTRY_SECRET) -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Sentry-Hook-Resource": "issue",
            "Sentry-Hook-Timestamp": str(int(time.time())), "Sentry-Hook-Signature": sig}


def _alert(rt: Runtime, source: str) -> Any:
    assert rt.alerting is not None
    found = [a for a in rt.alerting.alerts.alerts() if a.target == source]
    assert len(found) == 1, found
    return found[0]


# -- webhooks ----------------------------------------------------------------------------------


async def test_a_stripe_event_signed_by_stripes_library_raises_the_payment_alert(
        console: Runtime) -> None:
    body = stripe_event()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC)
    # Stripe's own verifier accepts what we accept, and so does ours:
    stripe.Webhook.construct_event(body.decode(), header, WHSEC)
    assert stripe_signature_ok(header, WHSEC, body, time.time(), 300) is None
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{base(console)}/hooks/stripe", content=body,
                              headers={"Stripe-Signature": header,
                                       "Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    alert = _alert(console, "stripe")
    assert alert.state == AlertState.FIRING
    assert alert.rule.severity == "P1"
    assert alert.summary == "Stripe payment_intent.payment_failed"
    assert "Your card was declined." in alert.cause
    assert alert.labels["service"] == "payments"
    assert alert.action  # the payment runbook's "what to do"


async def test_stripe_signatures_that_do_not_hold_are_401(console: Runtime,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    body = stripe_event()
    wrong = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_other")
    old = stripe.WebhookSignature.generate_signature_header(
        body.decode(), WHSEC, timestamp=int(time.time()) - 3600)
    tampered = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC)
    caplog.set_level(logging.WARNING, logger="console.engine.signals.inbound")
    async with httpx.AsyncClient() as client:
        for headers, content in (({"Stripe-Signature": wrong}, body),
                                 ({"Stripe-Signature": old}, body),
                                 ({"Stripe-Signature": tampered}, body.replace(b"4900", b"1")),
                                 ({}, body)):
            r = await client.post(f"{base(console)}/hooks/stripe", content=content,
                                  headers=headers)
            assert r.status_code == 401, r.text
    assert console.listener is not None
    assert console.listener.stats.unauthorized == 4
    lines = [r.getMessage() for r in caplog.records if "401" in r.getMessage()]
    assert len(lines) == 4
    assert any("tolerance" in line for line in lines)
    assert console.alerting is not None
    assert [a for a in console.alerting.alerts.alerts() if a.target == "stripe"] == []


async def test_a_sentry_new_issue_is_the_playbooks_p2_with_its_title_until_resolved(
        console: Runtime) -> None:
    body = sentry_issue()
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{base(console)}/hooks/sentry", content=body,
                              headers=sentry_headers(body))
        assert r.status_code == 202, r.text
        alert = _alert(console, "sentry")
        assert alert.state == AlertState.FIRING
        assert alert.rule.severity == "P2"
        assert alert.summary == "TypeError: Cannot read properties of undefined (reading 'id')"
        assert "signals/create" in alert.cause
        bad = await client.post(f"{base(console)}/hooks/sentry", content=body,
                                headers=sentry_headers(body, "not-the-secret"))
        assert bad.status_code == 401
        resolved = sentry_issue("resolved")
        r = await client.post(f"{base(console)}/hooks/sentry", content=resolved,
                              headers=sentry_headers(resolved))
        assert r.status_code == 202, r.text
    assert _alert(console, "sentry").state == AlertState.RESOLVED
    recorded = [e for e in console.events.recent(0) if e["kind"] == "alert"] \
        if console.events else []
    assert [e["action"] for e in recorded] == ["fire", "resolve"]


async def test_a_hostile_title_stays_plain_text(console: Runtime) -> None:
    body = sentry_issue(title="\x1b]52;c;cm0gLXJmIH4=\x07[@click=app.quit]boom[/] \x1b[2J")
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{base(console)}/hooks/sentry", content=body,
                              headers=sentry_headers(body))
    assert r.status_code == 202
    summary = _alert(console, "sentry").summary
    assert "\x1b" not in summary
    assert "\x07" not in summary
    assert "[@click=app.quit]boom[/]" in summary  # kept as text; screens show it plainly


async def test_inbound_alerts_survive_a_restart(tmp_path: Path, secrets: None) -> None:
    rt = await _runtime(tmp_path)
    try:
        body = sentry_issue()
        async with httpx.AsyncClient() as client:
            r = await client.post(f"{base(rt)}/hooks/sentry", content=body,
                                  headers=sentry_headers(body))
        assert r.status_code == 202
        assert _alert(rt, "sentry").state == AlertState.FIRING
    finally:
        await rt.stop()
    again = await _runtime(tmp_path)
    try:
        alert = _alert(again, "sentry")
        assert alert.state == AlertState.FIRING
        assert alert.summary.startswith("TypeError")
    finally:
        await again.stop()


# -- events and pings --------------------------------------------------------------------------


async def test_events_over_http_need_the_token(console: Runtime) -> None:
    url = f"{base(console)}/events"
    event = {"text": "Deployed v1.5.2 to production", "kind": "deploy", "service": "api",
             "version": "v1.5.2"}
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, json=event)).status_code == 401
        assert (await client.post(url, json=event, headers={
            "Authorization": "Bearer wrong"})).status_code == 401
        r = await client.post(url, json=event, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 201, r.text
        bad = await client.post(url, json={"text": "x", "kind": "NOT OK"},
                                headers={"Authorization": f"Bearer {TOKEN}"})
        assert bad.status_code == 400
        notjson = await client.post(url, content=b"{nope",
                                    headers={"Authorization": f"Bearer {TOKEN}"})
        assert notjson.status_code == 400
    assert [e["text"] for e in console.deploys(0)] == ["Deployed v1.5.2 to production"]


async def test_oversized_bodies_are_413_whether_announced_or_not(console: Runtime) -> None:
    url = f"{base(console)}/hooks/ci"
    big = b'{"summary": "' + b"x" * 10_000 + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i:i + 1000]

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient() as client:
        assert (await client.post(url, content=big, headers=headers)).status_code == 413
        # chunked: no Content-Length, so the limit is met while reading
        assert (await client.post(url, content=chunks(), headers=headers)).status_code == 413
        ok = await client.post(url, json={"summary": "Nightly export failed",
                                          "severity": "error", "dedup_key": "export"},
                               headers=headers)
        assert ok.status_code == 202
    assert console.listener is not None
    assert console.listener.stats.too_large == 2
    alert = _alert(console, "ci")
    assert alert.rule.severity == "P1"
    assert alert.summary == "Nightly export failed"


async def test_pings_with_curl_success_start_fail(console: Runtime) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed (apt-get install curl)"

    def ping(path: str, token: str = TOKEN, method: str = "GET") -> str:
        out = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                              "-H", f"Authorization: Bearer {token}", f"{base(console)}{path}"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout

    assert await asyncio.to_thread(ping, "/ping/nightly-backup", "wrong") == "401"
    assert await asyncio.to_thread(ping, "/ping/nobody") == "404"
    assert await asyncio.to_thread(ping, "/ping/nightly-backup/start") == "200"
    assert await asyncio.to_thread(ping, "/ping/nightly-backup", TOKEN, "POST") == "200"
    state = console.scheduler._states["nightly-backup"]
    result = await console.scheduler.check_target(state)
    assert result.status == Status.UP
    assert "run_time_s" in result.metrics
    assert await asyncio.to_thread(ping, "/ping/nightly-backup/fail") == "200"
    result = await console.scheduler.check_target(state)
    assert result.status == Status.DOWN


async def test_a_flood_gets_429_and_the_listener_keeps_serving(tmp_path: Path, secrets: None,
                                                               ) -> None:
    rt = await _runtime(tmp_path, rate=0.01, burst=3)  # a token per 100 s
    try:
        async with httpx.AsyncClient() as client:
            codes = [(await client.post(f"{base(rt)}/events", json={"text": "x"})).status_code
                     for _ in range(6)]
        assert codes[:3] == [401, 401, 401]
        assert codes[3:] == [429, 429, 429]
        assert rt.listener is not None
        assert rt.listener.stats.rate_limited == 3
    finally:
        await rt.stop()


async def test_a_port_in_use_is_a_problem_shown_not_a_crash(tmp_path: Path, secrets: None,
                                                            ) -> None:
    first = await _runtime(tmp_path / "a")
    try:
        assert first.listener is not None
        text = CONFIG.format(rate=10, burst=10).replace("port = 0",
                                                        f"port = {first.listener.port}")
        second = Runtime(load_config_text(text), DataPaths(tmp_path / "b"), incidents=False)
        await second.start()
        try:
            assert second.listener is None
            assert "inbound listener not started" in second.problems["inbound"]
        finally:
            await second.stop()
    finally:
        await first.stop()
