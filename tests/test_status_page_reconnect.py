"""The live page's own connection handling, in headless Chromium against real demo processes.

Freeze the server (SIGSTOP: the TCP connection stays open but carries nothing) and the page must
declare the stream dead after a missed heartbeat; kill it and start a new one on the same port and
the page must go live again without a reload and draw the new server's data. Also: the browser
going offline, the tasks table, and the note that explains fallbacks vs breaker calls.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from seawall.demo import BREAKERS
from test_status_page import CHROMIUM, TOKEN, page  # noqa: F401  (the page fixture)
from test_uvicorn import Server, start_demo, stop

PAY, INV = BREAKERS["payments"], BREAKERS["inventory"]  # the demo's per-upstream breakers

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Server]]:
    """Demo processes started by the test; every one is killed at the end (SIGCONT first)."""
    monkeypatch.setenv("SEAWALL_ADMIN_TOKEN", TOKEN)
    started: list[Server] = []
    yield started
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)
        stop(server)


def launch(servers: list[Server], *args: str) -> Server:
    server = start_demo(
        "--traffic-rate", "5", "--log-level", "warning", *args, keep_env=("SEAWALL_ADMIN_TOKEN",)
    )
    servers.append(server)
    return server


def test_dead_stream_detected_then_resumes_on_a_restarted_server_without_reload(
    servers: list[Server],
    page: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    first = launch(servers)
    port = first.base.rsplit(":", 1)[1]
    page.goto(f"{first.base}/resilience")
    page.wait_for_selector('#connection[data-connection="live"]')
    page.evaluate("() => { window.__seawallMarker = 'same page'; }")  # gone if the page reloads
    page.wait_for_selector('#tasks tr[data-task="order-sync"][data-state="running"]')
    with httpx.Client(base_url=first.base, timeout=5) as client:
        client.post(
            f"/api/resilience/breakers/{INV}/open", headers={"authorization": f"Bearer {TOKEN}"}
        ).raise_for_status()
    page.wait_for_selector(f'.tile[data-breaker="{INV}"][data-state="forced_open"]')

    # 1. A frozen server: no close, no error, just silence. The heartbeat watchdog must notice.
    first.process.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    page.wait_for_selector('#connection[data-connection="reconnecting"]', timeout=8_000)
    detected = time.monotonic() - frozen
    print(f"\nfrozen server declared dead after {detected:.1f} s")
    assert detected < 6.0  # heartbeat 1 s: dead after 2 * 1 s + 1 s without a frame, plus polling
    assert "reconnecting" in page.inner_text("#connection")
    assert page.get_attribute("body", "data-connection") == "reconnecting"
    page.screenshot(path=str(tmp_path / "frozen.png"))

    # 2. The server is gone for good; the badge shows when the next attempt is.
    first.process.send_signal(signal.SIGCONT)
    stop(first)
    page.wait_for_function(
        "() => /next try in \\d+ s/.test(document.getElementById('connection').textContent)", timeout=15_000
    )
    next_attempt = float(page.get_attribute("#connection", "data-next-attempt") or 0)
    assert next_attempt > 0
    before = float(page.get_attribute("body", "data-updated") or 0)

    # 3. A new server on the same port: the page goes live by itself and draws the new data.
    second = launch(servers, "--port", port)
    assert second.base == first.base
    restarted = time.monotonic()
    page.wait_for_selector('#connection[data-connection="live"]', timeout=20_000)
    print(f"\nlive again {time.monotonic() - restarted:.1f} s after the new server printed its URL")
    page.wait_for_selector(f'.tile[data-breaker="{INV}"][data-state="closed"]', timeout=5_000)
    assert float(page.get_attribute("body", "data-updated") or 0) > before
    assert page.evaluate("() => window.__seawallMarker") == "same page"
    page.screenshot(path=str(tmp_path / "live-again.png"))
    assert errors == []


def test_offline_tasks_and_the_fallback_note(servers: list[Server], page: Any) -> None:  # noqa: F811
    server = launch(servers)
    page.goto(f"{server.base}/resilience")
    page.wait_for_selector('#connection[data-connection="live"]')
    page.context.set_offline(True)
    page.wait_for_selector('#connection[data-connection="offline"]', timeout=5_000)
    page.context.set_offline(False)
    page.wait_for_selector('#connection[data-connection="live"]', timeout=10_000)

    with httpx.Client(base_url=server.base, timeout=5) as client:
        client.post("/chaos/worker", json={"fail": True}).raise_for_status()
        client.post("/chaos/payments", json={"outage": True}).raise_for_status()
    row = page.locator('#tasks tr[data-task="order-sync"]')
    page.wait_for_selector('#tasks tr[data-task="order-sync"][data-state="backing_off"]', timeout=10_000)
    assert "restart in" in row.inner_text()
    page.wait_for_selector('#tasks tr[data-task="order-sync"][data-state="failed"]', timeout=30_000)
    assert "WorkerCrash" in row.inner_text()
    assert "1 task, 1 failed" in page.inner_text("#summary")
    page.wait_for_function(
        "() => /fallbacks \\((off|error) \\d+/.test("
        "document.querySelector('#features li[data-feature=\"payments\"]').textContent)",
        timeout=15_000,
    )
    note = page.inner_text("#fallback-note")
    assert "never reach the breaker" in note
    assert "calls" in page.inner_text(f'.tile[data-breaker="{PAY}"] .foot')
