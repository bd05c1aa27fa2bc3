"""The servers users run: gunicorn `--preload` with uvicorn workers, and `uvicorn --workers 2`.

tests/multiworker_app.py is built at import like a user's app; tests/gunicorn_conf.py is the
`child_exit` hook README documents. Each server runs in a process group of its own on a free
loopback port and is stopped (then killed) by the `servers` fixture. The multiprocess files are
read straight from the test process, so a count that reaches them came from the worker's own
writer thread, not from a scrape of that worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

import multiworker_app
import seawall
from redis_server import RedisServer
from stacktools.receivers import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="gunicorn needs fork"),
]

TESTS = Path(__file__).resolve().parent
EXPORTER = Path(seawall.__file__).resolve().parent.parent
APP = "multiworker_app:app"
WORKERS = 2
READY_SECONDS = 20.0  # two workers importing the app on a loaded 2-core machine
SETTLE_SECONDS = 5.0  # many times the app's SYNC_INTERVAL
MAX_REQUESTS = 300  # sent to /work until every worker answered
# README "One breaker for the fleet": a trip reaches every worker within sync_interval + 2 round
# trips, worst case 0.25 s with the default timeout=0.1.
TRIP_BOUND = 0.25
PACE = 2 * TRIP_BOUND  # between failing calls, so each one's streak reached every worker

Command = Callable[[int], list[str]]  # the server's command line for a port


class Server:
    """A server command in a process group of its own; `stop()` ends the whole group."""

    def __init__(self, command: Command, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *command(self.port)],
                env=env,
                cwd=TESTS,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not answer /health within {READY_SECONDS} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM to the group (a graceful stop: workers write their last counts), then SIGKILL."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # workers left behind, if any
        if self.process.poll() is None:
            self.process.wait(timeout=10)


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    return directory


@pytest.fixture
def servers(tmp_path: Path, metrics_dir: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(command: Command, **env: str) -> Server:
        path = os.pathsep.join(filter(None, [str(EXPORTER), str(TESTS), os.environ.get("PYTHONPATH")]))
        environ = {**os.environ, "PYTHONPATH": path, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **env}
        server = Server(command, environ, tmp_path / f"server{len(started)}.log")
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def gunicorn(port: int) -> list[str]:
    return [
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--preload",
        "--workers",
        str(WORKERS),
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--config",
        str(TESTS / "gunicorn_conf.py"),
        "--no-control-socket",  # gunicorn 27 would open one in $HOME, shared by every run
        "--graceful-timeout",
        "5",
        "--log-level",
        "warning",
        APP,
    ]


def uvicorn_workers(port: int) -> list[str]:
    return ["uvicorn", APP, "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(port)]


def get_fresh(url: str) -> httpx.Response:
    """One request on a connection of its own, so the kernel may hand it to any worker."""
    return httpx.get(url, timeout=5.0, headers={"connection": "close"})


def work_until_every_worker_answered(server: Server) -> tuple[int, set[int]]:
    """Concurrent `/work` requests until `WORKERS` pids answered; (requests sent, pids)."""
    pids: set[int] = set()
    sent = 0
    with ThreadPoolExecutor(4) as pool:
        while len(pids) < WORKERS and sent < MAX_REQUESTS:
            for response in pool.map(get_fresh, [server.base + "/work"] * 8):
                assert response.status_code == 200, response.text
                pids.add(response.json()["pid"])
            sent += 8
    assert len(pids) == WORKERS, f"{sent} requests reached only the workers {pids}"
    return sent, pids


def read_files(directory: Path) -> Callable[[str, dict[str, str]], float | None]:
    """A sample reader over the multiprocess files as they are now, collected in this process."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry.get_sample_value


