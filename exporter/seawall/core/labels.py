"""The cardinality guard: a cap on distinct values per label.

A metric series per distinct label value costs memory in every process and in Prometheus. Names
given by code (breakers, retries, features) and exception class names are bounded in practice, but a
bug (a name built from an id, a dynamically made exception class) must not blow up the TSDB. Past
the cap a value collapses to `_other` (OpenTelemetry's convention) and the collapse is counted, so
the loss is visible instead of silent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from seawall.core.settings import MAX_COUNT, Number

log = logging.getLogger("seawall")

OTHER = "_other"
DEFAULT_MAX_LABEL_VALUES = 100

# How many refused values a guard remembers, as a multiple of its cap; past it every collapse
# is counted (memory stays bounded even when an unbounded stream of values arrives).
_REMEMBER_REFUSED = 10


MAX_ERROR_TYPES = 200  # distinct error class names a retry or a task counts; later ones count as "_other"


def count_error_type(counts: dict[str, int], error_type: str) -> None:
    """Add one to `counts[error_type]`, or to `_other` once `MAX_ERROR_TYPES` names are counted
    (the caller holds its lock): the per-error counts of retries and tasks stay bounded."""
    if error_type not in counts and len(counts) >= MAX_ERROR_TYPES:
        error_type = OTHER
    counts[error_type] = counts.get(error_type, 0) + 1


def check_max_label_values(value: object) -> int:
    """Validate the `max_label_values` setting (by the settings' shared rule)."""
    return int(Number(1, MAX_COUNT, integer=True).check("max_label_values", value))


class LabelGuard:
    """Admits up to `limit` distinct values of one label of one metric; later ones become `_other`.

    `on_overflow(metric, label)` is called once per distinct refused value (while at most
    `10 * limit` refused values are remembered; after that once per refusal).
    """

    __slots__ = ("_lock", "_on_overflow", "_refused", "_seen", "label", "limit", "metric")

    def __init__(
        self,
        metric: str,
        label: str,
        limit: int = DEFAULT_MAX_LABEL_VALUES,
        on_overflow: Callable[[str, str], None] | None = None,
    ) -> None:
        self.metric = metric
        self.label = label
        self.limit = check_max_label_values(limit)
        self._on_overflow = on_overflow
        self._seen: set[str] = set()
        self._refused: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, value: str) -> str:
        """Return `value` itself while under the cap (or already admitted), else `_other`."""
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
            first_time = value not in self._refused
            if first_time and len(self._refused) < self.limit * _REMEMBER_REFUSED:
                self._refused.add(value)
            elif len(self._refused) < self.limit * _REMEMBER_REFUSED:
                return OTHER  # already counted
        if self._on_overflow is not None:
            self._on_overflow(self.metric, self.label)
        return OTHER

    def admitted(self) -> frozenset[str]:
        """The values admitted so far."""
        with self._lock:
            return frozenset(self._seen)


def warn_overflow(limit: int, metric: str, label: str) -> None:
    """Log the first collapse of a label (once per metric and label, by the caller's bookkeeping)."""
    log.warning(
        "seawall: more than %d values of label %r on %s; new ones become _other "
        "(counted in seawall_label_overflow_total)",
        limit,
        label,
        metric,
    )
