"""The demo service behind `python -m seawall demo` and `make demo` (needs the `all` extra)."""

from __future__ import annotations

from .app import DEPENDENCIES, Demo, create_demo_app
from .dependencies import DependencyError, DependencyTimeout, SimulatedDependency

__all__ = [
    "DEPENDENCIES",
    "Demo",
    "DependencyError",
    "DependencyTimeout",
    "SimulatedDependency",
    "create_demo_app",
]
