"""The Prometheus rules in rules/: promtool check + unit tests, and the conventions the stack relies on."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from exposition import METRIC_CONTRACT
from seawall.metrics.contract import CONTRACT as METRICS
from stacktools.processes import stop_process
from stacktools.receivers import QuietHandler

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
LIMITS_RUNBOOKS = ROOT / "docs" / "runbooks-limits.md"  # the alerts of rules/seawall-limits-alerts.yml
ALERTS_DOC = ROOT / "docs" / "alerts.md"
RUNBOOK_BASE = "https://github.com/seawall-dev/seawall/blob/main/docs/runbooks.md#"
LIMITS_RUNBOOK_BASE = "https://github.com/seawall-dev/seawall/blob/main/docs/runbooks-limits.md#"
LIMITS_RULES = RULES_DIR / "seawall-limits-alerts.yml"
TASK_RUNBOOKS = ROOT / "docs" / "runbooks-tasks.md"
TASK_RUNBOOK_BASE = "https://github.com/seawall-dev/seawall/blob/main/docs/runbooks-tasks.md#"
# TaskSnapshot's series (issue 12), with their labels, from the contract table.
TASK_METRICS = {spec.sample_name: set(spec.label_names) for spec in METRICS if spec.source == "task"}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")

# The metric contract (DESIGN.md + docs/exporter.md) plus what the scrape itself produces.
HISTOGRAMS = {spec.prometheus_name for spec in METRICS if spec.type == "histogram"}
CONTRACT = (
    (METRIC_CONTRACT - HISTOGRAMS) | {f"{name}_bucket" for name in HISTOGRAMS} | {"up"} | set(TASK_METRICS)
)


def _rules() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            out.extend(group["rules"])
    return out


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _limits_alerts() -> set[str]:
    groups = yaml.safe_load(LIMITS_RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def _recordings() -> list[dict[str, Any]]:
    return [r for r in _rules() if "record" in r]


def _promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


@needs_promtool
def test_promtool_check_rules() -> None:
    res = _promtool("check", "rules", *map(str, RULE_FILES))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(RULE_FILES)


@needs_promtool
@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(test_file: Path) -> None:
    res = _promtool("test", "rules", test_file.name, cwd=test_file.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@needs_promtool
def test_promtool_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests are not vacuous: moving one threshold makes them fail."""
    (tmp_path / "rules" / "tests").mkdir(parents=True)
    for path in RULE_FILES:
        text = path.read_text()
        if path.name == "seawall-alerts.yml":
            assert "ratio_rate5m > 0.1" in text
            text = text.replace("ratio_rate5m > 0.1", "ratio_rate5m > 0.6")  # HighRejectionRate
        (tmp_path / "rules" / path.name).write_text(text)
    test = RULES_DIR / "tests" / "seawall-alerts_test.yml"
    (tmp_path / "rules" / "tests" / test.name).write_text(test.read_text())
    res = _promtool("test", "rules", test.name, cwd=tmp_path / "rules" / "tests")
    assert res.returncode != 0
    assert "HighRejectionRate" in res.stdout + res.stderr


def test_alerts_have_severity_and_annotations() -> None:
    alerts = _alerts()
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        ann = rule["annotations"]
        assert set(ann) >= {"summary", "description", "runbook_url"}, name
        assert "{{" not in ann["summary"], f"{name}: summary must be a static sentence"
        assert "{{" in ann["description"], f"{name}: description must use labels/value"
        if name in _limits_alerts():
            base = LIMITS_RUNBOOK_BASE
        elif name.startswith("Task"):
            base = TASK_RUNBOOK_BASE
        else:
            base = RUNBOOK_BASE
        assert ann["runbook_url"] == base + name.lower(), name


