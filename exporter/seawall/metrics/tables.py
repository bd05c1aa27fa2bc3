"""The documentation tables of the contract, rendered from `CONTRACT`.

README.md and docs/exporter.md hold these tables between `<!-- contract:NAME -->` and
`<!-- /contract:NAME -->` markers; a test fails when they differ from what is rendered here, and
`python -m seawall.metrics.tables README.md docs/exporter.md` rewrites them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from seawall.metrics.contract import CONTRACT, MetricSpec

__all__ = ["TABLES", "across_workers", "render", "update"]

_ACROSS = {
    "sum": "sum",
    "min": "`livemin`: the lowest live worker's",
    "max": "`livemax`: the highest live worker's",
    "worst": "`livemax`: 1 for a state any live worker is in",
}


def across_workers(spec: MetricSpec) -> str:
    """How multiprocess mode combines the family's series across workers (prometheus_client's mode)."""
    if spec.type != "gauge":
        return "sum (a dead worker's counts stay)"
    if spec.fold == "sum":
        return "`livesum`: the sum of live workers'"
    return _ACROSS[spec.fold]


def _labels(spec: MetricSpec) -> str:
    parts = []
    for label in spec.labels:
        values = f" ({', '.join(label.values)})" if label.values else ""
        parts.append(f"`{label.name}`{values}")
    return ", ".join(parts)


def metrics_table() -> str:
    rows = ["| metric | type | labels | meaning | across workers |", "|---|---|---|---|---|"]
    for spec in CONTRACT:
        rows.append(
            f"| `{spec.sample_name}` | {spec.type} | {_labels(spec)} | {spec.help} | {across_workers(spec)} |"
        )
    return "\n".join(rows)


def otel_table() -> str:
    rows = ["| instrument | kind | unit | attributes | Prometheus name |", "|---|---|---|---|---|"]
    for spec in CONTRACT:
        attributes = ", ".join(f"`{name}`" for name in spec.label_names)
        if spec.type == "histogram":
            for part, unit in (
                (".count", "{observation}"),
                (".sum", spec.unit),
                (".bucket", "{observation}"),
            ):
                extra = ", `le`" if part == ".bucket" else ""
                suffix = "_" + part[1:]
                rows.append(
                    f"| `{spec.name}{part}` | observable counter | `{unit}` | {attributes}{extra} "
                    f"| `{spec.prometheus_name}{suffix}` |"
                )
            continue
        if spec.type == "counter":
            kind = "observable counter"
        elif spec.fold == "sum":
            kind = "observable up-down counter"
        else:
            kind = "observable gauge"
        unit = f"`{spec.unit}`" if spec.unit else ""
        rows.append(f"| `{spec.name}` | {kind} | {unit} | {attributes} | `{spec.sample_name}` |")
    return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {"metrics": metrics_table, "otel": otel_table}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- contract:{name} -->\n)(.*?)(<!-- /contract:{name} -->)", re.DOTALL)


def render(text: str) -> str:
    """`text` with every marked table replaced by its rendering."""
    for name, make in TABLES.items():
        opening, closing = f"<!-- contract:{name} -->\n", f"<!-- /contract:{name} -->"
        text = _block(name).sub(f"{opening}{make()}\n{closing}".replace("\\", "\\\\"), text)
    return text


def update(path: Path) -> bool:
    """Rewrite the marked tables of `path`; True when it changed."""
    text = path.read_text()
    new = render(text)
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print(f"{argument}: {'updated' if update(Path(argument)) else 'unchanged'}")
