"""Supervised tasks with a fake clock: restart delays, the restart budget, permanent failure,
finishing, cancellation, events, heartbeats and input validation."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from typing import Any

import pytest

import seawall
from conftest import FakeClock
from seawall import Supervisor, TaskState
from seawall.events import TaskFailed, TaskStateChanged
from seawall.tasks.record import heartbeat_stale


class Boom(Exception):
    pass


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


class Recorder:
    """An injected async sleep: records each delay and moves the fake clock by it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


def failing(calls: list[int], message: str = "broker down token=abc123secret") -> Any:
    async def work() -> None:
        calls.append(1)
        raise Boom(message)

    return work


def make(registry: seawall.Registry, clock: FakeClock, **settings: Any) -> tuple[Supervisor, Recorder]:
    sleep = Recorder(clock)
    return Supervisor(registry=registry, clock=clock, wall_clock=clock, sleep=sleep, **settings), sleep


def test_delays_grow_exponentially_up_to_the_cap_and_the_budget_ends_in_one_critical_line(
    registry: seawall.Registry, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    supervisor, sleep = make(registry, fake_clock, initial=1.0, max_delay=5.0, jitter=0.0)

    async def scenario() -> TaskState:
        task = supervisor.supervise("consumer", failing(calls), max_restarts=4, window=3600.0)
        return await task.wait()

    with caplog.at_level(logging.WARNING, logger="seawall"):
        assert run(scenario()) is TaskState.FAILED
    assert sleep.delays == [1.0, 2.0, 4.0, 5.0]
    assert len(calls) == 5  # the first run and four restarts; never a fifth
    snap = registry.items("task")[0].snapshot()
    assert (snap.state, snap.restarts, snap.permanent_failures) == ("failed", 4, 1)
    assert snap.restarts_by_error == {"Boom": 4}
    assert snap.last_error_type == "Boom"
    assert snap.last_error_message == "broker down token=[REDACTED]"
    assert snap.next_restart_at is None
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1
    line = critical[0].getMessage()
    assert "consumer" in line
    assert "Boom" in line
    assert "[REDACTED]" in line
    assert "abc123secret" not in line
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4


def test_full_jitter_keeps_each_delay_within_its_exponential_bound(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    supervisor, sleep = make(registry, fake_clock, rng=random.Random(7), initial=0.5, max_delay=8.0)

    async def scenario() -> None:
        await supervisor.supervise("warmer", failing([]), max_restarts=6, window=3600.0).wait()

    run(scenario())
    bounds = [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(sleep.delays) == len(bounds)
    assert all(0.0 <= d <= b for d, b in zip(sleep.delays, bounds, strict=True))
    assert len(set(sleep.delays)) == len(bounds)  # jittered, not a fixed schedule


def test_restarts_older_than_the_window_do_not_count_against_the_budget(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)
        fake_clock.advance(100.0)  # each run lasts longer than the window
        if len(calls) < 8:
            raise Boom("again")

    supervisor, sleep = make(registry, fake_clock, jitter=0.0, initial=1.0)

    async def scenario() -> TaskState:
        return await supervisor.supervise("heartbeat", work, max_restarts=2, window=60.0).wait()

    assert run(scenario()) is TaskState.FINISHED  # seven failures, never two inside one window
    assert sleep.delays == [1.0] * 7  # the backoff restarts from `initial` once the window forgets
    snap = registry.get("task", "heartbeat").snapshot()
    assert (snap.restarts, snap.permanent_failures) == (7, 0)


def test_a_task_that_returns_is_finished_not_failed(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    supervisor, sleep = make(registry, fake_clock)

    async def once() -> None:
        return None

    async def scenario() -> TaskState:
        return await supervisor.supervise("migrate", once).wait()

    assert run(scenario()) is TaskState.FINISHED
    snap = registry.get("task", "migrate").snapshot()
    assert (snap.restarts, snap.permanent_failures, snap.last_error_type) == (0, 0, None)
    assert sleep.delays == []


def test_restart_on_refusing_an_error_fails_the_task_at_once(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    supervisor, sleep = make(registry, fake_clock)

    async def bad_config() -> None:
        raise ValueError("missing QUEUE_URL")

    async def scenario() -> TaskState:
        return await supervisor.supervise("reader", bad_config, restart_on="transient").wait()

    assert run(scenario()) is TaskState.FAILED
    assert sleep.delays == []
    assert registry.get("task", "reader").snapshot().permanent_failures == 1


def test_zero_restarts_means_the_first_failure_is_permanent(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    supervisor, sleep = make(registry, fake_clock)

    async def scenario() -> TaskState:
        return await supervisor.supervise("once", failing([]), max_restarts=0).wait()

    assert run(scenario()) is TaskState.FAILED
    assert sleep.delays == []


def test_events_tell_the_story_and_a_failing_listener_never_reaches_the_task(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    seen: list[Any] = []

    def broken(event: Any) -> None:
        raise RuntimeError("listener bug")

    registry.bus.subscribe(seen.append, events=[TaskFailed, TaskStateChanged])
    registry.bus.subscribe(broken, events=[TaskFailed])
    supervisor, _ = make(registry, fake_clock, jitter=0.0, initial=2.0)

    async def scenario() -> TaskState:
        return await supervisor.supervise("sync", failing([]), max_restarts=1).wait()

    assert run(scenario()) is TaskState.FAILED
    assert seen == [
        TaskStateChanged("sync", "starting", "running"),
        TaskFailed("sync", "Boom", seawall.ErrorCategory.UNKNOWN, True, 2.0),
        TaskStateChanged("sync", "running", "backing_off"),
        TaskStateChanged("sync", "backing_off", "running"),
        TaskFailed("sync", "Boom", seawall.ErrorCategory.UNKNOWN, False, 0.0),
        TaskStateChanged("sync", "running", "failed"),
    ]
    assert registry.bus.instrumentation_errors() == {"function": 2}


def test_failures_go_to_the_error_aggregator_with_the_task_as_source(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    supervisor, _ = make(registry, fake_clock, errors=registry.errors)

    async def scenario() -> None:
        await supervisor.supervise("indexer", failing([]), max_restarts=2).wait()

    run(scenario())
    assert registry.errors.stats()["errors_by_source"] == {"indexer": 3}


def test_shutdown_cancels_tasks_and_waits_a_bounded_time(registry: seawall.Registry) -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.3)  # ignores the first cancellation for a while

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        supervisor = Supervisor(registry=registry)
        polite = supervisor.supervise("polite", forever)
        late_one = supervisor.supervise("stubborn", stubborn)
        await asyncio.sleep(0.01)
        assert (polite.state, late_one.state) == (TaskState.RUNNING, TaskState.RUNNING)
        late = await supervisor.shutdown(timeout=0.05)
        states = [str(polite.state)]
        await late_one.wait()
        async with Supervisor(registry=registry) as other:
            other.supervise("brief", forever)
        return late, states, [str(t.state) for t in other.tasks]

    late, states, other = run(scenario())
    assert late == ["stubborn"]
    assert states == ["stopped"]
    assert other == ["stopped"]


def test_heartbeat_and_current_task(registry: seawall.Registry, fake_clock: FakeClock) -> None:
    supervisor, _ = make(registry, fake_clock)
    seen: list[Any] = []

    async def worker() -> None:
        handle = seawall.current_task()
        seen.append(handle)
        assert handle is not None
        fake_clock.advance(5.0)
        handle.beat()
        await asyncio.Event().wait()

    async def scenario() -> Any:
        task = supervisor.supervise("poller", worker, heartbeat_timeout=10.0)
        await asyncio.sleep(0.01)
        snap = task.snapshot()
        await supervisor.shutdown()
        return task, snap

    task, snap = run(scenario())
    assert seen == [task]
    assert seawall.current_task() is None
    assert snap.last_started_at == 1000.0
    assert snap.last_beat_at == 1005.0
    assert snap.heartbeat_timeout == 10.0
    assert not heartbeat_stale(snap, now=1015.0)
    assert heartbeat_stale(snap, now=1015.5)


def test_a_running_task_of_the_same_name_is_the_same_task_a_finished_one_replaced(
    registry: seawall.Registry,
) -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def done() -> None:
        return None

    async def scenario() -> None:
        supervisor = Supervisor(registry=registry)
        first = supervisor.supervise("job", forever, max_restarts=2)
        assert supervisor.supervise("job", forever, max_restarts=2) is first  # the one factory rule
        assert supervisor.tasks == [first]
        differs = "'job' already exists with a different configuration: max_restarts=3"
        with pytest.raises(ValueError, match=differs):
            supervisor.supervise("job", forever, max_restarts=3)
        with pytest.raises(ValueError, match="'job' already exists with other injected parts: factory="):
            supervisor.supervise("job", done)
        await supervisor.shutdown()
        again = supervisor.supervise("job", done)
        assert again is not first
        assert await again.wait() is TaskState.FINISHED
        assert registry.items("task") == [again]

    run(scenario())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_restarts": -1}, "max_restarts must be in [0, 1_000_000_000], got -1"),
        ({"max_restarts": True}, "max_restarts must be an int, got True"),
        ({"window": 0}, "window must be in (0, 1_000_000], got 0"),
        ({"window": float("inf")}, "window must be in (0, 1_000_000], got inf"),
        ({"initial": 0}, "initial must be in (0, 1_000_000], got 0"),
        ({"max_delay": float("nan")}, "max_delay must be in [0, 1_000_000], got nan"),
        ({"heartbeat_timeout": "5"}, "heartbeat_timeout must be a number or None, got '5'"),
        ({"critical": "yes"}, "critical must be a bool, got 'yes'"),
        ({"restarts": 3}, "unknown task setting 'restarts'; known: critical, heartbeat_timeout"),
        ({"jitter": 2.0}, "jitter must be in [0, 1], got 2.0"),
    ],
)
def test_bad_settings_name_the_field_and_the_value(settings: dict[str, Any], message: str) -> None:
    async def work() -> None:
        return None

    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        seawall.SupervisedTask("t", work, registry=seawall.Registry(), **settings)


def test_bad_factories_and_calls_outside_a_loop_are_clear_errors(registry: seawall.Registry) -> None:
    async def work() -> None:
        return None

    coroutine = work()
    with pytest.raises(TypeError, match="factory must be a function returning a coroutine"):
        seawall.SupervisedTask("t", coroutine, registry=registry)  # type: ignore[arg-type]
    coroutine.close()
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        Supervisor(registry=registry).supervise("u", work)
    assert registry.get("task", "u") is None  # refused before it joined the registry
    with pytest.raises(ValueError, match=r"shutdown_timeout must be in \(0, 1_000_000\], got 0"):
        Supervisor(shutdown_timeout=0)


def test_a_factory_that_returns_no_awaitable_is_a_failure(
    registry: seawall.Registry, fake_clock: FakeClock
) -> None:
    supervisor, _ = make(registry, fake_clock)

    async def scenario() -> TaskState:
        return await supervisor.supervise("sync_fn", lambda: None, max_restarts=0).wait()  # type: ignore[arg-type,return-value]

    assert run(scenario()) is TaskState.FAILED
    assert registry.get("task", "sync_fn").snapshot().last_error_type == "TypeError"


def test_snapshot_reads_never_change_state(registry: seawall.Registry, fake_clock: FakeClock) -> None:
    supervisor, _ = make(registry, fake_clock)

    async def scenario() -> None:
        task = supervisor.supervise("x", failing([]), max_restarts=1)
        await task.wait()
        assert task.snapshot() == task.snapshot()
        assert task.snapshot().to_dict()["state"] == "failed"

    run(scenario())


def test_control_characters_in_names_and_messages_cannot_forge_log_lines(
    registry: seawall.Registry, fake_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor, _ = make(registry, fake_clock)

    async def scenario() -> None:
        await supervisor.supervise("evil\nINFO ok", failing([], "x\r\nCRITICAL fake"), max_restarts=0).wait()

    with caplog.at_level(logging.WARNING, logger="seawall"):
        run(scenario())
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert "\n" not in line
    assert "\r" not in line
    assert "evil\\nINFO ok" in line
    assert "x\\r\\nCRITICAL fake" in line


def test_stop_one_task(registry: seawall.Registry) -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def scenario() -> tuple[bool, bool, str, str]:
        supervisor = Supervisor(registry=registry)
        task = supervisor.supervise("one", forever)
        await asyncio.sleep(0)
        never = seawall.SupervisedTask("never-started", forever, registry=registry)
        return await task.stop(timeout=1.0), await never.stop(), str(task.state), str(never.state)

    assert run(scenario()) == (True, True, "stopped", "stopped")


def test_module_level_supervise_uses_one_supervisor_per_registry(registry: seawall.Registry) -> None:
    async def once() -> None:
        return None

    async def scenario() -> seawall.SupervisedTask:
        task = seawall.supervise("job", once, registry=registry)
        await task.wait()
        assert await seawall.default_supervisor(registry).shutdown() == []
        return task

    task = run(scenario())
    assert seawall.default_supervisor(registry).tasks == [task]
    assert seawall.default_supervisor(registry) is not seawall.default_supervisor()
    assert task.state is TaskState.FINISHED
