"""prometheus_client multiprocess mode: two worker processes drive real breakers; the collector sums."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from conftest import run_command
from exposition import Samples, get, scrape
from seawall.metrics.contract import CONTRACT, by_name

TESTS = Path(__file__).parent


def worker_env(directory: Path) -> dict[str, str]:
    """A worker imports this tree's seawall and the test helpers, and writes into `directory`."""
    path = f"{TESTS.parent / 'exporter'}:{TESTS}"
    return {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin", "PYTHONPATH": path}


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


def run_script(script: str, directory: Path, *args: str) -> str:
    """Run `script` as a worker writing into `directory` (also its cwd); its stdout."""
    done = run_command(
        [sys.executable, "-c", script, *args], env=worker_env(directory), cwd=directory, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def run_worker(role: str, directory: Path) -> int:
    return int(run_script(WORKER, directory, role).strip())


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


PARITY_WORKER = textwrap.dedent(
    """
    import json, sys
    from prometheus_client import CollectorRegistry
    import seawall
    from seawall import prometheus as sp
    from seawall.prometheus._collector import SnapshotCollector
    from exposition import scrape
    from contract_work import random_work

    registry = seawall.Registry()
    instrumentation = sp.instrument(CollectorRegistry(), seawall_registry=registry, max_label_values=3)
    assert instrumentation.multiprocess
    random_work(registry, int(sys.argv[1]), sys.argv[2])
    own = CollectorRegistry()  # this worker alone, as the single-process exporter shows it
    own.register(SnapshotCollector(registry, 3, seawall.__version__))
    raw = {
        kind: sum(sum(item.snapshot().calls.values()) for item in registry.items(kind))
        for kind in ("breaker", "retry", "timeout", "bulkhead", "rate_limiter")
    }
    print(json.dumps({"samples": [[n, dict(l), v] for (n, l), v in scrape(own).items()], "raw": raw}))
    """
)


def _fold(name: str, values: list[float]) -> float:
    """How the merged exposition combines one sample of several workers: the contract's fold."""
    spec = by_name(name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count"))
    if spec.type != "gauge" or spec.fold == "sum":
        return sum(values)
    return min(values) if spec.fold == "min" else max(values)  # "worst" one-hot states: livemax


@pytest.mark.slow
def test_three_workers_merge_to_the_sum_of_their_snapshots(tmp_path: Path, redis_server: Any) -> None:
    """Three real workers, random work on every kind: the merged multiprocess exposition equals, for
    every family of the contract, the workers' own single-process expositions folded as the
    contract says (counters and histograms summed, gauges by their live mode)."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PARITY_WORKER, str(seed), redis_server.url],
            env=worker_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (7, 8, 9)
    ]
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        reports.append(json.loads(out))
    merged = collect(tmp_path)
    per_sample: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    for report in reports:
        for name, labels, value in report["samples"]:
            per_sample.setdefault((name, tuple(sorted(labels.items()))), []).append(value)
    expected = {key: _fold(key[0], values) for key, values in per_sample.items()}
    assert set(merged) == set(expected)
    for key, value in expected.items():
        assert merged[key] == pytest.approx(value), key
    families = {spec.sample_name for spec in CONTRACT}
    shown = {
        by_name(name.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")).sample_name
        for name, _ in merged
    }
    assert shown == families  # every family of the contract has series
    for kind, family in (
        ("breaker", "seawall_circuit_breaker_calls_total"),
        ("retry", "seawall_retry_calls_total"),
        ("timeout", "seawall_timeout_calls_total"),
        ("bulkhead", "seawall_bulkhead_calls_total"),
        ("rate_limiter", "seawall_rate_limiter_calls_total"),
    ):  # and nothing lost against the primitives' own counts
        total = sum(value for (name, _), value in merged.items() if name == family)
        assert total == sum(report["raw"][kind] for report in reports) > 0


HARD_KILLED_WORKER = textwrap.dedent(
    """
    import os, time
    from prometheus_client import CollectorRegistry
    import seawall
    from seawall import prometheus as sp

    registry = seawall.Registry()
    sp.instrument(CollectorRegistry(), seawall_registry=registry, sync_interval=0.1)
    timeout = seawall.Timeout("db", 1.0, registry=registry)
    for _ in range(7):
        timeout.call(lambda: None)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(n.startswith("counter_") for n in os.listdir(".")):
        time.sleep(0.05)
    time.sleep(0.3)  # at least two more intervals
    os._exit(0)  # no exit handlers: only what the interval wrote
    """
)


@pytest.mark.slow
def test_a_worker_that_dies_without_exit_handlers_kept_its_last_interval(tmp_path: Path) -> None:
    run_script(HARD_KILLED_WORKER, tmp_path)
    found = collect(tmp_path)
    assert get(found, "seawall_timeout_calls_total", timeout="db", outcome="success") == 7
    assert get(found, "seawall_timeout_call_duration_seconds_count", timeout="db") == 7


def test_sync_interval_is_checked() -> None:
    import seawall
    from seawall import prometheus as sp

    registry = seawall.Registry()
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sync_interval"):
            sp.instrument(CollectorRegistry(), seawall_registry=registry, sync_interval=bad)
    with pytest.raises(TypeError, match="sync_interval"):
        sp.instrument(CollectorRegistry(), seawall_registry=registry, sync_interval="1")  # type: ignore[arg-type]


PRELOADED_ARBITER = textwrap.dedent(
    """
    import os, time
    from prometheus_client import CollectorRegistry
    import seawall
    from seawall import prometheus as sp

    # gunicorn --preload: the app (its exporter and primitives) is made once, then workers fork
    registry = seawall.Registry()
    sp.instrument(CollectorRegistry(), seawall_registry=registry, sync_interval=0.1)
    timeout = seawall.Timeout("db", 1.0, registry=registry)
    for _ in range(2):  # a warm-up call at import: the parent's, inherited by every worker
        timeout.call(lambda: None)
    time.sleep(0.3)  # the parent's thread has written its own reading
    children = []
    for calls in (3, 4):
        pid = os.fork()
        if pid == 0:
            for _ in range(calls):
                timeout.call(lambda: None)
            time.sleep(0.5)  # several intervals, and never scraped
            os._exit(0)  # no exit handlers: only what the worker's own thread wrote
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    print(" ".join(str(pid) for pid in children))
    """
)


@pytest.mark.slow
def test_workers_forked_after_instrument_write_their_own_counts(tmp_path: Path) -> None:
    """The writer's thread does not survive a fork: each forked worker starts its own and writes
    its own file (before, the workers' counts reached no file unless a scrape hit that worker),
    holding only the calls it made: the parent's 2 calls before the fork, which both workers'
    primitives inherited, are counted once (in the parent's file), not three times."""
    children = run_script(PRELOADED_ARBITER, tmp_path).split()
    files = {path.name for path in tmp_path.iterdir()}
    assert {f"counter_{pid}.db" for pid in children} <= files
    found = collect(tmp_path)
    assert get(found, "seawall_timeout_calls_total", timeout="db", outcome="success") == 2 + 3 + 4
    assert get(found, "seawall_timeout_call_duration_seconds_count", timeout="db") == 9
    buckets = [
        value
        for (name, labels), value in found.items()
        if name == "seawall_timeout_call_duration_seconds_bucket" and dict(labels)["le"] == "+Inf"
    ]
    assert buckets == [9]


def test_supervise_outside_multiprocess_mode_changes_nothing() -> None:
    import seawall
    from seawall import prometheus as sp

    registry, collector = seawall.Registry(), CollectorRegistry()
    sp.instrument(collector, seawall_registry=registry)
    seawall.Bulkhead("pool", max_concurrent=3, registry=registry)
    sp.mark_supervisor()  # single process: this process is the worker, its gauges stay
    assert get(scrape(collector), "seawall_bulkhead_capacity", bulkhead="pool") == 3
