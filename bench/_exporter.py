"""A Prometheus exporter of N gauge series, served from a separate process so its CPU never counts.

Run as a script: `python bench/_exporter.py N` serves `bench_cpu{host="h0000"}` …
`bench_cpu{host="h<N-1>"}` (plus their sum's ingredients) at /metrics on an ephemeral
127.0.0.1 port, prints the port as one JSON line, and serves until stdin closes. Values move a
little on every scrape, so rates and charts have something to show.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def body(n: int, rng: random.Random, base: list[float]) -> bytes:
    lines = ["# HELP bench_cpu CPU busy percent", "# TYPE bench_cpu gauge"]
    for h in range(n):
        base[h] = min(100.0, max(0.0, base[h] + rng.uniform(-2.0, 2.0)))
        lines.append(f'bench_cpu{{host="h{h:04d}"}} {base[h]:.3f}')
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rng = random.Random(42)
    base = [rng.random() * 80.0 for _ in range(n)]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            with lock:
                data = body(n, rng, base)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    server.shutdown()


if __name__ == "__main__":
    main()
