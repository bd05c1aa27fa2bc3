"""Behaviours of HTTP retry transports written by others, checked on both seawall clients
(`seawall.httpx` and `seawall.requests`) against a real upstream on 127.0.0.1.

Adapted, not copied: the cases of httpx-retries' tests/test_transport.py (a success never sleeps;
a status that stays 429 is retried until the attempts run out and the last answer is returned; a
non-retryable status or method is answered at once; a retryable exception is retried and then
raised, a non-retryable one raised at once; every request gets its own attempts; Retry-After sets
each delay) and of urllib3's Retry (a Retry-After date in the past means no wait). Their tests
mock the transport and the sleep; here the upstream is real and only the sleep is recorded.
Plus the property every client must hold: a request that may not be repeated is sent exactly once.
"""

from __future__ import annotations

import email.utils
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import seawall
import seawall.httpx as sh
import seawall.requests as sr
from http_upstream import Upstream
from seawall.clients.policy import TRANSIENT_STATUSES

ATTEMPTS = 4
Send = Callable[..., Any]  # (method, url, **options) -> a response with status_code and text


@pytest.fixture(params=["httpx", "requests"])
def client(request: pytest.FixtureRequest, registry: seawall.Registry) -> Iterator[tuple[Send, list[float]]]:
    """One of the two clients with the default policy except a recorded sleep and short delays."""
    slept: list[float] = []
    retry = {"attempts": ATTEMPTS, "initial": 0.01, "max_delay": 10.0, "sleep": slept.append}
    if request.param == "httpx":
        with httpx.Client(transport=sh.ResilientTransport(registry=registry, retry=retry)) as c:

            def send(method: str, url: str, data: Any = None) -> httpx.Response:
                return c.request(method, url, content=data)

            yield send, slept
    else:
        with requests.Session() as s:
            adapter = sr.ResilientAdapter(registry=registry, retry=retry)
            s.mount("http://", adapter)
            yield s.request, slept


def test_a_success_never_sleeps(upstream: Upstream, client: tuple[Send, list[float]]) -> None:
    send, slept = client
    assert send("GET", f"{upstream.base}/status/200").status_code == 200
    assert slept == []


def test_a_status_that_stays_transient_is_retried_then_returned(
    upstream: Upstream, client: tuple[Send, list[float]]
) -> None:
    send, slept = client
    response = send("GET", f"{upstream.base}/status/429")
    assert response.status_code == 429
    assert response.text == "status 429"
    assert len(slept) == ATTEMPTS - 1
    assert len(upstream.hits("/status/429")) == ATTEMPTS


@pytest.mark.parametrize(("method", "status"), [("GET", 403), ("POST", 429), ("PATCH", 503)])
def test_a_status_or_method_that_may_not_be_retried_is_answered_at_once(
    upstream: Upstream, client: tuple[Send, list[float]], method: str, status: int
) -> None:
    send, slept = client
    assert send(method, f"{upstream.base}/flaky/m?fail=1&status={status}").status_code == status
    assert slept == []


def test_a_retryable_exception_is_retried_then_raised(upstream: Upstream, registry: seawall.Registry) -> None:
    slept: list[float] = []
    retry = {"attempts": ATTEMPTS, "initial": 0.01, "sleep": slept.append}
    t = sh.ResilientTransport(registry=registry, retry=retry, attempt_timeout=None)
    with httpx.Client(transport=t, timeout=0.1) as c, pytest.raises(httpx.ReadTimeout):
        c.get(f"{upstream.base}/slow?seconds=2")
    assert len(slept) == ATTEMPTS - 1


def test_a_non_retryable_exception_is_raised_at_once(client: tuple[Send, list[float]]) -> None:
    send, slept = client
    with pytest.raises((httpx.UnsupportedProtocol, requests.exceptions.InvalidSchema)):
        send("GET", "ftp://127.0.0.1/file")
    assert slept == []


def test_every_request_gets_its_own_attempts(upstream: Upstream, client: tuple[Send, list[float]]) -> None:
    send, slept = client
    for path in ("/status/503", "/status/502"):
        assert send("GET", f"{upstream.base}{path}").status_code in (502, 503)
    assert len(slept) == 2 * (ATTEMPTS - 1)


def test_retry_after_sets_every_delay(upstream: Upstream, client: tuple[Send, list[float]]) -> None:
    send, slept = client
    assert send("GET", f"{upstream.base}/status/429?retry_after=5").status_code == 429
    assert slept == [5.0] * (ATTEMPTS - 1)


def test_a_retry_after_date_in_the_past_means_no_wait(
    upstream: Upstream, client: tuple[Send, list[float]]
) -> None:
    send, slept = client
    past = email.utils.formatdate(time.time() - 60, usegmt=True).replace(" ", "%20")
    assert send("GET", f"{upstream.base}/flaky/past?fail=1&status=503&retry_after={past}").status_code == 200
    assert slept == [0.0]


_unique = itertools.count()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["POST", "PATCH", "CONNECT-LIKE"]),
    status=st.sampled_from(sorted(TRANSIENT_STATUSES)),
    fail=st.integers(min_value=0, max_value=3),
    streamed=st.booleans(),
)
def test_a_request_that_may_not_be_repeated_is_sent_exactly_once(
    upstream: Upstream,
    registry: seawall.Registry,
    client: tuple[Send, list[float]],
    method: str,
    status: int,
    fail: int,
    streamed: bool,
) -> None:
    """Non-idempotent methods, and idempotent ones with a body that cannot be replayed."""
    send, _ = client
    for breaker in registry.breakers():  # the upstream fails on purpose, example after example
        breaker.reset()
    if method == "CONNECT-LIKE":  # an idempotent method whose body is a stream: not replayable either
        method = "PUT"
        streamed = True
    body: Any = iter([b"a", b"b"]) if streamed else b"ab"
    path = f"/flaky/once-{next(_unique)}"
    answer = send(method, f"{upstream.base}{path}?fail={fail}&status={status}", data=body)
    assert answer.status_code == (status if fail else 200)
    assert upstream.hits(path) == [(method, b"ab")]
