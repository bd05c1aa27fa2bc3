"""seawall.requests against a real upstream: the adapter's own concerns (urllib3's pool gets every
retried connection back, attempt timeouts cut the socket timeouts, the session helper)."""

from __future__ import annotations

import time

import pytest
import requests

import seawall
import seawall.requests as sr
from http_upstream import Upstream
from seawall import CallTimeoutError
from seawall.core.kinds import declared

FAST = {"initial": 0.01, "max_delay": 5.0}


def idle_slots(adapter: sr.ResilientAdapter, upstream: Upstream) -> tuple[int, int]:
    """(connections back in urllib3's pool queue, its size): equal when none is checked out."""
    pool = adapter.poolmanager.connection_from_url(upstream.base)
    return pool.pool.qsize(), pool.pool.maxsize  # type: ignore[union-attr]


def test_retried_answers_go_back_to_the_pool(upstream: Upstream, registry: seawall.Registry) -> None:
    adapter = sr.ResilientAdapter(
        name="up", registry=registry, retry=FAST, adapter_options={"pool_maxsize": 2}
    )
    with requests.Session() as session:
        session.mount("http://", adapter)
        assert session.get(f"{upstream.base}/flaky/a?fail=3&status=500").text == "ok"
        assert session.get(f"{upstream.base}/status/503").status_code == 503
        free, size = idle_slots(adapter, upstream)
    assert free == size
    assert len(upstream.hits("/flaky/a")) == 4
    assert registry.get("retry", "up").snapshot().calls["success_with_retry"] == 1


def test_a_streamed_answer_stays_open_for_the_caller(upstream: Upstream, registry: seawall.Registry) -> None:
    with sr.session("up", registry=registry) as session:
        response = session.get(f"{upstream.base}/drip?chunks=3&interval=0.05", stream=True)
        assert b"".join(response.iter_content(1)) == b"xxx"


def test_the_attempt_timeout_cuts_the_socket_timeouts(upstream: Upstream, registry: seawall.Registry) -> None:
    adapter = sr.ResilientAdapter(
        name="up", registry=registry, attempt_timeout=0.3, retry={**FAST, "attempts": 2}
    )
    started = time.monotonic()
    with requests.Session() as session:
        session.mount("http://", adapter)
        with pytest.raises(CallTimeoutError):
            session.get(f"{upstream.base}/slow?seconds=5", timeout=30)
    assert time.monotonic() - started < 2.0
    assert len(upstream.hits("/slow")) == 2


def test_the_session_helper_mounts_both_schemes(registry: seawall.Registry) -> None:
    with sr.session("up", registry=registry) as session:
        assert isinstance(session.get_adapter("http://x"), sr.ResilientAdapter)
        assert isinstance(session.get_adapter("https://x"), sr.ResilientAdapter)
        assert session.get_adapter("http://x") is session.get_adapter("https://x")


@pytest.mark.parametrize(
    ("asked", "left", "expected"),
    [
        (None, None, None),
        (None, 2.0, 2.0),
        (5, 2.0, 2.0),
        (1, 2.0, 1),
        ((5, 0.5), 2.0, (2.0, 0.5)),
        ((None, 9), 1.0, (1.0, 1.0)),
    ],
)
def test_timeouts_are_cut_to_the_deadline(asked: object, left: float | None, expected: object) -> None:
    assert sr._cut(asked, left) == expected


def test_an_httpx_client_and_a_session_of_one_name_share_their_primitives(
    upstream: Upstream, registry: seawall.Registry
) -> None:
    import httpx

    import seawall.httpx as sh

    with sh.client("shared", registry=registry) as client, sr.session("shared", registry=registry) as session:
        assert client.get(f"{upstream.base}/status/200").status_code == 200
        assert session.get(f"{upstream.base}/status/200").status_code == 200
        assert isinstance(client, httpx.Client)
    assert registry.get("retry", "shared").snapshot().calls["success_without_retry"] == 2
    assert [b.name for b in registry.items("breaker")] == [f"shared@http:127.0.0.1:{upstream.port}"]


def test_the_readme_example_runs(registry: seawall.Registry) -> None:
    """README's "HTTP clients" block, as written (it builds clients; it sends nothing)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"## HTTP clients\n.*?```python\n(.*?)```", readme, re.S)
    assert block is not None
    default = seawall.default_registry()
    before = {spec.kind: {p.name for p in default.items(spec.kind)} for spec in declared()}
    namespace: dict[str, object] = {}
    try:
        exec(compile(block.group(1), "README HTTP clients", "exec"), namespace)
        assert isinstance(namespace["search"], __import__("httpx").AsyncClient)
        assert default.get("hedge", "search") is not None  # hedge=True made one
    finally:  # the example uses the default registry: leave it as it was
        for kind, names in before.items():
            for made in default.items(kind):
                if made.name not in names:
                    default.remove(kind, made.name)
