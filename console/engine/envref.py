"""Resolve `${ENV_VAR}` references in config strings, registering the values as secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .redact import register_secret
from .settings import ENV_REF


class MissingEnv(KeyError):
    """A `${VAR}` reference whose variable is not set."""


def missing_refs(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    return [m.group(1) for m in ENV_REF.finditer(text) if m.group(1) not in env]


def expand(text: str, env: Mapping[str, str] | None = None, *, secret: bool = True) -> str:
    """`text` with every `${VAR}` replaced; raises MissingEnv naming the first unset one.

    Resolved values are registered with the redactor (secret=True) so they never reach a sink.
    """
    env = os.environ if env is None else env

    def sub(m: object) -> str:
        name = m.group(1)  # type: ignore[attr-defined]
        if name not in env:
            raise MissingEnv(name)
        value = env[name]
        if secret:
            register_secret(value)
        return value

    return ENV_REF.sub(sub, text)
