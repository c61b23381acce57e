"""Real Prometheus, VictoriaMetrics and Alertmanager servers for tests, and their own CLIs.

Each server is the Debian package's binary on free 127.0.0.1 ports with a data directory of
its own, run as a child process and stopped (SIGTERM, then SIGKILL) by whoever started it; a
start waits for the server's own "ready" log line, read from its stderr (which a thread keeps
draining, so a chatty server never blocks on a full pipe). `promtool` and `amtool` give the
servers' own answers that tests compare the console with.

`Gauges` is a small exporter (prometheus_client on a threaded HTTP server) whose values the
test sets; `scraped()` waits until the server has scraped it twice more, so the values a test
set are in the TSDB before it asks.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tests.redisserver import free_port

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"
VICTORIA = "/usr/bin/victoria-metrics"
START_TIMEOUT = 30.0


def _require(binary: str, package: str) -> None:
    """A missing binary fails the test (never skips it): .ci/run installs the package."""
    if not Path(binary).exists():
        raise RuntimeError(f"{binary} not found: apt-get install -y {package} (.ci/run does)")


class _Server:
    """A child process whose stderr is drained by a thread; `ready` waits for a log line."""

    name = "server"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=f"opsconsole-{self.name}-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    READY = ""  # the log line saying the server is ready

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Any:
        """Start and wait until ready; a port another process took since it was picked
        (free_port() can only pick, not hold) is picked again, up to three times."""
        for attempt in range(3):
            try:
                self._spawn(self._argv(), self.READY)
                return self
            except RuntimeError as exc:
                self.stop()
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
                self.port = free_port()
        return self

    def _spawn(self, argv: Sequence[str], ready: str) -> None:
        self.lines = []
        self.proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, cwd=self.dir)
        self._reader = threading.Thread(target=self._drain, args=(self.proc,), daemon=True)
        self._reader.start()
        self.wait_log(ready, START_TIMEOUT)

    def _drain(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip())
                del self.lines[:-2000]
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_log(self, pattern: str, timeout: float, *, after: int = 0) -> str:
        """The first log line (from index `after`) matching `pattern`; raises on exit or
        after `timeout` with the log's tail."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if rx.search(line):
                        return line
                after = max(after, len(self.lines))
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited: {self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name}: no {pattern!r} within {timeout}s: "
                                       f"{self.tail()}")
                self._cond.wait(min(left, 0.5))

    def tail(self) -> str:
        return "\n".join(self.lines[-15:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _QueryAPI(_Server):
    """A server with the Prometheus query API; promtool asks it for its own answers."""

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """`promtool query instant` at `at`: the server's own answer, as its JSON."""
        out = subprocess.run(
            [PROMTOOL, "query", "instant", "-o", "json", f"--time={_rfc3339(at)}",
             self.url, expr], capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)

    def query_range(self, expr: str, start: float, end: float, step: float
                    ) -> list[dict[str, Any]]:
        """`promtool query range`: the server's own matrix for the same window and step."""
        out = subprocess.run(
            [PROMTOOL, "query", "range", "-o", "json", f"--start={_rfc3339(start)}",
             f"--end={_rfc3339(end)}", f"--step={step:g}s", self.url, expr],
            capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout)


class Prometheus(_QueryAPI):
    """Prometheus 2.42 scraping `targets` every `scrape` (a duration string) with
    `rules` (a rule file's YAML text) evaluated every `evaluate`."""

    name = "prometheus"

    def __init__(self, targets: Sequence[str] = (), *, rules: str | None = None,
                 scrape: str = "1s", evaluate: str = "1s",
                 alertmanagers: Sequence[str] = ()) -> None:
        _require(PROMETHEUS, "prometheus")
        super().__init__()
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape, "evaluation_interval": evaluate},
            "scrape_configs": [{"job_name": "test",
                                "static_configs": [{"targets": list(targets)}]}],
        }
        if rules is not None:
            (self.dir / "rules.yml").write_text(rules)
            config["rule_files"] = ["rules.yml"]
        if alertmanagers:
            config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [a.removeprefix("http://") for a in alertmanagers]}]}]}
        # JSON is YAML: no YAML writer needed for the test's own config.
        (self.dir / "prometheus.yml").write_text(json.dumps(config))

    READY = r"Server is ready to receive web requests"

    def _argv(self) -> list[str]:
        return [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle", "--log.level=info",
                # re-send firing alerts every second (not every minute): the first send
                # happens before the Alertmanagers are discovered and is dropped
                "--rules.alert.resend-delay=1s"]


