"""A second demo on a machine where the first holds the ports: a free port, or a clear answer.

`opsconsole demo` without `--port` falls back to free ports (the stack's own test covers
that); with `--port` taken it says which port to use and exits 2 before drawing anything;
and a demo that fails while starting says so on screen and exits non-zero, never hangs on
"starting…" with exit 0.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.demo.ports import port_taken

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else listens on (as a first demo would)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def test_explicit_port_taken_says_which_to_use(held_port: int, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "console", "demo", "--port", str(held_port),
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert f"port {held_port} is taken" in out.stderr
    suggested = int(out.stderr.rsplit("--port ", 1)[1].split()[0])
    assert not any(port_taken("127.0.0.1", suggested + i) for i in range(3))
    assert "Traceback" not in out.stderr


def test_port_from_the_environment(held_port: int, tmp_path: Path) -> None:
    """$OPSCONSOLE_DEMO_PORT is --port's default: the printed config points there."""
    import os

    env = {**os.environ, "OPSCONSOLE_DEMO_PORT": "18950"}
    out = subprocess.run(
        [sys.executable, "-m", "console", "demo", "--print-config", "--no-local",
         "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
        cwd=ROOT, env=env)
    assert out.returncode == 0
    assert 'url = "http://127.0.0.1:18950/health"' in out.stdout
    assert 'url = "http://127.0.0.1:18952/webhooks/stripe"' in out.stdout
    # the bell is offered, and says what it does
    assert "bell = true               # ring the terminal bell once when a P0/P1" in out.stdout
    # terminus's real shape: failing indicators are in details/error, never in info
    assert "down_unless = ['body.details.database.status == \"up\"']" in out.stdout
    assert "body.info." not in out.stdout
    env["OPSCONSOLE_DEMO_PORT"] = "soon"
    out = subprocess.run(
        [sys.executable, "-m", "console", "demo", "--print-config", "--no-local"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert out.returncode == 2
    assert "OPSCONSOLE_DEMO_PORT is not a port number" in out.stderr
