"""Each receiver against the real peer it talks to: aiosmtpd with STARTTLS and AUTH, Twilio's
own library, Slack's Web API shapes with Block Kit validated by slack_sdk, PagerDuty's
Events API v2 — and SMS written the way Twilio bills it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.notify import Notifier
from console.engine.alerting.receivers import sms
from console.engine.config.rules import Receiver
from tests.engine.test_notify import note
from tests.peers import PagerDutyPeer, SlackPeer, SmtpPeer, TwilioPeer, WebhookPeer

HOUR0 = 1_800_000_000.0


def receiver(**kw: Any) -> Receiver:
    return Receiver.model_validate({"rate": 50, **kw})


@contextlib.asynccontextmanager
async def running(n: Notifier) -> AsyncIterator[Notifier]:
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def until_sent(n: Notifier, name: str, count: int, within: float = 20.0) -> None:
    """Until the outbox has `count` rows of `name` sent (the peer answered and the row was
    marked), re-checked after each delivery attempt of the notifier."""
    async with asyncio.timeout(within):
        await n.wait_for(lambda: {h.name: h.sent for h in n.health()}.get(name, 0) >= count)


# -- email -------------------------------------------------------------------------------------


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpPeer]:
    with SmtpPeer(tmp_path) as peer:
        yield peer


def mail_receiver(peer: SmtpPeer, **kw: Any) -> Receiver:
    return receiver(name="mail", kind="email", url="${SMTP_URL}", mail_from="${MAIL_FROM}",
                    mail_to=["${ONCALL_MAIL}"], smtp_user="${SMTP_USER}",
                    smtp_password="${SMTP_PASSWORD}", ca_file=str(peer.ca_file), **kw)


def mail_env(peer: SmtpPeer, password: str = "pw") -> dict[str, str]:
    return {"SMTP_URL": peer.url, "MAIL_FROM": "opsconsole@example.com",
            "ONCALL_MAIL": "oncall@example.com", "SMTP_USER": "ops",
            "SMTP_PASSWORD": password}


def assert_wire_format(raw: bytes) -> None:
    """What every MTA checks: CRLF only, no line over 998 octets, the required headers."""
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF in the message"
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    head = raw.split(b"\r\n\r\n", 1)[0]
    for name in (b"Date:", b"Message-ID:", b"MIME-Version: 1.0", b"From:", b"To:",
                 b"Subject:"):
        assert name in head, name


async def test_email_over_starttls_and_auth_single_and_grouped(smtp: SmtpPeer,
                                                               tmp_path: Path) -> None:
    r = mail_receiver(smtp, group_wait="0.3s")
    n = Notifier(tmp_path / "o.sqlite", [r], env=mail_env(smtp))
    async with running(n):
        alone = replace(note(1, severity="P0"), summary="Zahlungen – Überlauf 🔴",
                        group="service=pay", detail="x" * 3000)  # one very long line
        group = [replace(note(i), detail=f"error_pct = {i} (> 5) " + "y" * 1200)
                 for i in range(2, 5)]
        assert n.enqueue([alone, *group]) == 4
        mails = await smtp.mails.until(lambda m: len(m) == 2)
        await until_sent(n, "mail", 4)
    by_subject = {m.message["Subject"]: m for m in mails}
    for m in mails:
        assert m.tls
        assert m.login == b"ops"
        assert m.rcpt_tos == ["oncall@example.com"]
        assert m.mail_from == "opsconsole@example.com"
        assert_wire_format(m.raw)
        assert email.utils.parsedate_to_datetime(m.message["Date"]).tzinfo is not None
        assert m.message.get_content_type() == "multipart/alternative"
        assert "<html>" in m.part("html")
    single = by_subject["CRITICAL P0: Zahlungen – Überlauf 🔴 (api)"]
    subject = next(x for x in single.raw.split(b"\r\n") if x.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject  # RFC 2047: the header itself is ASCII
    assert subject.isascii()
    assert single.message["Message-ID"].endswith("@example.com>")
    assert "x" * 3000 in single.part("plain")  # unfolded intact
    grouped = by_subject["HIGH P1: Rule 2 (api) (+2 more)"]
    text = grouped.part("plain")
    assert [f"HIGH: Rule {i}" in text for i in (2, 3, 4)] == [True] * 3
    assert "Rule 4" in grouped.part("html")


async def test_email_digest_of_fifty_alerts(smtp: SmtpPeer, tmp_path: Path) -> None:
    now = [HOUR0 + 60]
    r = mail_receiver(smtp, digest="1h")
    n = Notifier(tmp_path / "o.sqlite", [r], env=mail_env(smtp), clock=lambda: now[0])
    async with running(n):
        notes = [replace(note(i, severity="P3"), at=now[0], summary=f"Disk {i} at 80 %",
                         detail="disk_used_pct = 80.3 (> 80) " + "z" * 200)
                 for i in range(50)]
        assert n.enqueue(notes) == 50
        now[0] = HOUR0 + 3601
        n.wake()
        (mail,) = await smtp.mails.until(lambda m: len(m) == 1)
        await until_sent(n, "mail", 50)
    assert_wire_format(mail.raw)
    assert mail.message["Subject"].startswith("Digest: 50 alerts (50 firing), ")
    text = mail.part("plain")
    assert all(f"Disk {i} at 80 %" in text for i in range(50))
    assert len(mail.raw) > 20_000  # long enough that bare LF would have been refused


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
async def test_credentials_a_server_echoes_never_reach_the_outbox_or_the_log(
        tmp_path: Path, mechanism: str, caplog: pytest.LogCaptureFixture) -> None:
    password = "Sm0ke-Pa55w0rd!"
    with SmtpPeer(tmp_path, password="other", echo_auth=True,
                  login_only=mechanism == "LOGIN", plain_only=mechanism == "PLAIN") as peer:
        n = Notifier(tmp_path / "o.sqlite", [mail_receiver(peer)],
                     env=mail_env(peer, password))
        async with running(n):
            n.enqueue([note(1, severity="P0")])
            await peer.refused.until(lambda r: len(r) >= 1)
            await n.wait_for(lambda: n.health()[0].failing)
            (h,) = n.health()
            rows = n.outbox.rows("mail")
    echoed = {"LOGIN": base64.b64encode(password.encode()).decode(),
              "PLAIN": base64.b64encode(b"\0ops\0" + password.encode()).decode()}[mechanism]
    assert h.last_error is not None
    assert h.last_error.startswith("SMTP 535 5.7.8 Authentication failed for ops (***)")
    for text in (h.last_error, str(rows), caplog.text):
        assert echoed not in text
        assert echoed.rstrip("=") not in text
        assert password not in text


async def test_email_over_implicit_tls_smtps(tmp_path: Path) -> None:
    with SmtpPeer(tmp_path, implicit_tls=True) as peer:
        n = Notifier(tmp_path / "o.sqlite", [mail_receiver(peer)], env=mail_env(peer))
        async with running(n):
            n.enqueue([note(1, severity="P0")])
            (mail,) = await peer.mails.until(lambda m: len(m) == 1)
    assert peer.url.startswith("smtps://")
    assert mail.tls
    assert mail.login == b"ops"
    assert_wire_format(mail.raw)


async def test_email_never_goes_in_clear_text(tmp_path: Path) -> None:
    with SmtpPeer(tmp_path, starttls=False) as peer:
        n = Notifier(tmp_path / "o.sqlite", [mail_receiver(peer)], env=mail_env(peer))
        async with running(n):
            n.enqueue([note(1, severity="P0")])
            await n.wait_for(lambda: n.health()[0].failing)
            (h,) = n.health()
    assert h.last_error == "the SMTP server does not offer STARTTLS"
    assert len(peer.mails) == 0
    assert len(peer.refused) == 0


# -- SMS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "encoding", "parts"), [
    ("a" * 160, "GSM-7", 1),
    ("a" * 161, "GSM-7", 2),
    ("a" * 306, "GSM-7", 2),
    ("a" * 307, "GSM-7", 3),
    ("€" * 80, "GSM-7", 1),  # an extension character counts two septets
    ("€" * 81, "GSM-7", 2),
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # the escape pair never straddles two parts
    ("é" * 160, "GSM-7", 1),  # é is in the GSM-7 basic table
    ("a" * 69 + "…", "UCS-2", 1),  # one character outside GSM-7: UCS-2, 70 a segment
    ("a" * 70 + "…", "UCS-2", 2),
    ("a" * 133 + "…", "UCS-2", 2),  # 67 per part
    ("a" * 134 + "…", "UCS-2", 3),
    ("😀" * 35, "UCS-2", 1),  # an emoji is two UTF-16 units
    ("a" + "😀" * 35, "UCS-2", 2),
    ("a" * 66 + "😀" * 34, "UCS-2", 3),  # 134 units, but a surrogate pair never straddles
])
def test_segments_as_twilio_counts_them(text: str, encoding: str, parts: int) -> None:
    got = sms.segments(text)
    assert (got.encoding, got.parts) == (encoding, parts)


def test_sms_text_stays_in_gsm7_within_two_segments_cause_first() -> None:
    n = replace(note(1, severity="P0"), target="payments-webhook",
                summary="Stripe webhooks failing — payments not processing “now” " * 4,
                detail="mean(webhook_failures_per_s, 1m) = 3.2 (> 0) … see the runbook " * 4)
    text = sms.sms_text([n, note(2)])
    seg = sms.segments(text)
    assert (seg.encoding, seg.parts) == ("GSM-7", 2)
    assert text.endswith("...")
    assert "…" not in text
    first = text[:153]
    assert first.startswith("CRITICAL P0 payments-webhook: mean(webhook_failures_per_s, 1m)")
    # a 147-character alert (the issue's) is one or two GSM-7 segments, never three
    short = replace(note(3), detail="p95_ms = 2300 (> 2000) … degraded " + "x" * 80)
    assert sms.segments(sms.sms_text([short])).parts <= 2
    assert sms.to_gsm("“Ärger” — 5 € … ✔") == "\"Ärger\" - 5 € ... OK"
    assert sms.cut("€" * 200, 1) == "€" * 78 + "..."  # 156 + 3 septets


def test_a_resolved_message_says_what_the_cause_was_not_that_it_is() -> None:
    from console.engine.alerting.receivers.base import notification_lines

    fired = replace(note(1, severity="P0"), cause="connection refused (10.0.0.5:443)")
    resolved = replace(fired, transition="resolved")
    assert sms.sms_text([fired]).startswith("CRITICAL P0 api: connection refused")
    assert sms.sms_text([resolved]).startswith("RESOLVED P0 api: was connection refused")
    assert "Why: connection refused (10.0.0.5:443)" in notification_lines(fired)
    assert "Was: connection refused (10.0.0.5:443)" in notification_lines(resolved)


class _LocalTwilio:
    """Twilio's own HTTP client, pointed at the local peer instead of api.twilio.com."""

    def __init__(self, base: str) -> None:
        from twilio.http.http_client import TwilioHttpClient

        class Client(TwilioHttpClient):
            def request(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
                return super().request(method, url.replace("https://api.twilio.com", base),
                                       *args, **kw)

        self.client = Client()


async def test_sms_request_is_what_the_twilio_library_sends(tmp_path: Path) -> None:
    from twilio.rest import Client

    with TwilioPeer() as peer:
        body = sms.sms_text([note(1, severity="P0")])
        official = Client(peer.sid, peer.token,
                          http_client=_LocalTwilio(peer.base).client)
        msg = await asyncio.to_thread(
            official.messages.create, to="+14155550101", from_="+14155550100", body=body)
        assert msg.status == "queued"  # the library took the peer's answer as Twilio's
        (theirs,) = peer.requests.items

        r = receiver(name="sms", kind="twilio", url=peer.base, account_sid="${TWILIO_SID}",
                     auth_token="${TWILIO_TOKEN}", sms_from="${TWILIO_FROM}",
                     sms_to="${ONCALL_PHONE}", severities=["P0"])
        env = {"TWILIO_SID": peer.sid, "TWILIO_TOKEN": peer.token,
               "TWILIO_FROM": "+14155550100", "ONCALL_PHONE": "+14155550101"}
        n = Notifier(tmp_path / "o.sqlite", [r], env=env)
        async with running(n):
            assert n.enqueue([note(2, severity="P1"), note(1, severity="P0")]) == 1
            await until_sent(n, "sms", 1)
        ours = peer.requests.items[1]
    assert (ours.method, ours.path) == (theirs.method, theirs.path)
    assert ours.basic_auth == theirs.basic_auth == (peer.sid, peer.token)
    assert ours.form == theirs.form
    assert ours.headers["Content-Type"] == theirs.headers["Content-Type"]


async def test_sms_to_a_number_twilio_refuses_is_failed_not_retried_for_ever(
        tmp_path: Path) -> None:
    with TwilioPeer() as peer:
        r = receiver(name="sms", kind="twilio", url=peer.base, account_sid=peer.sid,
                     auth_token="${T}", sms_from="+14155550100", sms_to="${TO}")
        n = Notifier(tmp_path / "o.sqlite", [r], env={"T": peer.token, "TO": "0171 555"},
                     backoff_first=0.01)
        async with running(n):
            n.enqueue([note(1, severity="P0")])
            await n.wait_for(lambda: n.health()[0].failed == 1)
            (h,) = n.health()
            (row,) = n.outbox.rows("sms")
        assert len(peer.requests) == 0  # checked before anything is sent
        assert h.last_error == "sms_to is not an E.164 number (+ and up to 15 digits)"
        assert (row["status"], row["attempts"]) == ("failed", 5)


# -- Slack -------------------------------------------------------------------------------------


@pytest.fixture
def slack_peer() -> Iterator[SlackPeer]:
    with SlackPeer() as peer:
        yield peer


def evil(i: int, severity: str = "P0") -> Notification:
    return replace(note(i, severity=severity), summary="API down <!channel> @here",
                   detail="<!here> & <@U0AAA> <http://x|click> @everyone \x1b[2J",
                   target="api<!channel>")


async def test_slack_webhook_and_bot_payloads_pass_block_kit_and_never_mention(
        tmp_path: Path, slack_peer: SlackPeer) -> None:
    now = [HOUR0 + 10]
    receivers = [
        receiver(name="hook", kind="slack", url="${SLACK_WEBHOOK_URL}", group_wait="0s",
                 digest="1h", logs_url="https://logs.example/x"),
        receiver(name="bot", kind="slack", token="${SLACK_BOT_TOKEN}", url="${SLACK_API}",
                 channel="#production-alerts", metrics_url="https://m.example/"),
    ]
    env = {"SLACK_WEBHOOK_URL": slack_peer.hook, "SLACK_BOT_TOKEN": SlackPeer.TOKEN,
           "SLACK_API": slack_peer.api}
    n = Notifier(tmp_path / "o.sqlite", receivers, env=env, clock=lambda: now[0])
    async with running(n):
        p3 = [replace(evil(i, "P3"), at=now[0]) for i in range(3, 60)]  # a 57-alert digest
        n.enqueue([evil(1), evil(2, "P1"), *p3])
        now[0] = HOUR0 + 3601
        n.wake()
        hooks = await slack_peer.hook_posts.until(lambda m: len(m) == 3)
        posts = await slack_peer.posts.until(lambda m: len(m) == 59)
    rejected = [r for r in slack_peer.requests if b'"ok":false' in r.body]
    assert rejected == []
    for msg in [*hooks, *(m for _, m in posts)]:
        wire = str(msg)
        assert "<!channel>" not in wire
        assert "<!here>" not in wire
        assert "<@U0AAA>" not in wire
        assert "@here" not in wire
        assert "@everyone" not in wire
        assert "\x1b" not in wire
    assert "&lt;!channel&gt;" in hooks[0]["text"]  # escaped, visible, inert
    digest = hooks[2]
    assert digest["text"].startswith("ℹ️ Digest: 57 alerts")
    assert len(digest["blocks"]) <= 50
    assert {ch for ch, _ in posts} == {"C0ALERTS"}


async def test_slack_bot_honours_429_retry_after_and_mentions_only_p0_when_asked(
        tmp_path: Path) -> None:
    with SlackPeer(limit_first=1) as slack_peer:
        await _bot_with_mentions(tmp_path, slack_peer)


async def _bot_with_mentions(tmp_path: Path, slack_peer: SlackPeer) -> None:
    r = receiver(name="bot", kind="slack", token="${TOKEN}", url=slack_peer.api,
                 channel="C0ALERTS", mention_p0="here")
    n = Notifier(tmp_path / "o.sqlite", [r], env={"TOKEN": SlackPeer.TOKEN})
    async with running(n):
        n.enqueue([note(1, severity="P0"), note(2, severity="P1"), evil(3)])
        posts = await slack_peer.posts.until(lambda m: len(m) == 3)
    calls = [x for x in slack_peer.requests if x.path == "/api/chat.postMessage"]
    assert calls[1].at - calls[0].at >= 0.85  # Retry-After: 1, with 150 ms tolerance
    texts = [m["text"] for _, m in posts]
    assert texts[0].startswith("<!here> 🔴 CRITICAL: Rule 1")  # the route asked, for P0
    assert "<!here>" not in texts[1]
    assert texts[2].startswith("<!here> ")
    assert texts[2].count("<!") == 1


async def test_incident_channel_invites_responders_and_status_updates_reach_both_channels(
        tmp_path: Path, slack_peer: SlackPeer) -> None:
    r = receiver(name="bot", kind="slack", token="${TOKEN}", url=slack_peer.api,
                 channel="#production-alerts", incident_channels=True,
                 responders=["U0AAA", "${SECOND_RESPONDER}"], status_channel="#general")
    env = {"TOKEN": SlackPeer.TOKEN, "SECOND_RESPONDER": "U0BBB"}
    delivered: list[Any] = []
    n = Notifier(tmp_path / "o.sqlite", [r], env=env,
                 on_delivered=lambda b, o: delivered.append((b.kind, dict(o.result))))
    started_at = 1_737_381_600.0  # 2025-01-20 14:00 UTC
    incident = {"incident": "INC-20250120-1400-3fa9", "title": "API returning 500s (api)",
                "severity": "P0", "started": started_at, "alerts": ["api-5xx/api"]}
    async with running(n):
        assert n.incident_opened(incident) == 1
        assert n.incident_opened(incident) == 0  # once per incident
        n.status_update({**incident, "text": "Rolled back v1.5.2 <!channel>; errors falling",
                         "actor": "ana", "at": started_at + 600, "entry": "e1"})
        n.status_update({**incident, "severity": "P2", "user_facing": False,
                         "text": "internal only", "actor": "ana", "entry": "e2"})
        posts = await slack_peer.posts.until(lambda m: len(m) == 4)
    name = "incident-2025-01-20-api-returning-500s-api-3fa9"
    assert slack_peer.created.items == [name]
    cid = next(c["id"] for c in slack_peer.channels.values() if c["name"] == name)
    assert sorted(slack_peer.invited.items) == [(cid, "U0AAA"), (cid, "U0BBB")]
    assert [ch for ch, _ in posts] == [cid, cid, "C0GENERAL", cid]
    assert posts[0][1]["text"] == "🔴 CRITICAL: API returning 500s (api)"
    status = posts[1][1]
    assert "Rolled back v1.5.2 &lt;!channel&gt;" in status["text"]
    assert posts[3][1]["blocks"][1]["text"]["text"] == "internal only"
    assert ("incident_channel", {"channel_id": cid, "name": name}) in delivered


async def test_incident_channel_resent_after_a_crash_finds_the_channel_it_made(
        tmp_path: Path, slack_peer: SlackPeer) -> None:
    from console.engine.alerting.receivers.slack import incident_channel_name

    r = receiver(name="bot", kind="slack", token="${TOKEN}", url=slack_peer.api,
                 channel="#production-alerts", incident_channels=True, responders=["U0AAA"])
    incident = {"incident": "INC-20250120-1400-beef", "title": "DB down", "severity": "P1",
                "started": 1_737_381_600.0}
    name = incident_channel_name("INC-20250120-1400-beef", "DB down", 1_737_381_600.0)
    slack_peer.channels["C0EARLIER"] = {"id": "C0EARLIER", "name": name, "members": set()}
    n = Notifier(tmp_path / "o.sqlite", [r], env={"TOKEN": SlackPeer.TOKEN})
    async with running(n):
        n.incident_opened(incident)
        await until_sent(n, "bot", 1)
    assert slack_peer.created.items == []  # name_taken: the earlier one is used
    assert slack_peer.invited.items == [("C0EARLIER", "U0AAA")]


# -- PagerDuty ---------------------------------------------------------------------------------


async def test_pagerduty_trigger_acknowledge_resolve_one_dedup_key_with_backoff(
        tmp_path: Path) -> None:
    with PagerDutyPeer(limit_first=1) as peer:
        r = receiver(name="pd", kind="pagerduty", url=f"{peer.base}/v2/enqueue",
                     routing_key="${PD_KEY}", severities=["P0", "P1"], rate=2,
                     logs_url="https://logs.example/x")
        n = Notifier(tmp_path / "o.sqlite", [r], env={"PD_KEY": peer.routing_key},
                     backoff_first=0.2)
        fired = note(1, severity="P0")
        async with running(n):
            n.enqueue([fired, replace(fired, key="r1/api/flapping/1", transition="flapping"),
                       replace(fired, key="r1/api/acknowledged/1.0",
                               transition="acknowledged", detail="acknowledged by ana"),
                       replace(fired, key="r1/api/resolved/1", transition="resolved"),
                       note(2, severity="P2")])
            events = await peer.accepted.until(lambda e: len(e) == 3)
            await until_sent(n, "pd", 3)
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["dedup_key"] for e in events} == {"r1/api/1"}
    trigger = events[0]
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "api"
    assert trigger["links"] == [{"href": "https://logs.example/x", "text": "Logs"}]
    first, second = peer.requests.items[:2]
    assert second.at - first.at >= 0.2 - 0.05  # the 429 backed off
    with pytest.raises(ValueError, match="120 events a minute"):
        receiver(name="pd", kind="pagerduty", routing_key="${K}", rate=5)


