"""The shipped alertmanager/ config, checked by amtool and run in a real Alertmanager 0.25.

Alertmanager talks to fake Slack and PagerDuty receivers on 127.0.0.1 (stacktools/receivers.py);
only secret files, the PagerDuty URL and the grouping timings are substituted.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import yaml

from stacktools.processes import stop_process
from stacktools.receivers import (
    FakePagerDuty,
    FakeSlack,
    closed_port_url,
    free_port,
    slack_text,
    wire_alertmanager_config,
)

ROOT = Path(__file__).resolve().parent.parent
AM_DIR = ROOT / "alertmanager"
AM_CONFIG = AM_DIR / "alertmanager.yml"
RULES = ROOT / "rules"
ROUTING_KEY = "seawall-test-routing-key-0123456789"
WAIT = 15.0  # bound on every wait for a notification

AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool not installed")
needs_am = pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager not installed")


# --------------------------------------------------------------------------------------------------
# static checks
# --------------------------------------------------------------------------------------------------
def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=30, check=False)


@needs_amtool
def test_amtool_check_config_accepts_shipped_config() -> None:
    res = _amtool("check-config", str(AM_CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=CircuitBreakerOpen", "severity=critical", "breaker=payments"], "pagerduty,slack"),
        (["alertname=ErrorBudgetBurn", "severity=critical", "service=seawall-demo"], "pagerduty,slack"),
        (["alertname=CircuitBreakerFlapping", "severity=warning"], "slack"),
        (["alertname=ExporterDown", "severity=warning"], "slack"),
        (["alertname=CircuitBreakerForcedOpen", "severity=info"], "null"),
        (["alertname=SomethingElse"], "null"),
    ],
)
def test_amtool_routes(labels: list[str], receivers: str) -> None:
    res = _amtool(
        "config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receivers}", *labels
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == receivers


@needs_amtool
def test_amtool_routes_verify_can_fail() -> None:
    """The routing test above is not vacuous: a wrong expectation makes amtool exit non-zero."""
    res = _amtool(
        "config", "routes", "test", f"--config.file={AM_CONFIG}", "--verify.receivers=slack", "severity=info"
    )
    assert res.returncode != 0


def test_config_shape() -> None:
    cfg = yaml.safe_load(AM_CONFIG.read_text())
    # Each alert's own subject label: bulkhead, limiter and task alerts are not lumped together.
    assert cfg["route"]["group_by"] == [
        "alertname",
        "service",
        "breaker",
        "timeout",
        "bulkhead",
        "limiter",
        "task",
    ]
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert set(receivers) == {"null", "slack", "pagerduty"}
    for slack in receivers["slack"]["slack_configs"]:
        assert slack["send_resolved"] is True
        assert slack["api_url_file"] == "/etc/alertmanager/secrets/slack_webhook_url"
        assert "api_url" not in slack
    for pd in receivers["pagerduty"]["pagerduty_configs"]:
        assert pd["send_resolved"] is True
        assert pd["routing_key_file"] == "/etc/alertmanager/secrets/pagerduty_routing_key"
        assert "routing_key" not in pd
        assert "service_key" not in pd
    assert "slack_api_url" not in cfg.get("global", {})
    equal_sets = [sorted(rule["equal"]) for rule in cfg["inhibit_rules"]]
    assert ["instance", "job"] in equal_sets
    assert ["alertname", "breaker", "bulkhead", "limiter", "service", "task", "timeout"] in equal_sets
    exporter_down = next(
        rule for rule in cfg["inhibit_rules"] if "ExporterDown" in rule["source_matchers"][0]
    )
    assert 'severity=~"warning|info"' in exporter_down["target_matchers"]  # never a page


# --------------------------------------------------------------------------------------------------
# a real Alertmanager
# --------------------------------------------------------------------------------------------------
class Alertmanager:
    """One prometheus-alertmanager process on 127.0.0.1 with a substituted copy of the shipped config."""

    def __init__(self, workdir: Path, config_text: str) -> None:
        self.workdir = workdir
        shutil.copytree(AM_DIR / "templates", workdir / "templates")
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(config_text)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "alertmanager.log"
        self._log_file = self.log.open("wb")
        assert ALERTMANAGER is not None
        self.proc = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={self.config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=5.0)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"alertmanager exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                if self.client.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"alertmanager not ready in {timeout}s: {self.log.read_text()}")

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)
        self._log_file.close()

    def post(self, *alerts: dict[str, Any]) -> None:
        res = self.client.post("/api/v2/alerts", json=list(alerts))
        assert res.status_code == 200, res.text

    def alerts(self) -> list[dict[str, Any]]:
        res = self.client.get("/api/v2/alerts")
        assert res.status_code == 200, res.text
        return list(res.json())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
        total = 0.0
        for line in self.client.get("/metrics").text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_metric(
        self, name: str, predicate: Callable[[float], bool], timeout: float = WAIT, **labels: str
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name, **labels)
            if predicate(value):
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}{labels} = {value} after {timeout}s; log:\n{self.log.read_text()}")
            time.sleep(0.1)


@pytest.fixture
def receivers() -> Iterator[tuple[FakeSlack, FakePagerDuty]]:
    with FakeSlack() as slack, FakePagerDuty() as pagerduty:
        yield slack, pagerduty


@pytest.fixture
def start_alertmanager(tmp_path: Path) -> Iterator[Callable[..., Alertmanager]]:
    started: list[Alertmanager] = []

    def start(
        *,
        slack_url: str | None,
        pagerduty_url: str,
        routing_key: str | None = ROUTING_KEY,
        slack_file: Path | None = None,
    ) -> Alertmanager:
        work = tmp_path / f"am{len(started)}"
        secrets = work / "secrets"
        secrets.mkdir(parents=True)
        slack_path = slack_file or secrets / "slack_webhook_url"
        if slack_url is not None:
            slack_path.write_text(slack_url + "\n")
        key_path = secrets / "pagerduty_routing_key"
        if routing_key is not None:
            key_path.write_text(routing_key + "\n")
        text = wire_alertmanager_config(
            AM_CONFIG.read_text(),
            slack_url_file=str(slack_path),
            pagerduty_key_file=str(key_path),
            pagerduty_url=pagerduty_url,
        )
        am = Alertmanager(work, text)
        started.append(am)
        am.wait_ready()
        return am

    yield start
    for am in started:
        am.stop()


class Routed(NamedTuple):
    """An Alertmanager running the shipped config with both receivers pointed at the fakes."""

    am: Alertmanager
    slack: FakeSlack
    pagerduty: FakePagerDuty


@pytest.fixture
def routed(
    receivers: tuple[FakeSlack, FakePagerDuty], start_alertmanager: Callable[..., Alertmanager]
) -> Routed:
    slack, pagerduty = receivers
    return Routed(start_alertmanager(slack_url=slack.url, pagerduty_url=pagerduty.url), slack, pagerduty)


def _rule(alertname: str) -> dict[str, Any]:
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alertname:
                    return dict(rule)
    raise KeyError(alertname)


def _alert(alertname: str, *, ends: bool = False, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus would post it, with the shipped rule's severity and annotations."""
    rule = _rule(alertname)
    now = dt.datetime.now(dt.timezone.utc)
    all_labels = {
        "alertname": alertname,
        "service": "seawall-demo",
        "job": "seawall-demo",
        "instance": "127.0.0.1:8000",
        **rule.get("labels", {}),
        **labels,
    }
    annotations = dict(rule["annotations"])
    annotations["description"] = f"{alertname} test description for {labels.get('breaker', 'n/a')}"
    alert: dict[str, Any] = {
        "labels": all_labels,
        "annotations": annotations,
        "startsAt": (now - dt.timedelta(minutes=5)).isoformat(),
        "generatorURL": "http://127.0.0.1:9090/graph",
    }
    if ends:
        alert["endsAt"] = now.isoformat()
    return alert


