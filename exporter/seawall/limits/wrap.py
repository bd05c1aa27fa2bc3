"""The decorator form shared by timeouts, bulkheads and rate limiters: one wrapper for plain and
one for `async def` functions, each forwarding to the primitive's `call` / `call_async`, keeping
the wrapped function's name, docstring and signature."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar, cast

P = ParamSpec("P")
R = TypeVar("R")


class Calls(Protocol):
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    async def call_async(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any: ...


def decorate(primitive: Calls, fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` wrapped so that every call goes through `primitive`."""
    if inspect.iscoroutinefunction(fn):
        call_async = primitive.call_async

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await call_async(fn, *args, **kwargs)

        return cast(Callable[P, R], async_wrapper)

    call = primitive.call

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return call(fn, *args, **kwargs)  # type: ignore[no-any-return]

    return wrapper


def decorate_gated(
    fn: Callable[P, R],
    admit_now: Callable[[], bool],
    admit: Callable[[], None],
    admit_async: Callable[[], Awaitable[None]],
    release: Callable[[], None] | None = None,
) -> Callable[P, R]:
    """`fn` behind a gate: `admit_now()` for the common case, else `admit()` / `await admit_async()`,
    which admit or raise; `release()` after the call when the gate holds something (a bulkhead's
    slot), nothing for one that only decides before it (a rate limiter). Inlined into the wrapper,
    so a call costs one frame (or coroutine) less than going through `call` / `call_async`."""
    if inspect.iscoroutinefunction(fn):
        if release is None:

            @functools.wraps(fn)
            async def gate_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                if not admit_now():
                    await admit_async()
                return await fn(*args, **kwargs)

            return cast(Callable[P, R], gate_async)
        leave = release

        @functools.wraps(fn)
        async def hold_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            if not admit_now():
                await admit_async()
            try:
                return await fn(*args, **kwargs)
            finally:
                leave()

        return cast(Callable[P, R], hold_async)
    if release is None:

        @functools.wraps(fn)
        def gate(*args: P.args, **kwargs: P.kwargs) -> R:
            if not admit_now():
                admit()
            return fn(*args, **kwargs)

        return gate
    done = release

    @functools.wraps(fn)
    def hold(*args: P.args, **kwargs: P.kwargs) -> R:
        if not admit_now():
            admit()
        try:
            return fn(*args, **kwargs)
        finally:
            done()

    return hold
