"""`opsconsole alerts` with the team's Alertmanager and Prometheus: their alerts beside the
console's, as JSON (compared with amtool's and Prometheus's own answers) and as text."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.promservers import Team
from tests.test_cli import run


def _config(team: Team, tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(f"""\
        [[targets]]
        name = "prom"
        kind = "promql"
        url = "{team.prom.url}"
        [targets.metrics]
        up = "vector(1)"

        [[alerting.alertmanagers]]
        name = "team"
        urls = [{", ".join(f'"{a.url}"' for a in team.ams)}]
        timeout = "2s"
        """) + extra)
    return path


def test_alerts_json_has_the_teams_alerts(team: Team, tmp_path: Path) -> None:
    out = run("alerts", "--config", str(_config(team, tmp_path)), "--json")
    assert out.returncode == 1, out.stderr  # PaymentsDown fires in the team's stack
    doc = json.loads(out.stdout)
    remote = doc["remote"]
    assert remote["errors"] == {}
    am = {a["labels"]["alertname"]: a for a in remote["alerts"] if a["source"] == "alertmanager"}
    expected = {a["labels"]["alertname"]: a for a in team.ams[0].alerts()}
    assert set(am) >= set(expected)
    for name, a in expected.items():
        assert am[name]["labels"] == a["labels"]
        assert am[name]["annotations"] == a["annotations"]
    prom = {(a["alertname"], a["state"]) for a in remote["alerts"]
            if a["source"] == "prometheus"}
    assert prom == {(a["labels"]["alertname"], a["state"])
                    for a in team.prom_api("/api/v1/alerts")["alerts"]}
    payments = next(a for a in remote["alerts"] if a["alertname"] == "PaymentsDown")
    assert payments["severity"] == "P0"
    assert {r["name"] for r in remote["rules"]} == {"PaymentsDown", "SlowCheckout"}


def test_alerts_text_and_a_replica_down(team: Team, tmp_path: Path) -> None:
    from tests.redisserver import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    path = _config(team, tmp_path, textwrap.dedent(f"""
        [[alerting.alertmanagers]]
        name = "gone"
        urls = ["{dead}"]
        """))
    out = run("alerts", "--config", str(path))
    assert "team alerts:" in out.stdout
    assert "Alertmanager team" in out.stdout
    assert "PaymentsDown" in out.stdout
    gone = [line for line in out.stdout.splitlines() if "⚠ Alertmanager gone:" in line]
    assert "no replica answered" in gone[0]
    assert gone[1].endswith(f"replica 1 (127.0.0.1:{dead.rsplit(':', 1)[1]}): "
                            "connection refused")


def test_the_readme_example_config_is_valid(tmp_path: Path) -> None:
    """README's "Running with Prometheus and Alertmanager" config, as a user would copy it."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Running with Prometheus and Alertmanager", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "config.toml"
    path.write_text(example)
    out = run("validate", "--config", str(path), env={"MIMIR_TOKEN": "t0ken"})
    assert out.returncode == 0, out.stdout + out.stderr
