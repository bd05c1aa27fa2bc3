"""Error details (messages, context) are served to the admin token's holder, never to anonymous clients.

Anonymous clients get what counts errors (time, source, type, category); a message or a context
may carry what no redaction rule knows, so it needs the token or the operator's explicit opt-in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

import seawall
from seawall.starlette import SnapshotStream, create_app
from seawall.tasks.record import TaskRecord
from seawall.tasks.settings import TaskSettings

TOKEN = "details-admin-token"
MESSAGE = "upstream said: order 1234 belongs to alice@example.com"
CONTEXT_VALUE = "alice@example.com"
COUNTED = {"timestamp", "source", "type", "category"}


def recorded_registry() -> seawall.Registry:
    registry = seawall.Registry()
    registry.errors.record(RuntimeError(MESSAGE), source="orders", context={"customer": CONTEXT_VALUE})
    return registry


def app_for(registry: seawall.Registry, **options: Any) -> TestClient:
    app = create_app(registry=registry, prometheus_registry=CollectorRegistry(), admin_token=TOKEN, **options)
    return TestClient(app)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize("headers", [{}, bearer("not-the-admin-token"), {"authorization": TOKEN}])
def test_anonymous_and_wrong_token_get_counts_without_details(headers: dict[str, str]) -> None:
    client = app_for(recorded_registry())
    recent = client.get("/api/resilience/errors/recent", headers=headers).json()
    assert recent["details"] is False
    assert [set(item) for item in recent["errors"]] == [COUNTED]
    assert recent["errors"][0]["source"] == "orders"
    snapshot = client.get("/api/resilience/snapshot", headers=headers)
    assert snapshot.json()["details"] is False
    assert [set(item) for item in snapshot.json()["recent_errors"]] == [COUNTED]
    assert CONTEXT_VALUE not in snapshot.text
    assert "upstream said" not in snapshot.text


def test_the_admin_token_shows_redacted_messages_and_context() -> None:
    client = app_for(recorded_registry())
    recent = client.get("/api/resilience/errors/recent", headers=bearer(TOKEN)).json()
    assert recent["details"] is True
    (item,) = recent["errors"]
    assert item["message"] == MESSAGE
    assert item["context"] == {"customer": CONTEXT_VALUE}
    snapshot = client.get("/api/resilience/snapshot", headers=bearer(TOKEN)).json()
    assert snapshot["details"] is True
    assert snapshot["recent_errors"][0]["context"] == {"customer": CONTEXT_VALUE}


def test_the_opt_in_shows_details_to_everyone() -> None:
    client = app_for(recorded_registry(), include_error_messages=True)
    (item,) = client.get("/api/resilience/errors/recent").json()["errors"]
    assert item["message"] == MESSAGE
    assert item["context"] == {"customer": CONTEXT_VALUE}


class FailedTask:
    """A task as the registry holds it, whose record saw one failure."""

    kind = "task"
    name = "sync"
    config: dict[str, Any] = {}

    def __init__(self) -> None:
        self.record = TaskRecord(self.name, TaskSettings())
        self.record.failed(RuntimeError(MESSAGE))

    def snapshot(self) -> Any:
        return self.record.snapshot()


def test_task_messages_follow_the_same_rule() -> None:
    registry = seawall.Registry()
    registry.add(FailedTask())
    client = app_for(registry)
    (anonymous,) = client.get("/api/resilience/tasks").json()["tasks"]
    assert anonymous["last_error_type"] == "RuntimeError"
    assert "last_error_message" not in anonymous
    (admin,) = client.get("/api/resilience/tasks", headers=bearer(TOKEN)).json()["tasks"]
    assert "alice@example.com" in admin["last_error_message"]


@pytest.mark.parametrize("opt_in", [False, True])
def test_the_stream_carries_details_only_with_the_opt_in(opt_in: bool) -> None:
    """One frame is shared by all clients, and EventSource cannot send a token."""
    stream = SnapshotStream(recorded_registry(), interval=0.05, details=opt_in)
    frame = stream._frame().decode()
    payload = json.loads(frame.split("data: ", 1)[1])
    assert payload["details"] is opt_in
    assert (CONTEXT_VALUE in frame) is opt_in
    assert ("message" in payload["recent_errors"][0]) is opt_in


def test_the_page_says_what_it_hides() -> None:
    client = app_for(recorded_registry())
    script = client.get("/resilience/static/status.js").text
    assert "snapshot.details" in script
    assert 'id="error-details"' in client.get("/resilience").text
