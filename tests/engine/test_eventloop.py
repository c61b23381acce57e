"""The console's long-running processes run on uvloop, or on asyncio's loop when asked."""

from __future__ import annotations

import asyncio

import pytest

from console.engine import eventloop


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_the_console_runs_on_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    assert eventloop.name() == "uvloop"
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_opsconsole_loop_asyncio_gives_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV, "asyncio")
    assert eventloop.name() == "asyncio"
    assert eventloop.run(_loop_module()).startswith("asyncio")


def test_run_returns_the_result_and_closes_its_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> int:
        loops.append(asyncio.get_running_loop())
        return 42

    assert eventloop.run(main()) == 42
    assert loops[0].is_closed()
