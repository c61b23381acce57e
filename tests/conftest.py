"""Suite-wide fixtures: no test writes into the real user's directories; a local HTTP server."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.promservers import RemoteStores, Team


@pytest.fixture(autouse=True, scope="session")
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """History, journal, alert state and config default to a per-run temporary folder.

    Tests that need their own folder still set OPSCONSOLE_DATA_DIR themselves (monkeypatch
    wins over this); this only catches the ones that forget.
    """
    root: Path = tmp_path_factory.mktemp("userdirs")
    saved = {k: os.environ.get(k) for k in ("OPSCONSOLE_DATA_DIR", "XDG_DATA_HOME",
                                            "XDG_CONFIG_HOME", "XDG_STATE_HOME")}
    os.environ["OPSCONSOLE_DATA_DIR"] = str(root / "data")
    for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
        os.environ[name] = str(root / name.lower())
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class _Health(BaseHTTPRequestHandler):
    """/health (and any path) ok in terminus format, /slow after 0.4 s, /broken 503."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path == "/slow":
            time.sleep(0.4)
        if self.path == "/broken":
            body, code = b'{"status":"error"}', 503
        else:
            body, code = b'{"status":"ok","info":{"database":{"status":"up"}}}', 200
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def remote_stores() -> Iterator[RemoteStores]:
    """A real Prometheus and VictoriaMetrics scraping one exporter, for the whole session
    (started on first use, stopped at the end)."""
    with RemoteStores() as stores:
        yield stores


@pytest.fixture(scope="session")
def team() -> Iterator[Team]:
    """A real 2-replica Alertmanager cluster fed by a real Prometheus, for the session."""
    with Team() as stack:
        yield stack


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """A real local HTTP server for the command-line tests (one per test module)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
