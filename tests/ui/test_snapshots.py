"""Snapshots of the console at 80x24: overview in three themes, a target's detail, the help,
a Prometheus target's breakdown tables and the Alerts screen.

Deterministic by construction (tests/ui/snapshot_apps.py): frozen clock, no polling, fixed
results, no history file, no animation, TZ and theme environment pinned (ui_env). The
fault menu is demo-only (live ports and traffic), so it is covered by Pilot tests instead.
Regenerate with `pytest tests/ui/test_snapshots.py --snapshot-update`, then look at them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.snapshot_apps import frozen_app, prepare

pytestmark = pytest.mark.usefixtures("ui_env")

SIZE = (80, 24)


@pytest.mark.parametrize("theme", ["opsconsole-dark", "opsconsole-light", "ansi-dark"])
def test_overview(snap_compare: Any, theme: str) -> None:
    """Board (up, degraded, DOWN, waiting), panels (ok, warn, crit, n/a), footer."""
    assert snap_compare(frozen_app(theme), terminal_size=SIZE, run_before=prepare())


def test_detail(snap_compare: Any) -> None:
    """api-health: facts, five minutes of p50/p95/p99, recent results and the last body."""
    assert snap_compare(frozen_app(), terminal_size=SIZE, run_before=prepare(detail=True))


def test_help(snap_compare: Any) -> None:
    """`?` over the overview: the overview's and the app's keys."""
    assert snap_compare(frozen_app(), terminal_size=SIZE,
                        run_before=prepare("question_mark"))


def test_breakdown(snap_compare: Any) -> None:
    """`b` on api-metrics: per-route requests/s, share, error % (✓ ! ✖) and p50/p95/p99."""
    assert snap_compare(frozen_app(), terminal_size=SIZE,
                        run_before=prepare("b", detail="api-metrics", shows="/api/feed"))


def test_alerts(snap_compare: Any) -> None:
    """`a`: the alerts the fixed results raise (payments-webhook down), with the why-panel."""
    assert snap_compare(frozen_app(), terminal_size=SIZE,
                        run_before=prepare("a", shows="payment-webhooks-down"))


async def test_alerts_list_keeps_rows_on_a_small_terminal() -> None:
    """At 40x12 the why-panel and the banners took every row: the list of alerts (what `a`
    acknowledges) had none (bad-input walk)."""
    from textual.widgets import OptionList

    from tests.ui.snapshot_apps import frozen_app, prepare

    app = frozen_app()
    async with app.run_test(size=SIZE) as pilot:
        await prepare("a", shows="payment-webhooks-down")(pilot)
        await pilot.resize_terminal(40, 12)
        await pilot.pause()
        listing = app.screen.query_one("#alerts-list", OptionList)
        assert listing.region.height >= 3
