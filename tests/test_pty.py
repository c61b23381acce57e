"""The real console in a real pseudo-terminal: what an SSH session sees and does to it.

Each test spawns `opsconsole` on a PTY (bench/pty_harness.py), decodes the screen, and checks
the terminal-level promises: the first screen, a restored terminal after `q`, a clean exit on
hang-up (closing the master is what sshd does) and on end of input, and that hostile bytes
from a monitored endpoint never reach the terminal as escape sequences.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import termios
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from pty_harness import PtyProcess, opsconsole_command, terminal_env  # noqa: E402

FIRST_FRAME_S = 30.0  # generous: a loaded 2-core machine, cold bytecode caches
# How long an exit may take on a loaded machine. The promise tested is that the console ends
# through its own handlers (an exit code, its children gone), not a speed: under CI load an
# exit measured 3 s once; a hang would still fail here.
EXIT_S = 20.0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Keep every file the console writes inside the test's own directory."""
    return terminal_env({
        "OPSCONSOLE_DATA_DIR": str(tmp_path / "opsdata"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    })


def _spawn(argv: list[str], env: dict[str, str], cwd: Path, **kw: object) -> PtyProcess:
    return PtyProcess(argv, env=env, cwd=cwd, **kw)  # type: ignore[arg-type]


def _screen(p: PtyProcess) -> str:
    return "\n".join(row.rstrip() for row in p.display())


def _wait_first_frame(p: PtyProcess) -> None:
    ok = p.wait_for(
        lambda q: q.in_alt_screen and "opsconsole" in q.text() and bool(q.display()[-1].strip()),
        FIRST_FRAME_S,
    )
    assert ok is not None, (
        f"no first frame (exit code {p.returncode}); screen:\n{_screen(p)}\n"
        f"output tail: {p.snapshot()[-1500:]!r}"
    )


def demo_target_names(env: dict[str, str]) -> list[str]:
    """The demo's targets, from its own printed config (so the test follows the demo)."""
    out = subprocess.run(
        opsconsole_command("demo", "--no-local", "--print-config"),
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )
    names = [t["name"] for t in tomllib.loads(out.stdout)["targets"]]
    assert names, out.stdout
    return names


_STATE = re.compile(r"(?i)(?<!\w)(up|degr\w*|down)(?!\w)")


def _row_state(p: PtyProcess, name: str) -> bool:
    """The board row naming `name` shows a state (up / degraded / down), not "waiting"."""
    return any(name in row and _STATE.search(row.replace(name, "")) for row in p.display())


# -- (1) the first screen and a restored terminal ------------------------------------------


def test_demo_shows_status_board_and_restores_terminal(env: dict[str, str],
                                                       tmp_path: Path) -> None:
    names = demo_target_names(env)
    with _spawn(opsconsole_command("demo", "--no-local"), env, tmp_path,
                columns=80, lines=24) as p:
        _wait_first_frame(p)
        shown = p.wait_for(lambda q: all(n in q.text() for n in names), 20)
        assert shown is not None, f"demo targets {names} not all on the board:\n{_screen(p)}"
        # Each target's row gets a state once its first check is in (none left waiting).
        settled = p.wait_for(lambda q: all(_row_state(q, n) for n in names), 20)
        assert settled is not None, f"a target never got a state on the board:\n{_screen(p)}"
        before_q = len(p.snapshot())

        p.send(b"q")
        code = p.wait(5)
        assert code == 0, f"exit code {code} 5 s after q; screen:\n{_screen(p)}"
        assert p.wait_eof(5), "terminal output never ended after the exit"
        tail = p.snapshot()[before_q:]
        # Back on the main screen, cursor visible, mouse/paste reporting off, keyboard
        # protocol popped: what the shell needs to work again.
        assert not p.in_alt_screen
        for seq in (b"\x1b[?1049l", b"\x1b[?25h", b"\x1b[?1000l", b"\x1b[?1006l",
                    b"\x1b[?2004l", b"\x1b[<u"):
            assert seq in tail, f"{seq!r} not written on exit"
        assert tail.rfind(b"\x1b[?1049l") > tail.rfind(b"\x1b[?1049h")
        # The line discipline is back to what it was before the app (echo, canonical mode).
        assert p.master_fd is not None
        after = termios.tcgetattr(p.master_fd)
        assert p.initial_attrs is not None
        assert after[3] == p.initial_attrs[3], "lflag (ICANON/ECHO…) not restored"
        assert after[0] == p.initial_attrs[0], "iflag not restored"


# -- (2) hang-up and (3) end of input ------------------------------------------------------


def _assert_tree_gone(tree: list[psutil.Process], within: float) -> None:
    gone, alive = psutil.wait_procs(tree, timeout=within)
    assert not alive, f"left running after the app exited: {alive}"


def _wait_polling(p: PtyProcess, env: dict[str, str]) -> None:
    """Until the engine and the demo stack are up and polling: every target has a state."""
    names = demo_target_names(env)
    settled = p.wait_for(lambda q: all(_row_state(q, n) for n in names), FIRST_FRAME_S)
    assert settled is not None, f"the demo never got polling:\n{_screen(p)}"


def test_hangup_ends_the_app_promptly(env: dict[str, str], tmp_path: Path) -> None:
    with _spawn(opsconsole_command("demo", "--no-local"), env, tmp_path,
                columns=80, lines=24) as p:
        _wait_first_frame(p)
        _wait_polling(p, env)
        assert p.returncode is None, f"exited by itself: {p.returncode}"
        tree = psutil.Process(p.pid).children(recursive=True)
        p.hangup()  # what an SSH disconnect does: SIGHUP, then EIO on the terminal
        code = p.wait(EXIT_S)
        assert code is not None, f"still running {EXIT_S:g} s after the terminal hung up"
        # Ended through its own handler (exit code), not killed by SIGHUP's default action,
        # which would skip every exit handler.
        assert code >= 0, f"killed by signal {-code} instead of exiting cleanly"
        _assert_tree_gone(tree, 5)


def test_end_of_input_ends_the_app_promptly(env: dict[str, str], tmp_path: Path) -> None:
    with _spawn(opsconsole_command("demo", "--no-local"), env, tmp_path,
                columns=80, lines=24, stdin="pipe") as p:
        _wait_first_frame(p)
        _wait_polling(p, env)
        assert p.returncode is None, f"exited by itself: {p.returncode}"
        cpu0 = p.cpu.sample() if p.cpu else 0.0
        p.close_stdin()
        code = p.wait(EXIT_S)
        assert code is not None, (
            f"still running {EXIT_S:g} s after end of input (CPU used meanwhile: "
            f"{(p.cpu.sample() if p.cpu else 0.0) - cpu0:.2f} s)"
        )
        assert code >= 0, f"killed by signal {-code}"


# -- (4) hostile bytes never reach the terminal --------------------------------------------

OSC52 = "\x1b]52;c;aGk=\x1b\\"
CLEAR = "\x1b[2J"
C1_CSI = "\x9b31m"
TITLE = "\x1b]0;title\x07"
PAYLOAD = f"EVIL{OSC52}A{CLEAR}B{C1_CSI}C{TITLE}D"


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """503 with escape sequences in the reason phrase, a header and the body."""

    hits = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).hits += 1
        body = (PAYLOAD + " body tail\n").encode("utf-8") + b"raw:\x9b32m\x1b[2J\n"
        self.send_response(503, f"Down{CLEAR}{C1_CSI}{TITLE}")
        self.send_header("Content-Type", "text/plain")
        if self.path.startswith("/header"):
            self.send_header("X-Evil", PAYLOAD)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile_server() -> Iterator[int]:
    _HostileHandler.hits = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# Sequences as a terminal would act on them: ESC- or C1-introduced.
