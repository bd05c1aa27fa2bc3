"""A short-lived cache of rendered status bodies, checked against a cheap fingerprint per request.

With 1,000 breakers a fresh `/api/resilience/breakers` costs ~10 ms (4.5 ms of breaker snapshots,
4 ms of JSON), which a few polling dashboards turn into real load. Bodies are kept for `ttl`
seconds, but each request first computes a fingerprint of what the body must never be stale about
(which primitives are registered; each breaker's state; each feature's enabled / breaker state /
manual switch) and reuses a body only while the fingerprint it was built under is unchanged. So
states are always current; only counters may lag by up to `ttl`. `ttl=0` turns it off.

Why not listen on the registry's bus for state changes: a listener costs every call that publishes
an event of the types it takes (building and delivering it), in every service that merely mounted
the routes, while reading 1,000 breaker states costs tens of microseconds, and only when someone
asks for a status body.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Hashable

from seawall.core.kinds import Kind, declared
from seawall.core.registry import Registry

__all__ = [
    "BodyCache",
    "breakers_fingerprint",
    "features_fingerprint",
    "retries_fingerprint",
    "snapshot_fingerprint",
]

Fingerprint = Callable[[], Hashable]

_state = operator.attrgetter("state")  # the property: also performs the lazy open -> half_open move


def breakers_fingerprint(registry: Registry) -> Hashable:
    """The registered breakers (by identity, in order) and each one's current state."""
    breakers = tuple(registry.breakers())
    return breakers, tuple(map(_state, breakers))


def features_fingerprint(registry: Registry) -> Hashable:
    """The registered features and, for each, what its snapshot says about being switched on or off."""
    features = tuple(registry.features())
    # `manually_disabled` too: a feature switched off by hand while its breaker is open stays
    # `enabled=False`, yet its body's `manually_disabled` changes.
    return features, tuple([(f.breaker_state, f.enabled, f.manually_disabled) for f in features])


def retries_fingerprint(registry: Registry) -> Hashable:
    """The registered retries (a retry has no state of its own, only counters)."""
    return tuple(registry.retries())


def snapshot_fingerprint(registry: Registry) -> Hashable:
    """What the whole snapshot must be current about: breaker states, feature switches, task
    states, and the primitives registered of every declared kind."""
    tasks = tuple(registry.items(Kind.TASK))
    return (
        breakers_fingerprint(registry),
        features_fingerprint(registry),
        tuple(map(_state, tasks)),
        tuple(tuple(registry.items(spec.kind)) for spec in declared()),
    )


class BodyCache:
    """Rendered bodies by key, each valid for `ttl` seconds while its fingerprint is unchanged."""

    def __init__(self, registry: Registry, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 <= ttl <= 60:
            raise ValueError(f"status_cache_seconds must be between 0 and 60, got {ttl!r}")
        self.registry = registry
        self.ttl = float(ttl)
        self._clock = clock
        # key -> (built at, fingerprint it was built under, body). The fingerprint holds the
        # primitives themselves, not their ids: an id can be reused once its object is gone.
        self._entries: dict[str, tuple[float, Hashable, bytes]] = {}

    def clear(self) -> None:
        """Drop every body (after an admin action, whose effect on counters must show at once)."""
        self._entries = {}

    def get(self, key: str, build: Callable[[], bytes], fingerprint: Fingerprint | None = None) -> bytes:
        """The body under `key`: the cached one if younger than `ttl` and built under an equal
        `fingerprint()`, else a fresh `build()`. Without `fingerprint` only the age counts."""
        if self.ttl <= 0:
            return build()
        now = self._clock()
        # Taken before building: a state change during the build leaves the stored mark older than
        # the state, so the next request rebuilds rather than keep a body that may predate it.
        mark = None if fingerprint is None else fingerprint()
        entries = self._entries
        entry = entries.get(key)
        if entry is not None and now - entry[0] < self.ttl and entry[1] == mark:
            return entry[2]
        body = build()
        entries[key] = (now, mark, body)  # into the dict read above: a clear() meanwhile wins
        return body
