"""prometheus_client multiprocess mode: two worker processes drive real breakers; the collector sums."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from exposition import Samples, get, scrape

WORKER = textwrap.dedent(
    """
    import os, sys
    from prometheus_client import CollectorRegistry
    import seawall
    from seawall import prometheus as sp
    from seawall.events import FeatureToggled, PrimitiveRegistered, RetryCompleted

    role = sys.argv[1]
    registry = seawall.Registry()
    instrumentation = sp.instrument(CollectorRegistry(), seawall_registry=registry)
    assert instrumentation.multiprocess
    bus = registry.bus
    breaker = seawall.CircuitBreaker("db", failure_threshold=1, reset_timeout=600.0, registry=registry)
    bus.publish(PrimitiveRegistered("feature", "recs"))

    def ok():
        return 1

    def fail():
        raise TimeoutError("slow")

    calls = 3 if role == "a" else 5
    for _ in range(calls):
        breaker.call(ok)
    bus.publish(RetryCompleted("fetch", seawall.RetryOutcome.SUCCESS_WITH_RETRY, 2, 0.1, None))
    if role == "a":
        try:
            breaker.call(fail)
        except TimeoutError:
            pass
        try:
            breaker.call(ok)
        except seawall.CircuitOpenError:
            pass
        bus.publish(FeatureToggled("recs", False, "failures"))
    print(os.getpid())
    """
)


def run_worker(role: str, directory: Path) -> int:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", WORKER, role],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def collect(directory: Path) -> Samples:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return scrape(registry)


@pytest.mark.slow
def test_two_workers_add_up(tmp_path: Path) -> None:
    pid_a = run_worker("a", tmp_path)
    pid_b = run_worker("b", tmp_path)
    found = collect(tmp_path)
    # counters and histograms sum across workers
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="db", outcome="success") == 8
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="db", outcome="failure") == 1
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="db", outcome="rejected") == 1
    assert (
        get(found, "seawall_circuit_breaker_call_duration_seconds_count", breaker="db", outcome="success")
        == 8
    )
    assert (
        get(
            found,
            "seawall_circuit_breaker_transitions_total",
            breaker="db",
            from_state="closed",
            to_state="open",
        )
        == 1
    )
    assert get(found, "seawall_retry_calls_total", retry="fetch", outcome="success_with_retry") == 2
    # state gauges (livemax): a state is 1 when any live worker is in it
    assert get(found, "seawall_circuit_breaker_state", breaker="db", state="open") == 1
    assert get(found, "seawall_circuit_breaker_state", breaker="db", state="closed") == 1
    assert get(found, "seawall_circuit_breaker_state", breaker="db", state="half_open") == 0
    # feature_enabled (livemin): disabled in any worker shows as disabled
    assert get(found, "seawall_feature_enabled", feature="recs") == 0
    assert get(found, "seawall_build_info", version=__import__("seawall").__version__) == 1
    # a dead worker's gauges go away (its counters stay)
    mark_process_dead(pid_a, str(tmp_path))
    found = collect(tmp_path)
    assert get(found, "seawall_circuit_breaker_state", breaker="db", state="open") == 0
    assert get(found, "seawall_circuit_breaker_state", breaker="db", state="closed") == 1
    assert get(found, "seawall_feature_enabled", feature="recs") == 1
    assert get(found, "seawall_circuit_breaker_calls_total", breaker="db", outcome="success") == 8
    mark_process_dead(pid_b, str(tmp_path))
