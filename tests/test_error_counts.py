"""Counts by error class name stay bounded: past `MAX_ERROR_TYPES` names, new ones count as `_other`
(a dynamically made exception class per call must not grow a retry's or a task's counts for ever)."""

from __future__ import annotations

from collections.abc import Callable

import seawall
from conftest import FakeClock
from seawall.adapters.tenacity import TenacityRetry
from seawall.core.labels import MAX_ERROR_TYPES, OTHER, count_error_type
from seawall.tasks.record import TaskRecord
from seawall.tasks.settings import TaskSettings


def test_counts_collapse_into_other_past_the_cap_and_known_names_keep_counting() -> None:
    counts: dict[str, int] = {}
    for n in range(MAX_ERROR_TYPES + 3):
        count_error_type(counts, f"Error{n}")
    count_error_type(counts, "Error0")
    assert len(counts) == MAX_ERROR_TYPES + 1
    assert (counts["Error0"], counts[OTHER]) == (2, 3)


def fails_once(error: type[Exception]) -> Callable[[], str]:
    raised = iter([error()])

    def call() -> str:
        for exc in raised:
            raise exc
        return "ok"

    return call


def test_a_retry_a_task_and_the_tenacity_adapter_all_keep_the_cap() -> None:
    clock = FakeClock()
    retry = seawall.Retry("r", attempts=2, initial=0.01, sleep=clock.sleep_sync, registry=seawall.Registry())
    record = TaskRecord("t", TaskSettings(), clock)
    adapter = TenacityRetry("a", seawall.Registry())
    for n in range(MAX_ERROR_TYPES + 1):
        error = type(f"Error{n}", (ConnectionError,), {})
        assert retry.call(fails_once(error)) == "ok"
        record.restarted(error.__name__)
        adapter.count_retry(error.__name__)
    for counts in (
        retry.snapshot().retries_by_error,
        record.snapshot().restarts_by_error,
        adapter.snapshot().retries_by_error,
    ):
        assert len(counts) == MAX_ERROR_TYPES + 1
        assert counts[OTHER] == 1
