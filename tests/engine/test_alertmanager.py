"""The team's Alertmanager (API v2) and Prometheus alerts, both ways, on real servers.

A cluster of two Alertmanager 0.25 replicas (gossiping silences) receives the alerts of a
Prometheus 2.42 evaluating two rules (one firing P0 with a runbook, one pending for an hour).
What the console reads is compared with `amtool alert query`/`amtool silence query` on each
replica and with Prometheus's own /api/v1/alerts and /api/v1/rules; what it pushes is read
back with amtool. Tests that stop a replica start a cluster of their own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from console.engine.alerting.alertmanager import Alertmanager, parse_time
from console.engine.alerting.lifecycle import AlertEngine
from console.engine.alerting.receivers.alertmanager import AlertmanagerPush
from console.engine.alerting.remote import RemoteAlerts, RemoteError
from console.engine.alerting.rules import RuleSet, TargetInfo
from console.engine.config.rules import Receiver, Rule
from console.engine.config.schema import Settings
from console.engine.probes.http_client import HttpClients
from console.engine.storage.store import MetricStore
from tests.promservers import Alertmanager as AMServer
from tests.promservers import Team, alertmanager_cluster


@pytest.fixture
async def remote(team: Team) -> AsyncIterator[tuple[RemoteAlerts, list[tuple[str, str]]]]:
    notices: list[tuple[str, str]] = []
    async with HttpClients() as clients:
        async def factory() -> HttpClients:
            return clients

        r = RemoteAlerts(Settings.model_validate(team.config()), factory,
                         notice=lambda level, text: notices.append((level, text)))
        await r.start(poll=False)
        await r.refresh()
        yield r, notices
        await r.stop()


def am_alerts(remote: RemoteAlerts) -> list[Any]:
    return [a for a in remote.alerts() if a.kind == "alertmanager"]


# -- reading ---------------------------------------------------------------------------------


async def test_alerts_merged_across_replicas_as_amtool_sees_them(team: Team, remote: Any
                                                                 ) -> None:
    r, _ = remote
    assert r.errors == {}
    mine = {a.id.split(":")[-1]: a for a in am_alerts(r)}
    seen: dict[str, set[int]] = {}
    for i, am in enumerate(team.ams):
        for a in am.alerts():
            seen.setdefault(a["fingerprint"], set()).add(i)
            got = mine[a["fingerprint"]]
            assert got.labels == a["labels"]
            assert got.annotations == a["annotations"]
            assert got.state == a["status"]["state"]
    assert set(mine) == set(seen)  # one entry per alert, not one per replica
    for fp, replicas in seen.items():
        assert set(mine[fp].replicas) == replicas
    payments = next(a for a in am_alerts(r) if a.name == "PaymentsDown")
    assert payments.severity == "P0"
    assert payments.runbook == "payment-processing-failure"
    assert payments.summary == "Payments API down"


async def test_prometheus_alerts_and_rules_as_the_server_has_them(team: Team, remote: Any
                                                                  ) -> None:
    r, _ = remote
    server = team.prom_api("/api/v1/alerts")["alerts"]
    mine = [a for a in r.alerts() if a.kind == "prometheus"]
    assert sorted((a.name, a.state) for a in mine) == sorted(
        (a["labels"]["alertname"], a["state"]) for a in server)
    pending = next(a for a in mine if a.name == "SlowCheckout")
    assert pending.state == "pending"
    rules = {x["name"]: x for g in team.prom_api("/api/v1/rules")["groups"]
             for x in g["rules"]}
    assert pending.for_s == rules["SlowCheckout"]["duration"]  # the rule's own `for`
    assert {x.name: (x.state, x.for_s) for x in r.rules()} == {
        n: (x["state"], x["duration"]) for n, x in rules.items()}
    payments = next(a for a in mine if a.name == "PaymentsDown")
    assert payments.since == parse_time(next(
        a["activeAt"] for a in server if a["labels"]["alertname"] == "PaymentsDown"))


async def test_a_prometheus_p0_opens_an_incident_like_a_console_alert(remote: Any) -> None:
    r, _ = remote
    alert = next(a for a in r.alerts() if a.kind == "prometheus" and a.name == "PaymentsDown")
    fields = alert.incident_fields()
    assert fields["severity"] == "P0"
    assert fields["runbook"] == "payment-processing-failure"
    assert fields["started"] == alert.since
    from console.engine.incidents.playbooks import load_playbooks

    chosen = [p.name for p in load_playbooks().select(severity="P0",
                                                      runbook=fields["runbook"])]
    assert "payment-processing-failure" in chosen  # its runbook, chosen by the label


# -- acting ----------------------------------------------------------------------------------


async def test_ack_is_an_ack_silence_extended_while_firing(team: Team, remote: Any) -> None:
    r, notices = remote
    alert = next(a for a in am_alerts(r) if a.name == "PaymentsDown")
    message = await r.ack(alert.id, "ana")
    assert message.startswith("acknowledged PaymentsDown in Alertmanager team")
    [ack] = [s for s in team.ams[0].silences() if s["comment"] == "ACK! ana"]
    assert ack["createdBy"] == "ana"
    assert {m["name"]: m["value"] for m in ack["matchers"]} == alert.labels
    assert all(m["isEqual"] and not m["isRegex"] for m in ack["matchers"])
    acked = r.get(alert.id)
    assert acked is not None
    assert acked.acked_by == "ana"
    assert acked.display_state() == "acked"
    # the same alert as Prometheus reports it shows the acknowledgement too
    prom_row = next(a for a in r.alerts() if a.kind == "prometheus" and a.name == "PaymentsDown")
    assert prom_row.acked_by == "ana"
    assert prom_row.display_state() == "acked"
    with pytest.raises(RemoteError, match="already acknowledged by ana"):
        await r.ack(alert.id, "bob")
    # Later, with less than half of ack_extend left: extended, not recreated
    first_end = parse_time(ack["endsAt"])
    assert first_end is not None
    r.clock = lambda: time.time() + 600  # 15 min ack_extend: 5 min left
    await r.refresh()
    [extended] = [s for s in team.ams[0].silences() if s["comment"] == "ACK! ana"]
    assert extended["id"] == ack["id"]
    assert parse_time(extended["endsAt"]) > first_end  # type: ignore[operator]
    await r.expire("team", ack["id"])  # leave the alert as we found it
    assert notices == []


async def test_an_ack_expired_elsewhere_is_said_and_not_recreated(team: Team, remote: Any
                                                                  ) -> None:
    r, notices = remote
    alert = next(a for a in am_alerts(r) if a.name == "PaymentsDown")
    await r.ack(alert.id, "cy")
    [ack] = [s for s in team.ams[0].silences() if s["comment"] == "ACK! cy"]
    # replica 2 learns the silence by gossip: expiring it there before that said "silence
    # not found" (and left the ACK behind for the session's other tests)
    deadline = time.monotonic() + 15
    while ack["id"] not in {s["id"] for s in team.ams[1].silences()}:
        assert time.monotonic() < deadline, "the ACK never reached replica 2"
        await asyncio.sleep(0.1)
    team.ams[1].amtool("silence", "expire", ack["id"])  # someone, elsewhere

    def states() -> list[str]:
        return [s["status"]["state"] for am in team.ams for s in am.silences(expired=True)
                if s["id"] == ack["id"]]

    # ... and every replica learns that by gossip too: before, replica 1 could still hold
    # the silence as active, and the console's own expire below went through there
    deadline = time.monotonic() + 15
    while states() != ["expired"] * len(team.ams):
        assert time.monotonic() < deadline, f"the expiry never reached every replica: {states()}"
        await asyncio.sleep(0.1)
    await r.refresh()
    assert any("was expired elsewhere" in text and "PaymentsDown" in text
               for _, text in notices), notices
    # not recreated: the only ACK of cy anywhere is the one expired on replica 2
    ids = {s["id"] for am in team.ams for s in am.silences(expired=True)
           if s["comment"] == "ACK! cy"}
    assert ids == {ack["id"]}
    assert [s["status"]["state"] for s in team.ams[1].silences(expired=True)
            if s["id"] == ack["id"]] == ["expired"]
    got = r.get(alert.id)
    assert got is not None
    assert got.acked_by is None
    with pytest.raises(RemoteError, match="had already expired"):
        await r.expire("team", ack["id"])


async def test_silence_list_and_expire(team: Team, remote: Any) -> None:
    r, _ = remote
    alert = next(a for a in am_alerts(r) if a.name == "PaymentsDown")
    text = await r.silence(alert.id, 7200, "deploy in progress", "dee")
    assert "for 2h" in text
    [s] = [s for s in team.ams[0].silences() if s["comment"] == "deploy in progress"]
    assert s["createdBy"] == "dee"
    ends, starts = parse_time(s["endsAt"]), parse_time(s["startsAt"])
    assert ends is not None
    assert starts is not None
    assert round(ends - starts) == 7200
    listed = {sil.id: sil for _, sil in r.silences()}
    assert listed[s["id"]].comment == "deploy in progress"
    assert not listed[s["id"]].ack
    assert (await r.expire("team", s["id"])).startswith("expired silence")
    assert s["id"] not in [x["id"] for x in team.ams[0].silences()]
    with pytest.raises(RemoteError, match="a duration and a comment"):
        await r.silence(alert.id, 3600, "  ", "dee")


async def test_an_ack_is_expired_when_its_alert_resolves(team: Team, remote: Any) -> None:
    r, notices = remote
    # an alert only this test sends (as another tool would), to resolve it at will
    async with HttpClients() as clients:
        am = Alertmanager("team", [a.url for a in team.ams], clients)
        body = {"labels": {"alertname": "DiskFull", "severity": "warning"},
                "startsAt": _iso(time.time() - 60), "endsAt": _iso(time.time() + 600)}
        assert await am.post_alerts([body]) == [None, None]
        await r.refresh()
        alert = next(a for a in am_alerts(r) if a.name == "DiskFull")
        await r.ack(alert.id, "eve")
        [ack] = [s for s in team.ams[0].silences() if s["comment"] == "ACK! eve"]
        body["endsAt"] = _iso(time.time() - 1)  # resolved
        assert await am.post_alerts([body]) == [None, None]
    await r.refresh()
    assert ack["id"] not in [s["id"] for s in team.ams[0].silences()]
    assert [s["status"]["state"] for s in team.ams[0].silences(expired=True)
            if s["id"] == ack["id"]] == ["expired"]
    assert any("DiskFull resolved: its acknowledgement" in t for _, t in notices)


def _iso(t: float) -> str:
    from console.engine.alerting.alertmanager import iso

    return iso(t)


# -- a replica down, and pushing the console's alerts --------------------------------------------


@pytest.fixture
def cluster() -> Iterator[list[AMServer]]:
    ams = alertmanager_cluster(2)
    try:
        for a in ams:
            a.start()
        yield ams
    finally:
        for a in ams:
            a.close()


def console_alerts(store: MetricStore, now: float) -> AlertEngine:
    """The console's own alert engine with `api-down` firing (P0) and `api-slow` (P2)."""
    rules = [Rule(name="api-down", expr="down", severity="P0", failure_threshold=1,
                  success_threshold=1,
                  summary="API down", runbook="target-down", targets=["api"]),
             Rule(name="api-slow", expr="latency_ms > 100", severity="P2",
                  failure_threshold=1, targets=["api"])]
    engine = AlertEngine(RuleSet(rules, [TargetInfo("api", "http", 10.0)]), store,
                         clock=lambda: now)
    store.record("api:up", now, 0.0)
    store.record("api:latency_ms", now, 500.0)
    engine.run(now)
    return engine


