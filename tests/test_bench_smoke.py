"""Smoke test of `python -m bench`: every case runs once with tiny counts. Structure only, never speed."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_command

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import bench.__main__ as runner  # noqa: E402
from bench import harness  # noqa: E402
from bench.__main__ import all_cases, run  # noqa: E402

STATUSES = {harness.PASS, harness.MISS, harness.NOT_AVAILABLE}
EXPECTED_CASES = {
    "breaker.success",
    "breaker.rejected",
    "breaker.threads",
    "breaker.shared",
    "retry.success",
    "retry.async",
    "aggregator.record",
    "aggregator.record.novel",
    "aggregator.memory",
    "exporter.breaker",
    "exporter.stack",
    "exporter.render",
    "otel.retry",
    "web.endpoints",
    "limits.timeout",
    "limits.timeout.sync",
    "limits.bulkhead",
    "limits.bulkhead.async",
    "limits.ratelimit",
    "limits.ratelimit.async",
    "limits.ratelimit.redis",
    "limits.prometheus",
    "http.client",
    "http.loopback",
}


def test_every_case_is_registered() -> None:
    assert {case.name for case in all_cases()} == EXPECTED_CASES


def test_every_registered_case_name_is_unique() -> None:
    names = [case.name for case in all_cases()]
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)
    everywhere = [case.name for cases in harness.REGISTRY.values() for case in cases]
    assert sorted(everywhere) == sorted(names), "a module outside AREAS registers cases"


def test_a_second_case_of_the_same_name_is_refused() -> None:
    def body(result: harness.CaseResult, config: harness.Config) -> harness.CaseResult:
        return result

    before = {module: list(cases) for module, cases in harness.REGISTRY.items()}
    with pytest.raises(
        ValueError, match=r"'breaker\.success'.*already registered by bench\.breaker\.success_path"
    ):
        harness.case("breaker.success", "another title")(body)
    assert before == harness.REGISTRY


def test_an_area_without_cases_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "AREAS", ("breaker", "harness"))
    with pytest.raises(LookupError, match=r"'harness'.*declares no @case"):
        all_cases()


def test_a_result_under_another_name_is_refused() -> None:
    def misnamed(result: harness.CaseResult, config: harness.Config) -> harness.CaseResult:
        return harness.CaseResult("other.name", result.title)

    misfit = harness.Case("bench.misnamed", "title", misnamed)
    with pytest.raises(ValueError, match=r"'bench\.misnamed'.*returned a result named 'other\.name'"):
        misfit.run(harness.Config.smoke())


def test_every_case_runs_once_and_reports_targets() -> None:
    config = harness.Config.smoke()
    results = run(config, echo=False)
    cases = all_cases()
    assert [result.case for result in results] == [case.name for case in cases]
    for case, result in zip(cases, results, strict=True):
        assert result.error == "", f"{result.case}: {result.error}"
        assert result.case == case.name
        assert result.title == (case.title if isinstance(case.title, str) else case.title(config))
        assert result.measurements, result.case
        assert result.targets, result.case
        for target in result.targets:
            assert target.status in STATUSES
            assert target.limit > 0
            if target.status == harness.NOT_AVAILABLE:
                assert target.actual is None
                assert target.note
            else:
                assert target.actual is not None
                assert target.actual >= 0
                assert (target.status == harness.PASS) == (target.actual <= target.limit)
        for item in result.measurements:
            assert item.value is not None or item.note, (
                f"{result.case}/{item.subject} has no value and no reason"
            )
    table = harness.render_table(results)
    for name in EXPECTED_CASES:
        assert name in table
    assert "targets:" in table


def test_peers_are_always_measured() -> None:
    """The peer libraries are installed, so their rows have numbers whether or not seawall has landed."""
    results = {result.case: result for result in run(harness.Config.smoke(), "breaker.success", echo=False)}
    success = results["breaker.success"]
    for peer in ("pybreaker", "circuitbreaker"):
        measured = success.get(peer)
        assert measured is not None
        assert measured.value is not None
        assert measured.raw is not None


def test_per_call_timing_subtracts_the_baseline() -> None:
    calls = {"bare": 0, "slow": 0}

    def bare() -> None:
        calls["bare"] += 1

    def slow() -> None:
        calls["slow"] += 1
        sum(range(200))

    subjects: dict[str, Callable[[], object]] = {"bare": bare, "slow": slow}
    config = harness.Config(repeat=2, min_time=0.0, warmup=3)
    timings = harness.per_call_ns(subjects, config)
    assert calls["bare"] >= 3 + 2
    assert calls["slow"] >= 3 + 2
    measurements = harness.overhead_measurements(timings, "bare", {"missing": "not yet available"})
    by_subject = {item.subject: item for item in measurements}
    assert by_subject["bare"].value == 0.0
    slow_item = by_subject["slow"]
    assert slow_item.raw is not None
    assert slow_item.value is not None
    assert slow_item.value == pytest.approx(slow_item.raw - timings["bare"][0])
    assert by_subject["missing"].value is None


def test_ratio_target_statuses() -> None:
    case = harness.CaseResult("x", "x")
    case.measurements = [
        harness.Measurement("a", 10.0, "ns/call"),
        harness.Measurement("b", 100.0, "ns/call"),
        harness.Measurement("c", None, "ns/call", note="not yet available: c"),
    ]
    assert case.ratio_target("a/b", "a", "b", 0.5).status == harness.PASS
    assert case.ratio_target("b/a", "b", "a", 0.5).status == harness.MISS
    missing = case.ratio_target("c/b", "c", "b", 0.5)
    assert missing.status == harness.NOT_AVAILABLE
    assert "c" in missing.note


def test_command_line_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    completed = run_command(
        [sys.executable, "-m", "bench", "--smoke", "--filter", "retry.", "--json", str(out)],
        cwd=ROOT,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "PASS" in completed.stdout or "MISS" in completed.stdout or "N/A" in completed.stdout
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert {case["case"] for case in payload["cases"]} == {"retry.success", "retry.async"}
    assert payload["machine"]["cpus"] >= 1
    for case in payload["cases"]:
        subjects = {item["subject"] for item in case["measurements"]}
        assert {"bare", "seawall"} <= subjects


def test_unknown_filter_is_an_error_not_a_crash() -> None:
    completed = run_command(
        [sys.executable, "-m", "bench", "--smoke", "--filter", "no-such-case"],
        cwd=ROOT,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "no case matches" in completed.stderr


@pytest.mark.parametrize(
    ("ours", "peers", "status"), [(-980.0, 32_232.0, "N/A"), (5.0, -1.0, "N/A"), (10.0, 40.0, "PASS")]
)
def test_a_cost_below_the_noise_is_not_a_pass(ours: float, peers: float, status: str) -> None:
    """A negative overhead (seen: -980 ns on loopback with 357 us per request) is noise, not 0.000x PASS."""
    case = harness.CaseResult("x", "x")
    case.measurements = [harness.Measurement("ours", ours, "ns"), harness.Measurement("peers", peers, "ns")]
    target = case.ratio_target("ours / peers", "ours", "peers", 0.5)
    assert target.status == status
    assert (target.actual is None) == (status == "N/A")
