"""The one vocabulary: every screen, notification and command writes a value the same way."""

from __future__ import annotations

import math

import pytest

from console.engine.text.fmt import (
    NO_VALUE,
    fmt_count,
    fmt_number,
    format_age,
    format_bytes,
    format_duration,
    format_target,
    format_value,
    threshold_text,
)


def test_durations_compact_and_spaced() -> None:
    # the spaced style is the Alerts screen's episode lengths (was alert_history.format_span)
    assert [format_duration(s, spaced=True) for s in (0, 45.4, 60, 723, 3599, 3600, 7500,
                                                       93600)] == [
        "0s", "45s", "1m 00s", "12m 03s", "59m 59s", "1h 00m", "2h 05m", "1d 02h"]
    assert [format_duration(s) for s in (0.45, 723, 7500, 93600)] == [
        "450ms", "12m03s", "2h05m", "1d02h"]
    # a 1.5 s timeout is not a 1 s one; whole and longer spans stay whole
    assert [format_duration(s) for s in (1.5, 2.0, 12.7)] == ["1.5s", "2s", "12s"]
    assert format_duration(None) == NO_VALUE
    assert format_duration(math.nan) == NO_VALUE


def test_ages_are_never_negative_and_fit_six_cells() -> None:
    assert format_age(-0.0) == "0s"
    assert format_age(-5) == "0s"  # a clock step back, not "-0.0"
    assert [format_age(s) for s in (45.9, 185, 8040, 3 * 86400 + 7200, 150 * 86400)] == [
        "45s", "3m05s", "2h14m", "3d02h", "150d"]
    assert format_age(None) == NO_VALUE


def test_targets_as_the_playbook_writes_them() -> None:
    assert [format_target(s) for s in (90, 300, 7200, 86400)] == [
        "90 s", "5 min", "2 h", "24 h"]


def test_one_unit_system_for_sizes() -> None:
    # 169.5M B on a panel and 161.7 MB in the drill-down were the same size: now one form
    assert format_bytes(169_500_000) == "169.5 MB"
    assert format_value(169_500_000, "B") == "169.5 MB"
    assert [format_bytes(v) for v in (0, 512, 1_500, 10_000, 2_300_000_000)] == [
        "0 B", "512 B", "1.5 kB", "10 kB", "2.3 GB"]
    assert format_value(1_500, "B/s") == "1.5 kB/s"
    assert format_value(None, "B") == f"{NO_VALUE} B"


@pytest.mark.parametrize(("value", "unit", "text"), [
    (182.4, "ms", "182.4 ms"), (99.95, "%", "99.95%"), (12345, "/s", "12.34k /s"),
    (3, "", "3"), (None, "ms", f"{NO_VALUE} ms"), (None, "", NO_VALUE),
])
def test_values_with_units(value: float | None, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


def test_numbers_truncate_never_round_up_to_a_round_figure() -> None:
    assert fmt_number(99.995) == "99.99"
    assert fmt_count(1234567) == "1,234,567"
    assert fmt_count(None) == NO_VALUE


def test_threshold_text_is_one_renderer_for_the_tui_and_the_cli() -> None:
    # a higher-is-better panel with only `warn` read "(< 99)" in the TUI, "> 99" in the CLI
    assert threshold_text(99, None, lower_is_better=False) == "> 99"
    assert threshold_text(99, None, lower_is_better=False, with_crit=False) == "> 99"
    assert threshold_text(200, 2000, lower_is_better=True) == "< 200 (crit ≥ 2000)"
    assert threshold_text(99.9, 99, lower_is_better=False) == "> 99.9 (crit ≤ 99)"
    assert threshold_text(200, 2000, lower_is_better=True, with_crit=False) == "< 200"
    assert threshold_text(None, 5, lower_is_better=True) == "crit ≥ 5"
    assert threshold_text(None, 5, lower_is_better=True, with_crit=False) == "< 5"
    assert threshold_text(None, None, lower_is_better=True) == ""


def test_the_daily_summary_rounds_a_measured_span_as_the_report_does() -> None:
    """`report --format markdown` said MTTA 1m14s beside the text report's 1m15s: one
    truncated 74.6 s, the other rounded it."""
    from console.engine.alerting.summary import bare_summary, summary_markdown
    from console.engine.incidents.kpis import measured

    d = bare_summary(0.0, 86400.0)
    d["kpis"] = [{"name": "MTTA (acknowledge)", "key": "mtta_s", "value": 74.6, "unit": "s",
                  "target": 300.0, "cmp": "<", "met": True}]
    md = summary_markdown(d)
    assert measured(74.6) == "1m15s"
    assert "| MTTA (acknowledge) | 1m15s |" in md
    # from a second on, to the second as the post-mortem writes it (a walk read the
    # report's 9.7s beside the post-mortem's 10s); below a second, milliseconds
    d["kpis"][0]["value"] = 8.6
    assert measured(8.6) == "9s"
    assert "| MTTA (acknowledge) | 9s |" in summary_markdown(d)
    d["kpis"][0]["value"] = 0.45
    assert "| MTTA (acknowledge) | 450ms |" in summary_markdown(d)
