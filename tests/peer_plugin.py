"""A pytest plugin loaded (`-p peer_plugin`) into a run of a peer library's own test suite.

It records every test's outcome to the JSON file named by SEAWALL_PEER_RESULTS, so two runs (without
and with seawall's adapter) can be compared test by test. With SEAWALL_PEER_INSTRUMENT=tenacity it
instruments every tenacity Retrying on construction, traces the attempts with a real OpenTelemetry
SDK provider, and records what the adapter did: attempts started and finished, spans ended, calls
counted, instrumentation failures, and the tests after which a span was still current.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

import pytest

_results: dict[str, str] = {}
_summary: dict[str, Any] = {}
_finish: list[Any] = []


def _instrument_tenacity() -> None:
    import tenacity
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import seawall
    from seawall import otel
    from seawall.adapters.tenacity import instrument_retrying, is_instrumented
    from seawall.events import Event, RetryAttemptFinished, RetryAttemptStarted

    registry = seawall.Registry()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.instrument(provider, seawall_registry=registry)
    counts = {"started": 0, "finished": 0}

    def count(event: Event) -> None:
        counts["started" if isinstance(event, RetryAttemptStarted) else "finished"] += 1

    registry.bus.subscribe(count, events=(RetryAttemptStarted, RetryAttemptFinished))
    original = tenacity.BaseRetrying.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not is_instrumented(self):
            instrument_retrying(self, "peer-suite", registry=registry)

    tenacity.BaseRetrying.__init__ = init  # type: ignore[method-assign]
    leaked: list[str] = []
    _summary["leaked_current_span"] = leaked

    def check_current(nodeid: str) -> None:
        if trace.get_current_span() is not trace.INVALID_SPAN:
            leaked.append(nodeid)

    def finish() -> None:
        snapshot = registry.get("retry", "peer-suite")
        calls = snapshot.snapshot().calls if snapshot is not None else {}
        _summary.update(
            attempts_started=counts["started"],
            attempts_finished=counts["finished"],
            spans_ended=len(exporter.get_finished_spans()),
            calls_counted=sum(calls.values()),
            instrumentation_errors=registry.bus.instrumentation_errors(),
        )

    _finish.append(finish)
    _summary["check_current"] = check_current


if os.environ.get("SEAWALL_PEER_INSTRUMENT") == "tenacity":
    _instrument_tenacity()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    check = _summary.get("check_current")
    if check is not None:
        check(item.nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _results[report.nodeid] = "failed"
    elif report.skipped:
        _results.setdefault(report.nodeid, "skipped")
    elif report.when == "call":
        _results.setdefault(report.nodeid, "passed")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _results[report.nodeid] = "error"


def pytest_sessionfinish(session: pytest.Session) -> None:
    for finish in _finish:
        finish()
    path = os.environ.get("SEAWALL_PEER_RESULTS")
    if path:
        summary = {key: value for key, value in _summary.items() if key != "check_current"}
        with open(path, "w", encoding="utf-8") as out:
            json.dump({"results": _results, "summary": summary}, out, indent=1, sort_keys=True)
