"""The console as a user installs it, for benchmarks that measure the product, not the repo.

A development venv differs from a user's install in what it imports: an editable install's
finder, and `click` (which import-linter brings) makes httpx import its own command line
(rich, pygments: ~44 ms of start-up, encode/httpx#3547, and ~5 MB of RSS in every process
that imports httpx). `user_install` makes a throwaway virtualenv, `pip install ROOT` (not
editable) with every dependency pinned to the version the running environment has (`pip
freeze` as constraints; pip's cache makes this ~1-2 minutes), bytecode compiled.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def user_install(where: Path) -> tuple[str, str] | None:
    """(python, opsconsole) of a fresh non-editable install of ROOT in `where`, with the
    running environment's versions of every dependency; None (said why) if it fails."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
                            capture_output=True, text=True, timeout=120, check=False)
    pins = [line for line in frozen.stdout.splitlines()
            if "==" in line and not line.lower().startswith("opsconsole==")]
    constraints = where / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    venv = where / "venv"
    python = venv / "bin" / "python"
    t0 = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120,
                       capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-c", str(constraints), str(ROOT)],
                       check=True, timeout=600, capture_output=True, text=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        print(f"WARNING: could not install the console into a fresh venv ({exc}); "
              f"{detail.strip().splitlines()[-1] if detail.strip() else ''}", file=sys.stderr)
        return None
    # pip compiles what it installs; compile the rest of site-packages too (as an OS
    # package or a second run would have it), quietly
    subprocess.run([str(python), "-m", "compileall", "-q", "-j", "0",
                    str(venv / "lib")], check=False, timeout=600, capture_output=True)
    print(f"installed the console into {venv} in {time.perf_counter() - t0:.0f} s")
    return str(python), str(venv / "bin" / "opsconsole")


def install_for(stack: contextlib.ExitStack, venv: str, prefix: str) -> tuple[str, str] | None:
    """For a bench's `--venv`: with "install", `user_install` into a temporary directory that
    `stack` removes; None for "current", or (said on stderr) when the install failed."""
    if venv != "install":
        return None
    where = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
    installed = user_install(where)
    if installed is None:
        print("WARNING: measuring the current environment instead", file=sys.stderr)
    return installed
