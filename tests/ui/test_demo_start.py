"""A demo that cannot start says so on screen (and `opsconsole demo` then exits non-zero)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from console.app import OpsConsoleApp
from tests.ui.apptools import screen_text, wait_for


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


@pytest.mark.usefixtures("ui_env")
async def test_a_demo_that_cannot_start_says_so_and_exits_non_zero(held_port: int) -> None:
    app = OpsConsoleApp(settings=None, demo=True, demo_port=held_port, demo_local=False,
                        history=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.boot_error is not None, 15, "the start-up failure")
        assert f"cannot listen on 127.0.0.1:{held_port}" in app.boot_error
        # the title grows to the lines the message needs on a later layout: wait for its
        # end, not only its first line (CI once read the screen between the two)
        await wait_for(pilot, lambda: "start-up failed" in screen_text(app)
                       and "q quits" in screen_text(app), 15,
                       "the failure on screen, to its end")
