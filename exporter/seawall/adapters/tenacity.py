"""tenacity -> seawall: count-keeping retry shadows and attempt events for Retrying objects.

`instrument_retrying(retrying, name)` registers a `TenacityRetry` (kind "retry") in the seawall
registry that keeps the counts exporters read at scrape time, and makes the object publish the
attempt events OpenTelemetry turns into spans.

Why the class is swapped instead of the strategies wrapped: tenacity decides every attempt inside
`iter()`, and every way of running a retry (`__call__` sync/async/tornado, `for attempt in ...`,
`async for`, the copies `wraps()`/`retry_with()` make) goes through `iter()` and through a
type-level entry point that can hold a `finally`. So the object gets a subclass of its own class
(same name, same behaviour) that watches `iter()`'s verdicts and closes the call and its attempt
span in a `finally` on every path; strategies stay the user's own objects (patchable, picklable,
callable directly without counting anything). In the iterator forms an attempt ends when its
`with attempt:` block exits, so its span can never stay current past the block.
"""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Generator
from types import TracebackType
from typing import Any

import tenacity

from seawall.core.enums import ErrorCategory, RetryOutcome
from seawall.core.kinds import Kind
from seawall.core.labels import count_error_type
from seawall.core.registry import Registry, default_registry
from seawall.core.snapshots import RetrySnapshot
from seawall.errors.classify import classify

from ..events import RetryAttemptFinished, RetryAttemptStarted, RetryCompleted, RetryGaveUp

__all__ = ["RETRYABLE_RESULT", "TenacityRetry", "instrument_retrying", "is_instrumented"]

# error_type of an attempt that returned a value the `retry` predicate rejected (retry_if_result).
RETRYABLE_RESULT = "RetryableResult"
COMPONENT = "tenacity-adapter"
_HOOK = "_seawall_hook"  # the instance attribute holding the _Hook
_STATE_CALL = "_seawall_call"  # a RetryCallState driven outside the wrapped entry points


def _category(exc: BaseException | None) -> ErrorCategory | None:
    if exc is None:
        return None
    try:
        return classify(exc)
    except Exception:
        return ErrorCategory.UNKNOWN


class TenacityRetry:
    """The registry's view of tenacity retries under one name: counts kept here, read by snapshot().

    Every Retrying instrumented under the same name (and every copy tenacity makes of one) counts
    into the same object, as the series are per name.
    """

    kind = Kind.RETRY

    def __init__(self, name: str, registry: Registry, attempts: int = 0) -> None:
        self.name = name
        self.registry = registry
        self.attempts = attempts
        self._lock = threading.Lock()
        self._calls = dict.fromkeys((outcome.value for outcome in RetryOutcome), 0)
        self._retries = 0
        self._by_error: dict[str, int] = {}
        bus = registry.bus
        self.started = bus.channel(RetryAttemptStarted)
        self.finished = bus.channel(RetryAttemptFinished)
        self.completed = bus.channel(RetryCompleted)
        self.gave_up = bus.channel(RetryGaveUp)

    @property
    def config(self) -> dict[str, Any]:
        return {"adapter": "tenacity", "attempts": self.attempts}

    def count_call(self, outcome: RetryOutcome) -> None:
        with self._lock:
            self._calls[outcome.value] += 1

    def count_retry(self, error_type: str) -> None:
        with self._lock:
            self._retries += 1
            count_error_type(self._by_error, error_type)

    def snapshot(self) -> RetrySnapshot:
        with self._lock:
            return RetrySnapshot(
                name=self.name,
                attempts=self.attempts,
                calls=dict(self._calls),
                retries=self._retries,
                retries_by_error=dict(self._by_error),
            )

    def report(self, exc: BaseException) -> None:
        self.registry.bus.report_error(COMPONENT, exc)

    def __repr__(self) -> str:
        return f"TenacityRetry({self.name!r})"


# -- finding the shadow again after pickling ----------------------------------------------------

