"""The exposition tests pass on the oldest prometheus-client the `prometheus` extra admits, too.

The dev extra pins the newest release, so the rest of the suite covers that end of the range; this
test installs the lower bound into a cache directory and runs the exposition tests again with it
first on the path (byte equality with its own encoders included).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_command

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "prometheus-client"
EXPOSITION_TESTS = [
    "tests/test_prometheus.py",
    "tests/test_prometheus_render.py",
    "tests/test_prometheus_scenarios.py",
]


def oldest_admitted() -> str:
    """The lower bound of the `prometheus` extra, as an exact version (">=0.20" -> "0.20.0")."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'^prometheus = \["prometheus-client>=\s*([0-9.]+)', text, re.MULTILINE)
    assert found is not None, "pyproject's prometheus extra has no prometheus-client lower bound"
    parts = found.group(1).split(".")
    return ".".join([*parts, "0", "0"][:3])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_exposition_tests_pass_on_the_oldest_admitted_prometheus_client() -> None:
    version = oldest_admitted()
    target = CACHE / version
    if not (target / "prometheus_client").is_dir():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(target),
                f"prometheus-client=={version}",
            ],
            check=True,
            timeout=180,
        )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import prometheus_client.metrics_core as m, importlib.metadata as md; print(m.__file__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert probe.stdout.startswith(str(target)), probe.stdout
    run = run_command(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *EXPOSITION_TESTS],
        cwd=ROOT,
        env=env,
        timeout=240,
    )
    summary = run.stdout.strip().splitlines()[-1:] or [run.stderr[-2000:]]
    print(f"[prometheus-client {version}] {summary[0]}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in summary[0]
