"""The windowed error aggregator: counts by type, category and source, and the most recent errors.

Errors are classified with `classify` (`_classify.py`) unless the aggregator is given another
classifier; `record_error` records into the default registry's aggregator.
"""

from __future__ import annotations

import itertools
import json
import logging
import reprlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from math import floor
from typing import TYPE_CHECKING, Any

from seawall.core.enums import ErrorCategory
from seawall.core.redact import MASK, is_secret_name
from seawall.core.scrub import CLEAN, OTHER, clean_structure, scrub
from seawall.core.settings import MAX_COUNT, Number, check_callables, resolve
from seawall.errors.classify import classify, failures, to_category
from seawall.errors.settings import AggregatorSettings
from seawall.events import ErrorRecorded

if TYPE_CHECKING:
    from seawall.core.registry import Registry

log = logging.getLogger("seawall")


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


TOTALS_PER_KEY = 5  # distinct (source, type, category) totals kept per max_keys


class ErrorAggregator:
    """Counts errors over a sliding window (a ring of buckets) and keeps the most recent ones.

    Memory is bounded: `buckets` buckets, each with at most `max_keys` distinct types and sources
    (the rest count as "_other"), and `max_recent` recent entries (`AggregatorSettings`, given as
    `settings=` or as keywords).
    """

    def __init__(
        self,
        window: float | None = None,
        *,
        settings: AggregatorSettings | None = None,
        clock: Callable[[], float] = time.time,
        classifier: Callable[[BaseException], ErrorCategory] = classify,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings = resolve(AggregatorSettings, settings, overrides, window=window)
        check_callables({"clock": clock, "classifier": classifier})
        self.window = settings.window
        buckets = settings.buckets
        self._width = self.window / buckets
        self._ring = [_Bucket() for _ in range(buckets)]
        self._size = buckets
        # deque.append is atomic, so recording a recent entry needs no lock; maxlen bounds memory.
        self._recent: deque[tuple[Any, ...]] = deque(maxlen=settings.max_recent)
        self._max_recent = settings.max_recent
        self._message_limit = settings.message_limit
        self._max_keys = max_keys = settings.max_keys
        self._clock = clock
        self._classifier = classifier
        self._registry = registry
        self._lock = threading.Lock()
        # acquire/release rather than `with`: the context manager protocol costs as much again.
        self._acquire, self._release = self._lock.acquire, self._lock.release
        # Totals since creation by (source, error_type, category), what exporters read; bounded:
        # past `TOTALS_PER_KEY * max_keys` distinct triples, new ones count as ("_other", "_other").
        self._totals: dict[tuple[str, str, ErrorCategory], int] = {}
        self._max_totals = TOTALS_PER_KEY * max_keys
        self._recorded = None if registry is None else registry.bus.channel(ErrorRecorded)
        if registry is not None:
            registry.add_aggregator(self)

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
        # Bounded, valid and redacted before anything is kept: the caller's free text may be huge,
        # secret, or not encodable (a lone surrogate), and the source becomes a /metrics label.
        if source not in CLEAN:  # the memo's lookup inlined: sources repeat on every call
            source = scrub(source, MAX_SOURCE_LENGTH)
        if context:
            context = _small_context(context)
        try:
            category = self._classifier(exc)
            if not isinstance(category, ErrorCategory):
                category = to_category(category, "classifier result")
        except Exception as broken:
            failures.failed(
                "seawall aggregator classifier", f"aggregator classifier {id(self._classifier)}", broken
            )
            category = ErrorCategory.UNKNOWN
        error_type = type(exc).__name__
        now = self._clock()
        index = floor(now / self._width)  # floor(), not int(x // w): a third of the cost
        cap = self._max_keys
        if self._max_recent:
            # Keep the message, not the exception: a stored exception pins its traceback's frames.
            message = _message(exc, error_type)
            if message not in CLEAN:
                message = scrub(message, MESSAGE_LENGTH)
            self._recent.append((now, source, error_type, category, message, context))
        self._acquire()
        try:
            bucket = self._ring[index % self._size]
            if bucket.start != index:
                bucket.reset(index)
            bucket.total += 1
            types, sources = bucket.type, bucket.source
            n = types.get(error_type)  # a key the bucket has counted (the usual case) costs no call
            if n is None:
                _add(types, error_type, cap)
            else:
                types[error_type] = n + 1
            n = sources.get(source)
            if n is None:
                _add(sources, source, cap)
            else:
                sources[source] = n + 1
            cats = bucket.category
            cats[category] = cats.get(category, 0) + 1
            totals = self._totals
            triple = (source, error_type, category)
            n = totals.get(triple)
            if n is not None:
                totals[triple] = n + 1
            elif len(totals) < self._max_totals:
                totals[triple] = 1
            else:
                triple = (_OTHER, _OTHER, category)
                totals[triple] = totals.get(triple, 0) + 1
        finally:
            self._release()
        recorded = self._recorded
        if recorded is not None and recorded.listeners:
            recorded.publish(ErrorRecorded(source, error_type, category))
        return category

    def totals(self) -> dict[tuple[str, str, ErrorCategory], int]:
        """Errors since creation by (source, error_type, category); never cleared by the window."""
        with self._lock:
            return dict(self._totals)

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
        Number(0, MAX_COUNT, integer=True).check("limit", limit)
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
            "message": message[: self._message_limit],  # scrubbed by record()
            "context": dict(context) if context else {},  # made small and redacted by record()
        }

    def clear(self) -> None:
        """Forget the window and the recent errors; `totals()` stay, as counters must."""
        with self._lock:
            for bucket in self._ring:
                bucket.start = -1
            self._recent.clear()


