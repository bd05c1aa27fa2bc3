"""The metric contract: one row per family, the only place a family's name, type, unit, labels,
help text, the snapshot field it reads and its aggregation are written.

Every exporter builds from this table through `seawall.metrics.reading` (Prometheus single-process,
the multiprocess files, OpenTelemetry metrics), README's and docs/exporter.md's tables are tested
equal to it, and so are the selectors of the rules and dashboards. Adding a metric is one row here
plus the snapshot field it reads.

Names are OpenTelemetry's (dotted, with a UCUM unit); the Prometheus name is derived by the
standard OpenTelemetry-to-Prometheus mapping (dots to underscores, `s` -> `_seconds`, `1` on a
gauge -> `_ratio`, `{...}` units add nothing, counters gain `_total` on their samples), so the two
spellings cannot drift. This module imports neither prometheus_client nor opentelemetry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from seawall.core.enums import BreakerState, CallOutcome, ErrorCategory, FallbackReason, RetryOutcome
from seawall.core.snapshots import HistogramSnapshot
from seawall.hedging.settings import HEDGE_OUTCOMES
from seawall.tasks.record import TaskState

__all__ = ["CONTRACT", "Label", "MetricSpec", "Row", "by_name"]

# One series of a family: its label values (in the family's label order) and its value.
Row = tuple[tuple[str, ...], "float | HistogramSnapshot"]
MetricType = Literal["counter", "gauge", "histogram"]
# How series with the same labels combine: names folded into `_other` by the label cap, and the
# same series of several worker processes (multiprocess mode). "worst" is for one-hot state gauges:
# the state shown is the first of `worst_first` that any of them is in.
Fold = Literal["sum", "min", "max", "worst"]

# Sources a row reads, besides the registry's kinds (whose items are snapshots).
GLOBAL_SOURCES = ("errors", "instrumentation", "build", "overflow")

_UNIT_SUFFIX = {"s": "seconds"}


@dataclass(frozen=True, slots=True)
class Label:
    """A label (OpenTelemetry: attribute). `values` is its closed vocabulary, if it has one; an open
    label (`values` None) is capped by `max_label_values` unless `bounded` (its values are bounded
    by construction: a version, the contract's own names)."""

    name: str
    values: tuple[str, ...] | None = None
    bounded: bool = False

    @property
    def capped(self) -> bool:
        return self.values is None and not self.bounded


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family of the contract."""

    name: str  # OpenTelemetry instrument name, dotted
    type: MetricType
    unit: str  # UCUM: "s", "1", "{call}", ...
    labels: tuple[Label, ...]
    help: str
    source: str  # a registry kind (items are snapshots) or one of GLOBAL_SOURCES
    read: Callable[[Any], Iterable[Row]]  # one source item -> its rows
    fold: Fold
    worst_first: tuple[str, ...] = ()  # fold "worst": the order of the last label's values

    @property
    def prometheus_name(self) -> str:
        """The family name: the standard mapping of the OpenTelemetry name and unit."""
        name = self.name.replace(".", "_")
        suffix = _UNIT_SUFFIX.get(self.unit)
        if suffix is None and self.unit == "1" and self.type == "gauge":
            suffix = "ratio"
        if suffix is not None and not name.endswith("_" + suffix):
            name = f"{name}_{suffix}"
        return name

    @property
    def sample_name(self) -> str:
        """The sample name of a counter (`_total`) or of a gauge; a histogram's base name."""
        return self.prometheus_name + "_total" if self.type == "counter" else self.prometheus_name

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)


