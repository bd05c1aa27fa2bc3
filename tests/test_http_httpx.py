"""seawall.httpx against a real upstream (uvicorn on 127.0.0.1, tests/http_upstream.py): what is
retried and what is not, Retry-After, resets, timeouts, the breaker per upstream, and that no
connection is left checked out."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import seawall
import seawall.httpx as sh
from http_upstream import ResetServer, Upstream
from seawall import CallTimeoutError, CircuitOpenError

FAST = {"initial": 0.01, "max_delay": 5.0}


def transport(registry: seawall.Registry, **stages: Any) -> sh.ResilientTransport:
    stages.setdefault("retry", FAST)
    return sh.ResilientTransport(name="up", registry=registry, **stages)


def pool_busy(t: sh.ResilientTransport | sh.AsyncResilientTransport) -> int:
    """Connections of the wrapped transport's pool that are checked out (not idle, not closed)."""
    pool = t.inner._pool  # type: ignore[union-attr]
    return sum(1 for c in pool.connections if not (c.is_idle() or c.is_closed()))


@pytest.fixture
def reset_server() -> Iterator[ResetServer]:
    server = ResetServer(resets=2)
    yield server
    server.stop()


def test_transient_statuses_are_retried_and_the_retried_answers_closed(
    upstream: Upstream, registry: seawall.Registry
) -> None:
    t = transport(registry)
    with httpx.Client(transport=t, base_url=upstream.base) as client:
        response = client.get("/flaky/a?fail=2&status=503")
        assert response.status_code == 200
        assert response.text == "ok"
        assert pool_busy(t) == 0
    assert len(upstream.hits("/flaky/a")) == 3
    snap = registry.get("retry", "up").snapshot()
    assert snap.calls["success_with_retry"] == 1
    assert snap.retries_by_error == {"UpstreamStatusError": 2}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_every_transient_status_is_retried_and_the_last_answer_returned(
    upstream: Upstream, registry: seawall.Registry, status: int
) -> None:
    t = transport(registry, retry={**FAST, "attempts": 3})
    with httpx.Client(transport=t, base_url=upstream.base) as client:
        response = client.get(f"/status/{status}")
        assert response.status_code == status  # the caller gets the upstream's answer, not an exception
        assert response.text == f"status {status}"  # ... and can still read it
        assert pool_busy(t) == 0
    assert len(upstream.hits(f"/status/{status}")) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 501])
def test_other_answers_are_returned_at_once_and_do_not_trip_the_breaker(
    upstream: Upstream, registry: seawall.Registry, status: int
) -> None:
    t = transport(registry, breaker={"failure_threshold": 1})
    with httpx.Client(transport=t, base_url=upstream.base) as client:
        for _ in range(3):
            assert client.get(f"/status/{status}").status_code == status
    assert len(upstream.hits(f"/status/{status}")) == 3
    snap = registry.get("breaker", f"up@http:127.0.0.1:{upstream.port}").snapshot()
    assert snap.state.value == "closed"
    assert snap.calls.get("failure", 0) == 0


def test_post_is_sent_once_unless_it_carries_an_idempotency_key(
    upstream: Upstream, registry: seawall.Registry
) -> None:
    with httpx.Client(transport=transport(registry), base_url=upstream.base) as client:
        assert client.post("/flaky/p?fail=2", content=b"x").status_code == 503
        assert client.patch("/flaky/q?fail=2", content=b"x").status_code == 503
        keyed = client.post("/flaky/k?fail=2", content=b"x", headers={"Idempotency-Key": "42"})
        assert keyed.status_code == 200
    assert len(upstream.hits("/flaky/p")) == 1
    assert len(upstream.hits("/flaky/q")) == 1
    assert upstream.hits("/flaky/k") == [("POST", b"x")] * 3


def test_a_streamed_body_is_never_sent_twice(upstream: Upstream, registry: seawall.Registry) -> None:
    def body() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    with httpx.Client(transport=transport(registry), base_url=upstream.base) as client:
        assert client.put("/flaky/s?fail=2", content=body()).status_code == 503
    assert upstream.hits("/flaky/s") == [("PUT", b"ab")]


