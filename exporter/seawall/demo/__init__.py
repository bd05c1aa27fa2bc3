"""The demo service behind `python -m seawall demo` and `make demo` (needs the `all` extra)."""

from __future__ import annotations

from .app import BREAKERS, DEPENDENCIES, Demo, DependencyError, create_demo_app
from .dependencies import SimulatedDependency

__all__ = [
    "BREAKERS",
    "DEPENDENCIES",
    "Demo",
    "DependencyError",
    "SimulatedDependency",
    "create_demo_app",
]
