"""`python -m bench [--quick] [--json PATH] [--filter NAME]`: run the cases, print the table.

Targets are goals to report: the exit status is 0 unless the harness itself breaks (a case raising
is a harness error and gives exit status 1, after the other cases have run).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from .harness import REGISTRY, Case, CaseResult, Config, markdown_table, render_table, to_json

AREAS = ("breaker", "retry", "aggregator", "exporter", "otel", "web", "limits", "http")


def all_cases() -> list[Case]:
    """The cases each area module declares with `@case`, in AREAS order, then declaration order."""
    cases: list[Case] = []
    for area in AREAS:
        module = importlib.import_module(f"bench.{area}").__name__
        if not REGISTRY.get(module):
            raise LookupError(f"bench area {area!r} ({module}) declares no @case")
        cases.extend(REGISTRY[module])
    return cases


def warm_up_cpu(seconds: float) -> None:
    """Spin before the first case so CPU frequency scaling does not penalize whichever case runs first."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        sum(range(1000))


def run(config: Config, name_filter: str | None = None, *, echo: bool = True) -> list[CaseResult]:
    """Run the cases whose name contains `name_filter` (all when None); one failure never stops the rest."""
    results: list[CaseResult] = []
    warm_up_cpu(config.min_time * 10)
    for case in all_cases():
        name = case.name
        if name_filter and name_filter not in name:
            continue
        started = time.perf_counter()
        if echo:
            print(f"running {name} ...", end="", file=sys.stderr, flush=True)
        try:
            result = case.run(config)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            result = CaseResult(name, name, error=f"{type(exc).__name__}: {exc}")
        if echo:
            print(f" {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short run (a few seconds per case), for smoke checks"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiniest run: proves each case works, numbers meaningless"
    )
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write machine-readable results here")
    parser.add_argument(
        "--markdown", metavar="PATH", type=Path, help="also write the results as Markdown tables"
    )
    parser.add_argument(
        "--filter", metavar="NAME", help="run only cases whose name contains NAME (e.g. breaker, retry.async)"
    )
    parser.add_argument("--list", action="store_true", help="list case names and exit")
    args = parser.parse_args(argv)
    if args.list:
        for case in all_cases():
            print(case.name)
        return 0
    if args.smoke:
        config = Config.smoke()
    elif args.quick:
        config = Config.quick_config()
    else:
        config = Config.full()
    results = run(config, args.filter)
    if not results:
        print(f"no case matches --filter {args.filter!r}; see --list", file=sys.stderr)
        return 2
    print(render_table(results))
    if args.json:
        args.json.write_text(to_json(results, config) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(markdown_table(results) + "\n", encoding="utf-8")
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
