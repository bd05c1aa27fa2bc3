"""The demo's supervised worker driven through its chaos API: crash it until it is failed for good
(readiness 503), restart it, hang it (stale heartbeat), and refuse bad chaos bodies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from seawall.demo import create_demo_app
from seawall.demo.worker import WORKER
from test_rules import _poll


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv("SEAWALL_ADMIN_TOKEN", raising=False)
    settings = {
        "cycle": 0.02,
        "initial": 0.02,
        "max_delay": 0.05,
        "max_restarts": 2,
        "heartbeat_timeout": 0.3,
    }
    app = create_demo_app(traffic_rate=0, tracing=False, worker_settings=settings)
    with TestClient(app) as test_client:
        yield test_client


def poll(fetch: Callable[[], Any], done: Callable[[Any], bool], what: str, timeout: float = 10) -> Any:
    return _poll(fetch, done, timeout, what)


def task(client: TestClient) -> dict[str, Any]:
    (found,) = [t for t in client.get("/api/resilience/tasks").json()["tasks"] if t["name"] == WORKER]
    return dict(found)


def test_crash_until_failed_for_good_then_restart(client: TestClient) -> None:
    poll(lambda: task(client), lambda t: t["state"] == "running", "the worker to run")
    assert client.get("/health/ready").status_code == 200
    response = client.post("/chaos/worker", json={"fail": True})
    assert response.json()[WORKER]["fail"] is True
    ready = poll(lambda: client.get("/health/ready"), lambda r: r.status_code == 503, "readiness 503")
    assert "critical task order-sync failed permanently (WorkerCrash)" in ready.json()["reasons"]
    failed = task(client)
    assert (failed["restarts"], failed["permanent_failures"]) == (2, 1)
    assert failed["restarts_by_error"] == {"WorkerCrash": 2}
    assert client.get("/api/resilience/errors").json()["errors_by_source"][WORKER] == 3
    client.post("/chaos/worker", json={"fail": False, "restart": True}).raise_for_status()
    poll(lambda: client.get("/health/ready"), lambda r: r.status_code == 200, "readiness 200 again")
    assert task(client)["state"] == "running"


def test_a_hung_worker_goes_stale(client: TestClient) -> None:
    poll(lambda: task(client), lambda t: t["state"] == "running", "the worker to run")
    client.post("/chaos/worker", json={"hang": True}).raise_for_status()
    stale = poll(lambda: task(client), lambda t: t["stale"], "a stale heartbeat")
    assert stale["state"] == "running"
    ready = client.get("/health/ready").json()
    assert ready["status"] == "degraded"
    assert ready["tasks"]["stale"] == [WORKER]
    client.post("/chaos/worker", json={"hang": False}).raise_for_status()
    poll(lambda: task(client), lambda t: not t["stale"], "fresh beats")


@pytest.mark.parametrize(
    ("body", "field"),
    [({"explode": True}, "explode"), ({"fail": "yes"}, "fail"), ([1], "body"), ("{", "body")],
)
def test_bad_chaos_bodies_name_the_field(client: TestClient, body: Any, field: str) -> None:
    if isinstance(body, str):
        response = client.post("/chaos/worker", content=body, headers={"content-type": "application/json"})
    else:
        response = client.post("/chaos/worker", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert client.get("/chaos/worker").json()[WORKER]["fail"] is False


def test_the_worker_switch_takes_json_only(client: TestClient) -> None:
    response = client.post("/chaos/worker", content='{"fail": true}', headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["field"] == "content-type"
    assert client.get("/chaos/worker").json()[WORKER]["fail"] is False
