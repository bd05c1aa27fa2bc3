"""ErrorAggregator: window expiry, rotation, stats shape, recent, bounded memory, threads."""

from __future__ import annotations

import pytest

import seawall
from conftest import FakeClock, run_threads
from seawall import ErrorAggregator, ErrorCategory, Registry
from seawall.events import ErrorRecorded, Event


def make(clock: FakeClock, **kw: object) -> ErrorAggregator:
    return ErrorAggregator(60.0, buckets=6, clock=clock, **kw)  # type: ignore[arg-type]


def test_stats_shape_and_counts() -> None:
    clock = FakeClock(1_000_000.0)
    agg = make(clock)
    assert agg.record(ConnectionError("x"), source="db") is ErrorCategory.TRANSIENT
    agg.record(ValueError("bad"), source="api")
    agg.record(ConnectionError("y"), source="db")
    stats = agg.stats()
    assert stats["total_errors"] == 3
    assert stats["errors_by_type"] == {"ConnectionError": 2, "ValueError": 1}
    assert stats["errors_by_source"] == {"db": 2, "api": 1}
    assert stats["errors_by_category"] == {c.value: 0 for c in ErrorCategory} | {
        "transient": 2,
        "permanent": 1,
    }
    assert stats["error_rate"] == pytest.approx(3.0)  # 3 errors over a 1-minute window
    assert stats["window_seconds"] == 60.0


def test_window_expiry_and_bucket_rotation() -> None:
    clock = FakeClock(1_000_000.0)
    agg = make(clock)
    agg.record(ConnectionError())
    clock.now += 30
    agg.record(ValueError())
    assert agg.stats()["total_errors"] == 2
    clock.now += 35  # first bucket is now out of the window
    assert agg.stats()["errors_by_type"] == {"ValueError": 1}
    clock.now += 30
    assert agg.stats()["total_errors"] == 0
    # a bucket reused after a full turn of the ring starts empty
    agg.record(KeyError())
    assert agg.stats()["errors_by_type"] == {"KeyError": 1}
    clock.now += 600
    agg.record(TimeoutError())
    assert agg.stats()["errors_by_type"] == {"TimeoutError": 1}


def test_recent_order_limit_redaction_truncation() -> None:
    clock = FakeClock(1_000_000.0)
    agg = make(clock, max_recent=5, message_limit=40)
    for i in range(8):
        clock.now += 1
        agg.record(RuntimeError(f"error {i}"), source="s", context={"i": i})
    recent = agg.recent(limit=3)
    assert [r["message"] for r in recent] == ["error 7", "error 6", "error 5"]
    assert recent[0]["timestamp"] == clock.now
    assert recent[0]["context"] == {"i": 7}
    assert recent[0]["category"] == "unknown"
    assert recent[0]["type"] == "RuntimeError"
    assert len(agg.recent(limit=50)) == 5
    agg.record(
        RuntimeError("GET https://u:pw1234@h/x?token=abc " + "z" * 100), context={"url": "?api_key=k9"}
    )
    entry = agg.recent(1)[0]
    assert "pw1234" not in entry["message"]
    assert "abc" not in entry["message"]
    assert len(entry["message"]) == 40
    assert entry["context"] == {"url": "?api_key=[REDACTED]"}


def test_context_is_bounded() -> None:
    agg = make(FakeClock(1_000_000.0))
    agg.record(RuntimeError(), context={f"k{i}": "v" * 1000 for i in range(100)})
    ctx = agg.recent(1)[0]["context"]
    assert len(ctx) <= 20
    assert all(len(v) <= 200 for v in ctx.values())


def test_bounded_memory_with_many_types() -> None:
    clock = FakeClock(1_000_000.0)
    agg = ErrorAggregator(3600.0, buckets=60, max_recent=100, clock=clock)
    kinds = [type(f"E{i}", (Exception,), {}) for i in range(1000)]
    for i in range(200_000):
        clock.now += 0.05
        agg.record(kinds[i % 1000](), source=f"src{i % 700}")
    for bucket in agg._ring:
        assert len(bucket.type) <= 201
        assert len(bucket.source) <= 201
    assert len(agg._recent) <= 100
    stats = agg.stats()
    assert stats["errors_by_type"]["_other"] > 0
    assert sum(stats["errors_by_type"].values()) == stats["total_errors"]


def test_thread_safety() -> None:
    agg = ErrorAggregator(3600.0)

    def work() -> None:
        for _ in range(5000):
            agg.record(ConnectionError(), source="t")

    run_threads(8, work)
    assert agg.stats()["total_errors"] == 40_000


def test_publishes_error_recorded() -> None:
    reg = Registry()
    seen: list[Event] = []
    reg.bus.subscribe(seen.append)
    reg.errors.record(TimeoutError(), source="db")
    assert seen == [ErrorRecorded(source="db", error_type="TimeoutError", category=ErrorCategory.TRANSIENT)]


def test_record_error_uses_default_registry() -> None:
    before = seawall.default_registry().errors.stats()["errors_by_source"].get("test-src", 0)
    seawall.record_error(KeyError("k"), source="test-src")
    assert seawall.default_registry().errors.stats()["errors_by_source"]["test-src"] == before + 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"window": 0}, r"window must be in \(0, 1_000_000\], got 0"),
        ({"window": -1.0}, "window"),
        ({"buckets": 0}, "buckets"),
        ({"buckets": 10**9}, r"buckets must be in \[1, 10_000\], got 1000000000"),  # hung the ring
        ({"max_recent": -1}, "max_recent"),
        ({"message_limit": "x"}, "message_limit must be an int, got 'x'"),
        ({"max_keys": float("nan")}, "max_keys must be an int, got nan"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        ErrorAggregator(**kwargs)


def test_bad_record_input() -> None:
    agg = ErrorAggregator()
    with pytest.raises(TypeError, match="source"):
        agg.record(ValueError(), source=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exc"):
        agg.record("boom")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock"):
        ErrorAggregator(clock=1.0)  # type: ignore[arg-type]


def test_settings_object_or_keywords_not_both() -> None:
    settings = seawall.AggregatorSettings(window=60.0, buckets=6)
    agg = ErrorAggregator(settings=settings)
    assert agg.settings is settings
    assert agg.window == 60.0
    assert ErrorAggregator(60.0, buckets=6).settings == settings
    with pytest.raises(TypeError, match="not both"):
        ErrorAggregator(settings=settings, buckets=6)
    with pytest.raises(ValueError, match=r"limit must be in \[0, 1_000_000_000\], got -1"):
        agg.recent(-1)
