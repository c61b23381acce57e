"""The notification outbox against real local receivers: failing, rate-limited and hanging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from console.engine.alerting.lifecycle import Notification
from console.engine.alerting.notify import Notifier, retry_after
from console.engine.alerting.receivers.base import iso
from console.engine.alerting.receivers.slack import payload as slack_payload
from console.engine.config.rules import Receiver
from tests.peers import SmtpPeer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Hits:
    got: dict[str, list[tuple[float, str, Any]]] = field(default_factory=dict)
    fail_first: int = 2
    limit_first: int = 1

    def add(self, route: str, key: str, body: Any) -> int:
        self.got.setdefault(route, []).append((time.monotonic(), key, body))
        return len(self.got[route])

    def keys(self, route: str) -> list[str]:
        return [k for _, k, _ in self.got.get(route, [])]


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Hits]]:
    hits = Hits()

    async def handle(request: web.Request) -> web.Response:
        route = request.match_info["route"]
        n = hits.add(route, request.headers.get("Idempotency-Key", ""),
                     orjson.loads(await request.read()))
        if route == "fail" and n <= hits.fail_first:
            return web.Response(status=500, text="boom")
        if route == "limited" and n <= hits.limit_first:
            return web.Response(status=429, headers={"Retry-After": "1"})
        if route == "hang":
            await asyncio.sleep(30)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{route}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", hits
    await runner.cleanup()


def note(i: int, transition: str = "firing", severity: str = "P1") -> Notification:
    return Notification(
        key=f"r{i}/api/{transition}/1", transition=transition, rule=f"r{i}", target="api",
        severity=severity, labels=(("service", "app"),), summary=f"Rule {i}", runbook="rb",
        expr="error_pct > 5", threshold="> 5", value=12.5, detail="error_pct = 12.5 (> 5)",
        at=1_800_000_000.0, group="service=app", incident=1)


def recv(name: str, url: str, **kw: Any) -> Receiver:
    return Receiver.model_validate({"name": name, "kind": "webhook", "url": url, **kw})


async def until(cond: Any, limit: float = 8.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_failing_limited_and_hanging_receivers(tmp_path: Path,
                                                     receiver: tuple[str, Hits]) -> None:
    base, hits = receiver
    receivers = [
        recv("ok", f"{base}/ok", rate=20),
        recv("fail", f"{base}/fail", rate=20),
        recv("limited", f"{base}/limited", rate=20),
        recv("hang", f"{base}/hang", rate=20, timeout="0.5s"),
        Receiver.model_validate({"name": "slack", "kind": "slack", "url": "${HOOK}",
                                 "rate": 20, "severities": ["P0", "P1"],
                                 "logs_url": "https://logs.example/x"}),
    ]
    n = Notifier(tmp_path / "outbox.sqlite", receivers, env={"HOOK": f"{base}/slack"},
                 backoff_first=0.1)
    await n.start()
    try:
        t0 = time.monotonic()
        notes = [note(1), note(1, "resolved"), note(2, severity="P3")]
        assert n.enqueue(notes) == 3 * 4 + 2  # slack takes P0/P1 only
        assert n.enqueue(notes) == 0  # the same transitions again: nothing new
        await until(lambda: len(hits.keys("ok")) == 3 and len(hits.keys("limited")) == 4
                    and len(hits.keys("fail")) == 5 and len(hits.keys("slack")) == 2)
        want = [x.key for x in notes]
        # in order, each once, whatever failed on the way
        assert hits.keys("ok") == want
        assert hits.keys("fail") == [want[0], want[0], want[0], want[1], want[2]]
        assert hits.keys("limited") == [want[0], *want]
        # a hanging receiver holds up nobody: the first delivery came well before its timeout
        assert hits.got["ok"][0][0] - t0 < 0.4
        # Retry-After: 1 honoured (150 ms tolerance, as Alertmanager's acceptance tests)
        gap = hits.got["limited"][1][0] - hits.got["limited"][0][0]
        assert 0.85 <= gap <= 1.5, gap
        slack = hits.got["slack"][0][2]
        assert slack["text"] == "🟡 HIGH: Rule 1"
        assert [b["type"] for b in slack["blocks"]] == ["header", "section", "section",
                                                        "section", "actions"]
        assert hits.got["slack"][1][2]["text"].startswith("✅ RESOLVED")
        await until(lambda: any(h.name == "hang" and h.failing for h in n.health()))
        health = {h.name: h for h in n.health()}
        assert health["hang"].last_error == "no answer within 0.5s"
        assert health["hang"].pending == 3
        assert not health["fail"].failing
        assert health["fail"].sent == 3
    finally:
        await n.stop()


async def test_pacing_per_receiver(tmp_path: Path, receiver: tuple[str, Hits]) -> None:
    base, hits = receiver
    assert recv("x", base).rate == 1.0  # Slack's one message a second, by default
    n = Notifier(tmp_path / "o.sqlite", [recv("ok", f"{base}/ok", rate=5)])
    await n.start()
    try:
        n.enqueue([note(i) for i in range(5)])
        await until(lambda: len(hits.keys("ok")) == 5)
        times = [t for t, _, _ in hits.got["ok"]]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # Paced at the sender: five sends span four intervals. Arrivals jitter on a loaded
        # machine (one late arrival makes the next gap short), so each single gap is only
        # checked against no pacing at all (back-to-back sends are about a millisecond apart).
        assert times[-1] - times[0] >= 4 * 0.2 - 0.03, gaps
        assert min(gaps) >= 0.1, gaps
    finally:
        await n.stop()


async def test_restart_resends_pending_and_never_resends_sent(
        tmp_path: Path, receiver: tuple[str, Hits]) -> None:
    base, hits = receiver
    db = tmp_path / "o.sqlite"
    receivers = [recv("ok", f"{base}/ok", rate=50), recv("hook", "${HOOK}", rate=50)]
    a = Notifier(db, receivers, env={"HOOK": f"{base}/hang"})
    await a.start()
    notes = [note(1), note(2)]
    a.enqueue(notes)
    # The receiver counts a hit before the sender has read the answer and marked the row
    # sent: stop only once "ok" is marked, or a stop in between would (rightly) send it again
    # after the restart (at least once) and the test would see a duplicate it did not cause.
    await until(lambda: len(hits.keys("hang")) == 1 and [
        r["status"] for r in a.outbox.rows("ok")] == ["sent", "sent"])
    await a.stop()  # killed mid-send to the hanging receiver
    # the receiver is back (at another address); the console restarts on the same outbox
    b = Notifier(db, receivers, env={"HOOK": f"{base}/ok2"})
    assert b.enqueue(notes) == 0  # already known: not queued twice
    await b.start()
    try:
        await until(lambda: len(hits.keys("ok2")) == 2)
        await until(lambda: {r["status"] for r in b.outbox.rows()} == {"sent"})
        assert await b._next_due("hook") is None  # nothing left to send: nothing comes again
        assert hits.keys("ok2") == [x.key for x in notes]
        assert hits.keys("ok") == [x.key for x in notes]  # nothing sent twice
        statuses = {(r["receiver"], r["key"]): r["status"] for r in b.outbox.rows()}
        assert set(statuses.values()) == {"sent"}
    finally:
        await b.stop()


async def test_bounded_queue_drops_oldest_visibly(tmp_path: Path) -> None:
    n = Notifier(tmp_path / "o.sqlite", [recv("ok", "http://127.0.0.1:9/x", max_queue=2)])
    n.enqueue([note(i) for i in range(5)])
    (h,) = n.health()
    assert (h.pending, h.dropped) == (2, 3)
    rows = n.outbox.rows("ok")
    assert [r["status"] for r in rows] == ["dropped"] * 3 + ["pending"] * 2
    assert rows[0]["last_error"] == "queue full"
    await n.stop()


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    assert retry_after("3", now) == 3.0
    assert retry_after(formatdate(now + 10, usegmt=True), now) == pytest.approx(10.0)
    assert retry_after("soon", now) is None
    assert retry_after(None, now) is None


def test_slack_text_is_inert() -> None:
    evil = replace(note(1), detail="<!channel> \x1b[2J & <http://x|y>", summary="API\x07 down")
    r = Receiver.model_validate({"name": "s", "kind": "slack", "url": "${HOOK}"})
    body = orjson.dumps(slack_payload(evil, r)).decode()
    assert "<!channel>" not in body
    assert "&lt;!channel&gt;" in body
    assert "\\u001b" not in body
    assert "\\u0007" not in body


def test_receiver_schema() -> None:
    with pytest.raises(ValueError, match="secret"):
        Receiver.model_validate({"name": "s", "kind": "slack",
                                 "url": "https://hooks.slack.com/services/T/B/x"})
    with pytest.raises(ValueError, match="URL"):
        Receiver.model_validate({"name": "s", "kind": "webhook", "url": "ftp://x"})


_SENDER = """
import asyncio, sys
from console.engine.alerting.notify import Notifier
from console.engine.config.rules import Receiver
from tests.engine.test_notify import note

