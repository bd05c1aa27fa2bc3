"""RateLimiter on the local backend: exact admissions per second of fake time, exact retry_after,
reservations with max_wait (sync and on a fake-time loop), threads, Retry honouring retry_after,
counts, events and bad input."""

from __future__ import annotations

import asyncio

import pytest

import seawall
from conftest import FakeClock, decorated_store, run_threads
from fake_loop import run
from seawall import ErrorCategory, RateLimitedError, RateLimiter, Registry, classify
from seawall.events import RateLimited


def make(clock: FakeClock, rate: float = 10.0, **settings: object) -> RateLimiter:
    return RateLimiter("api", rate, clock=clock, registry=Registry(), **settings)  # type: ignore[arg-type]


def admissions(limiter: RateLimiter, clock: FakeClock, seconds: int, step_ms: int = 1) -> list[float]:
    """Every `step_ms` of fake time for `seconds`, offer calls until one is refused (unbounded
    demand); the offsets of those admitted."""
    start = clock.now
    admitted = []
    for tick in range(0, seconds * 1000 + 1, step_ms):
        clock.now = start + tick / 1000
        while True:
            try:
                limiter.acquire()
            except RateLimitedError:
                break
            admitted.append(tick / 1000)
    return admitted


def test_ten_per_second_admits_exactly_ten_per_second_after_the_burst(fake_clock: FakeClock) -> None:
    limiter = make(fake_clock, 10.0)  # burst defaults to the rate: 10
    admitted = admissions(limiter, fake_clock, 5)
    assert admitted[:10] == [0.0] * 10  # the full bucket at once
    assert len([t for t in admitted if t < 1.0]) == 10 + 9  # then one every 0.1 s
    for second in range(1, 5):
        assert len([t for t in admitted if second <= t < second + 1]) == 10
    assert len(admitted) == 10 + 50  # burst + rate * 5 s over [0, 5]
    snap = limiter.snapshot()
    assert snap.calls == {"admitted": 60, "rejected": 5001}  # one refusal per tick
    assert snap.available_tokens == 0.0


def test_burst_one_spaces_calls_evenly(fake_clock: FakeClock) -> None:
    limiter = make(fake_clock, 10.0, burst=1)
    admitted = admissions(limiter, fake_clock, 2)
    assert admitted == pytest.approx([n / 10 for n in range(21)])


def test_slow_rates_and_other_periods(fake_clock: FakeClock) -> None:
    limiter = make(fake_clock, 3.0, per=60.0)  # 3 a minute, burst 3
    admitted = admissions(limiter, fake_clock, 120, step_ms=250)
    assert admitted == [0.0, 0.0, 0.0, 20.0, 40.0, 60.0, 80.0, 100.0, 120.0]


def test_retry_after_is_exact(fake_clock: FakeClock) -> None:
    limiter = make(fake_clock, 10.0, burst=2)
    limiter.acquire()
    limiter.acquire()
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire()
    retry_after = caught.value.retry_after
    assert retry_after == pytest.approx(0.1, abs=1e-12)
    fake_clock.advance(retry_after - 1e-6)
    with pytest.raises(RateLimitedError) as again:
        limiter.acquire()
    assert again.value.retry_after == pytest.approx(1e-6, abs=1e-9)
    fake_clock.advance(1e-6)
    limiter.acquire()  # admitted exactly when it said


def test_available_tokens_refill(fake_clock: FakeClock) -> None:
    limiter = make(fake_clock, 10.0, burst=5)
    assert limiter.snapshot().available_tokens == 5.0
    for _ in range(5):
        limiter.acquire()
    assert limiter.snapshot().available_tokens == 0.0
    fake_clock.advance(0.25)
    assert limiter.snapshot().available_tokens == pytest.approx(2.5)
    fake_clock.advance(60.0)
    assert limiter.snapshot().available_tokens == 5.0


def test_max_wait_reserves_slots_in_order(fake_clock: FakeClock) -> None:
    slept: list[float] = []
    limiter = make(fake_clock, 10.0, burst=1, max_wait=0.35, sleep=slept.append)
    for _ in range(4):
        limiter.acquire()
    with pytest.raises(RateLimitedError) as caught:
        limiter.acquire()
    assert slept == pytest.approx([0.1, 0.2, 0.3])
    assert caught.value.retry_after == pytest.approx(0.4)


def test_async_waits_on_the_loop(fake_clock: FakeClock) -> None:
    limiter = RateLimiter("api", 2.0, burst=1, max_wait=5.0, clock=fake_clock, registry=Registry())
    start = fake_clock.now
    done: list[float] = []

    @limiter
    async def call() -> None:
        done.append(fake_clock.now - start)

    async def main() -> None:
        await asyncio.gather(*(call() for _ in range(4)))

    run(main(), fake_clock)
    assert done == [0.0, 0.5, 1.0, 1.5]


def _busiest(offsets: list[float], window: float) -> int:
    """The most admissions inside any closed window of `window` seconds."""
    return max(sum(1 for t in offsets if start <= t <= start + window + 1e-9) for start in offsets)


def test_what_a_window_admits_and_the_strict_quota_readme_gives(fake_clock: FakeClock) -> None:
    """README: "5/second" admits burst + rate x T in a window of T (55 in 10 s, limits' fixed window
    50); RateLimiter(N - burst, per=W, burst=burst) admits at most N in every window of W."""
    default = admissions(make(fake_clock, 5.0), fake_clock, 12)
    assert _busiest(default, 10.0) == 55
    strict = admissions(make(fake_clock, 5.0 - 1, burst=1), fake_clock, 12)
    assert _busiest(strict, 1.0) == 5
    assert _busiest(strict, 10.0) <= 41