def test_required_alerts_exist_with_their_severity() -> None:
    severities: dict[str, set[str]] = {}
    for rule in _alerts():
        severities.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
    assert severities["CircuitBreakerOpen"] == {"critical"}
    assert severities["ErrorBudgetBurn"] == {"critical", "warning"}
    assert severities["TaskFailedPermanently"] == {"critical"}
    assert severities["TaskRestartingRepeatedly"] == {"warning"}
    assert severities["TaskHeartbeatStale"] == {"critical", "warning"}
    for name in (
        "CircuitBreakerFlapping",
        "CircuitBreakerHalfOpenStuck",
        "HighRejectionRate",
        "HighRetryRate",
        "RetryExhaustion",
        "ErrorRateHigh",
        "FeatureDegraded",
        "ExporterDown",
        "InstrumentationErrors",
        "LabelCardinalityOverflow",
    ):
        assert name in severities, name


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in _alerts()}
    assert names - fires == set(), "alerts without a firing test"
    assert names - quiet == set(), "alerts without a quiet test"


def _duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", text))


def test_every_alert_has_a_healed_test_that_fires_first_and_is_quiet_after() -> None:
    """Alerts must be quiet once the fault is healed: each one has a case named '... healed ...' in
    which it fires during the fault and, later in the same series, is quiet."""
    healed: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            if "heal" not in case["name"]:  # "... healed ...", "... heals ..."
                continue
            checks = case.get("alert_rule_test", [])
            for name in {c["alertname"] for c in checks}:
                mine = [c for c in checks if c["alertname"] == name]
                fired = [_duration(c["eval_time"]) for c in mine if c.get("exp_alerts")]
                quiet = [_duration(c["eval_time"]) for c in mine if not c.get("exp_alerts")]
                if fired and quiet and max(quiet) > min(fired):
                    healed.add(name)
    assert {r["alert"] for r in _alerts()} - healed == set(), "alerts without a healed test"


def _minutes(value: str) -> int:
    return int(value[:-1]) * (60 if value.endswith("h") else 1)


def test_every_limits_alert_has_a_healed_test() -> None:
    """Timeout, bulkhead and rate-limiter alerts: in one test case the alert fires, then is quiet
    again at a later evaluation once the fault is gone."""
    path = RULES_DIR / "tests" / "seawall-limits-alerts_test.yml"
    healed: set[str] = set()
    for case in yaml.safe_load(path.read_text())["tests"]:
        checks = sorted(case.get("alert_rule_test", []), key=lambda check: _minutes(check["eval_time"]))
        for index, check in enumerate(checks):
            if not check.get("exp_alerts"):
                continue
            if any(c["alertname"] == check["alertname"] and not c.get("exp_alerts") for c in checks[index:]):
                healed.add(check["alertname"])
    assert _limits_alerts() - healed == set(), "limits alerts without a healed test"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    pattern = re.compile(r"^[a-z_]+:[a-z_]+:[a-z0-9_]+$")
    names = [r["record"] for r in _recordings()]
    assert "breaker:seawall_circuit_breaker_calls:rate5m" in names
    assert "breaker:seawall_circuit_breaker_rejections:ratio_rate5m" in names
    assert "seawall:slo_target" in names
    assert len(names) == len(set(names))
    for name in names:
        assert name == "seawall:slo_target" or pattern.match(name), name


def test_rules_only_use_contract_metrics() -> None:
    recorded = {r["record"] for r in _recordings()}
    token = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|$|\s*[><=!])")
    for rule in _rules():
        for name in token.findall(rule["expr"]):
            if name.startswith("seawall_") or name == "up":
                assert name in CONTRACT, f"{rule.get('alert') or rule.get('record')}: {name}"
            elif ":" in name:
                assert name in recorded, f"{rule.get('alert') or rule.get('record')}: {name}"


def test_runbooks_and_alert_docs_cover_every_rule() -> None:
    runbooks = RUNBOOKS.read_text() + LIMITS_RUNBOOKS.read_text() + TASK_RUNBOOKS.read_text()
    assert "runbooks-limits.md" in RUNBOOKS.read_text(), "docs/runbooks.md must link the limits runbooks"
    assert "runbooks-tasks.md" in RUNBOOKS.read_text()
    anchors = {m.group(1).strip().lower() for m in re.finditer(r"^## +(.+)$", runbooks, re.M)}
    doc = ALERTS_DOC.read_text()
    for name in {r["alert"] for r in _alerts()}:
        assert name.lower() in anchors, f"docs/runbooks(-limits).md has no section '## {name}'"
        assert f"`{name}`" in doc or f"[{name}]" in doc, f"docs/alerts.md does not list {name}"
    for name in {r["record"] for r in _recordings()}:
        assert f"`{name}`" in doc, f"docs/alerts.md does not list recording rule {name}"