async def test_push_to_every_replica_and_a_replica_down(cluster: list[AMServer]) -> None:
    now = time.time() - 60  # so that the resolution, 10 s later, is in the past
    store = MetricStore()
    engine = console_alerts(store, now)
    receiver = Receiver(name="team-am", kind="alertmanager", alertmanager="team",
                        severities=["P0", "P1"])
    async with HttpClients() as clients:
        api = Alertmanager("team", [a.url for a in cluster], clients, timeout=2)
        push = AlertmanagerPush(receiver, api, lambda: engine.alerts, clock=lambda: now)
        assert await push.push_once() == [None, None]
        for am in cluster:
            [got] = am.alerts()  # the P2 alert is not this receiver's
            assert got["labels"]["alertname"] == "api-down"
            assert got["labels"]["severity"] == "P0"
            assert got["labels"]["target"] == "api"
            assert got["annotations"]["summary"] == "API down"
            assert got["annotations"]["runbook"] == "target-down"
            ends = parse_time(got["endsAt"])
            assert ends is not None
            assert round(ends - now) == 4 * receiver.resend  # explicit endsAt, 4 periods

        cluster[1].stop()
        results = await push.push_once()
        assert results[0] is None
        assert "replica 2" in str(results[1])
        assert "connection refused" in str(results[1])
        [got] = cluster[0].alerts()  # the other replica still gets every alert
        assert got["labels"]["alertname"] == "api-down"
        assert push.health.failing[0].url == cluster[1].url

        cluster[1].start()  # back: the next re-send brings it every firing alert
        assert await push.push_once() == [None, None]
        assert [a["labels"]["alertname"] for a in cluster[1].alerts()] == ["api-down"]
        assert push.health.failing == []

        store.record("api:up", now + 10, 1.0)  # resolved: sent with a past endsAt
        store.record("api:latency_ms", now + 10, 50.0)
        later = now + 10
        engine.run(later)
        push.clock = lambda: later
        assert await push.push_once() == [None, None]
        for am in cluster:
            assert am.alerts() == []  # Alertmanager holds it as resolved, not active


