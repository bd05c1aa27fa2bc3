"""A breaker's settings: validation, normalisation, and the record_on/ignore_on exception filters.

Kept apart from the state machine (`_breaker_state`) so that module holds only what runs per call.
`BreakerSettings` is also what `seawall.breaker(name, **settings)` compares against an existing
breaker's `config`, so both paths normalise the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeAlias

__all__ = ["BreakerSettings", "ExceptionFilter", "compile_filter", "normalize_filter"]

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


def _positive(parameter: str, value: Any, kind: type = float) -> Any:
    numeric = (int,) if kind is int else (int, float)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise TypeError(f"{parameter} must be {'an int' if kind is int else 'a number'}, got {value!r}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{parameter} must be > 0 and finite, got {value!r}")
    return kind(value)


def _rate(parameter: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{parameter} must be a number in (0, 1] or None, got {value!r}")
    if not 0 < value <= 1:
        raise ValueError(f"{parameter} must be in (0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BreakerSettings:
    """A breaker's settings, validated and normalised: the one place their defaults live.

    `CircuitBreaker(name, **settings)` and `seawall.breaker(name, **settings)` build one of these, so
    a bad value is refused the same way everywhere, naming the setting and the value.
    """

    failure_threshold: int = 5
    reset_timeout: float = 60.0
    half_open_max_calls: int = 1
    success_threshold: int = 1
    failure_rate_threshold: float | None = None
    window_type: str = "count"
    window_size: int = 100
    minimum_calls: int = 10
    slow_call_duration: float | None = None
    slow_call_rate_threshold: float | None = None
    record_on: ExceptionFilter = (Exception,)
    ignore_on: ExceptionFilter = ()

    def __post_init__(self) -> None:
        if self.window_type not in ("count", "time"):
            raise ValueError(f"window_type must be 'count' or 'time', got {self.window_type!r}")
        slow = self.slow_call_duration
        slow = None if slow is None else _positive("slow_call_duration", slow)
        slow_rate = _rate("slow_call_rate_threshold", self.slow_call_rate_threshold)
        if slow_rate is not None and slow is None:
            raise ValueError(f"slow_call_rate_threshold={slow_rate!r} needs slow_call_duration, got None")
        normalised = {
            "failure_threshold": _positive("failure_threshold", self.failure_threshold, int),
            "reset_timeout": _positive("reset_timeout", self.reset_timeout),
            "half_open_max_calls": _positive("half_open_max_calls", self.half_open_max_calls, int),
            "success_threshold": _positive("success_threshold", self.success_threshold, int),
            "failure_rate_threshold": _rate("failure_rate_threshold", self.failure_rate_threshold),
            "window_size": _positive("window_size", self.window_size, int),
            "minimum_calls": _positive("minimum_calls", self.minimum_calls, int),
            "slow_call_duration": slow,
            "slow_call_rate_threshold": slow_rate,
            "record_on": normalize_filter("record_on", self.record_on),
            "ignore_on": normalize_filter("ignore_on", self.ignore_on),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> BreakerSettings:
        """Settings from keyword arguments; an unknown name is a TypeError that lists the known ones."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"unknown breaker setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**settings)

    def as_config(self) -> dict[str, Any]:
        """The settings as the `config` dict a breaker reports (and `seawall.breaker` compares)."""
        return {item.name: getattr(self, item.name) for item in fields(self)}
