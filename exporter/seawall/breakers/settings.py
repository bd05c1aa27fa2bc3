"""A breaker's settings: validation, normalisation, and the record_on/ignore_on exception filters.

Kept apart from the state machine (`_breaker_state`) so that module holds only what runs per call.
`BreakerSettings` is also what `seawall.breaker(name, **settings)` compares against an existing
breaker's `config`, so both paths normalise the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from seawall.core.settings import Settings, choice, number, seconds

__all__ = ["BreakerSettings", "ExceptionFilter", "compile_filter", "normalize_filter"]

MAX_WINDOW = 100_000  # a count window keeps one slot per call, a time window one bucket per second

# An exception type, a predicate `(exc) -> bool`, or a tuple of those.
ExceptionFilter: TypeAlias = "type[BaseException] | Callable[[BaseException], bool] | tuple[Any, ...]"


def normalize_filter(parameter: str, value: Any) -> tuple[Any, ...]:
    """Check a record_on/ignore_on setting and return it as a tuple of types and predicates."""
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if isinstance(item, type) and issubclass(item, BaseException):
            continue
        if callable(item) and not isinstance(item, type):
            continue
        raise TypeError(
            f"{parameter} must be an exception type, a predicate (exc) -> bool, or a tuple of those, "
            f"got {value!r}"
        )
    return items


def compile_filter(record_on: tuple[Any, ...], ignore_on: tuple[Any, ...]) -> Callable[[Exception], bool]:
    """Build `counted(exc)`: True for a failure, False for an ignored exception."""
    record_types = tuple(item for item in record_on if isinstance(item, type))
    record_preds = tuple(item for item in record_on if not isinstance(item, type))
    ignore_types = tuple(item for item in ignore_on if isinstance(item, type))
    ignore_preds = tuple(item for item in ignore_on if not isinstance(item, type))
    if record_types == (Exception,) and not record_preds and not ignore_on:
        return _always

    def counted(exc: Exception) -> bool:
        if isinstance(exc, ignore_types) or any(pred(exc) for pred in ignore_preds):
            return False
        return isinstance(exc, record_types) or any(pred(exc) for pred in record_preds)

    return counted


def _always(exc: Exception) -> bool:
    return True


@dataclass(frozen=True)
class BreakerSettings(Settings):
    """A breaker's settings, validated and normalised: the one place their defaults live.

    `CircuitBreaker(name, **settings)` and `seawall.breaker(name, **settings)` build one of these, so
    a bad value is refused the same way everywhere, naming the setting and the value.
    """

    kind_name: ClassVar[str] = "breaker"

    failure_threshold: int = number(5, 1, integer=True)
    reset_timeout: float = seconds(60.0)
    half_open_max_calls: int = number(1, 1, integer=True)
    success_threshold: int = number(1, 1, integer=True)
    failure_rate_threshold: float | None = number(None, 0.0, 1.0, low_open=True, optional=True)
    window_type: str = choice("count", ("count", "time"))
    window_size: int = number(100, 1, MAX_WINDOW, integer=True)  # buckets (count) or seconds (time)
    minimum_calls: int = number(10, 1, integer=True)
    slow_call_duration: float | None = seconds(None, optional=True)
    slow_call_rate_threshold: float | None = number(None, 0.0, 1.0, low_open=True, optional=True)
    record_on: ExceptionFilter = (Exception,)
    ignore_on: ExceptionFilter = ()

    def check(self) -> None:
        if self.slow_call_rate_threshold is not None and self.slow_call_duration is None:
            rate = self.slow_call_rate_threshold
            raise ValueError(f"slow_call_rate_threshold={rate!r} needs slow_call_duration, got None")
        object.__setattr__(self, "record_on", normalize_filter("record_on", self.record_on))
        object.__setattr__(self, "ignore_on", normalize_filter("ignore_on", self.ignore_on))
