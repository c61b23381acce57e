"""Every `opsconsole …` line of the README's "Everyday use" works as written.

The README says to run them from the repository's root with the demo running in another
terminal; so does this test: `opsconsole demo` runs on a PTY (as `make demo` would), and each
line runs in a shell in a fresh directory holding the repository's `examples/`, with a
private data directory. The console itself (`opsconsole --config …`, `watch`) runs on a PTY
and is quit with `q`; `run --headless` runs until SIGTERM. A line passes when it exits with a
status its documentation allows (never 2, the usage/config error), prints no traceback, and
says what it should. If another process holds the demo's default ports on this shared
machine, the demo runs on free ones ($OPSCONSOLE_DEMO_PORT) and the README's literal port in
a URL is replaced by the one in use: the only liberty taken.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from pty_harness import PtyProcess, opsconsole_command, terminal_env  # noqa: E402

from console.demo.ports import DEFAULT_PORT, free_port_block, port_taken  # noqa: E402

BIN = Path(sys.executable).parent


def readme_lines() -> list[str]:
    text = (ROOT / "README.md").read_text("utf-8")
    section = text[text.index("## Everyday use"):]
    block = section[section.index("```sh") + 5:]
    block = block[:block.index("```")]
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    assert all(line.startswith("opsconsole ") for line in lines), lines
    return lines


def test_the_readme_lists_the_commands_this_test_knows() -> None:
    """A new README line needs a check below: the test says which."""
    for line in readme_lines():
        assert _kind(line) is not None, f"no check for the README line: {line}"


def _kind(line: str) -> str | None:
    cmd = line.split("#", 1)[0].split()
    if cmd[1] in ("--config",) or cmd[1] == "watch":
        return "tui"
    if cmd[1:3] == ["run", "--headless"]:
        return "service"
    known = {"demo", "validate", "check", "panels", "alerts", "rules", "logs", "incidents",
             "postmortem", "report", "paths"}
    return "command" if cmd[1] in known else None


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], int]]:
    """A fresh working directory, a private data directory, and the demo running."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    env = terminal_env({
        "OPSCONSOLE_DATA_DIR": str(tmp_path / "data"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    port = DEFAULT_PORT
    if any(port_taken("127.0.0.1", DEFAULT_PORT + i) for i in range(3)):
        port = free_port_block()
    # Named explicitly, so a demo that loses a race for the port says so instead of
    # quietly taking others (the README's lines would then reach someone else's demo).
    env["OPSCONSOLE_DEMO_PORT"] = str(port)
    with PtyProcess(opsconsole_command("demo"), env=env, cwd=work, columns=80,
                    lines=24) as demo:
        up = demo.wait_for(lambda p: "payments-webhook" in p.text()
                           and "waiting" not in p.text() and " up " in p.text(), 40)
        assert up is not None, f"the demo did not start:\n{demo.text()}"
        yield work, env, port
        demo.send(b"q")
        assert demo.wait(15) == 0


def _run(line: str, work: Path, env: dict[str, str], timeout: float = 90
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _tui(line: str, work: Path, env: dict[str, str]) -> None:
    argv = ["bash", "-c", "exec " + line.split("#", 1)[0]]
    with PtyProcess(argv, env=env, cwd=work, columns=80, lines=24) as p:
        drawn = p.wait_for(lambda q: q.in_alt_screen and "opsconsole" in q.text()
                           and " up " in q.text(), 40)
        assert drawn is not None, f"{line}: no board with a target up:\n{p.text()}"
        p.send(b"q")
        code = p.wait(15)
        assert code == 0, f"{line}: exit {code}\n{p.text()}"


def _service(line: str, work: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(["bash", "-c", "exec " + line.split("#", 1)[0]], cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        seen = ""
        while time.monotonic() < deadline:
            got = proc.stderr.readline()
            seen += got
            if "running headless" in got or not got:
                break
        assert "running headless" in seen, seen
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _an_incident_in_the_demo_world(data: Path) -> str:
    """What an operator leaves in the demo's journal after an incident."""
    from console.engine.incidents.book import IncidentBook, IncidentDesk
    from console.engine.incidents.playbooks import load_playbooks
    from console.engine.storage.journal import Journal

    journal = Journal(data / "demo" / "journal.jsonl")
    await asyncio.to_thread(journal.open)
    desk = IncidentDesk(journal, IncidentBook(load_playbooks()))
    inc = await desk.open("API errors after the deploy", "P1",
                          alerts=["error-rate-high/api-metrics"], runbook="high-error-rate")
    await desk.acknowledge(inc.id)
    await journal.close()
    return inc.id


def test_every_everyday_line_works_as_written(world: tuple[Path, dict[str, str], int]
                                              ) -> None:
    work, env, port = world
    iid = asyncio.run(_an_incident_in_the_demo_world(Path(env["OPSCONSOLE_DATA_DIR"])))
    for raw in readme_lines():
        line = raw.replace(f"127.0.0.1:{DEFAULT_PORT}", f"127.0.0.1:{port}")
        kind = _kind(line)
        if kind == "tui":
            _tui(line, work, env)
            continue
        if kind == "service":
            _service(line, work, env)
            continue
        out = _run(line, work, env)
        said = out.stdout + out.stderr
        assert "Traceback" not in said, f"{line}\n{said}"
        assert out.returncode in (0, 1), f"{line}: exit {out.returncode}\n{said}"
        _says(line, out, work, iid)


def _says(line: str, out: subprocess.CompletedProcess[str], work: Path, iid: str) -> None:
    """What each line must say (beyond exiting well)."""
    cmd = line.split("#", 1)[0]
    if "--print-config" in cmd:
        text = (work / "config.toml").read_text()
        assert 'name = "api-health"' in text
        assert "combined.log" in text  # the running demo's log: `logs --config` reads it
    elif cmd.startswith("opsconsole validate"):
        assert out.returncode == 0
        assert "config.toml: valid" in out.stdout
    elif "--json" in cmd and "> " not in cmd:
        doc = orjson.loads(out.stdout)
        if cmd.startswith("opsconsole incidents"):
            assert [r["id"] for r in doc] == [iid]
            assert out.returncode == 1  # it is open
        elif cmd.startswith("opsconsole alerts --config"):
            assert "alerts" in doc
            assert all("cause" in a and "action" in a for a in doc["alerts"])
        elif cmd.startswith("opsconsole check --config"):
            names = {t["name"] for t in doc["targets"]} if isinstance(doc, dict) else {
                t["name"] for t in doc}
            assert {"api-health", "api-metrics", "payments-webhook", "api-logs"} <= names
    elif cmd.startswith("opsconsole check http"):
        assert out.returncode == 0, out.stdout + out.stderr
    elif cmd.startswith("opsconsole rules test"):
        assert out.returncode == 0
        assert "all expectations met" in out.stdout
    elif cmd.startswith("opsconsole postmortem"):
        assert out.returncode == 0
        md = (work / "postmortem.md").read_text()
        assert md.startswith("# Post-mortem: API errors after the deploy")
    elif cmd.startswith("opsconsole paths"):
        assert out.returncode == 0
        assert "incident journal" in out.stdout
    elif cmd.startswith("opsconsole alerts --history"):
        assert out.returncode == 0
    elif cmd.startswith("opsconsole logs"):
        assert re.search(r"\S", out.stdout + out.stderr)
