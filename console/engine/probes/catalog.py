"""What a probe kind reports, by name, importable without the probe and its client library.

`validate` checks runbook links and panels against these names; importing the HTTP probe for
them would load aiohttp and httpx (and aiohttp's TLS contexts) into a command that sends no
request.
"""

from __future__ import annotations

# What an HTTP check reports (the component counts only for a recognised health body).
HTTP_METRICS = frozenset({"latency_ms", "status_code", "body_bytes", "ttfb_ms",
                          "components_down", "core_components_down", "other_components_down"})
