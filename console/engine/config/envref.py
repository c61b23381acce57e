"""Resolve `${ENV_VAR}` references in config strings, registering the values as secrets."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import quote

from console.engine.text.redact import register_secret

# `${VAR}`: how a config names a secret or a value kept in the environment.
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# Headers that carry credentials: a config must give them as `${ENV}` references.
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "api-key", "x-auth-token",
                            "proxy-authorization"})


def check_secret_headers(headers: Mapping[str, str]) -> None:
    """Raise ValueError for a credential header written literally in the config."""
    for k, val in headers.items():
        if k.lower() in SECRET_HEADERS and not ENV_REF.search(val):
            raise ValueError(
                f"header {k!r} carries a secret; write it as an environment reference, "
                f"e.g. {k} = \"Bearer ${{API_TOKEN}}\""
            )


class MissingEnv(KeyError):  # noqa: N818 - reads as the condition, like KeyError
    """A `${VAR}` reference whose variable is not set."""


def missing_refs(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return [m.group(1) for m in ENV_REF.finditer(text) if m.group(1) not in env]


def expand(text: str, env: Mapping[str, str] | None = None, *, secret: bool = True) -> str:
    """`text` with every `${VAR}` replaced; raises MissingEnv naming the first unset one.

    Resolved values are registered with the redactor (secret=True) so they never reach a sink.
    """
    env = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise MissingEnv(name)
        value = env[name]
        if secret:
            register_secret(value)
        return value

    return ENV_REF.sub(sub, text)


def expand_url(text: str, env: Mapping[str, str] | None = None) -> str:
    """`expand()` for URLs and DSNs: values inside the userinfo or query are percent-encoded.

    A password such as `p@ss/w:rd` in `postgresql://u:${PW}@host/db` would otherwise break
    the URL (host `ss`) or inject parameters (`&sslmode=disable`). A text that is one single
    reference (the whole URL in a variable) is substituted unchanged: it is already a URL.
    """
    env = os.environ if env is None else env
    if ENV_REF.fullmatch(text.strip()):
        return expand(text, env)
    start = text.find("://") + 3 if "://" in text else 0
    end = len(text)
    for sep in "/?#":
        pos = text.find(sep, start)
        if pos >= 0:
            end = min(end, pos)
    at = text.rfind("@", start, end)
    query = text.find("?", start)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in env:
            raise MissingEnv(name)
        value = env[name]
        register_secret(value)
        in_userinfo = at >= 0 and start <= m.start() < at
        in_query = query >= 0 and m.start() > query
        return quote(value, safe="") if in_userinfo or in_query else value

    return ENV_REF.sub(sub, text)
