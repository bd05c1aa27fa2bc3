"""HTTP client case: what a resilient client adds to each request over bare httpx, against a
loopback server in its own process, beside the same pipeline composed by hand from httpx,
tenacity and pybreaker, and beside httpx-retries' transport (retries only)."""

from __future__ import annotations

import contextlib
import functools
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pybreaker
import tenacity

from .harness import CaseResult, Config, Subjects, Unavailable, case, seawall_attr

TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def loopback_server() -> Iterator[str]:
    """`bench.upstream` in a child process on a free port; stopped on exit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the loopback server did not start")
        yield f"http://127.0.0.1:{port}/"
    finally:
        child.terminate()
        child.wait(timeout=10)


class TransientStatus(Exception):
    """What a hand-composed client raises so tenacity and pybreaker see a 5xx."""


def hand_composed(client: httpx.Client, url: str) -> Callable[[], httpx.Response]:
    """The pipeline a user writes today: tenacity around pybreaker around the request, a status
    check, the same attempts and delays as seawall's defaults."""
    breaker = pybreaker.CircuitBreaker(fail_max=10, reset_timeout=5)

    def attempt() -> httpx.Response:
        response = client.get(url, timeout=10.0)
        if response.status_code in TRANSIENT:
            response.close()
            raise TransientStatus(response.status_code)
        return response

    @tenacity.retry(
        stop=tenacity.stop_after_attempt(4) | tenacity.stop_after_delay(30),
        wait=tenacity.wait_exponential_jitter(multiplier=2, max=30),
        retry=tenacity.retry_if_exception_type((httpx.TransportError, TransientStatus)),
        reraise=True,
    )
    def get() -> httpx.Response:
        return breaker.call(attempt)  # type: ignore[no-any-return]

    return get


class Canned(httpx.BaseTransport):
    """The wrapped transport of the in-process case: answers `200 ok` without a socket, so the
    subjects differ only by what they add (a loopback round trip varies by more than that here)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"ok")


SEAWALL, SAME_STAGES, BY_HAND, RETRIES = (
    "seawall ResilientTransport",
    "seawall, retry + breaker only",
    "httpx + tenacity + pybreaker (by hand)",
    "httpx-retries RetryTransport",
)


def _subjects(
    url: str, inner: Callable[[], httpx.BaseTransport | None], clients: list[httpx.Client]
) -> Subjects:
    """Bare httpx and the four clients, each over its own `inner()` transport (None: httpx's own)."""

    def client(transport: httpx.BaseTransport | None = None) -> httpx.Client:
        made = httpx.Client(transport=transport)
        clients.append(made)
        return made

    def get(made: httpx.Client) -> Callable[[], object]:
        return functools.partial(made.get, url)

    def seawall_client(**stages: Any) -> Callable[[], object]:
        transport = seawall_attr("seawall.httpx.ResilientTransport")
        registry = seawall_attr("seawall.Registry")()
        return get(client(transport(inner(), name="bench", registry=registry, **stages)))

    def httpx_retries() -> Callable[[], object]:
        try:
            from httpx_retries import RetryTransport
        except ImportError as exc:
            raise Unavailable(f"httpx-retries is not installed ({exc})") from exc
        return get(client(RetryTransport(transport=inner())))

    subjects = Subjects(get(client(inner())))
    subjects.build(SEAWALL, seawall_client)
    subjects.build(
        SAME_STAGES, lambda: seawall_client(bulkhead=None, total_timeout=None, attempt_timeout=None)
    )
    subjects[BY_HAND] = hand_composed(client(inner()), url)
    subjects.build(RETRIES, httpx_retries)
    return subjects


def _measure(result: CaseResult, url: str, inner: Callable[[], Any], config: Config) -> CaseResult:
    clients: list[httpx.Client] = []
    try:
        result.measurements = _subjects(url, inner, clients).overhead(config)
    finally:
        for made in clients:
            made.close()
    result.ratio_target(f"seawall / {BY_HAND} overhead", SEAWALL, BY_HAND, 0.5)
    result.ratio_target(f"seawall (same two stages) / {BY_HAND} overhead", SAME_STAGES, BY_HAND, 0.5)
    return result


@case("http.client", "GET over an in-process transport: per-request overhead over bare httpx")
def in_process(result: CaseResult, config: Config) -> CaseResult:
    """What each client adds to a request, with the socket taken out (the precise comparison)."""
    return _measure(result, "http://upstream.test/", Canned, config)


@case("http.loopback", "GET to a loopback server: per-request overhead over bare httpx")
def loopback(result: CaseResult, config: Config) -> CaseResult:
    """The same clients against a real server on 127.0.0.1 in its own process: the overhead next
    to a real round trip (whose own variation on a shared box is of the same size)."""
    with loopback_server() as url:
        return _measure(result, url, lambda: None, config)
