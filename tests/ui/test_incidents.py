"""An incident driven through Pilot with simulated time: open, countdowns, overdue, checks,
notes, severity, acknowledge, mitigate, resolve, all in the journal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from pathlib import Path
from typing import Any

import orjson
from textual.widgets import Input, OptionList, Static

from console.app import OpsConsoleApp
from console.engine.config.loader import load_config
from console.engine.storage.journal import Journal
from console.screens.help import HelpScreen
from console.screens.incidents import IncidentListScreen, IncidentScreen
from tests.ui.apptools import http_config, screen_text, wait_for, wait_started


class Clock:
    def __init__(self) -> None:
        self.t = 1_750_000_000.0

    def __call__(self) -> float:
        return self.t


def _app(tmp_path: Path, clock: Clock) -> OpsConsoleApp:
    cfg = http_config(tmp_path / "config.toml", {"api": "http://127.0.0.1:9/health"})
    return OpsConsoleApp(settings=load_config(cfg), history=False, poll=False, clock=clock)


async def _type(pilot: Any, text: str) -> None:
    app = pilot.app
    # the Input must have focus, not merely exist, or Enter goes nowhere
    await wait_for(pilot, lambda: isinstance(app.focused, Input), 5, "a focused text prompt")
    app.screen.query_one(Input).value = text
    await pilot.press("enter")


async def _open_list(pilot: Any) -> None:
    """`i`: the incident list, once its desk (the journal) is open."""
    app = pilot.app
    await pilot.press("i")
    await wait_for(pilot, lambda: getattr(app.screen, "desk", None) is not None, 5,
                   "incident list")


async def _move_to(pilot: Any, option_id: str) -> None:
    ol = pilot.app.screen.query_one(OptionList)
    ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
    assert option_id in ids, ids
    target = ids.index(option_id)
    for _ in range(len(ids)):
        if ol.highlighted == target:
            break
        await pilot.press("down" if (ol.highlighted or 0) < target else "up")
    assert ol.highlighted == target


async def test_incident_from_open_to_resolved(tmp_path: Path, ui_env: None) -> None:
    clock = Clock()
    t0 = clock.t
    app = _app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentListScreen)
                       and getattr(app.screen, "desk", None) is not None, 5, "incident list")
        assert "no open incident" in screen_text(app)
        await pilot.press("o")
        await _type(pilot, "API [b]5xx[/b] storm")  # markup must show literally
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                       and app.screen.incident is not None, 5, "incident screen")
        screen: Any = app.screen
        inc = screen.incident
        assert inc.started == t0
        text = screen_text(app)
        assert "API [b]5xx[/b] storm" in text
        assert "▶ Acknowledge (< 5 min)" in text
        assert "[ ] Create the incident channel, #incident-<date>-<what>" in text  # Markdown
        assert "due in 5m00s" in text
        # simulated time: 5 min 1 s later, acknowledge is flagged overdue
        clock.t = t0 + 301
        screen.redraw()
        await pilot.pause()
        text = screen_text(app)
        assert "⚠ OVERDUE by 1s" in text
        assert "1 step(s) overdue" in text
        await pilot.press("a")
        await wait_for(pilot, lambda: inc.acknowledged_at == t0 + 301, 5, "acknowledged")
        await pilot.pause()
        assert "(late)" in screen_text(app)
        assert "▶ Assess severity" in screen_text(app)
        # `a` again says so, and journals no second acknowledgement
        clock.t = t0 + 330
        await pilot.press("a")
        await wait_for(pilot, lambda: any("was acknowledged already" in str(n.message)
                                          for n in app._notifications), 5, "told")
        assert [e["type"] for e in inc.timeline].count("incident.acknowledge") == 1
        assert inc.acknowledged_at == t0 + 301
        # i in an incident: back to the list it was opened from (it did nothing), and
        # Enter there on it again
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentListScreen), 5, "list")
        assert inc.id[-9:] in screen_text(app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                       and app.screen.incident is inc, 5, "the incident again")
        screen = app.screen
        # check an item under the cursor, then uncheck it
        await _move_to(pilot, "item|incident-response|assess|0")
        await pilot.press("space")
        step = inc.step("assess")
        await wait_for(pilot, lambda: 0 in step.checked, 5, "item checked")
        await pilot.pause()
        assert "[x] Check Sentry for error details" in screen_text(app)
        await pilot.press("space")
        await wait_for(pilot, lambda: 0 not in step.checked, 5, "item unchecked")
        # a note on the step under the cursor
        await pilot.press("n")
        await _type(pilot, "error rate 62 % \x1b[2J")
        await wait_for(pilot, lambda: bool(step.notes), 5, "note added")
        assert step.notes[0].text.startswith("error rate 62 %")
        await pilot.pause()
        assert "✎ error rate 62 %" in screen_text(app)
        assert "\x1b" not in screen_text(app)
        # severity is chosen from the playbook's table (3: P2), then why; both journaled
        await pilot.press("s")
        await wait_for(pilot, lambda: "P2 Medium: non-critical feature degraded"
                       in screen_text(app), 5, "the severity chooser")
        await pilot.press("3")
        await _type(pilot, "only the admin page is slow")
        await wait_for(pilot, lambda: inc.severity == "P2", 5, "severity P2")
        change = inc.severity_changes[-1]
        assert (change["from"], change["to"], change["reason"]) == (
            "P1", "P2", "only the admin page is slow")
        assert change["actor"]  # who
        # the same severity again is a confirmation (it did nothing): asked why, journaled
        await pilot.press("s")
        await wait_for(pilot, lambda: "P2 Medium: non-critical feature degraded"
                       in screen_text(app), 5, "the severity chooser")
        await pilot.press("3")
        await wait_for(pilot, lambda: "Why P2? (confirms it" in screen_text(app), 5,
                       "why it stays P2")
        await _type(pilot, "checked: admin only")
        await wait_for(pilot, lambda: inc.timeline[-1].get("confirmed") is True, 5,
                       "severity confirmed")
        assert (inc.severity, len(inc.severity_changes)) == ("P2", 1)
        clock.t = t0 + 1200
        await pilot.press("m")
        await wait_for(pilot, lambda: inc.mitigated_at == t0 + 1200, 5, "mitigated")
        clock.t = t0 + 1500
        await pilot.press("R")  # a P2: no question asked
        await wait_for(pilot, lambda: inc.resolved_at == t0 + 1500, 5, "resolved")
        await pilot.pause()
        assert "RESOLVED" in screen_text(app)
        # the post-mortem draft, from the same journal
        clock.t = t0 + 3600
        await pilot.press("P")
        await wait_for(pilot, lambda: inc.postmortem_drafted_at == t0 + 3600, 5, "draft")
        assert inc.postmortem_at is None  # prompts to fill in: the step stays open
        draft = Path(os.environ["OPSCONSOLE_DATA_DIR"]) / "postmortems" / f"{inc.id}.md"
        md = draft.read_text()
        assert md.startswith("# Post-mortem: API [b]5xx[/b] storm")
        assert "| Acknowledge | < 5 min | " in md
        assert "| 5m01s | late by 1s |" in md
        # the response against targets, from events: acknowledged 5m01s after it opened
        assert ("| Acknowledge | incident opened 15:06:40 | incident acknowledged 15:11:41 "
                "| 5m01s | < 5 min | missed by 1s |") in md
        assert "P2 by " in md
        assert ": only the admin page is slow)" in md
        assert "error rate 62 %" in md
        assert "## Root cause" in md
        assert inc.step_status(inc.step("postmortem"), clock()) != "done"
        # shown whole in the console, as written (markup-looking text stays text)
        from console.screens.document import DocumentScreen

        await wait_for(pilot, lambda: isinstance(app.screen, DocumentScreen), 5, "shown")
        assert "# Post-mortem: API [b]5xx[/b] storm" in screen_text(app)
        # the draft lists its own step as still to do, as the CLI's draft does
        assert re.search(r"^\| Post-mortem \| < 24 h \| - \| .*$", md, re.M), md
        assert any("fill in its prompts, then P" in str(n.message) for n in app._notifications)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "incident")
        # a note after the draft: the next `P` writes the draft again, with it (the draft
        # was written once and stayed stale)
        await pilot.press("n")
        await _type(pilot, "restarted the pool")
        await wait_for(pilot, lambda: any(n.text == "restarted the pool" for s in inc.steps
                                          for n in s.notes), 5, "second note")
        await pilot.press("P")
        await wait_for(pilot, lambda: "restarted the pool" in draft.read_text(), 5, "redrawn")
        await wait_for(pilot, lambda: isinstance(app.screen, DocumentScreen), 5, "shown")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "incident")
        # once someone edits the file, it is theirs: `P` shows it as they left it
        edited = draft.read_text().replace("## Root cause", "## Root cause\n\nThe pool.")
        draft.write_text(edited)
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, DocumentScreen), 5, "shown")
        assert draft.read_text() == edited
        assert "The pool." in app.screen.text  # type: ignore[attr-defined]
        assert any("edited after its draft" in str(n.message) for n in app._notifications)
        assert inc.postmortem_at == clock()  # written: the step is done
        assert inc.step_status(inc.step("postmortem"), clock()) == "done"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "incident")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentListScreen), 5, "list")
        app.screen.redraw()  # type: ignore[attr-defined]
        await pilot.pause()
        assert "no open incident" in screen_text(app)
        iid = inc.id
    # everything the screen showed as done is in the journal on disk
    j = Journal(Path(os.environ["OPSCONSOLE_DATA_DIR"]) / "journal.jsonl")
    await asyncio.to_thread(j.open)
    await j.close()
    mine = [e for e in j.entries if e.get("incident") == iid]
    assert [e["type"] for e in mine] == [
        "incident.open", "incident.acknowledge", "incident.check", "incident.uncheck",
        "incident.note", "incident.severity", "incident.severity", "incident.mitigate",
        "incident.resolve",
        "incident.postmortem", "incident.note", "incident.postmortem"]
    assert mine[0]["title"] == "API [b]5xx[/b] storm"


async def test_several_incidents_listed_most_severe_first(tmp_path: Path, ui_env: None) -> None:
    clock = Clock()
    app = _app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_list(pilot)
        desk = app.screen.desk  # type: ignore[attr-defined]
        slow = await desk.open("Slow feed", "P2")
        clock.t += 60
        pay = await desk.open("Payments failing", "P0", runbook="payment-processing-failure")
        clock.t += 240  # the P0's acknowledge is due at +5 min: 4 min gone, the P2's 5 min
        app.screen.redraw()  # type: ignore[attr-defined]
        await pilot.pause()
        lines = [ln for ln in screen_text(app).splitlines() if " age " in ln]
        assert len(lines) == 2
        assert lines[0].strip("▊▎ ").startswith("P0 Payments failing")
        assert lines[1].strip("▊▎ ").startswith("P2 Slow feed")
        assert "overdue" not in lines[0]
        clock.t += 1
        app.screen.redraw()  # type: ignore[attr-defined]
        await pilot.pause()
        lines = [ln for ln in screen_text(app).splitlines() if " age " in ln]
        assert "⚠ 1 overdue" in lines[1]
        assert "overdue" not in lines[0]
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "opened")
        assert app.screen.incident_id == pay.id  # type: ignore[attr-defined]
        await pilot.pause()
        ol = app.screen.query_one(OptionList)
        ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
        assert "pb|payment-processing-failure" in ids  # the runbook follows the six steps
        assert "step|payment-processing-failure|symptoms" in ids
        assert slow.id not in ids


async def test_snapshot_handover_false_positive_and_links(tmp_path: Path, ui_env: None) -> None:
    from console.screens.detail import DetailScreen

    clock = Clock()
    app = _app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_started(pilot)
        app.scheduler.store.record("api:error_pct", clock(), 62.5)
        app.scheduler.store.record("api:latency_ms", clock(), 12.5)
        await _open_list(pilot)
        inc = await app.screen.desk.open("API errors", "P1")  # type: ignore[attr-defined]
        app.push_screen(IncidentScreen(inc.id))
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                       and app.screen.incident is not None, 5, "incident screen")
        # its Keys: Enter follows a step's link (the list's own "select" hid it), and `h`
        # is Hand over here, not also "move the cursor"
        from console.screens.help import HelpScreen

        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "its keys")
        keys = str(app.screen.query_one("#help-keys", Static).render())
        rows = {line.split("  ")[0].strip(): line.split("  ")[-1].strip()
                for line in keys.splitlines()}
        assert rows.get("⏎") == "Go to", keys
        assert rows.get("h") == "Hand over", keys
        cursor = next(k for k, d in rows.items() if d == "move the cursor")
        assert "h" not in cursor.split(), keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "back")
        await pilot.press("v")
        await wait_for(pilot, lambda: bool(inc.snapshots), 5, "snapshot attached")
        assert inc.snapshots[0]["values"] == {"api:error_pct": 62.5, "api:latency_ms": 12.5}
        await pilot.press("h")
        await _type(pilot, "bob@bastion")
        await wait_for(pilot, lambda: inc.owner == "bob@bastion", 5, "handed over")
        await pilot.pause()
        assert "owner bob@bastion" in screen_text(app)
        await pilot.press("F")
        await wait_for(pilot, lambda: inc.false_positive, 5, "false positive")
        # a manual incident has no runbook: b attaches one (journaled, changeable)
        assert inc.runbook is None
        await pilot.press("b")
        await wait_for(pilot, lambda: "High error rate" in screen_text(app), 5, "runbooks")
        await pilot.press("1")
        await wait_for(pilot, lambda: inc.runbook == "high-error-rate", 5, "runbook attached")
        assert any(s.playbook == "high-error-rate" for s in inc.steps)
        # its "error rate > 5 %" links to the chart of error_pct: Enter opens api charting it
        steps = app.screen.query_one("#incident-steps", OptionList)
        assert "  ⏎ chart:error_pct" in str(
            steps.get_option("item|high-error-rate|symptoms|0").prompt)
        # a link that opens nothing in this config is marked so before Enter is pressed
        dead = str(steps.get_option("item|incident-response|assess|0").prompt)
        assert "⏎" not in dead
        assert dead.endswith(" (not in this console)"), dead
        await _move_to(pilot, "item|high-error-rate|symptoms|0")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen), 5, "detail")
        assert app.screen.target == "api"  # type: ignore[attr-defined]
        assert app.screen.metric == "error_pct"  # type: ignore[attr-defined]
        await pilot.press("escape")
        # a link with nothing to open in this config says why
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 5, "back")
        await _move_to(pilot, "item|incident-response|assess|0")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, IncidentScreen)
        # changing the runbook replaces its steps
        await pilot.press("b")
        await wait_for(pilot, lambda: "Slow performance" in screen_text(app), 5, "runbooks")
        await pilot.press("3")
        await wait_for(pilot, lambda: inc.runbook == "slow-performance", 5, "runbook changed")
        assert not any(s.playbook == "high-error-rate" for s in inc.steps)


async def test_kpi_screen(tmp_path: Path, ui_env: None) -> None:
    clock = Clock()
    app = _app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_list(pilot)
        desk = app.screen.desk  # type: ignore[attr-defined]
        a = await desk.open("A", "P0")
        clock.t += 120
        await desk.acknowledge(a.id)
        clock.t += 600
        await desk.resolve(a.id)
        b = await desk.open("B", "P1")
        clock.t += 400
        await desk.acknowledge(b.id)
        await pilot.press("K")
        await wait_for(pilot, lambda: bool(app.screen.query("#kpi-text")), 5, "KPI screen")
        text = screen_text(app)
        assert "incidents 2 (P0 1, P1 1); open 1, resolved 1" in text
        assert "MTTA (acknowledge)" in text
        assert "4m20s" in text  # (120 + 400) / 2
        assert "50.0 %" in text  # acknowledged within 5 min: A yes, B no
        assert "Esc closes" in text  # the box covers the footer
        await pilot.press("question_mark")  # the keys of the KPI box, over it
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "? on the KPIs")
        keys = str(app.screen.query_one("#help-keys", Static).render())
        # the scrolling keys by name, not as the action they call ("scroll('page_down')")
        assert "scroll(" not in keys, keys
        rows = {line.split("  ")[-1].strip(): line.split("  ")[0].strip()
                for line in keys.splitlines()}
        assert rows.get("Page down") == "space", keys
        assert rows.get("Last") == "G", keys
        await pilot.press("escape")
        await wait_for(pilot, lambda: bool(app.screen.query("#kpi-text")), 5, "KPIs again")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentListScreen), 5, "back")


async def test_full_disk_shows_degraded_journal_and_recovers(tmp_path: Path,
                                                             ui_env: None) -> None:
    import subprocess

    data = Path(os.environ["OPSCONSOLE_DATA_DIR"])
    await asyncio.to_thread(data.mkdir, parents=True)
    mount = await asyncio.to_thread(
        subprocess.run, ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(data)],
        capture_output=True, text=True, timeout=10)
    assert mount.returncode == 0, f"cannot mount a small tmpfs: {mount.stderr}"
    try:
        filler = data / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)  # fill it to the last byte
        try:
            with contextlib.suppress(OSError):
                for _ in range(256):
                    os.write(fd, b"\0" * 1024)
        finally:
            os.close(fd)
        clock = Clock()
        app = _app(tmp_path, clock)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("i")
            await wait_for(pilot, lambda: getattr(app.screen, "desk", None) is not None, 5,
                           "incident list")
            desk = app.screen.desk  # type: ignore[attr-defined]
            inc = await desk.open("Disk full during an incident", "P0")
            assert desk.journal.degraded is not None
            assert "ENOSPC" in desk.journal.degraded
            app.push_screen(IncidentScreen(inc.id))
            await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen)
                           and app.screen.incident is not None, 5, "incident screen")
            await pilot.press("a")
            await wait_for(pilot, lambda: inc.acknowledged_at is not None, 5, "acknowledged")
            await pilot.pause()
            text = screen_text(app)
            assert "JOURNAL DEGRADED" in text
            assert "2 action(s) only in memory" in text
            # a standing problem too: the overview's banner says it (it said nothing there)
            await wait_for(pilot, lambda: "journal" in app.runtime.problems, 5, "problem")
            assert "incident actions are kept in memory" in app.runtime.problems["journal"]
            # room again: the writer retries on its own and the banner goes away
            filler.unlink()
            await wait_for(pilot, lambda: desk.journal.degraded is None, 10, "journal healthy")
            await wait_for(pilot, lambda: "journal" not in app.runtime.problems, 5, "cleared")
            app.screen.redraw()  # type: ignore[attr-defined]
            await pilot.pause()
            assert "JOURNAL DEGRADED" not in screen_text(app)
        lines = (data / "journal.jsonl").read_bytes().splitlines()
        types = [orjson.loads(x)["type"] for x in lines]
        assert types == ["incident.open", "incident.acknowledge"]
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(data)],
                                capture_output=True, timeout=10)


async def test_restart_brings_incidents_back_and_another_console_is_seen(
        tmp_path: Path, ui_env: None) -> None:
    import time

    from console.engine.incidents.book import IncidentBook, IncidentDesk
    from console.engine.incidents.playbooks import load_playbooks

    clock = Clock()
    app = _app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_list(pilot)
        desk = app.screen.desk  # type: ignore[attr-defined]
        inc = await desk.open("Checkout errors", "P1")
        await desk.acknowledge(inc.id)
        await desk.check(inc.id, "assess", 1)
        await desk.note(inc.id, "looking at deploy 1.5.2", section="assess")
        iid = inc.id
    # a new console on the same journal: the open incident is back as it was
    app2 = _app(tmp_path, clock)
    async with app2.run_test(size=(80, 24)) as pilot:
        await _open_list(pilot)
        await pilot.pause()
        assert "P1 Checkout errors" in screen_text(app2)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app2.screen, IncidentScreen), 5, "opened")
        screen: Any = app2.screen
        again = screen.incident
        assert again.id == iid
        assert again.acknowledged_at == clock.t
        assert set(again.step("assess").checked) == {1}
        assert again.step("assess").notes[0].text == "looking at deploy 1.5.2"
        await pilot.pause()
        assert "▶ Assess severity" in screen_text(app2)
        # another console (bob's) on the same journal mitigates: seen here within a second
        other = Journal(Path(os.environ["OPSCONSOLE_DATA_DIR"]) / "journal.jsonl",
                        clock=clock, actor="bob@bastion")
        await asyncio.to_thread(other.open)
        try:
            bob = IncidentDesk(other, IncidentBook(load_playbooks(tmp_path / "none"),
                                                   clock=clock))
            await bob.mitigate(iid)
            t0 = time.monotonic()
            mine = app2.desk.book
            await wait_for(pilot, lambda: mine.get(iid).mitigated_at is not None, 3,
                           "bob's mitigation in this console's journal view")
            seen = time.monotonic() - t0
            # Within a second (the journal is followed every 0.25 s); the margin is for a
            # loaded 2-core CI machine running the whole suite, where 1.75 s was seen once.
            assert seen < 1.0 + 0.5, seen
            await wait_for(pilot, lambda: "mitigated" in screen_text(app2), 3,
                           "bob's mitigation on screen")
        finally:
            await other.close()


async def test_journal_that_cannot_be_opened_is_reported_not_fatal(
        tmp_path: Path, ui_env: None, monkeypatch: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("OPSCONSOLE_DATA_DIR", str(blocker / "data"))
    app = _app(tmp_path, Clock())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: "cannot be opened" in screen_text(app), 5,
                       "journal error shown")
        await pilot.press("o", "K")
        await pilot.pause()
        assert isinstance(app.screen, IncidentListScreen)
        assert app.is_running


def test_inline_markdown_of_playbook_text() -> None:
    from console.screens.incidents import inline_markdown

    c = inline_markdown("Write the report (`opsconsole postmortem INCIDENT`) **today**")
    assert c.plain == "Write the report (opsconsole postmortem INCIDENT) today"
    assert [(sp.start, sp.end, sp.style) for sp in c.spans] == [(18, 48, "bold"),
                                                                (50, 55, "bold")]
    for literal in ("[b]not markup[/b]", "a lone ` tick", "**", "``"):
        assert inline_markdown(literal).plain == literal


async def test_open_incidents_are_on_the_first_screen_after_a_restart(
        tmp_path: Path, ui_env: None) -> None:
    from console.engine.incidents.book import IncidentBook, IncidentDesk
    from console.engine.incidents.playbooks import load_playbooks

    clock = Clock()
    journal = Journal(Path(os.environ["OPSCONSOLE_DATA_DIR"]) / "journal.jsonl", clock=clock)
    await asyncio.to_thread(journal.open)
    try:
        desk = IncidentDesk(journal, IncidentBook(load_playbooks(), clock=clock))
        inc = await desk.open("Checkout [b]errors[/b]", "P1")
        await desk.open("Slow search", "P3")
    finally:
        await journal.close()
    clock.t += 20 * 60  # 20 min later the console starts again: acknowledge is overdue
    app = _app(tmp_path, clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "⚑" in screen_text(app), 5, "the incident banner")
        rows = screen_text(app).splitlines()
        at = next(i for i, x in enumerate(rows) if "⚑" in x)
        line = " ".join(x.strip() for x in rows[at:at + 2])  # the banner wraps at 80 columns
        assert "P1 Checkout [b]errors[/b] · 20m00s" in line  # the worst one, as plain text
        assert "OVERDUE" in line
        assert "+1 more" in line
        # with an alert on the line too, the incidents' part still says what is overdue
        # (acknowledge, 5 min, in both; the P3's assess, 10 min, too)
        short = app.incident_banner(short=True)
        assert short is not None
        assert short.startswith("⚑ 2 incidents open, ")
        assert short.endswith(" steps OVERDUE (i)")
        banner = app.screen.query_one("#alert-banner")
        assert banner.has_class("-warn")  # an incident, not a firing alert: not red
        # a longer text that wraps to one more line gets the line (it kept the height of
        # the first text and lost its end)
        before = banner.size.height
        shown = app.incident_banner
        app.incident_banner = lambda short=False: shown(short=short) + " · " + "x" * 70
        app.refresh_banner()
        # two halves, told apart if this fails again (one run in ~10 under full load did):
        # the text is the banner's at once, and the layout gives it its third line
        assert "x" * 70 in str(banner.content), (before, str(banner.content))
        try:
            await wait_for(pilot, lambda: banner.size.height == before + 1, 5, "one more line")
        except AssertionError as exc:
            width = banner.content_size.width
            raise AssertionError(
                f"{exc}\nheight {before} -> {banner.size.height}; content {banner.content_size}"
                f", needs {banner.get_content_height(banner.size, app.size, width)}") from None
        assert "x" * 70 in screen_text(app).replace("\n", "")
        app.incident_banner = shown
        # resolved elsewhere (here: through the app's own desk): the banner goes
        await app.desk.resolve(inc.id)
        others = app.desk.book.open_incidents()
        for other in others:
            await app.desk.resolve(other.id)
        app.refresh_screen()
        await wait_for(pilot, lambda: "⚑" not in screen_text(app), 5, "no banner")
