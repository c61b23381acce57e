"""End to end: an alert firing in `opsconsole run --headless` (a real subprocess) reaches every
real peer — aiosmtpd with STARTTLS and AUTH, Twilio's Messages API, Slack's Web API (the
incident channel and a status update written by another console), PagerDuty's Events API,
a webhook — and the daily summary goes out at its time; a kill -9 mid-send loses nothing;
a full or read-only data disk neither stops the console nor loses a notification."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from console.engine.storage.journal import Journal
from tests.peers import PagerDutyPeer, SlackPeer, SmtpPeer, TwilioPeer, WebhookPeer


def until(predicate: object, *, what: str, within: float = 30.0) -> None:
    """Until `predicate()` holds. Another process's SQLite file gives no event to wait on,
    so this polls it, in 50 ms steps, as a last resort; the bound is on a hang."""
    deadline = time.monotonic() + within
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {within:g} s: {what}"
        time.sleep(0.05)

ROOT = Path(__file__).resolve().parents[1]

TARGET = """
[[targets]]
name = "api"
kind = "http"
url = "http://127.0.0.1:9/health"
interval = "1s"
timeout = "1s"

[[rules]]
name = "api-down"
expr = "down"
severity = "P0"
failure_threshold = 1
summary = "API down"

[alerting]
default_rules = false
"""


class Headless:
    """`opsconsole run --headless` with its stderr read line by line (a watchdog kills it if
    an expected line never comes: no sleeping)."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console", "run", "--headless", "--config", str(config)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
        self.err = b""
        self.out: list[dict[str, object]] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(b"{"):
                self.out.append(orjson.loads(line))

    def until(self, needle: bytes, within: float = 30.0) -> bytes:
        assert self.proc.stderr is not None
        timer = threading.Timer(within, self.proc.kill)
        timer.start()
        try:
            while needle not in self.err:
                line = self.proc.stderr.readline()
                if not line:
                    raise AssertionError(f"{needle!r} never printed; stderr:\n"
                                         f"{self.err.decode(errors='replace')}")
                self.err += line
        finally:
            timer.cancel()
        return self.err

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def run_headless() -> Iterator[list[Headless]]:
    started: list[Headless] = []
    yield started
    for h in started:
        h.kill()


def _in(seconds: float) -> str:
    """The UTC time of day `seconds` from now, as summary_at takes it (far enough ahead
    that the console has started, on a loaded machine, before the moment comes)."""
    return time.strftime("%H:%M:%S", time.gmtime(time.time() + seconds))


