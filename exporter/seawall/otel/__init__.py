"""OpenTelemetry traces for seawall: one span per retry attempt, breaker happenings as span events.

`instrument()` subscribes to a seawall registry's bus. Events arrive synchronously in the caller's
thread and task, so the span of an attempt is opened on `RetryAttemptStarted`, made current (the
attempt's own work nests under it) and ended on `RetryAttemptFinished`. Breaker rejections and
state changes, fallbacks and exhausted retries become events on whatever span is current. Events
carry the error's class name, not the exception: the exception itself is recorded once, by the span
that owns the `try` it propagates through (the caller's); seawall sets `error.type` and status ERROR
on the attempt spans it owns.

With no SDK TracerProvider (the global one is the API's proxy or no-op), `instrument()` does not
subscribe at all, so untraced services pay nothing. `configure_otlp()` builds an SDK provider that
exports over OTLP through a bounded batch queue; export failures are counted on the bus, never
raised into calls.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import weakref
from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)

from seawall.core.registry import Registry, default_registry

from ..events import (
    BreakerCallRejected,
    BreakerStateChanged,
    BulkheadRejected,
    CallTimedOut,
    Event,
    FallbackUsed,
    FeatureToggled,
    HedgeSent,
    HedgeWon,
    HttpAttemptFinished,
    HttpAttemptStarted,
    RateLimited,
    RateLimiterBackendFailed,
    RetryAttemptFinished,
    RetryAttemptStarted,
    RetryGaveUp,
    TaskFailed,
    handlers,
)
from ._metrics import OtelMetricsInstrumentation, instrument_metrics
from ._otlp import PROTOCOLS, OTLPExportError, configure_otlp

__all__ = [
    "PROTOCOLS",
    "OTLPExportError",
    "OtelInstrumentation",
    "OtelMetricsInstrumentation",
    "configure_otlp",
    "instrument",
    "instrument_metrics",
]

log = logging.getLogger("seawall")

_ERROR = Status(StatusCode.ERROR)


class _Open(NamedTuple):
    """An open attempt span; the parent link makes a stack, so nested retries close in order."""

    retry: str
    attempt: int
    span: Span
    token: object  # the context token to detach
    parent: _Open | None
    recording: bool


# `error.type` is "the class of error the operation ended with": seawall sets it on the attempt spans
# it owns, which end with that error. A span event lands on the caller's span, whose operation may
# well succeed (a fallback, a retry that gives up inside a larger request), so events carry the
# class name under seawall's own key.
ERROR_TYPE_EVENT = "seawall.error.type"


class OtelInstrumentation:
    """The listener `instrument()` returns. `active` is False when nothing was subscribed."""

    component = "otel"

    def __init__(self, tracer: Tracer | None, seawall_registry: Registry, tracer_provider: object) -> None:
        self.tracer = tracer
        self.seawall_registry = seawall_registry
        self.tracer_provider = tracer_provider
        self.active = tracer is not None
        self._names: dict[str, str] = {}
        self._open: contextvars.ContextVar[_Open | None] = contextvars.ContextVar(
            "seawall_otel_attempt", default=None
        )
        self._http_open: contextvars.ContextVar[_Open | None] = contextvars.ContextVar(
            "seawall_otel_http_attempt", default=None
        )
        self._dispatch = handlers(self)
        # What the listener handles (attempt spans inline, the rest by the dispatch table); every
        # other event type is never built for it.
        self.traced_events = (RetryAttemptStarted, RetryAttemptFinished, *self._dispatch)
        self.listener = self._make_listener()
        self._unsubscribe = (
            seawall_registry.bus.subscribe(self.listener, events=self.traced_events) if self.active else None
        )

    def _make_listener(self) -> Any:
        """The function subscribed to the bus. Attempt spans are opened and closed inline (a
        handler call per event would be a Python frame each); the rest goes by the dispatch dict.

        An attempt span is made current (attached) even when it is not sampled, so the attempt's
        own spans inherit that decision instead of starting traces of their own."""
        dispatch, names, open_spans, tracer = self._dispatch, self._names, self._open, self.tracer
        started, finished = RetryAttemptStarted, RetryAttemptFinished
        attach, detach, in_context = otel_context.attach, otel_context.detach, trace.set_span_in_context
        error = _ERROR

        def listener(event: Event, /) -> None:
            cls = event.__class__
            if cls is started:
                retry, attempt = event.retry, event.attempt  # type: ignore[union-attr]
                name = names.get(retry)
                if name is None:
                    name = names[retry] = f"retry {retry}"
                span = tracer.start_span(name)  # type: ignore[union-attr]
                recording = span.is_recording()
                if recording:  # set after the sampling decision: unsampled ones build nothing
                    # seawall.retry.attempt, not http.request.resend_count: that attribute belongs
                    # to HTTP client spans, and a retried operation is not one
                    span.set_attributes({"seawall.retry.name": retry, "seawall.retry.attempt": attempt})
                token = attach(in_context(span))
                open_spans.set(_Open(retry, attempt, span, token, open_spans.get(), recording))
            elif cls is finished:
                node = open_spans.get()
                attempt, retry = event.attempt, event.retry  # type: ignore[union-attr]
                while node is not None and (node.attempt != attempt or node.retry != retry):
                    node = node.parent
                if node is None:  # started before instrument() or in another context: nothing to end
                    return
                open_spans.set(node.parent)
                span = node.span
                if node.recording:
                    if event.error_type is not None:  # type: ignore[union-attr]
                        attributes = {"error.type": event.error_type}  # type: ignore[union-attr]
                        if event.category is not None:  # type: ignore[union-attr]
                            attributes["seawall.error.category"] = event.category.value  # type: ignore[union-attr]
                        if event.will_retry:  # type: ignore[union-attr]
                            attributes["seawall.retry.will_retry"] = True
                            attributes["seawall.retry.delay"] = event.delay  # type: ignore[union-attr]
                        span.set_attributes(attributes)
                        span.set_status(error)
                    elif event.will_retry:  # type: ignore[union-attr]
                        span.set_attributes(
                            {"seawall.retry.will_retry": True, "seawall.retry.delay": event.delay}  # type: ignore[union-attr]
                        )
                span.end()
                detach(node.token)  # type: ignore[arg-type]
            else:
                handler = dispatch.get(cls)
                if handler is not None:
                    handler(event)

        listener.component = self.component  # type: ignore[attr-defined]
        return listener

    def __call__(self, event: Event, /) -> None:
        self.listener(event)

    # -- span events on the current span -----------------------------------------------------
    @staticmethod
    def _annotate(name: str, attributes: dict[str, Any]) -> None:
        """Add a span event to the caller's current span, when it records."""
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(name, attributes)

    def _on_retry_gave_up(self, event: RetryGaveUp) -> None:
        self._annotate(
            "seawall.retry.gave_up",
            {
                "seawall.retry.name": event.retry,
                "seawall.retry.outcome": event.outcome.value,
                "seawall.retry.attempts": event.attempts,
                ERROR_TYPE_EVENT: event.error_type,
            },
        )

    def _on_breaker_call_rejected(self, event: BreakerCallRejected) -> None:
        self._annotate(
            "seawall.breaker.rejected",
            {
                "seawall.breaker.name": event.breaker,
                "seawall.breaker.state": event.state.value,
                "seawall.breaker.retry_after": event.retry_after,
            },
        )

    def _on_breaker_state_changed(self, event: BreakerStateChanged) -> None:
        self._annotate(
            "seawall.breaker.state_change",
            {
                "seawall.breaker.name": event.breaker,
                "seawall.breaker.from_state": event.from_state.value,
                "seawall.breaker.to_state": event.to_state.value,
                "seawall.breaker.reason": event.reason,
            },
        )

    def _on_fallback_used(self, event: FallbackUsed) -> None:
        attributes: dict[str, Any] = {
            "seawall.feature.name": event.feature,
            "seawall.fallback.reason": event.reason.value,
        }
        if event.error_type is not None:
            attributes[ERROR_TYPE_EVENT] = event.error_type
        self._annotate("seawall.fallback", attributes)

    def _on_feature_toggled(self, event: FeatureToggled) -> None:
        self._annotate(
            "seawall.feature.toggled",
            {
                "seawall.feature.name": event.feature,
                "seawall.feature.enabled": event.enabled,
                "seawall.feature.reason": event.reason,
            },
        )

    def _on_call_timed_out(self, event: CallTimedOut) -> None:
        self._annotate(
            "seawall.timeout",
            {
                "seawall.timeout.name": event.timeout,
                "seawall.timeout.seconds": event.seconds,
                "seawall.timeout.elapsed": event.elapsed,
                "seawall.timeout.cancelled": event.cancelled,
                ERROR_TYPE_EVENT: "CallTimeoutError",
            },
        )

    def _on_bulkhead_rejected(self, event: BulkheadRejected) -> None:
        self._annotate(
            "seawall.bulkhead.rejected",
            {
                "seawall.bulkhead.name": event.bulkhead,
                "seawall.bulkhead.max_concurrent": event.max_concurrent,
                "seawall.bulkhead.waited": event.waited,
            },
        )

    def _on_rate_limited(self, event: RateLimited) -> None:
        attributes: dict[str, Any] = {
            "seawall.rate_limiter.name": event.limiter,
            "seawall.rate_limiter.backend": event.backend,
        }
        if event.retry_after is not None:
            attributes["seawall.rate_limiter.retry_after"] = event.retry_after
        self._annotate("seawall.rate_limiter.rejected", attributes)

    def _on_rate_limiter_backend_failed(self, event: RateLimiterBackendFailed) -> None:
        self._annotate(
            "seawall.rate_limiter.backend_failed",
            {
                "seawall.rate_limiter.name": event.limiter,
                "seawall.rate_limiter.backend": event.backend,
                "seawall.rate_limiter.failure_policy": event.failure_policy,
                ERROR_TYPE_EVENT: event.error_type,
            },
        )

    def _on_hedge_sent(self, event: HedgeSent) -> None:
        self._annotate(
            "seawall.hedge.sent",
            {
                "seawall.hedge.name": event.name,
                "seawall.hedge.attempt": event.attempt,
                "seawall.hedge.after": event.after,
            },
        )

    def _on_hedge_won(self, event: HedgeWon) -> None:
        self._annotate(
            "seawall.hedge.won", {"seawall.hedge.name": event.name, "seawall.hedge.attempt": event.attempt}
        )

    # -- HTTP client attempts: one CLIENT span each, OpenTelemetry's HTTP client conventions --------
    def _on_http_attempt_started(self, event: HttpAttemptStarted) -> None:
        attributes: dict[str, Any] = {
            "http.request.method": event.method,
            "server.address": event.host,
            "server.port": event.port,
            "url.scheme": event.scheme,
            "seawall.http.client": event.client,
        }
        if event.attempt > 1:
            attributes["http.request.resend_count"] = event.attempt - 1
        tracer = self.tracer
        assert tracer is not None  # subscribed only with a tracer
        span = tracer.start_span(event.method, kind=SpanKind.CLIENT, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        parent = self._http_open.get()
        self._http_open.set(_Open(event.client, event.attempt, span, token, parent, span.is_recording()))

    def _on_http_attempt_finished(self, event: HttpAttemptFinished) -> None:
        node = self._http_open.get()
        while node is not None and (node.attempt != event.attempt or node.retry != event.client):
            node = node.parent
        if node is None:  # started before instrument() or in another context: nothing to end
            return
        self._http_open.set(node.parent)
        span = node.span
        if node.recording:
            if event.status_code is not None:
                span.set_attribute("http.response.status_code", event.status_code)
            error_type = event.error_type
            if error_type is None and event.status_code is not None and event.status_code >= 400:
                error_type = str(event.status_code)  # the conventions' error.type for an error status
            if error_type is not None:
                span.set_attribute("error.type", error_type)
                span.set_status(_ERROR)
        span.end()
        otel_context.detach(node.token)  # type: ignore[arg-type]

    def _on_task_failed(self, event: TaskFailed) -> None:
        self._annotate(
            "seawall.task.failed",
            {
                "seawall.task.name": event.task,
                "seawall.task.will_restart": event.will_restart,
                "seawall.task.restart_delay": event.delay,
                "seawall.error.category": event.category.value,
                ERROR_TYPE_EVENT: event.error_type,
            },
        )

    def close(self) -> None:
        """Unsubscribe; idempotent."""
        with _instances_lock:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            if _instances.get(self.seawall_registry) is self:
                del _instances[self.seawall_registry]


_instances: weakref.WeakKeyDictionary[Registry, OtelInstrumentation] = weakref.WeakKeyDictionary()
_instances_lock = threading.Lock()


def _is_noop(provider: object) -> bool:
    return isinstance(provider, (ProxyTracerProvider, NoOpTracerProvider))


def instrument(
    tracer_provider: trace.TracerProvider | None = None, *, seawall_registry: Registry | None = None
) -> OtelInstrumentation:
    """Trace the primitives of `seawall_registry` (default: the default registry).

    `tracer_provider=None` uses the global provider as it is *now*: call this after setting it.
    When it is the API's proxy/no-op provider, nothing is subscribed (`.active` is False).
    Idempotent per seawall registry for the same provider; another provider is a ValueError.
    """
    if seawall_registry is None:
        seawall_registry = default_registry()
    elif not isinstance(seawall_registry, Registry):
        raise TypeError(f"seawall_registry must be a seawall.Registry, got {seawall_registry!r}")
    provider = trace.get_tracer_provider() if tracer_provider is None else tracer_provider
    if not isinstance(provider, trace.TracerProvider):
        raise TypeError(f"tracer_provider must be an opentelemetry TracerProvider, got {tracer_provider!r}")
    with _instances_lock:
        existing = _instances.get(seawall_registry)
        if existing is not None:
            if existing.tracer_provider is provider:
                return existing
            raise ValueError(
                f"this seawall registry is already traced with {existing.tracer_provider!r}; "
                "close() that instrumentation first"
            )
        if _is_noop(provider):
            return OtelInstrumentation(None, seawall_registry, provider)
        from .. import __version__

        tracer = provider.get_tracer("seawall", __version__)
        created = OtelInstrumentation(tracer, seawall_registry, provider)
        _instances[seawall_registry] = created
        return created
