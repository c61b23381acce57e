"""The notification parts of the UI: notifications only memory holds (a data disk that
refuses the outbox) shown on the Alerts screen with why, and a status update written on the
incident screen reaching Slack's incident and general channels."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Static

from console.app import OpsConsoleApp
from console.engine.alerting.notify import Notifier
from console.engine.config.loader import load_config
from console.engine.config.rules import Receiver
from console.screens.incidents import IncidentScreen
from tests.engine.test_notify import note
from tests.peers import SlackPeer, WebhookPeer
from tests.ui.apptools import http_config, wait_for, wait_screen
from tests.ui.test_alerts_screen import Host, service


async def test_alerts_screen_shows_notifications_kept_in_memory_and_why(
        tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data directory should be")
    notifier = Notifier(blocked / "outbox.sqlite", [Receiver.model_validate(
        {"name": "slack", "kind": "webhook", "url": "http://127.0.0.1:9/x"})])
    assert notifier.enqueue([note(1, severity="P0")]) == 1  # never started: it waits
    svc = service()
    svc.notifier = notifier
    app = Host(svc)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        title = str(app.screen.query_one("#alerts-title", Static).render())
    assert "⚠ 1 notification(s) kept in memory, not saved: notification outbox" in title
    assert "(File exists)" in title  # mkdir of a directory where a file is
    assert "✉ slack: P0 Rule 1 (api) firing · pending" in title


async def test_status_update_from_the_incident_screen_reaches_both_channels(
        tmp_path: Path, ui_env: None, monkeypatch: Any) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", SlackPeer.TOKEN)
    with SlackPeer() as slack:
        cfg = http_config(tmp_path / "config.toml", {"api": "http://127.0.0.1:9/health"},
                          extra=f'''
[console]
data_dir = "{tmp_path / "data"}"

[[alerting.receivers]]
name = "slack"
kind = "slack"
url = "{slack.api}"
token = "${{SLACK_BOT_TOKEN}}"
channel = "#production-alerts"
incident_channels = true
status_channel = "#general"
rate = 20
''')
        app = OpsConsoleApp(settings=load_config(cfg), history=False, poll=False)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await wait_for(pilot, lambda: app.runtime is not None
                           and app.runtime.desk is not None, 10, "incident desk")
            assert app.runtime is not None
            desk = app.runtime.desk
            assert desk is not None
            inc = await desk.open("Checkout failing", "P0")
            app.push_screen(IncidentScreen(inc.id))
            await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                           and app.screen.incident is not None, 5, "incident screen")
            await pilot.press("u")
            await wait_for(pilot, lambda: isinstance(app.focused, Input), 5, "the prompt")
            app.screen.query_one(Input).value = "Rolled back; checkout recovering"
            await pilot.press("enter")
            await wait_for(pilot, lambda: bool(inc.status_updates), 5, "journaled")
            assert "status update journaled; posted to Slack by slack" in [
                n.message for n in app._notifications]
            assert inc.step("communicate").done_at == inc.status_updates[0]["ts"]
            posts = await slack.posts.until(lambda p: len(p) == 3)
    assert inc.status_updates[0]["text"] == "Rolled back; checkout recovering"
    (created,) = slack.created.items
    cid = next(k for k, c in slack.channels.items() if c["name"] == created)
    # the incident channel opened, the update there, and (a P0 is user-facing) in #general
    assert [ch for ch, _ in posts] == [cid, cid, "C0GENERAL"]
    assert all("Rolled back; checkout recovering" in m["text"] for _, m in posts[1:])


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs remounted read-only (root ignores a read-only directory), with a data
    directory made before."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                           capture_output=True, text=True, timeout=10)
    assert mount.returncode == 0, f"cannot mount a small tmpfs: {mount.stderr}"
    try:
        (disk / "data").mkdir(mode=0o700)
        ro = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True,
                            text=True, timeout=10)
        assert ro.returncode == 0, ro.stderr
        yield disk / "data"
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


async def test_the_tui_starts_monitors_and_notifies_on_a_read_only_data_disk(
        tmp_path: Path, ui_env: None, read_only_disk: Path) -> None:
    with WebhookPeer() as hook:
        cfg = http_config(tmp_path / "config.toml", {"api": "http://127.0.0.1:9/health"},
                          extra=f'''
[console]
data_dir = "{read_only_disk}"

[[rules]]
name = "api-down"
expr = "down"
severity = "P0"
failure_threshold = 1

[alerting]
default_rules = false

[[alerting.receivers]]
name = "hook"
kind = "webhook"
url = "{hook.base}/ok"
''')
        app = OpsConsoleApp(settings=load_config(cfg))
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: app.runtime is not None, 15, "the runtime")
            (req,) = await hook.requests.until(lambda r: len(r) == 1)
            assert req.json["key"] == "api-down/api/firing/1"  # from memory
            assert app.runtime is not None
            assert "Read-only file system" in app.runtime.problems["outbox"]
            await wait_screen(pilot, lambda text: "notification outbox cannot be written"
                              in text, "the problem on the first screen", within=10)