async def main():
    r = [Receiver(name="ok", kind="webhook", url=sys.argv[2], rate=50),
         Receiver(name="hook", kind="webhook", url=sys.argv[3], rate=50)]
    n = Notifier(sys.argv[1], r)
    n.enqueue([note(1), note(2)])
    await n.start()
    print("started", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def _sent(db: Path, receiver: str) -> int:
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM outbox WHERE receiver=? AND "
                               "status='sent'", (receiver,)).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        con.close()


async def test_sigkill_mid_send_loses_nothing_and_sends_nothing_twice(
        tmp_path: Path, receiver: tuple[str, Hits]) -> None:
    import signal
    import sys

    base, hits = receiver
    db = tmp_path / "o.sqlite"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SENDER, str(db), f"{base}/ok", f"{base}/hang", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        await until(lambda: len(hits.keys("ok")) == 2 and len(hits.keys("hang")) == 1)
        await until(lambda: _sent(db, "ok") == 2)  # the child recorded both 2xx answers
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # restarted, the hanging receiver now answers (same name, new address)
    again = [recv("ok", f"{base}/ok", rate=50), recv("hook", f"{base}/ok2", rate=50)]
    n = Notifier(db, again)
    await n.start()
    try:
        await until(lambda: len(hits.keys("ok2")) == 2)
        await until(lambda: {r["status"] for r in n.outbox.rows()} == {"sent"})
        assert await n._next_due("hook") is None  # nothing left to send: nothing comes again
        assert hits.keys("ok2") == ["r1/api/firing/1", "r2/api/firing/1"]  # nothing lost
        assert hits.keys("ok") == ["r1/api/firing/1", "r2/api/firing/1"]  # nothing twice
    finally:
        await n.stop()


