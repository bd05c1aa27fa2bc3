"""Retry, sync: outcomes, retry_on variants, deadline, hints, cancellation, events, bad input."""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable
from typing import Any

import pytest

import seawall
from conftest import FakeClock, run_threads
from seawall import ErrorAggregator, ErrorCategory, Registry, Retry, RetryOutcome
from seawall.events import Event, RetryAttemptFinished, RetryAttemptStarted, RetryCompleted, RetryGaveUp


def flaky(failures: list[BaseException], result: Any = "ok") -> Callable[[], Any]:
    calls = {"n": 0}

    def fn() -> Any:
        calls["n"] += 1
        if failures:
            raise failures.pop(0)
        return result

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


class HTTPError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status_code = status


def make(clock: FakeClock, **kw: Any) -> Retry:
    kw.setdefault("registry", Registry())
    kw.setdefault("rng", random.Random(1))
    return Retry("r", sleep=clock.sleep_sync, clock=clock, **kw)


def test_success_first_time() -> None:
    clock = FakeClock(100.0)
    r = make(clock)
    assert r.call(lambda: 42) == 42
    assert clock.slept == []
    assert r.snapshot().calls["success_without_retry"] == 1


def test_success_after_retries_with_backoff() -> None:
    clock = FakeClock(100.0)
    r = make(clock, attempts=4, initial=1.0, jitter=0.0)
    fn = flaky([ConnectionError(), TimeoutError()])
    assert r.call(fn) == "ok"
    assert clock.slept == [1.0, 2.0]
    snap = r.snapshot()
    assert snap.calls["success_with_retry"] == 1
    assert snap.retries == 2


def test_give_up_reraises_original_with_traceback() -> None:
    clock = FakeClock(100.0)
    r = make(clock, attempts=3)
    errors = [ConnectionError(str(i)) for i in range(3)]
    last = errors[-1]
    fn = flaky(list(errors))
    with pytest.raises(ConnectionError) as info:
        r.call(fn)
    assert info.value is last
    assert any(frame.name == "fn" for frame in traceback.extract_tb(info.value.__traceback__))
    assert len(clock.slept) == 2
    assert r.snapshot().calls["failed_with_retry"] == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_http_categories_never_retried_by_default(status: int) -> None:
    clock = FakeClock(100.0)
    r = make(clock)
    fn = flaky([HTTPError(status)])
    with pytest.raises(HTTPError):
        r.call(fn)
    assert fn.calls["n"] == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("exc", [ValueError(), PermissionError(), KeyError()])
def test_categories_never_retried_by_default(exc: Any) -> None:
    clock = FakeClock(100.0)
    r = make(clock)
    fn = flaky([exc])
    with pytest.raises(type(exc)):
        r.call(fn)
    assert fn.calls["n"] == 1  # type: ignore[attr-defined]
    assert r.snapshot().calls["failed_without_retry"] == 1


@pytest.mark.parametrize(
    ("retry_on", "exc", "retried"),
    [
        (KeyError, KeyError(), True),
        (KeyError, ConnectionError(), False),
        ((KeyError, IndexError), IndexError(), True),
        ("permanent", ValueError(), True),
        (ErrorCategory.PERMANENT, ConnectionError(), False),
        (["validation", KeyError], HTTPError(400), True),
        (["validation", KeyError], KeyError(), True),
        (lambda e: "again" in str(e), RuntimeError("again"), True),
        (lambda e: "again" in str(e), RuntimeError("stop"), False),
    ],
)
def test_retry_on_variants(retry_on: Any, exc: BaseException, retried: bool) -> None:
    clock = FakeClock(100.0)
    r = make(clock, retry_on=retry_on)
    fn = flaky([exc])
    if retried:
        assert r.call(fn) == "ok"
    else:
        with pytest.raises(type(exc)):
            r.call(fn)
    assert fn.calls["n"] == (2 if retried else 1)  # type: ignore[attr-defined]


def test_deadline_never_slept_past() -> None:
    clock = FakeClock(100.0)
    r = make(clock, attempts=100, initial=1.0, jitter=0.0, deadline=5.0)
    fn = flaky([ConnectionError() for _ in range(100)])
    with pytest.raises(ConnectionError):
        r.call(fn)
    assert clock.slept == [1.0, 2.0]  # the next 4.0 would pass the 5 s budget
    assert clock.now - 100.0 <= 5.0


def test_retry_after_hint_honoured() -> None:
    class TooMany(Exception):
        status_code = 429

        def __init__(self) -> None:
            super().__init__()
            self.headers = {"Retry-After": "3"}

    clock = FakeClock(100.0)
    r = make(clock, initial=0.01)
    assert r.call(flaky([TooMany(), seawall.CircuitOpenError("b", seawall.BreakerState.OPEN, 1.5)])) == "ok"
    assert clock.slept == [3.0, 1.5]


def test_hint_over_max_delay_gives_up() -> None:
    clock = FakeClock(100.0)
    r = make(clock, max_delay=2.0)
    with pytest.raises(seawall.CircuitOpenError):
        r.call(flaky([seawall.CircuitOpenError("b", seawall.BreakerState.OPEN, 30.0)]))
    assert clock.slept == []


