"""The Runtime with the team's Alertmanager: a receiver of kind "alertmanager" pushes the
console's own alerts to every replica, the same cluster's alerts are read back for the
Alerts screen, and a reload adds or removes both; config mistakes are named."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from console.engine.config.loader import check_text, load_config_text
from console.engine.paths import DataPaths
from console.engine.runtime import Runtime
from tests.promservers import alertmanager_cluster
from tests.redisserver import free_port


def config(urls: list[str], *, receiver: bool = True) -> str:
    text = textwrap.dedent(f"""\
        [[targets]]
        name = "api"
        kind = "http"
        url = "http://127.0.0.1:{free_port()}/health"
        interval = "500ms"
        timeout = "1s"

        [[rules]]
        name = "api-down"
        expr = "down"
        severity = "P0"
        failure_threshold = 1
        summary = "API down"

        [alerting]
        default_rules = false

        [[alerting.alertmanagers]]
        name = "team"
        urls = {urls!r}
        interval = "1s"
        """).replace("'", '"')
    if receiver:
        text += textwrap.dedent("""
            [[alerting.receivers]]
            name = "team-am"
            kind = "alertmanager"
            alertmanager = "team"
            severities = ["P0", "P1"]
            """)
    return text


async def test_the_consoles_alert_reaches_every_replica_and_is_read_back(
        tmp_path: Path) -> None:
    ams = alertmanager_cluster(2)
    try:
        for a in ams:
            a.start()
        marks = [len(a.lines) for a in ams]
        runtime = Runtime(load_config_text(config([a.url for a in ams])),
                          DataPaths(tmp_path / "data"), history=False, lease=False)
        await runtime.start()
        try:
            assert runtime.notifier is None  # no outbox receiver: the pusher is its own
            [pusher] = runtime.pushers
            for a, mark in zip(ams, marks, strict=True):
                await asyncio.to_thread(a.wait_log, r'msg="Received alert".*api-down', 30,
                                        after=mark)
            for a in ams:
                [got] = a.alerts()
                assert got["labels"]["alertname"] == "api-down"
                assert got["annotations"]["summary"] == "API down"
            assert runtime.remote is not None
            async with asyncio.timeout(20):
                await runtime.remote.wait_until(
                    lambda: any(x.name == "api-down" for x in runtime.remote.alerts()))
            [mine] = runtime.remote.alerts()
            assert mine.kind == "alertmanager"
            assert mine.replicas == (0, 1)
            assert pusher.health.failing == []

            # a reload without the receiver stops pushing, keeps reading
            await runtime.apply(load_config_text(config([a.url for a in ams],
                                                        receiver=False)))
            assert runtime.pushers == []
            assert runtime.remote is not None
        finally:
            await runtime.stop()
    finally:
        for a in ams:
            a.close()


@pytest.mark.parametrize(("extra", "message"), [
    ('[[alerting.receivers]]\nname = "x"\nkind = "alertmanager"\n',
     "an alertmanager receiver names its cluster"),
    ('[[alerting.receivers]]\nname = "x"\nkind = "alertmanager"\nalertmanager = "nope"\n',
     "names alertmanager 'nope', which no [[alerting.alertmanagers]] entry defines"),
    ('[[alerting.receivers]]\nname = "x"\nkind = "webhook"\n', "a webhook receiver needs url"),
    ('[[alerting.alertmanagers]]\nname = "t"\nurls = ["http://am:9093/api/v2"]\n',
     "without /api/v2"),
    ('[[alerting.alertmanagers]]\nname = "t"\nurls = ["http://am:9093"]\n'
     'headers = { Authorization = "Bearer abc" }\n', "carries a secret"),
])
def test_config_mistakes_are_named(extra: str, message: str) -> None:
    _, issues = check_text(extra)
    assert any(message in issue.format() for issue in issues), [i.format() for i in issues]
