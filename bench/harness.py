"""The timing harness: timeit-style loops, baselines, targets and the result table.

Why not `timeit` itself: we need several subjects measured *interleaved* in the same run (so a
noisy neighbour on a shared 2-core box slows them all alike), the bare-call baseline subtracted,
async loops, and machine-readable results. Per-call cost is taken as the minimum over repeats
(the least disturbed estimate); the median is kept for the record.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

PASS = "PASS"
MISS = "MISS"
NOT_AVAILABLE = "N/A"

NOT_MEASURED = "not measured"


class Unavailable(Exception):
    """A seawall piece a case needs cannot be imported (a missing optional extra)."""


@dataclass(frozen=True)
class Config:
    """How hard to measure. `quick` is for smoke runs; `smoke` is the test suite's tiniest setting."""

    repeat: int = 15
    min_time: float = 0.03  # seconds per timed repeat of one subject
    warmup: int = 2_000  # calls before timing
    threads: int = 4
    thread_calls: int = 20
    thread_sleep: float = 0.01
    thread_repeat: int = 3
    records_small: int = 100_000
    records_large: int = 1_000_000
    breakers: int = 1_000
    render_repeat: int = 7
    request_repeat: int = 50
    quick: bool = False

    @classmethod
    def full(cls) -> Config:
        return cls()

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            repeat=3,
            min_time=0.01,
            warmup=200,
            thread_calls=5,
            thread_repeat=1,
            records_small=10_000,
            records_large=100_000,
            render_repeat=3,
            request_repeat=10,
            quick=True,
        )

    @classmethod
    def smoke(cls) -> Config:
        return cls(
            repeat=1,
            min_time=0.0,
            warmup=5,
            threads=2,
            thread_calls=2,
            thread_sleep=0.001,
            thread_repeat=1,
            records_small=200,
            records_large=1_000,
            breakers=20,
            render_repeat=1,
            request_repeat=2,
            quick=True,
        )


@dataclass
class Measurement:
    """One subject of a case: `value` in `unit`; for per-call cases also the raw cost before baseline."""

    subject: str
    value: float | None  # None when the subject could not run
    unit: str
    raw: float | None = None  # ns/call including the bare-call baseline (per-call cases)
    median: float | None = None  # median over repeats of the same quantity as `value`
    note: str = ""


@dataclass
class Target:
    """A goal from the issues: `numerator` (a ratio of two subjects, or an absolute value) <= `limit`."""

    text: str
    actual: float | None
    limit: float
    unit: str  # "x" for ratios
    status: str
    note: str = ""


@dataclass
class CaseResult:
    case: str
    title: str
    measurements: list[Measurement] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    error: str = ""  # the harness itself failed on this case (a bug, not a MISS)

    def get(self, subject: str) -> Measurement | None:
        for item in self.measurements:
            if item.subject == subject:
                return item
        return None

    def value(self, subject: str) -> float | None:
        found = self.get(subject)
        return None if found is None else found.value

    def ratio_target(self, text: str, numerator: str, denominator: str, limit: float) -> Target:
        """Add a target `numerator / denominator <= limit` over the two subjects' values."""
        top, bottom = self.value(numerator), self.value(denominator)
        if top is None or bottom is None:
            missing = numerator if top is None else denominator
            found = self.get(missing)
            note = found.note if found is not None and found.note else NOT_MEASURED
            target = Target(text, None, limit, "x", NOT_AVAILABLE, note)
        elif bottom <= 0 or top <= 0:
            # A cost at or below zero is the run's noise, not a result: a 0.000x would PASS by luck.
            unmeasured = denominator if bottom <= 0 else numerator
            target = Target(
                text, None, limit, "x", NOT_AVAILABLE, f"{unmeasured} cost not measurable (<= 0, noise)"
            )
        else:
            ratio = top / bottom
            target = Target(text, ratio, limit, "x", PASS if ratio <= limit else MISS)
        self.targets.append(target)
        return target

    def absolute_target(self, text: str, subject: str, limit: float, unit: str) -> Target:
        """Add a target `value(subject) <= limit` in `unit`."""
        actual = self.value(subject)
        if actual is None:
            found = self.get(subject)
            note = found.note if found is not None and found.note else NOT_MEASURED
            target = Target(text, None, limit, unit, NOT_AVAILABLE, note)
        else:
            target = Target(text, actual, limit, unit, PASS if actual <= limit else MISS)
        self.targets.append(target)
        return target


CaseBody = Callable[[CaseResult, Config], CaseResult]
Title = str | Callable[[Config], str]  # a callable for titles that quote the run's counts


@dataclass(frozen=True)
class Case:
    """One registered case: its name and title are written once, in `@case(...)`, and handed to its
    body as a fresh `CaseResult`, so the runner's list and the result's name cannot drift apart."""

    name: str
    title: Title
    body: CaseBody

    def run(self, config: Config) -> CaseResult:
        title = self.title if isinstance(self.title, str) else self.title(config)
        result = self.body(CaseResult(self.name, title), config)
        if result.case != self.name:
            raise ValueError(
                f"case {self.name!r} ({self.body.__qualname__}) returned a result named {result.case!r}"
            )
        return result


