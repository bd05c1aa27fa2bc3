"""The one rule every factory (`seawall.breaker()`, `retry()`, `timeout()`, ...) follows.

Get-or-create by name: the first call creates the primitive with every option given; a later call
returns the same primitive when the settings it names equal the existing one's (after validation
and normalisation, so `initial=1` equals `initial=1.0`), and is a ValueError naming each differing
setting otherwise. Injected parts (`clock`, `sleep`, `errors`, `classifier`, ...) are not settings:
a later call may pass the same object again, a different one is a ValueError as well (it would be
silently ignored otherwise), and one the primitive does not keep is a TypeError as on creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from seawall.core.kinds import Kind, spec_of
from seawall.core.registry import Registry, default_registry

__all__ = ["obtain"]


def obtain(
    kind: Kind,
    name: str,
    registry: Registry | None,
    options: Mapping[str, Any],
    positional: Mapping[str, Any] | None = None,
) -> Any:
    """The primitive of `kind` named `name`: created with `spec.cls(name, registry=..., **options)`
    when absent, else the existing one, checked against the settings and injected parts asked for.
    `positional` are the factory's positional parameters, left out when None (not given); a None
    among the keyword `options` is a value asked for (a feature's `fallback=None`, say)."""
    given = {key: value for key, value in (positional or {}).items() if value is not None}
    options = {**given, **options}
    spec = spec_of(kind)
    reg = default_registry() if registry is None else registry
    settings_type = spec.settings
    if settings_type is None:  # pragma: no cover - every built-in kind has settings
        raise TypeError(f"kind {kind.value!r} has no settings type")
    names = {item.name for item in fields(settings_type)}
    asked = {key: value for key, value in options.items() if key in names}
    injected = {key: value for key, value in options.items() if key not in names}
    normalised = settings_type.of(asked).as_config() if asked else {}
    config = {key: normalised[key] for key in asked}

    def create() -> Any:
        return spec.cls(name, registry=reg, **options)

    existing = reg.get(kind, name)
    primitive = reg.get_or_create(kind, name, config, create)
    if existing is not None and injected:
        kept = getattr(primitive, "injected", {})
        differing = sorted(key for key, value in injected.items() if kept.get(key, value) is not value)
        unknown = sorted(set(injected) - set(kept))
        if unknown:
            raise TypeError(f"unknown {kind} option {unknown[0]!r} for {spec.factory_call}({name!r})")
        if differing:
            raise ValueError(
                f"{kind} {name!r} already exists with other injected parts: "
                + ", ".join(f"{key}={injected[key]!r} (existing: {kept[key]!r})" for key in differing)
            )
    return primitive
