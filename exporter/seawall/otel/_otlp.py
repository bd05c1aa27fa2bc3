"""OTLP export for seawall's traces: an SDK TracerProvider whose exporter can fail without harm.

The exporter runs on the BatchSpanProcessor's thread behind a bounded queue, so a slow or dead
collector never blocks a call; every failed export is reported on the seawall bus (logged, and
counted as `seawall_instrumentation_errors_total{component="otlp"}`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace

from seawall.core.registry import Registry, default_registry

log = logging.getLogger("seawall.otel")

PROTOCOLS = ("http/protobuf", "grpc")
# How long shutdown and force_flush may wait for a collector: a dead one must not hold up an exit.
DEFAULT_SHUTDOWN_TIMEOUT = 3.0


class OTLPExportError(Exception):
    """An OTLP export returned failure (the exporter logs its own detail)."""


class _IsolatedExporter:
    """Wraps a SpanExporter: failures and exceptions are counted on the bus, never propagated."""

    def __init__(self, inner: Any, seawall_registry: Registry) -> None:
        self._inner = inner
        self._registry = seawall_registry
        self.failures = 0  # failed exports so far (force_flush compares it before and after)
        self._failures_lock = threading.Lock()
        self._drop_after = math.inf  # monotonic time past which batches are dropped (shutting down)

    def drop_after(self, deadline: float) -> None:
        self._drop_after = deadline

    def _failed(self) -> None:
        with self._failures_lock:
            self.failures += 1

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if time.monotonic() > self._drop_after:
            self._failed()
            return SpanExportResult.FAILURE  # shutdown's bound has passed: the rest is dropped
        try:
            result = self._inner.export(spans)
        except Exception as exc:
            self._failed()
            self._registry.bus.report_error("otlp", exc)
            return SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._failed()
            self._registry.bus.report_error(
                "otlp", OTLPExportError(f"OTLP export of {len(spans)} spans failed: {result}")
            )
        return result

    def shutdown(self) -> None:
        try:
            self._inner.shutdown()
        except Exception as exc:
            self._registry.bus.report_error("otlp", exc)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return bool(self._inner.force_flush(timeout_millis))
        except Exception as exc:
            self._registry.bus.report_error("otlp", exc)
            return False


def _within(seconds: float, fn: Callable[[], Any]) -> threading.Thread:
    """Run `fn` in a daemon thread and wait at most `seconds`; the thread (alive if not done).

    The SDK's own waits are not bounded (its shutdown joins the worker for up to 30 s, force_flush
    ignores its timeout and exports every batch in the caller's thread). A thread still stuck in a
    request after the bound is left to the exporter's own `timeout`; as a daemon it never holds up
    the process's exit.
    """
    thread = threading.Thread(target=fn, name="seawall-otlp-wait", daemon=True)
    thread.start()
    thread.join(seconds)
    return thread


def _bounded_processor(exporter: _IsolatedExporter, shutdown_timeout: float, **options: Any) -> Any:
    """A BatchSpanProcessor whose shutdown and force_flush return within `shutdown_timeout`."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    class BoundedBatchSpanProcessor(BatchSpanProcessor):
        _done = False
        _flushing: threading.Thread | None = None

        def shutdown(self) -> None:
            if self._done:
                return
            self._done = True
            exporter.drop_after(time.monotonic() + shutdown_timeout)
            if _within(shutdown_timeout, super().shutdown).is_alive():
                log.warning(
                    "seawall otlp: shutdown gave up after %.1f s; unsent spans are dropped", shutdown_timeout
                )

        def force_flush(self, timeout_millis: int | None = 30000) -> bool:
            """True only if every queued span was sent within both bounds. While an earlier flush
            is still stuck, answers False at once rather than start another thread behind it."""
            if self._flushing is not None and self._flushing.is_alive():
                return False
            wait = (
                shutdown_timeout if timeout_millis is None else min(timeout_millis / 1000, shutdown_timeout)
            )
            failures = exporter.failures
            flushed: list[bool] = []
            flush = super().force_flush

            def run() -> None:
                flushed.append(bool(flush()))

            self._flushing = _within(wait, run)
            return not self._flushing.is_alive() and all(flushed) and exporter.failures == failures

    return BoundedBatchSpanProcessor(exporter, **options)  # type: ignore[arg-type]


