"""HA end to end: two Prometheus replicas, two gossiping Alertmanagers, losing one of each mid-outage.

The real binaries on 127.0.0.1 (stacktools/harness.py with two replicas of each, as
docker-compose.ha.yml runs them), the demo, and local fake Slack and PagerDuty receivers. Timings are
the e2e test's (1 s scrape/eval/for/group_wait) plus a 2 s cluster peer timeout. One scenario:

1. the cluster forms (each Alertmanager lists both peers) and both replicas scrape the demo;
2. an outage of `payments` pages: exactly one FIRING CircuitBreakerOpen per receiver, although both
   replicas send it to both Alertmanagers, and it arrives no sooner than `for` + group_wait and
   within the worst case of docs/alerts.md's formula;
3. the Alertmanager that sent the page and one Prometheus are SIGKILLed (by pid): still one FIRING;
4. healing sends exactly one RESOLVED per receiver, from the surviving Alertmanager;
5. every alert group reached each receiver once FIRING (and at most once RESOLVED), and no
   notification carries the `replica` label.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import fast_stack
from stacktools.harness import (
    FAST,
    REPLICAS,
    Stack,
    binaries_missing,
    http,
    sum_samples,
    wait_until,
)
from stacktools.receivers import FakePagerDuty, FakeSlack, slack_text
from stacktools.timings import seconds, time_to_fire, time_to_resolve

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(bool(binaries_missing()), reason=f"not installed: {binaries_missing()}"),
    pytest.mark.timeout(120),
]
WAIT = 30.0  # bound on any one notification
ROUTING_KEY = "ha-routing-key-0123456789abcdef"
PEER_TIMEOUT = seconds(FAST.peer_timeout or "15s")
GROUP_INTERVAL = seconds(FAST.group_interval or "5m")
# Long enough for a second, duplicate notification to arrive if deduplication failed: the last
# cluster member waits (members - 1) x peer_timeout, then one more group_interval and some slack.
DUPLICATE_WINDOW = 2 * PEER_TIMEOUT + GROUP_INTERVAL + 3.0
BOTH_AMS_UP = 'count(up{job="alertmanager"} == 1) == 2'  # scraped from the same file_sd list
TRIP = 3.0  # the demo's own time to trip the breaker, plus delivery (~1 s measured)


def group_of(payload: dict[str, Any]) -> str:
    """The alert group a notification is about: its title without the [STATUS:n] prefix."""
    if "attachments" in payload:
        title = str(payload["attachments"][0]["title"])
    else:  # PagerDuty: "<title>: <summary>"
        title = str(payload["payload"]["summary"]).split("): ", 1)[0] + ")"
    return title.split("] ", 1)[-1].strip()


def status_of(payload: dict[str, Any]) -> str:
    if "attachments" in payload:
        return "resolved" if str(payload["attachments"][0]["title"]).startswith("[RESOLVED") else "firing"
    return "resolved" if payload["event_action"] == "resolve" else "firing"


def page(status: str) -> Callable[[dict[str, Any]], bool]:
    """Matches the CircuitBreakerOpen payments notification in `status` (Slack or PagerDuty)."""
    return lambda p: status_of(p) == status and group_of(p).startswith("CircuitBreakerOpen payments")


def counts(slack: FakeSlack, pagerduty: FakePagerDuty) -> dict[str, int]:
    """FIRING/RESOLVED CircuitBreakerOpen payments notifications each receiver got so far."""
    out: dict[str, int] = {}
    for receiver, fake in (("slack", slack), ("pagerduty", pagerduty)):
        for status in ("firing", "resolved"):
            out[f"{receiver} {status}"] = sum(1 for p in fake.payloads if page(status)(p))
    return out


@pytest.fixture
def ha(tmp_path: Path, receivers: tuple[FakeSlack, FakePagerDuty]) -> Iterator[Stack]:
    with fast_stack(
        tmp_path / "ha", receivers, ROUTING_KEY, prometheus_replicas=2, alertmanager_replicas=2
    ) as running:
        yield running


def cluster_peers(stack: Stack, name: str) -> list[str]:
    status, body = http("GET", f"{stack.url(name)}/api/v2/status")
    return [peer["name"] for peer in json.loads(body)["cluster"]["peers"]] if status == 200 else []


def query(stack: Stack, name: str, expr: str) -> list[dict[str, Any]]:
    """An instant query against one Prometheus replica."""
    _, body = http("GET", f"{stack.url(name)}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def sent(stack: Stack, name: str) -> float:
    """Notifications Alertmanager `name` itself sent to Slack (deduplicated ones are not counted)."""
    _, body = http("GET", f"{stack.url(name)}/metrics")
    return sum_samples(body.decode(), "alertmanager_notifications_total", {"integration": "slack"})


def test_ha_alerting_survives_losing_a_prometheus_and_an_alertmanager(
    ha: Stack, receivers: tuple[FakeSlack, FakePagerDuty], capsys: pytest.CaptureFixture[str]
) -> None:
    slack, pagerduty = receivers
    started = time.monotonic()
    for name in ha.alertmanager_names:
        wait_until(lambda n=name: len(cluster_peers(ha, n)) == 2, 20, f"{name} sees both cluster members")
    for replica, name in zip(REPLICAS, ha.prometheus_names, strict=False):  # a, b
        wait_until(lambda n=name: query(ha, n, 'up{job="seawall-demo"} == 1'), 15, f"{name} scrapes")
        wait_until(lambda n=name: query(ha, n, BOTH_AMS_UP), 15, f"{name} scrapes both Alertmanagers")
        config = json.loads(http("GET", f"{ha.url(name)}/api/v1/status/config")[1])["data"]["yaml"]
        assert f"replica: {replica}" in config, f"{name}: the replica label is expanded from the environment"

    # -- an outage: both replicas send it to both Alertmanagers; one notification per receiver ----------
    ha.chaos("payments", outage=True)
    outage = time.monotonic()
    slack.wait_for(page("firing"), WAIT)
    to_slack = time.monotonic() - outage
    pagerduty.wait_for(page("firing"), WAIT)
    best, worst = time_to_fire(FAST, FAST.rule_for or "0s")
    assert best <= to_slack <= worst + TRIP, (best, to_slack, worst)  # + the demo tripping the breaker
    time.sleep(DUPLICATE_WINDOW)
    assert counts(slack, pagerduty) == {
        "slack firing": 1,
        "slack resolved": 0,
        "pagerduty firing": 1,
        "pagerduty resolved": 0,
    }
    before_kill = counts(slack, pagerduty)

    # -- lose the Alertmanager that sent the page and one Prometheus, mid-outage ------------------------
    senders = [name for name in ha.alertmanager_names if sent(ha, name) > 0]
    assert len(senders) == 1, f"exactly one cluster member notifies Slack, got {senders}"
    (sender,) = senders
    survivor = next(name for name in ha.alertmanager_names if name != sender)
    killed = {sender: ha.kill(sender), "prometheus": ha.kill("prometheus")}
    time.sleep(DUPLICATE_WINDOW)
    assert counts(slack, pagerduty) == before_kill, "losing members must not re-send the page"
    wait_until(lambda: ha.query('up{job="seawall-demo"} == 1'), 10, "prometheus-b still scrapes")

    # -- healing: exactly one RESOLVED per receiver, from the survivor ---------------------------------
    ha.chaos("payments", outage=False)
    healed = time.monotonic()
    resolved = pagerduty.wait_for(page("resolved"), WAIT)
    slack.wait_for(page("resolved"), WAIT)
    to_resolved = time.monotonic() - healed
    # the sender is gone: the survivor notifies after waiting one peer_timeout for it
    assert to_resolved <= time_to_resolve(FAST) + PEER_TIMEOUT + 5.0, to_resolved
    firing_event = next(p for p in pagerduty.payloads if page("firing")(p))
    assert resolved["dedup_key"] == firing_event["dedup_key"]
    time.sleep(DUPLICATE_WINDOW)
    final = counts(slack, pagerduty)
    assert final == {"slack firing": 1, "slack resolved": 1, "pagerduty firing": 1, "pagerduty resolved": 1}
    assert sent(ha, survivor) > 0, "the surviving member sent the resolution"

    # -- every alert group: one FIRING (and at most one RESOLVED) per receiver; no `replica` label ------
    per_group: dict[str, Counter[tuple[str, str]]] = {}
    for name, fake in (("slack", slack), ("pagerduty", pagerduty)):
        per_group[name] = Counter((group_of(p), status_of(p)) for p in fake.payloads)
        duplicated = {key: n for key, n in per_group[name].items() if n != 1}
        assert not duplicated, f"{name} got these more than once: {duplicated}"
    assert not any("replica=" in slack_text(p) for p in slack.payloads)
    assert not any("replica" in json.dumps(p["payload"]["custom_details"]) for p in pagerduty.payloads)

    with capsys.disabled():
        print(
            f"\n[stack HA] 2 Prometheus + 2 Alertmanagers; outage -> Slack {to_slack:.1f}s "
            f"(formula: best {best:g}s, worst {worst:g}s); killed {killed} mid-outage; "
            f"heal -> resolved {to_resolved:.1f}s; CircuitBreakerOpen payments notifications: {final}; "
            f"every group, per receiver: { ({k: dict(v) for k, v in per_group.items()}) }; "
            f"whole scenario {time.monotonic() - started:.1f}s"
        )
