"""Families of the timeouts, bulkheads, rate limiters and supervised tasks, read from their snapshots.

A mixin of `SnapshotCollector` (which provides `_admit`, the label guard): the same rules as for
breakers, so names past the cap are folded into `_other` truthfully: counters and histograms sum,
in-flight and capacity sum, "is it up" gauges take the minimum, a task's state the worst.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from seawall.core.registry import Registry
from seawall.core.snapshots import HistogramSnapshot

from ._exposition import Family

__all__ = ["TASK_STATES", "LimitAndTaskFamilies", "merge_all"]

TASK_STATES = ("starting", "running", "backing_off", "failed", "finished", "stopped")
_TASK_WORST_FIRST = ("failed", "backing_off", "starting", "stopped", "running", "finished")


def merge_all(hists: list[HistogramSnapshot]) -> HistogramSnapshot:
    """The sum of histograms with the same buckets (names folded into `_other`)."""
    merged = hists[0]
    for other in hists[1:]:
        merged = merged.merged(other)
    return merged


class LimitAndTaskFamilies:
    """The families of the newer kinds, and the folding helpers every family of the collector uses."""

    registry: Registry

    def _admit(self, metric: str, label: str, value: str) -> str:
        raise NotImplementedError

    def _counts(self, family: Family, metric: str, label: str, snaps: list[Any], field: str) -> None:
        """One counter row per (name, key of the snapshot's `field` dict), names past the cap summed."""
        summed: dict[tuple[str, str], int] = {}
        for snap in snaps:
            name = self._admit(metric, label, snap.name)
            for key, count in getattr(snap, field).items():
                summed[(name, key)] = summed.get((name, key), 0) + count
        family.rows.extend(summed.items())

    def _per_name(
        self, family: Family, metric: str, label: str, rows: Sequence[tuple[str, float]], fold: Any
    ) -> None:
        """One row per name; names past the cap combined with `fold` (sum for counts and
        capacities, min for "is it up", max for worst ratios)."""
        combined: dict[str, list[float]] = {}
        for name, value in rows:
            combined.setdefault(self._admit(metric, label, name), []).append(value)
        family.rows.extend(((name,), float(fold(values))) for name, values in combined.items())

    def _histograms(self, family: Family, metric: str, label: str, rows: list[tuple[str, Any]]) -> None:
        combined: dict[str, list[HistogramSnapshot]] = {}
        for name, hist in rows:
            if hist is not None:
                combined.setdefault(self._admit(metric, label, name), []).append(hist)
        family.histograms.extend(((name,), merge_all(hists), None) for name, hists in combined.items())

    def _timeouts(self, timeouts: list[Any]) -> Iterable[Family]:
        out: list[Family] = []
        if timeouts:
            calls = Family(
                "seawall_timeout_calls", "Calls under a timeout by outcome", "counter", ("timeout", "outcome")
            )
            self._counts(calls, "seawall_timeout_calls_total", "timeout", timeouts, "calls")
            durations = Family(
                "seawall_timeout_call_duration_seconds",
                "Duration of calls under a timeout",
                "histogram",
                ("timeout",),
            )
            rows = [(snap.name, snap.durations) for snap in timeouts]
            self._histograms(durations, "seawall_timeout_call_duration_seconds", "timeout", rows)
            out += [calls, durations]
        return out

    def _bulkheads(self, bulkheads: list[Any]) -> Iterable[Family]:
        out: list[Family] = []
        if bulkheads:
            metric = "seawall_bulkhead_calls_total"
            calls = Family(
                "seawall_bulkhead_calls", "Calls at a bulkhead by outcome", "counter", ("bulkhead", "outcome")
            )
            self._counts(calls, metric, "bulkhead", bulkheads, "calls")
            in_flight = Family(
                "seawall_bulkhead_in_flight", "Calls inside the bulkhead now", "gauge", ("bulkhead",)
            )
            self._per_name(in_flight, metric, "bulkhead", [(b.name, b.in_flight) for b in bulkheads], sum)
            capacity = Family(
                "seawall_bulkhead_capacity", "Calls the bulkhead admits at once", "gauge", ("bulkhead",)
            )
            self._per_name(capacity, metric, "bulkhead", [(b.name, b.max_concurrent) for b in bulkheads], sum)
            wait = Family(
                "seawall_bulkhead_wait_seconds", "Time calls waited for a slot", "histogram", ("bulkhead",)
            )
            self._histograms(wait, metric, "bulkhead", [(b.name, b.wait) for b in bulkheads])
            out += [calls, in_flight, capacity, wait]
        return out

    def _rate_limiters(self, limiters: list[Any]) -> Iterable[Family]:
        out: list[Family] = []
        if limiters:
            metric = "seawall_rate_limiter_calls_total"
            calls = Family(
                "seawall_rate_limiter_calls",
                "Calls at a rate limiter by outcome",
                "counter",
                ("limiter", "outcome"),
            )
            self._counts(calls, metric, "limiter", limiters, "calls")
            tokens = Family(
                "seawall_rate_limiter_available_tokens",
                "Tokens left in a local limiter's bucket",
                "gauge",
                ("limiter",),
            )
            local = [
                (snap.name, snap.available_tokens) for snap in limiters if snap.available_tokens is not None
            ]
            self._per_name(tokens, metric, "limiter", local, min)
            errors = Family(
                "seawall_rate_limiter_backend_errors",
                "Failed decisions of a shared limiter's backend",
                "counter",
                ("limiter",),
            )
            self._per_name(errors, metric, "limiter", [(s.name, s.backend_errors) for s in limiters], sum)
            up = Family(
                "seawall_rate_limiter_backend_up",
                "1 while the limiter's backend answers",
                "gauge",
                ("limiter",),
            )
            self._per_name(
                up,
                metric,
                "limiter",
                [(snap.name, 1.0 if snap.backend_up else 0.0) for snap in limiters],
                min,
            )
            out += [calls, tokens, errors, up]
        return out

    def _tasks(self, snaps: list[Any]) -> Iterable[Family]:
        """Supervised background tasks, from their snapshots."""
        if not snaps:
            return ()
        metric = "seawall_task_state"
        state = Family(
            "seawall_task_state",
            "1 for the task's current state, 0 for the others",
            "gauge",
            ("task", "state"),
        )
        up = Family("seawall_task_up", "1 while the task runs", "gauge", ("task",))
        restarts = Family(
            "seawall_task_restarts",
            "Restarts of a task, by the error that ended it",
            "counter",
            ("task", "error_type"),
        )
        failures = Family(
            "seawall_task_permanent_failures",
            "Tasks given up after their restart budget",
            "counter",
            ("task",),
        )
        started = Family(
            "seawall_task_last_start_timestamp_seconds",
            "When the task last started (epoch)",
            "gauge",
            ("task",),
        )
        beat = Family(
            "seawall_task_last_heartbeat_timestamp_seconds",
            "When the task last beat (epoch)",
            "gauge",
            ("task",),
        )
        timeout = Family(
            "seawall_task_heartbeat_timeout_seconds", "Heartbeat staleness threshold", "gauge", ("task",)
        )
        worst: dict[str, str] = {}
        for snap in snaps:  # `_other` shows the worst state of the tasks folded into it
            name = self._admit(metric, "task", snap.name)
            shown = worst.get(name)
            if shown is None or _TASK_WORST_FIRST.index(snap.state) < _TASK_WORST_FIRST.index(shown):
                worst[name] = snap.state
        for name, shown in worst.items():
            state.rows.extend(((name, value), 1.0 if value == shown else 0.0) for value in TASK_STATES)
        self._per_name(
            up, metric, "task", [(snap.name, 1.0 if snap.state == "running" else 0.0) for snap in snaps], min
        )
        self._counts(restarts, metric, "task", snaps, "restarts_by_error")
        self._per_name(failures, metric, "task", [(s.name, s.permanent_failures) for s in snaps], sum)
        self._per_name(
            started, metric, "task", [(s.name, s.last_started_at) for s in snaps if s.last_started_at], min
        )
        self._per_name(beat, metric, "task", [(s.name, s.last_beat_at) for s in snaps if s.last_beat_at], min)
        thresholds = [(s.name, s.heartbeat_timeout) for s in snaps if s.heartbeat_timeout is not None]
        self._per_name(timeout, metric, "task", thresholds, max)
        return (state, up, restarts, failures, started, beat, timeout)
