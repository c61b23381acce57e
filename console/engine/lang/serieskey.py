"""Series keys: a Prometheus series' labels as one string, `{a="x",b="y"}`, and back.

Its own small module (no client, no numpy) so the rules engine and the scheduler read keys
without importing the Prometheus API client (`probes/promapi.py` re-exports both).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["parse_series_key", "series_key"]


def series_key(labels: Mapping[str, str]) -> str:
    """`{instance="web-1",job="node"}` (sorted, PromQL escaping); "" for no labels."""
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def parse_series_key(key: str) -> dict[str, str]:
    """The labels of a `{a="x",b="y"}` key as `series_key` writes it ({} for "")."""
    out: dict[str, str] = {}
    if not key.startswith("{"):
        return out
    i, n = 1, len(key) - 1
    while i < n:
        eq = key.index("=", i)
        j = eq + 2  # past ="
        buf = []
        while key[j] != '"':
            if key[j] == "\\":
                j += 1
                buf.append("\n" if key[j] == "n" else key[j])
            else:
                buf.append(key[j])
            j += 1
        out[key[i:eq]] = "".join(buf)
        i = j + 2  # past the closing quote and the comma
    return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
