"""The live status page in headless Chromium against a real demo process.

A tile must turn open when its dependency fails, and show a state change within 2 s; the badge
must say "reconnecting" when the server goes away. Screenshots are saved under tmp_path and their
pixels checked (a small PNG decoder below, so no imaging library is needed).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from seawall.demo import BREAKERS
from test_uvicorn import Server, running_demo, stop

PAY, INV = BREAKERS["payments"], BREAKERS["inventory"]  # the demo's per-upstream breakers

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-admin-token"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed (apt-get install chromium)"
    ),
]


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit, non-interlaced RGB/RGBA PNG into rows of RGB(A) bytes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = depth = colour = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8
    assert colour in (2, 6)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + predictor) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, channels, rows


def share_of(data: bytes, rgb: tuple[int, int, int], tolerance: int = 30) -> float:
    """Share of the image's pixels within `tolerance` of `rgb`."""
    width, channels, rows = png_pixels(data)
    hits = total = 0
    for row in rows:
        for x in range(width):
            pixel = row[x * channels : x * channels + 3]
            total += 1
            if all(abs(pixel[i] - rgb[i]) <= tolerance for i in range(3)):
                hits += 1
    return hits / total


RED = (229, 83, 75)  # --open
GREEN = (46, 160, 67)  # --closed


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("SEAWALL_ADMIN_TOKEN", TOKEN)
    with running_demo(
        "--traffic-rate", "10", "--log-level", "warning", keep_env=("SEAWALL_ADMIN_TOKEN",)
    ) as server:
        yield server


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    sync_playwright = sync_api.sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 800})
            tab = context.new_page()
            tab.set_default_timeout(10_000)
            yield tab
        finally:
            browser.close()


def test_tile_turns_open_when_its_dependency_fails(demo: Server, page: Any, tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{demo.base}/resilience")
    page.wait_for_selector('#connection[data-connection="live"]')
    tile = page.locator(f'.tile[data-breaker="{PAY}"]')
    tile.wait_for()
    assert tile.get_attribute("data-state") == "closed"
    page.wait_for_function(  # two frames: rates and sparklines have something to draw
        f"() => document.querySelectorAll('.tile[data-breaker=\"{PAY}\"] polyline.calls').length === 1"
    )
    closed_png = tile.screenshot(path=str(tmp_path / "payments-closed.png"))
    assert share_of(closed_png, GREEN) > 0.01
    assert share_of(closed_png, RED) < 0.01

    with httpx.Client(base_url=demo.base, timeout=5) as client:
        client.post("/chaos/payments", json={"outage": True}).raise_for_status()
    page.wait_for_selector(f'.tile[data-breaker="{PAY}"][data-state="open"]', timeout=10_000)
    open_png = tile.screenshot(path=str(tmp_path / "payments-open.png"))
    page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
    assert share_of(open_png, RED) > 0.02  # the state colour: border and badge
    assert tile.locator(".state").inner_text().lower() == "open"
    assert page.locator(f'.tile[data-breaker="{INV}"]').get_attribute("data-state") == "closed"
    assert page.locator('#features li[data-feature="payments"]').count() == 1
    # the demo's timeouts, bulkheads and rate limiter have their rows; breaker tiles show latency
    assert page.locator('#limits tr[data-limit="bulkhead:payments"]').count() == 1
    assert page.locator('#limits tr[data-limit="rate limiter:payments"]').count() == 1
    assert "p99" in page.locator(f'.tile[data-breaker="{INV}"] .foot').inner_text()
    assert errors == []


def test_state_change_shows_within_two_seconds_and_reconnecting_badge(
    demo: Server, page: Any, tmp_path: Path
) -> None:
    page.goto(f"{demo.base}/resilience")
    page.wait_for_selector(f'.tile[data-breaker="{INV}"][data-state="closed"]')
    with httpx.Client(base_url=demo.base, timeout=5) as client:
        response = client.post(
            f"/api/resilience/breakers/{INV}/open", headers={"authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == 200
    changed = time.monotonic()
    page.wait_for_selector(f'.tile[data-breaker="{INV}"][data-state="forced_open"]', timeout=2_000)
    assert time.monotonic() - changed < 2.0
    stop(demo)
    page.wait_for_selector('#connection[data-connection="reconnecting"]', timeout=5_000)
    page.screenshot(path=str(tmp_path / "reconnecting.png"))
    assert (tmp_path / "reconnecting.png").stat().st_size > 1000
