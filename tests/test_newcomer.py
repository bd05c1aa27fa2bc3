"""What a newcomer meets first must be true (issue 17): README's quick start runs as written, its
tables are tables, the docs name the /metrics format that is served, and `make demo` on a busy
port says how to pick another."""

from __future__ import annotations

import functools
import re
import socket
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import tomllib
from prometheus_client import CollectorRegistry

import seawall
import seawall.prometheus as sp
from seawall.__main__ import main
from seawall.prometheus import render

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_quick_start_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same code, kept out of the process-wide registries other tests use.
    monkeypatch.setattr(seawall.core.registry, "_default", seawall.Registry())
    monkeypatch.setattr(sp, "instrument", functools.partial(sp.instrument, CollectorRegistry()))
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", README, re.S)
    assert block is not None
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "README quick start", "exec"), namespace)
    assert namespace["items"] == []  # the fallback, as the comment says


def _extra(name: str, optional: dict[str, list[str]]) -> set[str]:
    """The distributions `seawall[name]` installs, its nested `seawall[...]` extras expanded."""
    found: set[str] = set()
    for requirement in optional[name]:
        nested = re.fullmatch(r"seawall\[([\w,-]+)\]", requirement)
        if nested:
            for inner in nested.group(1).split(","):
                found |= _extra(inner, optional)
        else:
            found.add(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower())
    return found


def test_the_all_extra_installs_what_the_quick_start_imports() -> None:
    """`pip install seawall[all]` then the quick start: every module it imports must come with it."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = _extra("all", optional)
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", README, re.S)
    assert block is not None
    imported = {m.group(1) for m in re.finditer(r"^(?:import|from) (\w+)", block.group(1), re.M)}
    third_party = imported - {"seawall"} - set(sys.stdlib_module_names)
    assert third_party, "the quick start imports nothing but seawall and the standard library"
    providers = packages_distributions()
    for module in sorted(third_party):
        assert {d.lower() for d in providers.get(module, [module])} & installed, (
            f"the quick start imports {module}, which seawall[all] does not install"
        )


@pytest.mark.parametrize("path", ["README.md", *sorted(p.name for p in (ROOT / "docs").glob("*.md"))])
def test_every_table_has_a_header(path: str) -> None:
    """A block of `|` lines renders as a table only when its second line is the `|---|` rule and a
    blank line comes before it; rows appended under a paragraph render as text."""
    text = (ROOT / path if path == "README.md" else ROOT / "docs" / path).read_text()
    lines = text.split("\n")
    in_code = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("|"):
            continue
        previous = lines[number - 1] if number else ""
        if previous.startswith("|"):
            continue  # inside a block
        # (an HTML comment line ends its own block, so a table may follow it directly)
        assert previous.strip() == "" or previous.strip().endswith("-->"), (
            f"{path}:{number + 1}: a table must follow a blank line"
        )
        following = lines[number + 1] if number + 1 < len(lines) else ""
        assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", following), f"{path}:{number + 1}: no header rule"


def test_the_docs_name_the_text_format_served() -> None:
    _, headers = render(CollectorRegistry(), None, None)
    version = re.search(r"version=([0-9.]+)", headers["Content-Type"])
    assert version is not None
    for doc in ("docs/web.md", "docs/exporter.md"):
        text = (ROOT / doc).read_text()
        assert f"text/plain; version={version.group(1)}" in text, doc
        assert "text 0.0.4" not in text, doc
        assert "text format 0.0.4" not in text, doc


def test_the_demo_on_a_busy_port_says_how_to_pick_another(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["demo", "--port", str(port), "--traffic-rate", "0"]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is not free" in err
    assert "PORT=" in err