class VictoriaMetrics(_QueryAPI):
    """VictoriaMetrics 1.79 scraping `targets` every `scrape` (its default latency offset of
    30 s kept unless `latency_offset` is given)."""

    name = "victoria"

    def __init__(self, targets: Sequence[str] = (), *, scrape: str = "1s",
                 latency_offset: str | None = None) -> None:
        _require(VICTORIA, "victoria-metrics")
        super().__init__()
        self.latency_offset = latency_offset
        config = {"global": {"scrape_interval": scrape},
                  "scrape_configs": [{"job_name": "test",
                                      "static_configs": [{"targets": list(targets)}]}]}
        (self.dir / "scrape.yml").write_text(json.dumps(config))

    READY = r"started VictoriaMetrics in"

    def start(self) -> Any:
        """VictoriaMetrics logs that it started before its HTTP server listens (the log
        says "starting http server", then it binds): wait for the port to accept too."""
        super().start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise RuntimeError(f"victoria-metrics never listened on {self.port}: "
                                       + "\n".join(self.lines[-20:])) from None
                time.sleep(0.02)  # no log line follows the bind: a connect is the signal

    def _argv(self) -> list[str]:
        argv = [VICTORIA, f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.dir / 'data'}",
                f"-promscrape.config={self.dir / 'scrape.yml'}"]
        if self.latency_offset is not None:
            argv.append(f"-search.latencyOffset={self.latency_offset}")
        return argv


class Alertmanager(_Server):
    """Alertmanager 0.25 with a receiver that sends nothing; `peers` makes it one replica of
    a gossiping cluster (each replica lists the others' cluster addresses)."""

    name = "alertmanager"

    def __init__(self, *, resolve_timeout: str = "5m") -> None:
        _require(ALERTMANAGER, "prometheus-alertmanager")
        super().__init__()
        self.cluster_port = free_port()
        config = {"global": {"resolve_timeout": resolve_timeout},
                  "route": {"receiver": "null", "group_wait": "0s"},
                  "receivers": [{"name": "null"}]}
        (self.dir / "alertmanager.yml").write_text(json.dumps(config))
        self.peers: list[str] = []

    @property
    def cluster_address(self) -> str:
        return f"127.0.0.1:{self.cluster_port}"

    READY = r'msg="Listening on"'

    def _argv(self) -> list[str]:
        argv = [ALERTMANAGER, f"--config.file={self.dir / 'alertmanager.yml'}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=debug"]
        if self.peers:
            argv += [f"--cluster.listen-address={self.cluster_address}",
                     f"--cluster.advertise-address={self.cluster_address}",
                     "--cluster.gossip-interval=50ms", "--cluster.pushpull-interval=1s",
                     "--cluster.settle-timeout=2s",
                     *(f"--cluster.peer={p}" for p in self.peers)]
        else:
            argv.append("--cluster.listen-address=")
        return argv

    def amtool(self, *args: str) -> Any:
        """amtool against this replica, JSON output parsed."""
        out = subprocess.run([AMTOOL, f"--alertmanager.url={self.url}", "-o", "json", *args],
                             capture_output=True, text=True, timeout=30, check=True)
        return json.loads(out.stdout) if out.stdout.strip() else None

    def alerts(self) -> list[dict[str, Any]]:
        """`amtool alert query`: every alert this replica holds (active, silenced,
        inhibited)."""
        return list(self.amtool("alert", "query", "--active", "--silenced", "--inhibited")
                    or [])

    def silences(self, *, expired: bool = False) -> list[dict[str, Any]]:
        """`amtool silence query` (with `expired`, the expired ones too)."""
        args = ["silence", "query"] + (["--expired"] if expired else [])
        return list(self.amtool(*args) or [])


def alertmanager_cluster(n: int = 2) -> list[Alertmanager]:
    """`n` replicas gossiping with one another (not started)."""
    nodes = [Alertmanager() for _ in range(n)]
    for node in nodes:
        node.peers = [o.cluster_address for o in nodes if o is not node]
    return nodes


