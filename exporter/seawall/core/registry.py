"""Named primitives of one application, and the event bus they publish on.

A service has one default registry; tests make their own. Names are unique per kind, so metric
series and admin URLs are unambiguous; asking again for a name with the same configuration returns
the existing primitive, with a different one is a clear error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from seawall.core.kinds import Kind, declared, spec_of
from seawall.core.scrub import valid_text
from seawall.core.snapshots import RegistrySnapshot
from seawall.events import EventBus, PrimitiveRegistered

if TYPE_CHECKING:
    from seawall.breakers.breaker import CircuitBreaker
    from seawall.degrade.features import Feature
    from seawall.errors.aggregator import ErrorAggregator
    from seawall.retries.retry import Retry


class Registrable(Protocol):
    """What a primitive offers its registry."""

    @property
    def kind(self) -> Kind: ...

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> Mapping[str, Any]: ...


P = TypeVar("P", bound=Registrable)


class Registry:
    """Holds the primitives of every declared `Kind` by name, the error aggregators and the event bus."""

    def __init__(self) -> None:
        self.bus = EventBus()
        self._lock = threading.RLock()
        self._items: dict[Kind, dict[str, Any]] = {kind: {} for kind in Kind}
        self._errors: ErrorAggregator | None = None
        self._aggregators: list[ErrorAggregator] = []
        self.duration_buckets: tuple[float, ...] | None = None

    def add(self, primitive: Registrable) -> None:
        """Register a new primitive; a second one of the same kind and name is refused."""
        kind, name = Kind.of(primitive.kind), primitive.name
        if not isinstance(name, str) or valid_text(name) != name:
            # A name becomes a /metrics label and JSON: a lone surrogate cannot be encoded in either.
            raise ValueError(f"{kind} name must be text without lone surrogates, got {name!a}")
        with self._lock:
            existing = self._items[kind].get(name)
            if existing is not None and existing is not primitive:
                raise ValueError(
                    f"a {kind} named {name!r} already exists in this registry; get it with "
                    f"{spec_of(kind).factory_call}({name!r}) or pass registry= to keep them apart"
                )
            self._items[kind][name] = primitive
        channel = self.bus.channel(PrimitiveRegistered)
        if channel.listeners:
            channel.publish(PrimitiveRegistered(kind=kind, name=name))

    def record_durations(self, buckets: tuple[float, ...]) -> None:
        """Have every breaker, timeout and bulkhead, now and later, count durations in these buckets.

        Exporters call this (a histogram needs the buckets); a second caller with other buckets is
        refused, since one breaker keeps one set of counts.
        """
        from seawall.core.latency import check_buckets

        bounds = check_buckets(buckets)
        with self._lock:
            if self.duration_buckets is not None and self.duration_buckets != bounds:
                raise ValueError(
                    f"this registry already records durations in buckets {self.duration_buckets!r}, "
                    f"got {bounds!r}"
                )
            self.duration_buckets = bounds
            timed = [item for spec in declared() if spec.timed for item in self._items[spec.kind].values()]
        for item in timed:
            record = getattr(item, "record_durations", None)
            if record is not None:
                record(bounds)

    def add_aggregator(self, aggregator: ErrorAggregator) -> None:
        """An error aggregator publishing to this registry; exporters read its totals."""
        with self._lock:
            if all(item is not aggregator for item in self._aggregators):
                self._aggregators.append(aggregator)

    def aggregators(self) -> list[ErrorAggregator]:
        """Every error aggregator that reports to this registry (the default one first, once made)."""
        with self._lock:
            return list(self._aggregators)

    def remove(self, kind: Kind | str, name: str) -> None:
        with self._lock:
            self._items[Kind.of(kind)].pop(name, None)

    def get(self, kind: Kind | str, name: str) -> Any | None:
        return self._items[Kind.of(kind)].get(name)

    def get_or_create(
        self, kind: Kind | str, name: str, config: Mapping[str, Any], factory: Callable[[], P]
    ) -> P:
        """Return the primitive named `name`, creating it with `factory` when absent.

        `config` is the subset of settings the caller asked for; each must equal the existing one's.
        """
        kind = Kind.of(kind)
        with self._lock:
            existing = self._items[kind].get(name)
            if existing is None:
                created = factory()
                if created.name not in self._items[kind]:
                    self.add(created)
                return created
            differing = {
                key: (existing.config.get(key), value)
                for key, value in config.items()
                if existing.config.get(key) != value
            }
            if differing:
                detail = ", ".join(
                    f"{key}={new!r} (existing: {old!r})" for key, (old, new) in differing.items()
                )
                raise ValueError(f"{kind} {name!r} already exists with a different configuration: {detail}")
            return existing  # type: ignore[no-any-return]

    def items(self, kind: Kind | str) -> list[Any]:
        """Every primitive of `kind`, in the order they joined."""
        member = Kind.of(kind)
        with self._lock:
            return list(self._items[member].values())

    def breakers(self) -> list[CircuitBreaker]:
        return self.items(Kind.BREAKER)

    def retries(self) -> list[Retry]:
        return self.items(Kind.RETRY)

    def features(self) -> list[Feature]:
        return self.items(Kind.FEATURE)

    @property
    def errors(self) -> ErrorAggregator:
        """The registry's error aggregator, made on first use."""
        with self._lock:
            if self._errors is None:
                from seawall.errors.aggregator import ErrorAggregator

                self._errors = ErrorAggregator(registry=self)
            return self._errors

    def snapshot(self) -> RegistrySnapshot:
        """Every primitive of every declared kind, read now (`snapshot.of(Kind.TIMEOUT)`)."""
        return RegistrySnapshot({kind: tuple(item.snapshot() for item in self.items(kind)) for kind in Kind})


_default = Registry()


def default_registry() -> Registry:
    """The process-wide registry that primitives join unless given `registry=`."""
    return _default