def test_alerts_doc_table_states_each_rules_for_and_severity() -> None:
    """docs/alerts.md's alert table repeats each rule's `for` and severity for readers; check the
    copy against the rules so a changed timing cannot leave the table behind."""
    rows = [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in ALERTS_DOC.read_text().splitlines()
        if line.startswith("| [`")
    ]
    assert rows, "docs/alerts.md has no alert table"
    rules = {(r["alert"], r["labels"]["severity"]): r.get("for", "\N{EN DASH}") for r in _alerts()}
    documented = set()
    for alert, _expr, for_, severity, *_ in rows:
        name = re.match(r"\[`(\w+)`\]", alert)
        assert name, alert
        key = (name.group(1), severity)
        assert key in rules, f"docs/alerts.md lists {key}, which no rule defines"
        assert for_ == rules[key], f"docs/alerts.md says for {for_} for {key}, the rule says {rules[key]}"
        documented.add(key)
    assert documented == set(rules), f"not in docs/alerts.md's table: {set(rules) - documented}"


def test_readme_lists_every_alert() -> None:
    """README's alert tables are the user's list: a rule missing there is an alert nobody expects."""
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^\| (\w+) \|", readme, re.M))
    missing = {r["alert"] for r in _alerts()} - listed
    assert not missing, f"README.md's alert tables do not list {sorted(missing)}"


