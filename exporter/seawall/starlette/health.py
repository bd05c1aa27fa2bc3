"""Readiness: one verdict from breaker and feature states plus the service's own component checks.

The rule (documented in docs/web.md):

* **unhealthy** (HTTP 503): a critical check failed (raised, returned False, or timed out), or a
  breaker named in `critical_breakers` is open or forced open, or a critical supervised task
  failed permanently;
* **degraded** (HTTP 200): any breaker is open, half-open or forced open, any feature answers from
  its fallback, a non-critical check failed, or a supervised task is restarting, has a stale
  heartbeat or (not critical) failed permanently;
* **healthy** (HTTP 200) otherwise.

Degraded still answers 200 so a load balancer keeps sending traffic to an instance that is
serving fallbacks; only unhealthy takes it out of rotation.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from seawall.core.enums import BreakerState
from seawall.core.kinds import Kind
from seawall.core.registry import Registry
from seawall.tasks.record import heartbeat_stale

__all__ = ["Check", "HealthChecker", "normalize_checks"]

CheckFn = Callable[[], bool | Awaitable[bool | None] | None]

_TRIPPED = (BreakerState.OPEN, BreakerState.FORCED_OPEN)
_NOT_CLOSED = (BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.FORCED_OPEN)


@dataclass(frozen=True, slots=True)
class Check:
    """A component check: passes unless it raises, returns False, or outlasts `timeout` seconds."""

    name: str
    fn: CheckFn
    timeout: float = 2.0
    critical: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"check name must be a non-empty str, got {self.name!r}")
        if not callable(self.fn):
            raise TypeError(f"check {self.name!r}: fn must be callable, got {self.fn!r}")
        timeout = self.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 3600:
            raise ValueError(f"check {self.name!r}: timeout must be in (0, 3600) seconds, got {timeout!r}")


def normalize_checks(checks: Mapping[str, CheckFn] | Sequence[Check] | None) -> tuple[Check, ...]:
    """Accept `{"db": fn}` (critical, 2 s timeout) or a sequence of `Check`; names must be unique."""
    if checks is None:
        return ()
    if isinstance(checks, Mapping):
        items = tuple(Check(name, fn) for name, fn in checks.items())
    elif isinstance(checks, (list, tuple)):
        items = tuple(checks)
        for item in items:
            if not isinstance(item, Check):
                raise TypeError(f"checks must hold seawall.starlette.Check objects, got {item!r}")
    else:
        raise TypeError(f"checks must be a mapping of name to callable or a list of Check, got {checks!r}")
    names = [item.name for item in items]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"checks must have unique names, got duplicates {duplicates!r}")
    return items


async def _run_check(check: Check, running: set[str], limiter: anyio.CapacityLimiter) -> dict[str, Any]:
    """Run one check within its timeout.

    A sync check runs in a worker thread, which a timeout cannot stop: while that thread is still
    busy, later evaluations report `still_running` instead of starting another, so a hung
    dependency cannot use up the thread pool one readiness probe at a time. The thread is taken
    under the checker's own capacity `limiter`, not anyio's shared one: /metrics renders, status
    bodies and the application's own `run_sync` calls may fill the shared 40 tokens, and a probe
    queued behind them would report a passing check as `timeout`.
    """
    start = time.perf_counter()
    status, error = "pass", None
    try:
        with anyio.fail_after(check.timeout):
            if inspect.iscoroutinefunction(check.fn):
                result = await check.fn()
            elif check.name in running:
                result, status, error = None, "fail", "still_running"
            else:
                running.add(check.name)

                def run() -> Any:
                    try:
                        return check.fn()
                    finally:
                        running.discard(check.name)

                result = await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=limiter)
                if inspect.isawaitable(result):
                    result = await result
        if result is False:
            status, error = "fail", "returned_false"
    except TimeoutError:
        status, error = "fail", "timeout"
    except Exception as exc:
        status, error = "fail", type(exc).__name__
    report: dict[str, Any] = {
        "status": status,
        "critical": check.critical,
        "response_time_ms": round((time.perf_counter() - start) * 1000, 3),
    }
    if error is not None:
        report["error_type"] = error  # a class name or a fixed word, never the exception's message
    return report


class HealthChecker:
    """Computes the readiness verdict; cheap enough for 1,000 breakers (reads states, no snapshots)."""

    def __init__(
        self,
        registry: Registry,
        checks: Iterable[Check] = (),
        critical_breakers: Iterable[str] = (),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._wall = wall_clock  # compared with task heartbeats (epoch seconds)
        self.checks = tuple(checks)
        if isinstance(critical_breakers, str):
            raise TypeError(f"critical_breakers must be a collection of names, got {critical_breakers!r}")
        self.critical_breakers = frozenset(critical_breakers)
        self._running: set[str] = set()  # sync checks whose worker thread has not returned yet
        # One token per check: each check has at most one thread running (`_running`), so a probe
        # never waits here, whatever else the process runs in threads.
        self._limiter = anyio.CapacityLimiter(max(1, len(self.checks)))

    def _tasks(self) -> tuple[dict[str, Any], bool, list[str]]:
        """Supervised tasks: the summary, whether one makes the service unhealthy, and the reasons."""
        now = self._wall()
        summary: dict[str, Any] = {"total": 0, "failed": [], "restarting": [], "stale": []}
        reasons: list[str] = []
        unhealthy = False
        for task in self.registry.items(Kind.TASK):
            snap = task.snapshot()
            summary["total"] += 1
            if snap.state == "failed":
                summary["failed"].append(snap.name)
                unhealthy = unhealthy or snap.critical
                kind = "critical task" if snap.critical else "task"
                reasons.append(f"{kind} {snap.name} failed permanently ({snap.last_error_type})")
            elif snap.state == "backing_off":
                summary["restarting"].append(snap.name)
            elif heartbeat_stale(snap, now):
                summary["stale"].append(snap.name)
        if summary["restarting"]:
            reasons.append(f"{len(summary['restarting'])} task(s) restarting")
        if summary["stale"]:
            reasons.append(f"{len(summary['stale'])} task(s) with a stale heartbeat")
        return summary, unhealthy, reasons

    async def evaluate(self) -> dict[str, Any]:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(_run_check(check, self._running, self._limiter) for check in self.checks)
        )
        checks = {check.name: result for check, result in zip(self.checks, results, strict=True)}
        reasons: list[str] = []
        unhealthy = degraded = False
        for name, result in checks.items():
            if result["status"] == "fail":
                if result["critical"]:
                    unhealthy = True
                    reasons.append(f"check {name} failed")
                else:
                    degraded = True
                    reasons.append(f"non-critical check {name} failed")
        by_state: dict[str, list[str]] = {}
        for breaker in self.registry.breakers():
            state = breaker.state
            if state in _NOT_CLOSED:
                by_state.setdefault(state.value, []).append(breaker.name)
                degraded = True
                if state in _TRIPPED and breaker.name in self.critical_breakers:
                    unhealthy = True
                    reasons.append(f"critical breaker {breaker.name} is {state.value}")
        for state_name, names in sorted(by_state.items()):
            reasons.append(f"{len(names)} breaker(s) {state_name}")
        degraded_features = [feature.name for feature in self.registry.features() if not feature.enabled]
        if degraded_features:
            degraded = True
            reasons.append(f"{len(degraded_features)} feature(s) on fallback")
        tasks, task_unhealthy, task_reasons = self._tasks()
        unhealthy = unhealthy or task_unhealthy
        degraded = degraded or bool(task_reasons)
        reasons.extend(task_reasons)
        status = "unhealthy" if unhealthy else "degraded" if degraded else "healthy"
        return {
            "status": status,
            "reasons": reasons,
            "checks": checks,
            "breakers": {
                "total": len(self.registry.breakers()),
                **{k: sorted(v) for k, v in by_state.items()},
            },
            "features": {"total": len(self.registry.features()), "on_fallback": sorted(degraded_features)},
            "tasks": tasks,
            "response_time_ms": round((time.perf_counter() - start) * 1000, 3),
        }