_tokens: weakref.WeakKeyDictionary[Registry, str] = weakref.WeakKeyDictionary()
_registries: weakref.WeakValueDictionary[str, Registry] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def _token_of(registry: Registry) -> str:
    with _lock:
        token = _tokens.get(registry)
        if token is None:
            token = _tokens[registry] = uuid.uuid4().hex
            _registries[token] = registry
        return token


def _stats_for(name: str, registry: Registry, attempts: int) -> TenacityRetry:
    """The shadow named `name` in `registry`, created on first use."""
    with _lock:
        existing = registry.get(Kind.RETRY, name)
        if isinstance(existing, TenacityRetry):
            return existing
        if existing is not None:
            raise ValueError(
                f"a retry named {name!r} already exists in this registry and is not a tenacity one"
            )
        stats = TenacityRetry(name, registry, attempts)
        registry.add(stats)
        return stats


def _rejoin(name: str, token: str, attempts: int) -> _Hook:
    """Unpickling: the same registry when it lives in this process, else the default one."""
    registry = _registries.get(token) or default_registry()
    return _Hook(_stats_for(name, registry, attempts))


class _Hook:
    """What an instrumented Retrying carries: its shadow. Pickles as (name, registry token)."""

    __slots__ = ("stats",)

    def __init__(self, stats: TenacityRetry) -> None:
        self.stats = stats

    def __reduce__(self) -> tuple[Any, ...]:
        stats = self.stats
        return (_rejoin, (stats.name, _token_of(stats.registry), stats.attempts))


# -- one call ----------------------------------------------------------------------------------


class _Call:
    """The bookkeeping of one retried call: which attempt is open, whether the call was counted.

    Used from the one thread or task that runs the call, so it needs no lock.
    """

    __slots__ = ("attempt", "attempt_start", "done", "open", "owner", "start", "state", "stats")

    def __init__(self, owner: object, stats: TenacityRetry) -> None:
        self.owner = owner
        self.stats = stats
        self.state: tenacity.RetryCallState | None = None
        self.start = time.monotonic()
        self.attempt = 0
        self.attempt_start = self.start
        self.open = False
        self.done = False

    # -- what iter() decided -----------------------------------------------------------------

    def returned(self, state: tenacity.RetryCallState, do: object, decided: bool, owner: Any) -> None:
        if not decided:  # no outcome yet: a new attempt begins
            if isinstance(do, tenacity.DoAttempt):
                self._begin(state)
            return
        error_type = _error_type(state, owner)
        if isinstance(do, tenacity.DoSleep):
            self.stats.count_retry(error_type or RETRYABLE_RESULT)
            self.end_attempt(will_retry=True, delay=float(do), rejected=True)
            return
        self.end_attempt(rejected=error_type == RETRYABLE_RESULT)
        self._complete(error_type)  # None: success (a value or retry_error_callback after a result)

    def raised(self, state: tenacity.RetryCallState, exc: BaseException, owner: Any) -> None:
        """iter() raised: giving up (RetryError, reraise, a non-retried error) or a hook failed."""
        self.end_attempt()
        error_type = _error_type(state, owner) if state.outcome is not None else None
        self._complete(error_type or type(exc).__name__)

    def close(self, exc: BaseException | None) -> None:
        """The entry point is left: count the call unless iter() already did (early return from
        the iterator forms, a sleep that was cancelled, the generator closed, a raising body)."""
        if self.done:
            return
        self.end_attempt()
        if self.attempt == 0:  # no attempt ran (disabled, or left before the first one)
            self.done = True
            return
        if exc is not None and not isinstance(exc, GeneratorExit):
            self._complete(type(exc).__name__)  # e.g. cancelled while sleeping before a retry
            return
        state = self.state  # the caller stopped iterating: the last outcome is the call's
        if state is None or state.outcome is None:
            self._complete("GeneratorExit")  # left in the middle of an attempt, without an outcome
            return
        self._complete(_error_type(state, None))

    # -- attempts and the end of the call ----------------------------------------------------

    def _begin(self, state: tenacity.RetryCallState) -> None:
        self.end_attempt()  # an attempt left without an outcome (iterated without `with attempt:`)
        self.state = state
        self.attempt = state.attempt_number
        self.attempt_start = time.monotonic()
        self.open = True
        channel = self.stats.started
        if channel.listeners:
            channel.publish(RetryAttemptStarted(self.stats.name, self.attempt))

    def end_attempt(self, will_retry: bool = False, delay: float = 0.0, rejected: bool = False) -> None:
        """Publish the open attempt's end; `rejected`: its value was refused by `retry`."""
        if not self.open:
            return
        self.open = False
        channel = self.stats.finished
        if not channel.listeners:
            return
        state = self.state
        outcome = None if state is None else state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        error_type = type(exc).__name__ if exc is not None else RETRYABLE_RESULT if rejected else None
        ended = time.monotonic()
        if state is not None and state.outcome_timestamp is not None:
            ended = state.outcome_timestamp
        channel.publish(
            RetryAttemptFinished(
                self.stats.name,
                self.attempt,
                max(0.0, ended - self.attempt_start),
                error_type,
                _category(exc),
                will_retry,
                delay if will_retry else 0.0,
            )
        )

    def _complete(self, error_type: str | None) -> None:
        if self.done:
            return
        self.done = True
        retried = self.attempt > 1
        if error_type is None:
            outcome = RetryOutcome.SUCCESS_WITH_RETRY if retried else RetryOutcome.SUCCESS_WITHOUT_RETRY
        else:
            outcome = RetryOutcome.FAILED_WITH_RETRY if retried else RetryOutcome.FAILED_WITHOUT_RETRY
        stats = self.stats
        stats.count_call(outcome)
        if stats.completed.listeners:
            duration = max(0.0, time.monotonic() - self.start)
            stats.completed.publish(
                RetryCompleted(stats.name, outcome, max(1, self.attempt), duration, error_type)
            )
        if error_type is not None and stats.gave_up.listeners:
            stats.gave_up.publish(RetryGaveUp(stats.name, outcome, max(1, self.attempt), error_type))


