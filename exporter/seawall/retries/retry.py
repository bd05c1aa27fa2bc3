"""`Retry`: re-run a failing call with capped, jittered exponential backoff.

Which failures to retry is decided by error category (never permanent, auth or validation by
default), exception types or a predicate. Server hints (HTTP 429 Retry-After,
`CircuitOpenError.retry_after`) replace the computed delay; an overall `deadline` is never slept
past. The first-attempt success path is a plain try/except that allocates nothing when nobody
listens, so wrapping a healthy call costs next to nothing.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar, cast

from seawall.core.counter import Counter
from seawall.core.enums import ErrorCategory, RetryOutcome
from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.labels import count_error_type
from seawall.core.primitive import Primitive
from seawall.core.registry import Registry
from seawall.core.settings import check_callables, check_errors
from seawall.core.snapshots import RetrySnapshot
from seawall.errors.classify import classify, retry_after_hint, to_category
from seawall.events import RetryAttemptFinished, RetryAttemptStarted, RetryCompleted, RetryGaveUp
from seawall.retries.backoff import Backoff
from seawall.retries.settings import RetrySettings

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_RETRY_ON = frozenset({ErrorCategory.TRANSIENT, ErrorCategory.RATE_LIMIT, ErrorCategory.UNKNOWN})
_OUTCOMES = tuple(RetryOutcome)
_FIRST_OK = RetryOutcome.SUCCESS_WITHOUT_RETRY


def _retry_predicate(
    retry_on: object, classifier: Callable[[BaseException], ErrorCategory]
) -> Callable[[BaseException, ErrorCategory], bool]:
    """Normalize `retry_on` into `(exc, category) -> bool`."""
    if retry_on is None:
        return lambda exc, category: category in DEFAULT_RETRY_ON
    if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
        only = retry_on
        return lambda exc, category: isinstance(exc, only)
    if isinstance(retry_on, (str, ErrorCategory)):
        one = to_category(retry_on, "retry_on")
        return lambda exc, category: category is one
    if callable(retry_on):
        fn = cast(Callable[[BaseException], object], retry_on)
        return lambda exc, category: bool(fn(exc))
    if isinstance(retry_on, Iterable):
        types: list[type[BaseException]] = []
        cats: set[ErrorCategory] = set()
        for item in retry_on:
            if isinstance(item, type) and issubclass(item, BaseException):
                types.append(item)
            elif isinstance(item, (str, ErrorCategory)):
                cats.add(to_category(item, "retry_on"))
            else:
                raise TypeError(f"retry_on items must be exception types or categories, got {item!r}")
        type_tuple = tuple(types)
        return lambda exc, category: isinstance(exc, type_tuple) or category in cats
    raise TypeError(f"retry_on must be None, exception type(s), categories or a predicate, got {retry_on!r}")


class Retry(Primitive[RetrySettings]):
    """A named retry policy; use it as a decorator, or through `call` / `call_async`."""

    kind = Kind.RETRY

    def __init__(
        self,
        name: str,
        *,
        settings: RetrySettings | None = None,
        classifier: Callable[[BaseException], ErrorCategory] = classify,
        errors: Any = None,
        sleep: Callable[[float], object] = time.sleep,
        async_sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(name, settings=settings, clock=clock, registry=registry, **overrides)
        settings = self.settings
        check_callables({"sleep": sleep, "async_sleep": async_sleep, "classifier": classifier})
        check_errors(errors)
        self.backoff = Backoff.of(settings, rng)
        self._should = _retry_predicate(settings.retry_on, classifier)
        self._attempts = attempts = settings.attempts
        self._deadline = settings.deadline
        self._classifier = classifier
        self._errors = errors
        self._sleep = sleep
        self._async_sleep = async_sleep
        self.injected.update(classifier=classifier, errors=errors, rng=rng)
        self.injected.update(sleep=sleep, async_sleep=async_sleep)
        self._lock = threading.Lock()
        # Outcomes and re-attempts are counted without the lock (`core/counter.py`).
        self._calls = {outcome: Counter() for outcome in _OUTCOMES}
        self._first_ok = self._calls[_FIRST_OK].ticks  # the hot path's increment, one lookup less
        self._retried = Counter()
        self._retried_by_error: dict[str, int] = {}  # under the lock (failure path only)
        bus = self.registry.bus
        self._report = bus.report_error
        # Events are built only for channels with listeners (OpenTelemetry's spans, say); counts
        # are kept here and read by exporters from `snapshot()`.
        self._on_started = bus.channel(RetryAttemptStarted)
        self._on_finished = bus.channel(RetryAttemptFinished)
        self._on_completed = bus.channel(RetryCompleted)
        self._on_gave_up = bus.channel(RetryGaveUp)
        # Frozen events can be shared: the first attempts' announcements are built once.
        self._started = tuple(RetryAttemptStarted(name, n) for n in range(1, min(attempts, 10) + 1))
        self.registry.add(self)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock that measures attempts and the deadline (a policy measures its deadline with it)."""
        return self._clock

    def snapshot(self) -> RetrySnapshot:
        with self._lock:
            calls = {o.value: counter.value() for o, counter in self._calls.items()}
            retries = self._retried.value()
            by_error = dict(self._retried_by_error)
        return RetrySnapshot(
            name=self.name, attempts=self._attempts, calls=calls, retries=retries, retries_by_error=by_error
        )

    # -- shared bookkeeping (failure paths only) ---------------------------------------------

    def _failed(self, exc: BaseException, attempt: int, attempt_start: float, start: float) -> float | None:
        """An attempt raised `exc`: the delay before the next attempt, or None when `exc` goes to the
        caller (given up; cancellation and other BaseExceptions are never retried)."""
        if isinstance(exc, Exception):
            delay = self._on_failure(exc, attempt, attempt_start, start)
            if delay is not None:
                return delay
            self._gave_up(attempt, start, exc)
        else:
            self._abort(exc, attempt, attempt_start, start)
        return None

    def _on_failure(self, exc: Exception, attempt: int, attempt_start: float, start: float) -> float | None:
        """Classify, record, decide; publish AttemptFinished. Returns the delay, or None to give up."""
        now = self._clock()
        try:
            category = self._classifier(exc)
        except Exception:
            category = ErrorCategory.UNKNOWN
        delay: float | None = None
        if attempt < self._attempts:
            try:
                wanted = self._should(exc, category)
            except Exception as broken:
                self._report("retry_on", broken)
                wanted = False
            if wanted:
                remaining = None if self._deadline is None else self._deadline - (now - start)
                delay = self.backoff.next_delay(attempt, retry_after_hint(exc), remaining)
        if self._errors is not None:
            try:
                self._errors.record(exc, source=self.name)
            except Exception as broken:
                self._report("errors", broken)
        if delay is not None:
            self._count_retry(type(exc).__name__)
        if self._on_finished.listeners:
            self._on_finished.publish(
                RetryAttemptFinished(
                    self.name,
                    attempt,
                    now - attempt_start,
                    type(exc).__name__,
                    category,
                    delay is not None,
                    delay or 0.0,
                )
            )
        return delay

    def _count_retry(self, error_type: str) -> None:
        self._retried.add()
        with self._lock:
            count_error_type(self._retried_by_error, error_type)

    def _succeeded(self, result: R, attempt: int, attempt_start: float, start: float) -> R:
        """Count a success; publish the attempt's end and the completion to whoever listens; returns
        `result`, the call's."""
        outcome = RetryOutcome.SUCCESS_WITHOUT_RETRY if attempt == 1 else RetryOutcome.SUCCESS_WITH_RETRY
        self._calls[outcome].add()
        finished, completed = self._on_finished, self._on_completed
        if finished.listeners or completed.listeners:
            name, now = self.name, self._clock()
            if finished.listeners:
                finished.publish(
                    RetryAttemptFinished(name, attempt, now - attempt_start, None, None, False, 0.0)
                )
            if completed.listeners:
                completed.publish(RetryCompleted(name, outcome, attempt, now - start, None))
        return result

    def _gave_up(self, attempt: int, start: float, exc: BaseException) -> None:
        outcome = RetryOutcome.FAILED_WITHOUT_RETRY if attempt == 1 else RetryOutcome.FAILED_WITH_RETRY
        self._calls[outcome].add()
        if self._on_completed.listeners:
            self._on_completed.publish(
                RetryCompleted(self.name, outcome, attempt, self._clock() - start, type(exc).__name__)
            )
        if self._on_gave_up.listeners:
            self._on_gave_up.publish(RetryGaveUp(self.name, outcome, attempt, type(exc).__name__))

    def _abort(self, exc: BaseException, attempt: int, attempt_start: float, start: float) -> None:
        """Cancellation or another BaseException: never retried, but the attempt span is closed."""
        if self._on_finished.listeners:
            name = type(exc).__name__
            now = self._clock()
            self._on_finished.publish(
                RetryAttemptFinished(self.name, attempt, now - attempt_start, name, None, False, 0.0)
            )
        self._gave_up(attempt, start, exc)

    def _pause(self, delay: float, attempt: int, start: float) -> None:
        """Sleep before the next attempt; interrupted, the call ends as given up after `attempt`."""
        try:
            self._sleep(delay)
        except BaseException as exc:
            self._gave_up(attempt, start, exc)
            raise

    async def _pause_async(self, delay: float, attempt: int, start: float) -> None:
        try:
            await self._async_sleep(delay)
        except BaseException as exc:  # cancelled while waiting: counted once, as given up
            self._gave_up(attempt, start, exc)
            raise

    def _announce(self, attempt: int) -> None:
        if self._on_started.listeners:
            started = self._started
            event = (
                started[attempt - 1] if attempt <= len(started) else RetryAttemptStarted(self.name, attempt)
            )
            self._on_started.publish(event)

    # -- sync ---------------------------------------------------------------------------------

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call `fn(*args, **kwargs)`, retrying as configured; re-raises the last error on give-up."""
        return self._first(fn, args, kwargs)

    def _first(self, fn: Callable[..., R], args: Any, kwargs: Any) -> R:
        """The first attempt, and the whole call when it succeeds (the hot path: one count when
        nobody listens); later attempts run in `_run`."""
        start = self._clock()
        if self._on_started.listeners:
            self._announce(1)
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if (delay := self._failed(exc, 1, start, start)) is None:
                raise
        else:
            if self._on_finished.listeners or self._on_completed.listeners:
                return self._succeeded(result, 1, start, start)
            next(self._first_ok)
            return result
        self._pause(delay, 1, start)
        return self._run(fn, args, kwargs, 2, start)

    def _run(self, fn: Callable[..., R], args: Any, kwargs: Any, first: int, start: float) -> R:
        attempt = first
        while True:
            self._announce(attempt)
            attempt_start = self._clock()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                if (delay := self._failed(exc, attempt, attempt_start, start)) is None:
                    raise
            else:
                return self._succeeded(result, attempt, attempt_start, start)
            self._pause(delay, attempt, start)
            attempt += 1

    # -- async --------------------------------------------------------------------------------

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn(*args, **kwargs)`, retrying as configured; cancellation is never retried."""
        if self._on_started.listeners or self._on_finished.listeners or self._on_completed.listeners:
            return await self._run_async(fn, args, kwargs, 1, self._clock())
        start = self._clock()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            if (delay := self._failed(exc, 1, start, start)) is None:
                raise
        else:
            next(self._first_ok)
            return result
        await self._pause_async(delay, 1, start)
        return await self._run_async(fn, args, kwargs, 2, start)

    async def _run_async(
        self,
        fn: Callable[..., Awaitable[R]],
        args: Any,
        kwargs: Any,
        first: int,
        start: float,
    ) -> R:
        attempt = first
        while True:
            self._announce(attempt)
            attempt_start = self._clock()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                if (delay := self._failed(exc, attempt, attempt_start, start)) is None:
                    raise
            else:
                return self._succeeded(result, attempt, attempt_start, start)
            await self._pause_async(delay, attempt, start)
            attempt += 1

    # -- decorator ----------------------------------------------------------------------------

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or coroutine function so every call goes through this retry."""
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call_async(afn, *args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        first = self._first

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return first(fn, args, kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"Retry({self.name!r}, attempts={self._attempts})"


def retry(name: str, *, registry: Registry | None = None, **options: Any) -> Retry:
    """The retry named `name` in the default registry (or `registry`), created on first use;
    asking again with different settings is a ValueError naming them (see `obtain`)."""
    found: Retry = obtain(Kind.RETRY, name, registry, options)
    return found


register_kind(KindSpec.of(Retry, RetrySnapshot, retry))
