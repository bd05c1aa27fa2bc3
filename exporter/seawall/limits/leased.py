"""Leased tokens: a shared (Redis) rate limit that costs a round trip per batch of calls.

A worker takes a small batch of GCRA slots from Redis in one script call (`LEASE_SCRIPT` in
`redis_backend.py`: as many as the shared bucket holds now, up to the batch) and spends them
locally under a lock. Every token
spent was granted by the shared bucket, so the fleet never admits more than the exact limiter
would grant; what leasing adds is *when*: a token granted now may be spent a little later. Two
bounds keep that small: a worker holds at most `max_batch` tokens, and unspent tokens expire
`lease_ttl` seconds after they were granted. In any window the fleet admits at most what exact
mode would, plus what the workers held when the window began: `workers x max_batch`.

The batch adapts to the call rate: each refill asks for the tokens this worker spent in the last
`lease` seconds at its recent rate (at least 1, at most `max_batch`), so a busy worker makes about
`1 / lease` round trips a second and an idle one holds (and wastes) little. One thread refills at a
time; a call that finds a refill in flight takes its own single token instead of waiting for it.
A refusal carries the exact time the shared bucket frees its next slot (GCRA), for every worker
alike, so until then the worker refuses locally without asking again.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable

__all__ = ["Lease"]


class Lease:
    """The tokens one worker holds for one shared limit, and its recent call rate."""

    __slots__ = (
        "_clock",
        "_expires",
        "_lock",
        "_refilling",
        "_refused_until",
        "_since",
        "_spent",
        "lease",
        "max_batch",
        "tokens",
        "ttl",
    )

    def __init__(self, lease: float, max_batch: int, ttl: float, clock: Callable[[], float]) -> None:
        self.lease = lease
        self.max_batch = max_batch
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._refilling = threading.Lock()
        self.tokens = 0
        self._expires = -math.inf
        self._spent = 0  # tokens spent since the last refill
        self._since = clock()
        self._refused_until = -math.inf

    def refused(self, patience: float) -> float | None:
        """Seconds until the shared bucket's next slot, when a refusal said so and this call
        cannot wait that long (no round trip); None: ask Redis."""
        left = self._refused_until - self._clock()
        return left if left > patience else None

    def spend(self) -> bool:
        """Take one held token (no round trip); False when none is left or they expired."""
        with self._lock:
            if self.tokens > 0:
                if self._clock() < self._expires:
                    self.tokens -= 1
                    self._spent += 1
                    return True
                self.tokens = 0
            return False

    def wanted(self) -> int:
        """Tokens to ask for: what this worker spent in `lease` seconds at its recent rate."""
        with self._lock:
            now = self._clock()
            elapsed = max(now - self._since, 1e-6)
            rate = (self._spent + 1) / elapsed
            self._spent, self._since = 0, now
        return max(1, min(self.max_batch, math.ceil(rate * self.lease)))

    def refill(self, take: Callable[[int], tuple[int, float]]) -> tuple[bool, float]:
        """Spend one token from a fresh batch (`take(n)` asks Redis), or the refusal's retry_after."""
        if not self._refilling.acquire(blocking=False):
            granted, retry_after = take(1)  # someone else refills: take our own token, hold nothing
            return granted > 0, retry_after
        try:
            granted, retry_after = take(self.wanted())
            return self._got(granted, retry_after)
        finally:
            self._refilling.release()

    async def refill_async(self, take: Callable[[int], Awaitable[tuple[int, float]]]) -> tuple[bool, float]:
        if not self._refilling.acquire(blocking=False):
            granted, retry_after = await take(1)
            return granted > 0, retry_after
        try:
            granted, retry_after = await take(self.wanted())
            return self._got(granted, retry_after)
        finally:
            self._refilling.release()

    def _got(self, granted: int, retry_after: float) -> tuple[bool, float]:
        with self._lock:
            if granted > 0:
                self.tokens = granted - 1
                self._expires = self._clock() + self.ttl
                self._spent += 1  # the one this call spends
            else:
                self._refused_until = self._clock() + retry_after
        return granted > 0, retry_after
