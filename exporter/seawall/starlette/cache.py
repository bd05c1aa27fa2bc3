"""A short-lived cache of rendered status bodies, dropped whenever something changes state.

With 1,000 breakers a fresh `/api/resilience/breakers` costs ~10 ms (4 ms of breaker snapshots,
4 ms of JSON), which a few polling dashboards turn into real load. Bodies are kept for
`ttl` seconds, and the cache listens on the registry's bus: a breaker state change, a feature
toggle or a new primitive clears it at once, so states are never stale; only counters may lag by
up to `ttl`. `ttl=0` turns it off (and subscribes nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .._events import BreakerStateChanged, Event, FeatureToggled, PrimitiveRegistered
from .._registry import Registry

__all__ = ["BodyCache"]

_INVALIDATING = (BreakerStateChanged, FeatureToggled, PrimitiveRegistered)


class BodyCache:
    """Rendered bodies by key, each valid for `ttl` seconds or until the next state change."""

    component = "web.cache"  # names this listener in seawall_instrumentation_errors_total

    def __init__(self, registry: Registry, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 <= ttl <= 60:
            raise ValueError(f"status_cache_seconds must be between 0 and 60, got {ttl!r}")
        self.ttl = float(ttl)
        self._clock = clock
        self._entries: dict[str, tuple[float, bytes]] = {}
        if self.ttl > 0:
            registry.bus.subscribe(self)

    def __call__(self, event: Event, /) -> None:
        if isinstance(event, _INVALIDATING) and self._entries:
            self._entries = {}

    def clear(self) -> None:
        self._entries = {}

    def get(self, key: str, build: Callable[[], bytes]) -> bytes:
        if self.ttl <= 0:
            return build()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.ttl:
            return entry[1]
        entries = self._entries  # a clear() while building must not be undone by this store
        body = build()
        entries[key] = (now, body)
        return body