def _rfc3339(t: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return f"{whole}.{int(round((t % 1) * 1000)) % 1000:03d}Z"


# -- an exporter the test controls ---------------------------------------------------------------


class Gauges:
    """`name{labels} value` gauges served at /metrics; every scrape is counted, so a test can
    wait until the server has seen what it set (`scraped`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._gauges: dict[str, Gauge] = {}
        self._scrapes: dict[str, int] = {}
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    def set(self, name: str, value: float, **labels: str) -> None:
        g = self._gauges.get(name)
        if g is None:
            g = self._gauges[name] = Gauge(name, name, sorted(labels), registry=self.registry)
        (g.labels(**labels) if labels else g).set(value)

    def remove(self, name: str, **labels: str) -> None:
        self._gauges[name].remove(*(labels[k] for k in sorted(labels)))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def scraped(self, times: int = 2, timeout: float = 30.0,
                by: Sequence[str] = ("Prometheus",)) -> None:
        """Until each scraper in `by` (its User-Agent's product: "Prometheus",
        "vm_promscrape") scraped `times` more times (a scrape in flight when the values
        changed may have carried the old ones, the next one the new)."""
        with self._cond:
            goals = {who: self._scrapes.get(who, 0) + times for who in by}
            if not self._cond.wait_for(
                    lambda: all(self._scrapes.get(w, 0) >= n for w, n in goals.items()),
                    timeout):
                raise RuntimeError(f"not scraped {times} times by {', '.join(by)} within "
                                   f"{timeout}s (scrapes so far: {self._scrapes})")

    def _count(self, agent: str) -> None:
        who = agent.split("/", 1)[0].strip()
        with self._cond:
            self._scrapes[who] = self._scrapes.get(who, 0) + 1
            self._cond.notify_all()

    def __enter__(self) -> Gauges:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                body = generate_latest(owner.registry)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                owner._count(self.headers.get("User-Agent", ""))

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class RemoteStores:
    """An exporter (`gauges`) scraped every second by a Prometheus (`prom`) and a
    VictoriaMetrics (`vm`, latency offset 1 s so values show up quickly), shared by the
    tests of a session: each test uses gauge names of its own."""

    HOSTS = {"web-1": 41.5, "web-2": 12.0, "db-1": 73.25}

    def __init__(self) -> None:
        self.gauges = Gauges()
        self._started: list[_Server] = []

    def __enter__(self) -> RemoteStores:
        self.gauges.__enter__()
        for host, value in self.HOSTS.items():
            self.gauges.set("demo_cpu", value, host=host)
        for i in range(40):
            self.gauges.set("demo_many", float(i), n=str(i))
        self.prom = Prometheus([self.gauges.address])
        self.vm = VictoriaMetrics([self.gauges.address], latency_offset="1s")
        self._started = [self.prom, self.vm]
        try:
            self.prom.start()
            self.vm.start()
            self.gauges.scraped(2, by=("Prometheus", "vm_promscrape"))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._started:
            server.close()
        self.gauges.__exit__()


# -- the team's alerting stack -------------------------------------------------------------------

TEAM_RULES = """\
groups:
  - name: team
    rules:
      - alert: PaymentsDown
        expr: vector(1) > 0
        labels: {severity: critical, runbook: payment-processing-failure, service: payments}
        annotations: {summary: "Payments API down"}
      - alert: SlowCheckout
        expr: vector(2) > 1
        for: 1h
        labels: {severity: warning}
"""


class Team:
    """Two gossiping Alertmanager replicas (`ams`) and a Prometheus (`prom`) evaluating
    TEAM_RULES (one firing P0 with a runbook, one pending for an hour) and sending to both;
    started once the firing alert reached both replicas."""

    def __init__(self) -> None:
        self.ams = alertmanager_cluster(2)
        self.prom = Prometheus([], rules=TEAM_RULES, alertmanagers=[a.url for a in self.ams])

    def __enter__(self) -> Team:
        try:
            for a in self.ams:
                a.start()
            self.prom.start()
            for a in self.ams:  # Prometheus delivered its firing alert to both replicas
                a.wait_log(r'msg="Received alert".*PaymentsDown', 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.prom.close()
        for a in self.ams:
            a.close()

    def config(self) -> dict[str, Any]:
        """A config (as data) reading both: a promql target and the cluster."""
        return {"targets": [{"name": "prom", "kind": "promql", "url": self.prom.url,
                             "metrics": {"up": "vector(1)"}}],
                "alerting": {"alertmanagers": [{"name": "team",
                                                "urls": [a.url for a in self.ams]}]}}

    def prom_api(self, path: str) -> Any:
        """Prometheus's own answer (its HTTP API's `data`)."""
        with urllib.request.urlopen(self.prom.url + path, timeout=10) as r:
            return json.loads(r.read())["data"]
