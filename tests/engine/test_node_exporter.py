"""Remote host metrics from a node_exporter /metrics, and the node_exporter rendering of this host.

The arithmetic is checked against a fixed exposition modelled on node_exporter 1.x output
(`node_exporter_1x.prom`: four cpus, a loop device, a partition, lo) and a second scrape whose
changes are listed below with the results worked out by hand. Every scrape goes through a real
aiohttp server on 127.0.0.1; nothing below the socket is mocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from console.demo.node_exporter import NodeSample, go_float, node_exporter_text
from console.engine.config.loader import check_text
from console.engine.config.schema import HostTarget, Settings
from console.engine.model import CheckResult, Status
from console.engine.probes.host import HostProbe
from console.engine.probes.http_client import HttpClients
from console.engine.scheduler import Scheduler
from tests.faultservers import hang_server
from tests.promtools import serve

FIXTURE_A = (Path(__file__).parent / "node_exporter_1x.prom").read_text()

# Scrape B = scrape A with these samples changed (the delta in each comment).
CHANGES_B = {
    # cpu0: idle +7, iowait +0.5, softirq +0.1, system +0.8, user +1.6 -> all +10, busy 2.5
    'node_cpu_seconds_total{cpu="0",mode="idle"}': "123463.78",
    'node_cpu_seconds_total{cpu="0",mode="iowait"}': "121",
    'node_cpu_seconds_total{cpu="0",mode="softirq"}': "345.77",
    'node_cpu_seconds_total{cpu="0",mode="system"}': "2346.4",
    'node_cpu_seconds_total{cpu="0",mode="user"}': "8767.03",
    # cpu1: idle +6, softirq +0.1, system +0.9, user +3 -> all +10, busy 4
    'node_cpu_seconds_total{cpu="1",mode="idle"}': "123795.01",
    'node_cpu_seconds_total{cpu="1",mode="softirq"}': "211.08",
    'node_cpu_seconds_total{cpu="1",mode="system"}': "2199.6",
    'node_cpu_seconds_total{cpu="1",mode="user"}': "9015.34",
    # guest time is already inside user: +2 here must not count again
    'node_cpu_guest_seconds_total{cpu="1",mode="user"}': "2",
    # cpu2: idle +9.5, system +0.1, user +0.4 -> all +10, busy 0.5
    'node_cpu_seconds_total{cpu="2",mode="idle"}': "124577.39",
    'node_cpu_seconds_total{cpu="2",mode="system"}': "2054.42",
    'node_cpu_seconds_total{cpu="2",mode="user"}': "8123.85",
    # cpu3: idle +2, iowait +1, irq +0.2, softirq +0.3, system +1.5, user +5 -> +10, busy 7
    'node_cpu_seconds_total{cpu="3",mode="idle"}': "122347.67",
    'node_cpu_seconds_total{cpu="3",mode="iowait"}': "144.21",
    'node_cpu_seconds_total{cpu="3",mode="irq"}': "0.2",
    'node_cpu_seconds_total{cpu="3",mode="softirq"}': "234.86",
    'node_cpu_seconds_total{cpu="3",mode="system"}': "2458.28",
    'node_cpu_seconds_total{cpu="3",mode="user"}': "9881.54",
    # disks: nvme0n1 read +3145728, written +4096000; sda read +1000000; loop0 read +5e6
    # and the partition nvme0n1p2 (its disk's bytes again) are left out by default
    'node_disk_read_bytes_total{device="nvme0n1"}': "3.4571036672e+10",
    'node_disk_written_bytes_total{device="nvme0n1"}': "9.8769528832e+10",
    'node_disk_read_bytes_total{device="sda"}': "1.235567168e+09",
    'node_disk_read_bytes_total{device="loop0"}': "1.012e+07",
    'node_disk_read_bytes_total{device="nvme0n1p2"}': "3.4003145728e+10",
    'node_disk_written_bytes_total{device="nvme0n1p2"}': "9.8004096e+10",
    # network: eth0 rx +1250000 tx +250000, docker0 rx +1000 tx +2000, lo +9e6 (left out)
    'node_network_receive_bytes_total{device="eth0"}': "1.23458039012e+11",
    'node_network_transmit_bytes_total{device="eth0"}': "2.3457039012e+10",
    'node_network_receive_bytes_total{device="docker0"}': "1.049576e+06",
    'node_network_transmit_bytes_total{device="docker0"}': "2.099152e+06",
    'node_network_receive_bytes_total{device="lo"}': "9.96654321e+08",
    'node_network_transmit_bytes_total{device="lo"}': "9.96654321e+08",
    # memory: available is exactly 3/4 of 16589606912
    "node_memory_MemAvailable_bytes": "1.2442205184e+10",
    "node_load1": "0.52",
}
# Worked out by hand from the changes above.
CPU_PCT_B = 100 * (2.5 + 4 + 0.5 + 7) / 40  # 35.0; iowait counted busy would give 38.75
MEMORY_PCT_B = 25.0
ROOT_USED_PCT = 100 * (5e11 - 2.05e11) / ((5e11 - 2.05e11) + 1.8e11)  # 59/95 = 62.105...
EFI_USED_PCT = 25.0  # 128 MiB used of 512 MiB, nothing reserved
DISK_READ_B = 3145728 + 1000000
DISK_WRITE_B = 4096000
NET_RX_B = 1250000 + 1000
NET_TX_B = 250000 + 2000


def with_changes(text: str, changes: dict[str, str]) -> str:
    lines = text.splitlines()
    seen = set()
    for i, line in enumerate(lines):
        if line.startswith("#"):
            continue
        series = line.rsplit(" ", 1)[0]
        if series in changes:
            lines[i] = f"{series} {changes[series]}"
            seen.add(series)
    assert seen == set(changes), set(changes) - seen  # every change hit a line
    return "\n".join(lines) + "\n"


FIXTURE_B = with_changes(FIXTURE_A, CHANGES_B)


class Exporter:
    """An aiohttp server whose /metrics body the test sets between scrapes."""

    def __init__(self) -> None:
        self.body = FIXTURE_A
        self.content_type = "text/plain; version=0.0.4; charset=utf-8"
        self.port = 0
        self.hits = 0

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def exporter() -> AsyncIterator[Exporter]:
    state = Exporter()

    async def metrics(request: web.Request) -> web.Response:
        state.hits += 1
        return web.Response(body=state.body.encode(),
                            headers={"Content-Type": state.content_type})

    async with serve({"/metrics": metrics}) as port:
        state.port = port
        yield state


def remote(url: str, **kw: object) -> HostTarget:
    return HostTarget.model_validate({"name": "web-1", "url": url, "timeout": "2s", **kw})


async def two_checks(probe: HostProbe, exporter: Exporter, second: str) -> CheckResult:
    first = await probe.check()
    assert first.status == Status.UP, first.error
    await asyncio.sleep(0.05)  # a measurable interval, so interval_s rounding is negligible
    exporter.body = second
    r = await probe.check()
    assert r.status == Status.UP, r.error
    return r


def increase(r: CheckResult, metric: str) -> float:
    """rate * interval: the byte increase the probe saw."""
    dt = r.details["interval_s"]
    assert isinstance(dt, float)
    assert dt >= 0.05
    return r.metrics[metric] * dt


# -- the arithmetic, on the hand-checked exposition -----------------------------------------------


async def test_first_check_has_gauges_and_no_rates(exporter: Exporter,
                                                   clients: HttpClients) -> None:
    probe = HostProbe(remote(exporter.url()), clients)
    r = await probe.check()
    assert r.status == Status.UP, r.error
    assert r.kind == "host"
    assert r.target == "web-1"
    m = r.metrics
    assert m["memory_total_bytes"] == 16589606912
    assert m["memory_used_bytes"] == 16589606912 - 12_000_000_000
    assert m["memory_pct"] == pytest.approx(100 * 4589606912 / 16589606912)
    assert m["load1"] == 1.23
    assert m["disk_used_pct"] == pytest.approx(ROOT_USED_PCT)
    for rate in ("cpu_pct", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
                 "net_rx_bytes_per_s", "net_tx_bytes_per_s"):
        assert rate not in m
    assert r.details["cpus"] == 4
    assert r.details["devices"] == ["nvme0n1", "sda"]
    assert r.details["interfaces"] == ["docker0", "eth0"]
    assert "next check" in str(r.details["note"])
    assert "missing" not in r.details
    assert r.response is not None
    assert r.response.status_code == 200


async def test_second_check_matches_the_hand_computed_numbers(
    exporter: Exporter, clients: HttpClients
) -> None:
    probe = HostProbe(remote(exporter.url()), clients)
    r = await two_checks(probe, exporter, FIXTURE_B)
    m = r.metrics
    assert m["cpu_pct"] == pytest.approx(CPU_PCT_B, abs=1e-6)
    assert m["cpu_pct"] == pytest.approx(35.0, abs=1e-6)
    assert m["memory_pct"] == pytest.approx(MEMORY_PCT_B, abs=1e-9)
    assert m["memory_used_bytes"] == 16589606912 // 4
    assert m["disk_used_pct"] == pytest.approx(ROOT_USED_PCT)
    assert m["load1"] == 0.52
    assert increase(r, "disk_read_bytes_per_s") == pytest.approx(DISK_READ_B, rel=1e-3)
    assert increase(r, "disk_write_bytes_per_s") == pytest.approx(DISK_WRITE_B, rel=1e-3)
    assert increase(r, "net_rx_bytes_per_s") == pytest.approx(NET_RX_B, rel=1e-3)
    assert increase(r, "net_tx_bytes_per_s") == pytest.approx(NET_TX_B, rel=1e-3)
    assert "note" not in r.details


async def test_mountpoint_and_device_and_interface_filters(
    exporter: Exporter, clients: HttpClients
) -> None:
    probe = HostProbe(remote(exporter.url(), mountpoint="/boot/efi", device="sda",
                             interface="lo"), clients)
    r = await two_checks(probe, exporter, FIXTURE_B)
    assert r.metrics["disk_used_pct"] == pytest.approx(EFI_USED_PCT)
    assert increase(r, "disk_read_bytes_per_s") == pytest.approx(1_000_000, rel=1e-3)
    assert r.metrics["disk_write_bytes_per_s"] == 0.0
    assert increase(r, "net_rx_bytes_per_s") == pytest.approx(9_000_000, rel=1e-3)
    assert r.details["devices"] == ["sda"]
    assert r.details["interfaces"] == ["lo"]

    exporter.body = FIXTURE_A
    probe = HostProbe(remote(exporter.url(), mountpoint="/snap/core20/2105",
                             device="nvme0n1|loop0", interface="eth.*"), clients)
    r = await two_checks(probe, exporter, FIXTURE_B)
    assert r.metrics["disk_used_pct"] == 100.0
    assert increase(r, "disk_read_bytes_per_s") == pytest.approx(3145728 + 5_000_000, rel=1e-3)
    assert increase(r, "net_rx_bytes_per_s") == pytest.approx(1_250_000, rel=1e-3)


async def test_counter_reset_gives_no_rate_for_that_interval(
    exporter: Exporter, clients: HttpClients
) -> None:
    probe = HostProbe(remote(exporter.url()), clients)
    await two_checks(probe, exporter, FIXTURE_B)
    await asyncio.sleep(0.05)
    # eth0 was reset (driver reload): its receive counter starts again near zero; the rest
    # moves on: nvme0n1 reads +2097152, cpu0 idles for another 10 s.
    exporter.body = with_changes(FIXTURE_B, {
        'node_network_receive_bytes_total{device="eth0"}': "1000",
        'node_disk_read_bytes_total{device="nvme0n1"}': "3.4573133824e+10",
        'node_cpu_seconds_total{cpu="0",mode="idle"}': "123473.78",
    })
    r = await probe.check()
    assert r.status == Status.UP, r.error
    assert "net_rx_bytes_per_s" not in r.metrics  # no made-up rate across the reset
    assert r.metrics["net_tx_bytes_per_s"] == 0.0
    assert increase(r, "disk_read_bytes_per_s") == pytest.approx(2097152, rel=1e-3)
    assert r.metrics["cpu_pct"] == pytest.approx(0.0, abs=1e-9)

    # the host rebooted: every counter is small again -> no rates at all this time ...
    await asyncio.sleep(0.05)
    rebooted = with_changes(FIXTURE_B, {
        'node_cpu_seconds_total{cpu="0",mode="idle"}': "30",
        'node_disk_read_bytes_total{device="nvme0n1"}': "1e+06",
        'node_disk_written_bytes_total{device="nvme0n1"}': "4096",
        'node_network_transmit_bytes_total{device="eth0"}': "5000",
    })
    exporter.body = rebooted
    r = await probe.check()
    assert r.status == Status.UP
    for rate in ("cpu_pct", "disk_read_bytes_per_s", "disk_write_bytes_per_s",
                 "net_tx_bytes_per_s"):
        assert rate not in r.metrics, rate
    # ... and the next interval has them again
    await asyncio.sleep(0.05)
    exporter.body = with_changes(rebooted, {
        'node_disk_read_bytes_total{device="nvme0n1"}': "1.5e+06",
        'node_cpu_seconds_total{cpu="0",mode="user"}': "8770.03",
        'node_cpu_seconds_total{cpu="0",mode="idle"}': "31",
    })
    r = await probe.check()
    assert increase(r, "disk_read_bytes_per_s") == pytest.approx(500_000, rel=1e-3)
    assert r.metrics["cpu_pct"] == pytest.approx(75.0)  # user +3, idle +1


async def test_missing_families_are_absent_metrics_with_a_note(
    exporter: Exporter, clients: HttpClients
) -> None:
    # a node_exporter run with only the cpu and loadavg collectors
    keep = ("node_cpu_seconds_total", "node_load1", "# ")
    exporter.body = "\n".join(line for line in FIXTURE_A.splitlines()
                              if line.startswith(keep)) + "\n"
    probe = HostProbe(remote(exporter.url(), mountpoint="/data"), clients)
    r = await probe.check()
    assert r.status == Status.UP, r.error
    assert set(r.metrics) == {"load1", "latency_ms"}
    missing = str(r.details["missing"])
    for name in ("node_memory_MemTotal_bytes", "node_filesystem_size_bytes",
                 "node_disk_read_bytes_total", "node_network_receive_bytes_total"):
        assert name in missing

    exporter.body = FIXTURE_A  # everything there, but nothing mounted at /data
    r = await probe.check()
    assert "disk_used_pct" not in r.metrics
    assert r.details["missing"] == "filesystem at /data"


async def test_not_a_node_exporter_is_down_with_a_clear_error(
    exporter: Exporter, clients: HttpClients
) -> None:
    # an application's /metrics: valid Prometheus text, but no node_* family
    exporter.body = ("# TYPE http_requests_total counter\n"
                     'http_requests_total{status="200"} 1027\n'
                     "# TYPE process_cpu_seconds_total counter\n"
                     "process_cpu_seconds_total 12.5\n")
    probe = HostProbe(remote(exporter.url()), clients)
    r = await probe.check()
    assert r.status == Status.DOWN
    assert r.kind == "host"
    assert "not a node_exporter /metrics" in (r.error or "")
    assert "2 series" in (r.error or "")
    assert r.response is not None
    assert "http_requests_total" in r.response.body_excerpt

    exporter.body = "<html><body>Login</body></html>"
    exporter.content_type = "text/html"
    r = await probe.check()
    assert r.status == Status.DOWN
    assert "not the Prometheus text format" in (r.error or "")

    # the same url serving a node_exporter later: it works, and the bad scrapes left no base
    exporter.body, exporter.content_type = FIXTURE_A, "text/plain; version=0.0.4"
    r = await probe.check()
    assert r.status == Status.UP
    assert "cpu_pct" not in r.metrics


async def test_hanging_exporter_obeys_the_deadline(clients: HttpClients) -> None:
    async with hang_server() as srv:
        probe = HostProbe(remote(srv.url("/metrics"), timeout="300ms"), clients)
        t0 = time.perf_counter()
        r = await probe.check()
        took = time.perf_counter() - t0
    assert r.status == Status.DOWN
    assert r.kind == "host"
    assert "timed out after 300ms" in (r.error or "")
    assert 0.3 <= took < 0.9  # timeout + 0.1 s, plus scheduling slack


async def test_env_url_and_missing_env(exporter: Exporter, clients: HttpClients,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB1_METRICS", exporter.url())
    r = await HostProbe(remote("${WEB1_METRICS}"), clients).check()
    assert r.status == Status.UP, r.error
    monkeypatch.delenv("WEB1_METRICS")
    r = await HostProbe(remote("${WEB1_METRICS}"), clients).check()
    assert r.status == Status.DOWN
    assert "WEB1_METRICS" in (r.error or "")


async def test_remote_host_in_engine_records_series(exporter: Exporter) -> None:
    settings = Settings.model_validate({"targets": [
        {"name": "web-1", "kind": "host", "url": exporter.url()}]})
    engine = Scheduler(settings)
    await engine.start(poll=False)
    try:
        [r] = await engine.check_once()
        assert r.status == Status.UP, r.error
        await asyncio.sleep(0.05)
        exporter.body = FIXTURE_B
        [r] = await engine.check_once()
        assert r.metrics["cpu_pct"] == pytest.approx(35.0)
        latest = engine.store.latest("web-1:cpu_pct")
        assert latest is not None
    finally:
        await engine.stop()


# -- node_exporter_text(): this machine as a "remote host" ----------------------------------------


def sample(cpu_extra: float = 0.0, read: float = 0.0) -> NodeSample:
    cpus = [{"user": 100.0 + cpu_extra, "system": 50.0, "idle": 1000.0 + 3 * cpu_extra,
             "iowait": 5.0, "nice": 0.0, "irq": 0.0, "softirq": 1.0, "steal": 0.0}
            for _ in range(2)]
    return NodeSample(
        cpus=cpus, memory={"MemTotal": 8e9, "MemAvailable": 6e9, "MemFree": 5e9,
                           "Buffers": 1e8, "Cached": 9e8},
        load=(0.75, 0.5, 0.25),
        filesystems=[("/dev/vda1", "ext4", "/", 100e9, 40e9, 35e9),
                     ('/dev/we"ird', "xfs", "/mnt/a\\b", 10e9, 10e9, 10e9)],
        disks={"vda": (1e9 + read, 2e9)}, nics={"eth0": (5e6, 6e6), "lo": (7e6, 7e6)},
        guest=[(0.0, 0.0), (0.0, 0.0)], boot_time=1.7e9,
    )


def test_rendering_uses_node_exporter_names_labels_and_numbers() -> None:
    text = node_exporter_text(sample())
    assert 'node_cpu_seconds_total{cpu="1",mode="iowait"} 5' in text
    assert "# TYPE node_cpu_seconds_total counter" in text
    assert ('node_filesystem_avail_bytes{device="/dev/vda1",device_error="",fstype="ext4",'
            'mountpoint="/"} 3.5e+10') in text
    assert 'device="/dev/we\\"ird"' in text
    assert 'mountpoint="/mnt/a\\\\b"' in text
    assert "node_memory_MemTotal_bytes 8e+09" in text
    assert "node_load1 0.75" in text
    assert 'node_network_receive_bytes_total{device="lo"} 7e+06' in text
    assert 'node_disk_written_bytes_total{device="vda"} 2e+09' in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == sorted(names)  # families sorted by name, as node_exporter writes them
    assert [go_float(v) for v in (1.6589606912e10, 123456.0, 1e6, 0.52, 1.0, 0.0, 1e-5)] == [
        "1.6589606912e+10", "123456", "1e+06", "0.52", "1", "0", "1e-05"]


async def test_rendered_sample_scrapes_to_the_expected_metrics(
    exporter: Exporter, clients: HttpClients
) -> None:
    exporter.body = node_exporter_text(sample())
    probe = HostProbe(remote(exporter.url()), clients)
    # 2 cpus, each: user +10, idle +30 -> 25 % busy; vda read +4 MB
    r = await two_checks(probe, exporter, node_exporter_text(sample(10.0, 4e6)))
    assert r.metrics["cpu_pct"] == pytest.approx(25.0)
    assert r.metrics["memory_pct"] == pytest.approx(25.0)
    assert r.metrics["disk_used_pct"] == pytest.approx(100 * 60 / 95)  # used 60 of 60 + 35
    assert r.metrics["load1"] == 0.75
    assert increase(r, "disk_read_bytes_per_s") == pytest.approx(4e6, rel=1e-3)
    assert r.metrics["net_rx_bytes_per_s"] == 0.0  # eth0 unchanged; lo left out


async def test_this_machine_rendered_agrees_with_the_local_probe(
    exporter: Exporter, clients: HttpClients
) -> None:
    exporter.body = await asyncio.to_thread(node_exporter_text)
    r = await HostProbe(remote(exporter.url()), clients).check()
    local = await HostProbe(HostTarget(name="here")).check()
    assert r.status == Status.UP, r.error
    assert local.status == Status.UP, local.error
    assert r.details["cpus"] == psutil.cpu_count()
    assert r.metrics["memory_total_bytes"] == local.metrics["memory_total_bytes"]
    assert r.metrics["memory_pct"] == pytest.approx(local.metrics["memory_pct"], abs=5.0)
    assert r.metrics["disk_used_pct"] == pytest.approx(local.metrics["disk_used_pct"], abs=0.5)
    assert 0.0 <= r.metrics["load1"] < 1000


# -- config ---------------------------------------------------------------------------------------


def issues(toml: str) -> list[str]:
    env = {"WEB1_METRICS": "http://10.0.0.5:9100/metrics", "NODE_TOKEN": "t0ken"}
    settings, found = check_text(toml, "c.toml", env=env)
    assert (settings is None) == bool(found)
    return [i.format() for i in found]


def host_toml(**fields: str) -> str:
    body = "".join(f"{k} = {v}\n" for k, v in fields.items())
    return f'[[targets]]\nname = "web-1"\nkind = "host"\n{body}'


def test_config_remote_host_valid() -> None:
    assert issues(host_toml(url='"http://10.0.0.5:9100/metrics"')) == []
    assert issues(host_toml(url='"${WEB1_METRICS}"', mountpoint='"/data"',
                            device='"nvme\\\\d+n\\\\d+"', interface='"eth.*"',
                            headers='{ Authorization = "Bearer ${NODE_TOKEN}" }',
                            insecure="true", max_body='"5MB"')) == []
    assert issues(host_toml()) == []  # the local machine, as before
    t = HostTarget.model_validate({"name": "h", "url": "https://h:9100/metrics"})
    assert t.mountpoint == "/"
    assert t.device is None
    assert t.interface is None


@pytest.mark.parametrize(("fields", "expected"), [
    ({"url": '"ftp://10.0.0.5/metrics"'}, "http:// or https:// URL"),
    ({"url": '"10.0.0.5:9100"'}, "http:// or https:// URL"),
    ({"url": '"http://admin:hunter2@10.0.0.5:9100/metrics"'}, "literal password"),
    ({"url": '"http://10.0.0.5/metrics"', "headers": '{ Authorization = "Bearer abc" }'},
     "carries a secret"),
    ({"url": '"http://10.0.0.5/metrics"', "device": '"sd[a"'}, "bad regular expression"),
    ({"device": '"sda"'}, "only for a remote host"),
    ({"url": '"http://10.0.0.5/metrics"', "disk_path": '"/"'}, "mountpoint"),
])
def test_config_remote_host_invalid(fields: dict[str, str], expected: str) -> None:
    found = issues(host_toml(**fields))
    assert len(found) == 1, found
    assert expected in found[0]
    assert "hunter2" not in found[0]