async def test_group_wait_sends_a_group_as_one_message(tmp_path: Path,
                                                       receiver: tuple[str, Hits]) -> None:
    base, hits = receiver
    # A group_wait far longer than the 0.1 s before the late note, so a loaded machine
    # cannot send the group before the late note joins it.
    receivers = [recv("ok", f"{base}/ok", rate=20, group_wait="1s"),
                 Receiver.model_validate({"name": "slack", "kind": "slack", "url": "${HOOK}",
                                          "rate": 20, "group_wait": "1s"})]
    n = Notifier(tmp_path / "o.sqlite", receivers, env={"HOOK": f"{base}/slack"})
    await n.start()
    try:
        t0 = time.monotonic()
        other = replace(note(9), group="service=billing")
        n.enqueue([note(1), note(2, severity="P0"), other])
        n.enqueue([note(3)])  # joins its group while the group waits
        await until(lambda: len(hits.keys("ok")) == 2 and len(hits.keys("slack")) == 2)
        first_t, first_key, first = hits.got["ok"][0]
        assert first_t - t0 >= 1.0 - 0.02  # held for group_wait
        assert first_key.startswith("group:")
        assert [x["key"] for x in first["notifications"]] == [
            "r1/api/firing/1", "r2/api/firing/1", "r3/api/firing/1"]
        assert hits.got["ok"][1][1] == "r9/api/firing/1"  # the other group, on its own
        slack = hits.got["slack"][0][2]
        assert slack["text"] == "🔴 CRITICAL: 3 alerts: service=app"  # worst severity leads
        assert len([b for b in slack["blocks"] if b["type"] == "section"]) == 3
        # The receiver records the hit before the sender reads the reply and marks the
        # row sent, so the outbox is checked once it settles, not at the moment of the hit.
        await until(lambda: {r["status"] for r in n.outbox.rows()} == {"sent"})
        assert {r["status"] for r in n.outbox.rows()} == {"sent"}
    finally:
        await n.stop()


