"""The servers users run: gunicorn `--preload` with uvicorn workers, and `uvicorn --workers 2`.

tests/multiworker_app.py is built at import like a user's app; gunicorn's config is README's
`gunicorn.conf.py` block itself (its `child_exit` hook), so the documented hook is the tested one.
Each server runs in a process group of its own on a free loopback port and is stopped (then
killed) by the `servers` fixture. The multiprocess files are read straight from the test process,
so a count that reaches them came from the worker's own writer thread, not from a scrape of it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
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

import multiworker_app
import seawall
from exposition import Samples, parse
from redis_server import RedisServer
from stacktools.harness import http, wait_until
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
CALLS_AT_IMPORT = 3  # through each primitive, by the module as it is imported
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
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            return http("GET", self.base + "/health", timeout=1.0)[0] == 200

        try:
            wait_until(answers, READY_SECONDS, "the server's /health")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

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


def readme_gunicorn_conf() -> str:
    """README's `gunicorn.conf.py` block ("Several workers")."""
    readme = (TESTS.parent / "README.md").read_text()
    found = re.search(r"```python\n# gunicorn\.conf\.py\n(.*?)```", readme, re.S)
    assert found, "README lost its gunicorn.conf.py block"
    return found.group(1)


@pytest.fixture
def gunicorn_conf(tmp_path: Path) -> Path:
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(readme_gunicorn_conf())
    return path


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    return directory


@pytest.fixture
def servers(tmp_path: Path, metrics_dir: Path) -> Iterator[Callable[..., Server]]:
    numbers = itertools.count()
    with contextlib.ExitStack() as stopping:  # every server started is stopped, ready or not

        def start(command: Command, **env: str) -> Server:
            path = os.pathsep.join(filter(None, [str(EXPORTER), str(TESTS), os.environ.get("PYTHONPATH")]))
            environ = {**os.environ, "PYTHONPATH": path, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **env}
            server = Server(command, environ, tmp_path / f"server{next(numbers)}.log")
            stopping.callback(server.stop)
            server.wait_ready()
            return server

        yield start


def gunicorn(conf: Path) -> Command:
    """gunicorn `--preload` with two uvicorn workers and the config file `conf`."""

    def command(port: int) -> list[str]:
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
            str(conf),
            "--no-control-socket",  # gunicorn 27 would open one in $HOME, shared by every run
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
            APP,
        ]

    return command


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


def scrape(server: Server) -> Samples:
    response = get_fresh(server.base + "/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


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


def work_and_count(
    server: Server, metrics_dir: Path, before: int = 0
) -> tuple[dict[str, float | None], set[int]]:
    """`/work` until every worker answered, then its counts in the files (plus `before` calls made
    at import); (the counts, the pids)."""
    sent, pids = work_until_every_worker_answered(server)
    wanted = each_counted(sent + before)
    # No worker has been scraped: only their own writer threads can have put these counts there.
    assert wait_for_counts(metrics_dir, sent + before) == wanted
    return wanted, pids


def scraped_counts(server: Server) -> dict[str, float | None]:
    samples = scrape(server)
    return call_counts(lambda name, labels: samples.get((name, tuple(sorted(labels.items())))))


def test_gunicorn_preload_workers_write_their_own_counts(
    servers: Callable[..., Server], metrics_dir: Path, gunicorn_conf: Path
) -> None:
    # Calls the parent makes at import are inherited by both workers and counted once.
    server = servers(gunicorn(gunicorn_conf), MULTIWORKER_CALLS_AT_IMPORT=str(CALLS_AT_IMPORT))
    wanted, pids = work_and_count(server, metrics_dir, before=CALLS_AT_IMPORT)
    assert {f"counter_{pid}.db" for pid in pids} <= {path.name for path in metrics_dir.iterdir()}
    for _ in range(2 * WORKERS):  # however the scrapes land, every one shows the whole fleet
        assert scraped_counts(server) == wanted
    # `livesum` capacity: the workers' alone. The preloading arbiter holds the primitives too, but
    # README's `when_ready` hook (seawall.prometheus.mark_supervisor) took its gauges out of the sums
    # (without it: 3 x capacity, and a saturated fleet at 2/3 utilization); its counters stay.
    sample = read_files(metrics_dir)
    capacity = multiworker_app.BULKHEAD_CAPACITY
    assert sample("seawall_bulkhead_capacity", {"bulkhead": "mw.bulkhead"}) == WORKERS * capacity
    assert sample("seawall_bulkhead_in_flight", {"bulkhead": "mw.bulkhead"}) == 0
    arbiter = server.process.pid
    assert arbiter not in pids
    assert not list(metrics_dir.glob(f"gauge_*_{arbiter}.db"))
    assert (metrics_dir / f"counter_{arbiter}.db").exists()  # the calls it made at import


def test_a_replaced_gunicorn_worker_keeps_its_counts_and_drops_its_gauges(
    servers: Callable[..., Server], metrics_dir: Path, gunicorn_conf: Path
) -> None:
    server = servers(gunicorn(gunicorn_conf))
    wanted, pids = work_and_count(server, metrics_dir)
    gone = min(pids)
    os.kill(gone, signal.SIGTERM)  # gunicorn starts another; child_exit marks this one dead
    capacity = WORKERS * multiworker_app.BULKHEAD_CAPACITY  # the new worker's replaces it

    def replaced() -> bool:
        capacities = read_files(metrics_dir)("seawall_bulkhead_capacity", {"bulkhead": "mw.bulkhead"})
        live = {path.name for path in metrics_dir.glob("gauge_livesum_*.db")}
        # the replacement wrote its gauges: one file per live worker, none for the arbiter
        workers = live - {f"gauge_livesum_{gone}.db", f"gauge_livesum_{server.process.pid}.db"}
        return live == workers and len(workers) == WORKERS and capacities == capacity

    wait_until(replaced, READY_SECONDS, f"worker {gone} replaced and marked dead")
    assert (metrics_dir / f"counter_{gone}.db").exists()  # a dead worker's counts stay
    assert call_counts(read_files(metrics_dir)) == wanted


def test_uvicorn_spawned_workers_add_up(servers: Callable[..., Server], metrics_dir: Path) -> None:
    # Spawned, each worker imports the app itself: its calls at import count once per worker.
    server = servers(uvicorn_workers, MULTIWORKER_CALLS_AT_IMPORT=str(CALLS_AT_IMPORT))
    wanted, _pids = work_and_count(server, metrics_dir, before=WORKERS * CALLS_AT_IMPORT)
    for _ in range(2 * WORKERS):
        assert scraped_counts(server) == wanted
    # uvicorn's supervisor never imports the app: the capacity is the workers' alone.
    sample = read_files(metrics_dir)
    capacity = multiworker_app.BULKHEAD_CAPACITY
    assert sample("seawall_bulkhead_capacity", {"bulkhead": "mw.bulkhead"}) == WORKERS * capacity


def test_a_shared_breaker_made_before_the_fork_trips_every_worker(
    servers: Callable[..., Server], redis_server: RedisServer, gunicorn_conf: Path
) -> None:
    server = servers(gunicorn(gunicorn_conf), MULTIWORKER_REDIS_URL=redis_server.url)
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