def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = get_fresh(server.base + "/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


# One success per /work request at each primitive: (sample, labels).
COUNTED = {
    "breaker": ("seawall_circuit_breaker_calls_total", {"breaker": "mw.breaker", "outcome": "success"}),
    "timeout": ("seawall_timeout_calls_total", {"timeout": "mw.timeout", "outcome": "success"}),
    "retry": ("seawall_retry_calls_total", {"retry": "mw.retry", "outcome": "success_without_retry"}),
    "bulkhead": ("seawall_bulkhead_calls_total", {"bulkhead": "mw.bulkhead", "outcome": "admitted"}),
}


def call_counts(sample: Callable[[str, dict[str, str]], float | None]) -> dict[str, float | None]:
    return {primitive: sample(name, labels) for primitive, (name, labels) in COUNTED.items()}


def each_counted(calls: int) -> dict[str, float | None]:
    return dict.fromkeys(COUNTED, float(calls))


def wait_for_counts(metrics_dir: Path, sent: int) -> dict[str, float | None]:
    """Poll the files (never a worker) until every primitive counted `sent` calls; the last reading."""
    wanted = each_counted(sent)
    deadline = time.monotonic() + SETTLE_SECONDS
    counts = call_counts(read_files(metrics_dir))
    while counts != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        counts = call_counts(read_files(metrics_dir))
    return counts


def scraped_counts(server: Server) -> dict[str, float | None]:
    samples = scrape(server)
    return call_counts(lambda name, labels: samples.get((name, tuple(sorted(labels.items())))))


def test_gunicorn_preload_workers_write_their_own_counts(
    servers: Callable[..., Server], metrics_dir: Path
) -> None:
    server = servers(gunicorn)
    sent, pids = work_until_every_worker_answered(server)
    wanted = each_counted(sent)
    # No worker has been scraped: only their own writer threads can have put these counts there.
    assert wait_for_counts(metrics_dir, sent) == wanted
    assert {f"counter_{pid}.db" for pid in pids} <= {path.name for path in metrics_dir.iterdir()}
    for _ in range(2 * WORKERS):  # however the scrapes land, every one shows the whole fleet
        assert scraped_counts(server) == wanted
    # `livesum` capacity: each worker's, plus the preloading parent's (it holds the primitives and
    # writes its own file, never marked dead): docs/exporter.md "Multiprocess mode".
    sample = read_files(metrics_dir)
    capacity = multiworker_app.BULKHEAD_CAPACITY
    assert sample("seawall_bulkhead_capacity", {"bulkhead": "mw.bulkhead"}) == (WORKERS + 1) * capacity
    assert sample("seawall_bulkhead_in_flight", {"bulkhead": "mw.bulkhead"}) == 0


def test_a_replaced_gunicorn_worker_keeps_its_counts_and_drops_its_gauges(
    servers: Callable[..., Server], metrics_dir: Path
) -> None:
    server = servers(gunicorn)
    sent, pids = work_until_every_worker_answered(server)
    wanted = each_counted(sent)
    assert wait_for_counts(metrics_dir, sent) == wanted
    gone = min(pids)
    os.kill(gone, signal.SIGTERM)  # gunicorn starts another; child_exit marks this one dead
    capacity = (WORKERS + 1) * multiworker_app.BULKHEAD_CAPACITY  # the new worker's replaces it
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        names = {path.name for path in metrics_dir.iterdir()}
        sample = read_files(metrics_dir)
        replaced = sample("seawall_bulkhead_capacity", {"bulkhead": "mw.bulkhead"}) == capacity
        if f"gauge_livesum_{gone}.db" not in names and replaced:
            break
        time.sleep(0.1)
    assert f"gauge_livesum_{gone}.db" not in names, sorted(names)
    assert sample("seawall_bulkhead_capacity", {"bulkhead": "mw.bulkhead"}) == capacity
    assert f"counter_{gone}.db" in names  # a dead worker's counts stay
    assert call_counts(sample) == wanted


def test_uvicorn_spawned_workers_add_up(servers: Callable[..., Server], metrics_dir: Path) -> None:
    server = servers(uvicorn_workers)
    sent, _pids = work_until_every_worker_answered(server)
    wanted = each_counted(sent)
    assert wait_for_counts(metrics_dir, sent) == wanted
    for _ in range(2 * WORKERS):
        assert scraped_counts(server) == wanted
    # uvicorn's supervisor never imports the app: the capacity is the workers' alone.
    sample = read_files(metrics_dir)
    capacity = multiworker_app.BULKHEAD_CAPACITY
    assert sample("seawall_bulkhead_capacity", {"bulkhead": "mw.bulkhead"}) == WORKERS * capacity


def test_a_shared_breaker_made_before_the_fork_trips_every_worker(
    servers: Callable[..., Server], redis_server: RedisServer
) -> None:
    server = servers(gunicorn, MULTIWORKER_REDIS_URL=redis_server.url)
    url = server.base + "/shared"
    failed: list[int] = []  # the pid of each admitted (failing) call, in order
    opened_at = None
    for _ in range(WORKERS * multiworker_app.SHARED_THRESHOLD):
        response = get_fresh(url)
        if response.status_code == 503:
            opened_at = time.monotonic()
            break
        assert response.status_code == 502, response.text
        failed.append(response.json()["pid"])
        time.sleep(PACE)  # past the trip bound: every worker has synced the streaks before the next call
    # The fleet's streaks add up: it opens after `failure_threshold` failures in all, however they
    # fell on the workers (unsynced, each worker would need that many of its own).
    assert opened_at is not None, f"the shared breaker never opened; failures by pid: {failed}"
    assert len(failed) == multiworker_app.SHARED_THRESHOLD, f"failures by pid: {failed}"
    rejected: set[int] = set()
    late: list[tuple[float, int]] = []
    deadline = opened_at + SETTLE_SECONDS
    with ThreadPoolExecutor(4) as pool:
        while len(rejected) < WORKERS and time.monotonic() < deadline:
            sent_at = time.monotonic()
            for response in pool.map(get_fresh, [url] * 8):
                pid = response.json()["pid"]
                if response.status_code == 503:
                    rejected.add(pid)
                elif sent_at > opened_at + TRIP_BOUND:
                    late.append((sent_at - opened_at, pid))
    assert not late, f"admitted after the trip (seconds after, pid): {late}"
    assert len(rejected) == WORKERS, f"only {rejected} rejected; failures by pid: {failed}"
