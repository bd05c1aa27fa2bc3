"""Kinds are declared once and reach the registry, the snapshot and the status page's data; every
event about a primitive names it by `kind` and `name`."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import seawall
from seawall import events
from seawall.core.kinds import Kind, KindSpec, declared, register_kind, spec_of
from seawall.core.settings import Choice, Flag, Number, Settings
from seawall.errors.settings import AggregatorSettings
from seawall.starlette import create_app

# Events about no single primitive: the aggregator's (its `source` is free-form), instrumentation's,
# and an HTTP client's attempts (a client is a pipeline of several primitives).
NOT_ABOUT_ONE_PRIMITIVE = {
    events.ErrorRecorded,
    events.InstrumentationFailed,
    events.HttpAttemptStarted,
    events.HttpAttemptFinished,
}


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


def test_a_duplicate_name_error_names_a_factory_that_exists() -> None:
    registry = seawall.Registry()
    seawall.feature("recs", registry=registry)
    with pytest.raises(ValueError, match=r"get it with seawall\.feature\('recs'\)") as caught:
        seawall.Feature("recs", registry=registry)
    factory = str(caught.value).split("get it with seawall.")[1].split("(")[0]
    assert callable(getattr(seawall, factory))


def test_event_types_are_listed_once_and_each_names_its_primitive_the_same_way() -> None:
    assert len(set(events.EVENT_TYPES)) == len(events.EVENT_TYPES) == 22
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


# -- settings and factories, derived from the declared kinds ------------------------------------
WITH_SETTINGS = [spec for spec in declared() if spec.settings is not None]
ODD_VALUES = [float("nan"), float("inf"), float("-inf"), -1, 0, 10**12, 1e300, "1", True, None]


async def _job() -> None:
    return None


# Parts a constructor cannot do without besides its settings, by parameter name (a task's coroutine
# function); a new required parameter fails `_needed` below until it is given a value here.
NEEDED = {"factory": _job}


def _needed(cls: type[Any]) -> dict[str, Any]:
    """The required parameters of `cls` other than the name, with values from NEEDED."""
    parameters = list(inspect.signature(cls).parameters.values())[1:]
    required = [
        p.name
        for p in parameters
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    missing = sorted(set(required) - set(NEEDED))
    assert not missing, f"{cls.__name__} needs {missing}: add a value to NEEDED"
    return {name: NEEDED[name] for name in required}


def _make_primitive(cls: type[Any]) -> Any:
    return lambda **kwargs: cls("p", registry=seawall.Registry(), **_needed(cls), **kwargs)


# Every settings type and how to build what it configures: the declared kinds', and the ones of
# parts that are not named primitives (the registry's error aggregator).
CLASSES: dict[type[Settings], type[Any]] = {
    **{spec.settings: spec.cls for spec in WITH_SETTINGS if spec.settings is not None},
    AggregatorSettings: seawall.ErrorAggregator,
}
OWNERS: dict[type[Settings], Any] = {
    **{spec.settings: _make_primitive(spec.cls) for spec in WITH_SETTINGS if spec.settings is not None},
    AggregatorSettings: lambda **kwargs: seawall.ErrorAggregator(registry=seawall.Registry(), **kwargs),
}


def test_every_kind_and_every_settings_type_is_covered() -> None:
    assert [spec.kind for spec in WITH_SETTINGS] == list(Kind)  # every kind has a settings object
    assert set(OWNERS) == set(CLASSES) == set(Settings.__subclasses__())
    for settings in OWNERS:
        assert getattr(seawall, settings.__name__) is settings  # exported


def _valid(rule: Any) -> Any:
    """A value the rule accepts (for the settings a test is not about)."""
    if isinstance(rule, Number):
        return rule.low + 1 if rule.low_open or rule.low < 1 else rule.low
    if isinstance(rule, Choice):
        return rule.values[0]
    return False


def _positional_defaults(settings: type[Settings]) -> dict[str, Any]:
    """Settings the owner also takes by position, with a None default meaning "not given", and
    their settings' defaults (a bulkhead's `max_wait`)."""
    parameters = inspect.signature(CLASSES[settings]).parameters
    return {
        item.name: item.default
        for item in dataclasses.fields(settings)
        if item.name in parameters and parameters[item.name].default is None and item.default is not None
    }


def _required(settings: type[Settings]) -> dict[str, Any]:
    """The settings without a usable default (a timeout's seconds, ...), filled with valid values."""
    defaults = {item.name: item.default for item in dataclasses.fields(settings)}
    return {
        name: _valid(rule)
        for name, rule in settings.rules().items()
        if defaults[name] is None and not getattr(rule, "optional", False)
    }


CASES = [
    pytest.param(settings, name, value, id=f"{settings.__name__}-{name}-{value!r}")
    for settings in OWNERS
    for name in settings.rules()
    for value in ODD_VALUES
]


@pytest.mark.parametrize(("settings", "name", "value"), CASES)
def test_every_setting_refuses_odd_values_at_once_naming_the_field(
    settings: type[Settings], name: str, value: Any
) -> None:
    make = OWNERS[settings]
    rule = settings.rules()[name]
    kwargs = {**_required(settings), name: value}
    if value is None and name in _positional_defaults(settings):
        # a positional parameter left None means "not given": the setting's default applies
        assert getattr(make(**kwargs).settings, name) == _positional_defaults(settings)[name]
        return
    if rule.accepts(value):
        error: ValueError | None = None
        try:
            made = make(**kwargs)
        except ValueError as exc:  # a rule across settings (slow_call_rate_threshold needs a duration)
            error = exc
        if error is not None:
            assert name in str(error)
        else:
            assert made.settings == settings.of(kwargs)  # accepted (and normalised) as given
            assert made.snapshot().name == "p" if hasattr(made, "snapshot") else made.stats()
        return
    with pytest.raises((ValueError, TypeError)) as caught:
        make(**kwargs)
    assert name in str(caught.value)
    assert repr(value) in str(caught.value)
    wrong_type = (
        isinstance(value, bool) or value is None or isinstance(value, str) != isinstance(rule, Choice)
    )
    wrong_type = wrong_type or (isinstance(rule, Number) and rule.integer and isinstance(value, float))
    wrong_type = wrong_type or isinstance(rule, Flag)
    assert caught.type is (TypeError if wrong_type else ValueError)


@pytest.mark.parametrize("spec", WITH_SETTINGS, ids=lambda spec: str(spec.kind))
def test_every_factory_follows_the_one_rule(spec: KindSpec) -> None:
    # In a running loop: a task's factory starts it (it only runs once this test awaits).
    asyncio.run(_one_rule(spec))


async def _one_rule(spec: KindSpec) -> None:
    registry = seawall.Registry()
    settings = spec.settings
    assert settings is not None
    base = {**_required(settings), **_needed(spec.cls)}
    first = spec.factory("p", registry=registry, **base)
    assert spec.factory("p", registry=registry, **base) is first
    assert registry.items(spec.kind) == [first]
    # one setting changed: a ValueError naming it and both values
    name, rule = next((n, r) for n, r in settings.rules().items() if isinstance(r, Number))
    other = getattr(first.settings, name) + 1 if getattr(first.settings, name) is not None else _valid(rule)
    with pytest.raises(
        ValueError, match=rf"{spec.kind} 'p' already exists with a different configuration: {name}="
    ):
        spec.factory("p", registry=registry, **{**base, name: other})
    # an injected part other than the one it was made with: refused, not silently dropped
    with pytest.raises(ValueError, match="clock="):
        spec.factory("p", registry=registry, **_needed(spec.cls), clock=lambda: 0.0)
    # the settings object itself, given whole, is the same configuration as its fields
    assert first.settings == settings.of(base_settings(settings, base))
    await seawall.default_supervisor(registry).shutdown(1.0)


def base_settings(settings: type[Settings], base: dict[str, Any]) -> dict[str, Any]:
    names = {item.name for item in dataclasses.fields(settings)}
    return {key: value for key, value in base.items() if key in names}


def test_every_declared_kind_reaches_every_layer() -> None:
    """The issue's "done when", derived from the declared kinds: each has a settings object and a
    factory (the one rule: `test_every_factory_follows_the_one_rule`), and what its factory makes
    shows in `Registry.snapshot()`, in the status page's data and in the Prometheus exposition."""
    registry = seawall.Registry()
    prom = CollectorRegistry()
    names = {spec.kind: f"cross-{spec.kind.value}" for spec in declared()}

    async def make_all() -> dict[Kind, Any]:
        made = {}
        for spec in declared():
            assert spec.settings is not None, spec.kind
            options = {**_required(spec.settings), **_needed(spec.cls)}
            made[spec.kind] = spec.factory(names[spec.kind], registry=registry, **options)
        await seawall.default_supervisor(registry).shutdown(1.0)
        return made

    made = asyncio.run(make_all())
    snapshot = registry.snapshot()
    with TestClient(create_app(registry=registry, prometheus_registry=prom)) as client:
        page = client.get("/api/resilience/snapshot")
        exposition = client.get("/metrics")
    assert page.status_code == exposition.status_code == 200
    samples = [
        (sample.name, sample.labels)
        for family in text_string_to_metric_families(exposition.text)
        for sample in family.samples
    ]
    for spec in declared():
        name = names[spec.kind]
        assert isinstance(made[spec.kind].settings, spec.settings), spec.kind
        assert [snap.name for snap in snapshot.of(spec.kind)] == [name]
        assert isinstance(snapshot.of(spec.kind)[0], spec.snapshot)
        # the served registry also holds the router's own `seawall.metrics` bulkhead
        assert name in [row["name"] for row in page.json()[spec.kind.plural]]
        series = [sample for sample, labels in samples if name in labels.values()]
        assert series, f"no series in the exposition for {spec.kind} {name!r}"
        assert all(sample.startswith("seawall_") for sample in series)