async def test_a_hanging_replica_does_not_delay_the_other(cluster: list[AMServer]) -> None:
    from aiohttp import web

    from tests.promtools import serve

    hang = asyncio.Event()

    async def never(_: web.Request) -> web.Response:
        await hang.wait()
        return web.Response()

    now = time.time()
    engine = console_alerts(MetricStore(), now)
    receiver = Receiver(name="am", kind="alertmanager", alertmanager="team")
    try:
        async with serve({"/{tail:.*}": never}, "*") as port, HttpClients() as clients:
            api = Alertmanager("team", [cluster[0].url, f"http://127.0.0.1:{port}"],
                               clients, timeout=1)
            push = AlertmanagerPush(receiver, api, lambda: engine.alerts, clock=lambda: now)
            results = await push.push_once()
    finally:
        hang.set()
    assert results[0] is None
    assert "no answer within 1s" in str(results[1])
    assert {a["labels"]["alertname"] for a in cluster[0].alerts()} == {"api-down", "api-slow"}


async def test_reading_with_a_replica_down_says_so_and_shows_the_rest(
        cluster: list[AMServer]) -> None:
    async with HttpClients() as clients:
        api = Alertmanager("team", [a.url for a in cluster], clients, timeout=2)
        body = {"labels": {"alertname": "Only1", "severity": "info"},
                "startsAt": _iso(time.time()), "endsAt": _iso(time.time() + 300)}
        assert await api.post_alerts([body]) == [None, None]
        cluster[1].stop()

        async def factory() -> HttpClients:
            return clients

        settings = Settings.model_validate({"alerting": {"alertmanagers": [
            {"name": "team", "urls": [a.url for a in cluster], "timeout": "2s"}]}})
        r = RemoteAlerts(settings, factory)
        await r.start(poll=False)
        await r.refresh()
    [line] = r.errors["Alertmanager team"]
    assert line.startswith("replica 2 (127.0.0.1:")
    assert "connection refused" in line
    assert [a.name for a in r.alerts()] == ["Only1"]
    assert r.alerts()[0].replicas == (0,)