def _error_type(state: tenacity.RetryCallState, owner: Any) -> str | None:
    """The class name of the attempt's error; RETRYABLE_RESULT when its value was rejected."""
    outcome = state.outcome
    if outcome is None:
        return None
    if outcome.failed:
        return type(outcome.exception()).__name__
    if owner is not None:
        iter_state = owner.iter_state
        if iter_state.retry_run_result or iter_state.is_explicit_retry:
            return RETRYABLE_RESULT
    return None


# The call being run by the entry point that is on the stack of this thread or task.
_pending: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("seawall_tenacity_call", default=None)


def _call_of(retrying: Any, state: tenacity.RetryCallState) -> _Call | None:
    """The _Call that iter() reports to: the pending one of this entry point, else one kept on
    the state (iter() driven by code of the user's own)."""
    hook = retrying.__dict__.get(_HOOK)
    if not isinstance(hook, _Hook):
        return None
    call = _pending.get()
    if call is not None and call.owner is retrying and (call.state is None or call.state is state):
        call.state = state
        return call
    call = state.__dict__.get(_STATE_CALL)
    if call is None or call.done:
        call = _Call(retrying, hook.stats)
        call.state = state
        state.__dict__[_STATE_CALL] = call
    return call


def _new_call(retrying: Any) -> _Call | None:
    hook = retrying.__dict__.get(_HOOK)
    return _Call(retrying, hook.stats) if isinstance(hook, _Hook) else None


def _guarded(call: _Call | None, action: Callable[..., None], *args: Any) -> None:
    """Run `action(call, *args)`: bookkeeping, whose failure is counted and logged, never raised
    into the call it observes."""
    if call is None:
        return
    try:
        action(call, *args)
    except Exception as exc:
        call.stats.report(exc)


