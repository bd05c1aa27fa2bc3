"""stacktools.timings: the arithmetic behind docs/alerts.md's timing table, and the table itself."""

from __future__ import annotations

import pytest

from stacktools.harness import FAST, ROOT, SHIPPED
from stacktools.timings import (
    WINDOWS,
    seconds,
    shipped_alerts,
    shipped_timings,
    time_to_fire,
    time_to_resolve,
    timing_table,
)


def test_seconds_parses_prometheus_durations() -> None:
    assert seconds("1m30s") == 90
    assert seconds("500ms") == 0.5
    assert seconds("4m20s") == 260
    assert seconds("1d") == 86400
    for bad in ("", "5", "1x", "m5", "1m 2s"):
        with pytest.raises(ValueError, match="not a duration"):
            seconds(bad)


def test_shipped_timings_are_read_from_the_configs() -> None:
    shipped = shipped_timings()
    assert (shipped.scrape_interval, shipped.evaluation_interval) == ("5s", "5s")
    assert (shipped.group_wait, shipped.group_interval) == ("30s", "5m")


def test_time_to_fire_and_resolve_follow_the_documented_formulas() -> None:
    # CircuitBreakerOpen, shipped: for 75s + group_wait 30s; worst adds a scrape and an evaluation
    # each just missed: 5 + 5 + 75 + 30 -- within the 2 minutes a page must take
    assert time_to_fire(SHIPPED, "75s") == (105.0, 115.0)
    assert time_to_fire(SHIPPED, "2m") == (150.0, 160.0)
    # `for` rounds up to whole evaluations; the expression's own window adds to both
    assert time_to_fire(SHIPPED, "7s", "30s") == (30 + 7 + 30, 5 + 30 + 5 + 10 + 30)
    assert time_to_resolve(SHIPPED) == 5 + 5 + 300
    assert time_to_resolve(SHIPPED, "1m") == 5 + 60 + 5 + 300
    # the e2e tests' timings: 1 s everything
    assert time_to_fire(FAST, "1s") == (2.0, 4.0)
    assert time_to_resolve(FAST) == 3.0


def test_every_shipped_alert_has_its_windows_and_the_doc_holds_the_table() -> None:
    assert {(name, severity) for name, severity, _ in shipped_alerts()} == set(WINDOWS)
    doc = (ROOT / "docs" / "alerts.md").read_text()
    assert timing_table() in doc, "docs/alerts.md: paste `python -m stacktools.timings` output"


def test_a_breaker_page_arrives_within_two_minutes_and_outlasts_a_single_trip() -> None:
    """Issue 17: CircuitBreakerOpen pages within 2 minutes with the shipped timings, and its `for`
    outlasts the default reset_timeout (60 s), so a trip that recovers at its first probe does not
    page (rules/tests/seawall-breaker-timing_test.yml checks that at the 5 s resolution)."""
    rule_for = next(f for name, _, f in shipped_alerts() if name == "CircuitBreakerOpen")
    _, worst = time_to_fire(SHIPPED, rule_for)
    assert worst <= 120.0
    assert seconds(rule_for) > 60.0


# Pages that may take longer than 2 minutes, each with the reason docs/alerts.md gives.
SLOW_PAGES = {"TaskHeartbeatStale": "TaskHeartbeatStale's page is slower on purpose, and is not a fast alert"}


def test_every_page_arrives_within_two_minutes_but_the_documented_slow_one() -> None:
    """Issue 17: a critical alert reaches PagerDuty within 2 minutes of a full fault with the shipped
    timings (worst case), read off the rules; the exception is named, and explained in the doc."""
    doc = (ROOT / "docs" / "alerts.md").read_text()
    pages = [(name, for_) for name, severity, for_ in shipped_alerts() if severity == "critical"]
    assert {"CircuitBreakerOpen", "ErrorBudgetBurn"} <= {name for name, _ in pages}
    for name, rule_for in pages:
        _, worst = time_to_fire(SHIPPED, rule_for, WINDOWS[(name, "critical")][0])
        if name in SLOW_PAGES:
            assert worst > 120.0, f"{name} is fast now: drop it from SLOW_PAGES and the doc's reason"
            assert SLOW_PAGES[name] in doc
        else:
            assert worst <= 120.0, f"{name} pages {worst:.0f} s after a full fault"
