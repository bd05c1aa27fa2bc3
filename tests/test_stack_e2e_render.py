"""The harness's substituted configs: only targets, receivers, secret files and timings change.

Fast (no processes); promtool/amtool, when installed, check that what the harness writes is valid.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_command
from stacktools.harness import (
    FAST,
    ROOT,
    SHIPPED,
    Receivers,
    Stack,
    Timings,
    render_alertmanager,
    render_prometheus,
    render_rules,
    render_targets,
    sum_samples,
    wait_until,
)
from stacktools.timings import shipped_alerts, time_to_fire, time_to_resolve

PORTS = {"demo": 18000, "prometheus": 19090, "alertmanager": 19093}


def shipped(path: str) -> str:
    return (ROOT / path).read_text()


def test_prometheus_targets_become_local_and_compose_only_jobs_go() -> None:
    out = yaml.safe_load(
        render_prometheus(shipped("prometheus/prometheus.yml"), PORTS, "/x/rules/*.yml", SHIPPED)
    )
    original = yaml.safe_load(shipped("prometheus/prometheus.yml"))
    assert out["global"] == original["global"], "shipped timings are kept"
    assert out["rule_files"] == ["/x/rules/*.yml"]
    assert out["alerting"] == original["alerting"], "Alertmanagers come from the file_sd target file"
    jobs = {job["job_name"]: job for job in out["scrape_configs"]}
    assert set(jobs) == {"seawall-demo", "prometheus", "alertmanager"}
    demo = jobs["seawall-demo"]["static_configs"][0]
    assert demo == {"targets": ["127.0.0.1:18000"], "labels": {"service": "seawall-demo"}}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:19090"]


def test_alertmanager_target_files_become_local() -> None:
    """Single and HA target files: every listed Alertmanager maps to a local port, none is left out."""
    single = yaml.safe_load(render_targets(shipped("prometheus/alertmanagers.yml"), PORTS))
    assert single == [{"targets": ["127.0.0.1:19093"]}]
    ports = {"alertmanager": 19093, "alertmanager-b": 19095}
    ha = yaml.safe_load(render_targets(shipped("prometheus/alertmanagers-ha.yml"), ports))
    assert ha == [{"targets": ["127.0.0.1:19093", "127.0.0.1:19095"]}]
    with pytest.raises(ValueError, match="alertmanager-b"):
        render_targets(shipped("prometheus/alertmanagers-ha.yml"), PORTS)


def test_replica_label_is_dropped_from_alerts() -> None:
    """Identical replicas: `replica` tells their series apart and is dropped from what they send."""
    config = yaml.safe_load(shipped("prometheus/prometheus.yml"))
    assert config["global"]["external_labels"]["replica"] == "${PROMETHEUS_REPLICA}"
    assert {"action": "labeldrop", "regex": "replica"} in config["alerting"]["alert_relabel_configs"]


def test_fast_timings_change_intervals_and_for() -> None:
    out = yaml.safe_load(render_prometheus(shipped("prometheus/prometheus.yml"), PORTS, "/r/*.yml", FAST))
    assert out["global"]["scrape_interval"] == "1s"
    assert out["global"]["evaluation_interval"] == "1s"
    text = shipped("rules/seawall-alerts.yml")
    assert render_rules(text, SHIPPED) == text
    fast = yaml.safe_load(render_rules(text, FAST))
    original = yaml.safe_load(text)
    for group, before in zip(fast["groups"], original["groups"], strict=True):
        for rule, old in zip(group["rules"], before["rules"], strict=True):
            assert rule["expr"] == old["expr"]
            assert rule.get("labels") == old.get("labels")
            assert rule.get("for") == ("1s" if "for" in old else None)


def test_alertmanager_gets_secret_files_receiver_url_and_timings(tmp_path: Path) -> None:
    receivers = Receivers("http://127.0.0.1:1/slack", "http://127.0.0.1:2/v2/enqueue", "key")
    text = render_alertmanager(shipped("alertmanager/alertmanager.yml"), tmp_path, receivers, FAST)
    config = yaml.safe_load(text)
    original = yaml.safe_load(shipped("alertmanager/alertmanager.yml"))
    live = yaml.safe_dump(config)  # comments aside
    assert "/etc/alertmanager" not in live
    assert "events.pagerduty.com" not in live
    by_name = {r["name"]: r for r in config["receivers"]}
    assert by_name["slack"]["slack_configs"][0]["api_url_file"] == str(tmp_path / "slack_webhook_url")
    pagerduty = by_name["pagerduty"]["pagerduty_configs"][0]
    assert pagerduty["routing_key_file"] == str(tmp_path / "pagerduty_routing_key")
    assert pagerduty["url"] == receivers.pagerduty_url
    assert config["route"]["group_wait"] == "1s"
    assert config["route"]["group_interval"] == "1s"
    assert config["inhibit_rules"] == original["inhibit_rules"]
    assert [r["matchers"] for r in config["route"]["routes"]] == [
        r["matchers"] for r in original["route"]["routes"]
    ]
    kept = render_alertmanager(shipped("alertmanager/alertmanager.yml"), tmp_path, receivers, SHIPPED)
    assert yaml.safe_load(kept)["route"]["group_wait"] == original["route"]["group_wait"]


def test_alertmanager_substitution_points_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="substitution point"):
        render_alertmanager("route: {}\n", tmp_path, Receivers("http://x"), SHIPPED)


@pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("amtool") is None, reason="promtool/amtool missing"
)
def test_written_configs_pass_promtool_and_amtool(tmp_path: Path) -> None:
    stack = Stack(tmp_path, Receivers("http://127.0.0.1:9/slack", "http://127.0.0.1:9/pd"), FAST)
    stack.write_configs()
    assert (stack.secrets / "slack_webhook_url").read_text() == "http://127.0.0.1:9/slack\n"
    assert (stack.secrets / "slack_webhook_url").stat().st_mode & 0o077 == 0
    for argv in (
        ["promtool", "check", "config", str(tmp_path / "prometheus" / "prometheus.yml")],
        ["amtool", "check-config", str(tmp_path / "alertmanager" / "alertmanager.yml")],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr
    rules = list((tmp_path / "rules").glob("*.yml"))
    assert sorted(p.name for p in rules) == sorted(p.name for p in (ROOT / "rules").glob("*.yml"))


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool missing")
def test_ha_configs_give_each_replica_itself_and_every_alertmanager(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path,
        Receivers("http://127.0.0.1:9/slack"),
        FAST,
        prometheus_replicas=2,
        alertmanager_replicas=2,
    )
    stack.write_configs()
    members = sorted(f"127.0.0.1:{stack.ports[n]}" for n in ("alertmanager", "alertmanager-b"))
    assert len(set(stack.cluster_ports.values()) | set(stack.ports.values())) == 7, "all ports distinct"
    for name in ("prometheus", "prometheus-b"):
        config_dir = tmp_path / name
        (group,) = yaml.safe_load((config_dir / "alertmanagers.yml").read_text())
        assert sorted(group["targets"]) == members, f"{name} sends to every cluster member"
        config = yaml.safe_load((config_dir / "prometheus.yml").read_text())
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        assert jobs["prometheus"]["static_configs"][0]["targets"] == [f"127.0.0.1:{stack.ports[name]}"]
        result = run_command(
            ["promtool", "check", "config", str(config_dir / "prometheus.yml")],
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
    with pytest.raises(ValueError, match="replicas"):
        Stack(tmp_path, Receivers("http://x"), prometheus_replicas=4)


def test_sum_samples_matches_labels() -> None:
    text = (
        "# HELP x y\n"
        'alertmanager_notifications_failed_total{integration="slack",reason="other"} 2\n'
        'alertmanager_notifications_failed_total{integration="slack",reason="clientError"} 1\n'
        'alertmanager_notifications_failed_total{integration="pagerduty",reason="other"} 5\n'
        "alertmanager_notifications_failed_total_other 9\n"
    )
    assert sum_samples(text, "alertmanager_notifications_failed_total", {"integration": "slack"}) == 3
    assert sum_samples(text, "alertmanager_notifications_failed_total", {}) == 8
    assert sum_samples(text, "missing", {}) == 0


def test_wait_until_is_bounded_and_returns_the_value() -> None:
    calls: Iterator[object] = iter([None, [], {"ok": 1}])
    assert wait_until(lambda: next(calls), 5, "value", interval=0.001) == {"ok": 1}
    with pytest.raises(TimeoutError, match="never"):
        wait_until(lambda: [], 0.01, "never", interval=0.001)
    with pytest.raises(ValueError, match="timeout"):
        wait_until(lambda: True, 0, "zero")


def test_timings_default_to_the_shipped_values() -> None:
    assert Timings() == SHIPPED
    assert all(value is None for value in vars(SHIPPED).values())


def test_stack_script_helps_without_starting_anything() -> None:
    result = run_command(
        [sys.executable, str(ROOT / "scripts" / "stack.py"), "--help"],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--fast" in result.stdout
    assert "--fake-receivers" in result.stdout


def load_stack_script() -> Any:
    spec = importlib.util.spec_from_file_location("seawall_stack_script", ROOT / "scripts" / "stack.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stack_script_refuses_placeholder_secrets(tmp_path: Path) -> None:
    """Missing or placeholder secrets mean the local fakes (and why); real values are used as they are."""
    script = load_stack_script()
    receivers, why = script.real_receivers(tmp_path)
    assert receivers is None
    assert "no slack_webhook_url" in why
    for example in (ROOT / "secrets").glob("*.example"):
        shutil.copy(example, tmp_path / example.name)
        shutil.copy(example, tmp_path / example.stem)  # what `make secrets` does
    receivers, why = script.real_receivers(tmp_path)
    assert receivers is None
    assert why.startswith("slack_webhook_url and pagerduty_routing_key")
    assert "placeholder" in why
    (tmp_path / "slack_webhook_url").write_text("https://hooks.slack.com/services/TREAL/BREAL/real\n")
    receivers, why = script.real_receivers(tmp_path)
    assert receivers is None
    assert why.startswith("pagerduty_routing_key")
    (tmp_path / "pagerduty_routing_key").write_text("a-real-routing-key\n")
    receivers, why = script.real_receivers(tmp_path)
    assert why == ""
    assert receivers.slack_url == "https://hooks.slack.com/services/TREAL/BREAL/real"
    assert receivers.pagerduty_key == "a-real-routing-key"


def test_shipped_note_matches_the_timing_formulas() -> None:
    note = load_stack_script().shipped_note()
    rule_for = next(f for name, _, f in shipped_alerts() if name == "CircuitBreakerOpen")
    fastest, worst = time_to_fire(SHIPPED, rule_for)
    assert f"pages {fastest / 60:.1f}-{worst / 60:.1f} minutes" in note
    assert f"up to {time_to_resolve(SHIPPED) / 60:.1f} minutes after healing" in note


def test_ha_ports_given_are_kept_and_the_rest_are_free(tmp_path: Path) -> None:
    stack = Stack(
        tmp_path,
        Receivers("http://127.0.0.1:1/slack"),
        prometheus_port=19090,
        alertmanager_port=19093,
        prometheus_replicas=2,
        alertmanager_replicas=2,
        ports={"prometheus-b": 19091, "alertmanager-b": 19094},
        cluster_ports={"alertmanager": 19194, "alertmanager-b": 19195},
    )
    assert stack.ports["prometheus-b"] == 19091
    assert stack.ports["alertmanager-b"] == 19094
    assert stack.cluster_ports == {"alertmanager": 19194, "alertmanager-b": 19195}
    free = Stack(
        tmp_path, Receivers("http://127.0.0.1:1/slack"), prometheus_replicas=2, alertmanager_replicas=2
    )
    assert all(port > 0 for port in [*free.ports.values(), *free.cluster_ports.values()])


def test_each_stack_run_starts_from_empty_data(tmp_path: Path) -> None:
    """A previous run's series (another demo port, so another instance) fired stale alerts."""
    stack = Stack(tmp_path, Receivers("http://127.0.0.1:1/slack"), prometheus_replicas=2)
    for name in ("prometheus-data", "prometheus-b-data", "alertmanager-data"):
        (tmp_path / name / "wal").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    removed = stack.clean_data()
    assert sorted(path.name for path in removed) == [
        "alertmanager-data",
        "prometheus-b-data",
        "prometheus-data",
    ]
    assert not (tmp_path / "prometheus-data").exists()
    assert (tmp_path / "logs").exists()


def test_stack_script_prints_notifications_with_their_time(capsys: pytest.CaptureFixture[str]) -> None:
    script = load_stack_script()

    class Receiver:
        payloads = [{"attachments": [{"title": "[FIRING:1] CircuitBreakerOpen payments", "text": "x"}]}]

    assert script.show("Slack", Receiver(), 0, clock=lambda: 0.0) == 1
    printed = capsys.readouterr().out
    assert re.search(r"^  \d\d:\d\d:\d\d -> Slack: \[FIRING:1\] CircuitBreakerOpen payments", printed, re.M)