def test_cancellation_not_retried() -> None:
    clock = FakeClock(100.0)
    r = make(clock)
    fn = flaky([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        r.call(fn)
    assert fn.calls["n"] == 1  # type: ignore[attr-defined]


def test_events_bracket_attempts(registry: Registry, events: list[Any]) -> None:
    clock = FakeClock(100.0)
    r = make(clock, registry=registry, initial=1.0, jitter=0.0)
    events.clear()  # from the first call on (not the retry joining the registry)
    log = events  # the events, with the calls written in between

    def fn() -> str:
        log.append("call")
        if sum(1 for x in log if x == "call") < 2:
            raise ConnectionError()
        return "ok"

    assert r.call(fn) == "ok"
    kinds = [type(x).__name__ if not isinstance(x, str) else x for x in log]
    assert kinds == [
        "RetryAttemptStarted",
        "call",
        "RetryAttemptFinished",
        "RetryAttemptStarted",
        "call",
        "RetryAttemptFinished",
        "RetryCompleted",
    ]
    first = log[2]
    assert isinstance(first, RetryAttemptFinished)
    assert (first.attempt, first.error_type, first.category, first.will_retry, first.delay) == (
        1,
        "ConnectionError",
        ErrorCategory.TRANSIENT,
        True,
        1.0,
    )
    assert isinstance(log[3], RetryAttemptStarted)
    assert log[3].attempt == 2
    done = log[-1]
    assert isinstance(done, RetryCompleted)
    assert (done.outcome, done.attempts, done.error_type) == (RetryOutcome.SUCCESS_WITH_RETRY, 2, None)
    assert done.duration == pytest.approx(1.0)


def test_events_on_cancellation_close_attempt(registry: Registry, events: list[Event]) -> None:
    r = make(FakeClock(100.0), registry=registry)
    with pytest.raises(KeyboardInterrupt):
        r.call(flaky([KeyboardInterrupt()]))
    assert list(map(type, events[1:])) == [
        RetryAttemptStarted,
        RetryAttemptFinished,
        RetryCompleted,
        RetryGaveUp,
    ]


def test_failed_attempts_recorded_in_aggregator() -> None:
    clock = FakeClock(100.0)
    agg = ErrorAggregator()
    r = make(clock, errors=agg)
    with pytest.raises(ConnectionError):
        r.call(flaky([ConnectionError() for _ in range(5)]))
    assert agg.stats()["errors_by_source"] == {"r": 3}


def test_decorator_keeps_metadata() -> None:
    clock = FakeClock(100.0)
    r = make(clock)

    @r
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    assert add(2, b=3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Adds."


def test_module_retry_get_or_create() -> None:
    reg = Registry()
    a = seawall.retry("svc", registry=reg, attempts=5)
    assert seawall.retry("svc", registry=reg, attempts=5) is a
    assert seawall.retry("svc", registry=reg) is a
    with pytest.raises(ValueError, match="attempts"):
        seawall.retry("svc", registry=reg, attempts=2)
    assert reg.retries() == [a]
    assert a.kind == "retry"
    assert a.config["attempts"] == 5
    with pytest.raises(ValueError, match="already exists"):
        Retry("svc", registry=reg)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attempts": 0}, ValueError, "attempts"),
        ({"initial": -1.0}, ValueError, "initial"),
        ({"max_delay": -1.0}, ValueError, "max_delay"),
        ({"multiplier": 0.5}, ValueError, "multiplier"),
        ({"jitter": 2.0}, ValueError, "jitter"),
        ({"deadline": 0}, ValueError, "deadline"),
        ({"retry_on": "flaky"}, ValueError, "'flaky'"),
        ({"retry_on": [3]}, TypeError, "retry_on"),
        ({"sleep": 1}, TypeError, "sleep"),
        ({"errors": object()}, TypeError, "errors"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Retry("bad", registry=Registry(), **kwargs)


def test_attempt_start_events_past_the_prebuilt_ones() -> None:
    registry = Registry()
    seen: list[Event] = []
    registry.bus.subscribe(seen.append)
    failures = iter(range(11))

    def flaky() -> str:
        if next(failures, None) is not None:
            raise ConnectionError("down")
        return "ok"

    policy = Retry("many", attempts=12, initial=0.001, sleep=lambda _: None, registry=registry)
    assert policy(flaky)() == "ok"
    started = [event.attempt for event in seen if isinstance(event, RetryAttemptStarted)]
    assert started == list(range(1, 13))
    assert all(event.retry == "many" for event in seen if isinstance(event, RetryAttemptStarted))
    assert policy.snapshot().calls["success_with_retry"] == 1


def test_first_attempt_successes_counted_exactly_across_threads() -> None:

    policy = Retry("threads", registry=Registry())
    call = policy(lambda: None)
    reads: list[int] = []

    def worker() -> None:
        for _ in range(2_000):
            call()
        reads.append(policy.snapshot().calls["success_without_retry"])

    run_threads(4, worker)
    assert policy.snapshot().calls["success_without_retry"] == 8_000
    assert policy.snapshot().calls["success_without_retry"] == 8_000  # reading does not count
    assert max(reads) <= 8_000


def test_a_failing_listener_never_reaches_the_caller_and_is_counted() -> None:
    registry = Registry()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    registry.bus.subscribe(broken)
    registry.bus.subscribe(seen.append)
    failures = iter([ConnectionError("down")])

    def flaky() -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return "ok"

    policy = Retry("isolated", attempts=3, initial=0.001, sleep=lambda _: None, registry=registry)
    assert policy(flaky)() == "ok"  # retried once: every delivery site raised in `broken`
    assert policy(lambda: "ok")() == "ok"  # first-attempt success
    kinds = [type(event).__name__ for event in seen if type(event).__name__.startswith("Retry")]
    assert kinds == [
        "RetryAttemptStarted",
        "RetryAttemptFinished",
        "RetryAttemptStarted",
        "RetryAttemptFinished",
        "RetryCompleted",
        "RetryAttemptStarted",
        "RetryAttemptFinished",
        "RetryCompleted",
    ]
    # 8 retry events and PrimitiveRegistered, each counted once (a listener is not sent its own failure)
    assert registry.bus.instrumentation_errors() == {"function": 9}