def test_every_receiver_from_an_alert_firing_in_run_headless(
        tmp_path: Path, run_headless: list[Headless]) -> None:
    data = tmp_path / "data"
    with SmtpPeer(tmp_path) as smtp, TwilioPeer() as twilio, SlackPeer() as slack, \
            PagerDutyPeer() as pd, WebhookPeer() as hook:
        config = tmp_path / "config.toml"
        config.write_text(f'[console]\ndata_dir = "{data}"\n' + TARGET + f'''
[[alerting.receivers]]
name = "email"
kind = "email"
url = "${{SMTP_URL}}"
mail_from = "opsconsole@example.com"
mail_to = ["${{ONCALL_MAIL}}"]
smtp_user = "ops"
smtp_password = "${{SMTP_PASSWORD}}"
ca_file = "{smtp.ca_file}"
severities = ["P0", "P1"]
summary_at = "{_in(15)}"
rate = 20

[[alerting.receivers]]
name = "sms"
kind = "twilio"
url = "{twilio.base}"
account_sid = "${{TWILIO_ACCOUNT_SID}}"
auth_token = "${{TWILIO_AUTH_TOKEN}}"
sms_from = "${{TWILIO_FROM}}"
sms_to = "${{ONCALL_PHONE}}"
severities = ["P0"]

[[alerting.receivers]]
name = "slack"
kind = "slack"
url = "{slack.api}"
token = "${{SLACK_BOT_TOKEN}}"
channel = "#production-alerts"
mention_p0 = "here"
incident_channels = true
responders = ["U0AAA", "U0BBB"]
status_channel = "#general"
rate = 20

[[alerting.receivers]]
name = "pagerduty"
kind = "pagerduty"
url = "{pd.base}/v2/enqueue"
routing_key = "${{PAGERDUTY_ROUTING_KEY}}"
severities = ["P0"]

[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{hook.base}/ok"
summary_at = "{_in(15)}"
rate = 20
''')
        env = {"SMTP_URL": smtp.url, "ONCALL_MAIL": "oncall@example.com",
               "SMTP_PASSWORD": "pw", "TWILIO_ACCOUNT_SID": twilio.sid,
               "TWILIO_AUTH_TOKEN": twilio.token, "TWILIO_FROM": "+14155550100",
               "ONCALL_PHONE": "+14155550101", "SLACK_BOT_TOKEN": SlackPeer.TOKEN,
               "PAGERDUTY_ROUTING_KEY": pd.routing_key}
        valid = subprocess.run([sys.executable, "-m", "console", "validate", "--config",
                                str(config)], cwd=ROOT, capture_output=True, timeout=60,
                               env={**os.environ, **env})
        assert valid.returncode == 0, valid.stdout + valid.stderr
        h = Headless(config, env)
        run_headless.append(h)
        h.until(b"running headless")

        (mail,) = smtp.mails.wait(lambda m: len(m) == 1)
        assert mail.message["Subject"] == "CRITICAL P0: API down (api)"
        assert mail.tls
        (sms,) = twilio.requests.wait(lambda r: len(r) == 1)
        assert sms.form["To"] == ["+14155550101"]
        # severity, target and the cause (what the probe saw) lead the text
        assert sms.form["Body"][0].startswith("CRITICAL P0 api: connection refused")
        (_, alert), = slack.posts.wait(lambda p: len(p) == 1)
        assert alert["text"].startswith("<!here> 🔴 CRITICAL: API down")
        (trigger,) = pd.accepted.wait(lambda e: len(e) == 1)
        assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", "api-down/api/1")
        first = hook.requests.wait(lambda r: len(r) >= 1)[0]
        assert first.json["key"] == "api-down/api/firing/1"

        # Another console opens an incident and writes a status update in the same journal:
        # the headless owner makes the channel, invites, and posts the update (Slack) —
        async def journal_entries() -> None:
            j = Journal(data / "journal.jsonl")
            await asyncio.to_thread(j.open)
            await j.append({"type": "incident.open", "incident": "INC-20270115-0800-c0de",
                            "title": "API down", "severity": "P0", "started": time.time(),
                            "alerts": ["api-down/api"], "playbooks": []})
            await j.append({"type": "incident.status", "incident": "INC-20270115-0800-c0de",
                            "text": "Rolling back the deploy"})
            await j.close()

        asyncio.run(journal_entries())
        posts = slack.posts.wait(lambda p: len(p) == 4)
        (created,) = slack.created.items
        assert created.startswith("incident-")
        assert created.endswith("-api-down-c0de")
        assert len(slack.invited.items) == 2
        assert [p[1]["text"].split(":")[0] for p in posts[1:]] == [
            "🔴 CRITICAL", "🔴 Status update", "🔴 Status update"]
        assert {p[0] for p in posts[2:]} == {"C0GENERAL", slack.channels[
            next(k for k, c in slack.channels.items() if c["name"] == created)]["id"]}

        # — and at summary_at, the daily summary, by email and webhook, quiet or not.
        mails = smtp.mails.wait(lambda m: len(m) == 2, within=40)
        summary_mail = mails[1]
        assert summary_mail.message["Subject"].startswith("Daily summary ")
        text = summary_mail.part("plain")
        assert "| P0 | 1 |" in text  # the alert that fired, by severity
        assert "API down" in text  # the incident another console opened
        summary = next(r.json for r in hook.requests.wait(
            lambda rs: any(r.json.get("kind") == "summary" for r in rs), within=40)
            if r.json.get("kind") == "summary")
        assert summary["alerts"]["total"] == 1
        assert [i["id"] for i in summary["incidents"]["open"]] == ["INC-20270115-0800-c0de"]
        assert [u["target"] for u in summary["uptime"]] == ["api"]
        assert summary["uptime"][0]["pct"] == 0.0
        assert h.stop() == 0
    # `report --format json` prints the same document
    report = subprocess.run(
        [sys.executable, "-m", "console", "report", "--since", "1d", "--format", "json",
         "--config", str(config)], cwd=ROOT, capture_output=True, timeout=60,
        env={**os.environ, **env})
    assert report.returncode == 0, report.stderr
    printed = orjson.loads(report.stdout)
    assert set(printed) == set(summary) - {"kind"}
    assert printed["incidents"]["open"][0]["id"] == "INC-20270115-0800-c0de"
    assert printed["alerts"]["total"] == 1
    # every data file private
    for p in data.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_kill_9_mid_send_loses_nothing_and_resends_under_the_same_key(
        tmp_path: Path, run_headless: list[Headless]) -> None:
    data = tmp_path / "data"
    config = tmp_path / "config.toml"
    with WebhookPeer() as hook:
        def write(route: str) -> None:
            config.write_text(f'[console]\ndata_dir = "{data}"\n' + TARGET + f'''
[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{hook.base}/{route}"
timeout = "30s"
''')
        write("hang")
        h = Headless(config, {})
        run_headless.append(h)
        h.until(b"running headless")
        (held,) = hook.requests.wait(lambda r: len(r) == 1)  # the peer holds the request
        h.proc.kill()  # kill -9 while the send is in flight
        h.proc.wait()
        write("ok")
        again = Headless(config, {})
        run_headless.append(again)
        again.until(b"running headless")
        resent = hook.requests.wait(lambda r: len(r) == 2)[1]
        assert resent.path == "/ok"
        assert resent.headers["Idempotency-Key"] == held.headers["Idempotency-Key"] == \
            "api-down/api/firing/1"
        # The peer counts the request before the sender reads the answer and marks the row:
        # stop once the row says sent (a stop in between would leave it to send again).
        outbox = sqlite3.connect(data / "outbox.sqlite", timeout=5)
        try:
            until(lambda: outbox.execute("SELECT status FROM outbox").fetchall() == [("sent",)],
                  what="the resent notification marked sent")
        finally:
            outbox.close()
        assert again.stop() == 0
        hook.release.set()
    rows = sqlite3.connect(data / "outbox.sqlite").execute(
        "SELECT key, status FROM outbox").fetchall()
    assert rows == [("api-down/api/firing/1", "sent")]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: root can fill it, and remount it read-only (a read-only directory
    would not stop root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                           capture_output=True, text=True, timeout=10)
    assert mount.returncode == 0, f"cannot mount a small tmpfs: {mount.stderr}"
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_run_headless_on_a_full_disk_sends_from_memory_and_saves_when_space_returns(
        small_disk: Path, tmp_path: Path, run_headless: list[Headless]) -> None:
    data = small_disk / "data"
    config = tmp_path / "config.toml"
    with WebhookPeer() as hook:
        config.write_text(f'[console]\ndata_dir = "{data}"\n' + TARGET + f'''
[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{hook.base}/ok"
''')
        data.mkdir()
        filler = _fill(small_disk)
        h = Headless(config, {})
        run_headless.append(h)
        err = h.until(b"running headless")
        assert b"notifications are kept in memory and sent from there" in err
        (req,) = hook.requests.wait(lambda r: len(r) == 1)  # sent all the same
        assert req.json["key"] == "api-down/api/firing/1"
        filler.unlink()
        h.until(b"saved again")
        assert h.stop() == 0
    rows = sqlite3.connect(data / "outbox.sqlite").execute(
        "SELECT key, status FROM outbox").fetchall()
    assert rows == [("api-down/api/firing/1", "sent")]  # stored, and not sent again


def test_run_headless_on_a_read_only_disk_monitors_and_notifies(
        small_disk: Path, tmp_path: Path, run_headless: list[Headless]) -> None:
    data = small_disk / "data"
    data.mkdir(mode=0o700)
    (data / "journal.jsonl").touch(mode=0o600)
    ro = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True,
                        text=True, timeout=10)
    assert ro.returncode == 0, ro.stderr
    config = tmp_path / "config.toml"
    with WebhookPeer() as hook:
        config.write_text(f'[console]\ndata_dir = "{data}"\n' + TARGET + f'''
[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{hook.base}/ok"
''')
        h = Headless(config, {})
        run_headless.append(h)
        err = h.until(b"running headless")
        assert b"Read-only file system" in err
        assert b"incident journal unavailable" in err
        hook.requests.wait(lambda r: len(r) == 1)
        assert h.out[0]["key"] == "api-down/api/firing/1"
        assert h.stop() == 0
