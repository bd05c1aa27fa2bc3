"""The kinds of primitive, declared once, and what each kind's sub-package registers about itself.

`Kind` is the closed list (str-valued, so `Kind.BREAKER == "breaker"` and it serializes as itself).
Each primitive's module registers one `KindSpec` at import: its class, snapshot type, factory,
settings type and whether it counts durations. The registry, the exporters and the web layer read
these specs instead of naming kinds, so a new kind shows up everywhere once it is registered
(`test_kinds.py` checks that every declared kind is registered and reachable everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from seawall.core.enums import StrValue

__all__ = ["Kind", "KindSpec", "declared", "register_kind", "spec_of"]


class Kind(StrValue):
    """A kind of named primitive; names are unique per kind in a registry. The order is the order
    the exporters and the status page show them in."""

    BREAKER = "breaker"
    RETRY = "retry"
    FEATURE = "feature"
    TIMEOUT = "timeout"
    BULKHEAD = "bulkhead"
    RATE_LIMITER = "rate_limiter"
    TASK = "task"
    HEDGE = "hedge"

    @property
    def plural(self) -> str:
        """The key of this kind's list in snapshots and the status page's data."""
        return self.value[:-1] + "ies" if self.value.endswith("y") else self.value + "s"

    @classmethod
    def of(cls, value: object) -> Kind:
        """`value` as a Kind; an unknown kind is a ValueError naming the known ones."""
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(kind.value for kind in cls)
            raise ValueError(f"kind must be one of {known}, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What a kind's sub-package tells the rest of seawall about it."""

    kind: Kind
    cls: type[Any]  # the primitive's class
    snapshot: type[Any]  # what `primitive.snapshot()` returns
    factory: Callable[..., Any]  # get-or-create by name: `seawall.<factory>(name, ...)`
    settings: type[Any] | None = None  # the frozen settings dataclass, when the kind has one
    timed: bool = False  # counts durations in the registry's buckets (`record_durations`)

    @classmethod
    def of(
        cls, primitive: type[Any], snapshot: type[Any], factory: Callable[..., Any], *, timed: bool = False
    ) -> KindSpec:
        """The spec of a `Primitive` subclass: its kind and settings type read from the class, not
        written again."""
        return cls(primitive.kind, primitive, snapshot, factory, primitive.settings_type, timed)

    @property
    def factory_call(self) -> str:
        """How a user gets the primitive named back (for error messages)."""
        return f"seawall.{self.factory.__name__}"


_SPECS: dict[Kind, KindSpec] = {}


def register_kind(spec: KindSpec) -> KindSpec:
    """Called once per kind, by the module that defines the primitive; a second spec is refused."""
    existing = _SPECS.get(spec.kind)
    if existing is not None and existing != spec:
        raise ValueError(f"kind {spec.kind.value!r} is already registered by {existing.cls.__qualname__}")
    _SPECS[spec.kind] = spec
    return spec


def spec_of(kind: Kind | str) -> KindSpec:
    """The registered spec of `kind` (importing `seawall` registers every built-in kind)."""
    member = Kind.of(kind)
    spec = _SPECS.get(member)
    if spec is None:
        raise LookupError(f"kind {member.value!r} is declared but its module never registered it")
    return spec


def declared() -> tuple[KindSpec, ...]:
    """Every registered kind, in `Kind` order."""
    return tuple(_SPECS[kind] for kind in Kind if kind in _SPECS)
