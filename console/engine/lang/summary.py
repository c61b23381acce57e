"""An alert's summary with the Prometheus template references it may carry, filled in.

Rules imported from Prometheus (`opsconsole rules import`) keep annotations such as
``summary: "Instance {{ $labels.instance }} down ({{ $value | humanize }})"``; a console
rule may use the same references. The console expands the references that name an
alert's labels and value — ``{{ $labels.NAME }}``, ``{{ .Labels.NAME }}``,
``{{ $labels.target }}`` (the console's target), ``{{ $value }}``, ``{{ .Value }}``,
optionally piped through ``humanize``, ``humanizePercentage`` or ``printf "%.2f"`` — and
leaves any other Go template text as written: it is not a template engine, and a summary
must never fail to render.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping

from console.engine.text.fmt import fmt_number

_REF = re.compile(
    r"\{\{-?\s*(?:(?P<printf>printf\s+\"(?P<fmt>%[-+ 0#]*\d*(?:\.\d+)?[dfgeEsv])\"\s+)?"
    r"(?:\$labels|\.Labels)\.(?P<label>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<vprintf>printf\s+\"(?P<vfmt>%[-+ 0#]*\d*(?:\.\d+)?[dfgeEsv])\"\s+)?"
    r"(?:\$value|\.Value)(?:\s*\|\s*(?P<pipe>humanizePercentage|humanize1024|humanize"
    r"|printf\s+\"(?P<pfmt>%[-+ 0#]*\d*(?:\.\d+)?[dfgeEsv])\"))?)\s*-?\}\}")


def _printf(fmt: str, value: float | str) -> str:
    if fmt.endswith(("s", "v")):
        return str(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
    else:
        number = value
    if fmt.endswith("d"):
        return fmt % int(number) if math.isfinite(number) else str(number)
    return fmt % number


def _humanize(value: float, base: float = 1000.0) -> str:
    """Prometheus's `humanize`: SI prefixes (k, M, G… and m, u, n… below 1)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:.4g}"
    if abs(value) >= 1:
        for prefix in ("", "k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(value) < base:
                return f"{value:.4g}{prefix}"
            value /= base
        return f"{value:.4g}Y"
    if base != 1000.0:
        return f"{value:.4g}"
    for prefix in ("", "m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            return f"{value:.4g}{prefix}"
        value *= 1000
    return f"{value:.4g}y"


def _value_text(value: float | None, pipe: str | None, fmt: str | None) -> str:
    if value is None:
        return "n/a"
    if fmt:
        return _printf(fmt, value)
    if pipe == "humanize":
        return _humanize(value)
    if pipe == "humanize1024":
        return _humanize(value, 1024.0)
    if pipe == "humanizePercentage":
        return f"{value * 100:.4g}%"
    return fmt_number(value)


def expand_summary(text: str, labels: Mapping[str, str], value: float | None,
                   *, target: str = "") -> str:
    """`text` with its label and value references filled in (see the module's doc).

    A label the alert does not have becomes "" as in Prometheus; everything else that
    looks like a template is left as written."""
    if "{{" not in text:
        return text

    def one(m: re.Match[str]) -> str:
        label = m.group("label")
        if label is not None:
            got = labels.get(label)
            if got is None and label == "target":
                got = target
            got = got or ""
            return _printf(m.group("fmt"), got) if m.group("fmt") else got
        return _value_text(value, m.group("pipe"), m.group("vfmt") or m.group("pfmt"))

    return _REF.sub(one, text)
