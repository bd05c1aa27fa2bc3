"""pip against the package index from tests: a test that needs a peer's files skips, with the
reason, when the index cannot be reached (offline CI, a proxy down), and fails on any other error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import run_command

# What pip prints when it cannot reach the index at all (not: the package or version is missing).
UNREACHABLE = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "Connection refused",
    "ConnectTimeoutError",
    "Read timed out",
    "ProxyError",
    "No route to host",
)


def pip(arguments: list[str], what: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run `python -m pip <arguments>`; skip when the index is unreachable or too slow, fail when
    pip fails otherwise."""
    command = [sys.executable, "-m", "pip", *arguments, "--disable-pip-version-check", "-q"]
    try:
        done = run_command(command, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.skip(f"the package index did not answer within {timeout:.0f}s while fetching {what}")
    if done.returncode != 0:
        output = done.stdout + done.stderr
        if any(marker in output for marker in UNREACHABLE):
            pytest.skip(f"the package index is unreachable, so {what} cannot be fetched: {output[-500:]}")
        pytest.fail(f"pip could not fetch {what}:\n{output[-3000:]}")
    return done
