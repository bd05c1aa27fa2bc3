"""Circuit breaker cases: success path, rejected call, and threads through one breaker.

Each library wraps the same trivial function in its decorator form, so the difference in cost is
the breaker's bookkeeping alone.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import circuitbreaker  # type: ignore[import-untyped]
import pybreaker

from .harness import CaseResult, Config, Measurement, Subjects, attempt_build, case, seawall_attr

RESET_TIMEOUT = 3600.0  # long enough that an opened breaker stays open for the whole run


def work() -> int:
    return 1


class Boom(Exception):
    """The failure used to open breakers."""


def seawall_breaker(name: str, **settings: Any) -> Any:
    """A seawall CircuitBreaker in a private registry (so runs never collide in the default one)."""
    registry = seawall_attr("seawall.Registry")()
    breaker_type = seawall_attr("seawall.CircuitBreaker")
    return breaker_type(name, failure_threshold=5, reset_timeout=RESET_TIMEOUT, registry=registry, **settings)


def pybreaker_breaker(name: str) -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(fail_max=5, reset_timeout=RESET_TIMEOUT, name=name)


def circuitbreaker_breaker(name: str) -> circuitbreaker.CircuitBreaker:
    return circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=RESET_TIMEOUT, name=name)


MOUNTED = "seawall, status routes mounted"


def breaker_beside_web_app(name: str) -> Callable[[], object]:
    """A breaker whose registry also backs `seawall.starlette.create_app` (no metrics), as in a service:
    shows what the web layer's own bus listeners add to every call."""
    registry = seawall_attr("seawall.Registry")()
    breaker_type = seawall_attr("seawall.CircuitBreaker")
    created = breaker_type(name, failure_threshold=5, reset_timeout=RESET_TIMEOUT, registry=registry)
    seawall_attr("seawall.starlette.create_app")(registry=registry, metrics=False)
    wrapped: Callable[[], object] = created(work)
    return wrapped


@case("breaker.success", "breaker success path, decorator form, trivial function")
def success_path(result: CaseResult, config: Config) -> CaseResult:
    subjects = Subjects(work)
    subjects.build("seawall", lambda: seawall_breaker("bench-success")(work))
    subjects.build(MOUNTED, lambda: breaker_beside_web_app("bench-success"))
    subjects["circuitbreaker"] = circuitbreaker_breaker("bench-success")(work)
    subjects["pybreaker"] = pybreaker_breaker("bench-success")(work)
    result.measurements = subjects.overhead(config)
    for item in result.measurements:
        if item.subject == MOUNTED:
            item.note = "for the record: its registry also serves create_app(metrics=False)"
    result.ratio_target("seawall / circuitbreaker overhead", "seawall", "circuitbreaker", 1.0)
    result.ratio_target("seawall / pybreaker overhead", "seawall", "pybreaker", 0.5)
    return result


@case("breaker.shared", "breaker success path, local vs shared through Redis (the sync thread running)")
def shared_success_path(result: CaseResult, config: Config) -> CaseResult:
    from .limits import redis_server

    subjects = Subjects(work)
    with redis_server() as url:
        backend = seawall_attr("seawall.RedisBackend")(url, timeout=1.0)
        try:
            subjects["seawall, local"] = seawall_breaker("bench-local")(work)
            subjects.build("seawall, shared", lambda: seawall_breaker("bench-shared", shared=backend)(work))
            result.measurements = subjects.overhead(config)
        finally:
            backend.close()
    result.ratio_target("shared / local overhead", "seawall, shared", "seawall, local", 1.1)
    return result


def _opened(
    decorate: Callable[[Callable[[], int]], Callable[[], int]], error: type[BaseException]
) -> Callable[[], int]:
    """Wrap a function that fails until the breaker opens, then make it succeed (never reached)."""
    state = {"fail": True}

    def flaky() -> int:
        if state["fail"]:
            raise Boom
        return 1

    wrapped = decorate(flaky)
    for _ in range(50):
        try:
            wrapped()
        except error:
            break  # the breaker rejected: it is open
        except Boom:
            continue
    else:
        raise RuntimeError("breaker did not open after 50 failures")
    state["fail"] = False
    return wrapped


def _rejecting(wrapped: Callable[[], int], error: type[BaseException]) -> Callable[[], object]:
    def attempt() -> object:
        try:
            return wrapped()
        except error:
            return None

    return attempt


@case("breaker.rejected", "call on an open breaker, catching the library's open error")
def rejected_call(result: CaseResult, config: Config) -> CaseResult:
    def bare() -> object:
        try:
            return work()
        except Boom:
            return None

    subjects = Subjects(bare)

    def build_seawall() -> Callable[[], object]:
        error = seawall_attr("seawall.CircuitOpenError")
        breaker = seawall_breaker("bench-rejected")
        wrapped = _opened(breaker, error)
        state = getattr(breaker, "state", None)
        if state is not None and str(state) != "open":
            raise RuntimeError(f"expected state open after failures, got {state}")
        return _rejecting(wrapped, error)

    subjects.build("seawall", build_seawall)
    subjects["circuitbreaker"] = _rejecting(
        _opened(circuitbreaker_breaker("bench-rejected"), circuitbreaker.CircuitBreakerError),
        circuitbreaker.CircuitBreakerError,
    )
    subjects["pybreaker"] = _rejecting(
        _opened(pybreaker_breaker("bench-rejected"), pybreaker.CircuitBreakerError),
        pybreaker.CircuitBreakerError,
    )
    result.measurements = subjects.overhead(config)
    result.ratio_target("seawall / pybreaker rejection cost", "seawall", "pybreaker", 0.3)
    return result


def _wall_time(call: Callable[[], object], config: Config) -> float:
    """Seconds for `threads` threads, released together, each making `thread_calls` calls."""
    barrier = threading.Barrier(config.threads + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(config.thread_calls):
                call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(config.threads)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=30)
    start = time.perf_counter()
    bound = 60 + config.threads * config.thread_calls * config.thread_sleep * 10
    for thread in threads:
        thread.join(timeout=bound)
    elapsed = time.perf_counter() - start
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"threads still running after {bound:.0f} s")
    if errors:
        raise errors[0]
    return elapsed


@case(
    "breaker.threads",
    lambda config: (
        f"{config.threads} threads x {config.thread_calls} calls of "
        f"time.sleep({config.thread_sleep}) through one breaker"
    ),
)
def threads_case(result: CaseResult, config: Config) -> CaseResult:
    pause = config.thread_sleep

    def slow() -> None:
        time.sleep(pause)

    subjects: dict[str, Callable[[], object]] = {"bare": slow}
    wrapped, why = attempt_build(lambda: seawall_breaker("bench-threads")(slow))
    if wrapped is not None:
        subjects["seawall"] = wrapped
    subjects["circuitbreaker"] = circuitbreaker_breaker("bench-threads")(slow)
    subjects["pybreaker"] = pybreaker_breaker("bench-threads")(slow)
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(max(1, config.thread_repeat)):
        for name, call in subjects.items():
            samples[name].append(_wall_time(call, config))
    bare = statistics.median(samples["bare"])
    for name in subjects:
        wall = statistics.median(samples[name])
        note = "" if name == "bare" else f"{wall / bare:.2f}x bare"
        result.measurements.append(Measurement(name, wall * 1e3, "ms", median=wall * 1e3, note=note))
    if wrapped is None:
        result.measurements.append(Measurement("seawall", None, "ms", note=why))
    result.ratio_target("seawall wall time / bare wall time", "seawall", "bare", 1.1)
    return result
