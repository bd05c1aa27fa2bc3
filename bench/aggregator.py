"""ErrorAggregator cases: cost of one `record`, and memory after many records.

Memory is judged on the aggregator's own retained objects (a deep size over its object graph,
stopping at shared things such as the registry, types and functions), which is exact and cheap;
process RSS is reported beside it for the record, since the allocator keeps freed memory around.
"""

from __future__ import annotations

import gc
import itertools
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

from .harness import CaseResult, Config, Measurement, Subjects, attempt_build, case, seawall_attr

SOURCES = ("payments", "search", "inventory", "email", "auth")


class FakeClock:
    """Advances a fixed step on every read, so windows roll over during a long run without sleeping."""

    def __init__(self, step: float) -> None:
        self.now = 1_000_000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def sample_errors() -> list[BaseException]:
    """Ten exception types a service really sees (bounded label values)."""
    return [
        ConnectionError("connection refused"),
        TimeoutError("timed out"),
        ValueError("bad value"),
        KeyError("missing"),
        PermissionError("denied"),
        OSError("io"),
        RuntimeError("boom"),
        LookupError("lookup"),
        ConnectionResetError("reset"),
        BrokenPipeError("pipe"),
    ]


def _aggregator(clock: Callable[[], float]) -> Any:
    registry = seawall_attr("seawall.Registry")()
    aggregator_type = seawall_attr("seawall.ErrorAggregator")
    return aggregator_type(window=3600.0, clock=clock, registry=registry)


@case("aggregator.record", "ErrorAggregator.record(exc, source=...), 10 types x 5 sources")
def record_cost(result: CaseResult, config: Config) -> CaseResult:
    pairs = [(exc, source) for exc in sample_errors() for source in SOURCES]
    cycle: Iterator[tuple[BaseException, str]] = itertools.cycle(pairs)

    def noop(exc: BaseException, source: str) -> None:
        return None

    def bare() -> None:
        exc, source = next(cycle)
        noop(exc, source=source)

    subjects = Subjects(bare)
    aggregator, why = attempt_build(lambda: _aggregator(FakeClock(0.001)))
    if aggregator is None:
        subjects.unavailable["seawall"] = why
    else:
        record = aggregator.record

        def seawall() -> None:
            exc, source = next(cycle)
            record(exc, source=source)

        subjects["seawall"] = seawall
    result.measurements = subjects.overhead(config)
    result.absolute_target("seawall record cost (ns, over a bare call)", "seawall", 2000.0, "ns/call")
    return result


NOVEL = 50_000  # messages in a cycle: more than the memos hold (4,096), so none is remembered


def _letters(number: int) -> str:
    """`number` in letters that spell no secret word (a text of a shape never seen before)."""
    return "".join("fhlmnoqrvw"[int(digit)] for digit in str(number))


@case(
    "aggregator.record.novel",
    "ErrorAggregator.record(exc, source=...) of messages never recorded before: new ids "
    "(`connection to db-<i> refused after <i%97> ms ...`), or a new shape (new words and digits: "
    "the shape memo's lookup and store paid too); "
    f"{NOVEL:,} distinct messages in a cycle",
)
def novel_cost(result: CaseResult, config: Config) -> CaseResult:
    with_ids = [
        ConnectionError(
            f"connection to db-{i} refused after {i % 97} ms (pool exhausted, request {7919 * i})"
        )
        for i in range(NOVEL)
    ]
    new_shapes = [
        ConnectionError(f"connection to {_letters(i)} refused after {i % 97} ms (pool {_letters(i * 7919)})")
        for i in range(NOVEL)
    ]
    ids: Iterator[BaseException] = itertools.cycle(with_ids)
    shapes: Iterator[BaseException] = itertools.cycle(new_shapes)

    def noop(exc: BaseException, source: str) -> None:
        return None

    def bare() -> None:
        noop(next(ids), source="payments")

    subjects = Subjects(bare)
    aggregator, why = attempt_build(lambda: _aggregator(FakeClock(0.001)))
    if aggregator is None:
        subjects.unavailable["seawall, new ids"] = subjects.unavailable["seawall, new shape"] = why
    else:
        record = aggregator.record

        def seawall_ids() -> None:
            record(next(ids), source="payments")

        def seawall_shapes() -> None:
            record(next(shapes), source="payments")

        subjects["seawall, new ids"] = seawall_ids
        subjects["seawall, new shape"] = seawall_shapes
    result.measurements = subjects.overhead(config)
    for subject in ("seawall, new ids", "seawall, new shape"):
        result.absolute_target(f"{subject}: record cost (ns, over a bare call)", subject, 2000.0, "ns/call")
    return result


_SHARED = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType, FakeClock)


def deep_size(root: object, stop: tuple[object, ...] = ()) -> int:
    """Bytes held by `root` and everything it references, except shared objects and `stop`."""
    seen: set[int] = {id(item) for item in stop}
    pending = [root]
    total = 0
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, _SHARED):
            continue
        seen.add(id(item))
        total += sys.getsizeof(item)
        pending.extend(gc.get_referents(item))
    return total


def rss_mib() -> float | None:
    """Resident set size from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@case(
    "aggregator.memory",
    lambda config: (
        f"retained memory after {config.records_small:,} and {config.records_large:,} records "
        "(50 type/source pairs; the fake clock gains 100 ms per read, so the 1 h window is full and "
        "rolling before the first measurement)"
    ),
)
def memory(result: CaseResult, config: Config) -> CaseResult:
    small, large = config.records_small, config.records_large
    aggregator, why = attempt_build(lambda: _aggregator(FakeClock(0.1)))
    if aggregator is None:
        for subject in (f"deep size after {small:,}", f"deep size after {large:,}", "deep size growth"):
            result.measurements.append(Measurement(subject, None, "KiB", note=why))
        result.absolute_target("deep size growth small -> large (KiB)", "deep size growth", 64.0, "KiB")
        return result
    stop: tuple[object, ...] = tuple(
        value
        for value in (getattr(aggregator, "_registry", None), getattr(aggregator, "registry", None))
        if value
    )
    pairs = [(exc, source) for exc in sample_errors() for source in SOURCES]
    record = aggregator.record
    cycle = itertools.cycle(pairs)
    gc.collect()
    rss_start = rss_mib()
    for exc, source in itertools.islice(cycle, small):
        record(exc, source=source)
    gc.collect()
    size_small = deep_size(aggregator, stop) / 1024
    rss_small = rss_mib()
    for exc, source in itertools.islice(cycle, large - small):
        record(exc, source=source)
    gc.collect()
    size_large = deep_size(aggregator, stop) / 1024
    rss_large = rss_mib()
    result.measurements += [
        Measurement(f"deep size after {small:,}", size_small, "KiB"),
        Measurement(f"deep size after {large:,}", size_large, "KiB"),
        Measurement("deep size growth", size_large - size_small, "KiB"),
    ]
    if rss_start is not None and rss_small is not None and rss_large is not None:
        result.measurements += [
            Measurement(
                f"RSS growth 0 -> {small:,}", rss_small - rss_start, "MiB", note="process, for the record"
            ),
            Measurement(
                f"RSS growth {small:,} -> {large:,}",
                rss_large - rss_small,
                "MiB",
                note="process, for the record",
            ),
        ]
    result.absolute_target("deep size growth small -> large (KiB)", "deep size growth", 64.0, "KiB")
    return result
