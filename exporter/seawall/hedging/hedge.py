"""`Hedge`: when an attempt is slow, start another; the first success wins, the rest are cancelled.

A hedge trades extra load for tail latency (Dean and Barroso, "The Tail at Scale"), so the extra
load is bounded twice: at most `max_hedges` extra attempts per call, and a budget: each call earns
`budget` hedges (0.1: one hedge per ten calls, on average) into a bucket of at most `burst`, and a
hedge spends one. An outage, where every call is slow, therefore costs at most `burst` hedges
beyond the running fraction, instead of doubling the load on a struggling upstream.

The delay is fixed, or the `percentile` of the recent successful attempts' latencies (the last
`window` of them, once 20 are known), so only calls slower than usual are hedged. An attempt that
fails starts the next hedge at once (it would only wait for nothing).

Async only: the losing attempts must be stopped, and Python can cancel a task but not a thread
(the same reason a sync `Timeout` is a deadline, docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ParamSpec, TypeVar, cast

from seawall.core.factory import obtain
from seawall.core.kinds import Kind, KindSpec, register_kind
from seawall.core.primitive import Primitive
from seawall.core.registry import Registry
from seawall.events import HedgeSent, HedgeWon
from seawall.hedging.settings import HEDGE_OUTCOMES, MIN_SAMPLES, HedgeSettings

__all__ = ["HEDGE_OUTCOMES", "Hedge", "HedgeSnapshot", "hedge"]

P = ParamSpec("P")
R = TypeVar("R")

_REFRESH = 16  # successes between recomputations of the percentile


@dataclass(frozen=True, slots=True)
class HedgeSnapshot:
    """Counts of one hedge: `hedges` by outcome (sent; won: a hedge, not the first attempt,
    answered first; cancelled: attempts stopped because another won; throttled: hedges the
    budget refused), and the delay the next call would wait."""

    name: str
    calls: int
    hedges: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    max_hedges: int = 1
    budget: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Hedge(Primitive[HedgeSettings]):
    """A named hedging policy for async calls: `await hedge.call_async(fn, ...)` or a decorator.

    Settings are `HedgeSettings` fields, given as keywords or as `settings=HedgeSettings(...)`.
    """

    kind = Kind.HEDGE

    def __init__(
        self,
        name: str,
        *,
        settings: HedgeSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(name, settings=settings, clock=clock, registry=registry, **overrides)
        self.max_hedges = self.settings.max_hedges
        self._lock = threading.Lock()
        self._tokens = self.settings.burst
        self._calls = 0
        self._counts = dict.fromkeys(HEDGE_OUTCOMES, 0)
        self._recent: deque[float] = deque(maxlen=self.settings.window)
        self._fresh = 0
        self._current = self.settings.delay
        self._on_sent = self.registry.bus.channel(HedgeSent)
        self._on_won = self.registry.bus.channel(HedgeWon)
        self.registry.add(self)

    def __repr__(self) -> str:
        return f"Hedge({self.name!r}, delay={self._current:g}, max_hedges={self.max_hedges})"

    def snapshot(self) -> HedgeSnapshot:
        with self._lock:
            return HedgeSnapshot(
                self.name,
                self._calls,
                dict(self._counts),
                self._current,
                self.max_hedges,
                self.settings.budget,
            )

    # -- bookkeeping (under the lock) -----------------------------------------------------------

    def _start(self) -> float:
        """Count a call, earn its share of the budget; the delay it waits before hedging."""
        with self._lock:
            self._calls += 1
            self._tokens = min(self.settings.burst, self._tokens + self.settings.budget)
            return self._current

    def _spend(self) -> bool:
        with self._lock:
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self._counts["sent"] += 1
                return True
            self._counts["throttled"] += 1
            return False

    def _finish(self, winner: int | None, latency: float | None, cancelled: int) -> None:
        with self._lock:
            self._counts["cancelled"] += cancelled
            if winner:
                self._counts["won"] += 1
            percentile = self.settings.percentile
            if latency is None or percentile is None:
                return
            self._recent.append(latency)
            self._fresh += 1
            if len(self._recent) >= MIN_SAMPLES and self._fresh >= _REFRESH:
                self._fresh = 0
                ordered = sorted(self._recent)
                self._current = ordered[min(len(ordered) - 1, math.ceil(percentile * len(ordered)) - 1)]

    # -- the call -------------------------------------------------------------------------------

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Await `fn(*args, **kwargs)`, hedged; raises the last failure when every attempt failed.
        Every attempt still running when the call ends (won, failed or cancelled) is cancelled
        and awaited, so none outlives the call."""
        delay = self._start()
        clock = self._clock
        attempts: list[tuple[asyncio.Future[R], float]] = []

        def launch() -> None:
            attempts.append((asyncio.ensure_future(fn(*args, **kwargs)), clock()))

        launch()
        failure: BaseException | None = None
        may_hedge = True
        winner: int | None = None
        latency: float | None = None
        try:
            while True:
                running = {task for task, _ in attempts if not task.done()}
                wait = delay if may_hedge and len(attempts) <= self.max_hedges else None
                if running:
                    done, _ = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                else:
                    done = set()
                for index, (task, started) in enumerate(attempts):
                    if task in done:
                        if task.exception() is None:
                            winner, latency = index, clock() - started
                            return task.result()
                        failure = task.exception()
                if not (may_hedge and len(attempts) <= self.max_hedges):
                    if not any(not task.done() for task, _ in attempts):
                        raise cast(BaseException, failure)
                    continue
                if self._spend():
                    launch()
                    if self._on_sent.listeners:
                        self._on_sent.publish(HedgeSent(self.name, len(attempts), clock() - attempts[0][1]))
                else:
                    may_hedge = False
        finally:
            leftover = [task for task, _ in attempts if not task.done()]
            for task in leftover:
                task.cancel()
            if leftover:
                await asyncio.gather(*leftover, return_exceptions=True)
            self._finish(winner, latency, len(leftover))
            if winner and self._on_won.listeners:
                self._on_won.publish(HedgeWon(self.name, winner + 1))

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate an `async def` function (a sync one is a TypeError: a thread cannot be cancelled)."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"hedge {self.name!r} needs an async function (a thread cannot be cancelled)")

        @functools.wraps(fn)
        async def hedged(*args: P.args, **kwargs: P.kwargs) -> R:
            return await self.call_async(fn, *args, **kwargs)

        return hedged


def hedge(name: str, *, registry: Registry | None = None, **options: Any) -> Hedge:
    """The hedge named `name` in the default registry (or `registry`), created on first use;
    asking again with other settings is a ValueError."""
    found: Hedge = obtain(Kind.HEDGE, name, registry, options)
    return found


register_kind(KindSpec.of(Hedge, HedgeSnapshot, hedge))
