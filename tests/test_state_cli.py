"""`opsconsole state init|import|status`, and the headless readers (`incidents`,
`postmortem`, `report`, `alerts --history`) giving the same answers from the files and from
the shared state; a bastion's files imported once (twice adds nothing), its pending
notifications then sent by the team's evaluator. Real PostgreSQL, real processes."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson

from console.engine.config.loader import load_config_text
from console.engine.paths import DataPaths
from console.engine.runtime import Runtime
from tests.peers import WebhookPeer
from tests.statedb import MACHINE_DSN, StateDb, drop_schema, state_db_fixture  # noqa: F401
from tests.stateharness import ROOT, Switch, console_config


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "console", *args, "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OPSCONSOLE_OPERATOR": "cli@test"})


async def _until(pred: object, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _files_world(target: Switch, data: Path, receivers: str) -> str:
    """A bastion on the files backend: an alert that fired and resolved, one firing now,
    an incident with a note, notifications it could not send."""
    text = console_config(target.url, "", data, receivers, history=True)

    async def run() -> str:
        rt = Runtime(load_config_text(text), DataPaths(data), operator="ann@b")
        await rt.start()
        try:
            assert rt.desk is not None
            target.up = False
            await _until(lambda: (a := rt.alerting.alerts.get("api-down", "api")) is not None
                         and a.state.value == "firing")  # type: ignore[union-attr]
            target.up = True
            await _until(lambda: any(e.get("resolved_at") for e in rt.alerting.recent(
                time.time())))  # type: ignore[union-attr]
            await _until(lambda: rt.alerting.history is not None and not  # type: ignore[union-attr]
                         rt.alerting.alerts.closed)  # type: ignore[union-attr]
            alert = rt.alerting.alerts.get("api-down", "api")  # type: ignore[union-attr]
            assert alert is not None
            await _until(lambda: alert.samples - (alert.told_resolved_sample or 0) > 6)
            target.up = False  # (a new episode, past the flap window)
            await _until(lambda: (a := rt.alerting.alerts.get("api-down", "api")) is not None
                         and a.state.value == "firing")  # type: ignore[union-attr]
            inc = await rt.desk.open("API down", "P1", alerts=["api-down/api"])
            await rt.desk.note(inc.id, "restarted the pool")
            return inc.id
        finally:
            await rt.stop()

    return asyncio.run(run())


def test_import_then_every_reader_answers_the_same_from_the_shared_state(
        state_db: StateDb, tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Switch() as target, WebhookPeer() as hook:
        dead = '\n[[alerting.receivers]]\nname = "hook"\nkind = "webhook"\n' \
               'url = "http://127.0.0.1:9/nobody"\n'
        iid = _files_world(target, data, dead)
        files_cfg = tmp_path / "files.toml"
        files_cfg.write_text(console_config(target.url, "", data, dead, history=True))
        live = f'\n[[alerting.receivers]]\nname = "hook"\nkind = "webhook"\n' \
               f'url = "{hook.base}/ok"\n'
        shared_cfg = tmp_path / "shared.toml"
        shared_cfg.write_text(console_config(target.url, state_db.config(), data, live))
        before = {
            "incidents": cli("incidents", "--all", "--json", config=files_cfg),
            "postmortem": cli("postmortem", iid, config=files_cfg),
            "history": cli("alerts", "--history", "--json", config=files_cfg),
            "report": cli("report", "--json", config=files_cfg),
        }
        imported = cli("state", "import", config=shared_cfg)
        assert imported.returncode == 0, imported.stderr
        assert "incident entries: 2 added of 2 read" in imported.stdout
        assert "alert episodes: 1 added of 1 read" in imported.stdout
        assert "alert state: 1 added of 1 read" in imported.stdout
        assert "notifications: 3 added of 3 read" in imported.stdout
        again = cli("state", "import", config=shared_cfg)
        assert "incident entries: 0 added of 2 read" in again.stdout, again.stdout
        assert "notifications: 0 added of 3 read" in again.stdout
        after = {
            "incidents": cli("incidents", "--all", "--json", config=shared_cfg),
            "postmortem": cli("postmortem", iid, config=shared_cfg),
            "history": cli("alerts", "--history", "--json", config=shared_cfg),
            "report": cli("report", "--json", config=shared_cfg),
        }
        for name in before:
            assert before[name].stderr == after[name].stderr == "", name
        b = orjson.loads(before["incidents"].stdout)
        a = orjson.loads(after["incidents"].stdout)
        for rows in (a, b):
            for r in rows:
                r.pop("age_s")
        assert a == b
        assert a[0]["id"] == iid
        def timeless(text: str) -> str:  # the draft's time, how long it has been open
            text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "…", text)
            return re.sub(r"(open for|\) for|ongoing) [0-9hms ]+", r"\1 …", text)

        assert timeless(after["postmortem"].stdout) == timeless(before["postmortem"].stdout)
        assert "restarted the pool" in after["postmortem"].stdout
        hb, ha = orjson.loads(before["history"].stdout), orjson.loads(after["history"].stdout)
        strip = {"duration_s", "now", "since"}
        assert [{k: v for k, v in e.items() if k not in strip} for e in ha["episodes"]] == \
            [{k: v for k, v in e.items() if k not in strip} for e in hb["episodes"]]
        assert len(ha["episodes"]) == 2  # one resolved, one ongoing
        rb, ra = orjson.loads(before["report"].stdout), orjson.loads(after["report"].stdout)
        assert ra["incidents"] == rb["incidents"]
        # the team's evaluator sends what the bastion could not
        status = cli("state", "status", "--json", config=shared_cfg)
        assert orjson.loads(status.stdout)["outbox"] == {"pending": 3}

        async def evaluate() -> None:
            rt = Runtime(load_config_text(shared_cfg.read_text()), DataPaths(tmp_path / "new"),
                         history=False, operator="bob@c")
            await rt.start()
            try:
                await hook.requests.until(lambda r: len(r) == 3)
            finally:
                await rt.stop()

        asyncio.run(evaluate())
    assert [r.headers["Idempotency-Key"] for r in hook.requests] == [
        "api-down/api/firing/1", "api-down/api/resolved/1", "api-down/api/firing/2"]


def test_state_init_status_and_clear_messages(tmp_path: Path) -> None:
    schema = f"opst_cli_{os.getpid()}"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[state]\nbackend = "postgres"\ndsn = "${{OPSTEST_DSN}}"\n'
                   f'schema = "{schema}"\n')
    os.environ["OPSTEST_DSN"] = MACHINE_DSN
    try:
        first = cli("state", "init", config=cfg)
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == f"created the opsconsole schema '{schema}' (version 1)"
        again = cli("state", "init", config=cfg)
        assert "is up to date (version 1)" in again.stdout
        status = cli("state", "status", config=cfg)
        assert "evaluator: nobody holds the lease" in status.stdout
        # an unset variable, an unreachable server: said plainly, exit non-zero
        del os.environ["OPSTEST_DSN"]
        unset = cli("state", "status", config=cfg)
        assert unset.returncode == 2
        assert "environment variable OPSTEST_DSN is not set" in unset.stderr
        os.environ["OPSTEST_DSN"] = "postgresql://postgres@127.0.0.1:9/test"
        down = cli("state", "status", config=cfg)
        assert down.returncode == 1
        assert "connection refused by 127.0.0.1:9" in down.stderr
        os.environ["OPSTEST_DSN"] = MACHINE_DSN
        none = cli("state", "status", "--schema", "opst_nosuch", config=cfg)
        assert "no opsconsole schema 'opst_nosuch': run `opsconsole state init`" in none.stderr
    finally:
        os.environ.pop("OPSTEST_DSN", None)
        drop_schema(MACHINE_DSN, schema)
