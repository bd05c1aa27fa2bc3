"""`Pipeline`: one HTTP request through bulkhead > total timeout > retry > hedge > breaker > attempt
timeout (hedge only in async clients, and only when the policy has one).

Each stage is the seawall primitive itself (get-or-create by name in the registry, so its metrics,
page tiles, dashboards and alerts are the ones every primitive has). The pipeline knows nothing of
a client library: the adapters (`seawall.httpx`, `seawall.requests`) hand it one attempt as a
function and say how to read a status and close a response. It owns the one HTTP rule the
primitives cannot know: every response it made and does not hand to the caller is closed (a
retried answer, one dropped by a total timeout), so no connection stays checked out.

The stages are composed once, with each primitive's own decorator, around functions that take the
request's `_Exchange` as their one argument: a request allocates that object and nothing else of
the pipeline's (no partial, closure or chain per request), and each stage costs one frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from seawall.breakers.breaker import CircuitBreaker, breaker
from seawall.clients.classify import RateLimitedResponse, Target, TransientFailure, UpstreamStatusError
from seawall.clients.policy import HttpPolicy
from seawall.core.registry import Registry, default_registry
from seawall.events import HttpAttemptFinished, HttpAttemptStarted
from seawall.hedging.hedge import hedge
from seawall.limits.bulkhead import bulkhead
from seawall.limits.timeout import timeout
from seawall.retries.retry import retry

__all__ = ["Pipeline", "inject"]

log = logging.getLogger("seawall")
R = TypeVar("R")
Composed = Callable[["_Exchange[Any]"], Any]

# Targets and per-target stage chains kept per pipeline: a client that calls unboundedly many hosts
# builds the rest per request instead of growing memory without end.
_KEPT = 256


def inject(headers: Any) -> None:
    """Write the current trace context (W3C `traceparent`) into an attempt's headers, so the
    upstream's spans join the caller's trace. Called only while seawall.otel listens."""
    try:
        from opentelemetry.propagate import inject as otel_inject
    except ImportError:  # pragma: no cover - seawall.otel listening implies opentelemetry is there
        return
    otel_inject(headers)


class _Exchange(Generic[R]):
    """One request on its way through the stages: what each attempt needs, the attempts sent so
    far and every response made and not yet closed or handed over."""

    __slots__ = ("attempt", "close", "inner", "made", "pipeline", "sent", "status", "target")

    def __init__(
        self,
        pipeline: Pipeline,
        target: Target,
        attempt: Callable[[], Any],
        status: Callable[[R], int],
        close: Callable[[R], Any],
        inner: Composed,
    ) -> None:
        self.pipeline = pipeline
        self.target = target
        self.attempt = attempt
        self.status = status
        self.close = close
        self.inner = inner  # hedge > breaker > attempt timeout of this request's upstream
        self.made: list[R] = []
        self.sent = 0


def _one(ex: _Exchange[R]) -> R:
    """One attempt: announced and reported while someone listens, its response kept for closing."""
    ex.sent = number = ex.sent + 1
    pipeline = ex.pipeline
    if pipeline._on_started.listeners:
        pipeline._announce(ex.target, number)
    try:
        response: R = ex.attempt()
    except BaseException as exc:
        if pipeline._on_finished.listeners:
            pipeline._ended(number, None, exc)
        raise
    return pipeline._received(number, response, ex.status(response), ex.made)


async def _one_async(ex: _Exchange[R]) -> R:
    ex.sent = number = ex.sent + 1
    pipeline = ex.pipeline
    if pipeline._on_started.listeners:
        pipeline._announce(ex.target, number)
    try:
        response: R = await ex.attempt()
    except BaseException as exc:
        if pipeline._on_finished.listeners:
            pipeline._ended(number, None, exc)
        raise
    return pipeline._received(number, response, ex.status(response), ex.made)


def _round(ex: _Exchange[R]) -> R:
    """One round of the retry: the previous round's answers are done with."""
    made = ex.made
    while made:
        ex.close(made.pop())
    return ex.inner(ex)  # type: ignore[no-any-return]


