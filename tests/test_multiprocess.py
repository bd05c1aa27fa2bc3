"""prometheus_client multiprocess mode: two worker processes drive real breakers; the collector sums."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from conftest import run_command
from exposition import Samples, get, scrape

WORKER = textwrap.dedent(
    """
    import os, sys
    from prometheus_client import CollectorRegistry
    import seawall
    from seawall import prometheus as sp
    role = sys.argv[1]
    registry = seawall.Registry()
    instrumentation = sp.instrument(CollectorRegistry(), seawall_registry=registry)
    assert instrumentation.multiprocess
    breaker = seawall.CircuitBreaker("db", failure_threshold=1, reset_timeout=600.0, registry=registry)
    fetch = seawall.Retry("fetch", attempts=2, sleep=lambda s: None, registry=registry)
    recs = seawall.Feature("recs", fallback=None, registry=registry)

    def ok():
        return 1

    def fail():
        raise TimeoutError("slow")

    calls = 3 if role == "a" else 5
    for _ in range(calls):
        breaker.call(ok)
    attempts = []
    fetch.call(lambda: attempts.append(1) or (len(attempts) > 1 or fail()))  # succeeds on its second attempt
    if role == "a":
        try:
            breaker.call(fail)
        except TimeoutError:
            pass
        try:
            breaker.call(ok)
        except seawall.CircuitOpenError:
            pass
        recs.disable()
    print(os.getpid())
    """
)


def run_worker(role: str, directory: Path) -> int:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    done = run_command(
        [sys.executable, "-c", WORKER, role],
        env=env,
        timeout=120,
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


RANDOM_WORKER = textwrap.dedent(
    """
    import json, random, sys
    from prometheus_client import CollectorRegistry
    import seawall
    from seawall import prometheus as sp

    seed = int(sys.argv[1])
    rng = random.Random(seed)
    now = [0.0]
    clock = lambda: now[0]
    registry = seawall.Registry()
    instrumentation = sp.instrument(CollectorRegistry(), seawall_registry=registry, max_label_values=2)
    assert instrumentation.multiprocess
    breakers = [
        seawall.CircuitBreaker(f"b{i}", failure_threshold=2, reset_timeout=5, clock=clock, registry=registry)
        for i in range(4)
    ]
    retries = [seawall.Retry(f"r{i}", attempts=2, sleep=lambda s: None, registry=registry) for i in range(3)]
    feature = seawall.Feature("recs", fallback=0, failure_threshold=2, clock=clock, registry=registry)

    def fail():
        raise TimeoutError("slow")

    for _ in range(300):
        op, target = rng.choice(["ok", "fail", "tick", "retry_ok", "retry_fail", "feature"]), rng.randrange(4)
        try:
            if op == "ok":
                breakers[target].call(lambda: 1)
            elif op == "fail":
                breakers[target].call(fail)
            elif op == "tick":
                now[0] += 3
            elif op == "retry_ok":
                retries[target % 3].call(lambda: 1)
            elif op == "retry_fail":
                retries[target % 3].call(fail)
            else:
                feature.call(fail if rng.random() < 0.5 else (lambda: 1))
        except Exception:
            pass
    print(json.dumps({
        "breakers": {b.name: b.snapshot().calls for b in breakers},
        "transitions": {
            b.name: [[f.value, t.value, n] for (f, t), n in b.snapshot().transitions.items()]
            for b in breakers
        },
        "retries": {r.name: r.snapshot().calls for r in retries},
        "fallbacks": feature.snapshot().fallbacks,
    }))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [(1, 2, 3), (40, 41, 42)])
def test_random_work_in_workers_sums_to_their_snapshots(tmp_path: Path, seeds: tuple[int, ...]) -> None:
    """Exact sums across workers, `_other` included: the exposition equals the workers' snapshots."""
    import json

    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    reports = []
    for seed in seeds:
        done = run_command(
            [sys.executable, "-c", RANDOM_WORKER, str(seed)],
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout))
    found = collect(tmp_path)
    label = {"b0": "b0", "b1": "b1", "b2": "_other", "b3": "_other"}
    calls: dict[tuple[str, str], int] = {}
    moved: dict[tuple[str, str, str], int] = {}
    for report in reports:
        for name, by_outcome in report["breakers"].items():
            for outcome, count in by_outcome.items():
                calls[(label[name], outcome)] = calls.get((label[name], outcome), 0) + count
        for name, items in report["transitions"].items():
            for frm, to, count in items:
                key = (label[name], frm, to)
                moved[key] = moved.get(key, 0) + count
    for (name, outcome), count in calls.items():
        assert (
            get(found, "seawall_circuit_breaker_calls_total", breaker=name, outcome=outcome) or 0
        ) == count
    for (name, frm, to), count in moved.items():
        got = get(
            found, "seawall_circuit_breaker_transitions_total", breaker=name, from_state=frm, to_state=to
        )
        assert got == count
    retry_label = {"r0": "r0", "r1": "r1", "r2": "_other"}
    for outcome in ("success_without_retry", "failed_with_retry"):
        for name in ("r0", "r1", "r2"):
            want = sum(
                report["retries"][n][outcome]
                for report in reports
                for n in retry_label
                if retry_label[n] == retry_label[name]
            )
            assert get(found, "seawall_retry_calls_total", retry=retry_label[name], outcome=outcome) == want
    for reason in ("error", "circuit_open"):
        want = sum(report["fallbacks"][reason] for report in reports)
        assert get(found, "seawall_fallbacks_total", feature="recs", reason=reason) == want
