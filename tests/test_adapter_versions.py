"""The adapters on the oldest versions their extras admit: pyproject.toml's floors of tenacity and
pybreaker are installed (pip, into a cache) and the adapter tests run against them in a
subprocess. The newest admitted versions are the ones pinned in `dev`, which the rest of the suite
runs on. Skipped with the reason when the package index is unreachable."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import tomllib

from conftest import run_command
from package_index import pip

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
INSTALL_SECONDS = 180
RUN_SECONDS = 300
# The adapter tests each peer's floor runs.
SUITES = {
    "tenacity": ["test_adapters.py", "-k", "tenacity"],
    "pybreaker": ["test_adapters.py", "test_pybreaker_scenarios.py", "-k", "pybreaker or scenario"],
}


def floor(package: str) -> str:
    """The lowest version the package's extra admits (`>=X` in pyproject.toml)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for requirement in extras[package]:
        found = re.fullmatch(rf"{package}>=([0-9.]+),<[0-9.]+", requirement.replace(" ", ""))
        if found:
            return found[1]
    raise AssertionError(f"no bounded range for {package} in the {package} extra: {extras[package]!r}")


def installed_floor(package: str) -> Path:
    """A directory holding exactly `package==floor` (installed once per version)."""
    wanted = floor(package)
    configured = os.environ.get("SEAWALL_PEER_CACHE")
    cache = Path(configured) if configured else Path.home() / ".cache" / "seawall" / "peers"
    target = cache / f"site-{package}-{wanted}"
    if not (target / "ok").exists():
        what = f"{package}=={wanted}, the floor of its extra"
        pip(
            ["install", "--no-deps", "--upgrade", "--target", str(target), f"{package}=={wanted}"],
            what,
            INSTALL_SECONDS,
        )
        (target / "ok").write_text(wanted)
    return target


@pytest.mark.parametrize("package", sorted(SUITES))
def test_the_adapter_works_on_the_floor_of_its_range(package: str) -> None:
    target = installed_floor(package)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target), str(ROOT / "exporter"), str(HERE), str(ROOT)])
    probe = run_command(
        [sys.executable, "-c", f"from importlib.metadata import version; print(version({package!r}))"],
        env=env,
    )
    assert probe.stdout.strip().startswith(floor(package))  # the floor is what the run imports
    command = [sys.executable, "-m", "pytest", *SUITES[package], "-q", "-p", "no:cacheprovider", "-x"]
    done = run_command(command, cwd=HERE, env=env, timeout=RUN_SECONDS)
    assert done.returncode == 0, f"{package}=={floor(package)}:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    assert " passed" in done.stdout
