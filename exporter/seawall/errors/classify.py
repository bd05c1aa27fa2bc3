"""Error classification: what kind of failure an exception is, and how long it asked us to wait.

`classify` decides what kind of failure an exception is (transient, rate_limit, auth, validation,
permanent, unknown); retries use it to decide whether another attempt can help, and the aggregator
(`_aggregator.py`) counts by it. Decisions on the built-in rules:

* `ValueError`, `TypeError`, `KeyError`, `LookupError`, `AttributeError`, `NotImplementedError` are
  **permanent**: they are bugs or bad data, and the same call will fail the same way again.
* HTTP 400/422 are validation, 404/405/409/410 permanent, other 4xx permanent, 5xx/408 transient.
* Everything else is **unknown** (retried by default: a failure we cannot explain may be transient).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import threading
import time
from collections.abc import Callable

from seawall.core.enums import ErrorCategory
from seawall.core.throttle import FailureLog

log = logging.getLogger("seawall")
# A classifier or hint reader that fails, fails for every error: the first three failures of each
# are logged in full, then one line a minute (it used to be nine lines per error).
failures = FailureLog(log, first=3)

Classifier = Callable[[BaseException], "ErrorCategory | str | None"]

_type_rules: list[tuple[type[BaseException], ErrorCategory]] = []
_classifiers: list[Classifier] = []
_reg_lock = threading.Lock()

_TIMEOUTS: tuple[type[BaseException], ...] = (TimeoutError, asyncio.TimeoutError, socket.timeout)
_PERMANENT: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    NotImplementedError,
)


def to_category(value: object, parameter: str = "category") -> ErrorCategory:
    """Accept an ErrorCategory or its string value; anything else is an error naming the value."""
    if isinstance(value, ErrorCategory):
        return value
    if isinstance(value, str):
        try:
            return ErrorCategory(value)
        except ValueError:
            pass
        allowed = ", ".join(c.value for c in ErrorCategory)
        raise ValueError(f"{parameter} must be one of {allowed}, got {value!r}")
    raise TypeError(f"{parameter} must be an ErrorCategory or str, got {value!r}")


def register_error_type(exc_type: type[BaseException], category: ErrorCategory | str) -> None:
    """Classify `exc_type` (and subclasses) as `category`; later registrations win."""
    if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
        raise TypeError(f"exc_type must be an exception class, got {exc_type!r}")
    cat = to_category(category)
    with _reg_lock:
        _type_rules.insert(0, (exc_type, cat))
        _forget_settled()


def register_classifier(fn: Classifier) -> None:
    """Add `fn(exc) -> category | None`; consulted before built-in rules, most recent first."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    with _reg_lock:
        _classifiers.insert(0, fn)
        _forget_settled()