def test_a_cancelled_waiters_slot_goes_to_the_next_waiter(fake_clock: FakeClock) -> None:
    """aiolimiter hands a cancelled waiter's capacity on; so does seawall: the next reservation
    gets the given-back slot, whether it was the newest one (tat moves back) or an earlier one."""
    waits: list[float] = []

    async def parked(seconds: float) -> None:  # sleeps until cancelled: the test decides
        waits.append(round(seconds, 6))
        await asyncio.Event().wait()

    limiter = RateLimiter(
        "api", 10.0, burst=1, max_wait=5.0, clock=fake_clock, async_sleep=parked, registry=Registry()
    )

    async def main() -> None:
        await limiter.acquire_async()  # the burst: no wait
        first, second = (asyncio.create_task(limiter.acquire_async()) for _ in range(2))
        await asyncio.sleep(0)
        first.cancel()  # slot +0.1 given back while +0.2 is still reserved
        await asyncio.sleep(0)
        third = asyncio.create_task(limiter.acquire_async())  # takes +0.1, not +0.3
        await asyncio.sleep(0)
        second.cancel()  # the newest reservation: tat moves back
        await asyncio.sleep(0)
        fourth = asyncio.create_task(limiter.acquire_async())  # takes +0.2, not +0.3
        await asyncio.sleep(0)
        for task in (third, fourth):
            task.cancel()
        await asyncio.gather(first, second, third, fourth, return_exceptions=True)

    asyncio.run(main())
    assert waits == [0.1, 0.2, 0.1, 0.2]
    assert limiter.snapshot().calls == {"admitted": 1, "rejected": 0}  # the cancelled were never admitted


def test_threads_share_one_budget_exactly(fake_clock: FakeClock) -> None:
    limiter = make(fake_clock, 1.0, per=3600.0, burst=100)
    admitted = []

    def worker() -> None:
        for _ in range(50):
            try:
                limiter.acquire()
            except RateLimitedError:
                continue
            admitted.append(1)

    run_threads(16, worker)
    assert len(admitted) == 100
    assert limiter.snapshot().calls == {"admitted": 100, "rejected": 700}


def test_retry_waits_exactly_retry_after(fake_clock: FakeClock) -> None:
    registry = Registry()
    limiter = RateLimiter("api", 4.0, burst=1, clock=fake_clock, registry=registry)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        fake_clock.advance(seconds)

    retry = seawall.Retry("api", attempts=3, max_delay=1.0, sleep=sleep, clock=fake_clock, registry=registry)
    call = retry(limiter(lambda: "ok"))
    assert call() == "ok"
    assert call() == "ok"
    assert slept == pytest.approx([0.25])
    assert classify(RateLimitedError("api", 0.25)) is ErrorCategory.RATE_LIMIT


def test_rejections_publish_an_event_and_snapshot_does_not(fake_clock: FakeClock) -> None:
    registry = Registry()
    seen: list[object] = []
    registry.bus.subscribe(seen.append, events=[RateLimited])
    limiter = RateLimiter("api", 1.0, clock=fake_clock, registry=registry)
    limiter.acquire()
    limiter.snapshot()
    assert seen == []
    with pytest.raises(RateLimitedError, match="rate limiter 'api' \\(local\\) refused"):
        limiter.call(lambda: None)
    assert seen == [RateLimited("api", "local", 1.0)]


def test_get_or_create_config_and_snapshot_fields() -> None:
    registry = Registry()
    limiter = seawall.rate_limiter("api", 10, burst=20, registry=registry)
    assert seawall.rate_limiter("api", 10.0, burst=20, registry=registry) is limiter
    with pytest.raises(ValueError, match="rate"):
        seawall.rate_limiter("api", 11, registry=registry)
    assert registry.items("rate_limiter") == [limiter]
    snap = limiter.snapshot()
    assert (snap.rate, snap.per, snap.burst, snap.backend) == (10.0, 1.0, 20, "local")
    assert (snap.backend_errors, snap.backend_up, snap.failure_policy) == (0, True, "open")
    assert snap.to_dict()["available_tokens"] == 20.0


@pytest.mark.parametrize(
    ("args", "settings", "error", "text"),
    [
        (("", 1.0), {}, ValueError, "name must be a non-empty str"),
        (("x", 5), {"failure_policy": "maybe"}, ValueError, "failure_policy must be one of 'open', 'closed'"),
        (("x", 5), {"backend": object()}, TypeError, "backend must have take"),
        (("x", 5), {"sleep": None}, TypeError, "sleep must be callable"),
    ],
)
def test_bad_settings_name_the_field(
    args: tuple[object, ...], settings: dict[str, object], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        RateLimiter(*args, registry=Registry(), **settings)  # type: ignore[arg-type]


def test_decorated_methods_and_coroutines_count_each_refusal_once(fake_clock: FakeClock) -> None:
    limiter = make(fake_clock, 1.0)
    client = decorated_store(limiter)()
    assert client.get("a") == "A"
    assert type(client).get.__doc__ == "Get a key."
    with pytest.raises(RateLimitedError):
        client.get("b")
    fake_clock.advance(1.0)
    assert asyncio.run(client.aget("c")) == "c"
    with pytest.raises(RateLimitedError):
        asyncio.run(client.aget("d"))
    assert limiter.snapshot().calls == {"admitted": 2, "rejected": 2}