class _Attempt(tenacity.AttemptManager):
    """The iterator forms' attempt: ends the attempt (and its span) when the block exits."""

    def __init__(self, retry_state: tenacity.RetryCallState, call: _Call | None) -> None:
        super().__init__(retry_state)
        self._seawall_call = call

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        try:
            return super().__exit__(exc_type, exc_value, traceback)
        finally:
            _guarded(self._seawall_call, _Call.end_attempt)


# -- the subclasses ----------------------------------------------------------------------------


def _base(obj: object) -> Any:
    """The class that was instrumented (the methods below call its own, not super(): they are
    copied into a subclass made per class, as a mixin base would change the object layout)."""
    return type(obj)._seawall_base  # type: ignore[attr-defined]


class _Instrumented:
    """What every instrumented class adds: copies keep the hook; pickles as the original class.

    This and the classes below are templates: their methods are copied into the subclass."""

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        new = _base(self).copy(self, *args, **kwargs)
        hook = self.__dict__.get(_HOOK)
        if hook is not None:
            new.__dict__[_HOOK] = hook
        return new

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_restore, (_base(self), self.__getstate__()))  # type: ignore[attr-defined]


def _restore(cls: type, state: dict[str, Any]) -> Any:
    obj: Any = object.__new__(cls)  # as pickle does for a class without __new__ of its own
    obj.__setstate__(state)
    if isinstance(state.get(_HOOK), _Hook):
        obj.__class__ = _instrumented_class(cls)
    return obj


def _call_base(retrying: Any, fn: Callable[..., Any], args: Any, kwargs: Any) -> tuple[_Call | None, Any]:
    """The instrumented class's own (sync) __call__, run with a new call pending so its iter()
    finds it; a call that raises out of it is closed here, one that returns is the caller's."""
    call = _new_call(retrying)
    token = _pending.set(call)
    try:
        return call, _base(retrying).__call__(retrying, fn, *args, **kwargs)
    except BaseException as exc:
        _guarded(call, _Call.close, exc)
        raise
    finally:
        _pending.reset(token)


class _SyncHooks(_Instrumented):
    """For Retrying (and TornadoRetrying's iter): watch iter(); close calls in a finally."""

    def iter(self, retry_state: tenacity.RetryCallState) -> Any:
        call = _call_of(self, retry_state)
        decided = retry_state.outcome is not None
        try:
            do = _base(self).iter(self, retry_state)
        except BaseException as exc:
            _guarded(call, _Call.raised, retry_state, exc, self)
            raise
        _guarded(call, _Call.returned, retry_state, do, decided, self)
        return do

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call, result = _call_base(self, fn, args, kwargs)
        _guarded(call, _Call.close, None)
        return result

    def __iter__(self) -> Generator[tenacity.AttemptManager, None, None]:
        call = _new_call(self)
        attempts = _base(self).__iter__(self)
        error: BaseException | None = None
        try:
            while True:
                token = _pending.set(call)
                try:
                    manager = next(attempts)
                except StopIteration:
                    return
                finally:
                    _pending.reset(token)
                yield _Attempt(manager.retry_state, call)
        except BaseException as exc:
            error = exc
            raise
        finally:
            attempts.close()
            _guarded(call, _Call.close, error)


class _TornadoHooks(_SyncHooks):
    """TornadoRetrying.__call__ returns a future: the call is closed when it resolves."""

    def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call, future = _call_base(self, fn, args, kwargs)  # tornado's runner copies the context

        def resolved(done: Any) -> None:
            exc = None if not done.done() or done.cancelled() else done.exception()
            _guarded(call, _Call.close, exc)

        future.add_done_callback(resolved)
        return future


