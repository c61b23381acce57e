"""`opsconsole incidents`, `postmortem` and `report` against a journal built by the test."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from console.cli import main
from console.engine.storage.journal import Journal
from console.engine.storage.store import MetricStore

ROOT = Path(__file__).resolve().parents[1]
DAY = 86400.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def _build(path: Path, now: float) -> dict[str, str]:
    """Five incidents with known times; returns their ids by letter."""
    clock = Clock(now)
    j = Journal(path, clock=clock, actor="alice@bastion")
    await asyncio.to_thread(j.open)
    ids: dict[str, str] = {}

    async def at(t: float, etype: str, inc: str, **data: Any) -> None:
        clock.t = t
        await j.append({"type": etype, "incident": inc, **data})

    async def open_(letter: str, start: float, sev: str, detected: float | None,
                    alerts: list[str]) -> float:
        ids[letter] = f"INC-{letter}"
        d: dict[str, Any] = {"title": f"incident {letter}", "severity": sev,
                             "alerts": alerts, "started": start}
        if detected is not None:
            d["detected"] = detected
        await at(start, "incident.open", ids[letter], **d)
        return start

    a = await open_("A", now - 3 * DAY, "P0", now - 3 * DAY - 120, ["api-5xx-majority"])
    await at(a + 240, "incident.acknowledge", "INC-A")
    await at(a + 300, "incident.snapshot", "INC-A",
             values={"api:error_pct": 62.5, "api:p95_ms": 840.0}, label="at assess")
    await at(a + 400, "incident.note", "INC-A", section="mitigate",
             text="rolled back v1.5.2 | \x1b[31mred\x1b[0m")
    await at(a + 500, "incident.severity", "INC-A", severity="P1")
    await at(a + 600, "incident.severity", "INC-A", severity="P0")
    await at(a + 1200, "incident.mitigate", "INC-A")
    await at(a + 3600, "incident.resolve", "INC-A")
    b = await open_("B", now - 2 * DAY, "P1", now - 2 * DAY - 360, ["error-rate-high"])
    await at(b + 600, "incident.acknowledge", "INC-B")
    await at(b + 9000, "incident.resolve", "INC-B")
    c = await open_("C", now - 1 * DAY, "P2", None, [])
    for i in range(3):  # acknowledged by checking its items, not by the action
        await at(c + 60 * (i + 1), "incident.check", "INC-C", section="acknowledge", item=i)
    await at(c + 1800, "incident.resolve", "INC-C", false_positive=True)
    d = await open_("D", now - 10 * DAY, "P1", None, [])  # outside the 7-day window
    await at(d + 100, "incident.acknowledge", "INC-D")
    await at(d + 200, "incident.resolve", "INC-D")
    await open_("E", now - 600, "P0", None, ["api-down"])  # open, not acknowledged yet
    await j.close()
    return ids


def _history(path: Path, now: float) -> None:
    store = MetricStore(path=path)
    for k in range(360):  # one hour at 10 s, 9 samples down: 97.5 %
        store.record("api:up", now - 3600 + 10 * k, 0.0 if k % 40 == 0 else 1.0)
        store.record("db:up", now - 3600 + 10 * k, 1.0)
    store.save()


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, Path]:
    now = time.time()
    journal = tmp_path / "journal.jsonl"
    asyncio.run(_build(journal, now))
    history = tmp_path / "history.npz"
    _history(history, now)
    return journal, history


def test_report_json_numbers(built: tuple[Path, Path]) -> None:
    journal, history = built
    out = subprocess.run(
        [sys.executable, "-m", "console", "report", "--since", "7d", "--json",
         "--journal", str(journal), "--history", str(history)],
        capture_output=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    k = orjson.loads(out.stdout)
    assert k["incidents"] == 4  # D is 10 days old
    assert (k["open"], k["resolved"]) == (1, 3)
    assert k["by_severity"] == {"P0": 2, "P1": 1, "P2": 1}
    assert k["alerts"] == 3
    assert k["mttd_s"] == pytest.approx(240)  # (120 + 360) / 2
    assert k["mtta_s"] == pytest.approx(340)  # (240 + 600 + 180) / 3
    assert k["mttr_s"] == pytest.approx(4800)  # (3600 + 9000 + 1800) / 3
    assert k["ack_within_5m_pct"] == pytest.approx(50)  # A, C of A, B, C, E
    assert k["p0p1_resolved_within_2h_pct"] == pytest.approx(50)  # A of A, B (E too young)
    assert k["false_positive_pct"] == pytest.approx(25)
    assert k["uptime_pct"]["api"] == pytest.approx(97.5)
    assert k["uptime_pct"]["db"] == pytest.approx(100.0)
    assert k["met"]["mttr_s"] is False
    assert k["met"]["mttd_s"] is True
    assert k["met"]["uptime_pct:api"] is False
    assert k["met"]["uptime_pct:db"] is True
    # the history holds one hour of the seven days: the report says so, per target, up to
    # its newest sample (10 s before the fixture's now), not up to the report's now
    assert k["uptime_span_s"]["api"] == pytest.approx(3590, abs=0.5)
    assert k["uptime_span_s"]["db"] == pytest.approx(3590, abs=0.5)


def test_report_text_and_window(built: tuple[Path, Path],
                                capsys: pytest.CaptureFixture[str]) -> None:
    journal, history = built
    assert main(["report", "--since", "30d", "--journal", str(journal),
                 "--history", str(history)]) == 0
    text = capsys.readouterr().out
    assert "incidents 5 (P0 2, P1 2, P2 1)" in text
    assert "MTTR (resolve)" in text
    assert "✔ api" not in text
    assert "✖ api" in text
    api = next(line for line in text.splitlines() if line.startswith("✖ api"))
    # of the 30 days, only this much is held: up to its newest sample, 10 s before now
    assert api.endswith("  over 59m50s")
    assert "uptime per target ('over': only that much of the period is held)" in text
    # the history's newest sample is 10 s old (as a running console's saved history can
    # be a minute old): the report says up to when it measured
    assert re.search(r"\n  measured up to 1\ds ago: the metric history as last saved", text)
    assert main(["report", "--since", "1h", "--format", "markdown", "--journal", str(journal),
                 "--history", str(history)]) == 0
    md = capsys.readouterr().out
    assert re.search(r"_Uptime measured up to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, 1\ds before "
                     r"the end: the metric history as last saved", md)
    assert main(["report", "--since", "soon", "--journal", str(journal)]) == 2
    assert main(["report", "--journal", str(journal.with_name("absent.jsonl"))]) == 1


def test_incidents_lists_the_open_one_with_its_next_step(
        built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal, _ = built
    assert main(["incidents", "--json", "--journal", str(journal)]) == 1  # E is open
    rows = orjson.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["INC-E"]
    e = rows[0]
    assert (e["severity"], e["state"], e["alerts"]) == ("P0", "open", ["api-down"])
    assert e["age_s"] == pytest.approx(600, abs=30)
    # ten minutes in, its first step (acknowledge, due within 5 min) is overdue
    assert e["next_step"]["id"] == "acknowledge"
    assert e["next_step"]["status"] == "overdue"
    assert "acknowledge" in e["overdue"]
    assert main(["incidents", "--journal", str(journal)]) == 1
    text = capsys.readouterr().out
    assert "INC-E  P0 open" in text
    assert "incident E · next: " in text
    assert "OVERDUE" in text
    # --all: newest first, resolved ones too, with their state; --since narrows it
    assert main(["incidents", "--all", "--json", "--journal", str(journal)]) == 1
    every = orjson.loads(capsys.readouterr().out)
    assert [r["id"] for r in every] == ["INC-E", "INC-C", "INC-B", "INC-A", "INC-D"]
    assert {r["state"] for r in every[1:]} == {"resolved"}
    assert main(["incidents", "--all", "--since", "36h", "--json",
                 "--journal", str(journal)]) == 1
    assert [r["id"] for r in orjson.loads(capsys.readouterr().out)] == ["INC-E", "INC-C"]
    # no journal yet: nothing open, exit 0; a bad --since is a usage error
    assert main(["incidents", "--journal", str(tmp_path / "none.jsonl")]) == 0
    assert capsys.readouterr().out == "no open incidents\n"
    assert main(["incidents", "--since", "soon", "--journal", str(journal)]) == 2


def _dated(stamps: list[str], day: str) -> list[str]:
    """A timeline's stamps as full times: a line names its date when the UTC day changes."""
    out = []
    for stamp in stamps:
        if len(stamp) > 8:
            day = stamp[:10]
        out.append(stamp if len(stamp) > 8 else f"{day} {stamp}")
    return out


