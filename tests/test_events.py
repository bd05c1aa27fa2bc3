"""The event bus: per-type channels, failures counted once, logs rate-limited and escaped."""

from __future__ import annotations

import logging

import pytest

import seawall
from seawall import events
from seawall.events import BreakerCallCompleted, BreakerStateChanged, EventBus


def test_events_are_built_only_for_subscribed_types(registry: seawall.Registry) -> None:
    seen: list[object] = []
    registry.bus.subscribe(seen.append, events=[BreakerStateChanged])
    breaker = seawall.CircuitBreaker("db", failure_threshold=1, registry=registry)
    breaker.call(lambda: None)
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert [type(event) for event in seen] == [BreakerStateChanged]
    assert registry.bus.channel(BreakerCallCompleted).listeners == ()


def test_listener_failures_are_counted_each_and_logged_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    bus = EventBus(clock=lambda: now[0])

    def broken(event: object) -> None:
        raise RuntimeError("bug\r\nseawall admin result=ok")

    broken.component = "bad\nlistener"  # type: ignore[attr-defined]
    bus.subscribe(broken)
    event = BreakerCallCompleted("db", seawall.CallOutcome.SUCCESS, 0.0, None)
    with caplog.at_level(logging.ERROR, logger="seawall"):
        for _ in range(200):
            bus.publish(event)
        now[0] += events.SUMMARY_INTERVAL
        bus.publish(event)
    assert bus.instrumentation_errors() == {"bad\nlistener": 201}
    lines = caplog.records
    # the first 5 in full, one notice that the rest are summarized, one summary after the interval
    assert len(lines) == events.LOGGED_FAILURES_PER_COMPONENT + 2
    assert "196 more times" in lines[-1].getMessage()
    first_lines = [record.getMessage().split("\n", 1)[0] for record in lines]
    assert all("bad\\nlistener" in line for line in first_lines)  # the name escaped, one line


def test_stopping_the_program_or_the_task_still_reaches_the_caller() -> None:
    bus = EventBus()

    def stop(event: object) -> None:
        raise KeyboardInterrupt

    bus.subscribe(stop)
    with pytest.raises(KeyboardInterrupt):
        bus.publish(BreakerCallCompleted("db", seawall.CallOutcome.SUCCESS, 0.0, None))
