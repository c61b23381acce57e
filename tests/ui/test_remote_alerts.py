"""The team's alerts on screen: from the Alerts screen, `m` lists what a real Alertmanager
cluster and Prometheus hold; `a` acknowledges with an ACK! silence (amtool sees it), `s`
silences, `x` expires, `o` opens an incident from a Prometheus-evaluated P0 with its
runbook, `r` shows Prometheus's rules."""

from __future__ import annotations

from typing import Any

from console.app import OpsConsoleApp
from console.engine.config.schema import Settings
from console.engine.text.fmt import format_duration
from console.screens.alerts import AlertsScreen
from console.screens.incidents import IncidentScreen
from console.screens.remote_alerts import RemoteAlertsScreen
from tests.promservers import Team
from tests.ui.apptools import wait_for, wait_screen


async def test_team_alerts_ack_silence_expire_and_incident(team: Team, ui_env: None) -> None:
    settings = Settings.model_validate(team.config())
    app = OpsConsoleApp(settings=settings, history=False, poll=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, lambda: app.runtime is not None, 15, "runtime started")
        assert app.runtime is not None
        remote = app.runtime.remote
        assert remote is not None
        await remote.refresh()
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen), 5, "alerts")
        await wait_screen(pilot, lambda t: "⇄ Alertmanager team:" in t and "m team alerts" in t,
                          "the team line", within=5)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, RemoteAlertsScreen), 5,
                       "team alerts screen")
        screen: Any = app.screen
        text = await wait_screen(pilot, lambda t: "PaymentsDown" in t and "SlowCheckout" in t,
                                 "remote alerts listed")
        assert "Prometheus prom" in text
        # P0 first; the highlighted row is an Alertmanager or Prometheus PaymentsDown
        first = screen.selected()
        assert first.name == "PaymentsDown"
        assert first.severity == "P0"

        am_row = next(a for a in remote.alerts()
                      if a.kind == "alertmanager" and a.name == "PaymentsDown")
        screen.highlight(am_row.id)
        await pilot.press("a")
        user = screen.user
        await wait_for(pilot, lambda: any(s["comment"] == f"ACK! {user}"
                                          for s in team.ams[0].silences()), 10,
                       "the ACK silence in Alertmanager")
        await wait_screen(pilot, lambda t: "✔ acked" in t and "ACK PaymentsDown" in t,
                          "shown as acked, the ACK silence listed")

        # expire it from the silence rows
        [ack] = [s for s in team.ams[0].silences() if s["comment"] == f"ACK! {user}"]
        row = f"silence:team:{ack['id']}"
        await wait_for(pilot, lambda: row in screen._rows, 5, "the silence row")
        screen.highlight(row)
        await pilot.press("x")
        await wait_for(pilot, lambda: ack["id"] not in [s["id"] for s in
                                                        team.ams[0].silences()], 10,
                       "expired in Alertmanager")
        # the cursor stays where the silence was (the last row left), not back at the top
        await wait_for(pilot, lambda: row not in screen._rows, 10, "the silence row gone")
        assert screen._highlighted() == list(screen._rows)[-1] != first.id

        await pilot.press("r")
        rules = {r["name"]: r for g in team.prom_api("/api/v1/rules")["groups"]
                 for r in g["rules"]}
        slow_for = format_duration(rules["SlowCheckout"]["duration"])  # the server's own
        await wait_screen(pilot, lambda t: any("SlowCheckout" in line and f"for {slow_for}"
                                               in " ".join(line.split())
                                               for line in t.splitlines()),
                          "Prometheus's rules with their for")
        await pilot.press("r")

        prom_row = next(a for a in remote.alerts()
                        if a.kind == "prometheus" and a.name == "PaymentsDown")
        await wait_for(pilot, lambda: prom_row.id in screen._rows, 5, "rows back")
        screen.highlight(prom_row.id)
        await pilot.press("o")
        await wait_for(pilot, lambda: isinstance(app.screen, IncidentScreen), 10,
                       "incident opened")
        desk = app.runtime.desk
        assert desk is not None
        [incident] = list(desk.book.incidents.values())
        assert incident.severity == "P0"
        assert "payment-processing-failure" in incident.playbooks
        assert incident.started == prom_row.since