async def _round_async(ex: _Exchange[R]) -> R:
    made = ex.made
    while made:
        await ex.close(made.pop())
    return await ex.inner(ex)  # type: ignore[no-any-return]


def _compose(stages: tuple[Any, ...], fn: Composed) -> Composed:
    """`fn` decorated by each stage present, the first outermost (each primitive's decorator is
    its call's body as one wrapper, made here once)."""
    for stage in reversed(stages):
        if stage is not None:
            fn = stage(fn)
    return fn


class Pipeline:
    """The primitives of one named HTTP client, and `send` / `send_async` through them."""

    def __init__(
        self,
        name: str,
        policy: HttpPolicy,
        transient_errors: tuple[type[BaseException], ...],
        registry: Registry | None = None,
    ) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"name must be a non-empty str without '/', got {name!r}")
        reg = default_registry() if registry is None else registry
        self.name = name
        self.policy = policy
        self.registry = reg
        TransientFailure.include(transient_errors)
        self._transient = TransientFailure()
        self._transient_statuses = policy.transient_statuses
        p = policy
        self.bulkhead = None if p.bulkhead is None else bulkhead(name, registry=reg, **p.bulkhead)
        self.total = (
            None if p.total_timeout is None else timeout(f"{name}.total", p.total_timeout, registry=reg)
        )
        self.retry = None
        if p.retry is not None:
            settings = {"deadline": p.total_timeout, **p.retry}
            self.retry = retry(name, registry=reg, retry_on=self._transient, **settings)
        self.attempt_timeout = (
            None if p.attempt_timeout is None else timeout(f"{name}.attempt", p.attempt_timeout, registry=reg)
        )
        self.hedge = None if p.hedge is None else hedge(name, registry=reg, **p.hedge)
        self._breakers: dict[str, CircuitBreaker | None] = {}
        # [asynchronous][retryable] (bools index tuples): bulkhead > total timeout > retry, made once
        self._outer = tuple(
            tuple(
                _compose((self.bulkhead, self.total, self.retry if retryable else None), fn)
                for retryable in (False, True)
            )
            for fn in (_round, _round_async)
        )
        # [asynchronous][hedged]: each target's hedge > breaker > attempt timeout, made once
        self._inner: tuple[tuple[dict[Target, Composed], ...], ...] = (({}, {}), ({}, {}))
        self._targets: dict[tuple[str, str, str, int | None], Target] = {}
        self._on_started = reg.bus.channel(HttpAttemptStarted)
        self._on_finished = reg.bus.channel(HttpAttemptFinished)
        self._lock = threading.Lock()

    @classmethod
    def of(
        cls,
        name: str,
        transient_errors: tuple[type[BaseException], ...],
        registry: Registry | None,
        policy: HttpPolicy | None,
        stages: dict[str, Any],
        asynchronous: bool = False,
    ) -> Pipeline:
        """The pipeline of an adapter given either `policy` or stage keywords (`retry={...}`)."""
        if policy is None:
            policy = HttpPolicy.of(**stages)
        elif stages:
            raise TypeError(f"give either policy= or stage keywords, not both (got {sorted(stages)})")
        elif not isinstance(policy, HttpPolicy):
            raise TypeError(f"policy must be an HttpPolicy, got {policy!r}")
        if policy.hedge is not None and not asynchronous:
            raise TypeError(
                "hedge needs an async client (AsyncResilientTransport): a thread cannot be cancelled"
            )
        return cls(name, policy, transient_errors, registry)

    def may_retry(self, method: str, idempotency_key: bool, replayable: bool) -> bool:
        """An idempotent method, or one with an Idempotency-Key, whose body can be sent again."""
        return replayable and (idempotency_key or method.upper() in self.policy.retry_methods)

    def target(self, method: str, scheme: str, host: str, port: int | None) -> Target:
        """`Target.of(...)`, the same object for every request to one method and upstream (so the
        stages of its upstream are found by one lookup)."""
        key = (method, scheme, host, port)
        found = self._targets.get(key)
        if found is None:
            found = Target.of(method, scheme, host, port)
            if len(self._targets) < _KEPT:
                self._targets[key] = found
        return found

    def breaker_for(self, authority: str) -> CircuitBreaker | None:
        """The breaker of one upstream; past `max_authorities` upstreams, none (names stay bounded)."""
        found = self._breakers.get(authority, False)
        if found is not False:
            return found  # type: ignore[return-value]
        settings = self.policy.breaker
        with self._lock:
            if authority in self._breakers:
                return self._breakers[authority]
            made: CircuitBreaker | None = None
            if settings is not None:
                if len(self._breakers) < self.policy.max_authorities:
                    made = breaker(
                        f"{self.name}@{authority}",
                        registry=self.registry,
                        record_on=self._transient,
                        ignore_on=RateLimitedResponse(),
                        **settings,
                    )
                elif len(self._breakers) == self.policy.max_authorities:
                    log.warning(
                        "seawall HTTP client %r: more than %d upstreams; later ones get no breaker",
                        self.name,
                        self.policy.max_authorities,
                    )
            self._breakers[authority] = made
            return made

    @property
    def traced(self) -> bool:
        """True while someone (seawall.otel) listens to the attempts: then adapters also inject
        the trace context into each attempt's headers."""
        return bool(self._on_started.listeners)

    def _inner_for(self, target: Target, asynchronous: bool, hedged: bool) -> Composed:
        """The stages of one attempt to `target`'s upstream (hedge, breaker, attempt timeout)."""
        chains = self._inner[asynchronous][hedged]
        chain = chains.get(target)
        if chain is None:
            hedge = self.hedge if hedged and asynchronous else None
            stages = (hedge, self.breaker_for(target.authority), self.attempt_timeout)
            chain = _compose(stages, _one_async if asynchronous else _one)
            if len(chains) < _KEPT:
                chains[target] = chain
        return chain

    def _received(self, attempt: int, response: R, code: int, made: list[R]) -> R:
        """Keep `response` for closing, report the attempt, raise a transient answer to the stages."""
        made.append(response)
        if self._on_finished.listeners:
            self._ended(attempt, code, None)
        if code in self._transient_statuses:
            raise UpstreamStatusError(response, code)
        return response

    def _announce(self, target: Target, attempt: int) -> None:
        t = target
        self._on_started.publish(HttpAttemptStarted(self.name, t.method, t.scheme, t.host, t.port, attempt))

    def _ended(self, attempt: int, status: int | None, error: BaseException | None) -> None:
        error_type = None if error is None else type(error).__name__
        self._on_finished.publish(HttpAttemptFinished(self.name, attempt, status, error_type))

    def send(
        self,
        target: Target,
        retryable: bool,
        attempt: Callable[[], R],
        status: Callable[[R], int],
        close: Callable[[R], None],
    ) -> R:
        """Run one request; returns the response to give the caller (the last one, when the retries
        end on a transient status), or raises what the last stage raised."""
        ex = _Exchange(self, target, attempt, status, close, self._inner_for(target, False, False))
        try:
            try:
                result: R = self._outer[False][retryable](ex)
            except UpstreamStatusError as exc:
                result = exc.response
            ex.made.remove(result)
            return result
        finally:
            for response in ex.made:
                close(response)

    async def send_async(
        self,
        target: Target,
        retryable: bool,
        attempt: Callable[[], Awaitable[R]],
        status: Callable[[R], int],
        close: Callable[[R], Awaitable[None]],
    ) -> R:
        """`send` for an async client: the timeouts cancel the attempt at their deadlines, and a
        replayable request is hedged when the policy has a hedge (every hedged attempt goes through
        the breaker and the attempt timeout; the losers are cancelled and their answers closed)."""
        ex = _Exchange(self, target, attempt, status, close, self._inner_for(target, True, retryable))
        try:
            try:
                result: R = await self._outer[True][retryable](ex)
            except UpstreamStatusError as exc:
                result = exc.response
            ex.made.remove(result)
            return result
        finally:
            for response in ex.made:
                await close(response)