def _is(status: str, alertname: str, breaker: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def pred(p: dict[str, Any]) -> bool:
        if "attachments" in p:  # Slack
            title = p["attachments"][0]["title"]
            return (
                title.startswith(f"[{status.upper()}")
                and alertname in title
                and (breaker is None or breaker in title)
            )
        action = {"firing": "trigger", "resolved": "resolve"}[status]  # PagerDuty
        return bool(
            p.get("event_action") == action
            and alertname in p["payload"]["summary"]
            and (breaker is None or breaker in p["payload"]["summary"])
        )

    return pred


@needs_am
@pytest.mark.stack
def test_critical_reaches_slack_and_pagerduty_then_resolves(routed: Routed) -> None:
    am, slack, pagerduty = routed
    rule = _rule("CircuitBreakerOpen")
    am.post(_alert("CircuitBreakerOpen", breaker="payments"))

    msg = slack.wait_for(_is("firing", "CircuitBreakerOpen", "payments"), WAIT)
    text = slack_text(msg)
    assert rule["annotations"]["summary"] in text
    assert rule["annotations"]["runbook_url"] in text
    assert "CircuitBreakerOpen test description for payments" in text
    assert "`breaker=payments`" in text
    assert "`severity=critical`" in text
    assert "http://localhost:3000/d/seawall-breaker/" in text
    assert "var-breaker=payments" in text
    assert msg["channel"] == "#seawall-alerts"
    assert msg["attachments"][0]["color"] == "danger"

    event = pagerduty.wait_for(_is("firing", "CircuitBreakerOpen", "payments"), WAIT)
    assert event["routing_key"] == ROUTING_KEY  # read from the file, newline stripped
    assert event["payload"]["severity"] == "critical"
    assert rule["annotations"]["summary"] in event["payload"]["summary"]
    assert event["payload"]["component"] == "payments"
    assert event["payload"]["group"] == "seawall-demo"
    assert event["payload"]["custom_details"]["runbook_url"] == rule["annotations"]["runbook_url"]
    assert {"href": rule["annotations"]["runbook_url"], "text": "Runbook"} in event["links"]
    dedup_key = event["dedup_key"]

    am.post(_alert("CircuitBreakerOpen", breaker="payments", ends=True))
    resolved = pagerduty.wait_for(_is("resolved", "CircuitBreakerOpen", "payments"), WAIT)
    assert resolved["dedup_key"] == dedup_key
    msg = slack.wait_for(_is("resolved", "CircuitBreakerOpen", "payments"), WAIT)
    assert msg["attachments"][0]["color"] == "good"
    assert "*Status:* resolved" in slack_text(msg)


@needs_am
@pytest.mark.stack
def test_warning_goes_to_slack_only_and_info_nowhere(routed: Routed) -> None:
    am, slack, pagerduty = routed
    am.post(
        _alert("CircuitBreakerFlapping", breaker="search"),
        _alert("CircuitBreakerForcedOpen", breaker="inventory"),
    )
    msg = slack.wait_for(_is("firing", "CircuitBreakerFlapping", "search"), WAIT)
    assert msg["attachments"][0]["color"] == "warning"

    by_name = {a["labels"]["alertname"]: a for a in am.alerts()}
    assert [r["name"] for r in by_name["CircuitBreakerFlapping"]["receivers"]] == ["slack"]
    assert [r["name"] for r in by_name["CircuitBreakerForcedOpen"]["receivers"]] == ["null"]

    # A later critical alert is a sentinel: once PagerDuty has it, the earlier groups were flushed.
    am.post(_alert("CircuitBreakerOpen", breaker="sentinel"))
    pagerduty.wait_for(_is("firing", "CircuitBreakerOpen", "sentinel"), WAIT)
    slack.wait_for(_is("firing", "CircuitBreakerOpen", "sentinel"), WAIT)
    assert all("Flapping" not in p["payload"]["summary"] for p in pagerduty.payloads)
    assert all("ForcedOpen" not in slack_text(p) for p in slack.payloads)
    assert all("ForcedOpen" not in p["payload"]["summary"] for p in pagerduty.payloads)


@needs_am
@pytest.mark.stack
def test_inhibitions(routed: Routed) -> None:
    am, slack, _ = routed
    # The inhibiting alerts first: an inhibition only applies once Alertmanager holds its source
    # (alerts posted in one batch with an old startsAt are flushed at once and can race it).
    critical_budget = _alert("ErrorBudgetBurn", breaker="payments")  # critical (the first rule of that name)
    am.post(critical_budget, _alert("ExporterDown", instance="10.0.0.9:8000"))
    slack.wait_for(_is("firing", "ErrorBudgetBurn", "payments"), WAIT)
    slack.wait_for(_is("firing", "ExporterDown"), WAIT)
    am.post(
        # Same alertname, service and breaker: the critical one silences the warning one.
        {**critical_budget, "labels": {**critical_budget["labels"], "severity": "warning"}},
        # ExporterDown silences the tickets of the same job and instance ...
        _alert("BulkheadSaturated", severity="warning", bulkhead="db", instance="10.0.0.9:8000"),
        # ... but never its pages, nor alerts of another instance.
        _alert("CircuitBreakerOpen", breaker="orders", instance="10.0.0.9:8000"),
        _alert("CircuitBreakerOpen", breaker="orders", instance="10.0.0.8:8000"),
    )
    slack.wait_for(lambda p: "instance=10.0.0.8:8000" in slack_text(p) and "orders" in slack_text(p), WAIT)
    slack.wait_for(lambda p: "instance=10.0.0.9:8000" in slack_text(p) and "orders" in slack_text(p), WAIT)

    states = {
        (a["labels"]["alertname"], a["labels"]["severity"], a["labels"]["instance"]): a["status"]
        for a in am.alerts()
    }
    assert states[("ErrorBudgetBurn", "warning", "127.0.0.1:8000")]["state"] == "suppressed"
    assert states[("ErrorBudgetBurn", "warning", "127.0.0.1:8000")]["inhibitedBy"]
    assert states[("ErrorBudgetBurn", "critical", "127.0.0.1:8000")]["state"] == "active"
    assert states[("BulkheadSaturated", "warning", "10.0.0.9:8000")]["state"] == "suppressed"
    assert states[("CircuitBreakerOpen", "critical", "10.0.0.9:8000")]["state"] == "active"
    assert states[("CircuitBreakerOpen", "critical", "10.0.0.8:8000")]["state"] == "active"
    assert states[("ExporterDown", "warning", "10.0.0.9:8000")]["state"] == "active"

    budget = [p for p in slack.payloads if "ErrorBudgetBurn" in p["attachments"][0]["title"]]
    assert all("`severity=warning`" not in slack_text(p) for p in budget)
    orders = [slack_text(p) for p in slack.payloads if "orders" in p["attachments"][0]["title"]]
    assert any("instance=10.0.0.9:8000" in t for t in orders)
    assert any("instance=10.0.0.8:8000" in t for t in orders)
    assert not [p for p in slack.payloads if "BulkheadSaturated" in p["attachments"][0]["title"]]


@needs_am
@pytest.mark.stack
def test_missing_secret_file_fails_at_notify_time_and_is_counted(
    receivers: tuple[FakeSlack, FakePagerDuty],
    start_alertmanager: Callable[..., Alertmanager],
    tmp_path: Path,
) -> None:
    """Alertmanager 0.25 starts with a missing api_url_file / routing_key_file (check-config passes too):
    the file is read when a notification is sent, so the failure shows in
    alertmanager_notifications_failed_total{integration=...} and the log, not at start."""
    slack, pagerduty = receivers
    missing = tmp_path / "not-mounted" / "slack_webhook_url"
    am = start_alertmanager(slack_url=None, slack_file=missing, pagerduty_url=pagerduty.url)
    assert am.proc.poll() is None  # it started
    am.post(_alert("CircuitBreakerOpen", breaker="payments"))
    pagerduty.wait_for(_is("firing", "CircuitBreakerOpen", "payments"), WAIT)  # the other receiver works
    am.wait_metric("alertmanager_notifications_failed_total", lambda v: v >= 1, integration="slack")
    assert am.metric("alertmanager_notifications_failed_total", integration="pagerduty") == 0
    assert slack.payloads == []
    log = am.log.read_text()
    assert "no such file or directory" in log
    assert str(missing) in log


@needs_am
@pytest.mark.stack
def test_unreachable_receiver_is_counted_and_others_still_notified(
    receivers: tuple[FakeSlack, FakePagerDuty], start_alertmanager: Callable[..., Alertmanager]
) -> None:
    slack, _ = receivers
    am = start_alertmanager(slack_url=slack.url, pagerduty_url=closed_port_url("/v2/enqueue"))
    am.post(_alert("CircuitBreakerOpen", breaker="payments"))
    slack.wait_for(_is("firing", "CircuitBreakerOpen", "payments"), WAIT)
    am.wait_metric(
        "alertmanager_notification_requests_failed_total", lambda v: v >= 1, integration="pagerduty"
    )
    # The notification as a whole fails once the retries run out (notify timeout, >= 10 s in 0.25).
    am.wait_metric("alertmanager_notifications_failed_total", lambda v: v >= 1, integration="pagerduty")
    assert am.metric("alertmanager_notifications_failed_total", integration="slack") == 0
    assert am.metric("alertmanager_notifications_total", integration="pagerduty") >= 1


@needs_am
@pytest.mark.stack
def test_receiver_error_status_is_counted(start_alertmanager: Callable[..., Alertmanager]) -> None:
    with FakeSlack(status=500) as slack, FakePagerDuty() as pagerduty:
        am = start_alertmanager(slack_url=slack.url, pagerduty_url=pagerduty.url)
        am.post(_alert("CircuitBreakerOpen", breaker="payments"))
        slack.wait_for(_is("firing", "CircuitBreakerOpen", "payments"), WAIT)  # it was tried ...
        # ... each failed attempt is counted at once; Alertmanager retries with backoff, and
        # notifications_failed_total follows when the notify timeout (>= 10 s in 0.25) runs out.
        am.wait_metric(
            "alertmanager_notification_requests_failed_total", lambda v: v >= 1, integration="slack"
        )
        second = len(slack.payloads) + 1
        slack.wait_for(lambda _p: len(slack.payloads) >= second, WAIT)  # a retry arrives
        assert am.metric("alertmanager_notification_requests_failed_total", integration="pagerduty") == 0
        assert re.search(r"status code 500|unexpected status code 500", am.log.read_text())
        am.stop()  # stop before the receivers go away (the fixture's stop is then a no-op)
