"""A breaker's settings: validation, normalisation, and the record_on/ignore_on exception filters.

Kept apart from the state machine (`_breaker_state`) so that module holds only what runs per call.
`breaker_config` is also what `seawall.breaker(name, **settings)` compares against an existing
breaker's `config`, so both paths normalise the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

__all__ = ["ExceptionFilter", "breaker_config", "compile_filter", "normalize_filter"]

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


def breaker_config(
    *,
    failure_threshold: int = 5,
    reset_timeout: float = 60.0,
    half_open_max_calls: int = 1,
    success_threshold: int = 1,
    failure_rate_threshold: float | None = None,
    window_type: str = "count",
    window_size: int = 100,
    minimum_calls: int = 10,
    slow_call_duration: float | None = None,
    slow_call_rate_threshold: float | None = None,
    record_on: ExceptionFilter = (Exception,),
    ignore_on: ExceptionFilter = (),
) -> dict[str, Any]:
    """Validate breaker settings and return them normalized (the `config` a breaker reports)."""
    if window_type not in ("count", "time"):
        raise ValueError(f"window_type must be 'count' or 'time', got {window_type!r}")
    slow = None if slow_call_duration is None else _positive("slow_call_duration", slow_call_duration)
    slow_rate = _rate("slow_call_rate_threshold", slow_call_rate_threshold)
    if slow_rate is not None and slow is None:
        raise ValueError(f"slow_call_rate_threshold={slow_rate!r} needs slow_call_duration, got None")
    return {
        "failure_threshold": _positive("failure_threshold", failure_threshold, int),
        "reset_timeout": _positive("reset_timeout", reset_timeout),
        "half_open_max_calls": _positive("half_open_max_calls", half_open_max_calls, int),
        "success_threshold": _positive("success_threshold", success_threshold, int),
        "failure_rate_threshold": _rate("failure_rate_threshold", failure_rate_threshold),
        "window_type": window_type,
        "window_size": _positive("window_size", window_size, int),
        "minimum_calls": _positive("minimum_calls", minimum_calls, int),
        "slow_call_duration": slow,
        "slow_call_rate_threshold": slow_rate,
        "record_on": normalize_filter("record_on", record_on),
        "ignore_on": normalize_filter("ignore_on", ignore_on),
    }
