"""Error classification and the windowed error aggregator.

`classify` decides what kind of failure an exception is (transient, rate_limit, auth, validation,
permanent, unknown); retries use it to decide whether another attempt can help, and the aggregator
counts by it. Decisions on the built-in rules:

* `ValueError`, `TypeError`, `KeyError`, `LookupError`, `AttributeError`, `NotImplementedError` are
  **permanent**: they are bugs or bad data, and the same call will fail the same way again.
* HTTP 400/422 are validation, 404/405/409/410 permanent, other 4xx permanent, 5xx/408 transient.
* Everything else is **unknown** (retried by default: a failure we cannot explain may be transient).
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from math import floor
from typing import TYPE_CHECKING, Any

from ._enums import ErrorCategory
from ._events import ErrorRecorded
from ._redact import redact

if TYPE_CHECKING:
    from ._registry import Registry

log = logging.getLogger("seawall")

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
            except Exception:
                log.exception("seawall error classifier %r failed; ignoring it", fn)
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
    except Exception:
        log.exception("seawall built-in classification failed for %s", kind.__name__)
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
    except Exception:
        log.exception("seawall could not read a retry-after hint from %s", type(exc).__name__)
    return None


_OTHER = "_other"
_CATEGORIES = tuple(ErrorCategory)


class _Bucket:
    """One slice of the window. Plain dicts, not Counters: a dict subclass's item access is slower."""

    __slots__ = ("category", "source", "start", "total", "type")

    def __init__(self) -> None:
        self.start = -1
        self.total = 0
        self.type: dict[str, int] = {}
        self.source: dict[str, int] = {}
        self.category: dict[ErrorCategory, int] = {}

    def reset(self, index: int) -> None:
        self.start = index
        self.total = 0
        self.type = {}
        self.source = {}
        self.category = {}