_OSC = re.compile(rb"(?:\x1b\]|\x9d)([0-9]*)[;\x07\x1b]")


def _injected(out: bytes) -> list[str]:
    """Escape sequences in `out` that the app never writes itself, so only remote text could."""
    found = []
    for m in _OSC.finditer(out):
        if m.group(1) not in (b"8", b"22"):  # hyperlinks, pointer shape: Textual's own
            found.append(f"OSC {m.group(1).decode()!r} at {m.start()}")
    clear = out.find(b"\x1b[2J")
    if clear >= 0:
        found.append(f"CSI 2J (clear screen) at {clear}")
    text = out.decode("utf-8", "surrogateescape")
    for i, ch in enumerate(text):
        if "\x80" <= ch <= "\x9f":
            found.append(f"C1 control U+{ord(ch):04X} at char {i}")
        elif ch == "\udc9b":
            found.append(f"raw 0x9b byte at char {i}")
    return found


def test_scanner_flags_each_injected_sequence_but_not_textual_output() -> None:
    """The scan below would catch each payload, and passes Textual's own drawing."""
    for seq, kind in ((OSC52, "OSC '52'"), (CLEAR, "CSI 2J"), (C1_CSI, "U+009B"),
                      (TITLE, "OSC '0'")):
        found = _injected(b"frame " + seq.encode("utf-8") + b" more")
        assert len(found) == 1, (seq, found)
        assert kind in found[0], (seq, found)
    assert _injected(b"raw \x9b31m")  # an undecodable C1 byte, not UTF-8 text
    textual_like = (
        b"\x1b[?1049h\x1b[?25l\x1b]22;default\x07\x1b[1;1H\x1b[38;2;224;224;224mhello"
        b" \xe2\x94\x9b\xe2\x96\x87\x1b[0m\x1b]8;id=1;https://x\x1b\\link\x1b]8;;\x1b\\"
        # what a sanitiser leaves of an escape shown as visible text is harmless
        b"\\x1b]52;c;aGk= \x1b[2;1H\x1b[?1049l"
    )
    assert _injected(textual_like) == []