def test_postmortem_draft(built: tuple[Path, Path], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    journal, _ = built
    assert main(["postmortem", "INC-A", "--journal", str(journal)]) == 0
    md = capsys.readouterr().out
    assert md.startswith("# Post-mortem: incident A\n")
    # a summary a reader gets the incident from, and who changed the severity
    assert "an incident was opened from the alert api-5xx-majority: incident A." in md
    assert "acknowledged after 4m00s (incident acknowledged), mitigated after 20m00s and " \
           "resolved after 1h00m." in md
    assert "| Severity | P0 (was P0 → P1 → P0; set to P1 by alice@bastion; " \
           "set to P0 by alice@bastion) |" in md
    assert "| Alerts | api-5xx-majority |" in md
    assert "- Detected 2m00s after the first failing sample (target < 5 min: met)" in md
    rows = {line.split("|")[1].strip(): line for line in md.splitlines()
            if line.startswith("| ") and line.count("|") == 7}
    assert rows["Acknowledge"].endswith("| 4m00s | < 5 min | met |")
    assert rows["Mitigate"].endswith("| 20m00s | < 30 min | met |")
    assert rows["Resolve"].endswith("| 1h00m | < 2 h | met |")
    steps = {line.split("|")[1].strip(): line for line in md.splitlines()
             if line.startswith("| ") and line.count("|") == 6}
    # the severity was set (its "Determine if P0, P1 or P2"): not done, but not untouched
    assert steps["Assess severity"].endswith("| - | not done (1 of 4 items) |")
    # a target for P0 only says so for a P1 (the KPI table's Resolve has the KPI's < 2 h)
    assert "| Mitigate | < 30 min |" in steps["Mitigate"]
    assert steps["Post-mortem"].endswith("| - | OVERDUE |")  # 3 days > 24 h
    # snapshots with units, operator text made safe
    assert "| api:error_pct | 62.5 % |" in md
    assert "| api:p95_ms | 840 ms |" in md
    assert "snapshot: api:error_pct 62.5 %, api:p95_ms 840 ms" in md
    assert "rolled back v1.5.2 \\| red" in md  # escape sequences gone, pipe escaped
    assert "\x1b" not in md
    assert "alice@bastion (Mitigate): rolled back" in md
    assert "(+1h00m) alice@bastion: incident resolved" in md
    # the timeline is in time order, and root cause and action items are prompts
    story = md[md.index("## Timeline (UTC)"):md.index("## Root cause")]
    stamps = [line[3:line.index("`", 3)] for line in story.splitlines()
              if line.startswith("- `")]
    assert len(stamps) == 8
    began = re.search(r"On (\d{4}-\d{2}-\d{2}) at ", md)
    assert began is not None
    dated = _dated(stamps, day=began[1])
    assert dated == sorted(dated)
    assert "| _Fix the underlying bug? (the runbook's permanent fix)_ | _who_ | _when_ |" \
        in md
    for section in ("## Summary", "## Impact", "## Detection", "## Timeline (UTC)",
                    "## Root cause", "## Action items", "## Follow-up"):
        assert section in md
    # a late step, and writing to a file
    out = tmp_path / "pm.md"
    assert main(["postmortem", "INC-B", "--journal", str(journal), "-o", str(out)]) == 0
    b = out.read_text()
    assert "| 10m00s | late by 5m00s |" in b
    assert "| 10m00s | < 5 min | missed by 5m00s |" in b
    assert main(["postmortem", "INC-ZZZ", "--journal", str(journal)]) == 1


def test_validate_checks_the_users_playbooks(tmp_path: Path) -> None:
    import os

    cfg = tmp_path / "config.toml"
    cfg.write_text('[[targets]]\nname = "api"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n')
    pbs = tmp_path / "playbooks"
    pbs.mkdir()
    env = {**os.environ, "OPSCONSOLE_CONFIG": str(cfg)}

    def validate() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "console", "validate"], env=env,
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    (pbs / "ours.toml").write_text(
        'name = "incident-response"\ntitle = "Ours"\nkind = "response"\n'
        '[[sections]]\nid = "acknowledge"\ntitle = "Ack"\ntarget = "2m"\n')
    ok = validate()
    assert ok.returncode == 0, ok.stderr
    assert "playbooks valid" in ok.stdout
    (pbs / "bad.toml").write_text(
        'name = "bad"\ntitle = "Bad"\nkind = "response"\n'
        '[[sections]]\nid = "a"\ntitle = "A"\ntarget = "whenever"\n')
    bad = validate()
    assert bad.returncode == 1
    assert f"{pbs / 'bad.toml'}:7: sections[0].target: 'whenever' is not a duration" \
        in bad.stderr


