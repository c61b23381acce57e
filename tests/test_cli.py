"""The headless command line, run as a user would: real processes against real servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]




def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30
        ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("OPSCONSOLE_CONFIG", str(ROOT / "tests" / "no-such-config.toml"))
    return subprocess.run([sys.executable, "-m", "console", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=full_env)


def test_check_once_json_up(http_url: str) -> None:
    out = run("check", f"{http_url}/health", "--once", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data) == 1
    item = data[0]
    assert item["kind"] == "http"
    assert item["status"] == "up"
    assert item["error"] is None
    assert item["latency_ms"] > 0
    assert item["name"].startswith("127.0.0.1")
    assert item["metrics"]["status_code"] == 200


def test_check_once_down_and_degraded_exit_1(http_url: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/health"
    out = run("check", dead, f"{http_url}/slow", "--once", "--json", "--slow", "200ms",
              "--timeout", "2s")
    assert out.returncode == 1, out.stderr
    by_status = {d["status"]: d for d in json.loads(out.stdout)}
    assert set(by_status) == {"down", "degraded"}
    assert "refused" in by_status["down"]["error"].lower()


def test_check_plain_lines(http_url: str) -> None:
    out = run("check", f"{http_url}/health", f"{http_url}/broken", "--once")
    assert out.returncode == 1
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].split()[1] == "up"
    assert lines[1].split()[1] == "down"


def test_check_password_in_url_never_printed() -> None:
    port = free_port()
    out = run("check", f"postgresql://alice:s3cr3t-pw@127.0.0.1:{port}/db", "--once", "--json",
              "--timeout", "1s")
    assert out.returncode == 1
    assert "s3cr3t-pw" not in out.stdout + out.stderr
    assert json.loads(out.stdout)[0]["status"] == "down"


def test_check_config_error_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[targets]]\nname = "x"\nkind = "http"\nurl = "http://h/"\nintervall = "5s"\n')
    out = run("check", "--config", str(cfg), "--once")
    assert out.returncode == 2
    assert "bad.toml:5" in out.stderr
    assert "interval" in out.stderr


def test_no_config_says_how_to_start(tmp_path: Path) -> None:
    out = run(env={"OPSCONSOLE_CONFIG": str(tmp_path / "nothing.toml")})
    assert out.returncode == 2
    assert "opsconsole demo --print-config" in out.stderr


def test_validate(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[targets]]\nname = "api"\nkind = "http"\nurl = "https://example.com/"\n')
    assert run("validate", "--config", str(good)).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[[targets]]\nname = "api"\nkind = "htp"\nurl = "https://example.com/"\n'
                   '[[targets]]\nname = "db"\nkind = "postgres"\ndsn = "postgresql://u:pw@h/d"\n')
    out = run("validate", "--config", str(bad))
    assert out.returncode == 1
    assert "bad.toml:3" in out.stderr
    assert "bad.toml:8" in out.stderr
    assert "pw@" not in out.stderr
    empty = tmp_path / "empty.toml"  # valid, but says what it means: nothing to check
    empty.write_text("")
    out = run("validate", "--config", str(empty))
    assert out.returncode == 0
    assert f"note: {empty} has no targets" in out.stdout


def test_a_data_directory_that_is_a_file_is_said_once_by_every_command(
        tmp_path: Path) -> None:
    """It gave a traceback (run --headless, alerts --history), or answers that were
    false: `incidents` said "no open incidents" with rc 0."""
    afile = tmp_path / "afile"
    afile.write_text("")
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[targets]]\nname = "api"\nkind = "http"\nurl = "http://127.0.0.1:9/"\n')
    for argv, data_dir in [
            (["run", "--headless", "--config", str(cfg)], afile),
            (["alerts", "--history"], afile),
            (["incidents", "--all", "--json"], afile),
            (["report"], afile),
            (["incidents"], afile / "sub")]:
        out = run(*argv, env={"OPSCONSOLE_DATA_DIR": str(data_dir)})
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        assert f"the data directory {data_dir} ($OPSCONSOLE_DATA_DIR)" in out.stderr, argv
        assert out.stdout == ""


def test_demo_print_config_is_valid(tmp_path: Path) -> None:
    out = run("demo", "--print-config", "--no-local")
    assert out.returncode == 0, out.stderr
    cfg = tmp_path / "demo.toml"
    cfg.write_text(out.stdout)
    checked = run("validate", "--config", str(cfg))
    assert checked.returncode == 0, checked.stderr


def test_check_follow_prints_changes_until_interrupted(http_url: str) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "console", "check", f"{http_url}/health", "--json",
         "--interval", "1s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["status"] == "up"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


@pytest.mark.parametrize("argv", [
    [], ["--config", "c.toml"], ["-c", "check", "--no-history"], ["--theme", "demo"],
    ["demo", "--no-local"], ["--data-dir", "/d", "demo", "--port", "9"],
    ["check", "--once", "--json", "http://x/"], ["watch", "http://x/", "--read-only"],
    ["validate", "--links"], ["panels", "-d", "2"], ["alerts", "--json", "--demo"],
    ["rules", "test", "f.yml"], ["run", "--headless"], ["event", "deploy"],
    ["events", "--demo"], ["ping", "job"], ["replay", "rec.gz"], ["logs", "level:error"],
    ["state", "status"], ["postmortem", "latest", "-o", "x.md"], ["incidents", "--all"],
    ["report", "--since", "1d"], ["paths", "--json"], ["--record", "r.gz"],
    ["-c", "x.toml", "report", "--config", "y.toml"],
])
def test_the_parser_of_one_command_reads_argv_as_the_full_parser(argv: list[str]) -> None:
    """`main` builds only the parser of the command argv runs: the same answer as the
    parser with every command, for every command and for the console itself."""
    from console.cli import ALL, build_parser, command_of

    narrow = command_of(argv)
    assert narrow != ALL
    assert build_parser(narrow).parse_args(argv) == build_parser().parse_args(argv)


@pytest.mark.parametrize("argv", [["--help"], ["-c", "f", "-h"], ["chek"], ["--conf", "x"]])
def test_help_typos_and_abbreviations_get_the_full_parser(argv: list[str]) -> None:
    from console.cli import ALL, command_of

    assert command_of(argv) == ALL


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(tmp_path: Path) -> None:
    """`opsconsole paths | head -1`: the rest of the output has nowhere to go. The command
    ends as `cat` would (141, the shell's code for SIGPIPE), without a traceback."""
    full_env = {**os.environ, "OPSCONSOLE_CONFIG": str(ROOT / "tests" / "no-such-config.toml"),
                "OPSCONSOLE_DATA_DIR": str(tmp_path / "data")}
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes its first line
    proc = subprocess.Popen([sys.executable, "-m", "console", "paths"], cwd=ROOT,
                            env=full_env, stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 141, err
    assert err == ""
