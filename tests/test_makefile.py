"""The Makefile as a newcomer meets it: `make help` lists the targets, `make up` without Docker
Compose v2 says so and what to do instead (not `unknown shorthand flag: 'f'`).

Runs real `make` on a copy of the Makefile (and the secrets examples `make up` copies), so nothing
in the checkout changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_command

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def make(cwd: Path, *args: str, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    return run_command(
        [MAKE, "--no-print-directory", *args],
        cwd=cwd,
        timeout=60,
        env={"PATH": path, "HOME": str(cwd)},
    )


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "secrets").mkdir()
    for example in (ROOT / "secrets").glob("*.example"):
        shutil.copy(example, tmp_path / "secrets" / example.name)
    return tmp_path


def documented_targets() -> list[str]:
    return re.findall(r"^## ([a-z-]+):", (ROOT / "Makefile").read_text(), re.M)


def test_make_help_lists_every_documented_target(checkout: Path) -> None:
    for args in ((), ("help",)):  # help is also the default goal
        result = make(checkout, *args)
        assert result.returncode == 0, result.stderr
        listed = re.findall(r"^  ([a-z-]+) +\S", result.stdout, re.M)
        assert listed == documented_targets()
    assert {"help", "demo", "test", "stack", "stack-ha", "up", "up-ha"} <= set(listed)
    text = (ROOT / "Makefile").read_text()
    for target in listed:  # each documented target has a rule
        assert re.search(rf"^{target}:", text, re.M), target


@pytest.mark.parametrize("docker", ["none", "without-compose-v2"])
def test_make_up_without_compose_v2_says_what_to_do(checkout: Path, docker: str) -> None:
    bin_dir = checkout / "bin"
    bin_dir.mkdir()
    if docker == "without-compose-v2":  # what a Docker without the compose plugin answers
        fake = bin_dir / "docker"
        fake.write_text("#!/bin/sh\necho \"unknown shorthand flag: 'f' in -f\" >&2\nexit 125\n")
        fake.chmod(0o755)
    for target in ("up", "up-ha", "down"):
        result = make(checkout, target, path=f"{bin_dir}:/usr/bin:/bin")
        assert result.returncode != 0, target
        assert "Docker Compose v2 ('docker compose') is not available" in result.stderr, target
        assert "make stack" in result.stderr
        assert "unknown shorthand flag" not in result.stderr + result.stdout


def test_make_secrets_warns_about_placeholders(checkout: Path) -> None:
    result = make(checkout, "secrets")
    assert result.returncode == 0, result.stderr
    assert "created secrets/slack_webhook_url" in result.stdout
    assert "WARNING: secrets/slack_webhook_url is still the placeholder" in result.stdout
    (checkout / "secrets" / "slack_webhook_url").write_text("https://hooks.slack.com/services/real\n")
    again = make(checkout, "secrets")
    assert "slack_webhook_url is still" not in again.stdout
    assert "pagerduty_routing_key is still the placeholder" in again.stdout


def test_first_install_says_what_it_is_doing(checkout: Path) -> None:
    """pip -q is silent for ~15 s on a fresh machine: the setup rule prints a line per step."""
    shutil.copy(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    dry = make(checkout, "-n", ".venv/.stamp-setup")
    assert dry.returncode == 0, dry.stderr
    steps = re.findall(r'echo "==> ([^"]+)"', dry.stdout)
    assert any("creating the virtual environment" in s for s in steps), dry.stdout
    assert any(s.startswith("installing seawall") and "15 s" in s for s in steps), dry.stdout
    assert steps[-1] == ".venv is ready"
