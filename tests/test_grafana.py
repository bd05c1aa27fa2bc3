"""Grafana: the committed dashboards are what grafana/dashboards.py generates, and they are sound.

Sound means: every query names the provisioned Prometheus datasource by uid, every PromQL expression
parses (promtool, with template variables substituted), the panels the issue asks for exist, and the
provisioning files wire exemplars to the trace datasource.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import load_module, run_command
from exposition import METRIC_CONTRACT

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"


gen = load_module("seawall_dashboards", GRAFANA / "dashboards.py")


def committed() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text()) for path in sorted((GRAFANA / "dashboards").glob("*.json"))
    }


def datasources() -> list[dict[str, Any]]:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "seawall.yml").read_text())
    result: list[dict[str, Any]] = doc["datasources"]
    return result


def test_committed_json_is_what_the_generator_produces() -> None:
    on_disk = {path.name: path.read_text() for path in (GRAFANA / "dashboards").glob("*.json")}
    assert on_disk == gen.rendered(), "grafana/dashboards/ is stale: run `make dashboards`"


def test_make_dashboards_regenerates_into_a_directory(tmp_path: Path) -> None:
    out = tmp_path / "dashboards"
    run = run_command(
        [sys.executable, str(GRAFANA / "dashboards.py"), "--out", str(out)],
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(gen.ALL_DASHBOARDS)
    for path in out.iterdir():
        assert path.read_text() == (GRAFANA / "dashboards" / path.name).read_text()
    check = run_command(
        [sys.executable, str(GRAFANA / "dashboards.py"), "--check", "--out", str(out)],
        timeout=60,
    )
    assert check.returncode == 0, check.stdout
    (out / "seawall-breaker.json").write_text("{}")
    stale = run_command(
        [sys.executable, str(GRAFANA / "dashboards.py"), "--check", "--out", str(out)],
        timeout=60,
    )
    assert stale.returncode == 1
    assert "stale" in stale.stdout
    assert (out / "seawall-breaker.json").read_text() == "{}", "--check must not write"


def test_datasources_have_fixed_uids_and_exemplars_link_to_traces() -> None:
    by_uid = {ds["uid"]: ds for ds in datasources()}
    assert by_uid["seawall-prometheus"]["type"] == "prometheus"
    assert by_uid["seawall-tempo"]["type"] == "tempo"
    links = by_uid["seawall-prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {"name": "trace_id", "datasourceUid": "seawall-tempo"}.items() <= links[0].items()
    assert gen.PROMETHEUS_UID in by_uid
    assert gen.TEMPO_UID in by_uid


def test_dashboard_provider_points_at_the_mounted_directory() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "seawall.yml").read_text())
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.monitoring.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts


def walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("name", sorted(gen.DASHBOARDS))
def test_dashboards_name_the_datasource_by_uid(name: str) -> None:
    text = (GRAFANA / "dashboards" / name).read_text()
    assert "${DS_" not in text
    assert "__inputs" not in text
    model = json.loads(text)
    uids = {ds["uid"] for ds in datasources()}
    refs = [node["datasource"] for node in walk(model) if isinstance(node.get("datasource"), dict)]
    assert refs, "no datasource references at all"
    assert {ref["uid"] for ref in refs} <= uids
    for panel in model["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == gen.PROMETHEUS_UID, panel["title"]
            assert panel["targets"], f"panel {panel['title']!r} has no query"


def titles(model: dict[str, Any]) -> set[str]:
    return {panel["title"] for panel in model["panels"]}


def test_overview_has_every_panel_the_issue_asks_for() -> None:
    model = committed()["seawall-overview.json"]
    assert {
        "Breaker states",
        "Calls by outcome",
        "Rejection rate",
        "Failure rate vs threshold",
        "Call latency percentiles",
        "Retries by outcome",
        "Errors by category",
        "Top error sources",
        "Features",
        "Firing alerts",
    } <= titles(model)
    exprs = dict(gen.iter_targets(model))
    assert 'ALERTS{alertstate="firing"}' in exprs["Firing alerts"]
    latency = [t for p in model["panels"] if p["title"] == "Call latency percentiles" for t in p["targets"]]
    assert latency
    assert all(t["exemplar"] for t in latency)
    failure = next(p for p in model["panels"] if p["title"] == "Failure rate vs threshold")
    steps = failure["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == gen.FAILURE_RATE_THRESHOLD
    assert failure["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"


def test_drilldown_has_service_and_breaker_variables() -> None:
    model = committed()["seawall-breaker.json"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"service", "breaker", "client"}
    assert "$service" in json.dumps(variables["breaker"]["query"]), "breaker list follows the service"
    # the client of an HTTP breaker named client@upstream: hidden, derived from $breaker
    client = variables["client"]
    assert client["hide"] == 2
    assert 'breaker="$breaker"' in client["query"]["query"]
    capture = re.compile(client["regex"].strip("/"))
    assert capture.match("payments@http:payments:80")[1] == "payments"  # type: ignore[index]
    assert capture.match("payments")[1] == "payments"  # type: ignore[index]
    for title, expr in gen.iter_targets(model):
        if "seawall_circuit_breaker" in expr:
            assert 'breaker="$breaker"' in expr, title
        if "seawall_retry" in expr or "seawall_feature" in expr or "seawall_fallbacks" in expr:
            assert "$client" in expr, title
        assert "$service" in expr, title


def test_http_dashboard_repeats_a_row_per_upstream_host() -> None:
    model = committed()["seawall-http.json"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"service", "upstream"}
    upstream = variables["upstream"]
    assert upstream["multi"]
    assert upstream["includeAll"]
    assert 'breaker=~".+@.+"' in upstream["query"]["query"], "only the HTTP clients' per-host breakers"
    row, *panels = model["panels"]  # one row, repeated per host, with every panel under it
    assert row["type"] == "row"
    assert row["repeat"] == "upstream"
    assert "$upstream" in row["title"]
    assert all(panel["type"] != "row" for panel in panels)
    assert {panel["title"] for panel in panels} >= {"State", "Calls by outcome", "Errors by type"}
    for title, expr in gen.iter_targets(model):
        assert '"$upstream"' in expr, title
        assert "$service" in expr, title


def test_every_metric_named_is_in_the_contract() -> None:
    contract = METRIC_CONTRACT
    for model in committed().values():
        for title, expr in gen.iter_targets(model):
            for metric in re.findall(r"\b(seawall_[a-z_]+)", expr):
                base = re.sub(r"_(bucket|sum|count)$", "", metric)
                assert base in contract, f"{title}: {metric} is not in the metric contract"


def all_exprs() -> list[tuple[str, str]]:
    values = {
        "service": ".*",
        "breaker": "payments",
        "client": "payments",
        "upstream": "payments@http:payments:80",
    }
    return [
        (f"{name}: {title}", gen.expand(expr, values))
        for name, model in committed().items()
        for title, expr in gen.iter_targets(model)
    ]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_every_dashboard_expression_parses(tmp_path: Path) -> None:
    exprs = all_exprs()
    rules = [{"record": f"seawall_dashboard:check{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]
    path = tmp_path / "exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard-exprs", "rules": rules}]}))
    run = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(exprs)} rules found" in run.stdout
    assert not any("$" in expr for _, expr in exprs), "an unexpanded template variable is left"
