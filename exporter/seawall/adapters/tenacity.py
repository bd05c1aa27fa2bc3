"""tenacity -> seawall events: hooks on a Retrying (or AsyncRetrying) that publish the Retry* events.

tenacity has no hook that runs after a *successful* attempt or when it gives up, so besides `before`
this wraps the two decisions every attempt passes through: the `retry` predicate (False means the
outcome is final: success, or an error it does not retry) and the `stop` predicate (consulted only
when the attempt will be retried unless stopped; by then tenacity has computed the upcoming sleep).
`retry_error_callback` is left to the user. The wrapped strategies carry over to the copies tenacity
makes per call, so `@tenacity.retry` functions work too.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import tenacity

from .._enums import ErrorCategory, RetryOutcome
from .._registry import Registry, default_registry
from ..events import PrimitiveRegistered, RetryAttemptFinished, RetryAttemptStarted, RetryCompleted

__all__ = ["RETRYABLE_RESULT", "instrument_retrying"]

# error_type of an attempt that returned a value the `retry` predicate rejected (retry_if_result).
RETRYABLE_RESULT = "RetryableResult"
_STARTED = "_seawall_attempt_started"


def _category(exc: BaseException | None) -> ErrorCategory | None:
    if exc is None:
        return None
    try:
        from .._classify import classify
    except ImportError:  # pragma: no cover - _classify is part of the core
        return ErrorCategory.UNKNOWN
    try:
        category = classify(exc)
    except Exception:
        return ErrorCategory.UNKNOWN
    return category if isinstance(category, ErrorCategory) else ErrorCategory.UNKNOWN


def _is_async(strategy: object) -> bool:
    return inspect.iscoroutinefunction(strategy) or inspect.iscoroutinefunction(
        getattr(strategy, "__call__", None)  # noqa: B004 - strategies are objects with async __call__
    )


class _Publisher:
    """Turns tenacity's decisions about one attempt into seawall events."""

    def __init__(self, name: str, registry: Registry) -> None:
        self.name = name
        self.registry = registry

    def started(self, state: tenacity.RetryCallState) -> None:
        setattr(state, _STARTED, time.monotonic())
        bus = self.registry.bus
        if bus.listeners:
            bus.publish(RetryAttemptStarted(self.name, state.attempt_number))

    def finished(self, state: tenacity.RetryCallState, *, retrying: bool, stopped: bool) -> None:
        """`retrying`: the retry predicate wanted another attempt; `stopped`: the stop strategy said no."""
        bus = self.registry.bus
        if not bus.listeners:
            return
        outcome = state.outcome
        ended = state.outcome_timestamp if state.outcome_timestamp is not None else time.monotonic()
        started = getattr(state, _STARTED, state.start_time)
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        error_type: str | None = None
        if exc is not None:
            error_type = type(exc).__name__
        elif retrying:
            error_type = RETRYABLE_RESULT
        will_retry = retrying and not stopped
        attempt = state.attempt_number
        bus.publish(
            RetryAttemptFinished(
                self.name,
                attempt,
                max(0.0, ended - started),
                error_type,
                None if exc is None else _category(exc),
                will_retry,
                state.upcoming_sleep if will_retry else 0.0,
            )
        )
        if not will_retry:
            if error_type is not None:
                result = RetryOutcome.FAILED_WITH_RETRY if attempt > 1 else RetryOutcome.FAILED_WITHOUT_RETRY
            else:
                result = (
                    RetryOutcome.SUCCESS_WITH_RETRY if attempt > 1 else RetryOutcome.SUCCESS_WITHOUT_RETRY
                )
            total = max(0.0, ended - state.start_time)
            bus.publish(RetryCompleted(self.name, result, attempt, total, error_type))

    def decided_retry(self, state: tenacity.RetryCallState, retry: bool) -> None:
        if not retry:  # final: tenacity returns the result or raises the error as is
            self.finished(state, retrying=False, stopped=False)

    def decided_stop(self, state: tenacity.RetryCallState, stop: bool) -> None:
        self.finished(state, retrying=True, stopped=stop)


def _wrap_retry(strategy: Any, publisher: _Publisher) -> Callable[..., Any]:
    if _is_async(strategy):

        async def retry_async(state: tenacity.RetryCallState) -> bool:
            verdict = bool(await strategy(state))
            publisher.decided_retry(state, verdict)
            return verdict

        return retry_async

    def retry(state: tenacity.RetryCallState) -> bool:
        verdict = bool(strategy(state))
        publisher.decided_retry(state, verdict)
        return verdict

    return retry


def _wrap_stop(strategy: Any, publisher: _Publisher) -> Callable[..., Any]:
    if _is_async(strategy):

        async def stop_async(state: tenacity.RetryCallState) -> bool:
            verdict = bool(await strategy(state))
            publisher.decided_stop(state, verdict)
            return verdict

        return stop_async

    def stop(state: tenacity.RetryCallState) -> bool:
        verdict = bool(strategy(state))
        publisher.decided_stop(state, verdict)
        return verdict

    return stop


def _wrap_before(hook: Any, publisher: _Publisher) -> Callable[..., Any]:
    if hook is not None and _is_async(hook):

        async def before_async(state: tenacity.RetryCallState) -> None:
            publisher.started(state)
            await hook(state)

        return before_async

    def before(state: tenacity.RetryCallState) -> None:
        publisher.started(state)
        if hook is not None:
            hook(state)

    return before


def instrument_retrying(retrying: Any, name: str, *, registry: Registry | None = None) -> Any:
    """Make `retrying` publish seawall retry events under `name`; returns it (changed in place).

    Accepts a `tenacity.Retrying`/`AsyncRetrying` or a function decorated with `@tenacity.retry`
    (its `.retry` is instrumented). A second call on the same object is refused with ValueError.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if registry is not None and not isinstance(registry, Registry):
        raise TypeError(f"registry must be a seawall.Registry, got {registry!r}")
    target = retrying
    if not isinstance(target, tenacity.BaseRetrying):
        target = getattr(retrying, "retry", None)
        if not isinstance(target, tenacity.BaseRetrying):
            raise TypeError(
                f"retrying must be a tenacity Retrying or a @tenacity.retry function, got {retrying!r}"
            )
    if getattr(target, "_seawall_name", None) is not None:
        raise ValueError(f"this retrying object is already instrumented as {target._seawall_name!r}")  # type: ignore[attr-defined]
    seawall_registry = default_registry() if registry is None else registry
    publisher = _Publisher(name, seawall_registry)
    target.before = _wrap_before(target.before, publisher)
    target.retry = _wrap_retry(target.retry, publisher)
    target.stop = _wrap_stop(target.stop, publisher)
    target._seawall_name = name  # type: ignore[attr-defined]
    if seawall_registry.bus.listeners:
        seawall_registry.bus.publish(PrimitiveRegistered(kind="retry", name=name))
    return retrying