async def test_a_hanging_replica_and_a_dead_prometheus_while_reading(
        cluster: list[AMServer]) -> None:
    """Reading goes on with what answers: a hanging replica times out on its own deadline,
    an unreachable Prometheus is one line, and the other replica's alerts are shown."""
    from aiohttp import web

    from tests.promtools import serve
    from tests.redisserver import free_port

    hang = asyncio.Event()

    async def never(_: web.Request) -> web.Response:
        await hang.wait()
        return web.Response()

    try:
        async with serve({"/{tail:.*}": never}, "*") as port, HttpClients() as clients:
            api = Alertmanager("team", [cluster[0].url], clients)
            body = {"labels": {"alertname": "Seen", "severity": "P1"},
                    "startsAt": _iso(time.time()), "endsAt": _iso(time.time() + 300)}
            assert await api.post_alerts([body]) == [None]

            async def factory() -> HttpClients:
                return clients

            settings = Settings.model_validate({
                "targets": [{"name": "gone", "kind": "promql", "timeout": "1s",
                             "url": f"http://127.0.0.1:{free_port()}",
                             "metrics": {"x": "vector(1)"}}],
                "alerting": {"alertmanagers": [{
                    "name": "team", "timeout": "1s",
                    "urls": [cluster[0].url, f"http://127.0.0.1:{port}"]}]}})
            r = RemoteAlerts(settings, factory)
            await r.start(poll=False)
            async with asyncio.timeout(10):  # bounded by the 1 s deadlines, not the hang
                await r.refresh()
    finally:
        hang.set()
    assert [a.name for a in r.alerts()] == ["Seen"]
    assert any("replica 2" in e and "no answer within 1s" in e
               for e in r.errors["Alertmanager team"])
    assert any("connection refused" in e for e in r.errors["Prometheus gone"])


