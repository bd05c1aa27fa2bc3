"""`make stack` (scripts/stack.py) as a user runs it: prints links that work and the notifications,
refuses placeholder secrets (falls back to the local fakes, loudly), stops all on Ctrl-C."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.demo import BREAKERS
from stacktools.harness import ROOT, binaries_missing, http, wait_until
from stacktools.processes import stop_process

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(bool(binaries_missing()), reason=f"not installed: {binaries_missing()}"),
]


class Lines:
    """stdout of a process, line by line, readable with a timeout."""

    def __init__(self, stream: object) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: object) -> None:
        for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
            self.queue.put(line)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise TimeoutError(f"{pattern!r} not printed within {timeout}s; got:\n{''.join(self.seen)}")


@pytest.fixture
def script(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """scripts/stack.py --fast on free ports with placeholder secrets (plus `request.param` arguments)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    secrets = tmp_path / "secrets"  # what `make secrets` leaves: the placeholders, copied
    secrets.mkdir()
    for example in (ROOT / "secrets").glob("*.example"):
        shutil.copy(example, secrets / example.name)
        shutil.copy(example, secrets / example.stem)
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "stack.py"),
            "--fast",
            "--secrets",
            str(secrets),
            "--workdir",
            str(tmp_path / "stack"),
            "--demo-port",
            "0",
            "--prometheus-port",
            "0",
            "--alertmanager-port",
            "0",
            "--traffic-rate",
            "10",
            "--prometheus-b-port",
            "0",
            "--alertmanager-b-port",
            "0",
            "--cluster-ports",
            "0,0",
            *getattr(request, "param", []),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        yield process, Lines(process.stdout)
    finally:
        stop_process(process, ask=signal.SIGINT, timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def refused(url: str) -> bool:
    try:
        http("GET", url, timeout=2)
    except OSError:
        return True
    return False


def test_make_stack_prints_urls_and_notifications_and_stops_on_ctrl_c(
    script: tuple[subprocess.Popen[str], Lines],
) -> None:
    process, out = script
    out.wait_for(r"WARNING: slack_webhook_url and pagerduty_routing_key .* \*\.example placeholder", 40)
    demo = out.wait_for(r"demo\s+(http://127\.0\.0\.1:\d+)/resilience", 40).group(1)
    prometheus_link = out.wait_for(r"prometheus\s+(http://127\.0\.0\.1:\d+/\S*alerts)", 5).group(1)
    am = out.wait_for(r"alertmanager\s+(http://127\.0\.0\.1:\d+)(/api/v2/alerts)?(.*amtool (.*))?", 5)
    out.wait_for(r"notifications\s+local fakes \(.*placeholder\): Slack http://127\.0\.0\.1:\d+/", 5)
    out.wait_for(r"Ctrl-C stops everything", 5)
    prometheus = prometheus_link[: prometheus_link.index("/", len("http://"))]
    alertmanager = am.group(1)
    # every printed link answers on the binaries installed (Debian's UI lives under /classic/)
    for url in (f"{demo}/health", f"{demo}/resilience", prometheus_link, am.group(1) + (am.group(2) or "")):
        assert http("GET", url)[0] == 200, url
    if am.group(4):  # no web UI: the printed amtool command works
        argv = am.group(4).rstrip(")").split()
        result = subprocess.run(["amtool", *argv], capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr

    status, _ = http("POST", f"{demo}/chaos/payments", {"outage": True})
    assert status == 200
    # Each notification printed with the time it arrived.
    payments = re.escape(BREAKERS["payments"])  # the demo's HTTP client's breaker for that host
    out.wait_for(rf"\d\d:\d\d:\d\d -> Slack: \[FIRING:1\] CircuitBreakerOpen {payments} \(seawall-demo\)", 40)
    out.wait_for(rf"\d\d:\d\d:\d\d -> PagerDuty: trigger: \[FIRING:1\] CircuitBreakerOpen {payments}", 20)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    for url in (demo, prometheus, alertmanager):
        assert refused(url), f"{url} still answers after Ctrl-C"


@pytest.mark.parametrize("script", [["--ha", "--fake-receivers"]], indirect=True)
def test_make_stack_ha_prints_every_replica_clusters_them_and_stops_them_all(
    script: tuple[subprocess.Popen[str], Lines],
) -> None:
    process, out = script
    out.wait_for(r"seawall HA stack is up", 60)
    bases = {}
    for name in ("prometheus", "prometheus-b", "alertmanager", "alertmanager-b"):
        link = out.wait_for(rf"^\s+{name}\s+(http://127\.0\.0\.1:\d+)(/\S*)?", 5)
        bases[name] = link.group(1)
        assert http("GET", link.group(1) + (link.group(2) or ""))[0] == 200, name
    out.wait_for(r"Ctrl-C stops everything", 5)
    for name in ("alertmanager", "alertmanager-b"):
        url = f"{bases[name]}/api/v2/status"
        wait_until(lambda u=url: len(json.loads(http("GET", u)[1])["cluster"]["peers"]) == 2, 20, name)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    for name, url in bases.items():
        assert refused(url), f"{name} still answers after Ctrl-C"
