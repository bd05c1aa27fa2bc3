"""The demo's timeouts, bulkheads and payments rate limiter, driven by the chaos settings on a
fake-time loop: a slowed dependency times out at 1 s and fills its bulkhead."""

from __future__ import annotations

import asyncio

from conftest import FakeClock
from fake_loop import run
from seawall import Registry
from seawall.demo.app import BULKHEAD_SLOTS, TIMEOUT_SECONDS, Demo


def make(clock: FakeClock) -> Demo:
    return Demo(registry=Registry(), clock=clock, sleep=asyncio.sleep, seed=7, traffic_rate=0)


def test_a_slowed_dependency_times_out_and_answers_from_the_fallback(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["inventory"].dependency.update({"latency_ms": 1500})
    start = fake_clock.now

    async def main() -> dict[str, object]:
        return await demo.call("inventory")

    answer = run(main(), fake_clock)
    assert answer["source"] == "fallback"
    timeout = demo.registry.get("timeout", "inventory")
    assert timeout.snapshot().calls["timed_out"] == 2  # both attempts of the retry
    assert fake_clock.now - start < 2 * TIMEOUT_SECONDS + 0.2  # cancelled at the deadline, not at 1.5 s


def test_a_slowed_dependency_fills_its_bulkhead(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    demo.guarded["recommendations"].dependency.update({"latency_ms": 800})

    async def main() -> list[dict[str, object]]:
        calls = [asyncio.ensure_future(demo.call("recommendations")) for _ in range(BULKHEAD_SLOTS + 3)]
        await asyncio.sleep(0.1)
        assert demo.registry.get("bulkhead", "recommendations").snapshot().in_flight == BULKHEAD_SLOTS
        return list(await asyncio.gather(*calls))

    answers = run(main(), fake_clock)
    snap = demo.registry.get("bulkhead", "recommendations").snapshot()
    assert snap.calls == {"admitted": BULKHEAD_SLOTS, "rejected": 3, "cancelled": 0}
    assert [a["source"] for a in answers].count("fallback") == 3


def test_payments_has_a_rate_limit_and_the_others_do_not(fake_clock: FakeClock) -> None:
    demo = make(fake_clock)
    limiters = demo.registry.items("rate_limiter")
    assert [limiter.name for limiter in limiters] == ["payments"]
    assert {t.name for t in demo.registry.items("timeout")} == {"payments", "inventory", "recommendations"}
