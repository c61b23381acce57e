"""RecentResults: a target's last results, kept packed, read back equal."""

from __future__ import annotations

import dataclasses
import math

from console.engine.model import CheckResult, RecentResults, ResponseInfo, Status


def _result(i: int, *, status: Status = Status.UP, code: int = 200) -> CheckResult:
    return CheckResult(
        target="api", kind="http", status=status, started_at=1000.0 + i,
        latency_ms=10.0 + i / 7, metrics={"latency_ms": 10.0 + i / 7, "status_code": float(code),
                                          "body_bytes": 42.0, "ttfb_ms": float("nan")},
        response=ResponseInfo(status_code=code, reason="OK"), details={"health": {"ok": 1}},
    )


def _same(a: CheckResult, b: CheckResult) -> bool:
    fa, fb = dataclasses.asdict(a), dataclasses.asdict(b)
    ma, mb = fa.pop("metrics"), fb.pop("metrics")
    return fa == fb and list(ma) == list(mb) and all(
        x == y or (x != x and y != y) for x, y in zip(ma.values(), mb.values(), strict=True))


def test_reads_back_every_result_in_order_up_to_maxlen() -> None:
    made = [_result(i, status=Status.DOWN if i % 9 == 0 else Status.UP,
                    code=500 if i % 13 == 0 else 200) for i in range(130)]
    recent = RecentResults(50, full=5)
    for n, r in enumerate(made, start=1):
        recent.append(r)
        kept = made[max(0, n - 50):n]
        assert len(recent) == len(kept)
        assert all(_same(a, b) for a, b in zip(recent, kept, strict=True))
        # by index too, from either end: a packed entry finds its prototype before it, or
        # the whole result that already left the deque
        assert all(_same(recent[i], kept[i]) for i in range(len(kept)))
        assert all(_same(recent[-i], kept[-i]) for i in range(1, len(kept) + 1))
    assert _same(recent[0], made[80])
    assert _same(recent[-1], made[-1])


def test_the_newest_are_the_objects_appended_and_older_ones_are_packed() -> None:
    made = [_result(i) for i in range(50)]
    recent = RecentResults(50, full=5)
    for r in made:
        recent.append(r)
    assert all(a is b for a, b in zip(list(recent)[-5:], made[-5:], strict=True))
    packed = [a for a, b in zip(recent, made, strict=True) if a is not b]
    assert len(packed) == 44  # all but the newest five and the first, their prototype


def test_a_result_that_differs_is_kept_whole() -> None:
    a, b = _result(1), _result(2)
    odd = dataclasses.replace(_result(3), metrics={"status_code": 200.0})  # other keys
    ints = dataclasses.replace(_result(4), metrics={**_result(4).metrics, "body_bytes": 42})
    recent = RecentResults(10, full=1)
    for r in (a, b, odd, ints, _result(5)):
        recent.append(r)
    got = list(recent)
    assert got[2] is odd
    assert got[3] is ints
    assert _same(got[1], b)
    assert got[1] is not b


def test_packed_entries_outlive_their_prototype() -> None:
    """A healthy target: every result packed against the first, which left the deque long
    ago; they still read back equal, by iteration and by index."""
    made = [_result(i) for i in range(120)]
    recent = RecentResults(50, full=5)
    for r in made:
        recent.append(r)
    assert sum(a is b for a, b in zip(recent, made[-50:], strict=True)) == 5  # only the newest
    assert all(_same(a, b) for a, b in zip(recent, made[-50:], strict=True))
    assert all(_same(recent[i], made[70 + i]) for i in range(50))


def test_a_packed_entry_holds_only_the_values_that_differ_and_reads_back_their_bits() -> None:
    """Values the prototype has, bit for bit, are left out of a packed entry; a zero of the
    other sign, a number after a NaN, and a float where the prototype has an int are not."""
    proto = dataclasses.replace(_result(0), metrics={**_result(0).metrics, "body_bytes": 0.0})
    same = dataclasses.replace(_result(1), metrics=dict(proto.metrics))
    quiet = dataclasses.replace(_result(2), metrics={**proto.metrics, "latency_ms": 11.0})
    signed = dataclasses.replace(_result(3), metrics={**proto.metrics, "body_bytes": -0.0})
    back = dataclasses.replace(_result(4), metrics={**proto.metrics, "ttfb_ms": 3.0,
                                                    "status_code": 500.0})
    recent = RecentResults(10, full=1)
    for r in (proto, same, quiet, signed, back, _result(5)):
        recent.append(r)
    packed = [x for x in recent._items if isinstance(x, bytes)]
    # time and latency, one mask byte, then the values that differ
    assert [len(x) for x in packed] == [16 + 1, 16 + 1 + 8, 16 + 1 + 8, 16 + 1 + 16]
    got = list(recent)
    for a, b in zip(got, (proto, same, quiet, signed, back), strict=False):
        assert _same(a, b)
        assert [math.copysign(1.0, v) for v in a.metrics.values()] == \
            [math.copysign(1.0, v) for v in b.metrics.values()]
    assert math.copysign(1.0, got[3].metrics["body_bytes"]) == -1.0
    assert got[4].metrics["ttfb_ms"] == 3.0
    assert got[1].metrics["ttfb_ms"] != got[1].metrics["ttfb_ms"]  # NaN, as it was