# --------------------------------------------------------------------------------------------------
# the rules against what seawall.prometheus really exports
# --------------------------------------------------------------------------------------------------
SELECTOR = re.compile(r"\b(seawall_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


async def _a_task_that_fails_for_good(registry: Any) -> None:
    """A supervised task with a heartbeat timeout: restarted once, then failed (every task series)."""
    import seawall

    async def crash() -> None:
        raise TimeoutError("queue")

    async def no_wait(seconds: float) -> None:
        return None

    supervisor = seawall.Supervisor(registry=registry, sleep=no_wait)
    await supervisor.supervise("sync", crash, max_restarts=1, heartbeat_timeout=5.0).wait()


def _exported_samples() -> dict[str, list[dict[str, str]]]:
    """Label sets per sample name after driving every event kind through a real instrumentation."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    import seawall
    from seawall import prometheus as sp

    registry = seawall.Registry()
    prom = CollectorRegistry()
    inst = sp.instrument(prom, seawall_registry=registry, max_label_values=2)
    try:
        clock = [0.0]
        payments = seawall.CircuitBreaker(
            "payments", failure_threshold=1, reset_timeout=1, clock=lambda: clock[0], registry=registry
        )
        payments.call(lambda: None)
        with contextlib.suppress(TimeoutError):
            payments.call(lambda: (_ for _ in ()).throw(TimeoutError()))
        with contextlib.suppress(seawall.CircuitOpenError):
            payments.call(lambda: None)
        clock[0] = 2.0
        with contextlib.suppress(TimeoutError):  # open -> half_open (probe) -> open
            payments.call(lambda: (_ for _ in ()).throw(TimeoutError()))
        search = seawall.Retry("search", attempts=2, sleep=lambda s: None, registry=registry)
        search.call(lambda: None)
        with contextlib.suppress(TimeoutError):
            search.call(lambda: (_ for _ in ()).throw(TimeoutError()))
        for source in ("payments", "search", "inventory"):  # the third overflows max_label_values=2
            registry.errors.record(PermissionError(), source=source)
        recommendations = seawall.Feature("recommendations", fallback=None, registry=registry)
        recommendations.disable()
        recommendations.call(lambda: None)
        registry.bus.report_error("otlp", ConnectionError())
        db_timeout = seawall.Timeout("db", 1.0, registry=registry)
        db_timeout.call(lambda: None)
        slots = seawall.Bulkhead("db", 1, registry=registry)
        slots.call(lambda: None)
        limiter = seawall.RateLimiter("api", 1, burst=1, registry=registry)
        limiter.call(lambda: None)
        with contextlib.suppress(seawall.RateLimitedError):
            limiter.call(lambda: None)
        asyncio.run(_a_task_that_fails_for_good(registry))
        # a breaker shared through a Redis that does not answer (port 1): its sync fails, counted
        nowhere = seawall.RedisBackend("redis://127.0.0.1:1/0", timeout=0.05)
        fleet = seawall.CircuitBreaker("fleet", registry=registry, shared=nowhere)
        deadline = time.monotonic() + 5.0
        while fleet.snapshot().shared_errors == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        nowhere.close()
        text = generate_latest(prom).decode()
    finally:
        inst.close()
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def test_rule_selectors_match_the_exported_metrics() -> None:
    """Every seawall_* selector in the rules names an exported metric, its real label names, and
    label values the exporter really produces (or that its enums define)."""
    import seawall

    exported = _exported_samples()
    enum_values = {
        str(v.value)
        for e in (
            seawall.BreakerState,
            seawall.CallOutcome,
            seawall.RetryOutcome,
            seawall.ErrorCategory,
            seawall.FallbackReason,
        )
        for v in e
    }
    admin_source = (ROOT / "exporter" / "seawall" / "starlette" / "admin.py").read_text()
    checked = 0
    for rule in _rules():
        for metric, body in SELECTOR.findall(rule["expr"]):
            if metric == "seawall_admin_actions_total":  # a web-layer metric: check against its source
                for _label, _op, value in MATCHER.findall(body):
                    for alt in value.split("|"):
                        assert f'"{alt}"' in admin_source, f"admin result {alt!r} is never counted"
                continue
            assert metric in exported, f"{metric} is not exported"
            label_names = set().union(*(s.keys() for s in exported[metric]))
            values = {(k, v) for s in exported[metric] for k, v in s.items()}
            for label, _op, value in MATCHER.findall(body):
                assert label in label_names, f"{metric} has no label {label!r} ({sorted(label_names)})"
                for alt in value.split("|"):
                    assert (label, alt) in values or alt in enum_values, f"{metric}{{{label}={alt!r}}}"
                checked += 1
    assert checked >= 15
    for rule in _rules():
        for metric in re.findall(r"(?<![:\w])(seawall_[a-z_]+)(?![:\w])", rule["expr"]):
            if metric == "seawall_admin_actions_total":
                continue
            assert metric in exported, f"{metric} is not exported"
    overflow = exported["seawall_label_overflow_total"]
    assert {"metric", "label"} <= set(overflow[0])


def test_task_rule_selectors_match_the_task_contract() -> None:
    """Task selectors use TaskSnapshot's labels and TaskState's values (the exporter's mapping)."""
    import seawall

    states = {state.value for state in seawall.TaskState}
    checked = 0
    for rule in _rules():
        for metric, body in SELECTOR.findall(rule["expr"]):
            if metric not in TASK_METRICS:
                continue
            for label, _op, value in MATCHER.findall(body):
                assert label in TASK_METRICS[metric], f"{metric} has no label {label!r}"
                if label == "state":
                    assert set(value.split("|")) <= states, value
                checked += 1
    assert checked >= 1
    fields = set(seawall.TaskSnapshot.__dataclass_fields__)
    assert {"state", "restarts_by_error", "permanent_failures", "last_started_at", "last_beat_at"} <= fields
    assert {"heartbeat_timeout"} <= fields


# --------------------------------------------------------------------------------------------------
# the rules evaluated by a real Prometheus scraping a real seawall exposition
# --------------------------------------------------------------------------------------------------
PROMETHEUS = shutil.which("prometheus")


def _poll(fetch: Any, done: Any, timeout: float, what: str) -> Any:
    """Call fetch() until done(result) (bounded by `timeout` seconds); raise with the last result."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout}s; last: {str(result)[:3000]}")
        time.sleep(0.2)


@pytest.mark.stack
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")
def test_real_prometheus_evaluates_every_rule_without_error(tmp_path: Path) -> None:
    import subprocess
    import threading
    from http.server import ThreadingHTTPServer

    import httpx
    from prometheus_client import CollectorRegistry, generate_latest

    import seawall
    from seawall import prometheus as sp
    from stacktools.receivers import closed_port_url, free_port

    registry = seawall.Registry()
    prom = CollectorRegistry()
    inst = sp.instrument(prom, seawall_registry=registry)
    # trips on its first failure and probes again after 10 ms: each scrape sees it open, after one
    # more failed probe (so the recorded failure rate is > 0 too)
    payments = seawall.CircuitBreaker("payments", failure_threshold=1, reset_timeout=0.01, registry=registry)
    with contextlib.suppress(TimeoutError):
        payments.call(lambda: (_ for _ in ()).throw(TimeoutError()))

    def timeout() -> None:
        raise TimeoutError("slow")

    class Metrics(QuietHandler):
        def do_GET(self) -> None:
            with contextlib.suppress(TimeoutError, seawall.CircuitOpenError):
                payments.call(timeout)
            self.answer(200, generate_latest(prom), "text/plain; version=0.0.4")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    down = closed_port_url().removeprefix("http://").rstrip("/")
    up_target = f"127.0.0.1:{server.server_address[1]}"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": "seawall-test",
                "static_configs": [{"targets": [up_target], "labels": {"service": "seawall-test"}}],
            },
            {
                "job_name": "seawall-gone",
                "static_configs": [{"targets": [down], "labels": {"service": "seawall-gone"}}],
            },
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0)

    def get(path: str, **params: str) -> Any:
        try:
            res = client.get(path, params=params)
        except httpx.TransportError:
            return None
        return res.json() if res.status_code == 200 else None

    try:
        # every rule evaluated at least once, and healthy (no evaluation error)
        def evaluated(r: Any) -> bool:
            return r is not None and all(
                g["lastEvaluation"] > "2000" and rule.get("health") != "unknown"
                for g in r["data"]["groups"]
                for rule in g["rules"]
            )

        rules = _poll(lambda: get("/api/v1/rules"), evaluated, 30, "rules evaluated")
        groups = rules["data"]["groups"]
        assert {g["file"] for g in groups} == {str(p) for p in RULE_FILES}
        bad = [
            (rule["name"], rule.get("lastError"))
            for g in groups
            for rule in g["rules"]
            if rule["health"] != "ok"
        ]
        assert bad == []

        # recording rules produce series with the scrape's service/job/instance
        def series(r: Any) -> bool:
            return r is not None and bool(r["data"]["result"])

        res = _poll(
            lambda: get(
                "/api/v1/query", query='breaker:seawall_circuit_breaker_calls:rate5m{outcome="failure"}'
            ),
            series,
            20,
            "recorded call rate",
        )
        labels = res["data"]["result"][0]["metric"]
        assert labels["breaker"] == "payments"
        assert labels["service"] == "seawall-test"
        assert labels["job"] == "seawall-test"

        # the open breaker and the unreachable target start their alerts (pending: `for` is minutes)
        alerts = _poll(
            lambda: get("/api/v1/alerts"),
            lambda r: (
                r is not None
                and {a["labels"]["alertname"] for a in r["data"]["alerts"]}
                >= {"CircuitBreakerOpen", "ExporterDown"}
            ),
            20,
            "pending alerts",
        )
        by_name = {a["labels"]["alertname"]: a for a in alerts["data"]["alerts"]}
        assert by_name["CircuitBreakerOpen"]["labels"]["breaker"] == "payments"
        assert by_name["CircuitBreakerOpen"]["labels"]["severity"] == "critical"
        assert by_name["ExporterDown"]["labels"]["job"] == "seawall-gone"
        assert "seawall-test" not in {
            a["labels"].get("job")
            for a in alerts["data"]["alerts"]
            if a["labels"]["alertname"] == "ExporterDown"
        }
    finally:
        client.close()
        stop_process(proc)
        log.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        inst.close()
