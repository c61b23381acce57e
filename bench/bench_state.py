"""The shared state in PostgreSQL: how many events a console applies per second, and how long
an acknowledgement takes to show on another console (target: within 1 s).

Run: ``python bench/bench_state.py`` (about a minute; the machine's PostgreSQL on
127.0.0.1:5432, database ``test``: a schema of its own, dropped at the end).

1. **Events per second one console applies.** 20,000 incident entries (200 incidents of an
   open and 99 notes) are read by a console starting up — connect, the full resync, folding
   every entry into the incident book — and, live, 5,000 more are written by "another
   console" in batches of 50 (each with its notification) while the console applies them.
   Baseline in the same run: the files backend opening the same 20,000 entries as a JSONL
   journal and folding them (what a single bastion does today).
2. **Added latency of an acknowledgement seen by another console.** Three consoles (whole
   runtimes, separate data directories, one database; 100 targets firing): one evaluates,
   a second acknowledges an alert, the time until the third shows it acknowledged (the
   request event, the evaluator applying it, its state delta, the third console reading it),
   100 times; median and p99. Baseline in the same run: the raw round trip of one
   INSERT + NOTIFY from one connection to a LISTENing one.

```
startup: N events applied in X s: E events/s (files baseline: B entries/s, ratio E/B)
live: L events/s applied while written by another console
ack seen by another console: median M ms, p99 P ms (raw NOTIFY round trip: median m ms, p99 p ms)
RESULT state events_per_s=… live_events_per_s=… files_per_s=… ratio=… ack_median_ms=…
  ack_p99_ms=… notify_median_ms=… notify_p99_ms=… target_ms<=1000 PASS|MISS   (one line)
```
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg  # noqa: E402
import orjson  # noqa: E402

from console.engine.config.loader import load_config_text  # noqa: E402
from console.engine.incidents.book import IncidentBook  # noqa: E402
from console.engine.incidents.playbooks import load_playbooks  # noqa: E402
from console.engine.paths import DataPaths  # noqa: E402
from console.engine.runtime import Runtime  # noqa: E402
from console.engine.state import schema as db  # noqa: E402
from console.engine.state.journal import SharedJournal  # noqa: E402
from console.engine.state.shared import SharedState  # noqa: E402
from console.engine.storage.journal import Journal, encode  # noqa: E402

DSN = os.environ.get("OPSBENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")
INCIDENTS, NOTES, LIVE, ACKS = 200, 99, 5000, 100
T0 = 1_800_000_000.0


def entries() -> list[dict[str, Any]]:
    out = []
    for i in range(INCIDENTS):
        iid = f"INC-{i:04d}"
        out.append({"id": f"e{i}-0", "ts": T0 + i, "actor": "ann@b1", "type": "incident.open",
                    "incident": iid, "title": f"incident {i}", "severity": "P2",
                    "alerts": [], "started": T0 + i})
        out += [{"id": f"e{i}-{k}", "ts": T0 + i + k, "actor": "bob@b2",
                 "type": "incident.note", "incident": iid, "text": f"note {k} " + "x" * 60}
                for k in range(1, NOTES + 1)]
    return out


async def insert(conn: asyncpg.Connection, schema: str, rows: list[dict[str, Any]],
                 notify: bool) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", db.lock_key(schema, "events"))
        ids = await conn.fetch(
            f"INSERT INTO {schema}.events (uid, stream, kind, ts, actor, body) SELECT * FROM "
            "unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[], "
            "$6::jsonb[]) RETURNING id", [r["id"] for r in rows], ["incident"] * len(rows),
            [r["type"] for r in rows], [r["ts"] for r in rows], [r["actor"] for r in rows],
            [orjson.dumps(r).decode() for r in rows])
        if notify:
            await conn.execute("SELECT pg_notify($1, $2)", db.channel(schema),
                               f"e{max(r['id'] for r in ids)}")


async def events_per_second(schema: str, tmp: Path) -> tuple[float, float, float, int]:
    rows = entries()
    conn = await asyncpg.connect(DSN)
    try:
        for k in range(0, len(rows), 2000):
            await insert(conn, schema, rows[k:k + 2000], notify=False)
    finally:
        await conn.close()
    playbooks = load_playbooks()
    # files baseline: the same entries as a journal file, opened and folded
    path = tmp / "journal.jsonl"
    path.write_bytes(b"".join(encode(r) for r in rows))
    t0 = time.perf_counter()
    journal = Journal(path)
    journal.open()
    book = IncidentBook.from_entries(playbooks, journal.entries)
    files_s = time.perf_counter() - t0
    journal.close_sync()
    assert len(book.incidents) == INCIDENTS
    # the shared state: connect, resync, fold
    cfg = load_config_text(f'[state]\nbackend = "postgres"\ndsn = "{DSN}"\n'
                           f'schema = "{schema}"\n').state
    t0 = time.perf_counter()
    state = SharedState(cfg, DataPaths(tmp / "console"), actor="bench")
    shared = SharedJournal(state, root=tmp / "console", actor="bench")
    await state.start()
    assert state.connected, state.problem
    book = IncidentBook.from_entries(playbooks, shared.entries)
    pg_s = time.perf_counter() - t0
    assert sum(len(i.notes) for i in book.incidents.values()) == INCIDENTS * NOTES
    # live: another console writes, this one applies
    shared.subscribe(book.apply_all)
    live = [{"id": f"live-{k}", "ts": T0 + k, "actor": "cy@b3", "type": "incident.note",
             "incident": f"INC-{k % INCIDENTS:04d}", "text": f"live {k}"} for k in range(LIVE)]
    writer = await asyncpg.connect(DSN)
    done = asyncio.Event()
    target = len(rows) + LIVE

    def check(_: list[dict[str, Any]]) -> None:
        if len(shared.entries) >= target:
            done.set()

    shared.subscribe(check)
    t0 = time.perf_counter()
    for k in range(0, LIVE, 50):
        await insert(writer, schema, live[k:k + 50], notify=True)
    await asyncio.wait_for(done.wait(), 120)
    live_s = time.perf_counter() - t0
    await writer.close()
    await state.stop()
    return len(rows) / pg_s, LIVE / live_s, len(rows) / files_s, len(rows)


class Down(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def notify_round_trips(schema: str, n: int) -> list[float]:
    listener, writer = await asyncpg.connect(DSN), await asyncpg.connect(DSN)
    got: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("bench_rt", lambda *_: got.put_nowait(time.perf_counter()))
    out = []
    try:
        for k in range(n):
            t0 = time.perf_counter()
            async with writer.transaction():
                await writer.execute(f"INSERT INTO {schema}.meta VALUES ($1, 'x')", f"rt{k}")
                await writer.execute("SELECT pg_notify('bench_rt', '1')")
            out.append(await asyncio.wait_for(got.get(), 10) - t0)
    finally:
        await listener.close()
        await writer.close()
    return out


async def ack_latencies(schema: str, tmp: Path, url: str) -> list[float]:
    targets = "".join(f'[[targets]]\nname = "t{i}"\nkind = "http"\nurl = "{url}"\n'
                      'interval = "5s"\ntimeout = "2s"\n\n' for i in range(ACKS))
    text = (targets + '[[rules]]\nname = "down"\nexpr = "down"\nseverity = "P1"\n'
            'failure_threshold = 1\n\n[alerting]\ndefault_rules = false\n\n'
            f'[state]\nbackend = "postgres"\ndsn = "{DSN}"\nschema = "{schema}"\n')
    rts = []
    for i in range(3):
        rt = Runtime(load_config_text(text), DataPaths(tmp / f"c{i}"), history=False,
                     operator=f"op{i}", incidents=False)
        await rt.start()
        rts.append(rt)
    try:
        deadline = time.monotonic() + 120
        while not all(sum(a.state.value == "firing" for a in rt.alerting.alerts.alerts())
                      == ACKS for rt in rts):  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the alerts never fired everywhere"
            await asyncio.sleep(0.1)
        owner = next(rt for rt in rts if rt.alerting.role == "owner")  # type: ignore[union-attr]
        acker, observer = [rt for rt in rts if rt is not owner]
        out = []
        for i in range(ACKS):
            a = acker.alerting.alerts.get("down", f"t{i}")  # type: ignore[union-attr]
            assert a is not None
            t0 = time.perf_counter()
            await acker.alerting.submit("ack", rule="down", target=f"t{i}",  # type: ignore[union-attr]
                                        incident=a.incident, by="op1")
            while True:
                seen = observer.alerting.alerts.get("down", f"t{i}")  # type: ignore[union-attr]
                if seen is not None and seen.acked_by == "op1":
                    break
                await asyncio.sleep(0.0005)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        for rt in rts:
            await rt.stop()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main() -> None:
    schema = f"opsbench_{os.getpid()}"
    conn = await asyncpg.connect(DSN)
    await db.init(conn, schema)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    try:
        with tempfile.TemporaryDirectory(prefix="opsbench-state-") as tmp:
            eps, live_eps, files_eps, n = await events_per_second(schema, Path(tmp))
            print(f"startup: {n} events applied: {eps:,.0f} events/s (files baseline: "
                  f"{files_eps:,.0f} entries/s, ratio {eps / files_eps:.2f})")
            print(f"live: {live_eps:,.0f} events/s applied while written by another console")
            rt = await notify_round_trips(schema, ACKS)
            acks = await ack_latencies(schema, Path(tmp), url)
        ack_med, ack_p99 = statistics.median(acks) * 1e3, pct(acks, 99) * 1e3
        rt_med, rt_p99 = statistics.median(rt) * 1e3, pct(rt, 99) * 1e3
        print(f"ack seen by another console: median {ack_med:.1f} ms, p99 {ack_p99:.1f} ms "
              f"(raw NOTIFY round trip: median {rt_med:.2f} ms, p99 {rt_p99:.2f} ms; added "
              f"median {ack_med - rt_med:.1f} ms)")
        verdict = "PASS" if ack_p99 <= 1000 else "MISS"
        print(f"RESULT state events_per_s={eps:.0f} live_events_per_s={live_eps:.0f} "
              f"files_per_s={files_eps:.0f} ratio={eps / files_eps:.2f} "
              f"ack_median_ms={ack_med:.1f} ack_p99_ms={ack_p99:.1f} "
              f"notify_median_ms={rt_med:.2f} notify_p99_ms={rt_p99:.2f} target_ms<=1000 "
              f"{verdict}")
    finally:
        server.shutdown()
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