def test_an_empty_data_dir_beside_the_demos_incidents_says_add_demo(
        built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`opsconsole demo` keeps its incidents in the data dir's demo world: `incidents` and
    `report` without --demo found nothing and did not say where they were."""
    journal, _ = built
    data = tmp_path / "data"
    (data / "demo").mkdir(parents=True)
    (data / "demo" / "journal.jsonl").write_bytes(journal.read_bytes())
    monkeypatch.setenv("OPSCONSOLE_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert main(["incidents", "--json"]) == 0
    got = capsys.readouterr()
    assert orjson.loads(got.out) == []
    assert "the demo keeps its incidents apart: add --demo" in got.err
    assert main(["report"]) == 1
    assert "no incident recorded yet?); the demo keeps its incidents apart: add --demo" in (
        capsys.readouterr().err)
    assert main(["incidents", "--json", "--demo"]) == 1  # INC-E is open there
    got = capsys.readouterr()
    assert [r["id"] for r in orjson.loads(got.out)] == ["INC-E"]
    assert "--demo" not in got.err
    # a data dir with a journal of its own: no hint
    (data / "journal.jsonl").touch()
    assert main(["incidents", "--json"]) == 0
    assert "--demo" not in capsys.readouterr().err
    # and the other way round: --demo where no demo ran (a walk's demo had --data-dir
    # elsewhere, one incident open) is an error, never "no open incidents" with exit 0
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("OPSCONSOLE_DATA_DIR", str(other))
    for argv in (["incidents", "--demo"], ["alerts", "--demo"]):
        assert main(argv) == 2, argv
        got = capsys.readouterr()
        assert got.out == ""
        assert (f"opsconsole {argv[0]} --demo: the demo has not run in {other / 'demo'} "
                "(start it with `opsconsole demo`; for a demo started with --data-dir DIR, "
                "add --data-dir DIR)") in got.err
    # without --demo an empty directory has nothing open, and says which directory
    assert main(["incidents"]) == 0
    got = capsys.readouterr()
    assert got.out == "no open incidents\n"
    assert f"opsconsole: no journal in {other} yet" in got.err


def test_postmortem_prints_the_file_someone_edited_not_a_fresh_draft(
        built: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    # `P` writes postmortems/<id>.md beside the journal; once a person edits it, that is
    # the post-mortem: `postmortem` prints (and -o copies) it, `--draft` makes a new one.
    from console.engine.incidents.postmortem import write_draft

    journal, _ = built
    assert main(["postmortem", "INC-A", "--journal", str(journal)]) == 0
    draft = capsys.readouterr().out
    path = journal.parent / "postmortems" / "INC-A.md"
    assert write_draft(path, draft) == (draft, False)
    # still the draft as written: a fresh one is printed, as before any edit
    assert main(["postmortem", "INC-A", "--journal", str(journal)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("# Post-mortem: incident A\n")
    assert "edited" not in out.err
    edited = draft.replace("## Summary\n", "## Summary\n\nThe cache node ran out of memory.\n")
    path.write_text(edited, encoding="utf-8")
    assert main(["postmortem", "INC-A", "--journal", str(journal)]) == 0
    out = capsys.readouterr()
    assert out.out == edited
    assert f"{path} was edited after its draft: printing it as it is" in out.err
    copy = journal.parent / "copy.md"
    assert main(["postmortem", "INC-A", "--journal", str(journal), "-o", str(copy)]) == 0
    assert copy.read_text(encoding="utf-8") == edited
    assert f"{copy}: post-mortem of INC-A" in capsys.readouterr().out
    assert main(["postmortem", "INC-A", "--journal", str(journal), "--draft"]) == 0
    fresh = capsys.readouterr()
    assert "The cache node ran out of memory." not in fresh.out
    assert fresh.out.startswith("# Post-mortem: incident A\n")
    assert path.read_text(encoding="utf-8") == edited  # --draft never touches the file


def test_incidents_piped_prints_whole_titles(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`opsconsole incidents | grep` cut "Stripe webhooks failing (payments…": a line
    for a terminal is short, a pipe or a file gets the whole title."""
    path = tmp_path / "journal.jsonl"
    title = "Stripe webhooks failing (payments not processing): idempotency store down"
    now = time.time()

    async def build() -> None:
        j = Journal(path, clock=Clock(now - 60), actor="ana@bastion")
        await asyncio.to_thread(j.open)
        await j.append({"type": "incident.open", "incident": "INC-X", "title": title,
                        "severity": "P0", "alerts": [], "started": now - 60})
        await j.close()

    asyncio.run(build())
    assert main(["incidents", "--journal", str(path)]) == 1  # stdout is captured: no tty
    assert title in capsys.readouterr().out


def test_postmortem_latest_is_the_one_last_written_else_resolved(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A walk pressed `P` on a resolved P0, then `postmortem latest` printed a draft of
    another incident opened after it and still open."""
    path = tmp_path / "journal.jsonl"
    now = time.time()

    async def build(*, drafted: bool) -> None:
        clock = Clock(now - 400)
        j = Journal(path, clock=clock, actor="ana@bastion")
        await asyncio.to_thread(j.open)
        for inc, t in (("INC-OLD", now - 400), ("INC-P0", now - 300), ("INC-LATER", now - 200)):
            clock.t = t
            await j.append({"type": "incident.open", "incident": inc, "title": inc.lower(),
                            "severity": "P0", "alerts": [], "started": t})
        clock.t = now - 150
        await j.append({"type": "incident.resolve", "incident": "INC-OLD"})
        clock.t = now - 100
        await j.append({"type": "incident.resolve", "incident": "INC-P0"})
        if drafted:
            clock.t = now - 50
            await j.append({"type": "incident.postmortem", "incident": "INC-OLD", "draft": True})
        await j.close()

    asyncio.run(build(drafted=False))  # none written: the one resolved last
    assert main(["postmortem", "latest", "--journal", str(path)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("# Post-mortem: inc-p0\n")
    assert "latest is INC-P0" in out.err
    path.unlink()
    asyncio.run(build(drafted=True))  # the one whose draft was written last
    assert main(["postmortem", "latest", "--journal", str(path)]) == 0
    assert capsys.readouterr().out.startswith("# Post-mortem: inc-old\n")