# -- digests --------------------------------------------------------------------------------

HOUR0 = 1_800_000_000.0  # a whole number of hours since the epoch: a digest period starts here


def at(n: Notification, t: float) -> Notification:
    return replace(n, at=t)


async def test_digest_batches_p3_into_one_message_per_period(
        tmp_path: Path, receiver: tuple[str, Hits]) -> None:
    base, hits = receiver
    smtp = SmtpPeer(tmp_path).__enter__()
    now = [HOUR0 + 60]
    receivers = [
        recv("ok", f"{base}/ok", rate=50, digest="1h"),
        Receiver.model_validate({"name": "slack", "kind": "slack", "url": "${HOOK}",
                                 "rate": 50, "digest": "1h"}),
        Receiver.model_validate({
            "name": "mail", "kind": "email", "url": smtp.url, "rate": 50,
            "mail_from": "ops@example.com", "mail_to": ["team@example.com"],
            "smtp_user": "ops", "smtp_password": "${PW}", "ca_file": str(smtp.ca_file),
            "digest": "1h"}),
    ]
    n = Notifier(tmp_path / "o.sqlite", receivers, env={"HOOK": f"{base}/slack", "PW": "pw"},
                 clock=lambda: now[0])
    await n.start()
    try:
        p3 = [at(note(1, severity="P3"), now[0]), at(note(2, severity="P3"), now[0])]
        urgent = note(3, severity="P1")
        assert n.enqueue([*p3, urgent]) == 9
        # P1 is not digested: it goes out at once, to each receiver
        await until(lambda: hits.keys("ok") == [urgent.key] and len(smtp.mails) == 1
                    and hits.keys("slack") == [urgent.key])
        await until(lambda: {h.name: h.sent for h in n.health()} == {"ok": 1, "slack": 1,
                                                                     "mail": 1})
        now[0] = HOUR0 + 1200
        resolved = at(note(1, "resolved", severity="P3"), now[0])
        assert n.enqueue([resolved]) == 3
        n.wake()
        # nothing more before the period is over; the digest's rows wait in the outbox
        assert len(hits.keys("ok")) == 1
        assert len(smtp.mails) == 1
        assert {h.name: h.collected for h in n.health()} == {"ok": 3, "slack": 3, "mail": 3}

        now[0] = HOUR0 + 3600 + 1
        n.wake()
        await until(lambda: len(hits.keys("ok")) == 2 and len(hits.keys("slack")) == 2
                    and len(smtp.mails) == 2)
        key = f"digest:ok:{iso(HOUR0)}"
        assert key == "digest:ok:2027-01-15T08:00:00Z"
        assert hits.keys("ok")[1] == key
        body = hits.got["ok"][1][2]
        assert body["kind"] == "digest"
        assert body["period"] == {"start": "2027-01-15T08:00:00Z", "end": "2027-01-15T09:00:00Z"}
        assert body["counts"] == {"firing": 1, "resolved": 1}
        alerts = {a["rule"]: a for a in body["alerts"]}
        # resolved after firing within the period: shown resolved, with both transitions
        assert alerts["r1"]["state"] == "resolved"
        assert [x["transition"] for x in alerts["r1"]["transitions"]] == ["firing", "resolved"]
        assert alerts["r2"]["state"] == "firing"
        assert len(body["notifications"]) == 3

        slack = hits.got["slack"][1][2]
        assert hits.keys("slack")[1] == f"digest:slack:{iso(HOUR0)}"
        header = slack["blocks"][0]["text"]["text"]
        assert "Digest: 2 alerts, 2027-01-15 08:00–09:00 UTC" in header
        assert [f["text"] for f in slack["blocks"][1]["fields"]] == ["*Firing:*\n1",
                                                                     "*Resolved:*\n1"]
        sections = [b["text"]["text"] for b in slack["blocks"][2:]]
        assert len(sections) == 2  # one section per alert
        r1 = next(s for s in sections if "Rule 1" in s)
        assert r1.startswith("*RESOLVED* P3")
        assert "fired 08:01, resolved 08:20" in r1

        mail = smtp.mails.items[1]
        assert mail.message["Subject"].startswith("Digest: 2 alerts (1 firing, 1 resolved)")
        assert "RESOLVED: Rule 1" in mail.part("plain")
        assert "FIRING: Rule 2" in mail.part("plain")
        await until(lambda: {r["status"] for r in n.outbox.rows()} == {"sent"})
        assert len(hits.keys("ok")) == 2  # once
    finally:
        await n.stop()
        smtp.__exit__()