REGISTRY: dict[str, list[Case]] = {}  # module name -> its cases, in declaration order


def case(name: str, title: Title) -> Callable[[CaseBody], CaseBody]:
    """Register the decorated `body(result, config)` as case `name` of its module (see `Case`)."""

    def register(body: CaseBody) -> CaseBody:
        for cases in REGISTRY.values():
            for other in cases:
                if other.name == name:
                    raise ValueError(
                        f"case name {name!r} of {body.__module__}.{body.__qualname__} is already "
                        f"registered by {other.body.__module__}.{other.body.__qualname__}"
                    )
        REGISTRY.setdefault(body.__module__, []).append(Case(name, title, body))
        return body

    return register


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic GC while timing, as timeit does; collect first so no debt is pending."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _loop(fn: Callable[[], object], number: int) -> int:
    """Call `fn` `number` times; return elapsed ns."""
    it = itertools.repeat(None, number)
    start = time.perf_counter_ns()
    for _ in it:
        fn()
    return time.perf_counter_ns() - start


def calibrate(fn: Callable[[], object], min_time: float) -> int:
    """The smallest loop count (1, 2, 5, 10, 20, ...) that takes at least `min_time` seconds."""
    number = 1
    target_ns = min_time * 1e9
    for exponent in itertools.count():
        for factor in (1, 2, 5):
            number = factor * int(10**exponent)
            if _loop(fn, number) >= target_ns or number >= 10_000_000:
                return number
    raise AssertionError("unreachable")  # pragma: no cover


def per_call_ns(subjects: dict[str, Callable[[], object]], config: Config) -> dict[str, tuple[float, float]]:
    """Time each zero-argument callable; returns {subject: (min, median) ns per call}.

    Subjects are warmed up, calibrated, then timed round-robin `repeat` times so drift in machine
    load is shared fairly between them.
    """
    numbers: dict[str, int] = {}
    for name, fn in subjects.items():
        _loop(fn, config.warmup)
        numbers[name] = max(1, calibrate(fn, config.min_time))
    samples: dict[str, list[float]] = {name: [] for name in subjects}
    with gc_paused():
        for _ in range(max(1, config.repeat)):
            for name, fn in subjects.items():
                samples[name].append(_loop(fn, numbers[name]) / numbers[name])
    return {name: (min(values), statistics.median(values)) for name, values in samples.items()}


async def _aloop(fn: Callable[[], Awaitable[object]], number: int) -> int:
    start = time.perf_counter_ns()
    for _ in itertools.repeat(None, number):
        await fn()
    return time.perf_counter_ns() - start


def async_per_call_ns(
    subjects: dict[str, Callable[[], Awaitable[object]]], config: Config
) -> dict[str, tuple[float, float]]:
    """Like `per_call_ns` for coroutine functions, all awaited inside one event loop."""

    async def main() -> dict[str, tuple[float, float]]:
        numbers: dict[str, int] = {}
        for name, fn in subjects.items():
            await _aloop(fn, config.warmup)
            number = 1
            while True:
                elapsed = await _aloop(fn, number)
                if elapsed >= config.min_time * 1e9 or number >= 1_000_000:
                    break
                number *= 2
            numbers[name] = number
        samples: dict[str, list[float]] = {name: [] for name in subjects}
        with gc_paused():
            for _ in range(max(1, config.repeat)):
                for name, fn in subjects.items():
                    samples[name].append(await _aloop(fn, numbers[name]) / numbers[name])
        return {name: (min(values), statistics.median(values)) for name, values in samples.items()}

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def overhead_measurements(
    timings: dict[str, tuple[float, float]], baseline: str, unavailable: dict[str, str] | None = None
) -> list[Measurement]:
    """Turn raw per-call timings into measurements of overhead over the `baseline` subject."""
    base_min, base_median = timings[baseline]
    result = [Measurement(baseline, 0.0, "ns/call", raw=base_min, median=0.0, note="bare call")]
    for name, (low, middle) in timings.items():
        if name == baseline:
            continue
        result.append(Measurement(name, low - base_min, "ns/call", raw=low, median=middle - base_median))
    for name, why in (unavailable or {}).items():
        result.append(Measurement(name, None, "ns/call", note=why))
    return result


def milliseconds(samples_ns: Sequence[float]) -> tuple[float, float]:
    """(min, median) of ns samples, in ms."""
    return min(samples_ns) / 1e6, statistics.median(samples_ns) / 1e6


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.3f}x"
    if unit in ("ns/call",):
        return f"{value:,.0f} ns"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "us":
        return f"{value:.2f} us"
    if unit in ("MiB", "KiB"):
        return f"{value:,.1f} {unit}"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.3g} {unit}"


