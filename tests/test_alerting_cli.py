"""`opsconsole rules test` and `opsconsole alerts`, run as a user would, plus the series DSL."""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import pytest

from console.engine.alerting.ruletest import expand_series, parse_rule_test, run_rule_test
from tests.alerttools import HookSite, webhook_config
from tests.test_cli import free_port, run


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1 1 0 0 1", [1, 1, 0, 0, 1]),
        ("0+10x3", [0, 10, 20, 30]),
        ("10-2x2", [10, 8, 6]),
        ("1x2 0", [1, 1, 1, 0]),
        ("_ 1 _x2 stale", [None, 1, None, None, None]),
        ("-1 2.5e2", [-1, 250]),
        ("", []),
    ],
)
def test_expanding_notation(text: str, want: list[float | None]) -> None:
    assert expand_series(text) == want


def test_expanding_notation_nan_and_errors() -> None:
    got = expand_series("NaN 1")
    assert math.isnan(got[0])  # type: ignore[arg-type]
    for bad, words in [("1+", "not a series value"), ("abc", "not a series value"),
                       ("1+2", "give a count"), ("_+1x2", "no increment")]:
        with pytest.raises(ValueError, match=words):
            expand_series(bad)


def test_rule_test_in_process_fires_at_the_promtool_time() -> None:
    test = parse_rule_test({
        "interval": "10s",
        "series": {"p95_ms": "100x2 2500x40 100x5"},
        "rules": [{"name": "slow", "expr": "p95_ms > 2000", "for": "5m", "severity": "P1"}],
    })
    report = run_rule_test(test)
    # first failing sample at 30 s, `for` 5 min: fires at 330 s, time to detect 300 s
    assert report.fired == {"slow": [(330.0, 300.0)]}
    assert [n.transition for n in report.notifications] == ["firing", "resolved"]


def test_rule_test_with_eval_times_between_samples() -> None:
    test = parse_rule_test({
        "series": {"up": "1 0x6"},
        "rules": [{"name": "down", "expr": "down", "failure_threshold": 1}],
        "eval_times": ["5s", "15s", "101s"],
        "expect": [{"at": "5s", "rule": "down", "state": "inactive"},
                   {"at": "15s", "rule": "down", "state": "firing"},
                   {"at": "101s", "rule": "down", "state": "nodata"}],
    })
    report = run_rule_test(test)
    assert report.failures == []


RULE_TEST = textwrap.dedent("""\
    interval = "10s"
    target = "api"
    [series]
    up = "1 1 0x5 1x3"
    [[rules]]
    name = "api-down"
    expr = "down"
    severity = "P0"
    [[expect]]
    at = "40s"
    rule = "api-down"
    state = "firing"
    """)


