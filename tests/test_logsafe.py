"""Log lines: control characters escaped, secrets masked, in every value seawall logs for a caller."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import seawall
from seawall.core.logsafe import escape, exception_text, log_value
from seawall.errors.classify import clear_registrations
from seawall.starlette import create_app
from seawall.starlette.admin import BREAKER_ACTIONS, FEATURE_ACTIONS
from seawall.starlette.middleware import ResponseAborted

TOKEN = "s3cret-admin-token"


def test_escape_writes_controls_as_visible_escapes() -> None:
    assert escape("a\r\nb\tc\x1b[31m\x00\x7f\x85\u2028") == "a\\r\\nb\\tc\\x1b[31m\\x00\\x7f\\x85\\u2028"
    assert escape("plain text, ünïcode ✓") == "plain text, ünïcode ✓"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_log_value_is_always_one_bounded_line(text: str) -> None:
    value = log_value(text, limit=50)
    assert value.splitlines() == [value] or value == ""
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    assert len(value) <= 53


def test_log_value_redacts_and_survives_unprintable_values() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert log_value("password=hunter2") == "password=[REDACTED]"
    assert log_value(Unprintable()) == "<unprintable Unprintable>"


def test_exception_text_keeps_frames_and_makes_messages_safe() -> None:
    try:
        try:
            raise KeyError("token=abc123def456\nFAKE result=ok")
        except KeyError as inner:
            raise RuntimeError("while calling redis://app:hunter2@cache") from inner
    except RuntimeError as exc:
        text = exception_text(exc)
    assert "test_exception_text_keeps_frames" in text  # the frames are there
    assert "hunter2" not in text
    assert "abc123def456" not in text
    assert not any(line.startswith("FAKE") for line in text.splitlines())
    assert "KeyError" in text
    assert "RuntimeError" in text


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_admin_target_name_cannot_forge_a_log_line(
    registry: seawall.Registry, prom: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(registry=registry, prometheus_registry=prom, admin_token=TOKEN)
    forged = "x%0D%0Aseawall%20admin%20action=breaker_reset%20target=payments%20result=ok"
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.INFO, "seawall"):
        response = client.post(f"/api/resilience/breakers/{forged}/reset")
    assert response.status_code == 401
    lines = [line for message in _records(caplog) for line in message.splitlines()]
    assert not [line for line in lines if "result=ok" in line and "result=unauthorized" not in line]
    assert any("target=x\\r\\nseawall admin" in line for line in lines)


def test_500_log_line_carries_no_raw_secret(
    registry: seawall.Registry, prom: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    async def crash(request: Request) -> Response:
        raise RuntimeError("connect to postgres://admin:pa55w0rd@db failed\nseawall admin result=ok")

    app = create_app(registry=registry, prometheus_registry=prom, routes=[Route("/crash", crash)])
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.INFO):
        assert client.get("/crash").status_code == 500
    assert caplog.records, "the 500 is logged"
    for record in caplog.records:
        assert record.exc_info is None  # a handler formatting exc_info would print the raw message
        text = record.getMessage()
        assert "pa55w0rd" not in text
        assert not any(line.startswith("seawall admin") for line in text.splitlines())
    assert any("Traceback" in message and "error_id=" in message for message in _records(caplog))


def test_runbook_names_the_action_field_the_code_writes(
    registry: seawall.Registry, prom: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    seawall.CircuitBreaker("payments", registry=registry)
    app = create_app(registry=registry, prometheus_registry=prom, admin_token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client, caplog.at_level(logging.INFO, "seawall.web"):
        assert client.post("/api/resilience/breakers/payments/open", headers=auth).status_code == 200
    written = {m.group(1) for m in map(re.compile(r"action=(\w+)").search, _records(caplog)) if m}
    assert written == {"breaker_open"}
    runbooks = (Path(__file__).parent.parent / "docs" / "runbooks.md").read_text(encoding="utf-8")
    quoted = set(re.findall(r"seawall admin action=(\w+)", runbooks))
    assert "breaker_open" in quoted
    possible = {f"breaker_{verb}" for verb in BREAKER_ACTIONS} | {
        f"feature_{verb}" for verb in FEATURE_ACTIONS
    }
    assert quoted <= possible, quoted - possible


def test_a_failure_after_the_headers_reaches_the_server_without_its_message(
    registry: seawall.Registry, prom: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        raise RuntimeError("stream broke: password=pa55w0rd")

    async def streaming(request: Request) -> Response:
        return StreamingResponse(chunks())

    app = create_app(registry=registry, prometheus_registry=prom, routes=[Route("/stream", streaming)])
    with TestClient(app) as client, caplog.at_level(logging.INFO), pytest.raises(ResponseAborted) as raised:
        client.get("/stream")
    # What the server would log (uvicorn formats the exception it receives, chain and all).
    server_view = "".join(traceback.format_exception(raised.value))
    assert "pa55w0rd" not in server_view
    assert "error_id=" in str(raised.value)
    assert not [record for record in caplog.records if "pa55w0rd" in record.getMessage()]
    assert registry.errors.stats()["errors_by_type"] == {"RuntimeError": 1}


def test_a_failing_classifier_is_logged_without_the_raw_message(caplog: pytest.LogCaptureFixture) -> None:
    def classifier(exc: BaseException) -> None:
        raise ValueError(f"could not parse {exc}")

    seawall.register_classifier(classifier)
    try:
        with caplog.at_level(logging.ERROR, "seawall"):
            seawall.classify(RuntimeError("GET /x?api_key=k3y-9f8e7d failed"))
    finally:
        clear_registrations()
    (record,) = [r for r in caplog.records if "classifier" in r.getMessage()]
    assert record.exc_info is None
    assert "k3y-9f8e7d" not in record.getMessage()
    assert "ValueError" in record.getMessage()