def _values(enum: Iterable[Any]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


def _each(snap: Any, field: str, names: Iterable[str] | None = None) -> list[Row]:
    """One row per key of the snapshot's dict `field` (or per name of `names`, 0 when absent)."""
    counts: dict[str, int] = getattr(snap, field)
    keys = counts if names is None else names
    return [((snap.name, key), float(counts.get(key, 0))) for key in keys]


def _one(snap: Any, value: float | None) -> list[Row]:
    """The snapshot's one series, or none when it has no such value."""
    return [] if value is None else [((snap.name,), float(value))]


def _state(snap: Any, state: Any) -> list[Row]:
    return [((snap.name, str(getattr(state, "value", state))), 1.0)]


def _histograms(snap: Any, hists: dict[str, HistogramSnapshot]) -> list[Row]:
    return [((snap.name, outcome), hist) for outcome, hist in hists.items()]


_BREAKER = Label("breaker")
_RETRY = Label("retry")
_FEATURE = Label("feature")
_TIMEOUT = Label("timeout")
_BULKHEAD = Label("bulkhead")
_LIMITER = Label("limiter")
_TASK = Label("task")
_HEDGE = Label("hedge")
_ERROR_TYPE = Label("error_type")
_BREAKER_STATES = _values(BreakerState)
_CALL_OUTCOMES = _values(CallOutcome)
_RETRY_OUTCOMES = _values(RetryOutcome)
_TIMEOUT_OUTCOMES = ("success", "failure", "timed_out", "cancelled")
_ADMISSIONS = ("admitted", "rejected")
_BULKHEAD_OUTCOMES = (*_ADMISSIONS, "cancelled")
_TASK_STATES = _values(TaskState)
_DURATION_OUTCOMES = ("success", "failure", "ignored")

CONTRACT: tuple[MetricSpec, ...] = (
    MetricSpec(
        "seawall.circuit_breaker.state",
        "gauge",
        "",
        (_BREAKER, Label("state", _BREAKER_STATES)),
        "1 for the breaker's current state, 0 for the others",
        "breaker",
        lambda s: _state(s, s.state),
        "worst",
        worst_first=("open", "half_open", "forced_open", "closed", "disabled"),
    ),
    MetricSpec(
        "seawall.circuit_breaker.calls",
        "counter",
        "{call}",
        (_BREAKER, Label("outcome", _CALL_OUTCOMES)),
        "Calls through the breaker by outcome",
        "breaker",
        lambda s: _each(s, "calls", _CALL_OUTCOMES),
        "sum",
    ),
    MetricSpec(
        "seawall.circuit_breaker.call_duration",
        "histogram",
        "s",
        (_BREAKER, Label("outcome", _DURATION_OUTCOMES)),
        "Duration of calls the breaker let through",
        "breaker",
        lambda s: _histograms(s, s.durations),
        "sum",
    ),
    MetricSpec(
        "seawall.circuit_breaker.transitions",
        "counter",
        "{transition}",
        (_BREAKER, Label("from_state", _BREAKER_STATES), Label("to_state", _BREAKER_STATES)),
        "Breaker state transitions",
        "breaker",
        lambda s: [((s.name, f.value, t.value), float(n)) for (f, t), n in s.transitions.items()],
        "sum",
    ),
    MetricSpec(
        "seawall.circuit_breaker.failure",
        "gauge",
        "1",
        (_BREAKER,),
        "Failure ratio (0..1) of the breaker's sliding window (0 while empty); absent without a window",
        "breaker",
        lambda s: _one(s, s.failure_rate),
        "max",
    ),
    MetricSpec(
        "seawall.circuit_breaker.shared_up",
        "gauge",
        "",
        (_BREAKER,),
        "1 while a shared breaker reaches the fleet state, 0 while it decides locally",
        "breaker",
        lambda s: _one(s, None if s.shared is None else (1.0 if s.shared_up else 0.0)),
        "min",
    ),
    MetricSpec(
        "seawall.circuit_breaker.shared_errors",
        "counter",
        "{error}",
        (_BREAKER,),
        "Failed syncs of a shared breaker with the fleet state",
        "breaker",
        lambda s: _one(s, None if s.shared is None else s.shared_errors),
        "sum",
    ),
    MetricSpec(
        "seawall.retry.calls",
        "counter",
        "{call}",
        (_RETRY, Label("outcome", _RETRY_OUTCOMES)),
        "Retried operations by outcome",
        "retry",
        lambda s: _each(s, "calls", _RETRY_OUTCOMES),
        "sum",
    ),
    MetricSpec(
        "seawall.retries",
        "counter",
        "{retry}",
        (_RETRY, _ERROR_TYPE),
        "Re-attempts, by the error that caused them",
        "retry",
        lambda s: _each(s, "retries_by_error"),
        "sum",
    ),
    MetricSpec(
        "seawall.errors",
        "counter",
        "{error}",
        (Label("source"), _ERROR_TYPE, Label("category", _values(ErrorCategory))),
        "Errors recorded, by source and class",
        "errors",
        lambda item: [item],
        "sum",
    ),
    MetricSpec(
        "seawall.feature.enabled",
        "gauge",
        "",
        (_FEATURE,),
        "1 while the feature answers from its primary",
        "feature",
        lambda s: _one(s, 1.0 if s.enabled else 0.0),
        "min",
    ),
    MetricSpec(
        "seawall.fallbacks",
        "counter",
        "{call}",
        (_FEATURE, Label("reason", _values(FallbackReason))),
        "Fallback answers by reason",
        "feature",
        lambda s: _each(s, "fallbacks"),
        "sum",
    ),
    MetricSpec(
        "seawall.timeout.calls",
        "counter",
        "{call}",
        (_TIMEOUT, Label("outcome", _TIMEOUT_OUTCOMES)),
        "Calls under a timeout by outcome",
        "timeout",
        lambda s: _each(s, "calls", _TIMEOUT_OUTCOMES),
        "sum",
    ),
    MetricSpec(
        "seawall.timeout.call_duration",
        "histogram",
        "s",
        (_TIMEOUT,),
        "Duration of calls under a timeout",
        "timeout",
        lambda s: [((s.name,), s.durations)],
        "sum",
    ),
    MetricSpec(
        "seawall.bulkhead.calls",
        "counter",
        "{call}",
        (_BULKHEAD, Label("outcome", _BULKHEAD_OUTCOMES)),
        "Calls at a bulkhead by outcome",
        "bulkhead",
        lambda s: _each(s, "calls", _BULKHEAD_OUTCOMES),
        "sum",
    ),
    MetricSpec(
        "seawall.bulkhead.in_flight",
        "gauge",
        "{call}",
        (_BULKHEAD,),
        "Calls inside the bulkhead now",
        "bulkhead",
        lambda s: _one(s, s.in_flight),
        "sum",
    ),
    MetricSpec(
        "seawall.bulkhead.capacity",
        "gauge",
        "{call}",
        (_BULKHEAD,),
        "Calls the bulkhead admits at once",
        "bulkhead",
        lambda s: _one(s, s.max_concurrent),
        "sum",
    ),
    MetricSpec(
        "seawall.bulkhead.wait",
        "histogram",
        "s",
        (_BULKHEAD,),
        "Time calls waited for a slot",
        "bulkhead",
        lambda s: [((s.name,), s.wait)],
        "sum",
    ),
    MetricSpec(
        "seawall.rate_limiter.calls",
        "counter",
        "{call}",
        (_LIMITER, Label("outcome", _ADMISSIONS)),
        "Calls at a rate limiter by outcome",
        "rate_limiter",
        lambda s: _each(s, "calls", _ADMISSIONS),
        "sum",
    ),
    MetricSpec(
        "seawall.rate_limiter.available_tokens",
        "gauge",
        "{token}",
        (_LIMITER,),
        "Tokens left in a local limiter's bucket",
        "rate_limiter",
        lambda s: _one(s, s.available_tokens),
        "min",
    ),
    MetricSpec(
        "seawall.rate_limiter.backend_errors",
        "counter",
        "{error}",
        (_LIMITER,),
        "Failed decisions of a shared limiter's backend",
        "rate_limiter",
        lambda s: _one(s, s.backend_errors),
        "sum",
    ),
    MetricSpec(
        "seawall.rate_limiter.backend_up",
        "gauge",
        "",
        (_LIMITER,),
        "1 while the limiter's backend answers",
        "rate_limiter",
        lambda s: _one(s, 1.0 if s.backend_up else 0.0),
        "min",
    ),
    MetricSpec(
        "seawall.task.state",
        "gauge",
        "",
        (_TASK, Label("state", _TASK_STATES)),
        "1 for the task's current state, 0 for the others",
        "task",
        lambda s: _state(s, s.state),
        "worst",
        worst_first=("failed", "backing_off", "starting", "stopped", "running", "finished"),
    ),
    MetricSpec(
        "seawall.task.up",
        "gauge",
        "",
        (_TASK,),
        "1 while the task runs",
        "task",
        lambda s: _one(s, 1.0 if s.state == "running" else 0.0),
        "min",
    ),
    MetricSpec(
        "seawall.task.restarts",
        "counter",
        "{restart}",
        (_TASK, _ERROR_TYPE),
        "Restarts of a task, by the error that ended it",
        "task",
        lambda s: _each(s, "restarts_by_error"),
        "sum",
    ),
    MetricSpec(
        "seawall.task.permanent_failures",
        "counter",
        "{failure}",
        (_TASK,),
        "Tasks given up after their restart budget",
        "task",
        lambda s: _one(s, s.permanent_failures),
        "sum",
    ),
    MetricSpec(
        "seawall.task.last_start_timestamp",
        "gauge",
        "s",
        (_TASK,),
        "When the task last started (epoch)",
        "task",
        lambda s: _one(s, s.last_started_at or None),
        "min",
    ),
    MetricSpec(
        "seawall.task.last_heartbeat_timestamp",
        "gauge",
        "s",
        (_TASK,),
        "When the task last beat (epoch)",
        "task",
        lambda s: _one(s, s.last_beat_at or None),
        "min",
    ),
    MetricSpec(
        "seawall.task.heartbeat_timeout",
        "gauge",
        "s",
        (_TASK,),
        "Heartbeat staleness threshold",
        "task",
        lambda s: _one(s, s.heartbeat_timeout),
        "max",
    ),
    MetricSpec(
        "seawall.instrumentation_errors",
        "counter",
        "{error}",
        (Label("component"),),
        "Failures of seawall's own instrumentation",
        "instrumentation",
        lambda item: [((item[0],), float(item[1]))],
        "sum",
    ),
    MetricSpec(
        "seawall.hedge.calls",
        "counter",
        "{call}",
        (_HEDGE,),
        "Calls through a hedge",
        "hedge",
        lambda s: _one(s, s.calls),
        "sum",
    ),
    MetricSpec(
        "seawall.hedges",
        "counter",
        "{attempt}",
        (_HEDGE, Label("outcome", HEDGE_OUTCOMES)),
        "Extra attempts of a hedge by outcome: sent, won, cancelled, throttled (refused by the budget)",
        "hedge",
        lambda s: _each(s, "hedges", HEDGE_OUTCOMES),
        "sum",
    ),
    MetricSpec(
        "seawall.build_info",
        "gauge",
        "",
        (Label("version", bounded=True),),
        "seawall version",
        "build",
        lambda version: [((version,), 1.0)],
        "max",
    ),
    MetricSpec(
        "seawall.label_overflow",
        "counter",
        "{value}",
        (Label("metric", bounded=True), Label("label", bounded=True)),
        "Label values collapsed into _other by the cardinality cap",
        "overflow",
        lambda item: [(item[0], float(item[1]))],
        "sum",
    ),
)


def by_name(name: str) -> MetricSpec:
    """The row of a Prometheus family name (`seawall_retries`) or sample name (`..._total`)."""
    for spec in CONTRACT:
        if name in (spec.prometheus_name, spec.sample_name, spec.name):
            return spec
    raise KeyError(f"no metric family {name!r} in the contract")
