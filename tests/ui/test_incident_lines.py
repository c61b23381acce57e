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


async def test_a_step_done_by_its_action_says_so_instead_of_0_of_3(tmp_path: Path) -> None:
    """The walk read "Communicate (< 15 min)  0/3  ✔ done": done by a status update, none
    of its items checked. The line says what did it; a step done by its items keeps them."""
    clock = Clock()
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("Checkout failing", "P1")
        clock.advance(240)
        await desk.status_update(inc.id, "Investigating checkout failures", routes=["slack"])
        comm = inc.step("communicate")
        assert comm is not None
        line = step_line(inc, comm, clock(), is_next=False)
        assert line == "  Communicate (< 15 min)  ✔ done +4m00s (status update)", line
        assess = inc.step("assess")
        assert assess is not None
        for i, _ in assess.items("P1"):
            await desk.check(inc.id, "assess", i)
        line = step_line(inc, assess, clock(), is_next=False)
        assert "✔ done +4m00s" in line
        assert " 4/4 " in line, line
    finally:
        await desk.journal.close()


async def test_the_header_rounds_times_as_the_post_mortem_does(tmp_path: Path) -> None:
    """Acknowledged 8.6 s after it opened: the header said "ack 8s" where the post-mortem
    and the report said 9s (the walk at 80x24)."""
    from console.engine.incidents.postmortem import render

    clock = Clock()
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("API slow", "P1")
        clock.advance(8.6)
        await desk.acknowledge(inc.id)
        head = kpi_line(inc, [], clock())
        assert "ack 9s" in head, head
        assert "| 9s |" in render(inc, now=clock())
    finally:
        await desk.journal.close()


async def test_the_incident_list_gives_the_title_the_room_the_overdue_flag_leaves(
        tmp_path: Path) -> None:
    """"Stripe webhooks failing (paymen…" stood beside 40 empty columns."""
    from console.screens.incidents import incident_line

    clock = Clock()
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        title = "Stripe webhooks failing (payments not processing)"
        inc = await desk.open(title, "P0")
        line = incident_line(inc, clock())
        assert "Stripe webhooks failing (payments not proce" in line
        assert len(line) <= 76, line
        clock.advance(3600)  # now steps are overdue: the flag takes its room back
        late = incident_line(inc, clock())
        assert "overdue" in late
        assert len(late) <= 76, late
    finally:
        await desk.journal.close()


async def test_a_resolved_incidents_age_rounds_as_its_resolve_step(tmp_path: Path) -> None:
    """The walk's header read "RESOLVED · age 1m18s" beside "resolve 1m19s ✔" (78.85 s:
    truncated in one, rounded in the other); an open incident's age is a clock."""
    from console.engine.alerting.summary import _dur
    from console.screens.incidents import incident_line

    clock = Clock()
    desk = await _desk(tmp_path / "j.jsonl", clock)
    try:
        inc = await desk.open("API down", "P0")
        clock.advance(78.85)
        assert " age  1m18s " in incident_line(inc, clock())  # open: the clock, truncated
        await desk.resolve(inc.id)
        clock.advance(30)
        assert " age  1m19s " in incident_line(inc, clock())
        assert "resolve 1m19s" in kpi_line(inc, [], clock())
    finally:
        await desk.journal.close()
    # the summary's spans round from a second on, as the post-mortem's (9.7s beside 10s)
    assert (_dur(9.7), _dur(78.85), _dur(0.45)) == ("10s", "1m19s", "450ms")
