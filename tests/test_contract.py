"""The metric contract table: names, docs rendered from it, and every selector of the rules and
dashboards checked against it (family, label and value)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from exposition import prometheus_name
from seawall.core.kinds import Kind
from seawall.core.registry import Registry
from seawall.metrics import tables
from seawall.metrics.contract import CONTRACT, GLOBAL_SOURCES, by_name
from seawall.metrics.reading import Reading

ROOT = Path(__file__).resolve().parents[1]

# The 34 families as users' alerts and dashboards know them: renaming one is a breaking change.
FAMILIES = {
    "seawall_circuit_breaker_state",
    "seawall_circuit_breaker_calls_total",
    "seawall_circuit_breaker_call_duration_seconds",
    "seawall_circuit_breaker_transitions_total",
    "seawall_circuit_breaker_failure_ratio",
    "seawall_circuit_breaker_shared_up",
    "seawall_circuit_breaker_shared_errors_total",
    "seawall_retry_calls_total",
    "seawall_retries_total",
    "seawall_errors_total",
    "seawall_feature_enabled",
    "seawall_fallbacks_total",
    "seawall_timeout_calls_total",
    "seawall_timeout_call_duration_seconds",
    "seawall_bulkhead_calls_total",
    "seawall_bulkhead_in_flight",
    "seawall_bulkhead_capacity",
    "seawall_bulkhead_wait_seconds",
    "seawall_rate_limiter_calls_total",
    "seawall_rate_limiter_available_tokens",
    "seawall_rate_limiter_backend_errors_total",
    "seawall_rate_limiter_backend_up",
    "seawall_task_state",
    "seawall_task_up",
    "seawall_task_restarts_total",
    "seawall_task_permanent_failures_total",
    "seawall_task_last_start_timestamp_seconds",
    "seawall_task_last_heartbeat_timestamp_seconds",
    "seawall_task_heartbeat_timeout_seconds",
    "seawall_hedge_calls_total",
    "seawall_hedges_total",
    "seawall_instrumentation_errors_total",
    "seawall_build_info",
    "seawall_label_overflow_total",
}
# Labels the scrape adds (target labels), not the exporter.
TARGET_LABELS = {"service", "job", "instance", "replica"}
SELECTOR = re.compile(r"(?<![:\w])(seawall_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def test_the_families_and_their_names() -> None:
    assert {spec.sample_name for spec in CONTRACT} == FAMILIES
    assert len({spec.name for spec in CONTRACT}) == len(CONTRACT)
    for spec in CONTRACT:
        # the OpenTelemetry name translates by the standard mapping to the Prometheus name
        assert prometheus_name(spec.name, spec.unit, spec.type == "gauge") == spec.prometheus_name
        assert re.fullmatch(r"seawall(\.[a-z_]+)+", spec.name), spec.name
        assert spec.help, spec.name
        assert not spec.help.endswith("."), spec.name
        if spec.fold == "worst":
            assert set(spec.worst_first) == set(spec.labels[-1].values or ()), spec.name
        if spec.type != "gauge":
            assert spec.fold == "sum", spec.name  # counts only ever add up
        assert by_name(spec.sample_name) is spec
    with pytest.raises(KeyError, match="seawall_nothing"):
        by_name("seawall_nothing")


def test_every_row_reads_a_declared_source_and_every_source_is_read() -> None:
    """A row's `source` is a kind (its items are snapshots) or one of GLOBAL_SOURCES, each of
    which the one reader knows: a typo fails here, not as a scrape-time error."""
    kinds = {kind.value for kind in Kind}
    sources = {spec.source for spec in CONTRACT}
    assert sources <= kinds | set(GLOBAL_SOURCES), sources - kinds - set(GLOBAL_SOURCES)
    assert set(GLOBAL_SOURCES) <= sources  # none declared and unused
    reading = Reading(Registry(), 100, "test")
    for source in GLOBAL_SOURCES:
        assert isinstance(reading._items(source), list)
    with pytest.raises(ValueError, match="unknown metric source"):
        reading._items("nonsense")


@pytest.mark.parametrize("doc", ["README.md", "docs/exporter.md"])
def test_doc_tables_are_rendered_from_the_contract(doc: str) -> None:
    text = (ROOT / doc).read_text()
    assert "<!-- contract:metrics -->" in text
    assert tables.render(text) == text, f"run: python -m seawall.metrics.tables {doc}"
    for spec in CONTRACT:
        assert f"`{spec.sample_name}`" in text


def test_render_replaces_only_the_marked_block() -> None:
    text = "before\n<!-- contract:metrics -->\nOLD ROWS\n<!-- /contract:metrics -->\nafter\n"
    rendered = tables.render(text)
    assert rendered.startswith("before\n<!-- contract:metrics -->\n| metric |")
    assert "OLD ROWS" not in rendered
    assert rendered.endswith("<!-- /contract:metrics -->\nafter\n")
    assert tables.across_workers(by_name("seawall_feature_enabled")).startswith("`livemin`")


def _exprs() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted((ROOT / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(
                (f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"])
                for rule in group["rules"]
            )

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append((where, value))
                else:
                    walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        walk(json.loads(path.read_text()), path.name)
    return found


def test_rules_and_dashboards_select_only_what_the_contract_exports() -> None:
    checked = set()
    for where, expr in _exprs():
        for metric in re.findall(r"(?<![:\w])(seawall_[a-z_]+)", expr):
            if metric == "seawall_admin_actions_total":  # the web layer's own counter
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", metric)
            spec = by_name(metric) if metric in FAMILIES else by_name(base)
            assert spec.type == "histogram" or metric == spec.sample_name, f"{where}: {metric}"
        for metric, body in SELECTOR.findall(expr):
            if metric == "seawall_admin_actions_total":
                continue
            spec = (
                by_name(metric)
                if metric in FAMILIES
                else by_name(re.sub(r"_(bucket|sum|count)$", "", metric))
            )
            labels = {label.name: label for label in spec.labels}
            for name, _op, value in MATCHER.findall(body):
                if name in TARGET_LABELS or (name == "le" and metric.endswith("_bucket")):
                    continue
                assert name in labels, f"{where}: {metric} has no label {name!r} ({sorted(labels)})"
                vocabulary = labels[name].values
                if vocabulary is not None and "$" not in value:
                    for alternative in value.split("|"):
                        assert alternative in vocabulary, f"{where}: {metric}{{{name}={alternative!r}}}"
                checked.add((spec.sample_name, name))
    assert len(checked) >= 15  # the check saw the selectors
