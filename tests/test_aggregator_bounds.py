"""What the aggregator keeps of a caller's free text: bounded, and secrets masked when recorded."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

import seawall
from seawall.starlette import create_app

# The documented bounds (README, "Errors").
MAX_SOURCE_LENGTH, CONTEXT_KEYS, CONTEXT_KEY_LENGTH, CONTEXT_VALUE_LENGTH = 200, 20, 64, 200

SECRETS = ("hunter2-pw", "sk_live_51Hxyz", "tok-abc123", "db-pass-99")


def secret_context() -> dict[str, Any]:
    return {
        "password": SECRETS[0],
        "api_key": SECRETS[1],
        "dbToken": SECRETS[2],
        "userPassword": 12345,
        "nested": {"password": SECRETS[3]},
        "user": "bob",
        "attempt": 3,
    }


def test_secret_named_context_values_are_masked_when_recorded() -> None:
    agg = seawall.ErrorAggregator()
    context = secret_context()
    agg.record(RuntimeError("boom"), source="jobs", context=context)
    context["late"] = "password=added-after"  # the caller's dict is copied, not kept
    stored = agg._recent[-1][-1]  # what is held in memory, not only what is rendered
    assert stored == {
        "password": "[REDACTED]",
        "api_key": "[REDACTED]",
        "dbToken": "[REDACTED]",
        "userPassword": "[REDACTED]",
        "nested": '{"password": "[REDACTED]"}',  # containers are walked, then shown as JSON
        "user": "bob",
        "attempt": 3,
    }
    assert agg.recent(1)[0]["context"] == stored


@pytest.mark.parametrize("include_messages", [False, True])
def test_no_route_serves_a_context_secret(
    registry: seawall.Registry, prom: CollectorRegistry, include_messages: bool
) -> None:
    registry.errors.record(RuntimeError("boom"), source="jobs", context=secret_context())
    app = create_app(registry=registry, prometheus_registry=prom, include_error_messages=include_messages)
    with TestClient(app) as client:
        for path in ("/api/resilience/errors/recent", "/api/resilience/snapshot"):
            text = client.get(path).text
            assert not [secret for secret in SECRETS if secret in text], path
            assert json.loads(text)


def test_source_is_cut_to_its_bound() -> None:
    agg = seawall.ErrorAggregator()
    agg.record(RuntimeError(), source="s" * 10_000)
    (source,) = agg.stats()["errors_by_source"]
    assert source == "s" * MAX_SOURCE_LENGTH
    assert agg.recent(1)[0]["source"] == source


def test_memory_stays_bounded_with_long_distinct_sources() -> None:
    now = [0.0]
    agg = seawall.ErrorAggregator(window=60.0, buckets=60, clock=lambda: now[0])
    exc = RuntimeError("x")
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(60 * 200):  # 200 distinct sources (max_keys) in each of the 60 buckets
            now[0] = i / 200
            agg.record(exc, source=f"{i:05d}" + "s" * 5_000)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Unbounded, the ring kept every 5 KB source: ~60 MiB here (116 MiB for 10 KB ones in issue 9).
    assert current < 8 * 1024 * 1024, current


def test_context_keys_values_and_odd_types_are_bounded() -> None:
    agg = seawall.ErrorAggregator()

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    context: dict[Any, Any] = {f"k{i}": i for i in range(100)}
    agg.record(RuntimeError(), context=context)
    assert len(agg.recent(1)[0]["context"]) == CONTEXT_KEYS
    odd = {
        "x" * 500: "v" * 5000,
        "big": 10**5000,
        "nan": float("nan"),
        "obj": Unprintable(),
        "many": list(range(10_000)),
        7: "int key",
    }
    agg.record(RuntimeError(), context=odd)
    kept = agg.recent(1)[0]["context"]
    assert kept["x" * CONTEXT_KEY_LENGTH] == "v" * CONTEXT_VALUE_LENGTH
    assert kept["big"] == "<int of 16610 bits>"
    assert kept["nan"] is None
    assert kept["obj"].startswith("<Unprintable")  # reprlib's stand-in for a failing repr
    assert len(kept["many"]) <= CONTEXT_VALUE_LENGTH
    assert kept["7"] == "int key"
    json.dumps(kept, allow_nan=False)  # servable as strict JSON
