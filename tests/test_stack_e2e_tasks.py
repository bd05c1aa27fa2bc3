"""End to end for supervised tasks: the demo's worker crashes (chaos API), Prometheus sees its
restarts and its permanent failure, TaskRestartingRepeatedly tickets Slack, TaskFailedPermanently
pages PagerDuty, readiness is 503; restarting the worker resolves the page.

Real binaries on 127.0.0.1 with the e2e timings (1 s intervals, `for:` 1 s, group_wait 1 s).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacktools.harness import FAST, Receivers, Stack, binaries_missing, http, wait_until
from stacktools.receivers import FakePagerDuty, FakeSlack, slack_text
from test_stack_e2e import ROUTING_KEY, is_

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(bool(binaries_missing()), reason=f"not installed: {binaries_missing()}"),
    pytest.mark.timeout(150),
]
WAIT = 45.0  # the worker's budget (5 restarts, jittered delays up to 0.5+1+2+4+5 s) plus delivery


@pytest.fixture
def stack(tmp_path: Path, receivers: tuple[FakeSlack, FakePagerDuty]) -> Iterator[Stack]:
    slack, pagerduty = receivers
    with Stack(
        tmp_path / "stack", Receivers(slack.url, pagerduty.url, ROUTING_KEY), FAST, traffic_rate=2.0
    ) as running:
        yield running


def test_a_crashing_worker_tickets_then_pages_and_heals(
    stack: Stack, receivers: tuple[FakeSlack, FakePagerDuty], capsys: pytest.CaptureFixture[str]
) -> None:
    slack, pagerduty = receivers
    wait_until(
        lambda: stack.query('seawall_task_up{task="order-sync"} == 1'), 20, "the worker up in Prometheus"
    )
    stack.chaos("worker", fail=True)
    crashed = time.monotonic()

    ticket = slack.wait_for(is_("firing", "TaskRestartingRepeatedly"), WAIT)
    to_ticket = time.monotonic() - crashed
    assert "Task order-sync of seawall-demo" in slack_text(ticket)
    page = pagerduty.wait_for(is_("firing", "TaskFailedPermanently"), WAIT)
    to_page = time.monotonic() - crashed
    assert page["payload"]["severity"] == "critical"
    assert stack.query('seawall_task_state{task="order-sync", state="failed"} == 1')
    assert stack.query('seawall_task_restarts_total{task="order-sync", error_type="WorkerCrash"} >= 5')
    status, body = http("GET", f"{stack.demo_url}/health/ready")
    assert status == 503
    assert "critical task order-sync failed permanently (WorkerCrash)" in json.loads(body)["reasons"]

    stack.chaos("worker", fail=False, restart=True)
    healed = time.monotonic()
    pagerduty.wait_for(is_("resolved", "TaskFailedPermanently"), WAIT)
    to_resolve = time.monotonic() - healed
    assert http("GET", f"{stack.demo_url}/health/ready")[0] == 200
    with capsys.disabled():
        print(
            f"\n[stack e2e tasks] crash -> restart ticket {to_ticket:.1f}s, -> page {to_page:.1f}s "
            f"(includes the worker's own restart budget); restart -> resolved {to_resolve:.1f}s"
        )
