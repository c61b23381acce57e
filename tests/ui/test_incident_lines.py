"""The incident screen's lines (steps, the KPI header) of an incident folded from a real
journal, in the test's own time."""

from __future__ import annotations

from pathlib import Path

from console.screens.incidents import kpi_line, step_line
from tests.engine.test_incidents import Clock, _desk


async def test_a_resolved_incident_counts_down_only_its_post_mortem(tmp_path: Path) -> None:
    """Resolved with steps left undone: they say so and stop counting down (they said
    'due in 4m53s' six seconds after RESOLVED), and the post-mortem is the next step."""
    clock = Clock()
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("API slow", "P1")
        await desk.acknowledge(inc.id)
        clock.advance(60)
        await desk.resolve(inc.id)
        clock.advance(6)
        assess, pm = inc.step("assess"), inc.step("postmortem")
        assert assess is not None
        assert pm is not None
        assert inc.next_step() is pm
        line = step_line(inc, assess, clock(), is_next=False)
        assert line.endswith("not done"), line
        assert "due in" not in line
        assert "due in" in step_line(inc, pm, clock(), is_next=True)
        assert inc.overdue(clock() + 3600) == []  # an hour on: nothing but the post-mortem
        # nor do the header's clocks: mitigate was never done, and stays so (the walk saw
        # "mitigate 6m23s…" counting up on a RESOLVED incident)
        head = kpi_line(inc, [], clock() + 3600)
        assert "mitigate not done" in head, head
        assert "…" not in head
    finally:
        await desk.journal.close()
