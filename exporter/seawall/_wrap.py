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
        return cast(R, call(fn, *args, **kwargs))

    return wrapper
