"""`opsconsole panels`: a dashboard's numbers once, for scripts and a quick look."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from console.cli.common import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEM, heartbeat_pings, load_or_report

if TYPE_CHECKING:
    from pathlib import Path

    from console.engine.config.schema import Settings


RATE_GAP_S = 1.0  # rates (prometheus rate/ratio/quantiles, xact_per_s, hit rates) need two


def cmd_panels(args: argparse.Namespace) -> int:
    """`opsconsole panels`: the dashboards' numbers once, for scripts and a quick look."""
    loaded = load_or_report(args)
    if loaded is None:
        return EXIT_CONFIG
    settings, _ = loaded
    return asyncio.run(_panels(settings, args.dashboard, as_json=args.json,
                               pings=heartbeat_pings(args, settings)))


def pick_dashboard(settings: Settings, wanted: str | None) -> tuple[str | None, list[Any]]:
    """(dashboard name, its panels) for `wanted`: its number as on the number keys (0 or
    None: every panel) or its name (case-insensitive, a unique prefix will do).

    Raises LookupError with the dashboards listed when nothing (or several) match.
    """
    boards = settings.dashboards
    listing = " · ".join(f"{i} {d.name}" for i, d in enumerate(boards, 1)) or "none"
    if wanted is None or wanted.strip() in ("", "0"):
        return None, list(settings.panels)
    text = wanted.strip()
    if text.isdigit():
        n = int(text)
        if not 0 < n <= len(boards):
            raise LookupError(f"no dashboard {n}; dashboards: {listing}")
        board = boards[n - 1]
    else:
        exact = [d for d in boards if d.name.casefold() == text.casefold()]
        found = exact or [d for d in boards if d.name.casefold().startswith(text.casefold())]
        if len(found) != 1:
            what = "several dashboards match" if found else "no dashboard named"
            raise LookupError(f"{what} {text!r}; dashboards: {listing}")
        board = found[0]
    by_key = {p.key: p for p in settings.panels}
    return board.name, [by_key[k] for k in board.panels if k in by_key]


def _panel_lines(views: Sequence[Any], panels: Sequence[Any]) -> list[str]:
    """One line per panel, columns as wide as this board needs (so a board fits 80 columns)."""
    from console.engine.text.fmt import PANEL_GLYPH, format_value, threshold_text
    from console.engine.text.sanitize import one_line

    rows = []
    for view, panel in zip(views, panels, strict=True):
        rows.append((f"{PANEL_GLYPH.get(view.state, '?')} {view.state:<6}",
                     one_line(view.title, 30), format_value(view.value, view.unit),
                     threshold_text(panel.warn, panel.crit, panel.lower_is_better),
                     view.target))
    tw = max((len(r[1]) for r in rows), default=0)
    vw = max((len(r[2]) for r in rows), default=0)
    lw = max((len(r[3]) for r in rows), default=0)
    return [f"{a} {t:<{tw}}  {v:>{vw}}  {lim:<{lw}}  {target}".rstrip()
            for a, t, v, lim, target in rows]


async def _panels(settings: Settings, wanted: str | None, *, as_json: bool,
                  pings: Path | None = None) -> int:
    import orjson

    from console.engine.scheduler import Scheduler

    engine = Scheduler(settings, pings=pings)  # merges the ready-made dashboards, as in the console
    try:
        name, panels = pick_dashboard(engine.settings, wanted)
    except LookupError as exc:
        print(f"opsconsole panels: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    await engine.start(poll=False)
    try:
        await engine.check_once()
        views = engine.panel_views(panels)
        if any(v.state == "nodata" for v in views):  # a rate needs a previous sample
            await asyncio.sleep(RATE_GAP_S)
            await engine.check_once()
            views = engine.panel_views(panels)
        status = {v.name: v.status.value for v in engine.snapshot()}
    finally:
        await engine.stop()
    member: dict[str, list[str]] = {}
    for d in engine.settings.dashboards:
        for k in d.panels:
            member.setdefault(k, []).append(d.name)
    if as_json:
        rows = [{
            "key": v.key, "title": v.title, "target": v.target, "metric": v.metric,
            "unit": v.unit, "value": v.value, "state": v.state, "warn": v.warn, "crit": v.crit,
            "lower_is_better": p.lower_is_better, "target_status": status.get(v.target),
            "dashboards": member.get(v.key, []),
        } for v, p in zip(views, panels, strict=True)]
        sys.stdout.buffer.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(f"── {name or 'every panel'} " + "─" * max(0, 60 - len(name or "every panel")))
        for line in _panel_lines(views, panels):
            print(line)
    sys.stdout.flush()
    bad = any(v.state in ("warn", "crit") or status.get(v.target) == "down" for v in views)
    return EXIT_PROBLEM if bad else EXIT_OK



