"""Kinds are declared once and reach the registry, the snapshot and the status page's data; every
event about a primitive names it by `kind` and `name`."""

from __future__ import annotations

import dataclasses

import pytest

import seawall
from seawall import events
from seawall.core.kinds import Kind, KindSpec, declared, register_kind, spec_of
from seawall.starlette.views import registry_payload

# Events about no single primitive: the aggregator's (its `source` is free-form) and instrumentation's.
NOT_ABOUT_ONE_PRIMITIVE = {events.ErrorRecorded, events.InstrumentationFailed}


def test_every_declared_kind_is_registered_by_its_module() -> None:
    assert [spec.kind for spec in declared()] == list(Kind)
    for spec in declared():
        assert spec.cls.kind == spec.kind
        assert getattr(seawall, spec.factory.__name__) is spec.factory


def test_a_kind_registered_twice_differently_is_refused() -> None:
    spec = spec_of(Kind.RETRY)
    assert register_kind(spec) is spec  # the same spec again (a module re-imported) is harmless
    with pytest.raises(ValueError, match="'retry' is already registered by Retry"):
        register_kind(dataclasses.replace(spec, timed=True))


def test_unknown_kinds_are_refused_naming_the_known_ones() -> None:
    registry = seawall.Registry()
    with pytest.raises(ValueError, match=r"kind must be one of breaker, retry, .*, got 'breakers'"):
        registry.items("breakers")
    assert isinstance(spec_of("timeout"), KindSpec)


def test_registry_snapshot_and_status_data_cover_every_kind() -> None:
    registry = seawall.Registry()
    seawall.breaker("b", registry=registry)
    seawall.retry("r", registry=registry)
    seawall.feature("f", registry=registry)
    seawall.timeout("t", 1.0, registry=registry)
    seawall.bulkhead("h", 2, registry=registry)
    seawall.rate_limiter("l", 5, registry=registry)

    async def job() -> None:
        return None

    task = seawall.SupervisedTask("k", job, registry=registry)
    snapshot = registry.snapshot()
    payload = registry_payload(registry)
    expected = {Kind.BREAKER: "b", Kind.RETRY: "r", Kind.FEATURE: "f", Kind.TIMEOUT: "t"}
    expected.update({Kind.BULKHEAD: "h", Kind.RATE_LIMITER: "l", Kind.TASK: task.name})
    assert set(expected) == set(Kind)
    for kind, name in expected.items():
        (snap,) = snapshot.of(kind)
        assert isinstance(snap, spec_of(kind).snapshot)
        assert snap.name == name
        assert [row["name"] for row in payload[kind.plural]] == [name]
    assert snapshot.to_dict()["rate_limiter"][0]["name"] == "l"


def test_a_duplicate_name_error_names_a_factory_that_exists() -> None:
    registry = seawall.Registry()
    seawall.feature("recs", registry=registry)
    with pytest.raises(ValueError, match=r"get it with seawall\.feature\('recs'\)") as caught:
        seawall.Feature("recs", registry=registry)
    factory = str(caught.value).split("get it with seawall.")[1].split("(")[0]
    assert callable(getattr(seawall, factory))


def test_event_types_are_listed_once_and_each_names_its_primitive_the_same_way() -> None:
    assert len(set(events.EVENT_TYPES)) == len(events.EVENT_TYPES) == 18
    for event_type in events.EVENT_TYPES:
        if event_type in NOT_ABOUT_ONE_PRIMITIVE:
            continue
        names = [field.name for field in dataclasses.fields(event_type)]
        assert "name" in names, event_type
        assert isinstance(event_type.kind, Kind) or "kind" in names, event_type


@pytest.mark.parametrize(
    ("event", "old_field"),
    [
        (events.BreakerCallRejected("db", seawall.BreakerState.OPEN, 1.0), "breaker"),
        (events.RetryAttemptStarted("fetch", 1), "retry"),
        (events.FeatureToggled("recs", enabled=False, reason="manual"), "feature"),
        (events.CallTimedOut("dep", 1.0, 2.0, False), "timeout"),
        (events.BulkheadRejected("pool", 2, 0.0), "bulkhead"),
        (events.RateLimited("api", "local", 1.0), "limiter"),
        (events.TaskFailed("sync", "Boom", seawall.ErrorCategory.UNKNOWN, True, 1.0), "task"),
    ],
)
def test_old_field_names_still_read_and_stay_read_only(event: object, old_field: str) -> None:
    assert getattr(event, old_field) == event.name
    assert event.kind == old_field.replace("limiter", "rate_limiter")
    # frozen: FrozenInstanceError (an AttributeError), or TypeError from a frozen slots class on 3.11
    with pytest.raises((AttributeError, TypeError)):
        setattr(event, old_field, "other")
    assert getattr(event, old_field) == event.name


def test_dispatch_tables_are_derived_from_handler_methods() -> None:
    class Listener:
        def _on_breaker_call_rejected(self, event: object) -> None: ...

        def _on_task_failed(self, event: object) -> None: ...

    assert events.handler_name(events.RateLimiterBackendFailed) == "_on_rate_limiter_backend_failed"
    table = events.handlers(Listener())
    assert set(table) == {events.BreakerCallRejected, events.TaskFailed}
