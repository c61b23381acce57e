"""A console for the multi-process tests: the whole Runtime (as the TUI builds it), driven by
JSON commands on stdin instead of keys, and telling what it shows on stdout.

    python -m tests.stateconsole CONFIG    (operator name from $OPSCONSOLE_OPERATOR)

Commands (one JSON object per line): ``open`` (title, severity), ``note`` (incident, text),
``claim`` (incident), ``ack`` (comment), ``silence`` (reason, duration). The actions are the
ones the screens call: `IncidentDesk` methods and `AlertService.request`. Each time what the
console shows changes it prints ``{"view": …}``: every incident's notes and owner, the
alert's state with who acknowledged it and why, the silences, and its own role. ``ready`` on
stderr once started.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from console.engine.config.loader import load_config
from console.engine.paths import resolve_data_dir
from console.engine.runtime import Runtime


def view(rt: Runtime) -> dict[str, Any]:
    out: dict[str, Any] = {"role": rt.alerting.role if rt.alerting else None,
                           "incidents": {}, "alert": None, "silences": []}
    if rt.desk is not None:
        for iid, inc in rt.desk.book.incidents.items():
            out["incidents"][iid] = {"owner": inc.owner, "notes": [
                [n.text, n.actor] for n in inc.notes]}
    if rt.alerting is not None:
        a = rt.alerting.alerts.get("api-down", "api")
        if a is not None:
            out["alert"] = {"state": a.state.value, "acked_by": a.acked_by,
                            "comment": a.ack_comment, "incident": a.incident}
        out["silences"] = sorted([s.reason, s.by] for s in rt.alerting.alerts.silences())
    return out


async def main(config: str) -> None:
    settings = load_config(Path(config))
    rt = Runtime(settings, resolve_data_dir(None, settings), role="test-console")
    await rt.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", file=sys.stderr, flush=True)
    shown: dict[str, Any] | None = None

    async def watch() -> None:
        nonlocal shown
        while True:
            now = view(rt)
            if now != shown:
                shown = now
                sys.stdout.buffer.write(orjson.dumps({"view": now}) + b"\n")
                sys.stdout.flush()
            await asyncio.sleep(0.02)

    async def commands() -> None:
        while line := await reader.readline():
            await act(rt, orjson.loads(line))

    watcher = asyncio.create_task(watch())
    reading = asyncio.create_task(commands())
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (watcher, reading, stopping):
            task.cancel()
        await rt.stop()


async def act(rt: Runtime, cmd: dict[str, Any]) -> None:
    desk, alerting = rt.desk, rt.alerting
    assert desk is not None
    assert alerting is not None
    op = cmd["op"]
    if op == "open":
        inc = await desk.open(cmd["title"], cmd.get("severity", "P1"), alerts=["api-down/api"])
        sys.stdout.buffer.write(orjson.dumps({"opened": inc.id}) + b"\n")
        sys.stdout.flush()
    elif op == "note":
        await desk.note(cmd["incident"], cmd["text"])
    elif op == "claim":
        await desk.claim(cmd["incident"])
    elif op == "ack":
        a = alerting.alerts.get("api-down", "api")
        assert a is not None
        await asyncio.to_thread(alerting.request, "ack", rule="api-down", target="api",
                                incident=a.incident, by=rt.operator,
                                comment=cmd.get("comment", ""))
    elif op == "silence":
        await asyncio.to_thread(alerting.request, "silence", matchers=['target="api"'],
                                duration=float(cmd.get("duration", 3600)), by=rt.operator,
                                reason=cmd["reason"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
