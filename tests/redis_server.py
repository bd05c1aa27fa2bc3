"""A real redis-server on 127.0.0.1 and a free port, for the Redis rate-limiter tests.

No persistence (`--save ''`, `--appendonly no`), started and stopped by the tests' fixtures with
bounded waits. `kill()` stops it abruptly (SIGKILL) to test what limiters do when it vanishes;
`start()` again brings it back on the same port.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any

from stacktools.processes import stop_process
from stacktools.receivers import free_port

REDIS_SERVER = shutil.which("redis-server")
READY_SECONDS = 10.0


class RedisServer:
    def __init__(self) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed (scripts/install-system-deps.sh installs it)")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        assert REDIS_SERVER is not None
        command = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        command += ["--daemonize", "no", "--logfile", ""]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {READY_SECONDS}s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@contextlib.contextmanager
def worker_processes(
    target: Callable[..., None], args: Sequence[tuple[Any, ...]]
) -> Iterator[list[BaseProcess]]:
    """Forked worker processes running `target(*args[i])`, joined (bounded) or killed on exit."""
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=target, args=one) for one in args]
    for worker in workers:
        worker.start()
    try:
        yield workers
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.kill()
