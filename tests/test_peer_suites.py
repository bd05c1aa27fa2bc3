"""The peers' own test suites, run with seawall's adapters attached.

tenacity ships its tests in its sdist: it is downloaded at the installed version (pip, from the
package registry, into a cache; skipped with the reason when the index is unreachable), and its
suite runs twice in subprocesses, without and with every `Retrying` instrumented on construction
(tests/peer_plugin.py). A test that passes without the adapter and fails with it is a bug in the
adapter, unless listed in EXPECTED_DIFFERENCES with the reason. The instrumented run must also
close every attempt it opened (events and spans) and leave no span current.

pybreaker 1.4.1's sdist ships no tests (checked below, so a version that starts shipping them is
noticed); its scenarios are ported as tests/test_pybreaker_scenarios.py instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from package_index import pip

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
EXPORTER = HERE.parent / "exporter"
DOWNLOAD_SECONDS = 180
SUITE_SECONDS = 300  # one run of tenacity's suite takes ~10 s here
# Tests of tenacity's suite that may fail with the adapter attached, each with why. None today:
# the adapter changes neither tenacity's strategies nor what its objects look like.
EXPECTED_DIFFERENCES: dict[str, str] = {}


def _cache_dir() -> Path:
    configured = os.environ.get("SEAWALL_PEER_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "seawall" / "peers"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sdist(package: str) -> Path:
    """The unpacked sdist of the installed version of `package` (downloaded once per version)."""
    wanted = version(package)
    cache = _cache_dir()
    unpacked = cache / f"{package}-{wanted}"
    if (unpacked / "PKG-INFO").exists():
        return unpacked
    what = f"the {package}=={wanted} sdist (its tests ship in it)"
    pip(
        ["download", "--no-deps", "--no-binary", ":all:", "-d", str(cache), f"{package}=={wanted}"],
        what,
        DOWNLOAD_SECONDS,
    )
    archive = cache / f"{package}-{wanted}.tar.gz"
    if not archive.exists():
        pytest.fail(f"pip downloaded {what} but {archive} is missing")
    with tarfile.open(archive) as tar:
        root = cache.resolve()
        wanted_members = []
        for member in tar.getmembers():  # files and folders only (its README is a link), all inside
            if not (member.isfile() or member.isdir()):
                continue
            if not (cache / member.name).resolve().is_relative_to(root):
                pytest.fail(f"unexpected entry {member.name!r} in {archive}")
            wanted_members.append(member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(cache, members=wanted_members, filter="data")
        else:  # Python < 3.10.12: the members were checked above
            tar.extractall(cache, members=wanted_members)
    return unpacked


def _run_suite(
    tests: Path, workdir: Path, instrument: str | None, only: list[str] | None = None
) -> dict[str, Any]:
    """One run of a peer's suite (or of the tests `only` names) with the recording plugin."""
    results = workdir / f"results-{instrument or 'bare'}{'-again' if only else ''}.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(EXPORTER), str(HERE), env.get("PYTHONPATH", "")])
    env["SEAWALL_PEER_RESULTS"] = str(results)
    env.pop("SEAWALL_PEER_INSTRUMENT", None)
    if instrument:
        env["SEAWALL_PEER_INSTRUMENT"] = instrument
    command = [sys.executable, "-m", "pytest", *(only or [str(tests)]), "-q", "-p", "peer_plugin"]
    command += ["-p", "no:cacheprovider"]
    command += ["-c", str(workdir / "pytest.ini"), "--rootdir", str(workdir), "-o", "timeout=60"]
    try:
        done = subprocess.run(
            command, cwd=workdir, env=env, capture_output=True, text=True, timeout=SUITE_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the peer suite in {tests} took over {SUITE_SECONDS}s")
    if not results.exists():
        pytest.fail(
            f"the peer suite in {tests} recorded nothing:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    data: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    data["output"] = done.stdout[-3000:]
    return data


def test_tenacity_suite_passes_with_the_adapter(tmp_path: Path) -> None:
    sdist = _sdist("tenacity")
    # Only its tests are copied: they import the installed tenacity, the one the adapter wraps.
    tests = tmp_path / "tests"
    shutil.copytree(sdist / "tests", tests)
    (tmp_path / "pytest.ini").write_text("[pytest]\nfilterwarnings =\n    once::DeprecationWarning\n")
    bare = _run_suite(tests, tmp_path, None)
    instrumented = _run_suite(tests, tmp_path, "tenacity")

    passed = {test for test, outcome in bare["results"].items() if outcome == "passed"}
    assert len(passed) > 150, f"tenacity's suite ran too few tests:\n{bare['output']}"
    broken = {
        test: instrumented["results"].get(test, "missing")
        for test in sorted(passed)
        if instrumented["results"].get(test) != "passed" and test not in EXPECTED_DIFFERENCES
    }
    if broken:  # a timing-sensitive test may fail once by chance: it counts if it fails again
        again = _run_suite(tests, tmp_path, "tenacity", only=sorted(broken))["results"]
        broken = {test: outcome for test, outcome in broken.items() if again.get(test) != "passed"}
    assert broken == {}, f"tenacity tests that fail only with the adapter: {broken}\n{instrumented['output']}"

    summary = instrumented["summary"]
    assert summary["attempts_started"] > 200  # the adapter really was attached
    assert summary["attempts_finished"] == summary["attempts_started"]
    assert summary["spans_ended"] == summary["attempts_started"]
    assert summary["calls_counted"] > 50
    assert summary["leaked_current_span"] == []
    assert summary["instrumentation_errors"] == {}


def test_pybreaker_sdist_ships_no_tests() -> None:
    """If a pybreaker release starts shipping its tests, run them here like tenacity's."""
    sdist = _sdist("pybreaker")
    shipped = sorted(str(path.relative_to(sdist)) for path in sdist.rglob("test*.py"))
    assert (sdist / "src" / "pybreaker" / "__init__.py").exists()
    assert shipped == [], f"pybreaker {version('pybreaker')} ships tests now: {shipped}"