def _add(counts: dict[str, int], key: str, cap: int) -> None:
    """Count a key the bucket has not counted yet; past `cap` keys it counts as _OTHER (bounded labels)."""
    if len(counts) >= cap:
        key = _OTHER
    counts[key] = counts.get(key, 0) + 1


def _message(exc: BaseException, error_type: str) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {error_type}>"


MAX_SOURCE_LENGTH = 200
MESSAGE_LENGTH = 4096
CONTEXT_KEYS = 20
CONTEXT_KEY_LENGTH = 64
CONTEXT_VALUE_LENGTH = 200
# Long enough that a token inside an object's repr is seen whole by the rules (reprlib's default
# cuts strings to 30 characters, keeping a token's ends).
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = CONTEXT_VALUE_LENGTH


def _context_value(value: Any) -> Any:
    """A context value as kept: short scrubbed text, or a JSON-safe number, bool or None.
    Containers are walked (secret keys and header pairs masked at any depth), then shown as JSON."""
    cleaned = clean_structure(value, CONTEXT_VALUE_LENGTH)
    if isinstance(cleaned, (dict, list)):
        return json.dumps(cleaned, ensure_ascii=False, default=str)[:CONTEXT_VALUE_LENGTH]
    if cleaned is not OTHER:
        return cleaned
    try:
        text = _REPR.repr(value)  # bounded however large the object
    except Exception:
        text = f"<unprintable {type(value).__name__}>"
    return scrub(text, CONTEXT_VALUE_LENGTH)


def _small_context(context: Mapping[Any, Any]) -> dict[str, Any]:
    """A bounded copy of `context`: 20 keys of up to 64 characters, values of up to 200, every
    text scrubbed (valid Unicode, redacted), and the value of every key that names a secret
    (`password`, `api_key`, `dbToken`, `Cookie`) masked whole."""
    out: dict[str, Any] = {}
    try:
        items = list(itertools.islice(context.items(), CONTEXT_KEYS))
    except Exception:  # a broken Mapping must not break the call being recorded
        return {"context": "<unreadable>"}
    for key, value in items:
        name = key if isinstance(key, str) else str(_context_value(key))
        name = scrub(name, CONTEXT_KEY_LENGTH)
        out[name] = MASK if is_secret_name(name) else _context_value(value)
    return out


def record_error(
    exc: BaseException, source: str = "app", context: Mapping[str, Any] | None = None
) -> ErrorCategory:
    """Record `exc` into the default registry's aggregator."""
    from seawall.core.registry import default_registry

    return default_registry().errors.record(exc, source=source, context=context)
