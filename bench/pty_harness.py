"""Run a program in a real pseudo-terminal: read, count and decode what it draws, send keys.

The benchmarks and `tests/test_pty.py` need what an SSH session gives the console and nothing
less: a controlling terminal of a fixed size whose hang-up sends SIGHUP, a reader that drains
the output as fast as it comes (a full PTY buffer would block the app and falsify timings),
a byte count of everything written to the terminal, a decoded screen to wait on, and the CPU
of the whole process tree. Every spawned tree is killed on close, with bounded waits, and on
interpreter exit, so a failing benchmark or test never leaves an orphan behind.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent

# Environment variables that would change what a Textual app draws or where it draws it.
_SCRUB = ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TEXTUAL", "TEXTUAL_DEBUG",
          "TEXTUAL_DEVTOOLS_HOST", "TEXTUAL_DEVTOOLS_PORT", "TEXTUAL_FPS", "TEXTUAL_ANIMATIONS",
          "TEXTUAL_THEME", "TEXTUAL_COLOR_SYSTEM", "TEXTUAL_DRIVER", "TEXTUAL_SPEEDUPS",
          "TMUX", "STY", "TERM_PROGRAM")

_LIVE: set[PtyProcess] = set()


def terminal_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A reproducible environment: a modern truecolour xterm, no Textual dev/tuning knobs."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", PYTHONUNBUFFERED="1")
    if extra:
        env.update(extra)
    return env


def python_command(module_or_script: str, *args: str) -> list[str]:
    """`python -m module …` or `python script …` with this interpreter."""
    if module_or_script.endswith(".py"):
        return [sys.executable, module_or_script, *args]
    return [sys.executable, "-m", module_or_script, *args]


def opsconsole_command(*args: str) -> list[str]:
    """The installed `opsconsole` script next to this interpreter, else `python -m console`."""
    script = Path(sys.executable).with_name("opsconsole")
    if script.exists():
        return [str(script), *args]
    return python_command("console", *args)


# -- screens ---------------------------------------------------------------------------------


class MiniScreen:
    """A small VT decoder: enough of xterm for what Textual writes (fallback when no pyte).

    Handles printable text (wide cells via Rich's cell widths), CR/LF/BS, cursor addressing
    (CUP/HVP/CHA/VPA/CUU/CUD/CUF/CUB), erase (ED/EL/ECH) and the alternate-screen switch;
    every other CSI, OSC, DCS, APC, PM or SOS sequence is consumed and ignored.
    """

    _TOKEN = re.compile(
        r"\x1b\[([0-?]*)[ -/]*([@-~])"  # CSI params, final
        r"|\x1b[\]P_^X].*?(?:\x07|\x1b\\)"  # OSC/DCS/APC/PM/SOS string
        r"|\x1b[ -/]*[0-~]"  # other escapes (ESC 7, ESC =, charset selection…)
        r"|[\x00-\x1f\x7f]"  # C0 controls
        r"|[^\x00-\x1f\x7f\x1b]+",  # text
        re.DOTALL,
    )

    def __init__(self, columns: int, lines: int) -> None:
        from rich.cells import cell_len

        self._cell_len = cell_len
        self.columns, self.lines = columns, lines
        self.x = self.y = 0
        self.buffer = self._blank()
        self._pending = ""

    def _blank(self) -> list[list[str]]:
        return [[" "] * self.columns for _ in range(self.lines)]

    def feed(self, data: bytes) -> None:
        text = self._pending + data.decode("utf-8", "replace")
        self._pending = ""
        pos = 0
        for m in self._TOKEN.finditer(text):
            if m.start() != pos:  # an unterminated sequence: keep it for the next chunk
                break
            pos = m.end()
            self._token(m)
        rest = text[pos:]
        if rest:
            self._pending = rest if len(rest) < 4096 else ""

    def _token(self, m: re.Match[str]) -> None:
        tok = m.group(0)
        if m.group(2) is not None:
            self._csi(m.group(1), m.group(2))
        elif tok[0] == "\x1b":
            return
        elif tok == "\r":
            self.x = 0
        elif tok == "\n":
            self.y = min(self.y + 1, self.lines - 1)
        elif tok == "\b":
            self.x = max(self.x - 1, 0)
        elif tok[0] >= " " and tok[0] != "\x7f":
            self._text(tok)

    def _text(self, text: str) -> None:
        for ch in text:
            w = self._cell_len(ch)
            if w == 0:
                continue
            if self.x + w > self.columns:
                self.x = self.columns - w  # Textual turns autowrap off: overwrite the edge
            row = self.buffer[self.y]
            row[self.x] = ch
            if w == 2 and self.x + 1 < self.columns:
                row[self.x + 1] = ""
            self.x = min(self.x + w, self.columns - 1)

    def _csi(self, params: str, final: str) -> None:
        private = params[:1] in ("?", ">", "<", "=")
        nums = [int(p) if p.isdigit() else 0 for p in params.lstrip("?><=").split(";")]
        n = nums[0] or 1
        if private:
            if final in "hl" and params[1:] in ("1049", "47", "1047"):
                self.buffer = self._blank()
            return
        if final in "Hf":
            row = nums[0] or 1
            col = (nums[1] if len(nums) > 1 else 0) or 1
            self.y = min(max(row - 1, 0), self.lines - 1)
            self.x = min(max(col - 1, 0), self.columns - 1)
        elif final == "G":
            self.x = min(n - 1, self.columns - 1)
        elif final == "d":
            self.y = min(n - 1, self.lines - 1)
        elif final == "A":
            self.y = max(self.y - n, 0)
        elif final == "B":
            self.y = min(self.y + n, self.lines - 1)
        elif final == "C":
            self.x = min(self.x + n, self.columns - 1)
        elif final == "D":
            self.x = max(self.x - n, 0)
        elif final == "J":
            mode = nums[0]
            if mode in (2, 3):
                self.buffer = self._blank()
            elif mode == 0:
                self.buffer[self.y][self.x:] = [" "] * (self.columns - self.x)
                for r in range(self.y + 1, self.lines):
                    self.buffer[r] = [" "] * self.columns
            elif mode == 1:
                for r in range(self.y):
                    self.buffer[r] = [" "] * self.columns
                self.buffer[self.y][: self.x + 1] = [" "] * (self.x + 1)
        elif final == "K":
            mode, row = nums[0], self.buffer[self.y]
            if mode == 0:
                row[self.x:] = [" "] * (self.columns - self.x)
            elif mode == 1:
                row[: self.x + 1] = [" "] * (self.x + 1)
            else:
                row[:] = [" "] * self.columns
        elif final == "X":
            end = min(self.x + n, self.columns)
            self.buffer[self.y][self.x:end] = [" "] * (end - self.x)

    @property
    def display(self) -> list[str]:
        return ["".join(row) for row in self.buffer]


class _PyteScreen:
    """pyte's screen behind the same two-member interface as MiniScreen."""

    def __init__(self, columns: int, lines: int) -> None:
        import pyte

        self._screen = pyte.Screen(columns, lines)
        self._stream = pyte.ByteStream(self._screen, strict=False)

    def feed(self, data: bytes) -> None:
        self._stream.feed(data)

    @property
    def display(self) -> list[str]:
        return list(self._screen.display)


def make_screen(columns: int, lines: int, *, prefer_pyte: bool = True) -> Any:
    """A terminal screen decoder: pyte if installed (the reference), else MiniScreen."""
    if prefer_pyte:
        try:
            return _PyteScreen(columns, lines)
        except ImportError:
            pass
    return MiniScreen(columns, lines)


# -- CPU of a process tree -------------------------------------------------------------------


class TreeCpu:
    """User+system CPU seconds of a process and all its descendants, across samples.

    A descendant that exits keeps the last value seen for it, so a sample never goes down.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._seen: dict[tuple[int, float], float] = {}

    def sample(self) -> float:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                with p.oneshot():
                    t = p.cpu_times()
                    key = (p.pid, p.create_time())
                self._seen[key] = t.user + t.system
        return sum(self._seen.values())


# -- the PTY process -------------------------------------------------------------------------


def _set_controlling_tty() -> None:
    # Runs in the child after setsid(): make the PTY slave (our stdout) the controlling
    # terminal, so closing the master delivers SIGHUP as an SSH disconnect does.
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)


class PtyProcess:
    """A command running on a PTY of a given size.

    Use as a context manager; `close()` always ends the whole process tree.
    `stdin` is "pty" (the terminal, as usual), "pipe" (a pipe `close_stdin()` ends) or
    "devnull" (input at EOF from the start); stdout and stderr are always the terminal.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        columns: int = 80,
        lines: int = 24,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        screen: bool = True,
        keep_output: bool = True,
        stdin: str = "pty",
    ) -> None:
        self.argv = list(argv)
        self.columns, self.lines = columns, lines
        self.env = dict(env) if env is not None else terminal_env()
        self.cwd = cwd
        self.keep_output = keep_output
        self.stdin_mode = stdin
        self.screen: Any = make_screen(columns, lines) if screen else None
        self.output = bytearray()
        self.bytes_read = 0
        self.read_count = 0  # chunks read: roughly the writes (frames) the app made
        self.started_at = 0.0
        self.last_chunk_at = 0.0
        self.eof_at: float | None = None
        self.alt_screen_at: float | None = None  # when the app switched to the alternate screen
        self.in_alt_screen = False
        self._tail = b""
        self.proc: subprocess.Popen[bytes] | None = None
        self.master_fd: int | None = None
        self.initial_attrs: list[Any] | None = None
        self._stdin_w: int | None = None
        self._cond = threading.Condition()
        self._watches: list[tuple[Callable[[PtyProcess], bool], list[float]]] = []
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._reader: threading.Thread | None = None
        self.cpu: TreeCpu | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> PtyProcess:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", self.lines, self.columns, 0, 0))
        self.initial_attrs = termios.tcgetattr(slave)
        stdin_fd: int | None = slave
        if self.stdin_mode == "pipe":
            stdin_fd, self._stdin_w = os.pipe()
        elif self.stdin_mode == "devnull":
            stdin_fd = os.open(os.devnull, os.O_RDONLY)
        try:
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv, stdin=stdin_fd, stdout=slave, stderr=slave, env=self.env,
                cwd=self.cwd, start_new_session=True, preexec_fn=_set_controlling_tty,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # only the child holds the slave: its exit gives us EOF
            if stdin_fd is not None and stdin_fd != slave:
                os.close(stdin_fd)
        self.master_fd = master
        self.cpu = TreeCpu(self.proc.pid)
        _LIVE.add(self)
        self._reader = threading.Thread(target=self._read_loop, name="pty-reader", daemon=True)
        self._reader.start()
        return self

    def __enter__(self) -> PtyProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process is still running after `timeout` seconds.

        Waits on a pidfd, which becomes readable the moment the process exits: `Popen.wait`
        with a timeout polls with sleeps of up to 50 ms, so an exit time measured through it
        came out on a 50 ms grid (0.164 s, 0.264 s, ...) whatever the real time was."""
        assert self.proc is not None
        if self.proc.returncode is not None:
            return self.proc.returncode
        try:
            fd = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): poll
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        return self.proc.wait() if ready else None

    def hangup(self) -> None:
        """Close the master side, as sshd does when the connection drops (→ SIGHUP, EIO)."""
        self._stop_reader()
        if self.master_fd is not None:
            os.close(self.master_fd)
            self.master_fd = None

    def close_stdin(self) -> None:
        """End of input for `stdin="pipe"`."""
        if self._stdin_w is not None:
            os.close(self._stdin_w)
            self._stdin_w = None

    def close(self, grace: float = 2.0) -> int | None:
        """End the process tree (hang-up, then SIGTERM, then SIGKILL) and release every fd."""
        if self.proc is None:
            return None
        try:
            tree = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            tree = []
        if self.proc.poll() is None:
            self.hangup()
            if self.wait(grace) is None:
                self._signal_tree(signal.SIGTERM, tree)
                if self.wait(grace) is None:
                    self._signal_tree(signal.SIGKILL, tree)
                    self.wait(5)
        self._signal_tree(signal.SIGKILL, tree, group=False)  # stragglers that left the group
        self.hangup()
        self.close_stdin()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1
        _LIVE.discard(self)
        return self.proc.returncode

    def _signal_tree(self, sig: int, tree: list[psutil.Process], *, group: bool = True) -> None:
        assert self.proc is not None
        if group:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, sig)  # setsid made the child its group's leader
        for p in tree:
            with contextlib.suppress(psutil.Error):
                if p.is_running():
                    p.send_signal(sig)

    # -- output ------------------------------------------------------------------------------

    def _stop_reader(self) -> None:
        if self._reader is not None and self._reader.is_alive():
            self._stop = True
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            self._reader.join(5)

    def _read_loop(self) -> None:
        fd = self.master_fd
        assert fd is not None
        while not self._stop:
            try:
                ready, _, _ = select.select([fd, self._wake_r], [], [], 1.0)
            except (OSError, ValueError):
                break
            if self._wake_r in ready or self._stop:
                break
            if fd not in ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: every slave fd is closed (the tree exited)
                data = b""
            now = time.monotonic()
            with self._cond:
                if not data:
                    self.eof_at = now
                    self._cond.notify_all()
                    break
                self.bytes_read += len(data)
                self.read_count += 1
                self.last_chunk_at = now
                if self.keep_output:
                    self.output += data
                self._track_alt_screen(data, now)
                for pred, hit in self._watches:
                    if not hit and pred(self):
                        hit.append(now)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    _ENTER_ALT, _LEAVE_ALT = b"\x1b[?1049h", b"\x1b[?1049l"

    def _track_alt_screen(self, data: bytes, now: float) -> None:
        """Feed the screen; a switch to the alternate screen starts a fresh, blank one (pyte
        has no alternate screen), so text printed before the app took over never counts."""
        seen = self._tail + data
        self._tail = data[-8:]
        enter = data.rfind(self._ENTER_ALT)
        if self.alt_screen_at is None and self._ENTER_ALT in seen:
            self.alt_screen_at = now
        if seen.rfind(self._ENTER_ALT) > seen.rfind(self._LEAVE_ALT):
            self.in_alt_screen = True
        elif self._LEAVE_ALT in seen:
            self.in_alt_screen = False
        if self.screen is None:
            return
        if enter >= 0:
            self.screen.feed(data[:enter])
            self.screen = make_screen(self.columns, self.lines,
                                      prefer_pyte=not isinstance(self.screen, MiniScreen))
            data = data[enter:]
        self.screen.feed(data)

    def wait_for(self, predicate: Callable[[PtyProcess], bool], timeout: float) -> float | None:
        """Wait until `predicate(self)` holds; return the arrival time of the chunk that made
        it true (time.monotonic()), or None on timeout or end of output.

        The predicate runs in the reader thread after each chunk, so a state that appears and
        is overdrawn by the next chunk is still seen, and the time is the chunk's, not ours.
        """
        hit: list[float] = []
        entry = (predicate, hit)
        deadline = time.monotonic() + timeout
        with self._cond:
            if predicate(self):
                return self.last_chunk_at or time.monotonic()
            self._watches.append(entry)
            try:
                while not hit:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.eof_at is not None or not self._reader_alive():
                        break
                    self._cond.wait(min(left, 0.5))
            finally:
                self._watches.remove(entry)
        return hit[0] if hit else None

    def wait_eof(self, timeout: float) -> bool:
        """Wait until the terminal reports end of output (every slave fd closed) and all
        output before it has been read."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.eof_at is None and self._reader_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return self.eof_at is not None

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def wait_for_text(self, text: str, timeout: float) -> float | None:
        return self.wait_for(lambda p: text in p.text(), timeout)

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Wait until no output has arrived for `quiet` seconds (the app settled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                last = self.last_chunk_at or self.started_at
            if time.monotonic() - last >= quiet:
                return True
            time.sleep(min(0.05, quiet))
        return False

    def display(self) -> list[str]:
        """The decoded screen, one string per row."""
        assert self.screen is not None, "started with screen=False"
        return list(self.screen.display)

    def text(self) -> str:
        return "\n".join(self.display())

    def snapshot(self) -> bytes:
        with self._cond:
            return bytes(self.output)

    def stop_screen(self) -> None:
        """Stop decoding (decoding costs CPU that a benchmark should not compete with)."""
        with self._cond:
            self.screen = None

    # -- input -------------------------------------------------------------------------------

    def send(self, data: bytes | str) -> None:
        """Type into the terminal (b"q", b"\\r" for Enter, b"\\x1b" for Escape)."""
        if isinstance(data, str):
            data = data.encode()
        assert self.master_fd is not None, "terminal closed"
        os.write(self.master_fd, data)

    def terminal_attrs(self) -> list[Any] | None:
        """The terminal's current termios settings (the master reports the slave's)."""
        if self.master_fd is None:
            return None
        return termios.tcgetattr(self.master_fd)


@atexit.register
def _kill_leftovers() -> None:
    for p in list(_LIVE):
        with contextlib.suppress(Exception):
            p.close(grace=0.5)


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