def test_retry_after_seconds_and_date_drive_the_delay(upstream: Upstream, registry: seawall.Registry) -> None:
    slept: list[float] = []
    t = transport(registry, retry={**FAST, "sleep": slept.append})
    date = email.utils.formatdate(time.time() + 3, usegmt=True).replace(" ", "%20")
    with httpx.Client(transport=t, base_url=upstream.base) as client:
        assert client.get("/flaky/r?fail=1&status=429&retry_after=2").status_code == 200
        assert client.get(f"/flaky/d?fail=1&status=503&retry_after={date}").status_code == 200
    assert slept[0] == 2.0
    assert 1.0 < slept[1] <= 3.0  # an HTTP-date, second resolution


def test_a_retry_after_past_the_deadline_or_max_delay_gives_up_at_once(
    upstream: Upstream, registry: seawall.Registry
) -> None:
    slept: list[float] = []
    t = transport(registry, total_timeout=5.0, retry={**FAST, "max_delay": 60.0, "sleep": slept.append})
    with httpx.Client(transport=t, base_url=upstream.base) as client:
        assert client.get("/flaky/late?fail=1&status=503&retry_after=30").status_code == 503
    assert slept == []
    assert len(upstream.hits("/flaky/late")) == 1


def test_429_is_rate_limited_not_an_upstream_failure(upstream: Upstream, registry: seawall.Registry) -> None:
    t = transport(registry, retry=None, breaker={"failure_threshold": 1})
    with httpx.Client(transport=t, base_url=upstream.base) as client:
        for _ in range(3):
            assert client.get("/status/429").status_code == 429
        assert client.get("/status/503").status_code == 503  # the first counted failure opens it
        with pytest.raises(CircuitOpenError):
            client.get("/status/200")
    snap = registry.get("breaker", f"up@http:127.0.0.1:{upstream.port}").snapshot()
    assert snap.calls["ignored"] == 3
    assert snap.calls["failure"] == 1
    assert len(upstream.hits("/status/429")) == 3


def test_connection_resets_are_retried(reset_server: ResetServer, registry: seawall.Registry) -> None:
    with httpx.Client(transport=transport(registry), base_url=reset_server.base) as client:
        response = client.get("/")
    assert response.text == "ok"
    assert reset_server.accepted == 3


def test_a_reset_post_is_not_repeated(reset_server: ResetServer, registry: seawall.Registry) -> None:
    with (
        httpx.Client(transport=transport(registry), base_url=reset_server.base) as client,
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
    ):
        client.post("/", content=b"x")
    assert reset_server.accepted == 1


def test_the_sync_attempt_timeout_bounds_each_attempt(upstream: Upstream, registry: seawall.Registry) -> None:
    t = transport(registry, attempt_timeout=0.3, retry={**FAST, "attempts": 2})
    started = time.monotonic()
    with httpx.Client(transport=t, base_url=upstream.base) as client, pytest.raises(CallTimeoutError):
        client.get("/slow?seconds=5")
    assert time.monotonic() - started < 2.0
    assert len(upstream.hits("/slow")) == 2
    assert registry.get("timeout", "up.attempt").snapshot().calls["timed_out"] == 2


def test_the_total_timeout_bounds_the_retries(upstream: Upstream, registry: seawall.Registry) -> None:
    t = transport(registry, total_timeout=0.5, attempt_timeout=0.2, retry={**FAST, "attempts": 10})
    started = time.monotonic()
    with httpx.Client(transport=t, base_url=upstream.base) as client, pytest.raises(CallTimeoutError):
        client.get("/slow?seconds=5")
    assert time.monotonic() - started < 1.5
    assert 1 <= len(upstream.hits("/slow")) <= 3


def test_one_breaker_per_upstream_and_a_bounded_number_of_them(
    upstream: Upstream, registry: seawall.Registry
) -> None:
    t = transport(registry, retry=None, breaker={"failure_threshold": 1}, max_authorities=1)
    with httpx.Client(transport=t) as client:
        assert client.get(f"{upstream.base}/status/500").status_code == 500
        with pytest.raises(CircuitOpenError):
            client.get(f"{upstream.base}/status/200")
        other = f"http://localhost:{upstream.port}"  # another authority: past the bound, no breaker
        for _ in range(3):
            assert client.get(f"{other}/status/500").status_code == 500
    names = [b.name for b in registry.breakers()]
    assert names == [f"up@http:127.0.0.1:{upstream.port}"]


