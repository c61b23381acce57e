"""What the shared-state tests run: a target the test turns up and down, consoles as real
processes (`opsconsole run --headless`, and `tests.stateconsole` for an operator's actions),
each with its own data directory, all on one state database.

Every process is read line by line from a thread; a test waits for the line it expects
(with a deadline that only ends a hung test), never sleeps for something to happen.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from tests.peers import Log

ROOT = Path(__file__).resolve().parents[1]


class Switch:
    """An HTTP target: 200 while `up`, 503 while not (a health endpoint the test flips);
    ``/ping/…`` always 200 (a dead-man's switch)."""

    def __init__(self) -> None:
        self.up = True
        self.hits = Log()  # the path of every request (a self-watch's pings among them)
        switch = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                switch.hits.add(self.path)
                code = 200 if switch.up or self.path.startswith("/ping") else 503
                body = b'{"status":"ok"}' if code == 200 else b'{"status":"down"}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Switch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def console_config(url: str, state: str, data_dir: Path, receivers: str = "",
                   interval: str = "0.5s", extra: str = "", history: bool = False) -> str:
    """A console on one target `api` with one P1 rule, the shared state, its data dir."""
    return f'''[console]
data_dir = "{data_dir}"
history = {str(history).lower()}

[[targets]]
name = "api"
kind = "http"
url = "{url}"
interval = "{interval}"
timeout = "1s"

[[rules]]
name = "api-down"
expr = "down"
severity = "P1"
failure_threshold = 1
success_threshold = 1
summary = "API down"

[alerting]
default_rules = false
flap_window = 5
flap_high = 100
{extra}
{receivers}
{state}'''


class Proc:
    """A console process: stderr lines in `err`, JSON stdout lines in `out`."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.err = Log()
        self.out = Log()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stderr, False),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stdout, True),
                                          daemon=True)]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, json: bool) -> None:
        for line in stream:
            if json and line.startswith(b"{"):
                with contextlib.suppress(orjson.JSONDecodeError):
                    self.out.add(orjson.loads(line))
            elif not json:
                self.err.add(line.decode(errors="replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def said(self, needle: str, within: float = 60.0) -> str:
        """The first stderr line containing `needle` (waits for it)."""
        lines = self.err.wait(lambda ls: any(needle in x for x in ls), within)
        return next(x for x in lines if needle in x)

    def said_count(self, needle: str) -> int:
        return sum(1 for x in self.err if needle in x)

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps(command) + b"\n")
        self.proc.stdin.flush()

    def wait_out(self, pred: Callable[[dict[str, Any]], bool], within: float = 60.0
                 ) -> dict[str, Any]:
        items = self.out.wait(lambda xs: any(pred(x) for x in xs), within)
        return next(x for x in items if pred(x))

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.kill9()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


def headless(config: Path, env: dict[str, str] | None = None) -> Proc:
    """`opsconsole run --headless` on `config`."""
    return Proc(["-m", "console", "run", "--headless", "--config", str(config)], env)


def operator_console(config: Path, operator: str) -> Proc:
    """`tests.stateconsole`: a console (a whole Runtime) that takes commands on stdin."""
    return Proc(["-m", "tests.stateconsole", str(config)], {"OPSCONSOLE_OPERATOR": operator})