def render_table(results: Sequence[CaseResult]) -> str:
    """A plain-text report: measurements per case, then every target with PASS/MISS."""
    lines: list[str] = []
    header = f"{'case':<22} {'subject':<50} {'value':>14} {'raw':>12} {'median':>14}  note"
    lines.append(header)
    lines.append("-" * len(header))
    for case in results:
        if case.error:
            lines.append(f"{case.case:<22} HARNESS ERROR: {case.error}")
            continue
        for item in case.measurements:
            raw = "" if item.raw is None else f"{item.raw:,.0f} ns"
            value = _fmt(item.value, item.unit) if item.value is not None else NOT_MEASURED
            if item.value is None and item.note:
                value = "-"
            lines.append(
                f"{case.case:<22} {item.subject:<50} {value:>14} {raw:>12} "
                f"{_fmt(item.median, item.unit):>14}  {item.note}"
            )
    lines.append("")
    theader = f"{'case':<22} {'target':<62} {'actual':>12} {'limit':>10}  result"
    lines.append(theader)
    lines.append("-" * len(theader))
    for case in results:
        for target in case.targets:
            actual = _fmt(target.actual, target.unit)
            suffix = f"  ({target.note})" if target.note else ""
            lines.append(
                f"{case.case:<22} {target.text:<62} {actual:>12} {_fmt(target.limit, target.unit):>10}  "
                f"{target.status}{suffix}"
            )
    counts = {status: 0 for status in (PASS, MISS, NOT_AVAILABLE)}
    for case in results:
        for target in case.targets:
            counts[target.status] = counts.get(target.status, 0) + 1
    lines.append("")
    lines.append(
        f"targets: {counts[PASS]} PASS, {counts[MISS]} MISS, {counts[NOT_AVAILABLE]} N/A "
        "(targets are goals to report, not assertions)"
    )
    return "\n".join(lines)


def markdown_table(results: Sequence[CaseResult]) -> str:
    """The results as Markdown, for docs/bench.md."""
    lines = [
        "| case | subject | value (overhead) | raw ns/call | median | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for case in results:
        for item in case.measurements:
            raw = "" if item.raw is None else f"{item.raw:,.0f}"
            value = _fmt(item.value, item.unit) if item.value is not None else "-"
            note, median = item.note.replace("|", "/"), _fmt(item.median, item.unit)
            lines.append(f"| {case.case} | {item.subject} | {value} | {raw} | {median} | {note} |")
    lines += ["", "| case | target | actual | limit | result |", "|---|---|---:|---:|---|"]
    for case in results:
        for target in case.targets:
            status = target.status + (f" ({target.note})" if target.note else "")
            lines.append(
                f"| {case.case} | {target.text} | {_fmt(target.actual, target.unit)} | "
                f"{_fmt(target.limit, target.unit)} | {status} |"
            )
    return "\n".join(lines)


def to_json(results: Sequence[CaseResult], config: Config) -> str:
    payload = {
        "machine": machine(),
        "config": asdict(config),
        "cases": [asdict(case) for case in results],
    }
    return json.dumps(payload, indent=2, sort_keys=True)


def seawall_attr(path: str) -> Any:
    """`seawall.X` or `seawall.sub.X`, or raise `Unavailable` when its extra is not installed."""
    import importlib

    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"{path} cannot be imported ({type(exc).__name__}: {exc})") from exc


def attempt_build(build: Callable[[], Any]) -> tuple[Any, str]:
    """Run `build`; return (result, "") or (None, why) when a piece cannot be imported or built.

    A seawall constructor that raises something else is reported on its row (not a harness crash),
    so one broken piece does not hide the rest of the run.
    """
    try:
        return build(), ""
    except Unavailable as exc:
        return None, str(exc)
    except Exception as exc:
        return None, f"failed to build: {type(exc).__name__}: {exc}"


class Subjects(dict[str, Any]):
    """The callables one case times, by subject (the `bare` baseline first), and why each one that
    could not be built is missing: every case's setup in one place, so a missing piece is a row."""

    def __init__(
        self, bare: Callable[[], object], peers: dict[str, Callable[[], object]] | None = None
    ) -> None:
        super().__init__(bare=bare)
        self.update(peers or {})
        self.unavailable: dict[str, str] = {}

    def build(self, name: str, make: Callable[[], Any]) -> Any:
        """Add `make()` as `name`; when it cannot be built, note why (see `attempt_build`) and return None."""
        made, why = attempt_build(make)
        if made is None:
            self.unavailable[name] = why
        else:
            self[name] = made
        return made

    def overhead(self, config: Config, *, asynchronous: bool = False) -> list[Measurement]:
        """Time every subject (awaited in one loop when `asynchronous`) as overhead over `bare`."""
        timings = async_per_call_ns(self, config) if asynchronous else per_call_ns(self, config)
        return overhead_measurements(timings, "bare", self.unavailable)
