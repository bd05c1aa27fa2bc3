"""CircuitBreaker state machine, windows, filters, events and settings (sync paths, fake clock)."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from typing import Any

import pytest

from conftest import FakeClock
from seawall import (
    BreakerState,
    CallOutcome,
    CircuitBreaker,
    CircuitOpenError,
    Registry,
    breaker,
    default_registry,
)
from seawall.events import (
    BreakerCallCompleted,
    BreakerCallRejected,
    BreakerStateChanged,
    Event,
    InstrumentationFailed,
)


class Boom(Exception):
    pass


class NotFound(Exception):
    pass


def make(clock: FakeClock, **settings: Any) -> CircuitBreaker:
    settings.setdefault("reset_timeout", 10.0)
    return CircuitBreaker("db", clock=clock, registry=Registry(), **settings)


def ok() -> str:
    return "ok"


def boom() -> None:
    raise Boom("down")


def fail(cb: CircuitBreaker, times: int = 1, exc: type[Exception] = Boom) -> None:
    def raiser() -> None:
        raise exc("x")

    for _ in range(times):
        with pytest.raises(exc):
            cb.call(raiser)


def collect(cb: CircuitBreaker) -> list[Event]:
    events: list[Event] = []
    cb.registry.bus.subscribe(events.append)
    return events


def transitions(events: list[Event]) -> list[tuple[str, str, str]]:
    return [
        (e.from_state.value, e.to_state.value, e.reason) for e in events if isinstance(e, BreakerStateChanged)
    ]


def test_trips_on_consecutive_failures_only(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=3)
    fail(cb, 2)
    assert cb.call(ok) == "ok"  # a success resets the streak
    fail(cb, 2)
    assert cb.state is BreakerState.CLOSED
    assert cb.snapshot().consecutive_failures == 2
    fail(cb)
    assert cb.state is BreakerState.OPEN
    assert cb.retry_after == 10.0


def test_open_rejects_until_timeout_then_probes(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)
    events = collect(cb)
    fail(cb)
    fake_clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as info:
        cb.call(ok)
    err = info.value
    assert (err.name, err.state, err.retry_after) == ("db", BreakerState.OPEN, 6.0)
    assert str(err) == "circuit breaker 'db' is open; retry after 6.0s"
    assert isinstance(err, Exception)
    assert pickle.loads(pickle.dumps(err)).retry_after == 6.0
    fake_clock.advance(6.0)
    assert cb.state is BreakerState.OPEN  # reads never move the state: the next call does
    assert cb.retry_after == 0.0  # a probe may go now
    assert cb.call(ok) == "ok"
    assert cb.state is BreakerState.CLOSED
    assert transitions(events) == [
        ("closed", "open", "failures"),
        ("open", "half_open", "timeout"),
        ("half_open", "closed", "probe_success"),
    ]
    rejected = [e for e in events if isinstance(e, BreakerCallRejected)]
    assert rejected == [BreakerCallRejected("db", BreakerState.OPEN, 6.0)]
    assert cb.snapshot().calls == {"success": 1, "failure": 1, "rejected": 1, "ignored": 0, "cancelled": 0}


def test_failed_probe_reopens_with_fresh_timeout(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)
    events = collect(cb)
    fail(cb)
    fake_clock.advance(15.0)  # well past the timeout: the lazy check happens on the call
    fail(cb)
    assert cb.state is BreakerState.OPEN
    assert cb.retry_after == 10.0
    assert transitions(events)[-1] == ("half_open", "open", "probe_failure")


def test_half_open_limits_probes_in_flight(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1, half_open_max_calls=2, success_threshold=2)
    fail(cb)
    fake_clock.advance(10.0)
    first, second = cb, cb
    first.__enter__()
    second.__enter__()
    with pytest.raises(CircuitOpenError) as info:
        cb.call(ok)
    assert info.value.state is BreakerState.HALF_OPEN
    assert info.value.retry_after == 0.0
    assert cb.retry_after == 0.0
    assert cb.snapshot().half_open_in_flight == 2
    cb.__exit__(None, None, None)
    assert cb.state is BreakerState.HALF_OPEN  # one success of two needed
    assert cb.call(ok) == "ok"  # the freed slot takes a new probe, which closes it
    assert cb.state is BreakerState.CLOSED
    cb.__exit__(None, None, None)  # a late probe of the old half-open period changes nothing
    assert cb.state is BreakerState.CLOSED
    assert cb.snapshot().calls["success"] == 3


def test_manual_states(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)
    events = collect(cb)
    cb.force_open()
    fake_clock.advance(1000.0)  # forced_open never times out
    with pytest.raises(CircuitOpenError) as info:
        cb.call(ok)
    assert info.value.state is BreakerState.FORCED_OPEN
    assert info.value.retry_after == 10.0
    assert cb.retry_after == 10.0
    cb.disable()
    fail(cb, 5)
    assert cb.state is BreakerState.DISABLED
    assert cb.retry_after is None
    cb.reset()
    fail(cb)
    assert cb.state is BreakerState.OPEN
    cb.reset()
    assert cb.state is BreakerState.CLOSED
    assert cb.call(ok) == "ok"
    assert transitions(events) == [
        ("closed", "forced_open", "manual"),
        ("forced_open", "disabled", "manual"),
        ("disabled", "closed", "manual"),
        ("closed", "open", "failures"),
        ("open", "closed", "manual"),
    ]
    calls = cb.snapshot().calls
    assert calls == {"success": 1, "failure": 6, "rejected": 1, "ignored": 0, "cancelled": 0}


def test_reset_clears_counters(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=3, failure_rate_threshold=0.9, minimum_calls=5)
    fail(cb, 2)
    cb.reset()
    snap = cb.snapshot()
    assert (snap.consecutive_failures, snap.window_calls, snap.failure_rate) == (0, 0, 0.0)
    assert snap.calls["failure"] == 2  # totals since creation stay


def test_count_window_failure_rate_needs_minimum_calls(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=100, failure_rate_threshold=0.5, window_size=10, minimum_calls=4)
    events = collect(cb)
    fail(cb, 3)
    assert cb.state is BreakerState.CLOSED  # 3 calls < minimum_calls
    assert cb.snapshot().failure_rate == 1.0
    cb.call(ok)  # 3/4 >= 0.5, but successes never trip on failure rate
    assert cb.state is BreakerState.CLOSED
    fail(cb)
    assert cb.state is BreakerState.OPEN
    assert transitions(events) == [("closed", "open", "failure_rate")]


def test_count_window_forgets_old_calls(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=100, failure_rate_threshold=0.5, window_size=4, minimum_calls=4)
    fail(cb)
    for _ in range(4):
        cb.call(ok)
    snap = cb.snapshot()
    assert (snap.window_calls, snap.failure_rate) == (4, 0.0)
    fail(cb)
    assert cb.state is BreakerState.CLOSED  # 1/4 < 0.5


def test_time_window(fake_clock: FakeClock) -> None:
    cb = make(
        fake_clock,
        failure_threshold=100,
        failure_rate_threshold=0.5,
        window_type="time",
        window_size=10,
        minimum_calls=3,
    )
    fail(cb, 2)
    fake_clock.advance(30.0)  # those two expire
    assert cb.snapshot().window_calls == 0
    cb.call(ok)
    cb.call(ok)
    fail(cb)
    assert cb.state is BreakerState.CLOSED  # 1/3
    fake_clock.advance(1.0)
    fail(cb)
    assert cb.state is BreakerState.OPEN  # 2/4


def test_slow_calls_trip(fake_clock: FakeClock) -> None:
    cb = make(
        fake_clock,
        slow_call_duration=1.0,
        slow_call_rate_threshold=0.5,
        window_size=10,
        minimum_calls=2,
    )
    events = collect(cb)

    def slow() -> str:
        fake_clock.advance(1.5)
        return "late"

    assert cb.call(ok) == "ok"
    assert cb.state is BreakerState.CLOSED
    assert cb.call(slow) == "late"
    assert cb.state is BreakerState.OPEN
    assert transitions(events) == [("closed", "open", "slow_calls")]
    completed = [e for e in events if isinstance(e, BreakerCallCompleted)]
    assert completed[1] == BreakerCallCompleted("db", CallOutcome.SUCCESS, 1.5, None)


@pytest.mark.parametrize("form", ["decorator", "call", "with"])
def test_completed_events_carry_durations(fake_clock: FakeClock, form: str) -> None:
    cb = make(fake_clock, failure_threshold=3)
    events = collect(cb)

    def work(fail: bool) -> str:
        fake_clock.advance(0.25)
        if fail:
            raise Boom("x")
        return "done"

    def run(fail: bool) -> str:
        if form == "decorator":
            return cb(work)(fail)
        if form == "call":
            return cb.call(work, fail)
        with cb:
            return work(fail)

    assert run(False) == "done"
    with pytest.raises(Boom):
        run(True)
    completed = [e for e in events if isinstance(e, BreakerCallCompleted)]
    assert completed == [
        BreakerCallCompleted("db", CallOutcome.SUCCESS, 0.25, None),
        BreakerCallCompleted("db", CallOutcome.FAILURE, 0.25, "Boom"),
    ]


def test_record_on_and_ignore_on(fake_clock: FakeClock) -> None:
    cb = make(
        fake_clock,
        failure_threshold=1,
        record_on=(Boom, lambda exc: "retryable" in str(exc)),
        ignore_on=lambda exc: isinstance(exc, Boom) and "404" in str(exc),
    )
    events = collect(cb)

    def raise_(exc: Exception) -> None:
        raise exc

    for exc in (Boom("404 page"), KeyError("other"), ValueError("plain")):
        with pytest.raises(type(exc)):
            cb.call(raise_, exc)
    assert cb.state is BreakerState.CLOSED
    assert cb.snapshot().calls["ignored"] == 3
    outcomes = [(e.outcome, e.error_type) for e in events if isinstance(e, BreakerCallCompleted)]
    ignored = CallOutcome.IGNORED
    assert outcomes == [(ignored, "Boom"), (ignored, "KeyError"), (ignored, "ValueError")]
    with pytest.raises(ValueError, match="retryable"):
        cb.call(raise_, ValueError("retryable"))
    assert cb.state is BreakerState.OPEN


def test_ignored_probe_frees_its_slot(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1, ignore_on=NotFound)
    fail(cb)
    fake_clock.advance(10.0)
    fail(cb, 1, NotFound)
    assert cb.state is BreakerState.HALF_OPEN
    assert cb.snapshot().half_open_in_flight == 0
    cb.call(ok)
    assert cb.state is BreakerState.CLOSED


def test_base_exceptions_count_as_cancelled_and_free_probe(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)
    events = collect(cb)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cb.call(interrupted)
    assert cb.state is BreakerState.CLOSED
    fail(cb)
    fake_clock.advance(10.0)
    with pytest.raises(KeyboardInterrupt):
        cb.call(interrupted)
    assert cb.snapshot().half_open_in_flight == 0
    assert cb.call(ok) == "ok"
    assert cb.state is BreakerState.CLOSED
    # neither success nor failure for the state machine, but counted once, as cancelled
    assert cb.snapshot().calls == {"success": 1, "failure": 1, "rejected": 0, "ignored": 0, "cancelled": 2}
    assert sum(isinstance(e, BreakerCallCompleted) for e in events) == 2


def test_decorator_keeps_signature_and_counts(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=2)

    @cb
    def add(a: int, b: int = 2, *, scale: int = 1) -> int:
        """Add and scale."""
        if a < 0:
            raise Boom("negative")
        return (a + b) * scale

    assert add(1, scale=3) == 9
    assert add.__name__ == "add"
    assert add.__doc__ == "Add and scale."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 2, *, scale: 'int' = 1) -> 'int'"
    assert not inspect.iscoroutinefunction(add)
    for _ in range(2):
        with pytest.raises(Boom):
            add(-1)
    with pytest.raises(CircuitOpenError):
        add(1)


def test_context_manager_counts_block(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)
    with cb as entered:
        assert entered is cb
    with pytest.raises(NotFound), cb, cb:  # nested blocks of one breaker both count
        raise NotFound("x")
    assert cb.snapshot().calls == {"success": 1, "failure": 2, "rejected": 0, "ignored": 0, "cancelled": 0}
    with pytest.raises(CircuitOpenError), cb:
        pytest.fail("the block must not run")


def subscribe_broken_listener(cb: CircuitBreaker) -> None:
    """A listener that raises on every event but the report of its own failure."""

    def broken(event: Event) -> None:
        if not isinstance(event, InstrumentationFailed):
            raise RuntimeError("listener bug")

    broken.component = "broken_listener"  # type: ignore[attr-defined]
    cb.registry.bus.subscribe(broken)


def test_events_and_raising_listener_never_reach_caller(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)
    events = collect(cb)

    subscribe_broken_listener(cb)
    assert cb.call(ok) == "ok"
    fail(cb)
    with pytest.raises(CircuitOpenError):
        cb.call(ok)
    kinds = [type(e).__name__ for e in events if not isinstance(e, InstrumentationFailed)]
    assert kinds == [
        "BreakerCallCompleted",
        "BreakerCallCompleted",
        "BreakerStateChanged",
        "BreakerCallRejected",
    ]
    assert cb.registry.bus.instrumentation_errors() == {"broken_listener": 4}
    failed = events[1]
    assert isinstance(failed, InstrumentationFailed)
    assert failed.component == "broken_listener"


def test_failures_go_to_error_sink(fake_clock: FakeClock) -> None:
    recorded: list[tuple[str, str]] = []

    class Sink:
        def record(self, exc: BaseException, *, source: str, context: object = None) -> None:
            recorded.append((type(exc).__name__, source))

    cb = CircuitBreaker("pay", clock=fake_clock, registry=Registry(), errors=Sink(), ignore_on=NotFound)
    fail(cb)
    fail(cb, 1, NotFound)
    assert recorded == [("Boom", "pay")]

    class BrokenSink:
        def record(self, exc: BaseException, *, source: str) -> None:
            raise RuntimeError("sink down")

    cb2 = CircuitBreaker("pay2", clock=fake_clock, registry=Registry(), errors=BrokenSink())
    fail(cb2)  # the user's Boom, not the sink's error
    assert cb2.registry.bus.instrumentation_errors() == {"errors": 1}


def test_failures_go_to_the_registry_error_aggregator(fake_clock: FakeClock) -> None:
    registry = Registry()
    cb = CircuitBreaker("ledger", registry=registry, errors=registry.errors, ignore_on=NotFound)
    fail(cb, 2)
    fail(cb, 1, NotFound)
    stats = registry.errors.stats()
    assert stats["errors_by_source"] == {"ledger": 2}
    assert stats["errors_by_type"] == {"Boom": 2}


def test_decorated_methods_bind_self(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=1)

    class Client:
        def __init__(self, base: int) -> None:
            self.base = base

        @cb
        def get(self, offset: int) -> int:
            if offset < 0:
                raise Boom("negative")
            return self.base + offset

    client = Client(10)
    assert client.get(5) == 15
    with pytest.raises(Boom):
        client.get(-1)
    with pytest.raises(CircuitOpenError):
        client.get(1)


def test_registry_membership_and_get_or_create() -> None:
    registry = Registry()
    cb = CircuitBreaker("orders", registry=registry, failure_threshold=3)
    assert registry.breakers() == [cb]
    assert cb.kind == "breaker"
    assert cb.config["failure_threshold"] == 3
    assert "clock" not in cb.config
    assert "errors" not in cb.config
    with pytest.raises(ValueError, match="already exists"):
        CircuitBreaker("orders", registry=registry)
    assert breaker("orders", registry=registry, failure_threshold=3) is cb
    with pytest.raises(ValueError, match="failure_threshold=4 \\(existing: 3\\)"):
        breaker("orders", registry=registry, failure_threshold=4)
    made = breaker("test-breaker-default-registry", record_on=Boom)
    assert default_registry().get("breaker", "test-breaker-default-registry") is made
    assert breaker("test-breaker-default-registry", record_on=(Boom,)) is made
    default_registry().remove("breaker", "test-breaker-default-registry")


def test_snapshot_fields(fake_clock: FakeClock) -> None:
    cb = make(fake_clock, failure_threshold=2)
    fake_clock.advance(3.0)
    snap = cb.snapshot()
    assert snap.name == "db"
    assert snap.state is BreakerState.CLOSED
    assert (snap.failure_threshold, snap.reset_timeout, snap.seconds_in_state) == (2, 10.0, 3.0)
    assert (snap.failure_rate, snap.failure_rate_threshold, snap.window_calls, snap.retry_after) == (
        None,
        None,
        0,
        None,
    )
    fail(cb, 2)
    fake_clock.advance(4.0)
    snap = cb.snapshot()
    assert (snap.state, snap.retry_after, snap.seconds_in_state) == (BreakerState.OPEN, 6.0, 4.0)
    assert snap.to_dict()["state"] == "open"
    fake_clock.advance(6.0)
    snap = cb.snapshot()  # reading never moves the state; a probe is due
    assert (snap.state, snap.retry_after) == (BreakerState.OPEN, 0.0)
    assert snap.transitions == {(BreakerState.CLOSED, BreakerState.OPEN): 1}


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"failure_threshold": 0}, ValueError, r"failure_threshold must be in \[1, 1_000_000_000\], got 0"),
    ({"failure_threshold": 2.5}, TypeError, "failure_threshold must be an int, got 2.5"),
    ({"reset_timeout": -1}, ValueError, r"reset_timeout must be in \(0, 1_000_000\], got -1"),
    ({"reset_timeout": "5"}, TypeError, "reset_timeout must be a number, got '5'"),
    ({"half_open_max_calls": 0}, ValueError, r"half_open_max_calls must be in \[1, "),
    ({"success_threshold": -2}, ValueError, r"success_threshold must be in \[1, .*got -2"),
    ({"failure_rate_threshold": 0}, ValueError, r"failure_rate_threshold must be in \(0, 1\], got 0"),
    ({"failure_rate_threshold": 1.5}, ValueError, r"failure_rate_threshold must be in \(0, 1\], got 1.5"),
    ({"slow_call_rate_threshold": 2, "slow_call_duration": 1}, ValueError, "slow_call_rate_threshold must"),
    ({"slow_call_rate_threshold": 0.5}, ValueError, "slow_call_rate_threshold=0.5 needs slow_call_duration"),
    ({"slow_call_duration": 0}, ValueError, r"slow_call_duration must be in \(0, 1_000_000\], got 0"),
    ({"window_type": "sliding"}, ValueError, "window_type must be one of 'count', 'time', got 'sliding'"),
    ({"window_size": 0}, ValueError, r"window_size must be in \[1, 100_000\], got 0"),
    ({"minimum_calls": 0}, ValueError, r"minimum_calls must be in \[1, .*got 0"),
    ({"clock": 5}, TypeError, "clock must be callable, got 5"),
    ({"record_on": "ValueError"}, TypeError, "record_on must be an exception type, a predicate"),
    ({"ignore_on": (ValueError, int)}, TypeError, "ignore_on must be an exception type"),
    ({"errors": object()}, TypeError, "errors must have a record"),
]


@pytest.mark.parametrize(("settings", "error", "message"), BAD)
def test_bad_settings(settings: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CircuitBreaker("bad", registry=Registry(), **settings)


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_name(name: Any) -> None:
    with pytest.raises(ValueError, match="name must be a non-empty str, got"):
        CircuitBreaker(name, registry=Registry())


def test_call_passes_arguments(fake_clock: FakeClock) -> None:
    cb = make(fake_clock)
    join: Callable[..., str] = lambda *parts, sep="-": sep.join(parts)  # noqa: E731
    assert cb.call(join, "a", "b", sep="+") == "a+b"


def test_decorated_success_delivers_inline_and_isolates_a_raising_listener(fake_clock: FakeClock) -> None:
    cb = make(fake_clock)
    events = collect(cb)

    subscribe_broken_listener(cb)

    @cb
    def slow_ok() -> str:
        fake_clock.advance(0.25)
        return "ok"

    assert slow_ok() == "ok"
    completed = [e for e in events if isinstance(e, BreakerCallCompleted)]
    assert completed == [BreakerCallCompleted(cb.name, CallOutcome.SUCCESS, 0.25, None)]
    assert cb.registry.bus.instrumentation_errors() == {"broken_listener": 1}
    assert cb.snapshot().calls["success"] == 1