def _protocol(protocol: str | None) -> str:
    chosen = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if chosen not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {chosen!r}")
    return chosen


def _http_endpoint(endpoint: str) -> str:
    """A base URL (http://collector:4318) gets the traces path; a URL with a path is used as is."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def _exporter(protocol: str, endpoint: str | None, timeout: float | None) -> Any:
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise ImportError(
                "protocol='grpc' needs the OTLP gRPC exporter: pip install 'seawall[otel-grpc]'"
            ) from exc
        return GrpcExporter(endpoint=endpoint, timeout=timeout)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # pragma: no cover - part of the otel extra
        raise ImportError("the OTLP HTTP exporter is missing: pip install 'seawall[otel]'") from exc
    return OTLPSpanExporter(endpoint=None if endpoint is None else _http_endpoint(endpoint), timeout=timeout)


def traces_exporter_off() -> bool:
    """True when OTEL_TRACES_EXPORTER says `none` (the SDK's value for "export no traces")."""
    names = os.environ.get("OTEL_TRACES_EXPORTER", "")
    return [name.strip().lower() for name in names.split(",") if name.strip()] == ["none"]


def configure_otlp(
    endpoint: str | None = None,
    service_name: str | None = None,
    protocol: str | None = None,
    sampler: Any = None,
    *,
    set_global: bool = False,
    seawall_registry: Registry | None = None,
    timeout: float | None = None,
    max_queue_size: int | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> Any:
    """Build an SDK TracerProvider exporting over OTLP through a bounded BatchSpanProcessor.

    Arguments left None fall back to the standard variables: OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT,
    OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES,
    OTEL_TRACES_SAMPLER(_ARG), OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_BSP_*; OTEL_TRACES_EXPORTER=none gives
    a provider without an exporter (spans are dropped, nothing is sent). Export failures are counted
    as `seawall_instrumentation_errors_total{component="otlp"}` and logged; a full queue drops spans
    instead of blocking. `set_global=True` also makes it the global provider. `provider.shutdown()`
    and `provider.force_flush()` return within `shutdown_timeout` seconds even with the collector
    hanging or down (force_flush then answers False); spans not sent by then are dropped.
    """
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    if endpoint is not None and (not isinstance(endpoint, str) or not endpoint):
        raise ValueError(f"endpoint must be a non-empty URL string, got {endpoint!r}")
    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ValueError(f"service_name must be a non-empty string, got {service_name!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if (
        isinstance(shutdown_timeout, bool)
        or not isinstance(shutdown_timeout, (int, float))
        or not 0 < shutdown_timeout <= 300
    ):
        raise ValueError(
            f"shutdown_timeout must be a number of seconds in (0, 300], got {shutdown_timeout!r}"
        )
    if max_queue_size is not None and (
        isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int) or max_queue_size < 1
    ):
        raise ValueError(f"max_queue_size must be a positive int, got {max_queue_size!r}")
    chosen = _protocol(protocol)
    registry = default_registry() if seawall_registry is None else seawall_registry
    attributes = {} if service_name is None else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    if traces_exporter_off():
        if set_global:
            trace.set_tracer_provider(provider)
        return provider
    exporter = _IsolatedExporter(_exporter(chosen, endpoint, timeout), registry)
    processor = _bounded_processor(
        exporter,
        float(shutdown_timeout),
        max_queue_size=max_queue_size,
        max_export_batch_size=None if max_queue_size is None else min(512, max_queue_size),
        export_timeout_millis=None if timeout is None else timeout * 1000,
    )
    provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    return provider
