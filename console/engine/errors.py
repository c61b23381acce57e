"""One exception tree for the engine; library errors are translated at the edge."""

from __future__ import annotations

from dataclasses import dataclass


class ConsoleError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem found in a config file, located for the operator."""

    file: str
    line: int | None
    key: str
    message: str
    hint: str | None = None

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(ConsoleError):
    """A config that cannot be used; carries every issue found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(i.format() for i in self.issues))


class ProbeError(ConsoleError):
    """A check failed; the message is already sanitised and redacted."""


class ProbeTimeout(ProbeError):  # noqa: N818 - the guide's name, as httpx's ReadTimeout
    """A check passed its hard deadline."""