def test_rules_test_command(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text(RULE_TEST)
    r = run("rules", "test", str(f))
    assert r.returncode == 0, r.stderr
    assert "would have fired at +40s (detected in 20s)" in r.stdout
    assert "api-down/api/firing/1" in r.stdout
    assert "all expectations met" in r.stdout

    f.write_text(RULE_TEST.replace('state = "firing"', 'state = "resolved"'))
    r = run("rules", "test", str(f), "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["failures"] == ["at 40s: api-down expected resolved, got firing"]
    assert [n["key"] for n in doc["notifications"]] == ["api-down/api/firing/1",
                                                        "api-down/api/resolved/1"]

    f.write_text(RULE_TEST.replace('"down"', '"down("'))
    r = run("rules", "test", str(f))
    assert r.returncode == 2
    assert "rules:" in r.stderr


def test_rules_test_uses_default_rules_without_rules(tmp_path: Path) -> None:
    f = tmp_path / "t.toml"
    f.write_text('target = "api"\n[series]\nerror_pct = "1 60x5"\nup = "1x5"\n')
    r = run("rules", "test", str(f))
    assert r.returncode == 0, r.stderr
    assert "api-5xx-majority (P0)" in r.stdout
    assert "error-rate-high (P1)" in r.stdout




def test_alerts_command_from_one_check(tmp_path: Path, http_url: str) -> None:
    dead = free_port()
    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [[targets]]
        name = "web"
        kind = "http"
        url = "{http_url}/"
        timeout = "2s"

        [[targets]]
        name = "payments-webhook"
        kind = "http"
        url = "http://127.0.0.1:{dead}/"
        timeout = "2s"

        [[rules]]
        name = "payment-webhooks-down"
        severity = "P0"
        targets = ["*payment*"]
        expr = "down"
        failure_threshold = 1
        """))
    r = run("alerts", "--config", str(cfg), "--json")
    assert r.returncode == 1, r.stderr  # a P0 fires
    doc = json.loads(r.stdout)
    got = {(a["rule"], a["target"]): a["state"] for a in doc["alerts"]}
    assert got[("payment-webhooks-down", "payments-webhook")] == "firing"
    assert got[("target-down", "payments-webhook")] == "pending"  # default rule: 1 of 3
    assert not any(t == "web" for _, t in got)
    no_data = {d["rule"] for d in doc["no_data_rules"]}
    assert {"cpu-high", "errors-burst", "failed-payment-rate"} <= no_data

    r = run("alerts", "--config", str(cfg))
    assert r.returncode == 1
    assert "FIRING" in r.stdout
    assert "payment-webhooks-down" in r.stdout
    assert "no data (no target reports the metric): " in r.stdout

    cfg.write_text(f'[[targets]]\nname = "web"\nkind = "http"\nurl = "{http_url}/"\n')
    r = run("alerts", "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("no alerts")

    cfg.write_text('[[rules]]\nname = "x"\nexpr = "nope("\n')
    r = run("alerts", "--config", str(cfg))
    assert r.returncode == 2
    assert "c.toml:3: rules[0]" in r.stderr


def test_run_headless_sends_and_stops_cleanly(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from tests.test_cli import ROOT

    with HookSite() as site:
        cfg = tmp_path / "c.toml"
        cfg.write_text(webhook_config(site.base, hook_url="${HOOK_URL}"))
        env = {**os.environ, "OPSCONSOLE_DATA_DIR": str(tmp_path / "data"),
               "HOOK_URL": f"{site.base}/hook"}
        # --record after the sub-command, as the README writes it ("on run --headless")
        proc = subprocess.Popen([sys.executable, "-m", "console", "run", "--headless",
                                 "--config", str(cfg), "--record", str(tmp_path / "r.gz")],
                                cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert site.wait_for("firing")["key"] == "api-down/api/firing/1"
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[0])["transition"] == "firing"
    assert "running headless" in err
    saved = json.loads((tmp_path / "data" / "alerts.json").read_text())
    assert saved["alerts"][0]["state"] == "firing"
    from console.engine.signals.recording import open_recording

    kinds = {kind for _, kind, _ in open_recording(tmp_path / "r.gz").items}
    assert "r" in kinds, kinds  # check results ("n": notifications, "e": events)


def test_run_headless_keeps_going_when_its_stdout_closes(tmp_path: Path) -> None:
    """`opsconsole run --headless | jq` and jq dies, or the SSH session printing it hangs
    up: the console says so once, stops printing, and still evaluates and notifies."""
    import os
    import signal
    import subprocess
    import sys

    from tests.test_cli import ROOT

    with HookSite() as site:
        cfg = tmp_path / "c.toml"
        cfg.write_text(webhook_config(site.base))
        env = {**os.environ, "OPSCONSOLE_DATA_DIR": str(tmp_path / "data")}
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first notification is printed
        proc = subprocess.Popen([sys.executable, "-m", "console", "run", "--headless",
                                 "--config", str(cfg)], cwd=ROOT, env=env,
                                stdout=write_end, stderr=subprocess.PIPE, text=True)
        os.close(write_end)
        try:
            fired = site.wait_for("firing")  # printing it failed; sending it did not
            site.up = True
            resolved = site.wait_for("resolved")  # evaluation went on after the failure
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
    assert fired["key"] == "api-down/api/firing/1"
    assert resolved["rule"] == "api-down"
    assert proc.returncode == 0, err
    assert err.count("standard output is closed") == 1, err
    assert "notifications are no longer printed" in err
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err


def test_alerts_history_lists_open_and_resolved_episodes(tmp_path: Path) -> None:
    import time

    import orjson

    from console.engine.alerting.history import AlertHistory
    from console.engine.alerting.lifecycle import AlertEngine
    from console.engine.alerting.rules import RuleSet
    from console.engine.config.loader import load_config_text
    from console.engine.storage.store import MetricStore

    cfg = tmp_path / "c.toml"
    data = tmp_path / "data"
    cfg.write_text(textwrap.dedent(f"""\
        [console]
        data_dir = "{data}"

        [[targets]]
        name = "api"
        kind = "http"
        url = "http://127.0.0.1:9/"

        [[rules]]
        name = "api-down"
        severity = "P0"
        expr = "down"
        failure_threshold = 1

        [alerting]
        default_rules = false
        """))
    settings = load_config_text(cfg.read_text())
    now = time.time()
    store = MetricStore()
    core = AlertEngine(RuleSet.from_settings(settings), store)
    store.record("api:up", now - 250, 0.0)
    core.run(now - 250)  # fires: an open episode, ongoing 4m 10s
    data.mkdir()
    (data / "alerts.json").write_bytes(orjson.dumps(core.alerts.snapshot()))

    def ep(key: str, resolved: float, dur: float, **kw: object) -> dict[str, object]:
        return {"type": "episode", "key": key, "rule": key.split("/")[0], "target": "db",
                "severity": "P1", "fired_at": resolved - dur, "resolved_at": resolved,
                "duration_s": dur, "ongoing": False, **kw}

    hist = AlertHistory(data / "alerts-history.jsonl")
    hist.open()
    try:
        for e in (ep("slow/db/1", now - 2 * 86400, 60),  # outside the default 24h
                  ep("slow/db/2", now - 3600, 723, peak=2500.0, acknowledged_at=now - 4000,
                     acknowledged_by="ana@bastion", flapping=True, metric="p95_ms",
                     expr="p95_ms > 2000")):
            assert hist.journal is not None
            assert hist.journal.append_sync(e).durable
    finally:
        hist.close_sync()

    r = run("alerts", "--history", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "no console is evaluating alerts right now"
    assert len(lines) == 3
    assert lines[1].startswith("● ")
    assert re.search(r"ongoing 4m 1\ds ", lines[1])  # seconds pass while the CLI starts
    assert "peak" not in lines[1]  # `up == 0` has no worst value
    assert "api-down" in lines[1]
    assert lines[2].startswith("✔ ")
    assert "12m 03s" in lines[2]
    # the worst value with its unit (a walk read "peak 5.3678" of a percentage)
    assert "peak 2.50 s flapping acked by ana@bastion" in lines[2]

    r = run("alerts", "--history", "--since", "3d", "--json", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["evaluator"] is None
    assert [(e["key"], e["ongoing"]) for e in doc["episodes"]] == [
        ("api-down/api/1", True), ("slow/db/2", False), ("slow/db/1", False)]
    assert doc["episodes"][1]["acknowledged_by"] == "ana@bastion"

    r = run("alerts", "--history", "--since", "soon", "--config", str(cfg))
    assert r.returncode == 2
    assert "--since" in r.stderr


def test_alerts_lists_the_alerts_of_the_console_that_evaluates_here(tmp_path: Path) -> None:
    """During a live P0 a walk ran `opsconsole alerts` beside the console and read
    "pending" (one check here: 1 of the rule's 2 failures) where the console showed FIRING.
    With a console evaluating the data directory, `alerts` lists that console's alerts."""
    import os
    import signal
    import subprocess
    import sys

    from console.engine.alerting.statefile import read_state
    from tests.test_cli import ROOT
    from tests.test_notify_headless import until

    data = tmp_path / "data"
    env = {"OPSCONSOLE_DATA_DIR": str(data)}
    cfg = tmp_path / "c.toml"

    def saved_state() -> str | None:
        try:
            state = read_state(data / "alerts.json")
        except (OSError, ValueError):
            return None
        return next((a["state"] for a in (state or {}).get("alerts", [])
                     if a.get("rule") == "api-down"), None)

    with HookSite() as site:
        cfg.write_text(webhook_config(site.base))
        proc = subprocess.Popen([sys.executable, "-m", "console", "run", "--headless",
                                 "--config", str(cfg)], cwd=ROOT, env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            site.wait_for("firing")
            until(lambda: saved_state() == "firing", what="api-down firing in alerts.json")
            r = run("alerts", "--config", str(cfg), "--json", env=env)
            assert r.returncode == 1, r.stderr  # a P0 fires
            doc = json.loads(r.stdout)
            assert doc["evaluator"]["pid"] == proc.pid
            assert {(a["rule"], a["target"]): a["state"] for a in doc["alerts"]}[
                ("api-down", "api")] == "firing"
            assert "no_data_rules" not in doc  # one check's view, not the console's
            r = run("alerts", "--config", str(cfg), env=env)
            assert r.returncode == 1
            assert r.stdout.startswith(f"alerts evaluated by pid {proc.pid} on ")
            assert re.search(r"FIRING +P0 api-down +api ", r.stdout), r.stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=15)
    # nobody evaluates here any more: one check, where api-down needs two failures
    r = run("alerts", "--config", str(cfg), "--json", env=env)
    doc = json.loads(r.stdout)
    assert "evaluator" not in doc
    assert {(a["rule"], a["target"]): a["state"] for a in doc["alerts"]}[
        ("api-down", "api")] == "pending"


def test_alerts_demo_reads_the_config_the_demo_wrote(tmp_path: Path) -> None:
    """`alerts --demo` is listed in --help; it said "no config file found"."""
    data = tmp_path / "data"
    env = {"OPSCONSOLE_DATA_DIR": str(data)}
    r = run("alerts", "--demo", env=env)
    assert r.returncode == 2
    assert "the demo has not run in " in r.stderr
    assert "opsconsole demo" in r.stderr
    world = data / "demo"
    world.mkdir(parents=True)
    (world / "demo-config.toml").write_text(
        '[[targets]]\nname = "api"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n')
    r = run("alerts", "--demo", env=env)
    assert r.returncode == 2
    assert "the demo is not running" in r.stderr
    r = run("alerts", "--demo", "--history", env=env)
    assert r.returncode == 0, r.stderr
    assert "no alert fired in the last 24h" in r.stdout


def test_run_headless_with_its_standard_input_closed_exits_cleanly(tmp_path: Path) -> None:
    """`opsconsole run --headless <&-` aborted at exit with uvloop's "uv__close: Assertion
    'fd > STDERR_FILENO' failed" (rc 134): a file it opened had taken fd 0."""
    import os
    import signal
    import subprocess
    import sys

    from tests.test_cli import ROOT

    with HookSite() as site:
        cfg = tmp_path / "c.toml"
        cfg.write_text(webhook_config(site.base))
        env = {**os.environ, "OPSCONSOLE_DATA_DIR": str(tmp_path / "data")}
        proc = subprocess.Popen([sys.executable, "-m", "console", "run", "--headless",
                                 "--config", str(cfg)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: os.close(0))  # noqa: PLW1509 - the point
        try:
            assert site.wait_for("firing")["key"] == "api-down/api/firing/1"
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Assertion" not in err, err