def clear_registrations() -> None:
    """Forget every user registration (for tests)."""
    with _reg_lock:
        _type_rules.clear()
        _classifiers.clear()
        _forget_settled()


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (`status_code`, `response.status_code`, `status`, `code`)."""
    response = getattr(exc, "response", None)
    candidates = (
        getattr(exc, "status_code", None),
        None if response is None else getattr(response, "status_code", None),
        getattr(exc, "status", None),
        None if response is None else getattr(response, "status", None),
        getattr(exc, "code", None),
    )
    for value in candidates:
        if isinstance(value, bool) or value is None:
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            continue
        if 100 <= number <= 599:
            return number
    return None


def _by_status(status: int) -> ErrorCategory | None:
    if status == 429:
        return ErrorCategory.RATE_LIMIT
    if status in (401, 403, 407):
        return ErrorCategory.AUTH
    if status in (400, 422):
        return ErrorCategory.VALIDATION
    if status in (408, 425) or status >= 500:
        return ErrorCategory.TRANSIENT
    if 400 <= status < 500:
        return ErrorCategory.PERMANENT
    return None


def _by_type(kind: type[BaseException]) -> ErrorCategory:
    """The built-in category of an exception class (cached: the answer depends only on the class)."""
    if kind.__name__ == "CircuitOpenError":
        return ErrorCategory.TRANSIENT
    if issubclass(kind, PermissionError):
        return ErrorCategory.AUTH
    names = [k.__name__ for k in kind.__mro__]
    if issubclass(kind, _TIMEOUTS) or any("Timeout" in n for n in names):
        return ErrorCategory.TRANSIENT
    if issubclass(kind, ConnectionError) or any("ConnectionError" in n for n in names):
        return ErrorCategory.TRANSIENT
    if issubclass(kind, _PERMANENT):
        return ErrorCategory.PERMANENT
    return ErrorCategory.UNKNOWN


_type_cache: dict[type[BaseException], ErrorCategory] = {}
_TYPE_CACHE_MAX = 1024


def _builtin(exc: BaseException) -> ErrorCategory:
    status = status_of(exc)
    if status is not None:
        by_status = _by_status(status)
        if by_status is not None:
            return by_status
    kind = type(exc)
    category = _type_cache.get(kind)
    if category is None:
        category = _by_type(kind)
        if len(_type_cache) < _TYPE_CACHE_MAX:
            _type_cache[kind] = category
    return category


# Per exception class, the category that classify() settles on after the user classifiers, when
# it does not depend on the instance: (category, only_without_instance_attributes). A user type
# rule decides by class alone (False). Otherwise the built-in rules look for an HTTP status on the
# instance, so the cached answer holds only for a class that defines none of the status attributes
# (nor __getattr__) and an instance with an empty __dict__ (True). Cleared on every register_*.
_settled: dict[type[BaseException], tuple[ErrorCategory, bool]] = {}
_settled_generation = 0
_STATUS_ATTRIBUTES = ("status_code", "status", "code", "response")


def _forget_settled() -> None:
    """Drop the per-class answers (with `_reg_lock` held): the rules changed."""
    global _settled_generation
    _settled.clear()
    _settled_generation += 1


def _status_free(kind: type[BaseException]) -> bool:
    """True when instances of `kind` can carry a status only in their own __dict__."""
    if any(hasattr(kind, name) for name in _STATUS_ATTRIBUTES) or hasattr(kind, "__getattr__"):
        return False
    return kind.__getattribute__ is BaseException.__getattribute__


def classify(exc: BaseException) -> ErrorCategory:
    """What kind of failure `exc` is. User classifiers, then user types, then built-ins; never raises."""
    if _classifiers:
        for fn in tuple(_classifiers):
            try:
                result = fn(exc)
                if result is not None:
                    return to_category(result, "classifier result")
            except Exception as failure:
                failures.failed(f"seawall error classifier {fn!r} (ignored)", f"classifier {id(fn)}", failure)
    settled = _settled.get(type(exc))
    if settled is not None and (not settled[1] or not exc.__dict__):
        return settled[0]
    return _classify_by_rules(exc)


def _classify_by_rules(exc: BaseException) -> ErrorCategory:
    """User type rules, then the built-in rules; remembers the answer when the class decides it."""
    generation = _settled_generation
    kind = type(exc)
    for exc_type, category in tuple(_type_rules):
        if isinstance(exc, exc_type):
            _settle(kind, category, False, generation)
            return category
    try:
        category = _builtin(exc)
    except Exception as failure:
        failures.failed(f"seawall built-in classification of {kind.__name__}", "builtin", failure)
        return ErrorCategory.UNKNOWN
    if _status_free(kind) and not exc.__dict__:
        _settle(kind, category, True, generation)
    return category


def _settle(kind: type[BaseException], category: ErrorCategory, per_instance: bool, generation: int) -> None:
    with _reg_lock:  # once per class: a registration in between must not be undone by a stale answer
        if generation == _settled_generation and len(_settled) < _TYPE_CACHE_MAX:
            _settled[kind] = (category, per_instance)


def retry_after_hint(exc: BaseException, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds the failing side asked us to wait: `exc.retry_after` or a `Retry-After` header."""
    try:
        value = getattr(exc, "retry_after", None)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return max(0.0, float(value))
        for headers in (
            getattr(getattr(exc, "response", None), "headers", None),
            getattr(exc, "headers", None),
        ):
            if headers is None or not hasattr(headers, "get"):
                continue
            raw = headers.get("Retry-After") or headers.get("retry-after")
            if raw is None:
                continue
            text = str(raw).strip()
            try:
                return max(0.0, float(text))
            except ValueError:
                pass
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                continue
            if when is None:
                continue
            return max(0.0, when.timestamp() - now())
    except Exception as failure:
        failures.failed(f"seawall retry-after hint of {type(exc).__name__}", "retry_after", failure)
    return None