async def test_digest_survives_restarts_mid_period_and_mid_send(
        tmp_path: Path, receiver: tuple[str, Hits]) -> None:
    base, hits = receiver
    db = tmp_path / "o.sqlite"
    now = [HOUR0 + 10]
    receivers = [recv("hook", "${HOOK}", rate=50, digest="1h", timeout="5s")]

    def notifier(url: str) -> Notifier:
        return Notifier(db, receivers, env={"HOOK": url}, clock=lambda: now[0],
                        backoff_first=0.1)

    a = notifier(f"{base}/hang")
    await a.start()
    assert a.enqueue([at(note(1, severity="P3"), now[0])]) == 1
    await a.stop()  # restarted mid-period
    b = notifier(f"{base}/hang")
    assert b.enqueue([at(note(1, severity="P3"), now[0])]) == 0  # known: not collected twice
    now[0] = HOUR0 + 20
    assert b.enqueue([at(note(2, severity="P3"), now[0])]) == 1
    await b.start()
    now[0] = HOUR0 + 3601
    b.wake()
    await until(lambda: len(hits.keys("hang")) == 1)
    await b.stop()  # killed while the receiver holds the digest unanswered

    c = notifier(f"{base}/ok2")
    now[0] = HOUR0 + 3700
    assert c.enqueue([at(note(3, severity="P3"), now[0])]) == 1  # the next period's
    await c.start()
    try:
        await until(lambda: len(hits.keys("ok2")) == 1)
        # the same digest again, same key, nothing lost across two restarts
        assert hits.keys("ok2") == hits.keys("hang") == ["digest:hook:2027-01-15T08:00:00Z"]
        body = hits.got["ok2"][0][2]
        assert [x["rule"] for x in body["alerts"]] == ["r1", "r2"]
        await until(lambda: c.health()[0].sent == 2)
        assert c.health()[0].collected == 1  # r3 waits for 09:00-10:00
    finally:
        await c.stop()
    d = notifier(f"{base}/ok2")
    await d.start()
    try:
        # a sent digest is never due again: what waits is the next period's, in an hour
        head = d.outbox.digest_head("hook")
        assert head is not None
        assert head[0] == HOUR0 + 3600
        assert len(hits.keys("ok2")) == 1
    finally:
        await d.stop()


def test_digest_schema() -> None:
    assert recv("x", "http://127.0.0.1:9/x").digest == 0
    r = recv("x", "http://127.0.0.1:9/x", digest="1d")
    assert (r.digest, r.digest_severities) == (86400.0, ["P3"])
    with pytest.raises(ValueError, match="at least 1m"):
        recv("x", "http://127.0.0.1:9/x", digest="30s")
