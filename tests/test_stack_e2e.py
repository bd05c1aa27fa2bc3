"""End to end: demo -> Prometheus (shipped rules) -> Alertmanager (shipped routes) -> Slack/PagerDuty.

Real binaries on 127.0.0.1 (stacktools/harness.py), local fake receivers (stacktools/receivers.py),
1 s scrape/evaluation intervals, `for:` shortened to 1 s and group_wait 1 s. One scenario, in order:
rules load and evaluate cleanly; an outage pages (PagerDuty) and tickets (Slack); every dashboard
query returns data; healing resolves both; an unreachable receiver shows up in Alertmanager's
notifications_failed_total (the page still goes out); a stopped service raises ExporterDown.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import pytest

from conftest import fast_stack, load_module
from otlp_receiver import OTLPReceiver
from seawall.demo import BREAKERS
from stacktools.harness import FAST, ROOT, Stack, binaries_missing, wait_until
from stacktools.receivers import FakePagerDuty, FakeSlack, closed_port_url, slack_text
from stacktools.timings import time_to_fire

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(bool(binaries_missing()), reason=f"not installed: {binaries_missing()}"),
    pytest.mark.timeout(150),
]
WAIT = 30.0  # bound on any one notification; the formula below is what we expect
# docs/alerts.md "Timing" with the test's 1 s timings: fastest for + group_wait, worst one scrape and one
# evaluation more each; TRIP is the demo's own time to trip the breaker plus delivery (~1 s measured).
FASTEST, WORST = time_to_fire(FAST, FAST.rule_for or "0s")
TRIP = 3.0
ROUTING_KEY = "e2e-routing-key-0123456789abcdef"
# The demo's breakers are its HTTP clients' per-upstream breakers, named client@scheme:host:port.
PAYMENTS, INVENTORY = BREAKERS["payments"], BREAKERS["inventory"]
VARIABLES = {"service": "seawall-demo", "breaker": PAYMENTS, "client": "payments", "upstream": PAYMENTS}


def load_dashboards() -> ModuleType:
    return load_module("seawall_dashboards_e2e", ROOT / "grafana" / "dashboards.py")


def is_(status: str, alertname: str, breaker: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """Match a Slack message or PagerDuty event for `alertname` (and breaker) in `status`."""

    def pred(p: dict[str, Any]) -> bool:
        if "attachments" in p:
            title = str(p["attachments"][0]["title"])
            return title.startswith(f"[{status.upper()}") and alertname in title and (breaker or "") in title
        action = {"firing": "trigger", "resolved": "resolve"}[status]
        summary = str(p.get("payload", {}).get("summary", ""))
        return p.get("event_action") == action and alertname in summary and (breaker or "") in summary

    return pred


@pytest.fixture
def otlp() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def stack(tmp_path: Path, receivers: tuple[FakeSlack, FakePagerDuty], otlp: OTLPReceiver) -> Iterator[Stack]:
    with fast_stack(
        tmp_path / "stack",
        receivers,
        ROUTING_KEY,
        demo_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "OTEL_SERVICE_NAME": "seawall-demo",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    ) as running:
        yield running


def check_exemplars_lead_to_traces(stack: Stack, otlp: OTLPReceiver) -> int:
    """The latency panels' exemplars exist in Prometheus and their trace ids are real exported traces."""
    selector = 'seawall_circuit_breaker_call_duration_seconds_bucket{service="seawall-demo"}'
    exemplars = wait_until(lambda: stack.exemplars(selector), 15, "exemplars stored by Prometheus")
    trace_ids = {e["labels"]["trace_id"] for e in exemplars if "trace_id" in e["labels"]}
    assert trace_ids, exemplars[:3]
    assert all(len(t) == 32 for t in trace_ids)

    def exported() -> set[str]:
        return trace_ids & {span.trace_id.hex() for span in otlp.spans()}

    return len(wait_until(exported, 15, "an exemplar's trace id among the exported spans"))