class _AsyncHooks(_Instrumented):
    """For AsyncRetrying: the same, awaited; `async for` gets an iterator that closes the call."""

    async def iter(self, retry_state: tenacity.RetryCallState) -> Any:
        call = _call_of(self, retry_state)
        decided = retry_state.outcome is not None
        try:
            do = await _base(self).iter(self, retry_state)
        except BaseException as exc:
            _guarded(call, _Call.raised, retry_state, exc, self)
            raise
        _guarded(call, _Call.returned, retry_state, do, decided, self)
        return do

    async def __call__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call = _new_call(self)
        token = _pending.set(call)
        try:
            result = await _base(self).__call__(self, fn, *args, **kwargs)
        except BaseException as exc:
            _guarded(call, _Call.close, exc)
            raise
        finally:
            _pending.reset(token)
        _guarded(call, _Call.close, None)
        return result

    def __aiter__(self) -> AsyncIterator[tenacity.AttemptManager]:
        _base(self).__aiter__(self)
        return _AsyncAttempts(self, _new_call(self))


class _AsyncAttempts:
    """The iterator `async for` drives. Leaving the loop early drops it, and dropping it closes the
    call (its attempt already ended with its `async with attempt:` block)."""

    def __init__(self, retrying: Any, call: _Call | None) -> None:
        self._retrying = retrying
        self._call = call
        if call is not None:
            weakref.finalize(self, _guarded, call, _Call.close, None)

    def __aiter__(self) -> _AsyncAttempts:
        return self

    async def __anext__(self) -> tenacity.AttemptManager:
        call = self._call
        token = _pending.set(call)
        try:
            manager = await _base(self._retrying).__anext__(self._retrying)
        except BaseException as exc:
            _guarded(call, _Call.close, None if isinstance(exc, StopAsyncIteration) else exc)
            raise
        finally:
            _pending.reset(token)
        return _Attempt(manager.retry_state, call)


_classes: dict[type, type] = {}
_NOT_COPIED = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__"})


def _instrumented_class(cls: type) -> type:
    """The instrumented subclass of `cls` (made once per class), named as `cls` so reprs match."""
    if "_seawall_base" in cls.__dict__:
        return cls
    with _lock:
        made = _classes.get(cls)
        if made is None:
            mixin: type = _SyncHooks
            if issubclass(cls, tenacity.AsyncRetrying):
                mixin = _AsyncHooks
            elif _is_tornado(cls):
                mixin = _TornadoHooks
            members: dict[str, Any] = {}
            for template in reversed(mixin.__mro__[:-1]):
                members.update((k, v) for k, v in vars(template).items() if k not in _NOT_COPIED)
            members.update(__module__=cls.__module__, __qualname__=cls.__qualname__, _seawall_base=cls)
            made = _classes[cls] = type(cls.__name__, (cls,), members)
        return made


def _is_tornado(cls: type) -> bool:
    tornado_cls = getattr(tenacity, "TornadoRetrying", None)
    return tornado_cls is not None and issubclass(cls, tornado_cls)


def is_instrumented(retrying: Any) -> bool:
    """True when `retrying` (or a @tenacity.retry function's `.retry`) reports to seawall."""
    target = retrying if isinstance(retrying, tenacity.BaseRetrying) else getattr(retrying, "retry", None)
    return isinstance(target, tenacity.BaseRetrying) and isinstance(target.__dict__.get(_HOOK), _Hook)


def instrument_retrying(retrying: Any, name: str, *, registry: Registry | None = None) -> Any:
    """Make `retrying` count into the seawall retry `name` and publish attempt events; returns it.

    Accepts a `tenacity.Retrying`/`AsyncRetrying`/`TornadoRetrying` (or a subclass) or a function
    decorated with `@tenacity.retry` (its `.retry` is instrumented, and so are the copies made
    for each call and by `retry_with`). Objects instrumented under one name share one
    `TenacityRetry` in the registry. A second instrumentation of the same object is a ValueError.
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
    hook = target.__dict__.get(_HOOK)
    if isinstance(hook, _Hook):
        raise ValueError(f"this retrying object is already instrumented as {hook.stats.name!r}")
    attempts = getattr(target.stop, "max_attempt_number", 0)
    stats = _stats_for(name, default_registry() if registry is None else registry, int(attempts or 0))
    target.__dict__[_HOOK] = _Hook(stats)
    target.__class__ = _instrumented_class(type(target))
    return retrying