async def test_malformed_prometheus_entries_are_left_out_and_said_not_fatal() -> None:
    """One bad entry among 5,000 firing alerts (`"labels": "oops"`) or a rule with
    `"duration": "x"` raised out of the read: the Alerts screen said "no alerts" and
    `opsconsole alerts` printed a traceback. The good ones are shown, the bad counted."""
    from aiohttp import web

    from tests.promtools import serve

    good = [{"labels": {"alertname": f"Hot{i}", "severity": "P1"}, "state": "firing",
             "activeAt": "2026-12-07T03:00:00Z", "value": "1"} for i in range(50)]
    alerts = [*good, {"labels": "oops", "state": "firing"}, "not an object"]
    groups = [{"name": "g", "rules": [
        {"type": "alerting", "name": "Hot0", "duration": 60, "query": "x > 1"},
        {"type": "alerting", "name": "Bad", "duration": "x"}]}, "not a group"]

    async def api(request: web.Request) -> web.Response:
        data = ({"alerts": alerts} if request.path.endswith("/alerts")
                else {"groups": groups})
        return web.json_response({"status": "success", "data": data})

    async with serve({"/api/v1/{what}": api}) as port, HttpClients() as clients:
        async def factory() -> HttpClients:
            return clients

        settings = Settings.model_validate({"targets": [{
            "name": "prom", "kind": "promql", "url": f"http://127.0.0.1:{port}",
            "alerts": True, "metrics": {"x": "vector(1)"}}]})
        r = RemoteAlerts(settings, factory)
        await r.start(poll=False)
        async with asyncio.timeout(10):
            await r.refresh()
    assert sorted(a.name for a in r.alerts()) == sorted(f"Hot{i}" for i in range(50))
    assert next(a for a in r.alerts() if a.name == "Hot0").for_s == 60
    errors = r.errors["Prometheus prom"]
    # (the API client already drops entries that are not objects)
    assert "alerts: 1 malformed entry left out (AttributeError: 'str' object has no " \
           "attribute 'items')" in errors
    assert "rules: 1 malformed entry left out (ValueError: could not convert string to " \
           "float: 'x')" in errors