def rules_by_name() -> dict[str, dict[str, Any]]:
    import yaml

    rules: dict[str, dict[str, Any]] = {}
    for path in sorted((ROOT / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                rules[rule.get("alert") or rule["record"]] = rule
    return rules


def check_rules_loaded(stack: Stack) -> None:
    """Prometheus loaded every shipped rule, and each has evaluated without error."""
    expected = set(rules_by_name())

    def all_evaluated() -> dict[str, Any] | None:
        from stacktools.harness import http

        _, body = http("GET", f"{stack.prometheus_url}/api/v1/rules")
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        if any(r.get("lastEvaluation", "").startswith("0001") for r in rules):
            return None
        return {r["name"]: r for r in rules}

    loaded = wait_until(all_evaluated, 15, "every rule evaluated once")
    assert set(loaded) == expected
    broken = {name: r.get("lastError") for name, r in loaded.items() if r["health"] != "ok"}
    assert not broken, broken


def check_panels_have_data(stack: Stack) -> float:
    """Every dashboard query, variables substituted, parses and returns data from the live Prometheus."""
    dashboards = load_dashboards()
    exprs: list[tuple[str, str]] = []
    for name in dashboards.DASHBOARDS:
        model = json.loads((ROOT / "grafana" / "dashboards" / name).read_text())
        for title, expr in dashboards.iter_targets(model):
            exprs.append((f"{name}: {title}", dashboards.expand(expr, VARIABLES, rate_interval="1m")))
        for variable in model["templating"]["list"]:
            query = variable["query"]["query"]
            assert query.startswith("label_values(")
            metric, label = query[len("label_values(") : -1].rsplit(", ", 1)
            values = {s["metric"].get(label) for s in stack.query(dashboards.expand(metric, VARIABLES))}
            if variable.get("regex"):  # Grafana keeps the regex's capture group of each value
                capture = re.compile(variable["regex"].strip("/"))
                values = {m[1] for v in values if v is not None and (m := capture.match(v))}
            assert VARIABLES[variable["name"]] in values, f"{name}: ${variable['name']} offers {values}"
    for _title, expr in exprs:
        stack.query(expr)  # raises ValueError with Prometheus' parse error
    missing: list[str] = []

    def all_have_data() -> bool:
        missing[:] = [f"{title}: {expr}" for title, expr in exprs if not stack.query(expr)]
        return not missing

    start = time.monotonic()
    try:
        wait_until(all_have_data, 20, "every panel query returns data", interval=0.5)
    except TimeoutError:
        pytest.fail("panel queries without data:\n" + "\n".join(missing))
    return time.monotonic() - start


def test_stack_end_to_end(
    stack: Stack,
    receivers: tuple[FakeSlack, FakePagerDuty],
    otlp: OTLPReceiver,
    capsys: pytest.CaptureFixture[str],
) -> None:
    slack, pagerduty = receivers
    started = time.monotonic()
    wait_until(lambda: stack.query('up{job="seawall-demo", service="seawall-demo"} == 1'), 15, "demo scraped")
    check_rules_loaded(stack)

    # -- an outage pages PagerDuty and tickets Slack ---------------------------------------------------
    rule = rules_by_name()["CircuitBreakerOpen"]
    stack.chaos("payments", outage=True)
    outage = time.monotonic()
    wait_until(
        lambda: stack.query(f'seawall_circuit_breaker_state{{breaker="{PAYMENTS}", state="open"}} == 1'),
        10,
        "Prometheus sees the payments breaker open",
    )
    seen_open = time.monotonic()
    msg = slack.wait_for(is_("firing", "CircuitBreakerOpen", PAYMENTS), WAIT)
    to_slack = time.monotonic() - outage
    event = pagerduty.wait_for(is_("firing", "CircuitBreakerOpen", PAYMENTS), WAIT)
    to_pagerduty = time.monotonic() - outage
    assert FASTEST <= to_slack <= WORST + TRIP, (FASTEST, to_slack, WORST)

    text = slack_text(msg)
    assert msg["attachments"][0]["color"] == "danger"
    assert msg["attachments"][0]["title"].startswith(
        f"[FIRING:1] CircuitBreakerOpen {PAYMENTS} (seawall-demo)"
    )
    assert rule["annotations"]["summary"] in text
    assert rule["annotations"]["runbook_url"] in text
    assert f"Breaker {PAYMENTS} of seawall-demo" in text
    for label in (
        "alertname=CircuitBreakerOpen",
        f"breaker={PAYMENTS}",
        "severity=critical",
        "service=seawall-demo",
    ):
        assert f"`{label}`" in text
    assert f"var-breaker={quote_plus(PAYMENTS)}" in text  # Alertmanager's urlquery
    assert event["routing_key"] == ROUTING_KEY
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["component"] == PAYMENTS
    assert event["payload"]["group"] == "seawall-demo"
    assert event["payload"]["class"] == "CircuitBreakerOpen"
    assert rule["annotations"]["summary"] in event["payload"]["summary"]

    # -- every dashboard query has data while things are interesting ---------------------------------
    panels_wait = check_panels_have_data(stack)
    traced = check_exemplars_lead_to_traces(stack, otlp)

    # -- healing resolves both -------------------------------------------------------------------------
    stack.chaos("payments", outage=False)
    healed = time.monotonic()
    resolved = pagerduty.wait_for(is_("resolved", "CircuitBreakerOpen", PAYMENTS), WAIT)
    assert resolved["dedup_key"] == event["dedup_key"]
    msg = slack.wait_for(is_("resolved", "CircuitBreakerOpen", PAYMENTS), WAIT)
    assert msg["attachments"][0]["color"] == "good"
    assert "*Status:* resolved" in slack_text(msg)
    to_resolved = time.monotonic() - healed

    # -- an unreachable receiver is counted, and the page still goes out ------------------------------
    failed_before = stack.alertmanager_metric("alertmanager_notifications_failed_total", integration="slack")
    stack.set_slack_url(closed_port_url("/services/unreachable"))
    stack.chaos("inventory", outage=True)
    pagerduty.wait_for(is_("firing", "CircuitBreakerOpen", INVENTORY), WAIT)
    failed = wait_until(
        lambda: (
            n
            if (
                n := stack.alertmanager_metric("alertmanager_notifications_failed_total", integration="slack")
            )
            > failed_before
            else None
        ),
        WAIT,
        "Alertmanager counts the failed Slack notification",
    )
    assert not [p for p in slack.payloads if is_("firing", "CircuitBreakerOpen", INVENTORY)(p)]
    requests_failed = "alertmanager_notification_requests_failed_total"
    assert stack.alertmanager_metric(requests_failed, integration="slack") > 0
    stack.set_slack_url(slack.url)
    stack.chaos("inventory", outage=False)

    # -- a stopped service raises ExporterDown --------------------------------------------------------
    stack.stop_demo()
    stopped = time.monotonic()
    down = slack.wait_for(is_("firing", "ExporterDown"), WAIT)
    to_exporter_down = time.monotonic() - stopped
    assert down["attachments"][0]["color"] == "warning"
    assert "`job=seawall-demo`" in slack_text(down)
    assert ("ExporterDown", "") in stack.firing()

    # -- routing: only critical alerts paged; warnings (FeatureDegraded, HighRejectionRate...) went to Slack
    assert {p["payload"]["severity"] for p in pagerduty.payloads} == {"critical"}
    slack_titles = [p["attachments"][0]["title"] for p in slack.payloads]
    assert any("FeatureDegraded" in title for title in slack_titles), slack_titles
    assert not any("FeatureDegraded" in p["payload"]["summary"] for p in pagerduty.payloads)
    assert {p["channel"] for p in slack.payloads} == {"#seawall-alerts"}

    with capsys.disabled():
        print(
            f"\n[stack e2e] outage -> breaker open seen by Prometheus {seen_open - outage:.1f}s, "
            f"-> Slack {to_slack:.1f}s, -> PagerDuty {to_pagerduty:.1f}s "
            f"(formula: fastest {FASTEST:g}s, worst {WORST:g}s + {TRIP:g}s to trip); "
            f"heal -> resolved {to_resolved:.1f}s; unreachable Slack: "
            f"notifications_failed_total {failed_before:g} -> {failed:g}; demo stopped -> ExporterDown "
            f"on Slack {to_exporter_down:.1f}s; panel data waited {panels_wait:.1f}s; "
            f"{traced} exemplar trace ids found among exported spans; "
            f"whole scenario {time.monotonic() - started:.1f}s"
        )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_shipped_rules_pass_promtool() -> None:
    files = sorted(str(p) for p in (ROOT / "rules").glob("*.yml"))
    result = subprocess.run(
        ["promtool", "check", "rules", *files], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
