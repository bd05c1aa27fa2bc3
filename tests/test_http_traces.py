"""Traces of the resilient HTTP clients: one CLIENT span per attempt with OpenTelemetry's HTTP
client attributes (`http.request.resend_count` from the second attempt on), inside the retry's
attempt spans, the trace context sent upstream; and nested under opentelemetry-instrumentation-httpx
when a client is instrumented by it as well."""

from __future__ import annotations

from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import seawall
import seawall.httpx as sh
import seawall.requests as sr
from http_upstream import Upstream

FAST = {"initial": 0.01, "max_delay": 5.0}


def http_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s for s in exporter.get_finished_spans() if s.attributes and "seawall.http.client" in s.attributes
    ]


def check_attempts(exporter: InMemorySpanExporter, upstream: Upstream, path: str) -> list[ReadableSpan]:
    attempts = http_spans(exporter)
    assert [s.name for s in attempts] == ["GET"] * 3
    assert all(s.kind is SpanKind.CLIENT for s in attempts)
    assert [s.attributes.get("http.request.resend_count") for s in attempts] == [None, 1, 2]  # type: ignore[union-attr]
    assert [s.attributes["http.response.status_code"] for s in attempts] == [503, 503, 200]  # type: ignore[index]
    assert [s.attributes.get("error.type") for s in attempts] == ["503", "503", None]  # type: ignore[union-attr]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert attempts[0].attributes["server.address"] == "127.0.0.1"  # type: ignore[index]
    assert attempts[0].attributes["server.port"] == upstream.port  # type: ignore[index]
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}  # type: ignore[union-attr]
    for attempt in attempts:  # each inside the retry's attempt span, all in one trace
        parent = by_id[attempt.parent.span_id]  # type: ignore[union-attr]
        assert parent.name == "retry up"
        assert attempt.context.trace_id == attempts[0].context.trace_id  # type: ignore[union-attr]
        assert by_id[parent.parent.span_id].name == "caller"  # type: ignore[union-attr]
    sent = upstream.app.traceparents[path]
    assert [tp.split("-")[2] for tp in sent] == [f"{s.context.span_id:016x}" for s in attempts]  # type: ignore[union-attr]
    return attempts


def test_one_client_span_per_attempt_httpx(
    upstream: Upstream, registry: seawall.Registry, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    caller = tracing[0].get_tracer("test").start_as_current_span("caller")
    with (
        caller,
        sh.client("up", registry=registry, policy=sh.HttpPolicy.of(retry=FAST), base_url=upstream.base) as c,
    ):
        assert c.get("/flaky/t?fail=2").status_code == 200
    check_attempts(tracing[1], upstream, "/flaky/t")


def test_one_client_span_per_attempt_requests(
    upstream: Upstream, registry: seawall.Registry, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    caller = tracing[0].get_tracer("test").start_as_current_span("caller")
    with caller, sr.session("up", registry=registry, policy=sr.HttpPolicy.of(retry=FAST)) as s:
        assert s.get(f"{upstream.base}/flaky/r?fail=2").status_code == 200
    check_attempts(tracing[1], upstream, "/flaky/r")


def test_nested_under_opentelemetry_instrumentation_httpx(
    upstream: Upstream, registry: seawall.Registry, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    with sh.client("up", registry=registry, policy=sh.HttpPolicy.of(retry=FAST), base_url=upstream.base) as c:
        HTTPXClientInstrumentor.instrument_client(c, tracer_provider=provider)
        assert c.get("/flaky/n?fail=2").status_code == 200
    outer = [
        s for s in exporter.get_finished_spans() if s.instrumentation_scope.name.startswith("opentelemetry")
    ]
    assert len(outer) == 1  # the request as the caller made it
    (request,) = outer
    assert request.kind is SpanKind.CLIENT
    by_id = {s.context.span_id: s for s in exporter.get_finished_spans()}  # type: ignore[union-attr]
    for attempt in http_spans(exporter):
        chain = []
        node: ReadableSpan | None = attempt
        while node is not None and node.parent is not None:
            node = by_id.get(node.parent.span_id)
            if node is not None:
                chain.append(node.name)
        assert chain == ["retry up", request.name]