class ErrorAggregator:
    """Counts errors over a sliding window (a ring of buckets) and keeps the most recent ones.

    Memory is bounded: `buckets` buckets, each with at most `max_keys` distinct types and sources
    (the rest count as "_other"), and `max_recent` recent entries.
    """

    def __init__(
        self,
        window: float = 3600.0,
        *,
        buckets: int = 60,
        max_recent: int = 100,
        message_limit: int = 500,
        clock: Callable[[], float] = time.time,
        classifier: Callable[[BaseException], ErrorCategory] = classify,
        registry: Registry | None = None,
        max_keys: int = 200,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not window > 0:
            raise ValueError(f"window must be a number > 0, got {window!r}")
        for pname, pvalue, low in (
            ("buckets", buckets, 1),
            ("max_recent", max_recent, 0),
            ("message_limit", message_limit, 0),
            ("max_keys", max_keys, 1),
        ):
            if isinstance(pvalue, bool) or not isinstance(pvalue, int) or pvalue < low:
                raise ValueError(f"{pname} must be an int >= {low}, got {pvalue!r}")
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {clock!r}")
        if not callable(classifier):
            raise TypeError(f"classifier must be callable, got {classifier!r}")
        self.window = float(window)
        self._width = self.window / buckets
        self._ring = [_Bucket() for _ in range(buckets)]
        self._size = buckets
        # deque.append is atomic, so recording a recent entry needs no lock; maxlen bounds memory.
        self._recent: deque[tuple[Any, ...]] = deque(maxlen=max_recent)
        self._max_recent = max_recent
        self._message_limit = message_limit
        self._max_keys = max_keys
        self._clock = clock
        self._classifier = classifier
        self._registry = registry
        self._lock = threading.Lock()
        # acquire/release rather than `with`: the context manager protocol costs as much again.
        self._acquire, self._release = self._lock.acquire, self._lock.release

    def record(
        self, exc: BaseException, source: str = "app", context: Mapping[str, Any] | None = None
    ) -> ErrorCategory:
        """Count `exc` from `source`; returns its category."""
        if not isinstance(source, str):
            raise TypeError(f"source must be a str, got {source!r}")
        if not isinstance(exc, BaseException):
            raise TypeError(f"exc must be an exception, got {exc!r}")
        if context is not None and not isinstance(context, Mapping):
            raise TypeError(f"context must be a mapping or None, got {context!r}")
        try:
            category = self._classifier(exc)
            if not isinstance(category, ErrorCategory):
                category = to_category(category, "classifier result")
        except Exception:
            log.exception("seawall aggregator classifier failed")
            category = ErrorCategory.UNKNOWN
        error_type = type(exc).__name__
        now = self._clock()
        index = floor(now / self._width)  # floor(), not int(x // w): a third of the cost
        cap = self._max_keys
        if self._max_recent:
            # Keep the message, not the exception: a stored exception pins its traceback's frames.
            self._recent.append((now, source, error_type, category, _message(exc, error_type), context))
        self._acquire()
        try:
            bucket = self._ring[index % self._size]
            if bucket.start != index:
                bucket.reset(index)
            bucket.total += 1
            counts = bucket.type
            n = counts.get(error_type)
            if n is not None:
                counts[error_type] = n + 1
            elif len(counts) < cap:
                counts[error_type] = 1
            else:
                counts[_OTHER] = counts.get(_OTHER, 0) + 1
            counts = bucket.source
            n = counts.get(source)
            if n is not None:
                counts[source] = n + 1
            elif len(counts) < cap:
                counts[source] = 1
            else:
                counts[_OTHER] = counts.get(_OTHER, 0) + 1
            cats = bucket.category
            cats[category] = cats.get(category, 0) + 1
        finally:
            self._release()
        registry = self._registry
        if registry is not None and registry.bus.listeners:
            registry.bus.publish(ErrorRecorded(source, error_type, category))
        return category

    def _live(self, now: float) -> list[_Bucket]:
        newest = floor(now / self._width)
        oldest = newest - len(self._ring) + 1
        return [b for b in self._ring if oldest <= b.start <= newest]

    def stats(self) -> dict[str, Any]:
        """Totals over the window, by type, category (all present) and source, and errors per minute."""
        now = self._clock()
        by_type: Counter[str] = Counter()
        by_source: Counter[str] = Counter()
        by_cat: Counter[ErrorCategory] = Counter()
        total = 0
        with self._lock:
            for bucket in self._live(now):
                total += bucket.total
                by_type.update(bucket.type)
                by_source.update(bucket.source)
                by_cat.update(bucket.category)
        return {
            "total_errors": total,
            "errors_by_type": dict(by_type.most_common()),
            "errors_by_category": {c.value: by_cat.get(c, 0) for c in _CATEGORIES},
            "errors_by_source": dict(by_source.most_common()),
            "error_rate": total / (self.window / 60.0),
            "window_seconds": self.window,
        }

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        """The newest errors first, messages and string context values redacted."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        with self._lock:
            entries = list(itertools.islice(reversed(self._recent), limit))
        return [self._render(entry) for entry in entries]

    def _render(self, entry: tuple[Any, ...]) -> dict[str, Any]:
        timestamp, source, error_type, category, message, context = entry
        return {
            "timestamp": float(timestamp),
            "source": source,
            "type": error_type,
            "category": category.value,
            "message": redact(message)[: self._message_limit],
            "context": _small_context(context),
        }

    def clear(self) -> None:
        with self._lock:
            for bucket in self._ring:
                bucket.start = -1
            self._recent.clear()


def _message(exc: BaseException, error_type: str) -> str:
    try:
        return str(exc)[:4096]
    except Exception:
        return f"<unprintable {error_type}>"


_CONTEXT_KEYS = 20
_CONTEXT_VALUE = 200


def _small_context(context: Mapping[str, Any] | None) -> dict[str, Any]:
    if not context:
        return {}
    out: dict[str, Any] = {}
    for key, value in itertools.islice(context.items(), _CONTEXT_KEYS):
        if isinstance(value, str):
            value = redact(value)[:_CONTEXT_VALUE]
        elif not isinstance(value, (int, float, bool, type(None))):
            value = redact(repr(value))[:_CONTEXT_VALUE]
        out[str(key)[:_CONTEXT_VALUE]] = value
    return out


def record_error(
    exc: BaseException, source: str = "app", context: Mapping[str, Any] | None = None
) -> ErrorCategory:
    """Record `exc` into the default registry's aggregator."""
    from ._registry import default_registry

    return default_registry().errors.record(exc, source=source, context=context)
