"""aiohttp and httpx imported without what a probe never uses: aiohttp's import-time CA
bundle loads and httpx's command-line client.

`aiohttp.connector` builds two default TLS contexts when it is imported (a verified one and
an unverified one), and each loads the system CA bundle: ~25 ms of CPU apiece on this
machine, paid by every command that imports aiohttp, `check --once http://…` included. The
console never uses them: every request it makes passes its own context (`HttpClients.
ssl_context`, built on the first https request), so the bundle is loaded once, and only
when a TLS connection needs it. While `aiohttp.connector` executes, on the importing
thread, the two contexts are created without loading the bundle; afterwards aiohttp's
context lookup (`TCPConnector._get_ssl_context`) loads it into whichever of them it is
about to hand out, the first time, so any other user of aiohttp's defaults gets what aiohttp
would have given it. If aiohttp's layout is not the one expected, the bundle is loaded at
once, as aiohttp does.

`import httpx` imports `httpx._main`, the `httpx` command's entry point, which loads click,
Rich and Pygments (~35-50 ms) whenever click is installed (encode/httpx#3547). Its first
import, the one from httpx's `__init__`, is refused, so httpx keeps the stub `main` it has
for a missing CLI; the `httpx` command runs in its own process and is not affected, and a
later `import httpx._main` works.

`install()` (run by `console.engine.probes` before any probe imports either) puts a one-shot
import hook in front of `sys.meta_path` for each; nothing is imported until a probe is.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

_TARGET = "aiohttp.connector"
_HTTPX_CLI = "httpx._main"
_DEFAULTS = ("_SSL_CONTEXT_VERIFIED", "_SSL_CONTEXT_UNVERIFIED")


class _Hook:
    """A meta-path finder that acts once on each of two modules, then leaves the path."""

    def __init__(self) -> None:
        self.pending = {_TARGET, _HTTPX_CLI}

    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if name not in self.pending:
            return None
        self.pending.discard(name)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        if name == _HTTPX_CLI:
            raise ImportError(f"{name}: the httpx command line is not used by opsconsole",
                              name=name)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if spec is None or loader is None or exec_module is None:
            return spec

        def exec_deferred(module: ModuleType) -> None:
            _exec_deferred(module, exec_module)

        loader.exec_module = exec_deferred
        return spec


def install() -> None:
    """Install the hook for whichever of the two is not imported yet (idempotent)."""
    if any(isinstance(f, _Hook) for f in sys.meta_path):
        return
    hook = _Hook()
    hook.pending -= set(sys.modules)
    if "httpx" in sys.modules:
        hook.pending.discard(_HTTPX_CLI)
    if hook.pending:
        sys.meta_path.insert(0, hook)


def _exec_deferred(module: ModuleType, exec_module: Callable[[ModuleType], None]) -> None:
    import ssl  # here: aiohttp imports it anyway; `validate` imports this package, not ssl

    real = ssl.SSLContext.set_default_verify_paths
    had_own = "set_default_verify_paths" in ssl.SSLContext.__dict__
    me = threading.get_ident()
    deferred: list[ssl.SSLContext] = []

    def set_default_verify_paths(self: ssl.SSLContext) -> None:
        # Only aiohttp's own import-time calls, on this thread: directly, or through
        # ssl.create_default_context -> load_default_certs.
        caller = sys._getframe(1).f_globals.get("__name__")
        if threading.get_ident() == me and caller in (_TARGET, "ssl"):
            deferred.append(self)
            return
        real(self)

    ssl.SSLContext.set_default_verify_paths = set_default_verify_paths  # type: ignore[method-assign]
    try:
        exec_module(module)
    finally:
        if had_own:
            ssl.SSLContext.set_default_verify_paths = real  # type: ignore[method-assign]
        else:
            del ssl.SSLContext.set_default_verify_paths
    if deferred:
        _load_on_first_use(module, deferred, real)


def _load_on_first_use(module: ModuleType, deferred: list[ssl.SSLContext],
                       load: Callable[[ssl.SSLContext], None]) -> None:
    defaults = [getattr(module, name, None) for name in _DEFAULTS]
    connector = getattr(module, "TCPConnector", None)
    lookup = getattr(connector, "_get_ssl_context", None)
    if connector is None or lookup is None or not all(
            any(ctx is d for d in defaults) for ctx in deferred):
        for ctx in deferred:  # not the layout this was written for: load now, as aiohttp does
            load(ctx)
        return
    pending = {id(ctx): ctx for ctx in deferred}
    lock = threading.Lock()

    def _get_ssl_context(self: Any, req: Any) -> Any:
        ctx = lookup(self, req)
        if pending and ctx is not None and id(ctx) in pending:
            with lock:
                if id(ctx) in pending:  # removed only once loaded: no thread sees it half-done
                    load(ctx)
                    del pending[id(ctx)]
        return ctx

    connector._get_ssl_context = _get_ssl_context