# -- the generic webhook --------------------------------------------------------------------------


async def test_webhook_payload_is_versioned_and_carries_the_idempotency_key(
        tmp_path: Path) -> None:
    with WebhookPeer() as peer:
        r = receiver(name="hook", kind="webhook", url=f"{peer.base}/ok")
        n = Notifier(tmp_path / "o.sqlite", [r])
        async with running(n):
            n.enqueue([note(1)])
            (req,) = await peer.requests.until(lambda x: len(x) == 1)
    body = req.json
    assert (body["version"], body["kind"], body["key"]) == (1, "notification",
                                                            "r1/api/firing/1")
    assert req.headers["Idempotency-Key"] == "r1/api/firing/1"
    assert set(Notification.__dataclass_fields__) <= set(body)


# -- the daily summary ----------------------------------------------------------------------------

DAY0 = 1_800_000_000.0 - 1_800_000_000.0 % 86400  # a UTC midnight


async def test_daily_summary_every_day_at_its_time_quiet_or_not(tmp_path: Path) -> None:
    """Simulated time: the summary goes at 08:00 with the P3s batched since the last one,
    the next day's too though nothing happened, one covering the days the console was down,
    and a restart never sends one twice."""
    now = [DAY0 + 7 * 3600]
    with WebhookPeer() as hook:
        r = receiver(name="hook", kind="webhook", url=f"{hook.base}/ok", summary_at="08:00")
        db = tmp_path / "o.sqlite"

        def notifier() -> Notifier:
            return Notifier(db, [r], clock=lambda: now[0])

        def summaries() -> list[dict[str, Any]]:
            return [x.json for x in hook.requests if x.json.get("kind") == "summary"]

        n = notifier()
        async with running(n):
            p3 = [replace(note(i, severity="P3"), at=now[0]) for i in (1, 2)]
            assert n.enqueue([*p3, note(3, severity="P1")]) == 3  # P3s wait for the summary
            await hook.requests.until(lambda x: len(x) == 1)  # the P1 at once
            assert n.health()[0].collected == 2
            now[0] = DAY0 + 8 * 3600 + 1
            n.wake()
            await hook.requests.until(lambda x: len(x) == 2)
            await until_sent(n, "hook", 4)  # the P1, the summary and the two it includes
            first = summaries()[0]
            assert first["batched"]["count"] == 2
            assert [a["rule"] for a in first["batched"]["alerts"]] == ["r1", "r2"]
            assert first["period"]["end"] == "2027-01-15T08:00:00Z"
            assert first["quiet"] is False
            now[0] = DAY0 + 86400 + 8 * 3600 + 5  # a day without anything
            n.wake()
            await hook.requests.until(lambda x: len(x) == 3)
            await until_sent(n, "hook", 5)
            assert summaries()[1]["quiet"] is True
            assert summaries()[1]["batched"]["count"] == 0
        now[0] = DAY0 + 4 * 86400 + 9 * 3600  # down for two days, back at 09:00
        again = notifier()
        async with running(again):
            await hook.requests.until(lambda x: len(x) == 4)
            await until_sent(again, "hook", 6)
        late = summaries()[2]
        assert (late["period"]["start"], late["period"]["end"]) == (
            "2027-01-16T08:00:00Z", "2027-01-19T08:00:00Z")
        third = notifier()
        async with running(third):
            third.wake()
            assert await third.prepare_summary("hook") is None  # nothing is due: none twice
        assert len(summaries()) == 3
        keys = [x.headers["Idempotency-Key"] for x in hook.requests][1:]
        assert keys == ["summary:hook:2027-01-15T08:00:00Z", "summary:hook:2027-01-16T08:00:00Z",
                        "summary:hook:2027-01-19T08:00:00Z"]


