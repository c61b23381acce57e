"""aiohttp and httpx as the probes import them (console/engine/probes/lean_imports.py): no CA
bundle loaded until a TLS context is handed out, no httpx command line, nothing else changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_aiohttp_defaults_load_the_ca_bundle_when_first_handed_out() -> None:
    code = (
        "import ssl, sys\n"
        "import console.engine.probes\n"
        "import aiohttp\n"
        "from aiohttp import connector as c\n"
        "n = lambda ctx: ctx.cert_store_stats()['x509_ca'] + len(ctx.get_ca_certs())\n"
        "print(n(c._SSL_CONTEXT_VERIFIED), n(c._SSL_CONTEXT_UNVERIFIED))\n"
        "print('set_default_verify_paths' in ssl.SSLContext.__dict__)\n"
        "class Req:\n"
        "    ssl = True\n"
        "    def is_ssl(self): return True\n"
        "conn = c.TCPConnector.__new__(c.TCPConnector); conn._ssl = True\n"
        "v = conn._get_ssl_context(Req())\n"
        "ref = ssl.create_default_context()\n"
        "print(v is c._SSL_CONTEXT_VERIFIED, n(v) == n(ref) > 0,\n"
        "      v.verify_mode == ref.verify_mode, v.check_hostname,\n"
        "      n(c._SSL_CONTEXT_UNVERIFIED))\n"
        "Req.ssl = False\n"
        "u = conn._get_ssl_context(Req())\n"
        "print(u is c._SSL_CONTEXT_UNVERIFIED, n(u) == n(ref), u.verify_mode == ssl.CERT_NONE)\n"
    )
    lines = _run(code).splitlines()
    assert lines[0] == "0 0"  # nothing loaded by the import
    assert lines[1] == "False"  # ssl left as it was
    assert lines[2] == "True True True True 0"  # the verified one loaded on first use only
    assert lines[3] == "True True True"


def test_httpx_without_its_command_line() -> None:
    code = (
        "import sys\n"
        "import console.engine.probes\n"
        "import httpx\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rich', 'click', 'pygments')"
        " or m == 'httpx._main'))\n"
        "print(httpx.AsyncClient is not None, callable(httpx.main))\n"
    )
    lines = _run(code).splitlines()
    assert lines == ["[]", "True True"]


def test_other_ssl_contexts_are_untouched_while_aiohttp_imports() -> None:
    code = (
        "import ssl\n"
        "import console.engine.probes\n"
        "import aiohttp\n"
        "ctx = ssl.create_default_context()\n"
        "print(ctx.cert_store_stats()['x509_ca'] + len(ctx.get_ca_certs()) > 0)\n"
    )
    assert _run(code) == "True"
