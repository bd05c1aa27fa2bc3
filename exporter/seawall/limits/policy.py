"""`policy(...)`: the primitives of one dependency stacked in the documented order.

`retry( rate_limiter( bulkhead( breaker( timeout(fn) ) ) ) )`, outermost first (README, "Which
order"). Each layer is the primitive itself, called as it is on its own: the helper only fixes
the order and, when the retry has a `deadline`, puts that deadline in scope around the whole
stack, so an attempt's timeout, a bulkhead wait and a rate-limit wait never outlive it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from seawall.limits.bulkhead import Bulkhead
from seawall.limits.ratelimit import RateLimiter
from seawall.limits.timeout import Timeout, within
from seawall.limits.wrap import decorate

__all__ = ["Policy", "policy"]

P = ParamSpec("P")
R = TypeVar("R")


class Policy:
    """The layers, outermost first; `call`, `call_async` and the decorator run through all of them."""

    __slots__ = ("_clock", "_deadline", "layers")

    def __init__(self, layers: tuple[Any, ...], deadline: float | None, clock: Callable[[], float]) -> None:
        self.layers = layers
        self._deadline = deadline
        self._clock = clock

    def __repr__(self) -> str:
        return "Policy(" + " > ".join(f"{layer.kind} {layer.name!r}" for layer in self.layers) + ")"

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        run: Callable[[], Any] = functools.partial(fn, *args, **kwargs)
        for layer in reversed(self.layers):
            run = functools.partial(layer.call, run)
        if self._deadline is None:
            return run()  # type: ignore[no-any-return]
        with within(self._deadline, self._clock):
            return run()  # type: ignore[no-any-return]

    async def call_async(self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs) -> R:
        run: Callable[[], Awaitable[Any]] = functools.partial(fn, *args, **kwargs)
        for layer in reversed(self.layers):
            run = functools.partial(layer.call_async, run)
        if self._deadline is None:
            return await run()  # type: ignore[no-any-return]
        with within(self._deadline, self._clock):
            return await run()  # type: ignore[no-any-return]

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        return decorate(self, fn)


def policy(
    *,
    retry: Any = None,
    rate_limiter: RateLimiter | None = None,
    bulkhead: Bulkhead | None = None,
    breaker: Any = None,
    timeout: Timeout | None = None,
) -> Policy:
    """Stack the given primitives (any may be left out) in the documented order."""
    given = {
        "retry": retry,
        "rate_limiter": rate_limiter,
        "bulkhead": bulkhead,
        "breaker": breaker,
        "timeout": timeout,
    }
    layers = []
    for kind, layer in given.items():
        if layer is None:
            continue
        if getattr(layer, "kind", None) != kind:
            raise TypeError(f"{kind} must be a seawall {kind} primitive, got {layer!r}")
        layers.append(layer)
    if not layers:
        raise ValueError("policy needs at least one of retry, rate_limiter, bulkhead, breaker, timeout")
    deadline = None if retry is None else retry.config.get("deadline")
    clock = getattr(retry, "clock", time.monotonic)  # the retry's own clock measures its deadline
    return Policy(tuple(layers), deadline, clock)
