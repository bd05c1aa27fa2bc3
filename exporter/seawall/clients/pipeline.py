"""`Pipeline`: one HTTP request through bulkhead > total timeout > retry > hedge > breaker > attempt
timeout (hedge only in async clients, and only when the policy has one).

Each stage is the seawall primitive itself (get-or-create by name in the registry, so its metrics,
page tiles, dashboards and alerts are the ones every primitive has). The pipeline knows nothing of
a client library: the adapters (`seawall.httpx`, `seawall.requests`) hand it one attempt as a
function and say how to read a status and close a response. It owns the one HTTP rule the
primitives cannot know: every response it made and does not hand to the caller is closed (a
retried answer, one dropped by a total timeout), so no connection stays checked out.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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


def inject(headers: Any) -> None:
    """Write the current trace context (W3C `traceparent`) into an attempt's headers, so the
    upstream's spans join the caller's trace. Called only while seawall.otel listens."""
    try:
        from opentelemetry.propagate import inject as otel_inject
    except ImportError:  # pragma: no cover - seawall.otel listening implies opentelemetry is there
        return
    otel_inject(headers)


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
        stages = {
            retryable: (self.bulkhead, self.total, self.retry if retryable else None)
            for retryable in (True, False)
        }
        self._outer_sync = {key: self._chain(value, False) for key, value in stages.items()}
        self._outer_async = {key: self._chain(value, True) for key, value in stages.items()}
        self._inner: dict[tuple[str, bool, bool], tuple[Callable[..., Any], ...]] = {}
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

    @staticmethod
    def _chain(stages: tuple[Any, ...], asynchronous: bool) -> tuple[Callable[..., Any], ...]:
        """The `call` (or `call_async`) of each stage present, outermost first: `chain[0](*chain[1:],
        fn)` runs `fn` through all of them (each stage's call takes the next one as its function),
        with no partial or closure built per request."""
        way = "call_async" if asynchronous else "call"
        return tuple(getattr(stage, way) for stage in stages if stage is not None)

    @property
    def traced(self) -> bool:
        """True while someone (seawall.otel) listens to the attempts: then adapters also inject
        the trace context into each attempt's headers."""
        return bool(self._on_started.listeners)

    def _inner_chain(
        self, authority: str, asynchronous: bool, hedged: bool
    ) -> tuple[Callable[..., Any], ...]:
        """The stages of one attempt for an upstream (hedge, breaker, attempt timeout), made once."""
        key = (authority, asynchronous, hedged)
        chain = self._inner.get(key)
        if chain is None:
            hedge = self.hedge if hedged and asynchronous else None
            stages = (hedge, self.breaker_for(authority), self.attempt_timeout)
            chain = self._inner[key] = self._chain(stages, asynchronous)
        return chain

    def _received(self, attempt: int, response: R, code: int, made: list[R]) -> R:
        """Keep `response` for closing, report the attempt, raise a transient answer to the stages."""
        made.append(response)
        if self._on_finished.listeners:
            self._ended(attempt, code, None)
        if code in self.policy.transient_statuses:
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
        made: list[R] = []  # every response of this request not yet closed or handed over
        sent = itertools.count(1)

        started, finished = self._on_started, self._on_finished

        def one() -> R:
            number = next(sent)
            if started.listeners:
                self._announce(target, number)
            try:
                response = attempt()
            except BaseException as exc:
                if finished.listeners:
                    self._ended(number, None, exc)
                raise
            return self._received(number, response, status(response), made)

        inner = self._inner_chain(target.authority, False, False)

        def again() -> R:  # one round of the retry: the previous round's answers are done with
            while made:
                close(made.pop())
            return inner[0](*inner[1:], one) if inner else one()

        outer = self._outer_sync[retryable]
        try:
            try:
                result: R = outer[0](*outer[1:], again) if outer else again()
            except UpstreamStatusError as exc:
                result = exc.response
            made.remove(result)
            return result
        finally:
            for response in made:
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
        made: list[R] = []
        sent = itertools.count(1)

        started, finished = self._on_started, self._on_finished

        async def one() -> R:
            number = next(sent)
            if started.listeners:
                self._announce(target, number)
            try:
                response = await attempt()
            except BaseException as exc:
                if finished.listeners:
                    self._ended(number, None, exc)
                raise
            return self._received(number, response, status(response), made)

        inner = self._inner_chain(target.authority, True, retryable)

        async def again() -> R:
            while made:
                await close(made.pop())
            return await (inner[0](*inner[1:], one) if inner else one())

        outer = self._outer_async[retryable]
        try:
            try:
                result: R = await (outer[0](*outer[1:], again) if outer else again())
            except UpstreamStatusError as exc:
                result = exc.response
            made.remove(result)
            return result
        finally:
            for response in made:
                await close(response)
