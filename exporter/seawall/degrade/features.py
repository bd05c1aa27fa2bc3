"""Graceful degradation: features that answer from a fallback when their primary path fails.

A feature wraps the calls of one optional capability (recommendations, a cache, a model). It keeps a
circuit breaker of its own, so after `failure_threshold` straight failures it switches itself off and
answers from the fallback without calling the primary at all; after `reset_timeout` the breaker lets
probes through and a successful one switches the feature back on. It can also be switched by hand.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar, cast

from seawall.breakers.breaker import CircuitBreaker, CircuitOpenError
from seawall.core.enums import BreakerState, FallbackReason
from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.logsafe import log_value
from seawall.core.primitive import Primitive
from seawall.core.registry import Registry, default_registry
from seawall.core.settings import check_errors
from seawall.core.snapshots import FeatureSnapshot
from seawall.degrade.settings import NO_FALLBACK, FeatureSettings
from seawall.events import BreakerStateChanged, Event, FallbackUsed, FeatureToggled

P = ParamSpec("P")
T = TypeVar("T")

_MISSING: Any = object()  # no good value remembered yet
_DEFAULT_ERRORS: Any = object()

log = logging.getLogger("seawall")


class FeatureUnavailableError(Exception):
    """Raised when a feature cannot answer and has no fallback to answer with."""

    def __init__(self, name: str, reason: FallbackReason) -> None:
        super().__init__(f"feature {name!r} is unavailable ({reason.value}) and has no fallback")
        self.name = name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FeatureResult(Generic[T]):
    """A feature's answer and where it came from, for callers that must tell a fallback apart."""

    value: T
    source: str  # "primary", "fallback" or "stale"
    reason: FallbackReason | None  # why the primary was not used; None when it was
    age: float | None  # seconds since a stale value was produced; None otherwise