def test_stages_can_be_removed(upstream: Upstream, registry: seawall.Registry) -> None:
    stages = {f.name: None for f in dataclasses.fields(sh.HttpPolicy) if "None" in str(f.type)}
    assert {"bulkhead", "total_timeout", "retry", "hedge", "breaker", "attempt_timeout"} <= set(stages)
    t = sh.ResilientTransport(name="bare", registry=registry, **stages)  # every optional stage off
    with httpx.Client(transport=t, base_url=upstream.base) as client:
        assert client.get("/status/503").status_code == 503
    assert registry.snapshot().breakers == () or not registry.breakers()
    assert registry.retries() == []


def test_bad_settings_name_the_field() -> None:
    with pytest.raises(TypeError, match="unknown HTTP policy setting 'retries'"):
        sh.ResilientTransport(retries=3)
    with pytest.raises(ValueError, match="attempt_timeout must be"):
        sh.ResilientTransport(attempt_timeout=-1)
    with pytest.raises(ValueError, match="transient_statuses"):
        sh.ResilientTransport(transient_statuses={999})
    with pytest.raises(TypeError, match="retry_on"):
        sh.ResilientTransport(retry={"retry_on": ValueError})


def test_the_helpers_share_primitives_by_name(upstream: Upstream, registry: seawall.Registry) -> None:
    with (
        sh.client("shared", registry=registry, base_url=upstream.base) as a,
        sh.client("shared", registry=registry, base_url=upstream.base) as b,
    ):
        assert a.get("/status/200").status_code == 200
        assert b.get("/status/200").status_code == 200
    assert registry.get("retry", "shared").snapshot().calls["success_without_retry"] == 2


# -- async -------------------------------------------------------------------------------------


def arun(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


def test_async_retries_and_closes(upstream: Upstream, registry: seawall.Registry) -> None:
    t = sh.AsyncResilientTransport(name="up", registry=registry, retry=FAST)

    async def main() -> tuple[int, int, int]:
        async with httpx.AsyncClient(transport=t, base_url=upstream.base) as client:
            ok = await client.get("/flaky/x?fail=2&status=502")
            once = await client.post("/flaky/y?fail=2", content=b"x")
            return ok.status_code, once.status_code, pool_busy(t)

    assert arun(main()) == (200, 503, 0)
    assert len(upstream.hits("/flaky/x")) == 3
    assert len(upstream.hits("/flaky/y")) == 1


def test_async_attempt_timeout_cancels_a_hang_and_leaves_no_task(
    upstream: Upstream, registry: seawall.Registry
) -> None:
    t = sh.AsyncResilientTransport(
        name="up", registry=registry, attempt_timeout=0.2, retry={**FAST, "attempts": 2}
    )

    async def main() -> tuple[float, int]:
        before = asyncio.all_tasks()
        async with httpx.AsyncClient(transport=t, base_url=upstream.base) as client:
            started = time.monotonic()
            with pytest.raises(CallTimeoutError):
                await client.get("/hang")
            elapsed = time.monotonic() - started
            busy = pool_busy(t)
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == before  # no attempt left running
        return elapsed, busy

    elapsed, busy = arun(main())
    assert elapsed < 1.5
    assert busy == 0
    assert len(upstream.hits("/hang")) == 2


def test_async_slow_body_is_read_by_the_client(upstream: Upstream, registry: seawall.Registry) -> None:
    t = sh.AsyncResilientTransport(name="up", registry=registry, attempt_timeout=0.2)

    async def main() -> bytes:
        async with httpx.AsyncClient(transport=t, base_url=upstream.base) as client:
            response = await client.get("/drip?chunks=3&interval=0.1")
            return response.content

    assert arun(main()) == b"xxx"  # the attempt timeout covers the head; the body has the client's timeouts