def _repaints_with_fresh_responses(p: PtyProcess) -> None:
    """Until the server has answered two more checks and the screen has been written after
    them: the detail view repainted with fresh hostile responses."""
    hits = _HostileHandler.hits
    seen = p.wait_for(lambda q: _HostileHandler.hits >= hits + 2, 10)
    assert seen is not None, f"no fresh checks of the hostile server:\n{_screen(p)}"
    size = len(p.snapshot())
    wrote = p.wait_for(lambda q: len(q.snapshot()) > size, 10)
    assert wrote is not None, "the screen was not repainted after the fresh responses"


def test_hostile_response_text_never_reaches_the_terminal(
    env: dict[str, str], tmp_path: Path, hostile_server: int
) -> None:
    config = tmp_path / "hostile.toml"
    config.write_text(
        '[console]\nrefresh = "0.5s"\n\n'
        f'[[targets]]\nkind = "http"\nname = "hostile"\n'
        f'url = "http://127.0.0.1:{hostile_server}/body"\ninterval = "0.5s"\n'
        'timeout = "2s"\nkeyword = "healthy"\n\n'
        f'[[targets]]\nkind = "http"\nname = "hostile-header"\n'
        f'url = "http://127.0.0.1:{hostile_server}/header"\ninterval = "0.5s"\ntimeout = "2s"\n'
    )
    argv = opsconsole_command("--config", str(config), "--no-history")
    with _spawn(argv, env, tmp_path, columns=100, lines=30) as p:
        _wait_first_frame(p)
        # Both targets checked (and failed) at least once before we look closer.
        down = p.wait_for(lambda q: len(re.findall(r"(?i)\bdown\b", q.text())) >= 2, 20)
        assert down is not None, f"targets never shown down:\n{_screen(p)}"
        assert _HostileHandler.hits >= 2
        p.send(b"\r")  # the first target is selected on the board: open its detail
        opened = p.wait_for(lambda q: "hostile · http" in q.text() and "503" in q.text(), 10)
        assert opened is not None, f"detail view of 'hostile' not shown:\n{_screen(p)}"
        _repaints_with_fresh_responses(p)
        p.send(b"\x1b")  # back to the board...
        back = p.wait_for(lambda q: "hostile · http" not in q.text()
                          and "targets" in q.text(), 10)
        assert back is not None, f"Escape did not go back to the board:\n{_screen(p)}"
        p.send(b"j")  # ...down to the second target (vim key: no escape-sequence timing)
        p.send(b"\r")
        opened = p.wait_for(lambda q: "hostile-header · http" in q.text()
                            and "503" in q.text(), 10)
        assert opened is not None, f"detail view of 'hostile-header' not shown:\n{_screen(p)}"
        _repaints_with_fresh_responses(p)
        p.send(b"q")
        # both targets answer 503: once a P1 fires unacknowledged q asks first (the wait
        # ends at once, with the output, when there was nothing to ask)
        if p.wait_for(lambda q: "y: yes" in q.text(), 5) is not None:
            p.send(b"y")
        assert p.wait(5) == 0, _screen(p)
        out = p.snapshot()

    assert b"EVIL" in out or b"Down" in out, "the remote text never reached the screen at all"
    found = _injected(out)
    assert not found, f"escape sequences from the remote end reached the terminal: {found[:10]}"


# -- (5) no terminal to run in: a clear message and an exit status, never a traceback -------


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[[targets]]\nname = "api"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n')
    return cfg


@pytest.mark.parametrize(("stdin", "wrap", "says"), [
    ("devnull", False, "it is /dev/null, not a terminal"),  # opsconsole … </dev/null
    ("pty", True, "and it is closed"),                       # opsconsole … <&-
])
def test_input_that_is_no_terminal_is_said_not_a_traceback(
        env: dict[str, str], tmp_path: Path, stdin: str, wrap: bool, says: str) -> None:
    argv = opsconsole_command("--config", str(_config(tmp_path)))
    if wrap:
        argv = ["sh", "-c", 'exec "$@" <&-', "sh", *argv]
    for _ in range(3):  # the issue saw it fail 3 times out of 3
        with _spawn(argv, env, tmp_path, columns=80, lines=24, stdin=stdin) as p:
            code = p.wait(30)
            assert p.wait_eof(5)
            text = p.snapshot().decode("utf-8", "replace")
        assert code == 2, text
        assert says in text.replace("\r\n", " ").replace("\n", " ")
        assert "Traceback" not in text
        assert not p.alt_screen_at, "it should not draw at all"


def test_output_that_is_no_terminal_is_said(env: dict[str, str], tmp_path: Path) -> None:
    out = subprocess.run(opsconsole_command("--config", str(_config(tmp_path))),
                         capture_output=True, text=True, env=env, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    assert "its output is not one" in out.stderr
    assert "Traceback" not in out.stderr
    assert out.stdout == ""