def test_validate_reports_unset_receiver_variables_and_non_e164_numbers(tmp_path: Path) -> None:
    from console.engine.config.loader import validate_file

    config = tmp_path / "c.toml"
    config.write_text('''
[[alerting.receivers]]
name = "sms"
kind = "twilio"
account_sid = "${TWILIO_ACCOUNT_SID}"
auth_token = "${TWILIO_AUTH_TOKEN}"
sms_from = "${TWILIO_FROM}"
sms_to = "${ONCALL_PHONE}"

[[alerting.receivers]]
name = "mail"
kind = "email"
url = "smtp://smtp.example.com:587"
mail_from = "ops@example.com"
mail_to = ["${ONCALL_MAIL}"]
''')
    env = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t", "ONCALL_PHONE": "0171 555"}
    issues = {(i.key, i.line, i.message) for i in validate_file(config, env=env)}
    assert issues == {
        ("alerting.receivers[0].sms_from", 7, "environment variable TWILIO_FROM is not set"),
        ("alerting.receivers[0].sms_to", 8,
         "${ONCALL_PHONE} is '0171 555', not an E.164 number"),
        ("alerting.receivers[1].mail_to[0]", 15,
         "environment variable ONCALL_MAIL is not set"),
    }
    env |= {"TWILIO_FROM": "+14155550100", "ONCALL_PHONE": "+14155550101",
            "ONCALL_MAIL": "oncall@example.com"}
    assert validate_file(config, env=env) == []
    with pytest.raises(ValueError, match="not an E.164 number"):
        receiver(name="s", kind="twilio", account_sid="AC1", auth_token="${T}",
                 sms_from="+1 415 555", sms_to="+14155550101")