class Feature(Primitive[FeatureSettings]):
    """One degradable capability; see the module docstring."""

    kind = Kind.FEATURE

    def __init__(
        self,
        name: str,
        *,
        settings: FeatureSettings | None = None,
        errors: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(name, settings=settings, clock=clock, registry=registry, **overrides)
        settings = self.settings
        check_errors(errors)
        self._fallback = settings.fallback
        self._fallback_fn = settings.fallback_fn
        self._stale = settings.stale
        self._stale_ttl = settings.stale_ttl
        self._errors = errors
        self.injected["errors"] = errors
        self._lock = threading.Lock()
        self._manually_disabled = False
        self._last_good: Any = _MISSING
        self._last_good_at = 0.0
        self._fallbacks: dict[str, int] = {reason.value: 0 for reason in FallbackReason}
        # A private registry keeps the feature's breaker out of the breaker metrics and admin
        # routes (it is the feature's machinery, shown as the feature), and lets the feature
        # translate the breaker's state changes into FeatureToggled events.
        self._breaker_registry = Registry()
        self._breaker = CircuitBreaker(
            name,
            failure_threshold=settings.failure_threshold,
            reset_timeout=settings.reset_timeout,
            clock=clock,
            registry=self._breaker_registry,
        )
        self._breaker_registry.bus.subscribe(self._on_breaker_event, events=(BreakerStateChanged,))
        self.registry.add(self)

    @property
    def enabled(self) -> bool:
        """True when the feature answers from its primary path: not switched off by hand or by failures."""
        return not self._manually_disabled and self._breaker.state is BreakerState.CLOSED

    @property
    def manually_disabled(self) -> bool:
        """True while switched off by hand (`disable()`), whatever its breaker says."""
        return self._manually_disabled

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    # -- manual control -----------------------------------------------------------------------

    def enable(self) -> None:
        """Switch on by hand; also closes the breaker, so the next call goes to the primary."""
        was_enabled = self.enabled
        with self._lock:
            self._manually_disabled = False
        self._breaker.reset()
        if not was_enabled:
            self._publish(FeatureToggled(name=self.name, enabled=True, reason="manual"))

    def disable(self) -> None:
        """Switch off by hand: every call answers from the fallback until `enable()`."""
        was_enabled = self.enabled
        with self._lock:
            self._manually_disabled = True
        if was_enabled:
            self._publish(FeatureToggled(name=self.name, enabled=False, reason="manual"))

    # -- calls ----------------------------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` as the primary path, or answer from the fallback."""
        return self.call_result(fn, *args, **kwargs).value

    async def call_async(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return (await self.call_result_async(fn, *args, **kwargs)).value

    def call_result(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> FeatureResult[T]:
        """Like `call`, but says whether the value came from the primary, the fallback or a stale copy."""
        if self._manually_disabled:
            return self._degraded(FallbackReason.DISABLED, None, args, kwargs)
        try:
            value = self._breaker.call(fn, *args, **kwargs)
        except CircuitOpenError as exc:
            return self._degraded(FallbackReason.CIRCUIT_OPEN, exc, args, kwargs)
        except Exception as exc:
            self._record_error(exc)
            return self._degraded(FallbackReason.ERROR, exc, args, kwargs)
        self._remember(value)
        return FeatureResult(value=value, source="primary", reason=None, age=None)

    async def call_result_async(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> FeatureResult[T]:
        if self._manually_disabled:
            return await self._degraded_async(FallbackReason.DISABLED, None, args, kwargs)
        try:
            value = await self._breaker.call_async(fn, *args, **kwargs)
        except CircuitOpenError as exc:
            return await self._degraded_async(FallbackReason.CIRCUIT_OPEN, exc, args, kwargs)
        except Exception as exc:
            self._record_error(exc)
            return await self._degraded_async(FallbackReason.ERROR, exc, args, kwargs)
        self._remember(value)
        return FeatureResult(value=value, source="primary", reason=None, age=None)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Decorate a sync or async function so every call goes through this feature."""
        if inspect.iscoroutinefunction(fn):
            async_fn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.call_async(async_fn, *args, **kwargs)

            return cast(Callable[P, T], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return wrapper

    def snapshot(self) -> FeatureSnapshot:
        with self._lock:
            fallbacks = dict(self._fallbacks)
            has_stale = self._last_good is not _MISSING
        return FeatureSnapshot(
            name=self.name,
            enabled=self.enabled,
            manually_disabled=self.manually_disabled,
            breaker_state=self._breaker.state,
            has_stale_value=has_stale,
            fallbacks=fallbacks,
        )

    # -- internals --------------------------------------------------------------------------------

    def _remember(self, value: Any) -> None:
        if self._stale:
            with self._lock:
                self._last_good = value
                self._last_good_at = self._clock()

    def _stale_value(self) -> tuple[Any, float] | None:
        if not self._stale:
            return None
        with self._lock:
            if self._last_good is _MISSING:
                return None
            age = self._clock() - self._last_good_at
            if self._stale_ttl is not None and age > self._stale_ttl:
                return None
            return self._last_good, age

    def _degraded(
        self, reason: FallbackReason, exc: BaseException | None, args: Any, kwargs: Any
    ) -> FeatureResult[Any]:
        stale = self._stale_value()
        if stale is not None:
            self._count_fallback(FallbackReason.STALE, exc)
            return FeatureResult(value=stale[0], source="stale", reason=reason, age=stale[1])
        if self._fallback_fn is not None:
            value = self._fallback_fn(*args, **kwargs)
        elif self._fallback is not NO_FALLBACK:
            value = self._fallback
        else:
            self._raise_unavailable(reason, exc)
        self._count_fallback(reason, exc)
        return FeatureResult(value=value, source="fallback", reason=reason, age=None)

    async def _degraded_async(
        self, reason: FallbackReason, exc: BaseException | None, args: Any, kwargs: Any
    ) -> FeatureResult[Any]:
        fallback_fn = self._fallback_fn
        if (
            fallback_fn is not None
            and inspect.iscoroutinefunction(fallback_fn)
            and self._stale_value() is None
        ):
            value = await fallback_fn(*args, **kwargs)
            self._count_fallback(reason, exc)
            return FeatureResult(value=value, source="fallback", reason=reason, age=None)
        return self._degraded(reason, exc, args, kwargs)

    def _raise_unavailable(self, reason: FallbackReason, exc: BaseException | None) -> NoReturn:
        if exc is not None and reason is FallbackReason.ERROR:
            raise exc
        raise FeatureUnavailableError(self.name, reason) from exc

    def _count_fallback(self, reason: FallbackReason, exc: BaseException | None) -> None:
        with self._lock:
            self._fallbacks[reason.value] += 1
        error_type = None if exc is None else type(exc).__name__
        self._publish(FallbackUsed(name=self.name, reason=reason, error_type=error_type))

    def _record_error(self, exc: Exception) -> None:
        if self._errors is not None:
            self._errors.record(exc, source=self.name)

    def _on_breaker_event(self, event: Event) -> None:
        if not isinstance(event, BreakerStateChanged) or self._manually_disabled:
            return
        if event.to_state is BreakerState.OPEN and event.from_state is BreakerState.CLOSED:
            self._publish(FeatureToggled(name=self.name, enabled=False, reason="failures"))
        elif event.to_state is BreakerState.CLOSED and event.from_state is BreakerState.HALF_OPEN:
            self._publish(FeatureToggled(name=self.name, enabled=True, reason="recovered"))

    def _publish(self, event: Event) -> None:
        channel = self.registry.bus.channel(type(event))
        if channel.listeners:
            channel.publish(event)


class Features:
    """A service's features by name: a view of its registry's features (the registry keeps them)."""

    def __init__(self, *, registry: Registry | None = None) -> None:
        self._registry = registry if registry is not None else default_registry()

    def register(self, name: str, **settings: Any) -> Feature:
        """Create a feature (see `Feature` for the settings); a name already taken is a ValueError."""
        return Feature(name, registry=self._registry, **settings)

    def __getitem__(self, name: str) -> Feature:
        found: Feature | None = self._registry.get(Kind.FEATURE, name)
        if found is None:
            known = ", ".join(sorted(feature.name for feature in self)) or "none"
            raise KeyError(f"no feature named {name!r} (registered: {known})")
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._registry.get(Kind.FEATURE, name) is not None

    def __iter__(self) -> Iterator[Feature]:
        return iter(self._registry.features())

    def __len__(self) -> int:
        return len(self._registry.features())

    def call(self, name: str, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self[name].call(fn, *args, **kwargs)

    async def call_async(
        self, name: str, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self[name].call_async(fn, *args, **kwargs)

    def enable(self, name: str) -> None:
        self[name].enable()

    def disable(self, name: str) -> None:
        self[name].disable()

    def is_enabled(self, name: str) -> bool:
        return self[name].enabled


def feature(name: str, *, registry: Registry | None = None, **options: Any) -> Feature:
    """The feature named `name` in the default registry (or `registry`), created on first use;
    asking again with other settings is a ValueError naming them (see `obtain`)."""
    found: Feature = obtain(Kind.FEATURE, name, registry, options)
    return found


def safe_call(
    fn: Callable[..., T],
    /,
    *args: Any,
    fallback: T | None = None,
    fallback_fn: Callable[..., T] | None = None,
    retry: Any | None = None,
    errors: Any | None = _DEFAULT_ERRORS,
    source: str | None = None,
    **kwargs: Any,
) -> T | None:
    """Call `fn` (through `retry` when given); on any Exception answer the fallback instead of raising.

    The one-line case of degradation. The failure is not hidden: it is logged at WARNING and
    recorded in `errors` (the default registry's aggregator unless `errors=None`) under `source`
    (default: the function's qualified name). Arguments named like the keywords above cannot be
    passed through to `fn`; wrap it in a lambda then.
    """
    try:
        if retry is not None:
            return cast(T, retry.call(fn, *args, **kwargs))
        return fn(*args, **kwargs)
    except Exception as exc:
        _note_swallowed(fn, exc, errors, source)
        return fallback_fn(*args, **kwargs) if fallback_fn is not None else fallback


async def safe_call_async(
    fn: Callable[..., Awaitable[T]],
    /,
    *args: Any,
    fallback: T | None = None,
    fallback_fn: Callable[..., Any] | None = None,
    retry: Any | None = None,
    errors: Any | None = _DEFAULT_ERRORS,
    source: str | None = None,
    **kwargs: Any,
) -> T | None:
    """The async twin of `safe_call`; an async `fallback_fn` is awaited."""
    try:
        if retry is not None:
            return cast(T, await retry.call_async(fn, *args, **kwargs))
        return await fn(*args, **kwargs)
    except Exception as exc:
        _note_swallowed(fn, exc, errors, source)
        if fallback_fn is None:
            return fallback
        value = fallback_fn(*args, **kwargs)
        return cast(T, await value) if inspect.isawaitable(value) else cast(T, value)


def _note_swallowed(fn: Callable[..., Any], exc: Exception, errors: Any | None, source: str | None) -> None:
    name = source or getattr(fn, "__qualname__", None) or type(fn).__name__
    # `source` is the caller's text (maybe from a request): escaped and redacted like every logged value.
    log.warning(
        "seawall.safe_call: %s failed with %s; answering the fallback", log_value(name), type(exc).__name__
    )
    aggregator = default_registry().errors if errors is _DEFAULT_ERRORS else errors
    if aggregator is not None:
        aggregator.record(exc, source=name)


register_kind(KindSpec.of(Feature, FeatureSnapshot, feature))
